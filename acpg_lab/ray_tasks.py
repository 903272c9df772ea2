"""Ray, written once: join a cluster (or start a local instance) and run a batch of independent tasks, one Ray
task each, gathering every failure into one error at the end.

`acpg_lab.sweep` (a grid of conditions x seed groups) and `acpg_lab.evidence` (``run --ray``: the pieces of an
experiment) both drive their tasks through `run_tasks`. Ray is the optional dependency group ``sweep``
(``pip install -e '.[sweep]'``); it is imported only when tasks are run.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from acpg_lab.checks import check_int
from acpg_lab.entry import one_line, require_extra

__all__ = ["connect", "run_tasks", "check_address", "probe_address", "Interrupted", "interrupt_on_signals",
           "HANDSHAKE_SECONDS"]

#: How long a Ray cluster at ``--address`` has to answer a real request (its GCS's cluster id) before the address
#: is refused: a healthy head answers in well under a second; whatever else listens there never does.
HANDSHAKE_SECONDS = 8.0

_HANDSHAKE = """\
import sys
from ray._raylet import GcsClient
print("cluster", GcsClient(address=sys.argv[1]).cluster_id.hex(), flush=True)
"""
_ANSWERED: set[str] = set()  #: addresses whose Ray answered `probe_address` in this process
_HINT = "start one with `ray start --head --port=6379` and pass its address HOST:6379"


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped a command (`interrupt_on_signals`): a batch of Ray tasks (the running ones
    cancelled, finished ones kept) or the local training loop. Not a KeyboardInterrupt, on purpose: `acpg_lab.train`
    turns a KeyboardInterrupt into a partial run, which a caller would then store as if it had finished."""

    def __init__(self, signum: int, finished: int = 0, total: int = 0) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.finished, self.total = signum, finished, total

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def check_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (port 1-65535); ValueError naming ``--address`` otherwise."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or host.startswith("ray://"):
        raise ValueError(f"--address must be HOST:PORT of a Ray head (port 1-65535) or 'auto', got {address!r}")
    return host or "127.0.0.1", int(port)


def probe_address(address: str, *, timeout: float = HANDSHAKE_SECONDS) -> None:
    """Make sure a Ray cluster answers at ``address`` (``HOST:PORT``) within about ``timeout`` seconds, without
    joining it: a TCP connection, then a real request to its GCS (the cluster id), in a child process killed at the
    deadline (Ray's own client retries for minutes and, meanwhile, ignores SIGTERM). ValueError naming the address
    otherwise. Nothing is imported into this process."""
    host, port = check_address(address)
    try:
        socket.create_connection((host, port), timeout=min(5.0, timeout)).close()
    except OSError as err:
        raise ValueError(f"cannot reach a Ray cluster at --address {address!r} ({err.strerror or err}); "
                         f"{_HINT}") from None
    try:
        done = subprocess.run([sys.executable, "-c", _HANDSHAKE, f"{host}:{port}"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ValueError(f"cannot reach a Ray cluster at --address {address!r}: something listens there but gave no "
                         f"Ray handshake within {timeout:g} s (is it a Ray head's GCS port?); {_HINT}") from None
    if done.returncode != 0 or not done.stdout.startswith("cluster "):
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [f"exit {done.returncode}"]
        raise ValueError(f"cannot reach a Ray cluster at --address {address!r}: the Ray handshake failed "
                         f"({last[0].strip()[:200]}); {_HINT}")
    _ANSWERED.add(address)


def connect(address: str | None, num_cpus: int | None) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` of ``ray start --head``, or ``"auto"``; one where no Ray
    answers fails within `HANDSHAKE_SECONDS`, naming it: `probe_address`), or without it start a local instance
    with ``num_cpus`` CPUs (default: the machine's). A session the caller already started (a notebook, the tests)
    is used as it is."""
    ray = require_extra("ray", "sweep", needed_by="running tasks on Ray")
    if address not in (None, "auto") and address not in _ANSWERED:
        probe_address(address)  # even with a session open: an address where no Ray answers is an error
    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=num_cpus, logging_level="warning")  # a local instance sized to the machine
        return
    try:
        ray.init(address=address, logging_level="warning")
    except ConnectionError as err:  # --address auto without a running cluster, a head gone since the probe
        raise ValueError(f"cannot reach a Ray cluster at --address {address!r} ({one_line(err)}); {_HINT}") from None


@contextlib.contextmanager
def interrupt_on_signals(*, ray_wait: bool = False) -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread while the block runs (Ray's driver turns SIGTERM
    into an exit without clean-up, Python's default kills without a word); the previous handlers are restored
    after. Yields the list of the signals received. With ``ray_wait`` the handler raises a plain KeyboardInterrupt
    instead, the one exception Ray's blocking calls let through (any other becomes a SystemError), and the caller
    turns it into `Interrupted` with the recorded signal."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if ray_wait:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_tasks(function: Callable[..., Any], calls: Mapping[str, Sequence[Any]], *, address: str | None = None,
              num_cpus: int | None = None, task_cpus: float = 1.0, task_gpus: float = 0.0, max_retries: int = 2,
              what: str = "tasks", total: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``function(*args)`` as one Ray task per entry of ``calls`` (label -> args), ``task_cpus`` CPUs and
    ``task_gpus`` GPUs each, a task whose worker dies retried ``max_retries`` times; returns label -> result.

    ``address`` and ``num_cpus`` go to `connect`. Every task runs to its end; then RuntimeError lists each failed
    label with its exception ("N of ``total`` ``what`` failed": ``total`` counts the tasks done before too, for
    the progress bar and the message; default ``len(calls)``).
    """
    if num_cpus is not None:
        check_int("--num-cpus", num_cpus, 1)  # 0 CPUs: Ray would wait forever for one
    if num_cpus is not None and address is None and task_cpus > num_cpus:
        raise ValueError(f"--num-cpus {num_cpus} is fewer than the {task_cpus:g} CPUs each of the {what} asks for: "
                         "none could ever start")
    if address not in (None, "auto"):
        check_address(address)
    ray = require_extra("ray", "sweep", needed_by=f"running {what} on Ray")
    from tqdm.auto import tqdm

    total = len(calls) if total is None else total
    started_here = not ray.is_initialized()
    connect(address, num_cpus)
    results, failed, refs = {}, [], {}
    with interrupt_on_signals(ray_wait=True) as received:
        try:
            remote = ray.remote(num_cpus=task_cpus, num_gpus=task_gpus, max_retries=max_retries)(function)
            refs = {remote.remote(*args): label for label, args in calls.items()}
            with tqdm(total=total, initial=total - len(calls), disable=not progress, unit="task", desc=what) as bar:
                while refs:
                    # a bounded wait: a signal handler runs between two waits, never blocked for long
                    ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                    for done in ready:
                        label = refs.pop(done)
                        try:
                            results[label] = ray.get(done)
                        except Exception as err:  # noqa: BLE001 - reported together below
                            cause = getattr(err, "cause", None) or err  # a RayTaskError wraps the task's exception
                            failed.append(f"{label}: {type(cause).__name__}: {cause}")
                        bar.update()
        except (KeyboardInterrupt, Interrupted) as stop:  # SIGINT or SIGTERM: cancel what runs, keep what finished
            signum = stop.signum if isinstance(stop, Interrupted) else (received or [signal.SIGINT])[-1]
            for ref in list(refs):
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if started_here:
                with contextlib.suppress(Exception):
                    ray.shutdown()
            raise Interrupted(signum, total - len(calls) + len(results) + len(failed), total) from None
    if failed:
        raise RuntimeError(f"{len(failed)} of {total} {what} failed (the others are kept; rerun to retry):\n"
                           + "\n".join(failed))
    return results
