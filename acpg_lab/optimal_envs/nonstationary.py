"""`ShiftingBandit`: a dense contextual bandit whose optimal actions are re-assigned every ``shift_every`` steps of
the environment's own clock, the standard plasticity stressor (the network must keep re-learning a new labelling
of the same inputs) with the optimum known at every step.

The clock counts ``step`` calls since the last seeded ``reset`` (``reset(seed=...)``; a reset without a seed, as a
single environment gets at every episode, keeps it running). For the vector environment one call steps all its
sub-environments, NEXT_STEP reset steps included, so with E sub-environments and PPO rollouts of T steps, a
shift every N updates is ``shift_every = N * T``. Because the clock belongs to the environment, each training
seed's environments shift on their own schedule, and the batched path (`acpg_lab.batched_envs.known_optimal`)
reproduces it bit for bit.

Labels at phase p = clock // shift_every: phase 0 is `ActionBandit`'s layout (states numbered group by group);
phase p > 0 is a random permutation of those labels drawn from ``(layout_seed, p)``, so groups stay balanced,
every instance with the same parameters shifts to the same labelling, and about 1/K of the states keep their
action at each shift. ``info["optimal_action"]`` of an observation is its label under the phase in which the
next action on it is rewarded. ``env.unwrapped.layout`` is the current phase's `BanditLayout`.

An evaluation in fresh environments (``Run.evaluate``) starts their clocks at 0, so it scores the policy on phase
0's labelling, not the one it trained on last: judge learning here by the training return per phase.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from acpg_lab.checks import check_int
from acpg_lab.optimal_envs._base import _frozen, _single_action
from acpg_lab.optimal_envs.bandit import ActionBandit, ActionBanditVectorEnv, BanditLayout

__all__ = ["ShiftSchedule", "ShiftingBandit", "ShiftingBanditVectorEnv"]


@functools.lru_cache(maxsize=64)
def _phase_labels(num_actions: int, states_per_action: int, layout_seed: int, phase: int) -> np.ndarray:
    base = np.repeat(np.arange(num_actions, dtype=np.int64), states_per_action)
    if phase == 0:
        return _frozen(base)
    return _frozen(np.random.default_rng([layout_seed, phase]).permutation(base))


@dataclasses.dataclass(frozen=True)
class ShiftSchedule:
    """When and to what the optimal actions change: a pure function of the environment's clock."""

    shift_every: int
    num_actions: int
    states_per_action: int
    layout_seed: int

    def phase(self, clock: int) -> int:
        return int(clock) // self.shift_every

    def optimal_actions(self, clock: int) -> np.ndarray:
        """``[N]`` read-only: the optimal action of every state at this clock."""
        return _phase_labels(self.num_actions, self.states_per_action, self.layout_seed, self.phase(clock))


def _schedule(num_actions: int, states_per_action: int, layout_seed: int, shift_every: int) -> ShiftSchedule:
    return ShiftSchedule(check_int("shift_every", shift_every, 1), check_int("num_actions", num_actions, 2),
                         check_int("states_per_action", states_per_action, 1),
                         check_int("layout_seed", layout_seed, 0))


class _Shifting:
    """The clock and the current layout, shared by the single and the vector environment."""

    schedule: ShiftSchedule
    _clock: int
    _base_layout: BanditLayout

    @property
    def layout(self) -> BanditLayout:
        """The `BanditLayout` of the current phase (observations and visitation never change)."""
        return dataclasses.replace(self._base_layout, optimal_actions=self.schedule.optimal_actions(self._clock))

    @layout.setter
    def layout(self, value: BanditLayout) -> None:
        self._base_layout = value

    @property
    def clock(self) -> int:
        """``step`` calls since the last seeded reset."""
        return self._clock

    @property
    def phase(self) -> int:
        return self.schedule.phase(self._clock)


class ShiftingBandit(_Shifting, ActionBandit):
    """`ActionBandit` (balanced groups, uniform visitation) whose optimal actions are re-drawn every
    ``shift_every`` steps (see the module docstring).

    Args:
        num_actions, horizon, layout_seed: as in `ActionBandit` (``layout_seed`` also seeds the shifts).
        states_per_action: N / K. Hundreds of states in all make each re-labelling a real fitting problem (the
            network cannot keep a lookup table of a few states); fewer re-learn fast.
        obs, embedding_dim: as in `ActionBandit`, but dense by default (256 states in 32 dimensions: states
            share input directions, so a re-labelling fights what the features learned before).
        shift_every: steps between re-assignments. Short phases stress plasticity harder but leave less time to
            reach the optimum in each; the return after a shift shows how fast the agent re-learns.
        render_mode: must be None.
    """

    def __init__(self, *, num_actions: int = 4, states_per_action: int = 64, horizon: int = 16,
                 obs: str = "embedding", embedding_dim: int = 32, layout_seed: int = 0, shift_every: int = 2048,
                 render_mode: str | None = None) -> None:
        self.schedule = _schedule(num_actions, states_per_action, layout_seed, shift_every)
        self._clock = 0
        super().__init__(num_actions=num_actions, states_per_action=states_per_action, horizon=horizon, obs=obs,
                         embedding_dim=embedding_dim, layout_seed=layout_seed, render_mode=render_mode)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._clock = 0
        return super().reset(seed=seed, options=options)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._state < 0:
            raise RuntimeError("call reset() before step()")
        if self._t >= self._base_layout.horizon:
            raise RuntimeError("the episode is over (truncated at the horizon); call reset()")
        action = _single_action(action, self._base_layout.num_actions)
        reward = float(action == self.schedule.optimal_actions(self._clock)[self._state])
        self._clock += 1
        self._t += 1
        self._state = self._sample()
        obs, info = self._out()
        return obs, reward, False, self._t >= self._base_layout.horizon, info


class ShiftingBanditVectorEnv(_Shifting, ActionBanditVectorEnv):
    """`ShiftingBandit` x ``num_envs`` in numpy with NEXT_STEP autoreset; one clock for the vector env (one tick
    per ``step`` call). Parameters as `ShiftingBandit`, plus ``num_envs`` and ``max_episode_steps`` (as in
    `ActionBanditVectorEnv`)."""

    def __init__(self, num_envs: int = 1, *, num_actions: int = 4, states_per_action: int = 64, horizon: int = 16,
                 obs: str = "embedding", embedding_dim: int = 32, layout_seed: int = 0, shift_every: int = 2048,
                 max_episode_steps: int | None = None, render_mode: str | None = None) -> None:
        self.schedule = _schedule(num_actions, states_per_action, layout_seed, shift_every)
        self._clock = 0
        super().__init__(num_envs, num_actions=num_actions, states_per_action=states_per_action, horizon=horizon,
                         obs=obs, embedding_dim=embedding_dim, layout_seed=layout_seed,
                         max_episode_steps=max_episode_steps, render_mode=render_mode)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._clock = 0
        return super().reset(seed=seed, options=options)

    def _transition(self, states: np.ndarray, actions: np.ndarray, active: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = super()._transition(states, actions, active)  # rewarded under the labels of the current clock
        self._clock += 1  # the observations returned now are labelled under the next one
        return out
