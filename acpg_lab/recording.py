"""What training records beyond its losses: `Instruments` (diagnostics at their cadence, actor snapshots, the
plasticity probe's batch, the untrained null) and `History` (one row per seed and update, kept as columns).

Both are called by `acpg_lab.training` at fixed points of the loop and never inside the update, so they cannot
change what is trained; both save and restore their state for checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from acpg_lab.config import TrainConfig
from acpg_lab.diagnostics import diagnose
from acpg_lab.networks import ActorCritic
from acpg_lab.rollout import Batch, Rollout
from acpg_lab.run import compact_obs

__all__ = ["Instruments", "History", "episode_stats"]


class Instruments:
    """What training records beyond its losses, called at two points of the loop and never inside the update:
    `start` (the untrained actor's snapshot) and `after_update` (diagnostics at their cadence, actor snapshots,
    the plasticity probe's batch)."""

    def __init__(self, cfg: TrainConfig, model: ActorCritic, expert: torch.nn.Module | None) -> None:
        self.cfg, self.model, self.expert = cfg, model, expert
        self.snapshots: dict[int, dict[str, Tensor] | Path] = {}
        self.probe_obs: Tensor | None = None  # the first rollout's states: the initial policy's
        # the untrained actor, frozen: the null of the diagnostics (cfg.diagnostics_null)
        self.null_actor = copy.deepcopy(model.actor).requires_grad_(False) if cfg.diagnostics_null else None

    def start(self) -> None:
        if self.cfg.snapshot_every:
            self._keep_snapshot(0)

    def after_update(self, index: int, rollout: Rollout, batch: Batch) -> dict[str, Tensor]:
        """Metrics to log for update ``index`` (empty when no diagnostics are due)."""
        cfg, row = self.cfg, {}
        if cfg.snapshot_every and self.probe_obs is None:
            self.probe_obs = batch.obs.detach().cpu().clone()
        if cfg.diagnostics_every and (index % cfg.diagnostics_every == 0 or index == cfg.num_updates - 1):
            row = diagnose(self.model, cfg=cfg, obs=batch.obs, actions=batch.actions, old_logp=batch.logp,
                           old_logits=rollout.flat(rollout.logits), old_preacts=batch.preacts,
                           labels=rollout.flat(rollout.labels), valid=rollout.flat(rollout.valid),
                           expert=self.expert, null_actor=self.null_actor,
                           advantages=batch.advantages, train_mask=batch.mask)
        if cfg.snapshot_every and (index + 1) % cfg.snapshot_every == 0:
            self._keep_snapshot((index + 1) * cfg.batch_size)
        return row

    def state_dict(self) -> dict[str, Any]:
        """Snapshots kept so far (state dicts, or paths of files) and the probe batch, for a checkpoint."""
        return {"memory": {k: v for k, v in self.snapshots.items() if not isinstance(v, Path)},
                "files": {k: str(v) for k, v in self.snapshots.items() if isinstance(v, Path)},
                "probe_obs": None if self.probe_obs is None else compact_obs(self.probe_obs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        snapshots = {**state["memory"], **{k: Path(v) for k, v in state["files"].items()}}
        self.snapshots = dict(sorted(snapshots.items()))
        self.probe_obs = None if state["probe_obs"] is None else state["probe_obs"].float()

    def _keep_snapshot(self, step: int) -> None:
        state = {k: v.detach().cpu().clone() for k, v in self.model.actor.state_dict().items()}
        if self.cfg.snapshot_dir is None:
            self.snapshots[step] = state
            return
        path = Path(self.cfg.snapshot_dir) / f"actor_step{step:09d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        self.snapshots[step] = path


class History:
    """One row per (seed, update), kept as columns; a metric an update did not log (diagnostics) is NaN."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds, self.columns = tuple(seeds), {}
        self.rows = 0

    def log(self, **values: Any) -> None:
        nan = np.full(len(self.seeds), np.nan)
        for key, value in values.items():
            arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
            column = self.columns.setdefault(key, [nan] * self.rows)
            column.append(np.broadcast_to(arr, (len(self.seeds),)).astype(np.float64))
        self.rows += 1
        for column in self.columns.values():
            if len(column) < self.rows:
                column.append(nan)

    def state_dict(self) -> dict[str, Any]:
        """The columns so far as ``[rows, S]`` float64 tensors (in logging order), for a checkpoint."""
        return {"rows": self.rows, "names": list(self.columns),
                "values": [torch.from_numpy(np.stack(v)) for v in self.columns.values()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = int(state["rows"])
        self.columns = {name: list(values.numpy()) for name, values in zip(state["names"], state["values"],
                                                                            strict=True)}

    def recent_return(self, updates: int = 10) -> str:
        """Mean training return of the episodes of the last ``updates`` updates, for the progress bar."""
        recent = np.concatenate(self.columns["episode_return"][-updates:])
        recent = recent[np.isfinite(recent)]
        return f"{recent.mean():.1f}" if len(recent) else "n/a"

    def frame(self) -> pd.DataFrame:
        history = pd.DataFrame({k: np.stack(v, 1).reshape(-1) for k, v in self.columns.items()})
        history.insert(0, "seed", np.repeat(np.array(self.seeds), self.rows))
        for col in ("update", "step", "episodes"):
            if col in history:
                history[col] = history[col].astype(np.int64)
        return history


def episode_stats(rollout: Rollout) -> dict[str, list[float]]:
    """Per seed: mean return and length of the episodes that ended in the rollout (NaN if none), their number."""
    return dict(episode_return=[x.mean() if len(x) else np.nan for x in rollout.episode_returns],
                episode_length=[x.mean() if len(x) else np.nan for x in rollout.episode_lengths],
                episodes=[len(x) for x in rollout.episode_returns])
