"""What the known-optimal environments share: input checks, the observation box, the `_KnownOptimum` accessors
and `_VectorBase`, the NEXT_STEP autoreset bookkeeping of the numpy vector versions."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from acpg_lab.checks import check_int


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None:
        raise ValueError(f"render_mode must be None (these environments do not render; "
                         f"GridLayout.render_text() draws the grid), got {render_mode!r}")


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = {} if options is None else options
    if not isinstance(options, dict) or set(options) - {"state"}:
        raise ValueError(f"options must be None or a dict whose only key is 'state', got {options!r}")
    return options


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _observation_space(layout: Any) -> spaces.Box:
    """The tightest box: every observation is a row of the fixed table ([0, 1] one-hot, [-1, 1] coords)."""
    table = layout.observations
    return spaces.Box(table.min(0), table.max(0), shape=table.shape[1:], dtype=np.float32)



class _KnownOptimum:
    """Accessors shared by all environments here (reach them through ``env.unwrapped``)."""

    layout: Any  # a BanditLayout or GridLayout

    @property
    def optimal_return(self) -> float:
        """Expected return of the optimal policy per episode (exact; see the layout)."""
        return self.layout.optimal_return

    @property
    def optimal_actions(self) -> np.ndarray:
        """``[num_states]``: the optimal action of every state (-1 where there is none)."""
        return self.layout.optimal_actions

    def _out(self) -> tuple[np.ndarray, dict[str, Any]]:
        """A single environment's observation of its current state ``self._state`` and its info."""
        return (self.layout.observations[self._state].copy(),
                {"optimal_action": int(self.layout.optimal_actions[self._state]), "state": self._state})


def _single_action(action: Any, num_actions: int) -> int:
    ok = isinstance(action, int | np.integer) and not isinstance(action, bool)
    if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
        ok = True
    if not ok or not 0 <= int(action) < num_actions:
        raise ValueError(f"action must be an integer in [0, {num_actions}), got {action!r}")
    return int(action)


def _vector_actions(actions: Any, num_envs: int, num_actions: int, active: np.ndarray) -> np.ndarray:
    a = np.asarray(actions)
    if a.shape != (num_envs,) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"actions must be an integer array of shape ({num_envs},), got {actions!r}")
    bad = active & ((a < 0) | (a >= num_actions))
    if bad.any():
        raise ValueError(f"actions must lie in [0, {num_actions}) for sub-environments that are not "
                         f"resetting; got {a[bad].tolist()} at indices {np.flatnonzero(bad).tolist()}")
    return a.astype(np.int64)


def _requested_states(value: Any, count: int, allowed: np.ndarray) -> np.ndarray:
    """States asked for by ``options={"state": ...}``: one int or one per environment, each in ``allowed``."""
    states = np.broadcast_to(np.asarray(value), (count,)) if np.ndim(value) == 0 else np.asarray(value)
    ok = states.shape == (count,) and np.issubdtype(states.dtype, np.integer)
    if not ok or not np.isin(states, allowed).all():
        raise ValueError(f"options['state'] must be an integer (or {count} integers) in {allowed.tolist()}, "
                         f"got {value!r}")
    return states.astype(np.int64)


def _vector_info(layout: Any, states: np.ndarray) -> dict[str, Any]:
    mask = np.ones(states.shape[0], dtype=np.bool_)
    return {"optimal_action": layout.optimal_actions[states], "_optimal_action": mask,
            "state": states.copy(), "_state": mask}


class _VectorBase(_KnownOptimum, VectorEnv[npt.NDArray[np.float32], npt.NDArray[np.int64], np.ndarray]):
    """NEXT_STEP autoreset bookkeeping shared by the two vector environments."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}
    _limit: int  # steps after which an episode is truncated
    _draw_probs: np.ndarray  # distribution of the states `_sample` draws

    def _setup(self, layout: Any, *, limit: int, draw_probs: np.ndarray, num_envs: int,
               render_mode: str | None) -> None:
        self.layout, self._limit, self._draw_probs = layout, limit, draw_probs
        self.num_envs = check_int("num_envs", num_envs, 1)
        _check_render_mode(render_mode)
        self.render_mode = None
        self.single_observation_space = _observation_space(self.layout)
        self.single_action_space = spaces.Discrete(self.layout.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._states: np.ndarray | None = None
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._prev_done = np.zeros(self.num_envs, dtype=np.bool_)

    def _sample(self, count: int) -> np.ndarray:
        """``count`` states drawn from ``_draw_probs`` (starts of new episodes; the bandit's every next state)."""
        return self.np_random.choice(self.layout.num_states, size=count, p=self._draw_probs)

    def _allowed_starts(self) -> np.ndarray:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Start a new episode in every sub-environment; ``options={"state": s}`` (an int or ``[num_envs]``
        ints) starts them in chosen states instead of sampled ones (later autoresets sample again)."""
        super().reset(seed=seed)
        options = _check_options(options)
        if "state" in options:
            self._states = _requested_states(options["state"], self.num_envs, self._allowed_starts())
        else:
            self._states = self._sample(self.num_envs)
        self._steps[:] = 0
        self._prev_done[:] = False
        return self.layout.observations[self._states], _vector_info(self.layout, self._states)

    def _transition(self, states: np.ndarray, actions: np.ndarray, active: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def step(self, actions: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                                                           npt.NDArray[np.bool_], npt.NDArray[np.bool_],
                                                           dict[str, Any]]:
        """Step every sub-environment; one that ended its episode on the previous step is reset instead."""
        if self._states is None:
            raise RuntimeError("call reset() before step()")
        resetting = self._prev_done
        actions = _vector_actions(actions, self.num_envs, self.layout.num_actions, ~resetting)
        states, reward, terminated = self._transition(self._states, actions, ~resetting)
        self._steps += 1
        truncated = self._steps >= self._limit
        if resetting.any():
            states[resetting] = self._sample(int(resetting.sum()))
            self._steps[resetting] = 0
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
        self._states = states
        self._prev_done = terminated | truncated
        return (self.layout.observations[states], reward, terminated, truncated,
                _vector_info(self.layout, states))
