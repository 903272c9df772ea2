"""Device-resident environments: every seed's environments stepped with tensor ops on the tensors' device.

A `DeviceEnv` takes actions ``[S, E]`` as a tensor on its device and returns observations, rewards (float64),
terminated/truncated flags (bool) and labels as tensors on the same device, never reading a value back to the
host, so a CUDA rollout does not synchronise with the CPU inside its steps. The code is the same on the CPU and on
CUDA; the CPU runs it too (tests, and ``SeedEnvs(..., resident=True)``).

Its random numbers come from per-environment counter-based streams (`CounterStreams`: SplitMix64 of the
environment's key and a draw counter, keyed by ``(seed, environment index)``), so a seed's numbers do not depend
on its batch-mates and every device gives the same numbers. They are *not* gymnasium's numbers: the exact
(gymnasium-equal) path is the numpy `BatchedEnv` of the same id. What the device versions share with it is the
dynamics, which ``tests/test_device_envs.py`` compares step for step, reset states injected from the numpy side.

| ids | device version |
|---|---|
| ``CartPole-v0/-v1``, ``Acrobot-v1`` | ``torch_classic.py`` |
| ``acpg_lab/...`` (the known-optimal environments) | ``torch_known_optimal.py`` |
| ``MinAtar/<Game>-v0/-v1``, all five games | `MinAtarOnDevice` here, over ``minatar/``'s `VectorGames` |

Each device version is built from the numpy `BatchedEnv` of the same id and arguments (`make_device_env`), which
knows the spaces, the time limit and the layouts; the numpy environment itself is never stepped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from acpg_lab.batched_envs import BatchedEnv, count_steps, make_batched_env, minatar, supports
from acpg_lab.batched_envs.minatar import make_streams
from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["DeviceEnv", "MinAtarOnDevice", "make_device_env", "supports_device", "restore_tensors"]


def restore_tensors(owner: object, state: dict[str, Any], names: Sequence[str]) -> None:
    """Set each attribute ``names[i]`` of ``owner`` (a tensor) to ``state[name]`` (a tensor or array of the same
    shape), on the attribute's device and in its dtype; ValueError naming the attribute if a shape differs."""
    for key in names:
        current, value = getattr(owner, key), torch.as_tensor(state[key])
        if value.shape != current.shape:
            raise ValueError(f"{key} of shape {tuple(value.shape)} does not fit this environment's "
                             f"{tuple(current.shape)}")
        setattr(owner, key, value.to(current.device, current.dtype).clone())


class DeviceEnv:
    """``S`` seeds x ``E`` environments stepped as tensor ops on ``device``; tensors are ``[S, E, ...]``.

    gymnasium 1.x NEXT_STEP semantics, as `BatchedEnv`: the step after an episode ends resets that environment
    (action ignored, reward 0, flags False) and returns its reset observation. Subclasses implement `_reset`
    (the environments in a mask), `_step` (the dynamics of every environment) and `observe`.
    """

    def __init__(self, *, host: BatchedEnv, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.num_seeds, self.num_envs, self.env_seeds = host.num_seeds, host.num_envs, list(host.env_seeds)
        self.max_episode_steps = host.max_episode_steps
        self.single_observation_space = host.single_observation_space
        self.single_action_space = host.single_action_space
        n = self.num_seeds * self.num_envs
        self.steps = torch.zeros(n, dtype=torch.int64, device=self.device)  #: steps into the current episode
        self.prev_done = torch.zeros(n, dtype=torch.bool, device=self.device)  #: this step is a reset step
        self._everyone = torch.ones(n, dtype=torch.bool, device=self.device)
        self.streams = self._make_streams()

    def _make_streams(self) -> Streams:
        """One counter stream per environment, environment ``e`` of seed ``s`` keyed ``(s << 32) + e`` (the MinAtar
        games' device streams)."""
        return make_streams(env_seeds=self.env_seeds, num_envs=self.num_envs, device=self.device, exact=False)

    def reset(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Key every stream from ``env_seeds`` afresh and reset all environments: observations and labels."""
        self.streams = self._make_streams()
        self.steps.zero_()
        self.prev_done.zero_()
        self._reset(self._everyone)
        return self.observe()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor | None]:
        """``actions [S, E]`` (int, on this device) -> observations, rewards (float64), terminated, truncated (bool),
        labels (int64 or None), all ``[S, E, ...]`` on this device; tensor ops only."""
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, this environment on {self.device}")
        reward, terminated = self._step(actions.reshape(-1))
        reset, terminated, truncated = self._count_steps(terminated)
        self._reset(reset)
        reward = torch.where(reset, 0.0, reward.to(torch.float64))
        obs, labels = self.observe()
        return obs, self._shape(reward), self._shape(terminated), self._shape(truncated), labels

    def _count_steps(self, terminated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The time limit and NEXT_STEP bookkeeping (`count_steps`, as tensor ops): returns (reset mask, terminated,
        truncated), both flags False on reset steps."""
        self.steps, reset, terminated, truncated, self.prev_done = count_steps(
            self.steps, self.prev_done, terminated, self.max_episode_steps, xp=torch)
        return reset, terminated, truncated

    def _reset(self, mask: torch.Tensor) -> None:
        """Draw a fresh episode's state for the environments in ``mask`` (from their own streams only)."""
        raise NotImplementedError

    def _step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every environment by ``action [N]``: (reward ``[N]``, terminated bool ``[N]``)."""
        raise NotImplementedError

    def observe(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Observations ``[S, E, ...]`` of the current states, and their labels (None where none are published)."""
        raise NotImplementedError

    def _shape(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.num_seeds, self.num_envs, *x.shape[1:])

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """The subclass's own state tensors by attribute name (what `get_state` saves besides the bookkeeping)."""
        return {}

    def get_state(self) -> dict[str, Any]:
        """Everything an exact continuation needs, as CPU tensors (reads the device: not for inside a rollout)."""
        tensors = {"steps": self.steps, "prev_done": self.prev_done, **self._state_tensors()}
        return {**{k: v.cpu().clone() for k, v in tensors.items()}, "streams": self.streams.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned into an environment of the same ids, sizes and seeds."""
        restore_tensors(self, state, ("steps", "prev_done", *self._state_tensors()))
        self.streams.set_state(state["streams"])

    def close(self) -> None:
        pass


class MinAtarOnDevice(DeviceEnv):
    """The torch MinAtar games (`acpg_lab.batched_envs.minatar`) on their counter streams, as a `DeviceEnv`: bool
    observations ``[S, E, 10, 10, C]``. The games keep their own NEXT_STEP bookkeeping (`VectorGames`)."""

    def __init__(self, *, host: BatchedEnv, device: torch.device | str) -> None:
        if host.exact or host.device != torch.device(device):
            raise ValueError(f"MinAtarOnDevice needs a BatchedMinAtar on {device} with counter streams (exact=False)")
        super().__init__(host=host, device=device)
        self.games = host.games

    def reset(self) -> tuple[torch.Tensor, None]:
        self.streams = self.games.game.streams = self._make_streams()
        return self._shape(self.games.reset()), None

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, None]:
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, this environment on {self.device}")
        obs, reward, terminated, truncated = self.games.step(actions.reshape(-1))
        return self._shape(obs), self._shape(reward), self._shape(terminated), self._shape(truncated), None

    def get_state(self) -> dict[str, Any]:
        return {"games": self.games.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.games.set_state(state["games"])


def supports_device(env_id: str, env_kwargs: dict[str, Any] | None = None) -> bool:
    """Whether ``env_id`` with ``env_kwargs`` has a device version: the ids `supports` batches, and every MinAtar
    game (Seaquest included: what is slow on the CPU at tens of environments is what a GPU is for)."""
    if env_id.startswith("MinAtar/"):
        return minatar.supports(env_id, env_kwargs, all_games=True)
    return supports(env_id, env_kwargs)


def make_device_env(env_id: str, *, num_envs: int, env_seeds: Sequence[int], device: torch.device | str,
                    env_kwargs: dict[str, Any] | None = None) -> DeviceEnv:
    """The `DeviceEnv` of ``len(env_seeds)`` seeds x ``num_envs`` environments of ``env_id`` on ``device``;
    ValueError naming the id where it has none (`supports_device`)."""
    if not supports_device(env_id, env_kwargs):
        raise ValueError(f"env_id={env_id!r} with env_kwargs={env_kwargs!r} has no device-resident version "
                         "(CartPole, Acrobot, the acpg_lab/ ids and MinAtar have)")
    if env_id.startswith("MinAtar/"):
        host = minatar.BatchedMinAtar(env_id=env_id, num_envs=num_envs, env_seeds=env_seeds, env_kwargs=env_kwargs,
                              device=device, exact=False)
        return MinAtarOnDevice(host=host, device=device)
    host = make_batched_env(env_id, num_envs, env_seeds, env_kwargs)
    if env_id.startswith("acpg_lab/"):
        from acpg_lab.batched_envs.torch_known_optimal import TorchKnownOptimal

        return TorchKnownOptimal(host=host, device=device)
    from acpg_lab.batched_envs.torch_classic import TorchAcrobot, TorchCartPole

    return (TorchAcrobot if env_id.startswith("Acrobot") else TorchCartPole)(host=host, device=device)
