"""The package's known-optimal environments (`acpg_lab.optimal_envs`) for all seeds at once.

Their numpy vector versions (``ActionBanditVectorEnv``, ``IdealGridVectorEnv``) already step ``E``
environments in one call, with one generator per seed (``reset(seed=seed)``) whose only use is sampling states
with ``choice(num_states, size=n, p=probs)``: ``E`` at reset, ``E`` per step for the bandit (its next states),
and ``k`` per step for the ``k`` environments that reset (NEXT_STEP). The layout (tables of observations,
optimal actions, transitions) is the vector env's own, built from the same ``env_kwargs``; `SeedStreams` serves
every seed's draws in one gather. Labels are ``info["optimal_action"]`` of the returned observations.

A non-stationary bandit (``ShiftingBandit``: its vector env has a ``schedule``) takes its optimal actions from
the schedule at the environments' clock, which ticks once per `step` as its vector env's does; every seed steps
at every call, so one clock serves them all, and it is part of the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from acpg_lab.batched_envs import BatchedEnv, _array
from acpg_lab.batched_envs.streams import SeedStreams

#: doubles drawn ahead per seed, in units of one draw for every environment of the seed
_BUFFERED_DRAWS = 64


class BatchedKnownOptimal(BatchedEnv):
    def __init__(self, num_envs: int, env_seeds: Sequence[int], vector_env: gym.vector.VectorEnv) -> None:
        env = vector_env.unwrapped
        self.layout, self.bandit = env.layout, hasattr(env.layout, "state_probs")
        super().__init__(num_envs, env_seeds, env._limit, env.single_observation_space, env.single_action_space)
        probs = np.asarray(self.layout.state_probs if self.bandit else self.layout.start_probs, dtype=np.float64)
        self.cdf = probs.cumsum()
        self.cdf /= self.cdf[-1]  # what numpy's Generator.choice searches
        self.states = np.zeros(self.num_seeds * num_envs, dtype=np.int64)
        self.streams: SeedStreams | None = None
        self.schedule = getattr(env, "schedule", None)  # a ShiftSchedule, or None: the labels never change
        self.clock = 0  #: step calls since reset (the shifting bandit's labels depend on it)

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        generators = [seeding.np_random(seed)[0] for seed in self.env_seeds]
        self.streams = SeedStreams(generators, 2 * self.num_envs * _BUFFERED_DRAWS)
        u, _ = self.streams.take(np.full(self.num_seeds, self.num_envs))
        self.states = self._choice(u)
        self.steps[:] = 0
        self.prev_done[:] = False
        self.clock = 0
        return self._out()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        actions, layout = actions.reshape(-1), self.layout
        resetting = self.prev_done
        k = resetting.reshape(self.num_seeds, self.num_envs).sum(1)
        # per seed, this step's draws in gymnasium's order: the bandit's E next states, then the k resets
        u, starts = self.streams.take(k + self.num_envs if self.bandit else k)
        if self.bandit:
            reward = (actions == self._labels()[self.states]).astype(np.float32)
            states = self._choice(u[self._block(starts, np.full(self.num_seeds, self.num_envs))])
            terminated = np.zeros_like(resetting)
            starts = starts + self.num_envs
        else:
            active = ~resetting
            states = self.states.copy()
            states[active] = layout.transitions[self.states[active], actions[active]]
            reward = np.full(states.shape, -layout.step_cost, dtype=np.float32)
            terminated = states == layout.goal
        self.clock += 1
        reset, terminated, truncated = self._count_steps(terminated)
        if reset.any():
            states[reset] = self._choice(u[self._block(starts, k)])
            reward[reset] = 0.0
        self.states = states
        obs, labels = self._out()
        return obs, self._shape(reward), self._shape(terminated), self._shape(truncated), labels

    def _get_state(self) -> dict:
        return {"states": self.states.copy(), "streams": self.streams.get_state(), "clock": self.clock}

    def _set_state(self, state: dict) -> None:
        self.states = _array(state["states"], self.states)
        self.streams.set_state(state["streams"])
        self.clock = int(state.get("clock", 0))  # checkpoints written before the clock existed: stationary ids

    def _labels(self) -> np.ndarray:
        return self.layout.optimal_actions if self.schedule is None else self.schedule.optimal_actions(self.clock)

    def _block(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Indices of ``counts[s]`` consecutive draws from ``starts[s]``, seed after seed."""
        seed = np.repeat(np.arange(self.num_seeds), counts)
        return np.arange(counts.sum()) + (starts - (np.cumsum(counts) - counts))[seed]

    def _choice(self, u: np.ndarray) -> np.ndarray:
        return self.cdf.searchsorted(u, side="right").astype(np.int64)

    def _out(self) -> tuple[np.ndarray, np.ndarray]:
        return (self._shape(self.layout.observations[self.states]), self._shape(self._labels()[self.states]))


def make(env_id: str, num_envs: int, env_seeds: Sequence[int], env_kwargs: dict[str, Any]) -> BatchedKnownOptimal:
    """Read the layout from one vector env made with ``env_kwargs`` (so invalid ones fail as in gymnasium)."""
    env = gym.make_vec(env_id, num_envs=1, vectorization_mode="vector_entry_point", **env_kwargs)
    try:
        return BatchedKnownOptimal(num_envs, env_seeds, env)
    finally:
        env.close()
