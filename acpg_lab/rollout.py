"""What one rollout holds: `Rollout` (``[T, S, E, ...]``, as collected) and `Batch` (``[S, N, ...]``, as the update
reads it). Plain containers of tensors, shared by the loop (`acpg_lab.training`), what it records
(`acpg_lab.recording`) and the checkpoint (through `acpg_lab.state.TrainState`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from acpg_lab.config import TrainConfig

__all__ = ["Rollout", "Batch", "EpisodeLog"]

#: per seed, the returns and the lengths of the episodes that ended in a rollout, in the order they ended
Episodes = tuple[list[np.ndarray], list[np.ndarray]]


@dataclass
class EpisodeLog:
    """A rollout's episode ends as the device-resident path records them, ``[T, S, E]`` on the training device:
    where an episode ended, its return (float64) and length (int64). Read to the host in one transfer, by
    `per_seed`, after the rollout (so the steps themselves never wait for the host)."""

    ended: Tensor
    returns: Tensor
    lengths: Tensor

    def per_seed(self) -> Episodes:
        """Per seed, the ended episodes' returns and lengths in time order (environment order within a step),
        as the host path lists them."""
        ended, returns, lengths = torch.stack((self.ended.to(torch.float64), self.returns,
                                               self.lengths.to(torch.float64))).cpu().numpy()
        ended = ended.astype(bool)
        return ([returns[:, s][ended[:, s]] for s in range(ended.shape[1])],
                [lengths[:, s][ended[:, s]].astype(np.int64) for s in range(ended.shape[1])])


@dataclass
class Rollout:
    """T steps of S seeds x E environments, ``[T, S, E, ...]``, refilled in place by `collect_rollout`."""

    obs: Tensor
    actions: Tensor
    logp: Tensor  #: log-probability of the sampled action under the behaviour policy
    logits: Tensor  #: ``[T, S, E, K]`` behaviour policy's logits
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    valid: Tensor  #: 0 on NEXT_STEP reset steps (no transition: masked out of every loss)
    values: Tensor  #: ``[T + 1, S, E]``: V of each state and of the state after the rollout (0 without a critic)
    labels: Tensor  #: the environment's optimal action, where it publishes one
    next_obs: Tensor  #: where the next rollout starts
    next_labels: Tensor | None
    preacts: Tensor | None = None  #: `pfo_features` at collection time (PFO, diagnostics), allocated on first use
    keep_preacts: bool = False
    #: the episodes that ended in the rollout (`episode_returns`, `episode_lengths`); an `EpisodeLog` still on the
    #: device until first read
    episodes: Episodes | EpisodeLog | None = None

    def _episodes(self) -> Episodes:
        if self.episodes is None:
            raise ValueError("no rollout has been collected into this Rollout yet")
        if isinstance(self.episodes, EpisodeLog):
            self.episodes = self.episodes.per_seed()
        return self.episodes

    @property
    def episode_returns(self) -> list[np.ndarray]:
        """Per seed, returns of the episodes that ended in the rollout."""
        return self._episodes()[0]

    @property
    def episode_lengths(self) -> list[np.ndarray]:
        """Per seed, their lengths."""
        return self._episodes()[1]

    @classmethod
    def allocate(cls, cfg: TrainConfig, obs_shape: Sequence[int], num_actions: int, device: torch.device,
                 first_obs: Tensor, first_labels: Tensor | None) -> Rollout:
        shape = (cfg.rollout_steps, len(cfg.seeds), cfg.num_envs)

        def zeros(*trailing: int, dtype: torch.dtype = torch.float32, steps: int = shape[0]) -> Tensor:
            return torch.zeros((steps, *shape[1:], *trailing), dtype=dtype, device=device)

        return cls(obs=zeros(*obs_shape), actions=zeros(dtype=torch.long), logp=zeros(), logits=zeros(num_actions),
                   rewards=zeros(), terminated=zeros(), truncated=zeros(), valid=zeros(),
                   values=zeros(steps=shape[0] + 1), labels=zeros(dtype=torch.long), next_obs=first_obs,
                   next_labels=first_labels,
                   keep_preacts=cfg.pfo_coef > 0 or cfg.diagnostics_every > 0)

    def flat(self, x: Tensor) -> Tensor:
        """``[T, S, E, ...] -> [S, T * E, ...]``: a seed's samples side by side, as the update reads them."""
        return x.transpose(0, 1).reshape(x.shape[1], x.shape[0] * x.shape[2], *x.shape[3:])



class Batch(NamedTuple):
    """What the update trains on: one rollout flattened to ``[S, N, ...]`` with its advantages."""

    obs: Tensor
    actions: Tensor
    logp: Tensor
    advantages: Tensor
    returns: Tensor
    mask: Tensor
    preacts: Tensor | None

    @classmethod
    def from_rollout(cls, rollout: Rollout, adv: Tensor, returns: Tensor, mask: Tensor) -> Batch:
        r = rollout
        return cls(*(r.flat(x) for x in (r.obs, r.actions, r.logp, adv, returns, mask)),
                   r.flat(r.preacts) if r.keep_preacts else None)

    def minibatches(self, size: int) -> Minibatches:
        """The update's minibatches of ``size`` samples per seed (`Minibatches`)."""
        return Minibatches(self, size)


class Minibatches:
    """The minibatches of one `Batch`, gathered into buffers allocated once per update.

    Each tensor is viewed once as ``[S * N, ...]``; each epoch's order ``[S, N]`` (each seed its own permutation) is
    turned once into flat row indices, laid out minibatch by minibatch; a minibatch is then one ``index_select``
    per tensor into its buffer (the same rows as ``x[seed, idx]``, ~3x faster than that). The buffers are refilled
    by the next minibatch: the update finishes each step's backward before it asks for the next one.
    """

    def __init__(self, batch: Batch, size: int) -> None:
        self.num_seeds, self.n = batch.obs.shape[:2]
        self.size, self.count = size, self.n // size
        self.rows = [None if x is None else x.reshape(self.num_seeds * self.n, *x.shape[2:]) for x in batch]
        self.buffers = [None if x is None else x.new_empty(self.num_seeds * size, *x.shape[1:]) for x in self.rows]
        self.offsets = self.n * torch.arange(self.num_seeds, device=batch.obs.device).unsqueeze(1)

    def epoch(self, order: Tensor) -> Iterator[Batch]:
        """The minibatches of one pass in ``order [S, N]``: samples ``order[:, k * size:(k + 1) * size]``."""
        s, size, used = self.num_seeds, self.size, self.count * self.size
        flat = (order[:, :used] + self.offsets).view(s, self.count, size).transpose(0, 1).contiguous()
        for idx in flat.view(self.count, s * size):
            yield Batch(*(None if x is None else torch.index_select(x, 0, idx, out=buf).view(s, size, *x.shape[1:])
                          for x, buf in zip(self.rows, self.buffers, strict=True)))
