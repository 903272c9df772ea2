"""CartPole for all seeds at once: gymnasium 1.4's ``CartPoleVectorEnv`` (what ``gym.make_vec`` builds for
``CartPole-v*``), with its float64 state, its physics line for line, and one random stream per seed.

Per seed, gymnasium's vector env holds one generator (``reset(seed=seed)``), draws the whole reset state
``uniform(-0.05, 0.05, size=(4, E))`` from it, and on a NEXT_STEP reset step draws ``uniform(size=(4, k))`` for
the ``k`` environments that reset, row by row; `SeedStreams` serves every seed's draws in one gather.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from acpg_lab.batched_envs import BatchedEnv, _array
from acpg_lab.batched_envs.streams import SeedStreams

#: doubles drawn ahead per seed: enough for this many resets of a whole seed's environments
_BUFFERED_RESETS = 64


class BatchedCartPole(BatchedEnv):
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    low, high = -0.05, 0.05

    def __init__(self, num_envs: int, env_seeds: Sequence[int], max_episode_steps: int,
                 single_observation_space: gym.Space, single_action_space: gym.Space,
                 sutton_barto_reward: bool = False) -> None:
        super().__init__(num_envs, env_seeds, max_episode_steps, single_observation_space, single_action_space)
        self.sutton_barto_reward = sutton_barto_reward
        self.state = np.zeros((4, self.num_seeds * num_envs))  # float64 [4, S * E], as gymnasium's [4, E]
        self.streams: SeedStreams | None = None
        self.rows = np.arange(4)[:, None]

    def reset(self) -> tuple[np.ndarray, None]:
        generators = [seeding.np_random(seed)[0] for seed in self.env_seeds]
        self.streams = SeedStreams(generators, 4 * self.num_envs * _BUFFERED_RESETS)
        self._draw_resets(np.ones(self.num_seeds * self.num_envs, dtype=bool))
        self.steps[:] = 0
        self.prev_done[:] = False
        return self._observe(), None

    @classmethod
    def dynamics(cls, state: Any, force: Any, *, xp: Any = np) -> tuple[Any, Any]:
        """One step of ``state [4, N]`` (float64) under ``force [N]``: (next state, terminated). ``xp`` is the array
        namespace, ``numpy`` here and ``torch`` for the device version (`torch_classic`): one definition of the
        arithmetic, gymnasium's expressions in gymnasium's order, for both."""
        x, x_dot, theta, theta_dot = state
        costheta = xp.cos(theta)
        sintheta = xp.sin(theta)
        temp = (force + cls.polemass_length * xp.square(theta_dot) * sintheta) / cls.total_mass
        thetaacc = (cls.gravity * sintheta - costheta * temp) / (
            cls.length * (4.0 / 3.0 - cls.masspole * xp.square(costheta) / cls.total_mass))
        xacc = temp - cls.polemass_length * thetaacc * costheta / cls.total_mass
        x = x + cls.tau * x_dot  # gymnasium's default "euler" integrator
        x_dot = x_dot + cls.tau * xacc
        theta = theta + cls.tau * theta_dot
        theta_dot = theta_dot + cls.tau * thetaacc
        terminated = ((x < -cls.x_threshold) | (x > cls.x_threshold)
                      | (theta < -cls.theta_threshold_radians) | (theta > cls.theta_threshold_radians))
        return xp.stack((x, x_dot, theta, theta_dot)), terminated

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, None]:
        force = np.sign(actions.reshape(-1) - 0.5) * self.force_mag
        self.state, terminated = self.dynamics(self.state, force)
        if self.sutton_barto_reward:
            reward = -np.array(terminated, dtype=np.float32)
        else:
            reward = np.ones_like(terminated, dtype=np.float32)
        reset, terminated, truncated = self._count_steps(terminated)
        if reset.any():
            self._draw_resets(reset)
        reward[reset] = 0.0
        return self._observe(), self._shape(reward), self._shape(terminated), self._shape(truncated), None

    def _get_state(self) -> dict:
        return {"state": self.state.copy(), "streams": self.streams.get_state()}

    def _set_state(self, state: dict) -> None:
        self.state = _array(state["state"], self.state)
        self.streams.set_state(state["streams"])

    def _draw_resets(self, reset: np.ndarray) -> None:
        """``state[:, reset] = uniform(low, high, size=(4, k_s))`` for each seed's ``k_s`` resetting envs."""
        mask = reset.reshape(self.num_seeds, self.num_envs)
        k = mask.sum(1)
        u, starts = self.streams.take(4 * k)
        where = np.flatnonzero(reset)  # seed-major, so each seed's resetting envs in env order
        seed = where // self.num_envs
        rank = (np.cumsum(mask, 1) - 1).ravel()[where]  # j: the j-th resetting env of its seed
        draw = u[starts[seed] + self.rows * k[seed] + rank]  # element [d, j] of the (4, k) draw: d * k + j
        self.state[:, where] = self.low + (self.high - self.low) * draw

    def _observe(self) -> np.ndarray:
        """``[S, E, 4]`` float32 laid out as ``np.stack`` of each seed's ``state.T.astype(np.float32)`` is: each
        seed's block ``[4, E]`` row-major, seen transposed (the layout reaches the network, so it is kept)."""
        per_seed = self.state.reshape(4, self.num_seeds, self.num_envs).transpose(1, 0, 2)
        return per_seed.astype(np.float32, order="C").transpose(0, 2, 1)
