"""`IdealGrid`: a maze whose every cell has one optimal action and whose four action groups have equal size (the
sequential ideal setting, and the fixed-start variant that breaks exploration), its layout and vector version."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from acpg_lab.checks import check_choice, check_int, check_number
from acpg_lab.optimal_envs._base import (
    _check_options,
    _check_render_mode,
    _frozen,
    _KnownOptimum,
    _observation_space,
    _requested_states,
    _single_action,
    _VectorBase,
)

__all__ = ["ACTION_NAMES", "GridLayout", "grid_layout", "IdealGrid", "IdealGridVectorEnv"]

#: Grid actions, clockwise, so that rotating the grid by 90 degrees clockwise maps action a to (a + 1) % 4.
ACTION_NAMES = ("up", "right", "down", "left")
_MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)  # (d_row, d_col) per action
_ARROWS = "^>v<"


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
    check_choice("start", start, ("uniform", "fixed"))
    step_cost = check_number("step_cost", step_cost, minimum=0.0, strict=True)
    check_choice("obs", obs, ("onehot", "coords"))
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

    limit = 4 * n * n if max_steps is None else check_int("max_steps", max_steps, 1)
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
            cap = check_int("max_episode_steps", max_episode_steps, 1)
            if cap < layout.distances.max():
                raise ValueError(f"max_episode_steps must be >= {layout.distances.max()} (the longest "
                                 f"optimal path), got {max_episode_steps!r}")
            layout = dataclasses.replace(layout, max_steps=min(layout.max_steps, cap))
        self._setup(layout, limit=layout.max_steps, draw_probs=layout.start_probs, num_envs=num_envs,
                    render_mode=render_mode)

    def _allowed_starts(self) -> np.ndarray:
        return np.flatnonzero(np.arange(self.layout.num_states) != self.layout.goal)

    def _transition(self, states: np.ndarray, actions: np.ndarray, active: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nxt = states.copy()
        nxt[active] = self.layout.transitions[states[active], actions[active]]
        reward = np.full(self.num_envs, -self.layout.step_cost, dtype=np.float32)
        return nxt, reward, nxt == self.layout.goal
