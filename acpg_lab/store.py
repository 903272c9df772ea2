"""A finished run on disk, one way for every store: its marker, its stored config, its atomic writes.

Four stores keep runs on disk, and all follow the same protocol:

- every file is written atomically (`write_atomic`, `write_atomic_with`): a temporary file beside it, fsync,
  rename, fsync of the directory, so that a file is at every moment either absent, its old content or its new
  content, also across a power cut;
- a directory is *finished* when its marker files exist (`MARKERS`, `is_finished`): the files written last, so
  their presence means everything before them is complete. The markers are those the stores always wrote, so
  runs stored before this module existed are recognised unchanged;
- a finished directory of a run or an evidence piece also holds ``manifest.json`` (`MANIFEST`, written last by
  `acpg_lab.manifest`: every file's size and SHA-256, verified on load), and its marker says so
  (``"manifest": "manifest.json"``); such a directory without its manifest is not finished (a save cut short).
  Directories stored before manifests existed have markers that name none, and are finished as before;
- a stored run is reused only for the very same config: `config_differences` names the fields that differ
  (a field the stored config lacks was added to `TrainConfig` later, and its default keeps the earlier
  behaviour, so it counts as equal), and `check_stored_config` refuses another config naming them.

The stores: `Run.save` and `acpg_lab.checkpoint.RunDirectory` (``"run"``), `acpg_lab.experiments.run_cached`
(``"cached_run"``), the evidence pieces of `acpg_lab.evidence` (``"piece"``) and the tasks of `acpg_lab.sweep`
(``"sweep_task"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from acpg_lab.config import TrainConfig
from acpg_lab.seeds import STORED_DEFAULTS

__all__ = ["MARKERS", "MANIFEST", "MANIFESTED", "IntegrityError", "read_json", "read_stored", "is_finished",
           "write_atomic", "write_atomic_with", "differences", "config_json",
           "config_differences", "read_stored_config", "check_stored_config", "with_stored_defaults"]

#: store -> the files written last into one of its finished directories (all must exist)
MARKERS: dict[str, tuple[str, ...]] = {
    "run": ("config.json",),  # `Run.save` writes config.json (the config, wall time, versions) last
    "cached_run": ("config.json", "evaluation.csv"),  # `run_cached`: the saved run, then its evaluation
    "piece": ("meta.json",),  # an evidence piece: history, evaluation (and probes), then meta.json
    "sweep_task": ("history.parquet",),  # a sweep task: the run, then the task's table
}

MANIFEST = "manifest.json"  #: the file `acpg_lab.manifest` writes last: every stored file's size and checksum
#: the stores whose first marker file says whether the directory was stored with a manifest
MANIFESTED = frozenset({"run", "cached_run", "piece"})


class IntegrityError(ValueError):
    """A stored file that is missing, truncated, corrupted, not what its name says, or of another format: the
    message names the file and the problem; nothing was loaded."""


def read_json(path: str | Path) -> Any:
    """The JSON in ``path``; `IntegrityError` naming it when it is missing, unreadable or not JSON (a file cut
    short by a crash or a full disk, or overwritten)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing") from None
    except OSError as err:
        raise IntegrityError(f"{path} cannot be read: {err.strerror or err}") from None
    try:
        return json.loads(data.decode())
    except UnicodeDecodeError as err:
        raise IntegrityError(f"{path} is corrupted: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ValueError as err:
        raise IntegrityError(f"{path} is not valid JSON ({err}; {len(data)} bytes): half-written or "
                             "corrupted") from None


def read_stored(path: str | Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)``, any failure (``path`` missing, or its parser's error) an `IntegrityError` naming ``path``:
    a file without a manifest entry, cut short or overwritten, is found only when it does not parse."""
    path = Path(path)
    if not path.exists():
        raise IntegrityError(f"{path} is missing")
    try:
        return read(path)
    except Exception as err:  # noqa: BLE001 - whatever the parser says, the file is what is wrong
        raise IntegrityError(f"{path} cannot be read ({type(err).__name__}: {str(err)[:200]}): truncated or "
                             "corrupted") from None


def _manifest_pending(directory: Path, marker: str) -> bool:
    """Whether ``marker`` says a manifest was written and none is there (a readable marker only: an unreadable one
    counts as finished, so that loading it names the broken file instead of training over it)."""
    if (directory / MANIFEST).exists():
        return False
    try:
        content = json.loads((directory / marker).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("manifest") == MANIFEST


def is_finished(directory: str | Path, *, kind: str) -> bool:
    """Whether ``directory`` holds a finished run of the store ``kind`` (a key of `MARKERS`): its markers exist,
    and, for the stores in `MANIFESTED`, its manifest too when the marker says one was written."""
    if kind not in MARKERS:
        raise ValueError(f"unknown store kind {kind!r}; known: {sorted(MARKERS)}")
    directory = Path(directory)
    if not all((directory / name).exists() for name in MARKERS[kind]):
        return False
    return kind not in MANIFESTED or not _manifest_pending(directory, MARKERS[kind][0])


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def write_atomic_with(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then make it ``path`` atomically (fsync of
    the file, rename, fsync of the directory). A failed ``write`` leaves ``path`` as it was and no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` so that ``path`` is at every moment either its old content or
    ``data``."""
    payload = data.encode() if isinstance(data, str) else data
    if not isinstance(payload, bytes):
        raise TypeError(f"data must be bytes or str, got {type(data).__name__}")
    write_atomic_with(path, lambda tmp: tmp.write_bytes(payload))


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], *, absent_equal: bool = False,
                ignore: frozenset[str] = frozenset()) -> list[str]:
    """The sorted names of the fields whose values differ between ``stored`` and ``current`` (both as JSON would
    give them back). A field only in ``stored`` differs; a field only in ``current`` differs unless
    ``absent_equal`` (a field added since ``stored`` was written, whose default keeps the earlier behaviour)."""
    names = (stored.keys() | current.keys()) - ignore
    return sorted(k for k in names if not (absent_equal and k not in stored)
                  and (k not in stored or k not in current or stored[k] != current[k]))


def config_json(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as its stored JSON reads back (tuples as lists)."""
    return json.loads(json.dumps(cfg.to_dict()))


def with_stored_defaults(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config with every field of `acpg_lab.seeds.STORED_DEFAULTS` it lacks set to what its absence
    meant when it was written (``seed_scheme``: "legacy")."""
    return {**STORED_DEFAULTS, **stored}


def config_differences(stored: Mapping[str, Any], cfg: TrainConfig, *,
                       ignore: frozenset[str] = frozenset()) -> list[str]:
    """The `TrainConfig` fields whose stored value differs from ``cfg``'s (`differences` with fields the stored
    config lacks counting as equal, except those in `acpg_lab.seeds.STORED_DEFAULTS`, which read as the value they
    had when the config was written); ``ignore`` lists fields allowed to differ."""
    return differences(with_stored_defaults(stored), config_json(cfg), absent_equal=True, ignore=ignore)


def read_stored_config(directory: str | Path, *, marker: str = "config.json") -> dict[str, Any]:
    """The config stored in ``directory``'s marker file (``config.json`` of a saved run, ``meta.json`` of an
    evidence piece: both keep it under ``"config"``)."""
    path = Path(directory) / marker
    content = read_json(path)
    if not isinstance(content, dict) or not isinstance(content.get("config"), dict):
        raise IntegrityError(f"{path} holds no stored config (no 'config' table)")
    return content["config"]


def check_stored_config(directory: str | Path, cfg: TrainConfig, *, marker: str = "config.json") -> None:
    """ValueError naming the differing fields if the run stored in ``directory`` has another config than
    ``cfg``."""
    stored = read_stored_config(directory, marker=marker)
    differ = config_differences(stored, cfg)
    if differ:
        legacy = differ == ["seed_scheme"] and "seed_scheme" not in stored
        hint = (" (stored before TrainConfig.seed_scheme existed, so with the legacy init and head streams: pass "
                "seed_scheme='legacy' to reuse it)" if legacy else "")
        raise ValueError(f"{directory} holds a finished run of another config (differing: {differ}){hint}; remove it "
                         "or use another directory")
