"""Ray, written once: join a cluster (or start a local instance) and run a batch of independent tasks, one Ray
task each, gathering every failure into one error at the end.

`acpg_lab.sweep` (a grid of conditions x seed groups) and `acpg_lab.evidence` (``run --ray``: the pieces of an
experiment) both drive their tasks through `run_tasks`. Ray is the optional dependency group ``sweep``
(``pip install -e '.[sweep]'``); it is imported only when tasks are run.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from acpg_lab.checks import check_int

__all__ = ["connect", "run_tasks"]


def connect(address: str | None, num_cpus: int | None) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` of ``ray start --head``, or ``"auto"``; an unreachable
    one fails at once, naming it), or without it start a local instance with ``num_cpus`` CPUs (default: the
    machine's). A session the caller already started (a notebook, the tests) is used as it is."""
    import ray

    if address not in (None, "auto"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot reach a Ray cluster at --address {address!r} ({err}); start one with "
                             "`ray start --head --port=6379` and pass its address HOST:6379") from None
    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=num_cpus, logging_level="warning")  # a local instance sized to the machine
    else:
        ray.init(address=address, logging_level="warning")


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
    try:
        import ray
    except ImportError as err:
        raise ValueError(f"running {what} on Ray needs Ray: pip install -e '.[sweep]'") from err
    from tqdm.auto import tqdm

    total = len(calls) if total is None else total
    connect(address, num_cpus)
    remote = ray.remote(num_cpus=task_cpus, num_gpus=task_gpus, max_retries=max_retries)(function)
    refs = {remote.remote(*args): label for label, args in calls.items()}
    results, failed = {}, []
    with tqdm(total=total, initial=total - len(calls), disable=not progress, unit="task", desc=what) as bar:
        while refs:
            [done], _ = ray.wait(list(refs), num_returns=1)
            label = refs.pop(done)
            try:
                results[label] = ray.get(done)
            except Exception as err:  # noqa: BLE001 - reported together below
                cause = getattr(err, "cause", None) or err  # a RayTaskError wraps the task's own exception
                failed.append(f"{label}: {type(cause).__name__}: {cause}")
            bar.update()
    if failed:
        raise RuntimeError(f"{len(failed)} of {total} {what} failed (the others are kept; rerun to retry):\n"
                           + "\n".join(failed))
    return results
