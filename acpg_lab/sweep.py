"""Sweeps on Ray: a grid of conditions x seed groups, each a Ray task training one seed-batched run, gathered into
one Parquet table.

A sweep is a small TOML file, validated whole before anything starts::

    [sweep]
    seeds = [0, 1, 2, 3, 4, 5, 6, 7]   # every condition trains these seeds
    seeds_per_task = 4                 # seeds batched in one task (one run): larger batches pay more per task
    checkpoint_every = 10              # updates between checkpoints: a retried or resumed task loses less

    [base]                             # TrainConfig fields shared by every condition
    env_id = "CartPole-v1"
    algo = "ppo"
    total_steps = 100000

    [grid]                             # TrainConfig fields to vary: every combination is a condition
    head = ["linear", "etf"]
    pfo_coef = [0.0, 1.0]

    [resources]                        # per task
    num_cpus = 1                       # Ray CPUs (the run uses TrainConfig.num_threads torch threads)
    num_gpus = 0                       # a fraction such as 0.25 packs four tasks on one GPU
    max_retries = 3                    # a task whose worker dies is retried, resuming from its checkpoint

`run_sweep` (``acpg-lab sweep SPEC --out DIR [--address ADDR]``) trains every task not yet finished in
``DIR/runs/<task>/`` (`acpg_lab.train` with ``run_dir`` and ``resume=True``), so a killed driver rerun with the
same command never redoes a finished task and resumes running ones from their checkpoints. Each finished task
writes ``history.parquet``; the sweep's table ``DIR/sweep.parquet`` (`load_sweep`) holds them all, with the
condition's grid values as columns (`condition_column`) beside the per-seed, per-update history. Ray is the
optional dependency group ``sweep`` (``pip install -e '.[sweep]'``).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from acpg_lab.checks import check_int
from acpg_lab.config import TrainConfig
from acpg_lab.entry import require_extra
from acpg_lab.lock import directory_lock
from acpg_lab.manifest import read_manifest, verify, write_manifest
from acpg_lab.paths import check_output_dir
from acpg_lab.ray_tasks import check_address, connect, run_tasks
from acpg_lab.store import MANIFEST, MARKERS, differences, is_finished, write_atomic, write_atomic_with

__all__ = ["SweepSpec", "SweepTask", "SweepResult", "load_spec", "parse_spec", "run_sweep", "load_sweep"]

_SECTIONS = {"sweep", "base", "grid", "resources"}
_SWEEP_KEYS = {"seeds", "seeds_per_task", "checkpoint_every"}
_RESOURCE_KEYS = {"num_cpus", "num_gpus", "max_retries"}
_SWEEP_OWNED = {"seeds", "checkpoint_every"}  # TrainConfig fields the [sweep] section sets
_FIELDS = set(TrainConfig.__dataclass_fields__) - _SWEEP_OWNED
TABLE = "sweep.parquet"


@dataclass(frozen=True)
class SweepTask:
    """One Ray task: one condition (its grid values) trained on one group of seeds as one run."""

    condition: dict[str, Any]
    config: TrainConfig

    @property
    def name(self) -> str:
        """Its directory name: the grid values and the seeds, e.g. ``head=etf,pfo_coef=1.0__seeds=0-1``."""
        values = ",".join(f"{k}={_text(v)}" for k, v in self.condition.items()) or "base"
        name = f"{values}__seeds={'-'.join(map(str, self.config.seeds))}"
        return "".join(c if c.isalnum() or c in "=,._-+" else "_" for c in name)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: build it with `parse_spec` or `load_spec`."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: tuple[int, ...]
    seeds_per_task: int
    checkpoint_every: int = 10
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    def tasks(self) -> list[SweepTask]:
        """Every (condition, seed group), conditions in grid order, each config resolved (validated)."""
        keys, groups = list(self.grid), [self.seeds[i:i + self.seeds_per_task]
                                        for i in range(0, len(self.seeds), self.seeds_per_task)]
        tasks = []
        for values in itertools.product(*self.grid.values()):
            condition = dict(zip(keys, values, strict=True))
            for seeds in groups:
                cfg = TrainConfig(**{**self.base, **condition, "seeds": seeds,
                                     "checkpoint_every": self.checkpoint_every})
                try:
                    cfg = cfg.resolve()
                except ValueError as err:
                    raise ValueError(f"condition {condition or '(base)'}: {err}") from None
                tasks.append(SweepTask(condition, cfg))
        return tasks


def condition_column(name: str) -> str:
    """The sweep table's column of grid field ``name``: the field's name, but ``config_lr`` for ``lr`` (the
    history's ``lr`` is each update's learning rate, annealed or not)."""
    return "config_lr" if name == "lr" else name


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


def _table(raw: dict[str, Any], section: str, allowed: set[str]) -> dict[str, Any]:
    value = raw.get(section, {})
    if not isinstance(value, dict):
        raise ValueError(f"[{section}] must be a table, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"[{section}] has unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return value


def _field_value(name: str, value: Any) -> Any:
    return tuple(value) if name == "hidden_sizes" and isinstance(value, list) else value


def parse_spec(raw: dict[str, Any]) -> SweepSpec:
    """Validate a parsed spec (a dict of the TOML's tables) and every configuration it expands to; ValueError
    naming the section and field of the first problem, before anything is trained."""
    unknown = sorted(set(raw) - _SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; a sweep spec has {sorted(_SECTIONS)}")
    sweep = _table(raw, "sweep", _SWEEP_KEYS)
    base = {k: _field_value(k, v) for k, v in _table(raw, "base", _FIELDS).items()}
    grid = _table(raw, "grid", _FIELDS)
    resources = _table(raw, "resources", _RESOURCE_KEYS)
    seeds = sweep.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and s >= 0 for s in seeds):
        raise ValueError(f"sweep.seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"sweep.seeds lists {twice} more than once")
    per_task = check_int("sweep.seeds_per_task", sweep.get("seeds_per_task", len(seeds)), 1)
    every = check_int("sweep.checkpoint_every", sweep.get("checkpoint_every", 10), 0)
    for name, values in grid.items():
        if not isinstance(values, list):
            raise ValueError(f"grid.{name} must be a list of values, got {values!r}")
        if not values:
            raise ValueError(f"grid.{name} is empty: the grid expands to no runs")
        if name in base:
            raise ValueError(f"{name} is set in [base] and varied in [grid]; keep it in one of them")
    for name in ("num_cpus", "num_gpus"):
        value = resources.get(name, 1 if name == "num_cpus" else 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or \
                (name == "num_cpus" and value == 0):
            raise ValueError(f"resources.{name} must be a {'positive' if name == 'num_cpus' else 'non-negative'} "
                             f"number, got {value!r}")
    spec = SweepSpec(base=base, grid={k: [_field_value(k, v) for v in vs] for k, vs in grid.items()},
                     seeds=tuple(seeds), seeds_per_task=per_task, checkpoint_every=every,
                     num_cpus=float(resources.get("num_cpus", 1)), num_gpus=float(resources.get("num_gpus", 0)),
                     max_retries=check_int("resources.max_retries", resources.get("max_retries", 3), 0), source=raw)
    _refuse_repeated_conditions(spec.tasks())  # every condition resolves, and no two train the same runs
    return spec


def _refuse_repeated_conditions(tasks: list[SweepTask]) -> None:
    """ValueError if two tasks would train the same runs (equal resolved configurations: ``head = ["etf", "etf"]``,
    or ``lr = [1, 1.0]``) or into the same directory (equal names): one would overwrite the other."""
    seen: list[SweepTask] = []
    for task in tasks:
        for other in seen:
            if other.name == task.name or other.config.to_dict() == task.config.to_dict():
                raise ValueError(f"grid repeats a condition: {_label(other.condition)} and {_label(task.condition)} "
                                 f"train the same runs (seeds {list(task.config.seeds)}) into "
                                 f"runs/{task.name}; list each value once")
        seen.append(task)


def _label(condition: dict[str, Any]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in condition.items()) or "(base)"


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a TOML sweep spec (see the module docstring)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise ValueError(f"cannot read sweep spec {path}: {err}") from None
    return parse_spec(raw)


# ----------------------------------------------------------------------------- one task (runs in a Ray worker)
def train_task(config: dict[str, Any], condition: dict[str, Any], run_dir: str) -> int:
    """Train (or resume) one task's run in ``run_dir`` and write its ``history.parquet``; returns the environment
    steps trained by this call (all seeds together: 0 if the run had already finished)."""
    from acpg_lab.checkpoint import CHECKPOINT_NAME, read_checkpoint
    from acpg_lab.training import train

    cfg = TrainConfig(**{**config, "seeds": tuple(config["seeds"]), "hidden_sizes": tuple(config["hidden_sizes"])})
    directory = Path(run_dir)
    with directory_lock(directory, label="sweep task"):  # one writer for the whole task (train re-enters it)
        finished = is_finished(directory, kind="run")
        ckpt = directory / CHECKPOINT_NAME
        start = read_checkpoint(ckpt)["update"] if ckpt.exists() and not finished else 0
        with open(directory / "attempts.jsonl", "a") as f:  # who trains it, from where: one line per attempt
            f.write(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), time=time.time(),
                                    resumed_from=start, finished=finished)) + "\n")
        run = train(cfg, progress=False, run_dir=directory, resume=True)
        if run.interrupted:  # train turns Ctrl-C (or Ray's cancel) into a partial run: never store it as finished
            raise KeyboardInterrupt(f"sweep task {directory.name} interrupted after {len(run.history)} history "
                                    "rows; its checkpoint is kept and the next run of the sweep resumes it")
        table = run.history.copy()
        for i, (key, value) in enumerate(condition.items()):
            table.insert(i, condition_column(key), _text(value) if isinstance(value, list | tuple | dict) else value)
        name = MARKERS["sweep_task"][0]
        write_atomic_with(directory / name, lambda tmp: table.to_parquet(tmp, index=False))
        listed = read_manifest(directory)
        if listed is not None:  # the run's manifest, now also listing the task's table: verified when it is read
            write_manifest(directory, [*listed["files"], name])
    return 0 if finished else (cfg.num_updates - run.resumed_from) * cfg.batch_size * len(cfg.seeds)


# ----------------------------------------------------------------------------- the driver
@dataclass(frozen=True)
class SweepResult:
    table: Path  #: the sweep's Parquet table
    tasks: int  #: tasks in the sweep
    trained: int  #: tasks this call trained or resumed (the others had finished before)
    steps: int  #: environment steps this call trained, all seeds together


def run_sweep(spec: SweepSpec | str | Path, out: str | Path, *, address: str | None = None,
              num_cpus: int | None = None, progress: bool = True) -> SweepResult:
    """Run every unfinished task of ``spec`` on Ray and write ``out/sweep.parquet``.

    ``address``: an existing Ray cluster (``HOST:PORT`` of ``ray start --head``, or ``"auto"``); one where no Ray
    answers fails within seconds naming it (`acpg_lab.ray_tasks.probe_address`). Without it, a local Ray instance
    with ``num_cpus`` CPUs (default: the machine's). Rerunning with the same spec continues; ``out`` holding another
    sweep's spec is an error. Every check (arguments, spec, ``out`` and what goes inside it, Ray and pyarrow
    installed, the cluster answering) is done before anything is written. SIGINT or SIGTERM cancels the running
    tasks and raises `acpg_lab.ray_tasks.Interrupted`: finished tasks are kept, no sweep table is written, and the
    same command continues.
    """
    if num_cpus is not None:
        check_int("--num-cpus", num_cpus, 1)
    if address not in (None, "auto"):
        check_address(address)
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if num_cpus is not None and address is None and spec.num_cpus > num_cpus:
        raise ValueError(f"--num-cpus {num_cpus} is fewer than the {_number(spec.num_cpus)} CPUs each task asks "
                         "for (resources.num_cpus): no task could ever start")
    tasks = spec.tasks()
    out = check_output_dir(out, what="the sweep directory --out", subdirs=["runs", *(f"runs/{t.name}" for t in tasks)],
                           files=["spec.json", TABLE],
                           hint=": pass the sweep's directory (new or a previous run of this sweep)")
    pending = [t for t in tasks if not is_finished(out / "runs" / t.name, kind="sweep_task")]
    if pending:  # everything Ray needs, checked before anything is written
        require_extra("ray", "sweep", needed_by="acpg-lab sweep")
        if address is not None:  # join the cluster now: one where no Ray answers fails naming it (probe_address)
            connect(address, num_cpus)
    require_extra("pyarrow", "sweep", needed_by="the sweep's Parquet tables")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a race with another process: the check above passed
        raise ValueError(f"cannot create the sweep directory --out {out}: {err.strerror or err}") from None
    stored, what = out / "spec.json", json.loads(json.dumps({k: v for k, v in spec.source.items()
                                                            if k != "resources"}))  # resources may change
    if stored.exists():
        differ = differences(_flat(json.loads(stored.read_text())), _flat(what))
        if differ:
            raise ValueError(f"{out} holds another sweep (its spec.json differs in {differ}); use another --out "
                             "directory")
    write_atomic(stored, json.dumps(what, indent=2))
    steps = 0
    if pending:
        calls = {t.name: (t.config.to_dict(), t.condition, str(out / "runs" / t.name)) for t in pending}
        steps = sum(run_tasks(train_task, calls, address=address, num_cpus=num_cpus, task_cpus=spec.num_cpus,
                              task_gpus=spec.num_gpus, max_retries=spec.max_retries, what="sweep tasks",
                              total=len(tasks), progress=progress).values())
    table = pd.concat([_task_table(out / "runs" / t.name) for t in tasks], ignore_index=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a table being replaced is unverified until its manifest is written
    write_atomic_with(out / TABLE, lambda tmp: table.to_parquet(tmp, index=False))
    write_manifest(out, [TABLE, "spec.json"])  # last: load_sweep verifies the table against it
    return SweepResult(out / TABLE, len(tasks), len(pending), steps)


def _task_table(directory: Path) -> pd.DataFrame:
    """A finished task's ``history.parquet``, verified against the run's manifest where it lists it (tasks
    stored before manifests load unverified)."""
    if read_manifest(directory) is not None:
        verify(directory, marker=MARKERS["run"][0], required=True)
    return pd.read_parquet(directory / MARKERS["sweep_task"][0])


def _flat(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's fields as ``section.field`` (the names a difference is reported by)."""
    return {f"{section}.{key}": value for section, table in spec.items() for key, value in table.items()}


def load_sweep(out: str | Path) -> pd.DataFrame:
    """A finished sweep's table: a row per (condition, seed, update), the grid values as columns; verified against
    the sweep's ``manifest.json`` (an error names a truncated or corrupted table; a sweep written before manifests
    loads unverified, with a note)."""
    path = Path(out) / TABLE
    if not path.exists():
        raise ValueError(f"{path} does not exist: run the sweep first (acpg-lab sweep SPEC --out {out})")
    verify(out, marker=TABLE, required=False)
    return pd.read_parquet(path)
