"""Manifests: the size and SHA-256 of every file a stored directory holds, written last, verified on every load.

A saved run (`acpg_lab.run.Run.save`) and an evidence piece (`acpg_lab.evidence.pieces.run_piece`) end with
``manifest.json``, written atomically after everything it lists, its marker file (``config.json``,
``meta.json``) included; the marker also says ``"manifest": "manifest.json"``, so a directory whose manifest is
missing is known to be incomplete. `verify` refuses, with `IntegrityError` naming the file and what is wrong, a
listed file that is missing, truncated (its size differs), corrupted (its checksum differs), and a manifest of
another format. Directories stored before manifests existed (their marker names none) still load, unverified,
with a one-line note per process (`note_unverified`). `read_json` reads a JSON file and names it when it is not
JSON (a half-written file).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from acpg_lab.store import MANIFEST, IntegrityError, read_json, write_atomic

__all__ = ["MANIFEST", "FORMAT", "IntegrityError", "digest", "write_manifest", "read_manifest", "verify",
           "read_json", "note_unverified", "declares_manifest"]

FORMAT = 1  #: the manifest layout's number: raised whenever it changes, so a manifest of another one is refused
LOG = logging.getLogger("acpg_lab.store")
_NOTED: set[str] = set()


def digest(path: str | Path, *, chunk: int = 1 << 20) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex digest}`` of a file, read in chunks of ``chunk`` bytes."""
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
            size += len(block)
    return {"size": size, "sha256": sha.hexdigest()}


def write_manifest(directory: str | Path, names: Iterable[str]) -> Path:
    """Write ``directory/manifest.json`` listing the files ``names`` (paths relative to ``directory``) with their
    sizes and checksums, atomically: it is either the previous manifest or the new one. Call it last."""
    directory = Path(directory)
    files = {name: digest(directory / name) for name in sorted(set(names))}
    path = directory / MANIFEST
    write_atomic(path, json.dumps(dict(format=FORMAT, version=version("acpg-lab"), files=files), indent=1))
    return path


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """``directory``'s manifest (None when it has none), checked to be one of this format."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(f"{path} is not an acpg_lab manifest (no 'files' table)")
    if manifest.get("format") != FORMAT:
        raise IntegrityError(f"{path} was written in manifest format {manifest.get('format')!r} (acpg_lab "
                             f"{manifest.get('version', '?')}); this acpg_lab ({version('acpg-lab')}) reads format "
                             f"{FORMAT} only: load it with the version that wrote it")
    return manifest


def declares_manifest(marker: dict[str, Any]) -> bool:
    """Whether a marker file's content (``config.json``, ``meta.json``) says its directory was stored with a
    manifest."""
    return isinstance(marker, dict) and marker.get("manifest") == MANIFEST


def note_unverified(key: str | Path, message: str, *, level: int = logging.WARNING) -> None:
    """Log ``message`` once per process per ``key`` (a directory, or the root of many) on the logger
    ``acpg_lab.store``: at WARNING it shows as one line on stderr (no traceback, no 'Warning' prefix), at INFO only
    where logging is configured to show it."""
    key = str(key)
    if key not in _NOTED:
        _NOTED.add(key)
        LOG.log(level, message)


def verify(directory: str | Path, *, marker: str, required: bool, note_key: str | Path | None = None,
           note_level: int = logging.WARNING, note: str | None = None) -> bool:
    """Check every file ``directory``'s manifest lists (existence, size, SHA-256); True when verified.

    ``required``: the marker file ``marker`` says a manifest was written, so a missing one is an error (a save cut
    short, a deleted file); otherwise a directory without a manifest was stored before manifests existed and is
    accepted unverified (False), with a note once per ``note_key`` (default: the directory) at ``note_level``
    (``note``: its text, default one naming the directory).
    Raises `IntegrityError` naming the file: missing, truncated (smaller than listed), the wrong size, corrupted
    (same size, another checksum), or a manifest of another format. Reading every byte costs about a second per
    GB; the files of a run or a piece are small.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        if required:
            raise IntegrityError(f"{directory / MANIFEST} is missing, though {directory / marker} says the "
                                 "directory was stored with one: its save was cut short or the file was removed")
        note_unverified(note_key or directory, note or f"note: {directory} was stored before acpg_lab wrote "
                        "manifests; loaded without verifying its files' sizes and checksums", level=note_level)
        return False
    where = directory / MANIFEST
    for name, entry in manifest["files"].items():
        path = directory / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IntegrityError(f"{path} is missing (listed in {where})") from None
        if size != entry["size"]:
            what = "truncated" if size < entry["size"] else "the wrong size"
            raise IntegrityError(f"{path} is {what}: {size} bytes, {where} lists {entry['size']}")
        if digest(path)["sha256"] != entry["sha256"]:
            raise IntegrityError(f"{path} is corrupted: its SHA-256 differs from the one {where} lists (same size, "
                                 f"{size} bytes)")
    return True
