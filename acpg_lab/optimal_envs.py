"""Environments whose optimal action is known in every state, for watching action collapse happen (or not).

Action collapse (arXiv 2509.02737) was seen without a fixed ETF head only under three conditions: (1) a
discrete, fully explored state space, (2) balanced optimal-action groups (each action optimal in equally many
states) and (3) uniform state visitation. The environments here meet all three by default, and each
registered variant breaks exactly one of them:

======================================== ==================================================================
id                                       setting
======================================== ==================================================================
``acpg_lab/ActionBandit-v0``             all three conditions hold (exactly uniform visitation)
``acpg_lab/ActionBandit-imbalanced-v0``  (2) broken: action k is optimal in about exp(-k) of the states
``acpg_lab/ActionBandit-zipf-v0``        (3) broken: states shown with Zipf frequencies inside each group
``acpg_lab/IdealGrid-v0``                sequential version of the ideal setting, with exploring starts
``acpg_lab/IdealGrid-fixedstart-v0``     (1) broken: one fixed start, so an agent sees only its own path
======================================== ==================================================================

Every environment returns ``info["optimal_action"]`` for the observation it has just returned (from
``reset`` and from every ``step``; an int for a single environment, an int64 array ``[num_envs]`` for a
vector one), and ``info["state"]``, the index of that state. The one observation without an optimal action
is IdealGrid's goal (the terminal observation, on which no action is ever taken): its label is -1.

Each environment has a native numpy vector version (``...VectorEnv``) with gymnasium 1.x NEXT_STEP
autoreset: the step after an episode ends is a reset step that ignores the action (it is not even
validated), returns the reset observation, reward 0 and terminated = truncated = False.
``reset(seed=...)`` seeds one ``np.random.Generator`` that drives all sub-environments.

Importing this module registers the ids (`register_envs`), so ``gymnasium.make(id, **kwargs)`` and
``gymnasium.make_vec(id, num_envs, vectorization_mode="vector_entry_point", **kwargs)`` both work and pass
their keyword arguments to the constructors. Episode lengths are the environments' own (``horizon``,
``max_steps``), not a registered time limit, so changing them through kwargs is safe. What is known about the
optimum lives in ``env.unwrapped.layout`` (`BanditLayout`, `GridLayout`): the optimal action and the
observation of every state, the visitation distribution, the optimal return.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = [
    "ENV_IDS",
    "ACTION_NAMES",
    "BanditLayout",
    "GridLayout",
    "bandit_layout",
    "grid_layout",
    "ActionBandit",
    "ActionBanditVectorEnv",
    "IdealGrid",
    "IdealGridVectorEnv",
    "register_envs",
]

#: Grid actions, clockwise, so that rotating the grid by 90 degrees clockwise maps action a to (a + 1) % 4.
ACTION_NAMES = ("up", "right", "down", "left")
_MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)  # (d_row, d_col) per action
_ARROWS = "^>v<"

#: Registered ids -> (class name, constructor kwargs); one id per broken condition.
ENV_IDS: dict[str, tuple[str, dict[str, Any]]] = {
    "acpg_lab/ActionBandit-v0": ("ActionBandit", {}),
    "acpg_lab/ActionBandit-imbalanced-v0": ("ActionBandit", {"imbalance": 1.0}),
    "acpg_lab/ActionBandit-zipf-v0": ("ActionBandit", {"visitation": "zipf", "zipf_exponent": 1.0}),
    "acpg_lab/IdealGrid-v0": ("IdealGrid", {}),
    "acpg_lab/IdealGrid-fixedstart-v0": ("IdealGrid", {"start": "fixed"}),
}


# ----------------------------------------------------------------------------------------------------------
# validation helpers


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


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


# ----------------------------------------------------------------------------------------------------------
# layouts: everything fixed about an environment, shared by its single and vector versions


@dataclasses.dataclass(frozen=True, eq=False)
class BanditLayout:
    """What is fixed about an `ActionBandit`: the optimal action, visitation probability and observation of
    every state. States are numbered group by group: the first ``group_sizes[0]`` states have optimal
    action 0, and so on. Arrays are read-only."""

    num_actions: int
    horizon: int
    optimal_actions: np.ndarray
    """``[N]`` int64: the optimal (reward 1) action of each state."""
    state_probs: np.ndarray
    """``[N]`` float64: probability that a given observation shows each state (any policy, any step)."""
    observations: np.ndarray
    """``[N, obs_dim]`` float32: the observation of each state (feed it to a network to get every feature)."""

    @property
    def num_states(self) -> int:
        return int(self.optimal_actions.shape[0])

    @property
    def group_sizes(self) -> np.ndarray:
        """``[K]``: the number of states in which each action is optimal."""
        return np.bincount(self.optimal_actions, minlength=self.num_actions)

    @property
    def oracle_visitation(self) -> np.ndarray:
        """``[N]``: the share of decisions taken in each state (equal to ``state_probs`` for every policy)."""
        return self.state_probs.copy()

    @property
    def optimal_return(self) -> float:
        """Return of the optimal policy in every episode: ``horizon`` (reward 1 at each step)."""
        return float(self.horizon)

    @property
    def random_return(self) -> float:
        """Expected return of the uniformly random policy: ``horizon / K``."""
        return self.horizon / self.num_actions


def _group_sizes(num_states: int, num_actions: int, imbalance: float) -> np.ndarray:
    """Sizes proportional to exp(-imbalance * k) after giving every group one state (largest remainders)."""
    weights = np.exp(-imbalance * np.arange(num_actions))
    extra = num_states - num_actions
    share = extra * weights / weights.sum()
    sizes = np.floor(share + 1e-9).astype(np.int64)
    order = np.argsort(-(share - sizes), kind="stable")
    sizes[order[: extra - int(sizes.sum())]] += 1
    return sizes + 1


def bandit_layout(*, num_actions: int = 4, states_per_action: int = 8, horizon: int = 16,
                  imbalance: float = 0.0, visitation: str = "uniform", zipf_exponent: float = 1.0,
                  obs: str = "onehot", embedding_dim: int = 16, layout_seed: int = 0) -> BanditLayout:
    """Validate `ActionBandit` parameters and build its `BanditLayout` (`ActionBandit` explains them)."""
    k = _check_int("num_actions", num_actions, 2)
    n = k * _check_int("states_per_action", states_per_action, 1)
    horizon = _check_int("horizon", horizon, 1)
    imbalance = _check_float("imbalance", imbalance, minimum=0.0, strict=False)
    _check_choice("visitation", visitation, ("uniform", "zipf"))
    zipf_exponent = _check_float("zipf_exponent", zipf_exponent, minimum=0.0, strict=True)
    _check_choice("obs", obs, ("onehot", "embedding"))
    embedding_dim = _check_int("embedding_dim", embedding_dim, 1)
    layout_seed = _check_int("layout_seed", layout_seed, 0)

    sizes = _group_sizes(n, k, imbalance)
    labels = np.repeat(np.arange(k, dtype=np.int64), sizes)
    rank = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # position of a state inside its group
    within = np.ones(n) if visitation == "uniform" else (rank + 1.0) ** -zipf_exponent
    # Visitation only redistributes mass inside a group: every group keeps the mass size/N it has under
    # uniform visitation, so "zipf" breaks uniform state visitation without changing how often each action
    # is the optimal one.
    probs = within / np.bincount(labels, weights=within)[labels] * sizes[labels] / n
    if obs == "onehot":
        table = np.eye(n, dtype=np.float32)
    else:
        table = np.random.default_rng(layout_seed).standard_normal((n, embedding_dim)).astype(np.float32)
    return BanditLayout(num_actions=k, horizon=horizon, optimal_actions=_frozen(labels),
                        state_probs=_frozen(probs), observations=_frozen(table))


@dataclasses.dataclass(frozen=True, eq=False)
class GridLayout:
    """What is fixed about an `IdealGrid`: the maze, the optimal action and observation of every cell, the
    start distribution. State s is the cell (row, col) = divmod(s, size); the goal is the centre cell. Arrays
    are read-only."""

    size: int
    step_cost: float
    max_steps: int
    transitions: np.ndarray
    """``[N, 4]`` int64: the state reached by each action (the same state when a wall is in the way)."""
    optimal_actions: np.ndarray
    """``[N]`` int64: the unique optimal action of each state, -1 for the goal."""
    distances: np.ndarray
    """``[N]`` int64: steps from each state to the goal under the optimal policy."""
    start_probs: np.ndarray
    """``[N]`` float64: the start distribution."""
    observations: np.ndarray
    """``[N, obs_dim]`` float32: the observation of each state."""

    num_actions = 4

    @property
    def num_states(self) -> int:
        """size * size, the goal included."""
        return self.size * self.size

    @property
    def goal(self) -> int:
        return self.num_states // 2

    @property
    def group_sizes(self) -> np.ndarray:
        """``[4]``: the number of non-goal states in which each action is optimal."""
        return np.bincount(self.optimal_actions[self.optimal_actions >= 0], minlength=4)

    @property
    def optimal_values(self) -> np.ndarray:
        """``[N]``: the optimal return from each state, ``-step_cost * distance`` (0 at the goal)."""
        return -self.step_cost * self.distances.astype(np.float64)

    @property
    def optimal_return(self) -> float:
        """Expected return of the optimal policy under the start distribution."""
        return float(self.start_probs @ self.optimal_values)

    @property
    def oracle_visitation(self) -> np.ndarray:
        """``[N]``: the share of decisions the optimal policy takes in each state (0 at the goal and in every
        state off its paths from the possible starts). Not uniform even with exploring starts: states near the
        goal lie on more paths."""
        visits = np.zeros(self.num_states)
        for start in np.flatnonzero(self.start_probs):
            s = int(start)
            while s != self.goal:
                visits[s] += self.start_probs[start]
                s = int(self.transitions[s, self.optimal_actions[s]])
        return visits / visits.sum()

    def render_text(self, state: int | None = None) -> str:
        """The maze as text: walls ``|`` and ``-``, the optimal action of each cell as ``^ > v <``, the goal
        ``G``, and ``@`` on ``state`` if one is given."""
        n, t = self.size, self.transitions

        def wall(s: int, a: int, neighbour: int, back: int) -> bool:  # no move either way between the two
            return neighbour >= n * n or (t[s, a] != neighbour and t[neighbour, back] != s)

        rows = ["+" + "-+" * n]
        for r in range(n):
            cells, floor = "|", "+"
            for c in range(n):
                s = r * n + c
                mark = "G" if s == self.goal else _ARROWS[self.optimal_actions[s]]
                cells += ("@" if s == state else mark) + ("|" if c == n - 1 or wall(s, 1, s + 1, 3) else " ")
                floor += ("-" if wall(s, 2, s + n, 0) else " ") + "+"
            rows += [cells, floor]
        return "\n".join(rows)


def _pinwheel_actions(size: int) -> dict[tuple[int, int], int]:
    """Optimal action of every non-centre cell of the pinwheel maze (see `IdealGrid`)."""
    m, n = size // 2, size
    # The quarter above the goal, rows 0..m-1 and columns 0..m: its rows run right, its column m runs down.
    quarter = {(r, c): (2 if c == m else 1) for r in range(m) for c in range(m + 1)}
    actions = {}
    for cell, a in quarter.items():
        for turn in range(4):
            actions[cell] = (a + turn) % 4
            cell = (cell[1], n - 1 - cell[0])  # rotate 90 degrees clockwise about the centre
    return actions


def grid_layout(*, size: int = 5, start: str = "uniform", fixed_start: Sequence[int] = (0, 0),
                step_cost: float = 1.0, max_steps: int | None = None, obs: str = "onehot") -> GridLayout:
    """Validate `IdealGrid` parameters and build its `GridLayout` (see `IdealGrid` for the meaning)."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3 (the goal is the centre cell), got {size!r}")
    n = int(size)
    _check_choice("start", start, ("uniform", "fixed"))
    step_cost = _check_float("step_cost", step_cost, minimum=0.0, strict=True)
    _check_choice("obs", obs, ("onehot", "coords"))
    num_states, goal = n * n, (n * n) // 2
    ok = isinstance(fixed_start, Sequence) and len(fixed_start) == 2
    ok = ok and all(isinstance(x, int | np.integer) and not isinstance(x, bool) and 0 <= x < n
                    for x in fixed_start)
    if not ok or fixed_start[0] * n + fixed_start[1] == goal:
        raise ValueError(f"fixed_start must be a (row, col) pair of integers in [0, {n}) other than the goal "
                         f"({n // 2}, {n // 2}), got {fixed_start!r}")

    # Transitions: a move succeeds only along a corridor of the maze (a tree edge); otherwise the agent stays.
    parent = _pinwheel_actions(n)
    edges = set()
    for (r, c), a in parent.items():
        dr, dc = _MOVES[a]
        edges.add(frozenset((r * n + c, (r + dr) * n + c + dc)))
    transitions = np.empty((num_states, 4), dtype=np.int64)
    for s in range(num_states):
        r, c = divmod(s, n)
        for a, (dr, dc) in enumerate(_MOVES):
            target = (r + dr) * n + c + dc
            inside = 0 <= r + dr < n and 0 <= c + dc < n
            transitions[s, a] = target if inside and s != goal and frozenset((s, target)) in edges else s

    # Shortest distances by value iteration on the transition table, then a check that the optimum is unique
    # and is the action the maze was built from.
    dist = np.full(num_states, np.inf)
    dist[goal] = 0.0
    for _ in range(num_states):
        new = np.minimum(dist, 1.0 + dist[transitions].min(1))
        new[goal] = 0.0
        if np.array_equal(new, dist):
            break
        dist = new
    succ = dist[transitions]
    labels = np.where(np.arange(num_states) == goal, -1, succ.argmin(1)).astype(np.int64)
    ties = (succ == succ.min(1, keepdims=True)).sum(1)
    built = {r * n + c: a for (r, c), a in parent.items()}
    if not np.isfinite(dist).all() or any(ties[s] != 1 or labels[s] != a for s, a in built.items()):
        raise RuntimeError(f"internal error: the size-{n} maze does not have unique optimal actions")
    distances = dist.astype(np.int64)

    limit = 4 * n * n if max_steps is None else _check_int("max_steps", max_steps, 1)
    if limit < distances.max():
        raise ValueError(f"max_steps must be >= {distances.max()} (the longest optimal path, so that the "
                         f"optimal policy reaches the goal from every start), got {max_steps!r}")
    starts = np.zeros(num_states)
    if start == "uniform":
        starts[np.arange(num_states) != goal] = 1.0 / (num_states - 1)
    else:
        starts[fixed_start[0] * n + fixed_start[1]] = 1.0
    if obs == "onehot":
        table = np.eye(num_states, dtype=np.float32)
    else:
        rows, cols = np.divmod(np.arange(num_states), n)
        table = (np.stack([rows, cols], 1) * (2.0 / (n - 1)) - 1.0).astype(np.float32)
    return GridLayout(size=n, step_cost=step_cost, max_steps=limit, transitions=_frozen(transitions),
                      optimal_actions=_frozen(labels), distances=_frozen(distances),
                      start_probs=_frozen(starts), observations=_frozen(table))


def _observation_space(layout: BanditLayout | GridLayout) -> spaces.Box:
    """The tightest box: every observation is a row of the fixed table ([0, 1] one-hot, [-1, 1] coords)."""
    table = layout.observations
    return spaces.Box(table.min(0), table.max(0), shape=table.shape[1:], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# shared environment logic


class _KnownOptimum:
    """Accessors shared by all environments here (reach them through ``env.unwrapped``)."""

    layout: BanditLayout | GridLayout

    @property
    def optimal_return(self) -> float:
        """Expected return of the optimal policy per episode (exact; see the layout)."""
        return self.layout.optimal_return

    @property
    def optimal_actions(self) -> np.ndarray:
        """``[num_states]``: the optimal action of every state (-1 where there is none)."""
        return self.layout.optimal_actions


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


def _vector_info(layout: BanditLayout | GridLayout, states: np.ndarray) -> dict[str, Any]:
    mask = np.ones(states.shape[0], dtype=np.bool_)
    return {"optimal_action": layout.optimal_actions[states], "_optimal_action": mask,
            "state": states.copy(), "_state": mask}


class _VectorBase(_KnownOptimum, VectorEnv[npt.NDArray[np.float32], npt.NDArray[np.int64], np.ndarray]):
    """NEXT_STEP autoreset bookkeeping shared by the two vector environments."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}
    _limit: int  # steps after which an episode is truncated

    def _setup(self, num_envs: int, render_mode: str | None) -> None:
        self.num_envs = _check_int("num_envs", num_envs, 1)
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
        raise NotImplementedError

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


# ----------------------------------------------------------------------------------------------------------
# ActionBandit


class ActionBandit(_KnownOptimum, gym.Env[np.ndarray, int]):
    """A contextual bandit with K actions and a known optimal action per state, played for ``horizon`` steps.

    Every step shows a state drawn independently from the visitation distribution (``layout.state_probs``);
    reward 1 if the action is that state's optimal action, else 0. Observation: ``Box`` float32 of dim N
    (one-hot) or ``embedding_dim``; action: ``Discrete(K)``. ``reset(options={"state": s})`` shows state s
    first. The exact setting of conditions (1)-(3): every state is seen under any policy, the groups are
    balanced and visitation is uniform unless ``imbalance`` or ``visitation`` say otherwise.

    Args:
        num_actions: K, the number of actions.
        states_per_action: N / K; the bandit has N = K * states_per_action states whatever the imbalance.
            More states per action give the within-group variability something to collapse (with one state
            per action every group is trivially collapsed) at the price of more samples to see them all.
        horizon: decisions per episode (then truncated, never terminated); the optimal return is exactly
            ``horizon`` and a random policy's ``horizon / K``. Only sets how returns and episodes are counted:
            the next state never depends on the action.
        imbalance: 0 gives balanced groups (each action optimal in ``states_per_action`` states); > 0 gives
            action k about a share exp(-imbalance * k) of the N states, at least one each (K = 4, N = 32,
            imbalance 1 gives 19 / 8 / 3 / 2). Under uniform visitation the groups' visitation shares follow
            the same sizes.
        visitation: "uniform" shows every state with probability 1/N. "zipf" makes visitation non-uniform
            inside each group (the i-th state of a group weighs (i + 1) ** -zipf_exponent) while every group
            keeps the total share it has under "uniform", so it breaks uniform visitation alone, not balance.
        zipf_exponent: how skewed "zipf" is; with 8 states per group, 1 makes the most shown state of a
            group 8 times as frequent as the least, 2 makes it 64 times (rare states are then barely seen,
            which starts to break exploration too). Ignored by "uniform".
        obs: "onehot" (dim N: every state orthogonal, nothing shared between states) or "embedding" (a
            fixed Gaussian vector per state, dim ``embedding_dim``, unit variance per coordinate: states of
            one group share nothing visible, the network has to group them itself).
        embedding_dim: dimension of "embedding" observations. From N - 1 up, any labelling of the N random
            points is linearly separable (with a bias); below, in general it is not, so a small dimension
            makes the backbone work for the grouping.
        layout_seed: seed of the embedding table, so that every instance with the same parameters (every
            sub-environment, every training seed) shows the same observations. Not the episode seed.
        render_mode: must be None (no rendering)."""

    metadata = {"render_modes": []}

    def __init__(self, *, num_actions: int = 4, states_per_action: int = 8, horizon: int = 16,
                 imbalance: float = 0.0, visitation: str = "uniform", zipf_exponent: float = 1.0,
                 obs: str = "onehot", embedding_dim: int = 16, layout_seed: int = 0,
                 render_mode: str | None = None) -> None:
        _check_render_mode(render_mode)
        self.layout = bandit_layout(num_actions=num_actions, states_per_action=states_per_action,
                                    horizon=horizon, imbalance=imbalance, visitation=visitation,
                                    zipf_exponent=zipf_exponent, obs=obs, embedding_dim=embedding_dim,
                                    layout_seed=layout_seed)
        self.observation_space = _observation_space(self.layout)
        self.action_space = spaces.Discrete(num_actions)
        self._state, self._t = -1, 0

    def _sample(self) -> int:
        return int(self.np_random.choice(self.layout.num_states, p=self.layout.state_probs))

    def _out(self) -> tuple[np.ndarray, dict[str, Any]]:
        return (self.layout.observations[self._state].copy(),
                {"optimal_action": int(self.layout.optimal_actions[self._state]), "state": self._state})

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = _check_options(options)
        if "state" in options:
            self._state = int(_requested_states(options["state"], 1, np.arange(self.layout.num_states))[0])
        else:
            self._state = self._sample()
        self._t = 0
        return self._out()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._state < 0:
            raise RuntimeError("call reset() before step()")
        if self._t >= self.layout.horizon:
            raise RuntimeError("the episode is over (truncated at the horizon); call reset()")
        action = _single_action(action, self.layout.num_actions)
        reward = float(action == self.layout.optimal_actions[self._state])
        self._t += 1
        self._state = self._sample()
        obs, info = self._out()
        return obs, reward, False, self._t >= self.layout.horizon, info


class ActionBanditVectorEnv(_VectorBase):
    """`ActionBandit` x ``num_envs`` in numpy, with NEXT_STEP autoreset (see the module docstring).

    Same parameters as `ActionBandit`, plus ``num_envs`` and ``max_episode_steps``: a time limit (what
    ``gymnasium.make_vec(..., max_episode_steps=T)`` passes) that caps ``horizon`` as gymnasium's TimeLimit
    wrapper does for the single environment; ``layout.horizon`` and ``optimal_return`` include the cap.
    Observations ``[num_envs, obs_dim]`` float32, rewards float32, ``info["optimal_action"]`` and
    ``info["state"]`` int64 ``[num_envs]`` (with the usual all-True ``_optimal_action`` / ``_state`` masks).
    """

    def __init__(self, num_envs: int = 1, *, num_actions: int = 4, states_per_action: int = 8,
                 horizon: int = 16, imbalance: float = 0.0, visitation: str = "uniform",
                 zipf_exponent: float = 1.0, obs: str = "onehot", embedding_dim: int = 16,
                 layout_seed: int = 0, max_episode_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        layout = bandit_layout(num_actions=num_actions, states_per_action=states_per_action, horizon=horizon,
                               imbalance=imbalance, visitation=visitation, zipf_exponent=zipf_exponent,
                               obs=obs, embedding_dim=embedding_dim, layout_seed=layout_seed)
        if max_episode_steps is not None:
            cap = _check_int("max_episode_steps", max_episode_steps, 1)
            layout = dataclasses.replace(layout, horizon=min(layout.horizon, cap))
        self.layout = layout
        self._limit = layout.horizon
        self._setup(num_envs, render_mode)

    def _sample(self, count: int) -> np.ndarray:
        return self.np_random.choice(self.layout.num_states, size=count, p=self.layout.state_probs)

    def _allowed_starts(self) -> np.ndarray:
        return np.arange(self.layout.num_states)

    def _transition(self, states: np.ndarray, actions: np.ndarray, active: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reward = (actions == self.layout.optimal_actions[states]).astype(np.float32)
        return self._sample(self.num_envs), reward, np.zeros(self.num_envs, dtype=np.bool_)


# ----------------------------------------------------------------------------------------------------------
# IdealGrid


class IdealGrid(_KnownOptimum, gym.Env[np.ndarray, int]):
    """An "ideal" grid world in the spirit of the paper's ideal Cliff Walking: every state has one optimal
    action and every action is optimal in the same number of states.

    Why a maze: in an open grid every cell off the goal's row and column has two shortest moves, so its
    optimal action is not unique. Here walls make the corridors a tree rooted at the goal (the centre cell),
    so each cell has exactly one shortest path; and the tree is a pinwheel, unchanged by a 90 degree rotation
    about the goal, which maps the cells of each action group onto the next group's, so the four groups have
    exactly (n * n - 1) / 4 cells. Each quarter is a comb: its rows run into a spine that runs to the goal.
    For the default size 5 (``layout.render_text()``)::

        +-+-+-+-+-+
        |> > v|v|v|
        +-+-+ + + +
        |> > v|v|v|
        +-+-+ + + +
        |> > G < <|
        + + + +-+-+
        |^|^|^ < <|
        + + + +-+-+
        |^|^|^ < <|
        +-+-+-+-+-+

    Moves are deterministic; a move into a wall or the border leaves the agent in place (and costs a step).
    Actions 0-3 are up, right, down, left (`ACTION_NAMES`); observation ``Box`` float32 of dim n * n (one-hot)
    or 2 (coords). Reaching the goal terminates the episode, returning the goal's observation with
    ``info["optimal_action"] = -1``; ``max_steps`` truncates. ``optimal_return`` is the expected optimal
    return under the start distribution (``layout.optimal_values`` per start); ``reset(options={"state": s})``
    starts in non-goal state s.

    Args:
        size: side n of the grid (odd, >= 3): n * n - 1 non-goal states, (n * n - 1) / 4 per action. 5 gives
            24 states and optimal paths of 1 to 4 steps; larger grids give longer credit assignment and more
            states per group.
        start: "uniform" (exploring starts: every non-goal state equally likely, so every state is seen even
            by a deterministic policy) or "fixed" (always ``fixed_start``: once the policy is good it only
            visits its own path, the poor exploration blamed for the missing collapse in Atari games).
        fixed_start: (row, col) of the "fixed" start; the default corner (0, 0) has the longest path, 4 states
            (> > v v) of the 24 on a 5 x 5 grid, two of the four actions.
        step_cost: reward -step_cost per step, the step into the goal included; > 0 so that the shortest path
            is optimal (for any discount factor). Only scales returns.
        max_steps: steps before truncation (default 4 * size**2); must be at least the longest optimal path.
            Short limits end the wandering of a bad early policy sooner but give fewer successful episodes.
        obs: "onehot" (dim n * n) or "coords" ((row, col) scaled to [-1, 1], dim 2; the goal is (0, 0)):
            neighbouring cells then look alike, so the four groups must be carved out of a continuous input.
        render_mode: must be None (use ``layout.render_text()``)."""

    metadata = {"render_modes": []}

    def __init__(self, *, size: int = 5, start: str = "uniform", fixed_start: Sequence[int] = (0, 0),
                 step_cost: float = 1.0, max_steps: int | None = None, obs: str = "onehot",
                 render_mode: str | None = None) -> None:
        _check_render_mode(render_mode)
        self.layout = grid_layout(size=size, start=start, fixed_start=fixed_start, step_cost=step_cost,
                                  max_steps=max_steps, obs=obs)
        self.observation_space = _observation_space(self.layout)
        self.action_space = spaces.Discrete(4)
        self._state, self._t, self._done = -1, 0, True

    def _out(self) -> tuple[np.ndarray, dict[str, Any]]:
        return (self.layout.observations[self._state].copy(),
                {"optimal_action": int(self.layout.optimal_actions[self._state]), "state": self._state})

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = _check_options(options)
        layout = self.layout
        if "state" in options:
            allowed = np.flatnonzero(np.arange(layout.num_states) != layout.goal)
            self._state = int(_requested_states(options["state"], 1, allowed)[0])
        else:
            self._state = int(self.np_random.choice(layout.num_states, p=layout.start_probs))
        self._t, self._done = 0, False
        return self._out()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("call reset() before step() (at the start and after an episode ends)")
        action = _single_action(action, 4)
        self._state = int(self.layout.transitions[self._state, action])
        self._t += 1
        terminated = self._state == self.layout.goal
        truncated = self._t >= self.layout.max_steps
        self._done = terminated or truncated
        obs, info = self._out()
        return obs, -self.layout.step_cost, terminated, truncated, info


class IdealGridVectorEnv(_VectorBase):
    """`IdealGrid` x ``num_envs`` in numpy, with NEXT_STEP autoreset (see the module docstring).

    Same parameters as `IdealGrid`, plus ``num_envs`` and ``max_episode_steps``: a time limit (what
    ``gymnasium.make_vec(..., max_episode_steps=T)`` passes) that caps ``max_steps`` as gymnasium's TimeLimit
    wrapper does for the single environment (``layout.max_steps`` includes the cap). Observations
    ``[num_envs, obs_dim]`` float32, rewards float32, ``info["optimal_action"]`` and ``info["state"]`` int64
    ``[num_envs]`` (with the usual all-True ``_optimal_action`` / ``_state`` masks).
    """

    def __init__(self, num_envs: int = 1, *, size: int = 5, start: str = "uniform",
                 fixed_start: Sequence[int] = (0, 0), step_cost: float = 1.0, max_steps: int | None = None,
                 obs: str = "onehot", max_episode_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        layout = grid_layout(size=size, start=start, fixed_start=fixed_start, step_cost=step_cost,
                             max_steps=max_steps, obs=obs)
        if max_episode_steps is not None:
            cap = _check_int("max_episode_steps", max_episode_steps, 1)
            if cap < layout.distances.max():
                raise ValueError(f"max_episode_steps must be >= {layout.distances.max()} (the longest "
                                 f"optimal path), got {max_episode_steps!r}")
            layout = dataclasses.replace(layout, max_steps=min(layout.max_steps, cap))
        self.layout = layout
        self._limit = layout.max_steps
        self._setup(num_envs, render_mode)

    def _sample(self, count: int) -> np.ndarray:
        return self.np_random.choice(self.layout.num_states, size=count, p=self.layout.start_probs)

    def _allowed_starts(self) -> np.ndarray:
        return np.flatnonzero(np.arange(self.layout.num_states) != self.layout.goal)

    def _transition(self, states: np.ndarray, actions: np.ndarray, active: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nxt = states.copy()
        nxt[active] = self.layout.transitions[states[active], actions[active]]
        reward = np.full(self.num_envs, -self.layout.step_cost, dtype=np.float32)
        return nxt, reward, nxt == self.layout.goal


# ----------------------------------------------------------------------------------------------------------
# registration


def register_envs() -> None:
    """Register the ids of `ENV_IDS` with gymnasium (idempotent: ids already registered are left alone).

    Each id has an ``entry_point`` (the single environment) and a ``vector_entry_point`` (the numpy vector
    environment) and no registered time limit: episode lengths are the constructors' own parameters.
    """
    for env_id, (name, kwargs) in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=f"{__name__}:{name}",
                     vector_entry_point=f"{__name__}:{name}VectorEnv", kwargs=dict(kwargs))


register_envs()
