"""CartPole and Acrobot as tensor ops on any device: the dynamics of ``cartpole.py`` and ``acrobot.py`` (gymnasium's)
in float64, expression for expression, with NEXT_STEP autoreset and the time limit of `DeviceEnv`.

The arithmetic is the numpy versions' in the same order, so where the operations are the same the results are
the same bits. Two kinds of operation differ between numpy and torch by at most one unit in the last place:
``cos``/``sin`` (numpy calls libm, torch its own vectorised kernels; about 2 in 1,000 float64 arguments differ by
one ulp, float32 ones more often) and Acrobot's squares (numpy's scalar ``x**2`` is libm ``pow``, torch squares
by ``x * x``). ``tests/test_device_envs.py`` therefore compares a step from the same state to a tight tolerance,
not bits. Reset states are drawn from the per-environment counter streams (`DeviceEnv`), not gymnasium's.
"""

from __future__ import annotations

import math

import torch

from acpg_lab.batched_envs import BatchedEnv
from acpg_lab.batched_envs.acrobot import BatchedAcrobot
from acpg_lab.batched_envs.cartpole import BatchedCartPole
from acpg_lab.batched_envs.device import DeviceEnv

__all__ = ["TorchCartPole", "TorchAcrobot"]

#: exact wrap iterations: one step moves an angle by at most ~4.5 turns from anywhere in the state space
#: (measured over 2 million states at the velocity bounds), so gymnasium's wrap loop never runs more than 5 times
_WRAP_ITERATIONS = 8


class _Classic(DeviceEnv):
    """A float64 state ``[4, N]`` (the numpy version's layout) whose fresh episodes start at
    ``low + (high - low) * u``, ``u`` four uniforms per environment from its stream."""

    low: float
    high: float

    def __init__(self, *, host: BatchedEnv, device: torch.device | str) -> None:
        super().__init__(host=host, device=device)
        self.state = torch.zeros(4, self.num_seeds * self.num_envs, dtype=torch.float64, device=self.device)

    def _draw(self, mask: torch.Tensor) -> torch.Tensor:
        """``[4, N]`` fresh states (meaningful where ``mask``), advancing only the streams in ``mask``."""
        return self.low + (self.high - self.low) * self.streams.rand_n(4, mask).T

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {"state": self.state}


class TorchCartPole(_Classic):
    """gymnasium's ``CartPoleVectorEnv`` dynamics (euler integrator), as `BatchedCartPole` computes them."""

    p = BatchedCartPole
    low, high = p.low, p.high

    def __init__(self, *, host: BatchedCartPole, device: torch.device | str) -> None:
        super().__init__(host=host, device=device)
        self.sutton_barto_reward = host.sutton_barto_reward
        #: the force of action 0 and 1: numpy's ``sign(action - 0.5) * force_mag``
        self._force = torch.tensor([-self.p.force_mag, self.p.force_mag], dtype=torch.float64, device=self.device)

    def _reset(self, mask: torch.Tensor) -> None:
        self.state = torch.where(mask, self._draw(mask), self.state)

    def _step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        x, x_dot, theta, theta_dot = self.state
        force = self._force[action]
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + p.polemass_length * torch.square(theta_dot) * sintheta) / p.total_mass
        thetaacc = (p.gravity * sintheta - costheta * temp) / (
            p.length * (4.0 / 3.0 - p.masspole * torch.square(costheta) / p.total_mass))
        xacc = temp - p.polemass_length * thetaacc * costheta / p.total_mass
        x = x + p.tau * x_dot
        x_dot = x_dot + p.tau * xacc
        theta = theta + p.tau * theta_dot
        theta_dot = theta_dot + p.tau * thetaacc
        self.state = torch.stack((x, x_dot, theta, theta_dot))
        terminated = ((x < -p.x_threshold) | (x > p.x_threshold)
                      | (theta < -p.theta_threshold_radians) | (theta > p.theta_threshold_radians))
        reward = -terminated.to(torch.float64) if self.sutton_barto_reward else torch.ones_like(x)
        return reward, terminated

    def observe(self) -> tuple[torch.Tensor, None]:
        """float32 ``[S, E, 4]``: the state, as gymnasium's observation."""
        return self._shape(self.state.T.to(torch.float32)), None


def _wrap(x: torch.Tensor, m: float, M: float) -> torch.Tensor:  # noqa: N803  (gymnasium's names)
    """gymnasium's ``wrap`` (subtract or add ``M - m`` until inside), unrolled: the same bits for every angle one
    step can reach; anything further (unreachable) is brought inside by ``remainder``."""
    diff = M - m
    for _ in range(_WRAP_ITERATIONS):
        x = torch.where(x > M, x - diff, x)
    for _ in range(_WRAP_ITERATIONS):
        x = torch.where(x < m, x + diff, x)
    return torch.where((x < m) | (x > M), torch.remainder(x - m, diff) + m, x)


class TorchAcrobot(_Classic):
    """gymnasium's ``AcrobotEnv`` ("book" dynamics, RK4 over one ``dt``), as `BatchedAcrobot` computes it. A reset
    state is rounded to float32 and its first observation's cos/sin are float32 functions, as in gymnasium."""

    p = BatchedAcrobot
    low, high = p.low, p.high

    def __init__(self, *, host: BatchedAcrobot, device: torch.device | str) -> None:
        super().__init__(host=host, device=device)
        self._torque = torch.as_tensor(self.p.AVAIL_TORQUE, dtype=torch.float64, device=self.device)
        self.fresh = torch.ones_like(self.prev_done)  #: the state is a reset state (observed in float32)

    def _reset(self, mask: torch.Tensor) -> None:
        fresh = self._draw(mask).to(torch.float32).to(torch.float64)
        self.state = torch.where(mask, fresh, self.state)
        self.fresh = mask

    def _step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        ns = self._rk4(*self.state, self._torque[action])
        ns0, ns1 = _wrap(ns[0], -math.pi, math.pi), _wrap(ns[1], -math.pi, math.pi)
        ns2 = ns[2].clamp(-p.MAX_VEL_1, p.MAX_VEL_1)
        ns3 = ns[3].clamp(-p.MAX_VEL_2, p.MAX_VEL_2)
        self.state = torch.stack((ns0, ns1, ns2, ns3))
        terminated = -torch.cos(ns0) - torch.cos(ns1 + ns0) > 1.0
        return torch.where(terminated, 0.0, -1.0).to(torch.float64), terminated

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {"state": self.state, "fresh": self.fresh}

    def observe(self) -> tuple[torch.Tensor, None]:
        """float32 ``[S, E, 6]``: cos/sin of both angles and both velocities."""
        def features(s: torch.Tensor) -> torch.Tensor:
            return torch.stack((torch.cos(s[0]), torch.sin(s[0]), torch.cos(s[1]), torch.sin(s[1]), s[2], s[3]), 1)

        obs = torch.where(self.fresh[:, None], features(self.state.to(torch.float32)),
                          features(self.state).to(torch.float32))
        return self._shape(obs), None

    def _rk4(self, *y0: torch.Tensor) -> list[torch.Tensor]:
        """One RK4 step over ``[0, dt]`` of the state and the torque (whose derivative is 0), as `BatchedAcrobot`."""
        *y0, a = y0
        dt = self.p.dt - 0
        dt2 = dt / 2.0
        k1 = self._dsdt(*y0, a)
        k2 = self._dsdt(*(y + dt2 * k for y, k in zip(y0, k1, strict=True)), a)
        k3 = self._dsdt(*(y + dt2 * k for y, k in zip(y0, k2, strict=True)), a)
        k4 = self._dsdt(*(y + dt * k for y, k in zip(y0, k3, strict=True)), a)
        return [y + dt / 6.0 * (p + 2 * q + 2 * r + w) for y, p, q, r, w in zip(y0, k1, k2, k3, k4, strict=True)]

    def _dsdt(self, theta1: torch.Tensor, theta2: torch.Tensor, dtheta1: torch.Tensor, dtheta2: torch.Tensor,
              a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`BatchedAcrobot._dsdt`, expression for expression (squares of tensors by ``torch.square``)."""
        p, cos, sin, sq = self.p, torch.cos, torch.sin, torch.square
        m1, m2, l1, lc1, lc2 = p.LINK_MASS_1, p.LINK_MASS_2, p.LINK_LENGTH_1, p.LINK_COM_POS_1, p.LINK_COM_POS_2
        I1 = I2 = p.LINK_MOI  # noqa: N806
        g, pi = 9.8, math.pi
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos(theta2)) + I2
        phi2 = m2 * lc2 * g * cos(theta1 + theta2 - pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * sq(dtheta2) * sin(theta2) - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * cos(theta1 - pi / 2) + phi2)
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * sq(dtheta1) * sin(theta2) - phi2) / (
            m2 * lc2**2 + I2 - sq(d2) / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return dtheta1, dtheta2, ddtheta1, ddtheta2
