"""`ActionBandit`: a contextual bandit whose optimal action is known in every state (the paper's ideal setting
and the variants that break balance or uniform visitation), its layout and its numpy vector version."""

from __future__ import annotations

import dataclasses
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

__all__ = ["BanditLayout", "bandit_layout", "ActionBandit", "ActionBanditVectorEnv"]



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
    k = check_int("num_actions", num_actions, 2)
    n = k * check_int("states_per_action", states_per_action, 1)
    horizon = check_int("horizon", horizon, 1)
    imbalance = check_number("imbalance", imbalance, minimum=0.0, strict=False)
    check_choice("visitation", visitation, ("uniform", "zipf"))
    zipf_exponent = check_number("zipf_exponent", zipf_exponent, minimum=0.0, strict=True)
    check_choice("obs", obs, ("onehot", "embedding"))
    embedding_dim = check_int("embedding_dim", embedding_dim, 1)
    layout_seed = check_int("layout_seed", layout_seed, 0)

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
            cap = check_int("max_episode_steps", max_episode_steps, 1)
            layout = dataclasses.replace(layout, horizon=min(layout.horizon, cap))
        self._setup(layout, limit=layout.horizon, draw_probs=layout.state_probs, num_envs=num_envs,
                    render_mode=render_mode)

    def _allowed_starts(self) -> np.ndarray:
        return np.arange(self.layout.num_states)

    def _transition(self, states: np.ndarray, actions: np.ndarray, active: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reward = (actions == self.layout.optimal_actions[states]).astype(np.float32)
        return self._sample(self.num_envs), reward, np.zeros(self.num_envs, dtype=np.bool_)
