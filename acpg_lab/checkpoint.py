"""Checkpoint and resume inside a run: a run killed at any moment continues exactly where its last checkpoint was.

`RunDirectory` is what ``train(cfg, run_dir=..., resume=...)`` does with its directory. Every
``TrainConfig.checkpoint_every`` updates it writes ``checkpoint.pt``, the complete training state: the model,
Adam's state, every seed's action-sampling generator, the environments (internal state, random streams and
read-ahead buffers, episode accumulators), where the next rollout starts, the history so far, the snapshots and
probe batch kept so far, the non-finite guard's frozen seeds, and the update index. A resumed run therefore trains
on the very same numbers: on the CPU its history (but for the wall-clock ``time`` column) and final weights are
bitwise those of a run never interrupted (``tests/test_checkpoint.py`` kills runs with SIGKILL, also during a
write). When the run finishes, the directory holds the saved `Run` (`Run.save`) and the checkpoint is removed.

The file is written atomically (`acpg_lab.store.write_atomic`: a temporary file, fsync, rename, fsync of the
directory), so it is always either the previous checkpoint or the new one; a failed write (a full disk) warns,
keeps the previous one and training goes on. It is a small header (magic, format number, payload length,
SHA-256) and a ``torch.save`` payload of tensors and plain data only, read back with
``torch.load(weights_only=True)``. A truncated or corrupted file, a checkpoint of another config or of another
checkpoint format is refused with `CheckpointError` before anything is loaded into the training state.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import struct
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from acpg_lab import store
from acpg_lab.config import TrainConfig
from acpg_lab.lock import directory_lock
from acpg_lab.run import Run
from acpg_lab.state import TrainState
from acpg_lab.store import config_json, read_json, write_atomic

__all__ = ["CheckpointError", "RunDirectory", "CHECKPOINT_NAME", "FORMAT", "read_checkpoint", "write_atomic"]

CHECKPOINT_NAME = "checkpoint.pt"
#: the checkpoint layout's number: raised whenever what is stored (or how) changes, so older files are refused
FORMAT = 1
MAGIC = b"ACPGCKPT"
_HEADER = struct.Struct("<8sIQ32s")  # magic, format, payload length, sha256 of the payload
#: config fields that may differ between a checkpoint and the run resuming it (they do not change what is trained)
RESUMABLE_CHANGES = frozenset({"checkpoint_every"})


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (truncated, corrupted, another config or format): nothing was loaded."""


# ----------------------------------------------------------------------------- the file
def encode(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    return _HEADER.pack(MAGIC, FORMAT, len(body), hashlib.sha256(body).digest()) + body


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload of a checkpoint file, verified (magic, format, length, checksum) before it is unpickled with
    ``weights_only=True``; `CheckpointError` says what is wrong."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise CheckpointError(f"{path} is truncated ({len(data)} bytes, shorter than the header)")
    magic, fmt, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not an acpg_lab checkpoint")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {fmt}; this acpg_lab ({version('acpg-lab')}) reads "
                              f"format {FORMAT} only: finish it with the version that wrote it, or start afresh")
    body = data[_HEADER.size:]
    if len(body) != length:
        raise CheckpointError(f"{path} is truncated ({len(body)} of {length} payload bytes)")
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path} is corrupted (its checksum does not match)")
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} holds objects other than tensors and plain data: {err}") from None


def config_differences(stored: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Fields whose stored value differs from ``cfg``'s, but for those a resumed run may change
    (`acpg_lab.store.config_differences`)."""
    return store.config_differences(stored, cfg, ignore=RESUMABLE_CHANGES)


# ----------------------------------------------------------------------------- the training state
def capture(state: TrainState) -> dict[str, Any]:
    """The complete training state as tensors and plain data."""
    return dict(format=FORMAT, version=version("acpg-lab"), torch=str(torch.__version__),
                config=config_json(state.cfg), update=state.next_update, elapsed=state.elapsed(),
                model=state.model.state_dict(), optimizer=state.optimizer.state_dict(),
                generators=[g.get_state() for g in state.generators],
                envs=state.envs.get_state() if state.cfg.resume_envs == "exact" else None,
                next_obs=state.rollout.next_obs, next_labels=state.rollout.next_labels,
                history=state.history.state_dict(), instruments=state.instruments.state_dict(),
                guard=state.guard.state_dict())


def restore(state: TrainState, payload: dict[str, Any], path: Path) -> None:
    """Load ``payload`` into a freshly set-up ``state`` (same config), after checking it fits."""
    required = {"config", "update", "elapsed", "model", "optimizer", "generators", "envs", "next_obs",
                "next_labels", "history", "instruments", "guard"}
    missing = required - payload.keys()
    if missing:
        raise CheckpointError(f"{path} lacks {sorted(missing)}: not a complete training state")
    differ = config_differences(payload["config"], state.cfg)
    if differ:
        stored = store.with_stored_defaults(payload["config"])
        detail = ", ".join(f"{k}={stored[k]!r} (now {config_json(state.cfg)[k]!r})" for k in differ)
        raise CheckpointError(f"{path} is a checkpoint of another config: {detail}; use another run directory")
    update = payload["update"]
    if not 0 < update <= state.cfg.num_updates or payload["history"]["rows"] != update:
        raise CheckpointError(f"{path} is at update {update} with {payload['history']['rows']} history rows; "
                              f"this config trains {state.cfg.num_updates} updates")
    try:
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        for gen, gen_state in zip(state.generators, payload["generators"], strict=True):
            gen.set_state(gen_state)
        device = state.rollout.next_obs.device
        if payload["envs"] is None:  # resume_envs="reseed": fresh episodes, seeded from the update
            state.rollout.next_obs, labels = state.envs.reset(reseed=update)
        else:
            state.envs.set_state(payload["envs"])
            state.rollout.next_obs, labels = payload["next_obs"].to(device), payload["next_labels"]
        state.rollout.next_labels = None if labels is None else labels.to(device)
        state.history.load_state_dict(payload["history"])
        state.instruments.load_state_dict(payload["instruments"])
        state.guard.load_state_dict(payload["guard"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit this run's state: {err}") from err
    state.next_update, state.resumed_from = update, update
    state.restart_clock(payload["elapsed"])


# ----------------------------------------------------------------------------- the run directory
class RunDirectory:
    """A run's directory: its checkpoint while it trains, the saved `Run` when it is done; one writer at a time
    (`owned`)."""

    def __init__(self, path: str | Path, cfg: TrainConfig) -> None:
        self.path, self.cfg = Path(path), cfg
        self.checkpoint = self.path / CHECKPOINT_NAME
        self.write_seconds: list[float] = []  #: time of each checkpoint write (encode + write + fsync)

    def owned(self) -> contextlib.AbstractContextManager[Path]:
        """The directory's exclusive lock (`acpg_lab.lock.directory_lock`), taken before anything is read or
        trained: ValueError naming the path if it is a file, cannot be created or is not writable;
        `acpg_lab.lock.DirectoryBusyError` naming the holder (pid, host, start time) if another process trains
        into it."""
        return directory_lock(self.path, label="run_dir")

    def finished(self, *, resume: bool) -> Run | None:
        """The finished run of this config the directory holds (when resuming), else None; ValueError if it holds
        a run or a checkpoint that must not be overwritten."""
        if store.is_finished(self.path, kind="run"):
            differ = config_differences(store.read_stored_config(self.path), self.cfg)
            meta = read_json(self.path / store.MARKERS["run"][0])
            if meta.get("interrupted") and not differ:
                raise ValueError(f"{self.path} holds a run saved after an interrupt (Ctrl-C), which cannot be "
                                 "continued exactly; use another run directory")
            if differ:
                raise ValueError(f"{self.path} holds a finished run of another config (differing: {differ}); "
                                 "use another run directory")
            if not resume:
                raise ValueError(f"{self.path} holds a finished run of this config; pass resume=True to load it "
                                 "or choose another run directory")
            return Run.load(self.path, device=str(self.cfg.device if self.cfg.device != "auto" else "cpu"))
        if self.checkpoint.exists() and not resume:
            raise ValueError(f"{self.path} holds a checkpoint of an unfinished run; pass resume=True (acpg-lab "
                             "train --resume) to continue it, or choose another run directory")
        return None

    def resume(self, state: TrainState) -> bool:
        """Load the checkpoint, if there is one, into ``state``; whether there was. Temporary files of writers
        that were killed are removed."""
        for stale in self.path.glob(f".{CHECKPOINT_NAME}.tmp*"):
            stale.unlink(missing_ok=True)
        if not self.checkpoint.exists():
            return False
        payload = read_checkpoint(self.checkpoint)  # on the CPU: generator states must stay there; the model's
        # and Adam's tensors are copied onto their device by load_state_dict
        restore(state, payload, self.checkpoint)
        return True

    def check_capturable(self, state: TrainState) -> None:
        """Before the first update: ValueError if the environments' state cannot be checkpointed."""
        if self.cfg.checkpoint_every and self.cfg.resume_envs == "exact":
            state.envs.get_state()

    def after_update(self, state: TrainState) -> None:
        """Write a checkpoint when one is due (not after the last update: the saved run follows)."""
        every, done = self.cfg.checkpoint_every, state.next_update
        if not every or done % every or done >= self.cfg.num_updates:
            return
        start = time.perf_counter()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(self.checkpoint, encode(capture(state)))
        except OSError as err:
            warnings.warn(f"checkpoint at update {done} not written ({err}); {self.checkpoint} still holds the "
                          "previous one and training goes on", stacklevel=3)
            return
        self.write_seconds.append(time.perf_counter() - start)

    def finish(self, run: Run) -> None:
        """Save the finished run (``config.json`` then ``manifest.json`` last mark it complete), then drop the
        checkpoint. A failed save (a full disk) raises OSError saying what is kept: the checkpoint stays, and the
        directory does not count as finished, so ``resume=True`` finishes it."""
        try:
            run.save(self.path)
        except OSError as err:
            kept = (f"its checkpoint {self.checkpoint} is kept: rerun with resume=True to finish it"
                    if self.checkpoint.exists() else "rerun to train it again")
            raise OSError(err.errno, f"saving the finished run into {self.path} failed ({err.strerror or err}); the "
                          f"directory is not marked finished and {kept}") from err
        self.checkpoint.unlink(missing_ok=True)
