"""Acrobot for all seeds at once: what ``gym.make_vec("Acrobot-v1", E)`` builds today (gymnasium 1.4 has no
native vector Acrobot: a ``SyncVectorEnv`` of ``AcrobotEnv`` under ``TimeLimit(500)``), vectorised over every
seed's sub-environments.

Bitwise equality with gymnasium needs its exact arithmetic, which is scalar numpy code:

- each sub-environment ``i`` of a seed has its own generator, seeded ``seed + i`` (``SyncVectorEnv.reset``), and
  a reset draws ``uniform(-0.1, 0.1, size=4)`` from it and rounds the state to **float32**; the reset
  observation's cos/sin are therefore float32 functions, and the next step upcasts the state to float64;
- ``_dsdt`` squares numpy float64 *scalars* with ``x**2``, which is libm's ``pow(x, 2)``, not ``x * x`` (they
  differ in about 1 of 1000 cases); ``np.float_power`` calls the same ``pow`` elementwise, so `dsdt` uses it;
- RK4 over ``t = [0, dt]``, ``wrap`` (repeated subtraction/addition of 2 pi) and ``bound`` are reproduced
  operation by operation; every expression below keeps gymnasium's order of evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from numpy import cos, pi, sin

from acpg_lab.batched_envs import BatchedEnv, _array


def _wrap(x: np.ndarray, m: float, M: float) -> np.ndarray:  # noqa: N803  (gymnasium's names)
    diff = M - m
    while (over := x > M).any():
        x = np.where(over, x - diff, x)
    while (under := x < m).any():
        x = np.where(under, x + diff, x)
    return x


def _bound(x: np.ndarray, m: float, M: float) -> np.ndarray:  # noqa: N803
    return np.minimum(np.maximum(x, m), M)


class BatchedAcrobot(BatchedEnv):
    dt = 0.2
    LINK_LENGTH_1 = 1.0
    LINK_MASS_1 = 1.0
    LINK_MASS_2 = 1.0
    LINK_COM_POS_1 = 0.5
    LINK_COM_POS_2 = 0.5
    LINK_MOI = 1.0
    MAX_VEL_1 = 4 * pi
    MAX_VEL_2 = 9 * pi
    AVAIL_TORQUE = np.array([-1.0, 0.0, +1])
    low, high = -0.1, 0.1

    def __init__(self, num_envs: int, env_seeds: Sequence[int], max_episode_steps: int,
                 single_observation_space: gym.Space, single_action_space: gym.Space) -> None:
        super().__init__(num_envs, env_seeds, max_episode_steps, single_observation_space, single_action_space)
        self.state = np.zeros((4, self.num_seeds * num_envs))  # float64 [4, S * E]
        self.generators: list[np.random.Generator] = []  # one per sub-environment, seed-major

    def reset(self) -> tuple[np.ndarray, None]:
        self.generators = [seeding.np_random(seed + i)[0] for seed in self.env_seeds for i in range(self.num_envs)]
        everyone = np.ones(self.num_seeds * self.num_envs, dtype=bool)
        self._draw_resets(everyone)
        self.steps[:] = 0
        self.prev_done[:] = False
        return self._shape(self._reset_obs(everyone)), None

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, None]:
        torque = self.AVAIL_TORQUE[actions.reshape(-1)]
        ns = np.stack(self.rk4(*self.state, torque))
        ns[0] = _wrap(ns[0], -pi, pi)
        ns[1] = _wrap(ns[1], -pi, pi)
        ns[2] = _bound(ns[2], -self.MAX_VEL_1, self.MAX_VEL_1)
        ns[3] = _bound(ns[3], -self.MAX_VEL_2, self.MAX_VEL_2)
        self.state = ns
        terminated = -cos(ns[0]) - cos(ns[1] + ns[0]) > 1.0
        reward = np.where(terminated, 0.0, -1.0)
        obs = self._obs()
        reset, terminated, truncated = self._count_steps(terminated)
        if reset.any():
            self._draw_resets(reset)
            obs[reset] = self._reset_obs(reset)
            reward[reset] = 0.0
        return self._shape(obs), self._shape(reward), self._shape(terminated), self._shape(truncated), None

    def _get_state(self) -> dict:
        return {"state": self.state.copy(), "generators": [g.bit_generator.state for g in self.generators]}

    def _set_state(self, state: dict) -> None:
        self.state = _array(state["state"], self.state)
        for gen, bit_state in zip(self.generators, state["generators"], strict=True):
            gen.bit_generator.state = bit_state

    def _draw_resets(self, reset: np.ndarray) -> None:
        for i in np.flatnonzero(reset):
            self.state[:, i] = self.generators[i].uniform(low=self.low, high=self.high, size=(4,)).astype(np.float32)

    def _obs(self) -> np.ndarray:
        s = self.state
        obs = np.empty((s.shape[1], 6), dtype=np.float32)
        obs[:, 0], obs[:, 1], obs[:, 2], obs[:, 3] = cos(s[0]), sin(s[0]), cos(s[1]), sin(s[1])
        obs[:, 4], obs[:, 5] = s[2], s[3]
        return obs

    def _reset_obs(self, reset: np.ndarray) -> np.ndarray:
        """A freshly reset state is float32 in gymnasium, so its observation's cos/sin are float32 functions."""
        s = self.state[:, reset].astype(np.float32)
        return np.stack([cos(s[0]), sin(s[0]), cos(s[1]), sin(s[1]), s[2], s[3]], axis=1)

    @classmethod
    def rk4(cls, theta1: Any, theta2: Any, dtheta1: Any, dtheta2: Any, a: Any, *, xp: Any = np) -> list[Any]:
        """gymnasium's ``rk4(self._dsdt, s_augmented, [0, self.dt])``: one RK4 step of ``[4, N]`` states, as a list
        of the four next components. ``xp``: the array namespace (``numpy`` here, ``torch`` for `torch_classic`)."""
        y0 = (theta1, theta2, dtheta1, dtheta2)
        dt = cls.dt - 0  # t[1] - t[0]
        dt2 = dt / 2.0
        k1 = cls.dsdt(*y0, a, xp=xp)
        k2 = cls.dsdt(*(y + dt2 * k for y, k in zip(y0, k1, strict=True)), a, xp=xp)
        k3 = cls.dsdt(*(y + dt2 * k for y, k in zip(y0, k2, strict=True)), a, xp=xp)
        k4 = cls.dsdt(*(y + dt * k for y, k in zip(y0, k3, strict=True)), a, xp=xp)
        return [y + dt / 6.0 * (p + 2 * q + 2 * r + w) for y, p, q, r, w in zip(y0, k1, k2, k3, k4, strict=True)]

    @classmethod
    def dsdt(cls, theta1: Any, theta2: Any, dtheta1: Any, dtheta2: Any, a: Any, *, xp: Any = np) -> tuple[Any, ...]:
        """gymnasium's ``AcrobotEnv._dsdt`` ("book" dynamics), expression for expression; the torque's
        derivative is 0, so ``a + h * 0.0 == a`` and the torque is passed along unchanged. A tensor's square is
        ``xp.float_power(x, 2)``: libm ``pow`` in numpy (what gymnasium's scalar ``x**2`` is), ``x * x`` in torch."""
        cos, sin, pi = xp.cos, xp.sin, np.pi
        m1 = cls.LINK_MASS_1
        m2 = cls.LINK_MASS_2
        l1 = cls.LINK_LENGTH_1
        lc1 = cls.LINK_COM_POS_1
        lc2 = cls.LINK_COM_POS_2
        I1 = cls.LINK_MOI  # noqa: N806
        I2 = cls.LINK_MOI  # noqa: N806
        g = 9.8
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos(theta2)) + I2
        phi2 = m2 * lc2 * g * cos(theta1 + theta2 - pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * xp.float_power(dtheta2, 2) * sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * cos(theta1 - pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * xp.float_power(dtheta1, 2) * sin(theta2) - phi2) / (
            m2 * lc2**2 + I2 - xp.float_power(d2, 2) / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return dtheta1, dtheta2, ddtheta1, ddtheta2
