"""`TrainState`: everything that changes while training, in one place: what `acpg_lab.training` advances and
what a checkpoint (`acpg_lab.checkpoint`) stores and restores."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from acpg_lab.config import TrainConfig
from acpg_lab.envs import SeedEnvs
from acpg_lab.networks import ActorCritic
from acpg_lab.nonfinite import NonFiniteGuard
from acpg_lab.recording import History, Instruments
from acpg_lab.rollout import Rollout
from acpg_lab.run import Run

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """Everything that changes while training: what a checkpoint stores (`acpg_lab.checkpoint`)."""

    cfg: TrainConfig
    model: ActorCritic
    optimizer: torch.optim.Optimizer
    generators: list[torch.Generator]
    envs: SeedEnvs
    rollout: Rollout
    instruments: Instruments
    history: History
    guard: NonFiniteGuard
    next_update: int = 0  #: updates done
    resumed_from: int = 0  #: the update a checkpoint was resumed at (0: trained from the start)
    start: float = 0.0  #: perf_counter of a fresh start, shifted back by the time trained before a resume

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def restart_clock(self, elapsed: float) -> None:
        self.start = time.perf_counter() - elapsed

    def run(self, interrupted: bool = False) -> Run:
        return Run(config=self.cfg, history=self.history.frame(), model=self.model, wall_time=self.elapsed(),
                   interrupted=interrupted, snapshots=self.instruments.snapshots,
                   probe_obs=self.instruments.probe_obs, resumed_from=self.resumed_from,
                   nonfinite=[dataclasses.asdict(e) for e in self.guard.events])
