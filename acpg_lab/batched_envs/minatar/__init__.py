"""MinAtar games written in torch: all seeds' environments stepped as one batch of tensor ops.

Each game (``breakout.py``, ``asterix.py``, ``freeway.py``, ``space_invaders.py``, ``seaquest.py``) keeps its state
as ``[N, ...]`` tensors, ``N`` = seeds x environments, and reproduces minatar's own game step for step;
``game.py`` adds what minatar's ``Environment`` wrapper and gymnasium's sync vector env add (sticky actions,
action sets, NEXT_STEP autoreset, an optional time limit), and ``streams.py`` the random numbers. On the CPU the
numbers are exactly the ones minatar draws from each environment's ``RandomState(seed + e)`` (what
``gym.make_vec(id, E).reset(seed=seed)`` seeds), so `BatchedMinAtar` is a drop-in, bitwise-equal replacement for
``SeedEnvs``' gymnasium path; on another device the games run on sync-free counter-based streams instead (the
same games, different numbers).

Batched: all five games, ``MinAtar/<Game>-v0`` and ``-v1``, with the ``env_kwargs`` ``sticky_action_prob``,
``difficulty_ramping``, ``max_episode_steps`` and ``use_minimal_action_set``; with any other kwargs `supports`
says no and ``SeedEnvs`` uses gymnasium. ``SeedEnvs`` picks the games of `DEFAULT_GAMES` by itself; Seaquest
(about 350 small tensor ops a step) is slower than gymnasium on the CPU at tens of environments (2 ms against
0.5 ms a step at 8 seeds x 8 envs), so it is there for `BatchedMinAtar`/`make_games` users (large batches, GPUs)
only: ``supports(env_id, all_games=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from acpg_lab.batched_envs import BatchedEnv
from acpg_lab.batched_envs.minatar.asterix import Asterix
from acpg_lab.batched_envs.minatar.breakout import Breakout
from acpg_lab.batched_envs.minatar.freeway import Freeway
from acpg_lab.batched_envs.minatar.game import Game, VectorGames
from acpg_lab.batched_envs.minatar.seaquest import Seaquest
from acpg_lab.batched_envs.minatar.space_invaders import SpaceInvaders
from acpg_lab.batched_envs.minatar.streams import CounterStreams, RandomStateStreams, Streams

__all__ = ["GAMES", "DEFAULT_GAMES", "BatchedMinAtar", "supports", "make_games", "make_streams"]

#: MinAtar ids' game names -> batched game
GAMES: dict[str, type[Game]] = {"Breakout": Breakout, "Asterix": Asterix, "Freeway": Freeway,
                                 "SpaceInvaders": SpaceInvaders, "Seaquest": Seaquest}
#: the games `SeedEnvs` uses batched by default (as fast as gymnasium on the CPU at tens of environments, or faster)
DEFAULT_GAMES = frozenset({"Breakout", "Asterix", "Freeway", "SpaceInvaders"})
_KWARGS = {"sticky_action_prob", "difficulty_ramping", "max_episode_steps", "use_minimal_action_set"}


def _game(env_id: str) -> type[Game] | None:
    if not env_id.startswith("MinAtar/"):
        return None
    name, _, version = env_id[len("MinAtar/"):].rpartition("-")
    return GAMES.get(name) if version in ("v0", "v1") else None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and bool(np.isfinite(x))


def supports(env_id: str, env_kwargs: dict[str, Any] | None = None, *, all_games: bool = False) -> bool:
    """Whether ``env_id`` (a MinAtar id) with ``env_kwargs`` has a batched torch version that `SeedEnvs` should
    use: one of `DEFAULT_GAMES`, or of all `GAMES` with ``all_games``."""
    kwargs = env_kwargs or {}
    game = _game(env_id)
    if game is None or not set(kwargs) <= _KWARGS:
        return False
    if not all_games and game.__name__ not in DEFAULT_GAMES:
        return False
    steps = kwargs.get("max_episode_steps")
    return ((steps is None or (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1))
            and _is_number(kwargs.get("sticky_action_prob", 0.1))
            and isinstance(kwargs.get("difficulty_ramping", True), bool)
            and isinstance(kwargs.get("use_minimal_action_set", True), bool))


def make_streams(*, env_seeds: Sequence[int], num_envs: int, device: torch.device, exact: bool) -> Streams:
    """Environment ``e`` of seed ``s``: ``RandomState(s + e)`` draws (``exact``, CPU only), else a counter stream
    keyed by ``(s, e)``."""
    if exact:
        if torch.device(device).type != "cpu":
            raise ValueError(f"exact (RandomState) streams live on the CPU, not {device}")
        return RandomStateStreams(seeds=[int(s) + e for s in env_seeds for e in range(num_envs)])
    return CounterStreams(keys=[(int(s) << 32) + e for s in env_seeds for e in range(num_envs)], device=device)


def make_games(env_id: str, *, num: int, streams: Streams, device: torch.device,
               env_kwargs: dict[str, Any] | None = None) -> VectorGames:
    """`VectorGames` of ``num`` games of ``env_id`` on ``device``, configured as ``gym.make(env_id, **env_kwargs)``."""
    if not supports(env_id, env_kwargs, all_games=True):
        raise ValueError(f"env_id={env_id!r} with env_kwargs={env_kwargs!r} has no batched MinAtar version")
    kwargs = {**gym.spec(env_id).kwargs, **(env_kwargs or {})} if env_id in gym.registry else dict(env_kwargs or {})
    minimal = kwargs.get("use_minimal_action_set", env_id.endswith("-v1"))
    game = _game(env_id)(num=num, streams=streams, device=device, ramping=kwargs.get("difficulty_ramping", True))
    return VectorGames(game=game, sticky_action_prob=kwargs.get("sticky_action_prob", 0.1),
                       minimal_action_set=minimal, max_episode_steps=kwargs.get("max_episode_steps"))


class BatchedMinAtar(BatchedEnv):
    """``S`` seeds x ``E`` environments of a MinAtar id as a `BatchedEnv` (numpy in and out, ``[S, E, ...]``):
    bool observations ``[S, E, 10, 10, C]``, float64 rewards, bool flags, as ``np.stack`` of each seed's
    ``gym.make_vec(env_id, E)`` gives. The games run on ``device``; ``exact`` (the default on the CPU) draws
    minatar's own random numbers."""

    def __init__(self, *, env_id: str, num_envs: int, env_seeds: Sequence[int],
                 env_kwargs: dict[str, Any] | None = None, device: torch.device | str = "cpu",
                 exact: bool | None = None) -> None:
        import minatar.gym

        if "MinAtar/Breakout-v1" not in gym.registry:
            minatar.gym.register_envs()
        kwargs = dict(env_kwargs or {})
        steps = kwargs.pop("max_episode_steps", None)
        probe = gym.make(env_id, **kwargs)
        try:
            spaces = probe.observation_space, probe.action_space
        finally:
            probe.close()
        super().__init__(num_envs, env_seeds, steps or 0, *spaces)
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        self.device = torch.device(device)
        self.exact = self.device.type == "cpu" if exact is None else bool(exact)
        num = self.num_seeds * num_envs
        self.games = make_games(env_id, num=num, streams=self._streams(), device=self.device, env_kwargs=env_kwargs)

    def _streams(self) -> Streams:
        return make_streams(env_seeds=self.env_seeds, num_envs=self.num_envs, device=self.device, exact=self.exact)

    def _numpy(self, x: torch.Tensor) -> np.ndarray:
        return self._shape(x.cpu().numpy())

    def reset(self) -> tuple[np.ndarray, None]:
        self.games.game.streams = self._streams()
        return self._numpy(self.games.reset()), None

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, None]:
        action = torch.as_tensor(np.asarray(actions).reshape(-1), dtype=torch.int64).to(self.device)
        obs, reward, terminated, truncated = self.games.step(action)
        return self._numpy(obs), self._numpy(reward), self._numpy(terminated), self._numpy(truncated), None

    def get_state(self) -> dict[str, Any]:
        return {"games": self.games.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.games.set_state(state["games"])
