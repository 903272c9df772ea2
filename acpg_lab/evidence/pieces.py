"""Pieces on disk: one condition x one seed group, trained once, stored atomically under ``results/evidence/``
and loaded back for the tables.

A piece is written file by file atomically (`acpg_lab.store`), ``meta.json`` last: it marks the piece finished, so
an interrupted run loses at most the piece in progress and the next call trains only what is missing. Per piece:
``history.parquet`` (every per-seed, per-update column, float32), ``evaluation.csv`` (greedy and sampled returns
of every seed on 10 unseen episodes each), ``plasticity.csv`` where the condition keeps snapshots, and
``meta.json`` (the resolved config, versions, wall time), and last ``manifest.json`` (every file's size and
SHA-256, `acpg_lab.manifest`). A stored piece is reused only for the very same config. A piece is trained and
written under its directory's lock (`acpg_lab.lock`: a second process on the same piece fails at once, naming the
first), and the loaders verify every piece against its manifest, naming a missing, truncated or corrupted file;
pieces stored before manifests existed load unverified (a note on the logger ``acpg_lab.store`` at INFO, once per
evidence root).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from acpg_lab.config import TrainConfig
from acpg_lab.evidence.conditions import EXPERIMENTS
from acpg_lab.evidence.plan import plan_hash
from acpg_lab.lock import directory_lock
from acpg_lab.manifest import declares_manifest, verify, write_manifest
from acpg_lab.profiles import repository_root
from acpg_lab.ray_tasks import run_tasks
from acpg_lab.store import (
    MANIFEST,
    MARKERS,
    IntegrityError,
    check_stored_config,
    is_finished,
    read_json,
    read_stored,
    read_stored_config,
    write_atomic,
    write_atomic_with,
)
from acpg_lab.training import train

__all__ = ["PIECE", "evidence_dir", "piece_dir", "piece_config", "run_piece", "run_experiment", "complete",
           "stored_pieces", "verified_pieces", "load_condition", "load_probes", "stored_config"]


PIECE = MARKERS["piece"][0]  #: the file a finished piece writes last


def _head_commit() -> str | None:
    """The repository's HEAD commit when the piece was trained (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository_root(), capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def evidence_dir(root: str | Path | None = None) -> Path:
    """``results/evidence`` of the repository (or under ``root``)."""
    return Path(root) if root is not None else repository_root() / "results" / "evidence"


def piece_dir(root: Path, experiment: str, condition: str, seeds: Sequence[int]) -> Path:
    return root / experiment / condition / f"seeds_{seeds[0]}-{seeds[-1]}"


def _compact(history: pd.DataFrame, max_rows_per_seed: int = 1000) -> pd.DataFrame:
    """The stored form of a history: float64 columns as float32 (far finer than any difference between seeds),
    and runs of more than ``max_rows_per_seed`` updates (A2C's thousands of small updates) averaged over blocks
    of consecutive updates: each stored row is then a block, with ``update``/``step`` of its last update, the
    NaN-ignoring mean of every statistic and the sum of ``episodes``."""
    updates = int(history["update"].max()) + 1
    if updates > max_rows_per_seed:
        block = -(-updates // max_rows_per_seed)
        keys = [history["seed"], history["update"] // block]
        means = history.drop(columns=["seed", "update", "step", "episodes"]).groupby(keys).mean()
        last = history.groupby(keys)[["update", "step"]].max()
        episodes = history.groupby(keys)["episodes"].sum()
        history = pd.concat([last, episodes, means], axis=1).droplevel(1).reset_index()
    return history.astype({c: np.float32 for c in history.columns if history[c].dtype == np.float64})


def piece_config(experiment: str, condition: str, seeds: tuple[int, ...]) -> TrainConfig:
    """The config one piece trains (on the CPU, with the condition's checkpoints)."""
    cond = EXPERIMENTS[experiment][condition]
    return TrainConfig(**cond.config, seeds=seeds, device="cpu", checkpoint_every=cond.checkpoint_every)


def run_piece(experiment: str, condition: str, seeds: tuple[int, ...], root: Path, *,
              episodes: int = 10) -> Path:
    """Train one piece (if it is not stored yet) and store it; returns its directory.

    The piece directory is locked for the whole call (another process storing the same piece fails at once with
    `acpg_lab.lock.DirectoryBusyError` naming it); its files are written atomically, ``meta.json`` then
    ``manifest.json`` last."""
    out = piece_dir(root, experiment, condition, seeds)
    cond, cfg = EXPERIMENTS[experiment][condition], piece_config(experiment, condition, seeds)
    with directory_lock(out, label="evidence piece"):
        if is_finished(out, kind="piece"):
            check_stored_config(out, cfg.resolve(), marker=PIECE)
            return out
        run_dir = out.parent / f".{out.name}.run" if cond.checkpoint_every else None
        start = time.perf_counter()
        run = train(cfg, progress=False, run_dir=run_dir, resume=True)
        if run.interrupted:  # train turns Ctrl-C into a partial run: never store it as a finished piece
            raise KeyboardInterrupt(f"{experiment}/{condition} seeds {seeds[0]}-{seeds[-1]}: interrupted, nothing "
                                    "stored" + (f"; rerun to resume from {run_dir}" if run_dir else ""))
        greedy = run.evaluate(episodes).set_index("seed").return_mean.rename("greedy")
        sampled = run.evaluate(episodes, greedy=False).set_index("seed").return_mean.rename("sampled")
        wall = time.perf_counter() - start
        write_atomic_with(out / "history.parquet", lambda p: _compact(cond.stored(run.history)).to_parquet(
            p, index=False, compression="zstd"))
        write_atomic_with(out / "evaluation.csv", lambda p: pd.concat([greedy, sampled], axis=1).to_csv(p))
        written = ["history.parquet", "evaluation.csv"]
        if cfg.snapshot_every:  # the plasticity probe on every snapshot: as trained, and the backbone under one head
            probe = run.plasticity().merge(run.plasticity(part="backbone"), on=["seed", "step"],
                                           suffixes=("", "_backbone"))
            write_atomic_with(out / "plasticity.csv", lambda p: probe.to_csv(p, index=False, float_format="%.6g"))
            written.append("plasticity.csv")
        meta = dict(experiment=experiment, condition=condition, seeds=list(seeds), wall_seconds=round(wall, 1),
                    train_seconds=round(run.wall_time, 1), config=dataclasses.asdict(run.config), episodes=episodes,
                    torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                    cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d"), manifest=MANIFEST,
                    plan_hash=plan_hash(), commit=_head_commit())
        write_atomic(out / PIECE, json.dumps(meta, indent=1, default=str))
        write_manifest(out, [*written, PIECE])  # last: the piece is finished once it lists every file
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)  # the piece is stored: its checkpoints are no longer needed
    return out


def run_experiment(experiment: str, *, root: str | Path | None = None, only: Sequence[str] | None = None,
                   ray: bool = False, address: str | None = None, num_cpus: int | None = None) -> None:
    """Train every missing piece of ``experiment`` (conditions whose name contains one of ``only``).

    ``ray=True`` trains the pieces as Ray tasks, one CPU each, in parallel: on a local Ray instance with
    ``num_cpus`` CPUs (default: the machine's), or on the cluster at ``address`` (``HOST:PORT`` of
    ``ray start --head``; the workers must see ``root`` on a shared filesystem). A failed task is retried twice
    (a checkpointed piece resumes); pieces that finished are never trained again, so rerunning the command after
    a crash continues.
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {sorted(EXPERIMENTS)}")
    conditions = [c for c in EXPERIMENTS[experiment] if not only or any(o in c for o in only)]
    if not conditions:
        raise ValueError(f"--only {list(only or [])} matches no condition of {experiment!r}: "
                         f"{sorted(EXPERIMENTS[experiment])}")
    for cfg in (EXPERIMENTS[experiment][c] for c in conditions):  # validate everything before training anything
        TrainConfig(**cfg.config, seeds=cfg.seeds, device="cpu").resolve()
    base = evidence_dir(root)
    # seed group by seed group across the conditions: an interrupted run leaves complete blocks (every condition
    # on the same seeds), which paired contrasts can use, rather than one condition's every seed
    groups = {name: EXPERIMENTS[experiment][name].groups() for name in conditions}
    pieces = [(name, g[i]) for i in range(max(map(len, groups.values()))) for name, g in groups.items()
              if i < len(g)]
    pending = [(n, s) for n, s in pieces if not is_finished(piece_dir(base, experiment, n, s), kind="piece")]
    for name, seeds in pieces:
        if (name, seeds) not in pending:  # stored: of this very config, or an error naming what differs
            check_stored_config(piece_dir(base, experiment, name, seeds),
                                piece_config(experiment, name, seeds).resolve(), marker=PIECE)
            print(f"{experiment}/{name} seeds {seeds[0]}-{seeds[-1]}: stored", flush=True)
    if ray and pending:
        calls = {f"{name} seeds {seeds[0]}-{seeds[-1]}": (experiment, name, seeds, str(base),
                                                          EXPERIMENTS[experiment]) for name, seeds in pending}
        run_tasks(_piece_task, calls, address=address, num_cpus=num_cpus, what=f"evidence pieces of {experiment}")
        return
    for name, seeds in pending:
        start = time.perf_counter()
        run_piece(experiment, name, seeds, base)
        print(f"{experiment}/{name} seeds {seeds[0]}-{seeds[-1]}: trained in {time.perf_counter() - start:.0f} s",
              flush=True)


def _piece_task(experiment: str, name: str, seeds: tuple[int, ...], base: str, conditions: dict) -> str:
    """One piece on a Ray worker (the experiment's conditions travel with it: a worker imports a fresh module)."""
    torch.set_num_threads(1)
    EXPERIMENTS[experiment] = conditions
    return str(run_piece(experiment, name, tuple(seeds), Path(base)))


def complete(experiment: str, condition: str, *, root: str | Path | None = None) -> bool:
    """Whether every seed group of a condition is stored."""
    base = evidence_dir(root)
    return all(is_finished(piece_dir(base, experiment, condition, seeds), kind="piece")
               for seeds in EXPERIMENTS[experiment][condition].groups())


def stored_pieces(experiment: str, condition: str, *, root: str | Path | None = None) -> list[Path]:
    """The directories of a condition's stored pieces (FileNotFoundError when there is none)."""
    base = evidence_dir(root) / experiment / condition
    pieces = sorted(p for p in base.glob("seeds_*") if is_finished(p, kind="piece"))
    if not pieces:
        raise FileNotFoundError(f"no stored pieces under {base}; run `python -m acpg_lab.evidence run "
                                f"{experiment}` first")
    return pieces


def verified_pieces(experiment: str, condition: str, *, root: str | Path | None = None) -> list[Path]:
    """`stored_pieces`, each verified against its manifest (`acpg_lab.manifest.verify`): `IntegrityError` names a
    missing, truncated or corrupted file or a half-written ``meta.json``. Pieces stored before manifests existed
    pass unverified, with one note per evidence root on the logger ``acpg_lab.store`` at INFO."""
    pieces = stored_pieces(experiment, condition, root=root)
    for piece in pieces:
        required = not (piece / MANIFEST).exists() and declares_manifest(read_json(piece / PIECE))
        verify(piece, marker=PIECE, required=required, note_key=evidence_dir(root), note_level=logging.INFO,
               note=f"note: evidence pieces under {evidence_dir(root)} were stored before acpg_lab wrote manifests; "
               "they load without verifying their files' sizes and checksums")
    return pieces


def load_condition(experiment: str, condition: str, *, root: str | Path | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, evaluation) of every stored piece of a condition, verified (`verified_pieces`); evaluation is
    indexed by seed."""
    pieces = verified_pieces(experiment, condition, root=root)
    history = pd.concat([read_stored(p / "history.parquet", pd.read_parquet) for p in pieces], ignore_index=True)
    evaluations = [read_stored(p / "evaluation.csv", lambda f: pd.read_csv(f, index_col="seed")) for p in pieces]
    for piece, ev in zip(pieces, evaluations, strict=True):  # what a piece without a manifest is checked by
        seeds = read_stored_config(piece, marker=PIECE)["seeds"]
        if sorted(ev.index) != sorted(seeds):
            raise IntegrityError(f"{piece / 'evaluation.csv'} is truncated or corrupted: it holds seeds "
                                 f"{sorted(ev.index)}, the piece trained {sorted(seeds)}")
    evaluation = pd.concat(evaluations)
    return history, evaluation


def load_probes(experiment: str, condition: str, *, root: str | Path | None = None) -> pd.DataFrame:
    """The plasticity probes (``plasticity.csv``) of every stored piece of a condition, verified."""
    return pd.concat([read_stored(p / "plasticity.csv", pd.read_csv)
                      for p in verified_pieces(experiment, condition, root=root)], ignore_index=True)


def stored_config(experiment: str, condition: str, *, root: str | Path | None = None) -> dict[str, Any]:
    """The resolved config a condition's pieces were trained with (its first piece's ``meta.json``, verified):
    where the tables read a condition's factors (epochs, PFO coefficient, head, ...), never from its name."""
    return read_stored_config(verified_pieces(experiment, condition, root=root)[0], marker=PIECE)
