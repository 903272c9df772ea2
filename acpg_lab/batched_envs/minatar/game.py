"""What every batched MinAtar game shares: the sticky-action coin, the action sets, and gymnasium's vector-env
bookkeeping (NEXT_STEP autoreset, an optional time limit), all as tensor ops over ``N`` environments.

minatar's ``Environment.act(a)`` first draws ``rand()``; below ``sticky_action_prob`` (default 0.1) the previous
action is repeated instead of ``a``. The previous action is the one actually played (in the full 6-action space:
``n l u r d f``), it starts at 0 ("no-op") when the environment is made and is *not* cleared by a reset, so it
carries over from one episode to the next. The gym wrapper's ``-v1`` ids act through the game's minimal action set
(Breakout ``n l r``, Asterix ``n l u r d``), ``-v0`` through all six.

gymnasium's sync vector env (what ``gym.make_vec`` builds for MinAtar) steps each environment; after an episode
ends, that environment's next step is a *reset step*: the action is ignored, no ``rand()`` is drawn, the game is
reset (Breakout draws its ball's side there), reward 0, flags False, and the first observation is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["Game", "VectorGames"]


class Game:
    """``N`` games of one kind; subclasses keep their state as ``[N, ...]`` tensors on ``device``."""

    channels: int
    minimal_actions: Sequence[int]  #: the game's minimal action set, in the full action space

    def __init__(self, *, num: int, streams: Streams, device: torch.device, ramping: bool = True) -> None:
        self.num, self.streams, self.device, self.ramping = num, streams, device, ramping
        self.rows = torch.arange(10, device=device)  #: row / column indices for building observations

    def reset(self, mask: torch.Tensor) -> None:
        """Start a new episode in the environments of ``mask`` (drawing from their streams only)."""
        raise NotImplementedError

    def act(self, action: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Play ``action`` (full action space) everywhere; draw randomness only for ``live`` environments. Returns
        (reward int64, terminal bool). The state of environments not ``live`` may change: they are reset next."""
        raise NotImplementedError

    def observe(self) -> torch.Tensor:
        """bool ``[N, 10, 10, channels]``, minatar's ``state()``."""
        raise NotImplementedError

    def _maybe(self, mask: torch.Tensor) -> bool:
        """Whether work for the environments in ``mask`` must be done: with a stream that allows host checks,
        whether any environment is in it (skipping no-ops on the CPU); otherwise always (no host read)."""
        return not self.streams.host_checks or bool(mask.any())

    def _cell(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """bool ``[N, 10, 10]``, True at ``(y, x)`` of each environment (nowhere if out of range)."""
        return (self.rows[:, None] == y[:, None, None]) & (self.rows == x[:, None, None])

    def get_state(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in vars(self).items()
                if isinstance(v, torch.Tensor) and k != "rows" and not k.startswith("_")}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            current = getattr(self, key)
            value = torch.as_tensor(value)
            if value.shape != current.shape:
                raise ValueError(f"{key} of shape {tuple(value.shape)} does not fit this game's {tuple(current.shape)}")
            setattr(self, key, value.to(current.device, current.dtype).clone())


class VectorGames:
    """gymnasium's sync vector env over ``N`` `Game` s: sticky actions, NEXT_STEP autoreset and a time limit."""

    def __init__(self, *, game: Game, sticky_action_prob: float = 0.1, minimal_action_set: bool = True,
                 max_episode_steps: int | None = None) -> None:
        self.game, self.sticky_action_prob, self.max_episode_steps = game, float(sticky_action_prob), max_episode_steps
        actions = list(game.minimal_actions) if minimal_action_set else list(range(6))
        self.action_set = torch.tensor(actions, dtype=torch.int64, device=game.device)
        self.last_action = torch.zeros(game.num, dtype=torch.int64, device=game.device)  #: never reset
        self.steps = torch.zeros(game.num, dtype=torch.int64, device=game.device)  #: steps into the episode
        self.prev_done = torch.zeros(game.num, dtype=torch.bool, device=game.device)  #: next step is a reset step

    def reset(self) -> torch.Tensor:
        """Reset every game (streams already seeded): observations bool ``[N, 10, 10, C]``."""
        self.game.reset(torch.ones_like(self.prev_done))
        self.steps.zero_()
        self.prev_done.zero_()
        return self.game.observe()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``actions`` int64 ``[N]`` (indices into the action set) -> observation, reward (float64), terminated,
        truncated; tensor ops only (no host synchronisation with the `CounterStreams`)."""
        resetting = self.prev_done
        live = ~resetting
        action = self.action_set[actions]
        sticky = self.game.streams.rand(live) < self.sticky_action_prob
        action = torch.where(sticky, self.last_action, action)
        self.last_action = torch.where(live, action, self.last_action)
        reward, terminal = self.game.act(action, live)
        if self.game._maybe(resetting):
            self.game.reset(resetting)
        self.steps = torch.where(resetting, 0, self.steps + 1)
        terminated = terminal & live
        if self.max_episode_steps is None:
            truncated = torch.zeros_like(terminated)
        else:
            truncated = (self.steps >= self.max_episode_steps) & live
        self.prev_done = terminated | truncated
        reward = torch.where(live, reward, 0).to(torch.float64)
        return self.game.observe(), reward, terminated, truncated

    def get_state(self) -> dict:
        return {"last_action": self.last_action.cpu().clone(), "steps": self.steps.cpu().clone(),
                "prev_done": self.prev_done.cpu().clone(), "streams": self.game.streams.get_state(),
                "game": {k: v.cpu() for k, v in self.game.get_state().items()}}

    def set_state(self, state: dict) -> None:
        for key in ("last_action", "steps", "prev_done"):
            current, value = getattr(self, key), torch.as_tensor(state[key])
            if value.shape != current.shape:
                raise ValueError(f"{key} of shape {tuple(value.shape)} does not fit these games' "
                                 f"{tuple(current.shape)}")
            setattr(self, key, value.to(current.device, current.dtype).clone())
        self.game.set_state(state["game"])
        self.game.streams.set_state(state["streams"])
