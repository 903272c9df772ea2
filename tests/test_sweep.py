"""Sweeps on Ray: spec validation, and a small sweep on a local 2-CPU Ray instance whose task is killed mid-run and
still ends bitwise as the same runs trained in this process; a rerun trains nothing."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

import acpg_lab as al
from acpg_lab.checkpoint import read_checkpoint
from acpg_lab.sweep import load_sweep, parse_spec, run_sweep

SPEC = {
    "sweep": {"seeds": [0, 1, 2], "seeds_per_task": 2, "checkpoint_every": 2},
    "base": {"env_id": "CartPole-v1", "algo": "ppo", "total_steps": 256 * 14, "device": "cpu"},
    "grid": {"head": ["linear", "etf"]},
    "resources": {"num_cpus": 1, "max_retries": 2},
}


def _spec(**changes):
    raw = json.loads(json.dumps(SPEC))
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if value is None:
            raw[section].pop(name)
        else:
            raw[section][name] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    (dict(base__colour="red"), r"\[base\] has unknown field\(s\) \['colour'\]"),
    (dict(sweep__seed_groups=2), r"\[sweep\] has unknown field\(s\) \['seed_groups'\]"),
    (dict(grid__head=[]), r"grid.head is empty: the grid expands to no runs"),
    (dict(grid__lr=0.1), r"grid.lr must be a list of values, got 0.1"),
    (dict(sweep__seeds=[0, 1, 1]), r"sweep.seeds lists \[1\] more than once"),
    (dict(sweep__seeds=None), r"sweep.seeds must be a non-empty list"),
    (dict(sweep__seeds_per_task=0), r"sweep.seeds_per_task must be an integer >= 1"),
    (dict(resources__num_gpus=-1), r"resources.num_gpus must be a non-negative number"),
    (dict(resources__num_cpus=0), r"resources.num_cpus must be a positive number"),
    (dict(grid__activation=["tanh", "sigmoid"]),
     r"condition \{'head': 'linear', 'activation': 'sigmoid'\}: activation must be one of"),
    (dict(base__head="etf"), r"head is set in \[base\] and varied in \[grid\]"),
])
def test_bad_specs_are_refused_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(_spec(**changes))


def test_unknown_section_and_unreachable_address_fail_fast(tmp_path):
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['grids'\]"):
        parse_spec({**SPEC, "grids": {}})
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"cannot reach a Ray cluster at --address '127.0.0.1:9'"):
        run_sweep(parse_spec(SPEC), tmp_path / "sweep", address="127.0.0.1:9", progress=False)
    assert time.monotonic() - start < 10


def test_tasks_are_conditions_times_seed_groups():
    tasks = parse_spec(SPEC).tasks()
    assert [(t.condition["head"], t.config.seeds) for t in tasks] == [
        ("linear", (0, 1)), ("linear", (2,)), ("etf", (0, 1)), ("etf", (2,))]
    assert tasks[0].name == "head=linear__seeds=0-1" and tasks[0].config.checkpoint_every == 2


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():  # a test before may have let run_sweep start it
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def _toml(raw):
    """The spec as TOML (every value here is an int, a string or a list of them)."""
    return "".join(f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items()) + "\n"
                   for section, table in raw.items())


def _same_as_trained_here(table, spec, names=None):
    for task in spec.tasks():
        if names is not None and task.name not in names:
            continue
        run = al.train(al.TrainConfig(**{**task.config.to_dict(), "checkpoint_every": 0}), progress=False)
        rows = table[(table["head"] == task.condition["head"]) & table.seed.isin(task.config.seeds)]
        pd.testing.assert_frame_equal(rows.drop(columns=["head", "time"]).reset_index(drop=True),
                                      run.history.drop(columns="time"), check_exact=True)


def _kill_when_checkpointed(task_dir, update, killed):
    """SIGKILL the worker training ``task_dir`` once its checkpoint reaches ``update``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if read_checkpoint(task_dir / "checkpoint.pt")["update"] >= update:
                pid = json.loads((task_dir / "attempts.jsonl").read_text().splitlines()[-1])["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)


@pytest.mark.slow
def test_sweep_with_a_killed_task_equals_the_runs_trained_here(ray_session, tmp_path):
    spec, out = parse_spec(SPEC), tmp_path / "sweep"
    victim = out / "runs" / "head=etf__seeds=0-1"
    killed = []
    # killed at its first checkpoint (update 2 of 14): the most margin a busy machine can leave the killer thread
    killer = threading.Thread(target=_kill_when_checkpointed, args=(victim, 2, killed), daemon=True)
    killer.start()
    result = run_sweep(spec, out, progress=False)
    killer.join(timeout=1)
    assert len(killed) == 1, "the task finished before it could be killed"
    attempts = [json.loads(line) for line in (victim / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 2 and attempts[1]["resumed_from"] >= 2 and attempts[1]["pid"] != killed[0]
    assert result.tasks == result.trained == 4

    table = load_sweep(out)
    _same_as_trained_here(table, spec)

    again = run_sweep(spec, out, progress=False)  # a rerun (say, after the driver was killed) redoes nothing
    assert (again.trained, again.steps) == (0, 0)
    pd.testing.assert_frame_equal(load_sweep(out), table)
    with pytest.raises(ValueError, match=r"holds another sweep \(its spec.json differs in \['grid.head'\]\)"):
        run_sweep(parse_spec(_spec(grid__head=["etf"])), out, progress=False)


def _attempts(task_dir):
    path = task_dir / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_killed_driver_rerun_redoes_nothing_finished_and_resumes_the_rest(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "spec.toml").write_text(_toml(SPEC))
    out, spec = tmp_path / "sweep", parse_spec(SPEC)
    runs = [out / "runs" / t.name for t in spec.tasks()]
    driver = subprocess.Popen([sys.executable, "-m", "acpg_lab.cli", "sweep", str(tmp_path / "spec.toml"), "--out",
                               str(out), "--num-cpus", "2", "--quiet"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, seen = time.monotonic() + 240, False
    try:  # kill the driver, its Ray instance and workers once a task is done and another is mid-way
        while time.monotonic() < deadline and driver.poll() is None:
            done = [r for r in runs if (r / "history.parquet").exists()]
            if done and any(r not in done and (r / "checkpoint.pt").exists() for r in runs):
                seen = True
                break
            time.sleep(0.01)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        for r in runs:  # workers may sit outside the driver's process group: a machine crash takes them too
            for attempt in _attempts(r):
                try:
                    os.kill(attempt["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        driver.wait()
    assert seen, f"no moment with a finished and a running task: {driver.stderr.read().decode()}"
    time.sleep(0.5)
    done = [r for r in runs if (r / "history.parquet").exists()]
    checkpointed = {r: read_checkpoint(r / "checkpoint.pt")["update"] for r in runs
                    if r not in done and (r / "checkpoint.pt").exists()}
    assert done and checkpointed
    attempts_before = {r: len(_attempts(r)) for r in runs}
    result = run_sweep(spec, out, num_cpus=2, progress=False)  # the same sweep again, from this process
    assert result.trained == len(runs) - len(done)
    for r in done:  # finished before the kill: not trained again
        assert len(_attempts(r)) == attempts_before[r] == 1
    for r, update in checkpointed.items():  # running at the kill: resumed from (at least) that checkpoint
        assert _attempts(r)[-1]["resumed_from"] >= update
    cfg = spec.tasks()[0].config
    per_update = {r: cfg.batch_size * len(t.config.seeds) for r, t in zip(runs, spec.tasks(), strict=True)}
    resumed = {r: _attempts(r)[-1]["resumed_from"] for r in runs if r not in done}
    assert result.steps == sum((cfg.num_updates - u) * per_update[r] for r, u in resumed.items())
    _same_as_trained_here(load_sweep(out), spec, names={r.name for r in checkpointed})


def test_the_readme_spec_is_valid():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    import tomllib

    spec = parse_spec(tomllib.loads(block))
    assert len(spec.tasks()) == 2 * 2 * 2 and spec.seeds_per_task == 4


def test_a_failing_task_is_reported_and_the_others_kept(ray_session, tmp_path):
    raw = {"sweep": {"seeds": [0], "checkpoint_every": 0},
           "base": {"env_id": "CartPole-v1", "total_steps": 256 * 3, "device": "cpu", "max_grad_norm": 0.0},
           "grid": {"lr": [1e-3, 1e30]}}  # the second explodes: NonFiniteError in its task
    failure = r"(?s)1 of 2 sweep tasks failed.*lr=1e\+30__seeds=0: NonFiniteError: .*seed 0: non-finite loss"
    with pytest.raises(RuntimeError, match=failure):
        run_sweep(parse_spec(raw), tmp_path / "sweep", progress=False)
    assert (tmp_path / "sweep" / "runs" / "lr=0.001__seeds=0" / "history.parquet").exists()
    assert not (tmp_path / "sweep" / "sweep.parquet").exists()
    raw["resources"] = {"num_cpus": 2}  # resources may change between reruns; the spec's content may not
    with pytest.raises(RuntimeError, match="1 of 2 sweep tasks failed"):
        run_sweep(parse_spec(raw), tmp_path / "sweep", progress=False)


def test_the_address_probe_accepts_a_real_ray_head(ray_session):
    """The handshake that refuses a non-Ray listener within seconds (tests/test_entry_points.py) passes a real
    head's GCS: the cluster id comes back."""
    from acpg_lab.ray_tasks import HANDSHAKE_SECONDS, probe_address

    address = ray_session.get_runtime_context().gcs_address
    start = time.monotonic()
    probe_address(address)
    assert time.monotonic() - start < HANDSHAKE_SECONDS
