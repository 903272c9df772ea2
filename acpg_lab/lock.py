"""One writer per directory: an exclusive lock that a run directory, an evidence piece or a sweep task is written
under, so that a second process writing into the same directory fails at once instead of overwriting the first.

`directory_lock` first checks that the directory can be written (it is not a file, it can be created, a file can be
created in it) and then takes ``fcntl.flock`` on ``DIR/.lock``, which holds the holder's pid, host and start time.
A second writer, in another process or another thread of this one, gets `DirectoryBusyError` naming that holder,
before it has touched anything. The kernel drops the lock when its holder dies, however it dies (SIGKILL
included), so a lock file left behind by a dead process is taken over, with a one-line warning naming it. On a
clean exit the lock file is removed (and the directory too, if the lock created it and nothing was written).
The same thread may take a lock it already holds (a `Run.save` inside `train`): only the outermost release
releases it.

``flock`` locks are as good as the filesystem's: exact on a local disk; on NFS they are emulated with POSIX
locks (Linux >= 2.6.12), and on some network filesystems they are local to one machine only.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_NAME", "DirectoryBusyError", "directory_lock", "holder"]

LOCK_NAME = ".lock"  #: the lock file inside a locked directory

# resolved directory -> (pid, thread id, depth) of the locks this process holds (pid: a forked child holds none)
_HELD: dict[Path, tuple[int, int, int]] = {}
_HELD_GUARD = threading.Lock()


class DirectoryBusyError(ValueError):
    """Another live writer holds the directory's lock (its pid, host and start time are in the message); nothing
    was read or written."""


def _describe(info: dict | None) -> str:
    if not info:
        return "a process that has not written its pid yet"
    return f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"


def _read_info(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return None
    try:
        info = json.loads(raw)
        if isinstance(info, dict):
            return info
    except ValueError:
        pass
    return {"pid": "?", "host": "?", "started": f"? (unreadable lock file: {raw[:80]!r})"}


def holder(directory: str | Path) -> dict | None:
    """The pid, host and start time (``started``, UTC) written into ``directory``'s lock file by its last holder,
    or None when there is no lock file. Whether that holder still holds it is what `directory_lock` finds out."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_info(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare(path: Path, label: str) -> bool:
    """Make ``path`` a directory (ValueError naming it when that is impossible); whether it was created here."""
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{label} {path} is a file, not a directory: pass a directory (new, or one this "
                             "writer used before)")
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a parent that is a file, no permission, a read-only filesystem, ...
        raise ValueError(f"cannot create {label} {path}: {err.strerror or err}") from None
    return created


def _take(path: Path, label: str) -> tuple[int, dict | None]:
    """Open and flock ``path/.lock`` (retrying when its holder removed it between our open and our flock);
    the descriptor and what the file held before (a dead holder's info, or None)."""
    lock = path / LOCK_NAME
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"{label} {path} is not writable ({err.strerror or err}): cannot create its lock file "
                             f"{LOCK_NAME} there; pass a directory this user can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            info = _read_info(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ValueError(f"cannot lock {label} {path} ({err.strerror or err})") from None
            raise DirectoryBusyError(
                f"{label} {path} is in use by another writer: {_describe(info)} (lock file {lock}); wait for it to "
                "finish or stop it, or use another directory") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, _read_info(fd)
        os.close(fd)  # its holder released and removed it meanwhile: take the new one
    raise DirectoryBusyError(f"{label} {path}: its lock file {lock} keeps being replaced; another writer is busy "
                             "there")


@contextmanager
def directory_lock(path: str | Path, *, label: str = "run_dir") -> Iterator[Path]:
    """Hold the exclusive lock of directory ``path`` (created if needed) for the block.

    ``label`` names the directory in every error (``"run_dir"``, ``"evidence piece"``, ...). Raised before anything
    is written, naming ``path``: ValueError if it is a file, cannot be created or is not writable;
    `DirectoryBusyError` if another process, or another thread of this one, holds its lock. A lock file whose
    holder died is taken over with a warning naming that holder. The thread that holds the lock may enter again.
    """
    path = Path(path)
    created = _prepare(path, label)
    key, me = path.resolve(), (os.getpid(), threading.get_ident())
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == me[0]:
            if held[1] != me[1]:
                raise DirectoryBusyError(f"{label} {path} is in use by another thread of this process (pid "
                                         f"{me[0]}); one writer per directory")
            _HELD[key] = (*me, held[2] + 1)
    if held is not None and held[:2] == me:
        try:
            yield path
        finally:
            with _HELD_GUARD:
                _HELD[key] = (*me, _HELD[key][2] - 1)
        return
    fd, previous = _take(path, label)
    lock = path / LOCK_NAME
    try:
        if previous is not None:
            pid, host = previous.get("pid"), previous.get("host")
            gone = ("that process is gone" if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid)
                    else "it no longer holds the lock")
            warnings.warn(f"{label} {path}: taking over the stale lock of {_describe(previous)}: {gone}",
                          stacklevel=3)
        info = dict(pid=os.getpid(), host=socket.gethostname(),
                    started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        with _HELD_GUARD:
            _HELD[key] = (*me, 1)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield path
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        try:
            lock.unlink(missing_ok=True)  # while still holding it: a waiting writer then retries on a new file
        finally:
            os.close(fd)
        if created:
            try:
                path.rmdir()  # created here and nothing was written: leave no trace
            except OSError:
                pass
