"""Environments: id resolution (MinAtar and acpg_lab ids register themselves) and seed-batched vector envs.

Each seed owns its own gymnasium vector environment and random stream, so a seed's experience does not depend
on which other seeds share the batch. Gymnasium 1.x NEXT_STEP autoreset is used throughout: after a step that
ends an episode, the next step of that sub-environment is a *reset step* (action ignored, reward 0, the reset
observation returned); training masks those steps out.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

__all__ = ["resolve_env_id", "probe_spaces", "SeedEnvs", "make_vector_env"]


def _register_namespaces(env_id: str) -> None:
    if env_id.startswith("MinAtar/"):
        import minatar.gym

        if "MinAtar/Breakout-v1" not in gym.registry:
            minatar.gym.register_envs()
    elif env_id.startswith("acpg_lab/"):
        import acpg_lab.optimal_envs  # noqa: F401  (registers on import)


def resolve_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``; ValueError with close matches if there is none. Creates no env."""
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string, got {env_id!r}")
    _register_namespaces(env_id)
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(f"env_id={env_id!r} is not a registered gymnasium environment{hint}")
    return gym.spec(env_id)


def probe_spaces(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of one environment (made and closed at once)."""
    resolve_env_id(env_id)
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except TypeError as err:
        raise ValueError(f"env_kwargs={env_kwargs!r} were rejected by {env_id!r}: {err}") from err
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def make_vector_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies: gymnasium's native vector version where one exists, else sync."""
    spec = resolve_env_id(env_id)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **(env_kwargs or {}))


class SeedEnvs:
    """S independent vector environments (one per seed) stepped together; tensors are ``[S, E, ...]``.

    Tracks episode returns and lengths itself, so it does not depend on wrappers, and reports which steps were
    NEXT_STEP reset steps. If the environments publish ``info["optimal_action"]`` it is returned as labels.
    """

    def __init__(self, env_id: str, num_envs: int, env_seeds: Sequence[int], device: torch.device,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        self.envs = [make_vector_env(env_id, num_envs, env_kwargs) for _ in env_seeds]
        self.env_seeds = [int(s) for s in env_seeds]
        self.device = device
        self.num_seeds, self.num_envs = len(self.envs), num_envs
        self.single_observation_space = self.envs[0].single_observation_space
        self.ep_return = np.zeros((self.num_seeds, num_envs))
        self.ep_length = np.zeros((self.num_seeds, num_envs), dtype=np.int64)
        self.done = np.zeros((self.num_seeds, num_envs), dtype=bool)

    def _obs(self, obs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(obs).astype(np.float32, copy=False)).to(self.device)

    def _labels(self, infos: list[dict]) -> torch.Tensor | None:
        if "optimal_action" not in infos[0]:
            return None
        return torch.from_numpy(np.stack([np.asarray(i["optimal_action"]) for i in infos]).astype(np.int64))

    def reset(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = [env.reset(seed=seed) for env, seed in zip(self.envs, self.env_seeds, strict=True)]
        self.ep_return[:] = 0
        self.ep_length[:] = 0
        self.done[:] = False
        return self._obs([o for o, _ in out]), self._labels([i for _, i in out])

    def step(self, actions: torch.Tensor) -> dict[str, Any]:
        """Step every seed's envs with ``actions [S, E]``.

        Returns a dict with ``obs`` (next observations), ``reward``, ``terminated``, ``truncated`` (float
        tensors ``[S, E]``), ``reset_step`` (bool numpy ``[S, E]``: this step was an autoreset, not a real
        transition), ``ended`` (bool numpy ``[S, E]``: an episode ended on this step), ``labels`` (optimal actions of ``obs`` or None), and ``finished_returns`` /
        ``finished_lengths``: per seed, the returns and lengths of the episodes that ended on this step.
        """
        acts = actions.cpu().numpy()
        results = [env.step(a) for env, a in zip(self.envs, acts, strict=True)]
        obs, rew, term, trunc, infos = zip(*results, strict=True)
        reward = np.stack(rew).astype(np.float64)
        terminated, truncated = np.stack(term), np.stack(trunc)
        reset_step = self.done
        real = ~reset_step
        self.ep_return += np.where(real, reward, 0.0)
        self.ep_length += real
        ended = (terminated | truncated) & real
        finished_returns = [self.ep_return[s][ended[s]].copy() for s in range(self.num_seeds)]
        finished_lengths = [self.ep_length[s][ended[s]].copy() for s in range(self.num_seeds)]
        self.ep_return[ended] = 0.0
        self.ep_length[ended] = 0
        self.done = ended
        to = lambda x: torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.device)  # noqa: E731
        return dict(obs=self._obs(list(obs)), reward=to(reward), terminated=to(terminated & real),
                    truncated=to(truncated & real), reset_step=reset_step, ended=ended, labels=self._labels(list(infos)),
                    finished_returns=finished_returns, finished_lengths=finished_lengths)

    def close(self) -> None:
        for env in self.envs:
            env.close()
