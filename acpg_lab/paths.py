"""Output paths checked before any work: every command that writes (``acpg-lab sweep``, ``book``, ``notebooks``,
``python -m acpg_lab.evidence``, ``python -m benchmarks``) calls `check_output_dir` / `check_output_file` on every
path it will write before its first environment step or notebook, so a typo in ``--out`` fails in a second with
one line naming the path instead of after an hour of training.

The checks write nothing that stays: whether a directory that does not exist yet can be created is tested by
creating and removing a temporary directory in its nearest existing ancestor, and whether an existing directory
is writable by creating and removing a temporary file in it (so a read-only file system, ``/proc`` and missing
permissions are all caught, for root too).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_output_dir", "check_output_file"]

_PROBE = ".acpg-lab-probe-"


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def _probe_dir(directory: Path) -> None:
    """Create and remove a temporary file in ``directory`` (OSError if it cannot be written)."""
    fd, name = tempfile.mkstemp(prefix=_PROBE, dir=directory)
    os.close(fd)
    os.unlink(name)


def check_output_dir(path: str | os.PathLike, *, what: str, hint: str = "", subdirs: Sequence[str] = (),
                     files: Sequence[str] = ()) -> Path:
    """``path`` (user-expanded) if it is a directory that can be written, or a new one that can be created; else
    ValueError naming ``what`` and the path (``hint`` is appended to the "is a file" message). Nothing is
    created. ``subdirs`` and ``files``, relative to ``path``, are what the caller will write inside it: an
    existing one of the wrong kind (a file where a directory goes, a directory where a file goes) or an existing
    subdirectory that cannot be written is refused too."""
    given = str(path)
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{what} {given} is a file, not a directory{hint}")
    if target.is_dir():
        try:
            _probe_dir(target)
        except OSError as err:
            raise ValueError(f"{what} {given} is not writable: {_reason(err)}") from None
    else:
        ancestor = _nearest_existing(target.absolute())
        if not ancestor.is_dir():
            raise ValueError(f"{what} {given} cannot be created: {ancestor} is a file, not a directory")
        try:
            os.rmdir(tempfile.mkdtemp(prefix=_PROBE, dir=ancestor))
        except OSError as err:
            raise ValueError(f"{what} {given} cannot be created: {_reason(err)} ({ancestor})") from None
    for sub in subdirs:
        inner = target / sub
        if inner.exists() and not inner.is_dir():
            raise ValueError(f"{what} {given} holds a file {sub} where a directory goes; move it away")
        if inner.is_dir():
            try:
                _probe_dir(inner)
            except OSError as err:
                raise ValueError(f"{inner} (in {what} {given}) is not writable: {_reason(err)}") from None
    for name in files:
        check_output_file(target / name, what=f"{name} in {what} {given}", check_parent=False)
    return target


def check_output_file(path: str | os.PathLike, *, what: str, check_parent: bool = True) -> Path:
    """``path`` (user-expanded) if it is a file that can be (over)written, or a new file whose directory can be
    written or created; else ValueError naming ``what`` and the path. Nothing is created or changed."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    if check_parent:
        check_output_dir(target.parent, what=f"the directory of {what}")
    if target.exists():
        try:
            with open(target, "ab"):  # opened for appending, nothing appended: the file is unchanged
                pass
        except OSError as err:
            raise ValueError(f"{what} {path} is not writable: {_reason(err)}") from None
    return target
