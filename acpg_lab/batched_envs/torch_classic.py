"""CartPole and Acrobot as tensor ops on any device: the dynamics of ``cartpole.py`` and ``acrobot.py`` (gymnasium's)
in float64 — the very same functions (`BatchedCartPole.dynamics`, `BatchedAcrobot.rk4`), given ``torch`` as their
array namespace — with NEXT_STEP autoreset and the time limit of `DeviceEnv`.

The arithmetic is the numpy versions' in the same order, so where the operations are the same the results are
the same bits. Two kinds of operation differ between numpy and torch by at most one unit in the last place:
``cos``/``sin`` (numpy calls libm, torch its own vectorised kernels; about 2 in 1,000 float64 arguments differ by
one ulp, float32 ones more often) and Acrobot's squares (``np.float_power`` is libm ``pow``, what gymnasium's
scalar ``x**2`` is; ``torch.float_power`` squares by ``x * x``). ``tests/test_device_envs.py`` therefore compares a
step from the same state to a tight tolerance, not bits. Reset states are drawn from the per-environment counter
streams (`DeviceEnv`), not gymnasium's.
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
        self.state, terminated = self.p.dynamics(self.state, self._force[action], xp=torch)
        reward = -terminated.to(torch.float64) if self.sutton_barto_reward else torch.ones_like(self.state[0])
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
        ns = p.rk4(*self.state, self._torque[action], xp=torch)
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
