"""Fault injection on the stores (issue 26): two writers on one directory, stale locks, run directories that cannot
be written, truncated / corrupted / missing files of runs and evidence pieces, directories stored before manifests,
SIGKILL during a run and during a sweep, a full disk while the manifest is written.

Every test checks the error's text and that nothing on disk was lost or changed (file hashes before and after).
The configs are tiny (CartPole, 2 x 32 steps per rollout, 4 updates): each test takes a few seconds at most.
"""

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import acpg_lab as al
from acpg_lab import checkpoint, lock, manifest, store, sweep, training
from acpg_lab.evidence import EXPERIMENTS, pieces
from acpg_lab.evidence.conditions import Condition
from acpg_lab.lock import DirectoryBusyError, directory_lock
from acpg_lab.store import IntegrityError

TINY = dict(env_id="CartPole-v1", algo="ppo", seeds=(0, 1), num_envs=2, rollout_steps=32, minibatch_size=32,
            total_steps=256, device="cpu")  # 4 updates x 2 seeds = 8 history rows
HOST = socket.gethostname()
PIECE_CONFIG = {k: v for k, v in TINY.items() if k not in ("seeds", "device")}  # a piece sets both


def _cfg(**changes):
    return al.TrainConfig(**{**TINY, **changes})


def _tree(directory):
    """relative path -> sha256 of every file under ``directory`` (what must not change)."""
    directory = Path(directory)
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _same_run(run, ref):
    pd.testing.assert_frame_equal(run.history.drop(columns="time"), ref.history.drop(columns="time"),
                                  check_exact=True)
    for key, value in ref.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[key], value), key


def _no_environment(monkeypatch):
    """Any environment made from here on fails the test: what is refused must be refused before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("an environment was created")

    monkeypatch.setattr(training, "SeedEnvs", refuse)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A finished run directory (with snapshots and the probe batch) and the run, saved once for the module."""
    out = tmp_path_factory.mktemp("saved") / "run"
    run = al.train(_cfg(snapshot_every=2), progress=False, run_dir=out)
    return out, run


@pytest.fixture
def run_dir(saved, tmp_path):
    """A private copy of the saved run directory."""
    copy = tmp_path / "run"
    shutil.copytree(saved[0], copy)
    return copy


def _make_legacy(directory, marker):
    """What acpg_lab wrote before manifests: no manifest.json, a marker that names none."""
    (directory / store.MANIFEST).unlink()
    meta = json.loads((directory / marker).read_text())
    del meta["manifest"]
    (directory / marker).write_text(json.dumps(meta, indent=2))


# ----------------------------------------------------------------------------- processes
_CHILD = r"""
import os, sys, time
import acpg_lab as al
from acpg_lab import checkpoint, lock, sweep
mode, target, cfg = sys.argv[1], sys.argv[2], eval(sys.argv[3])
if mode == "hold":  # hold the directory's lock until killed
    with lock.directory_lock(target, label=cfg):
        print("locked", flush=True)
        time.sleep(600)
original = checkpoint.RunDirectory.after_update
def slow_after_update(self, state):  # a run slow enough to be caught mid-way, without using the CPU
    original(self, state)
    time.sleep(float(os.environ.get("SLOW", "0.3")))
checkpoint.RunDirectory.after_update = slow_after_update
if mode == "train":
    al.train(al.TrainConfig(**cfg), progress=False, run_dir=target, resume=True)
elif mode == "sweep":
    sweep.run_tasks = lambda function, calls, **kw: {k: function(*a) for k, a in calls.items()}
    sweep.run_sweep(sweep.parse_spec(cfg), target, progress=False)
"""


def _child(mode, target, arg, **env):
    return subprocess.Popen([sys.executable, "-c", _CHILD, mode, str(target), repr(arg)],
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(condition, proc, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the child ended before {what}: {proc.stderr.read()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _locked_by(directory, pid):
    info = lock.holder(directory)
    return info is not None and info.get("pid") == pid


def _checkpoint_update(directory):
    try:
        return checkpoint.read_checkpoint(Path(directory) / checkpoint.CHECKPOINT_NAME)["update"]
    except (OSError, ValueError):
        return -1


def _sequential(function, calls, **kwargs):
    """`run_tasks` without Ray: the tasks one after the other in this process."""
    return {label: function(*args) for label, args in calls.items()}


# ----------------------------------------------------------------------------- one writer per directory
class TestOneWriter:
    def test_second_training_process_fails_naming_the_holder_and_the_first_run_is_intact(self, tmp_path,
                                                                                           monkeypatch):
        cfg = _cfg(checkpoint_every=1, total_steps=512)
        first = _child("train", tmp_path / "run", cfg.to_dict(), SLOW="0.15")
        try:
            _wait(lambda: _locked_by(tmp_path / "run", first.pid), first, "the first writer took the lock")
            started = lock.holder(tmp_path / "run")["started"]
            _no_environment(monkeypatch)
            with pytest.raises(DirectoryBusyError, match=rf"run_dir {tmp_path / 'run'} is in use by another writer: "
                               rf"pid {first.pid} on host {HOST}, started {started}"):
                al.train(cfg, progress=False, run_dir=tmp_path / "run", resume=True)
            assert first.wait(timeout=60) == 0, first.stderr.read()
        finally:
            first.kill()
        monkeypatch.undo()
        _same_run(al.Run.load(tmp_path / "run"), al.train(_cfg(total_steps=512), progress=False))
        assert not (tmp_path / "run" / lock.LOCK_NAME).exists()

    def test_run_save_into_a_directory_another_process_holds_is_refused(self, run_dir, saved):
        before = _tree(run_dir)
        holder = _child("hold", run_dir, "run directory")
        try:
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(DirectoryBusyError, match=rf"run directory {run_dir} is in use by another writer: "
                               rf"pid {holder.pid} on host {HOST}"):
                saved[1].save(run_dir)
        finally:
            holder.kill()
            holder.wait()
        assert {k: v for k, v in _tree(run_dir).items() if k != lock.LOCK_NAME} == before

    def test_a_second_process_storing_the_same_evidence_piece_is_refused(self, tmp_path, monkeypatch):
        monkeypatch.setitem(EXPERIMENTS, "tiny", {"a": Condition(PIECE_CONFIG, seeds=(0, 1))})
        out = pieces.piece_dir(tmp_path, "tiny", "a", (0, 1))
        holder = _child("hold", out, "evidence piece")
        try:
            assert holder.stdout.readline().strip() == "locked"
            _no_environment(monkeypatch)
            with pytest.raises(DirectoryBusyError, match=rf"evidence piece {out} is in use by another writer: "
                               rf"pid {holder.pid}"):
                pieces.run_piece("tiny", "a", (0, 1), tmp_path)
        finally:
            holder.kill()
            holder.wait()
        assert _tree(tmp_path) == {str(out.relative_to(tmp_path) / lock.LOCK_NAME): _tree(out)[lock.LOCK_NAME]}

    def test_another_thread_of_this_process_is_refused(self, tmp_path):
        entered, leave, errors = threading.Event(), threading.Event(), []

        def hold():
            with directory_lock(tmp_path / "run"):
                entered.set()
                leave.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        entered.wait(10)
        try:
            with pytest.raises(DirectoryBusyError, match=rf"run_dir {tmp_path / 'run'} is in use by another thread "
                               rf"of this process \(pid {os.getpid()}\)"):
                al.train(_cfg(), progress=False, run_dir=tmp_path / "run")
        except BaseException as err:  # noqa: BLE001 - reported after the holder is released
            errors.append(err)
        leave.set()
        thread.join()
        assert not errors, errors
        assert not (tmp_path / "run").exists()  # the holder created it, wrote nothing, and removed it

    def test_the_same_thread_may_enter_again_and_a_clean_exit_leaves_no_lock(self, tmp_path):
        with directory_lock(tmp_path / "d") as d:
            (d / "kept").write_text("x")
            with directory_lock(tmp_path / "d"):
                assert lock.holder(d)["pid"] == os.getpid()
            assert lock.holder(d)["pid"] == os.getpid()  # the inner exit did not release it
        assert _tree(tmp_path / "d") == {"kept": hashlib.sha256(b"x").hexdigest()}


class TestStaleLock:
    def test_lock_of_a_killed_process_is_taken_over_with_a_warning(self, tmp_path, saved):
        holder = _child("hold", tmp_path / "run", "run_dir")
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        stale = lock.holder(tmp_path / "run")
        assert stale["pid"] == holder.pid  # the file stays; the kernel dropped the lock
        with pytest.warns(UserWarning, match=rf"run_dir {tmp_path / 'run'}: taking over the stale lock of pid "
                          rf"{holder.pid} on host {HOST}, started {stale['started']}: that process is gone"):
            run = al.train(_cfg(snapshot_every=2), progress=False, run_dir=tmp_path / "run")
        _same_run(run, saved[1])
        _same_run(al.Run.load(tmp_path / "run"), saved[1])
        assert not (tmp_path / "run" / lock.LOCK_NAME).exists()

    def test_lock_file_left_by_another_host_is_taken_over_naming_it(self, tmp_path):
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / lock.LOCK_NAME).write_text(json.dumps(dict(pid=1, host="elsewhere", started="then")))
        with pytest.warns(UserWarning, match=r"stale lock of pid 1 on host elsewhere, started then: it no longer "
                          r"holds the lock"):
            with directory_lock(tmp_path / "d"):
                assert lock.holder(tmp_path / "d")["pid"] == os.getpid()
        assert _tree(tmp_path) == {}


class TestRunDirChecked:
    def test_run_dir_that_is_a_file_is_refused_before_any_environment(self, tmp_path, monkeypatch):
        (tmp_path / "taken").write_text("keep me")
        _no_environment(monkeypatch)
        with pytest.raises(ValueError, match=rf"^run_dir {tmp_path / 'taken'} is a file, not a directory"):
            al.train(_cfg(), progress=False, run_dir=tmp_path / "taken")
        assert (tmp_path / "taken").read_text() == "keep me" and _tree(tmp_path) == {"taken": _tree(tmp_path)["taken"]}

    def test_run_dir_under_a_file_is_refused_before_any_environment(self, tmp_path, monkeypatch):
        (tmp_path / "taken").write_text("keep me")
        _no_environment(monkeypatch)
        with pytest.raises(ValueError, match=rf"^cannot create run_dir {tmp_path / 'taken' / 'run'}: Not a "
                           "directory"):
            al.train(_cfg(), progress=False, run_dir=tmp_path / "taken" / "run")
        assert (tmp_path / "taken").read_text() == "keep me"

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod: nothing to refuse")
    def test_run_dir_under_an_unwritable_parent_is_refused(self, tmp_path, monkeypatch):
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        _no_environment(monkeypatch)
        try:
            with pytest.raises(ValueError, match=rf"^cannot create run_dir {tmp_path / 'ro' / 'run'}: Permission "
                               "denied"):
                al.train(_cfg(), progress=False, run_dir=tmp_path / "ro" / "run")
        finally:
            (tmp_path / "ro").chmod(0o700)
        assert list((tmp_path / "ro").iterdir()) == []

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod: nothing to refuse")
    def test_unwritable_run_dir_is_refused(self, run_dir, monkeypatch):
        before = _tree(run_dir)
        run_dir.chmod(0o500)
        _no_environment(monkeypatch)
        try:
            with pytest.raises(ValueError, match=rf"^run_dir {run_dir} is not writable \(Permission denied\)"):
                al.train(_cfg(snapshot_every=2), progress=False, run_dir=run_dir, resume=True)
        finally:
            run_dir.chmod(0o700)
        assert _tree(run_dir) == before

    def test_a_run_failing_before_it_writes_leaves_no_directory_behind(self, tmp_path, monkeypatch):
        """The lock creates run_dir; a run that fails before writing anything removes it again."""
        def broken_setup(cfg):
            raise RuntimeError("no environment today")

        monkeypatch.setattr(training, "_setup", broken_setup)
        with pytest.raises(RuntimeError, match="no environment today"):
            al.train(_cfg(), progress=False, run_dir=tmp_path / "new" / "run")
        assert _tree(tmp_path) == {} and not (tmp_path / "new" / "run").exists()


# ----------------------------------------------------------------------------- verified loads: runs
class TestSweepTable:
    def test_a_truncated_sweep_table_is_named_and_a_rerun_rewrites_it(self, tmp_path, monkeypatch):
        spec = {"sweep": {"seeds": [0], "seeds_per_task": 1},
                "base": {k: v for k, v in TINY.items() if k != "seeds"}, "grid": {"head": ["linear", "etf"]},
                "resources": {"num_cpus": 1}}
        monkeypatch.setattr(sweep, "run_tasks", _sequential)
        out = tmp_path / "sweep"
        sweep.run_sweep(sweep.parse_spec(spec), out, progress=False)
        table = sweep.load_sweep(out)
        assert sorted(json.loads((out / "manifest.json").read_text())["files"]) == ["spec.json", "sweep.parquet"]
        data = (out / "sweep.parquet").read_bytes()
        (out / "sweep.parquet").write_bytes(data[: len(data) // 2])
        runs = _tree(out / "runs")
        with pytest.raises(IntegrityError, match=rf"^{out / 'sweep.parquet'} is truncated: \d+ bytes"):
            sweep.load_sweep(out)
        assert _tree(out / "runs") == runs  # the finished tasks are untouched
        sweep.run_sweep(sweep.parse_spec(spec), out, progress=False)  # nothing to train: the table is rebuilt
        pd.testing.assert_frame_equal(sweep.load_sweep(out), table)


class TestRunFiles:
    @pytest.mark.parametrize("name, cut, problem", [
        ("history.csv", 0.6, r"is truncated: \d+ bytes, .*manifest\.json lists \d+"),
        ("model.pt", 0.5, r"is truncated: \d+ bytes, .*manifest\.json lists \d+"),
        ("config.json", 0.5, r"is truncated: \d+ bytes, .*manifest\.json lists \d+"),
        ("snapshots/actor_step256.pt", 0.9, r"is truncated"),
        ("probe_obs.pt", 0.3, r"is truncated"),
    ])
    def test_truncated_file_is_named(self, run_dir, name, cut, problem):
        data = (run_dir / name).read_bytes()
        (run_dir / name).write_bytes(data[: int(len(data) * cut)])
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"^{run_dir / name} {problem}"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    @pytest.mark.parametrize("name", ["history.csv", "model.pt", "config.json", "snapshots/actor_step128.pt"])
    def test_corrupted_file_is_named(self, run_dir, name):
        data = bytearray((run_dir / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (run_dir / name).write_bytes(bytes(data))
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"^{run_dir / name} is corrupted: its SHA-256 differs from the one "
                           rf"{run_dir / 'manifest.json'} lists \(same size"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    @pytest.mark.parametrize("name", ["history.csv", "model.pt", "probe_obs.pt"])
    def test_missing_file_is_named(self, run_dir, name):
        (run_dir / name).unlink()
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"^{run_dir / name} is missing \(listed in "
                           rf"{run_dir / 'manifest.json'}\)"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    def test_missing_manifest_of_a_run_saved_with_one_is_named(self, run_dir):
        (run_dir / "manifest.json").unlink()
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"{run_dir / 'manifest.json'} is missing, though "
                           rf"{run_dir / 'config.json'} says the directory was stored with one"):
            al.Run.load(run_dir)
        assert not store.is_finished(run_dir, kind="run")  # not finished: train(resume=True) would redo the save
        assert _tree(run_dir) == before

    def test_manifest_of_another_format_is_refused(self, run_dir):
        content = json.loads((run_dir / "manifest.json").read_text())
        (run_dir / "manifest.json").write_text(json.dumps({**content, "format": 99}))
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"{run_dir / 'manifest.json'} was written in manifest format 99 "
                           rf"\(acpg_lab .*\); this acpg_lab .* reads format {manifest.FORMAT} only"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    def test_file_added_after_the_save_is_refused(self, run_dir):
        shutil.copy(run_dir / "snapshots" / "actor_step0.pt", run_dir / "snapshots" / "actor_step384.pt")
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=r"actor_step384\.pt is not listed in .*manifest\.json"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    def test_resume_over_a_corrupted_finished_run_names_the_file_and_overwrites_nothing(self, run_dir,
                                                                                         monkeypatch):
        (run_dir / "history.csv").write_bytes((run_dir / "history.csv").read_bytes()[:-10])
        before = _tree(run_dir)
        _no_environment(monkeypatch)
        with pytest.raises(IntegrityError, match=rf"{run_dir / 'history.csv'} is truncated"):
            al.train(_cfg(snapshot_every=2), progress=False, run_dir=run_dir, resume=True)
        assert _tree(run_dir) == before


class TestLegacyRuns:
    def test_run_saved_before_manifests_loads_with_one_note(self, run_dir, saved, caplog):
        _make_legacy(run_dir, "config.json")
        before = _tree(run_dir)
        with caplog.at_level(logging.WARNING, logger="acpg_lab.store"):
            _same_run(al.Run.load(run_dir), saved[1])
            _same_run(al.Run.load(run_dir), saved[1])
        notes = [r.getMessage() for r in caplog.records]
        assert notes == [f"note: {run_dir} was stored before acpg_lab wrote manifests; loaded without verifying its "
                         "files' sizes and checksums"]
        assert store.is_finished(run_dir, kind="run") and _tree(run_dir) == before

    def test_legacy_history_cut_to_60_percent_is_refused_not_read_as_fewer_rows(self, run_dir):
        _make_legacy(run_dir, "config.json")
        data = (run_dir / "history.csv").read_bytes()
        (run_dir / "history.csv").write_bytes(data[: int(len(data) * 0.6)])
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"^{run_dir / 'history.csv'} is truncated: [1-7] rows( \(the last "
                           r"cut off\))?, a finished run of 2 seeds x 4 updates has 8"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    def test_legacy_half_written_config_names_the_file(self, run_dir):
        _make_legacy(run_dir, "config.json")
        data = (run_dir / "config.json").read_bytes()
        (run_dir / "config.json").write_bytes(data[: len(data) // 2])
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"^{run_dir / 'config.json'} is not valid JSON \(.*; \d+ bytes\): "
                           "half-written or corrupted"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before

    def test_legacy_truncated_model_names_the_file(self, run_dir):
        _make_legacy(run_dir, "config.json")
        data = (run_dir / "model.pt").read_bytes()
        (run_dir / "model.pt").write_bytes(data[: len(data) // 2])
        before = _tree(run_dir)
        with pytest.raises(IntegrityError, match=rf"^{run_dir / 'model.pt'} cannot be read \(.*\): truncated or "
                           "corrupted"):
            al.Run.load(run_dir)
        assert _tree(run_dir) == before


# ----------------------------------------------------------------------------- verified loads: evidence pieces
@pytest.fixture(scope="module")
def stored_piece(tmp_path_factory):
    """One evidence piece of a tiny condition with snapshots (so it has plasticity.csv), stored once."""
    root = tmp_path_factory.mktemp("evidence")
    condition = Condition({**PIECE_CONFIG, "snapshot_every": 2}, seeds=(0, 1))
    with pytest.MonkeyPatch.context() as m:
        m.setitem(EXPERIMENTS, "tiny", {"a": condition})
        pieces.run_piece("tiny", "a", (0, 1), root)
    return root, condition


@pytest.fixture
def piece(stored_piece, tmp_path, monkeypatch):
    root, condition = stored_piece
    shutil.copytree(root, tmp_path / "ev")
    monkeypatch.setitem(EXPERIMENTS, "tiny", {"a": condition})
    return tmp_path / "ev", pieces.piece_dir(tmp_path / "ev", "tiny", "a", (0, 1))


class TestPieceFiles:
    def test_stored_piece_lists_every_file_and_loads(self, piece):
        root, out = piece
        listed = json.loads((out / "manifest.json").read_text())["files"]
        assert sorted(listed) == ["evaluation.csv", "history.parquet", "meta.json", "plasticity.csv"]
        history, evaluation = pieces.load_condition("tiny", "a", root=root)
        assert len(history) == 8 and sorted(evaluation.index) == [0, 1]
        assert len(pieces.load_probes("tiny", "a", root=root)) == 6
        assert not (out / lock.LOCK_NAME).exists()

    @pytest.mark.parametrize("name, damage, load, problem", [
        ("history.parquet", "truncate", "load_condition", r"is truncated: \d+ bytes, .*manifest\.json lists \d+"),
        ("evaluation.csv", "flip", "load_condition", r"is corrupted: its SHA-256 differs"),
        ("plasticity.csv", "remove", "load_probes", r"is missing \(listed in .*manifest\.json\)"),
        ("meta.json", "truncate", "stored_config", r"is truncated"),
    ])
    def test_damaged_piece_file_is_named(self, piece, name, damage, load, problem):
        root, out = piece
        path, data = out / name, (out / name).read_bytes()
        if damage == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "flip":
            path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
        else:
            path.unlink()
        before = _tree(root)
        with pytest.raises(IntegrityError, match=rf"^{path} {problem}"):
            getattr(pieces, load)("tiny", "a", root=root)
        assert _tree(root) == before

    def test_an_interrupted_piece_is_not_stored(self, stored_piece, tmp_path, monkeypatch):
        """train turns Ctrl-C into a partial run (``interrupted``); run_piece must not store it as finished."""
        _, condition = stored_piece
        monkeypatch.setitem(EXPERIMENTS, "tiny", {"a": condition})
        real_train = pieces.train

        def interrupted_train(*args, **kwargs):
            return dataclasses.replace(real_train(*args, **kwargs), interrupted=True)

        monkeypatch.setattr(pieces, "train", interrupted_train)
        root = tmp_path / "fresh"
        with pytest.raises(KeyboardInterrupt, match=r"tiny/a seeds 0-1: interrupted, nothing stored"):
            pieces.run_piece("tiny", "a", (0, 1), root)
        out = pieces.piece_dir(root, "tiny", "a", (0, 1))
        assert not store.is_finished(out, kind="piece")
        assert not out.exists() or not any(p.name in ("meta.json", "manifest.json", "history.parquet")
                                           for p in out.iterdir())

    def test_legacy_piece_loads_with_one_quiet_note(self, piece, caplog):
        root, out = piece
        _make_legacy(out, "meta.json")
        before = _tree(root)
        with caplog.at_level(logging.INFO, logger="acpg_lab.store"):
            pieces.load_condition("tiny", "a", root=root)
            pieces.load_probes("tiny", "a", root=root)
            assert pieces.stored_config("tiny", "a", root=root)["seeds"] == [0, 1]
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.INFO, f"note: evidence pieces under {root} were stored before acpg_lab wrote manifests; they "
                           "load without verifying their files' sizes and checksums")]
        assert _tree(root) == before

    def test_legacy_half_written_meta_and_short_evaluation_are_named(self, piece):
        root, out = piece
        _make_legacy(out, "meta.json")
        evaluation = (out / "evaluation.csv").read_text().splitlines()
        (out / "evaluation.csv").write_text("\n".join(evaluation[:-1]) + "\n")  # the last seed's row lost
        before = _tree(root)
        with pytest.raises(IntegrityError, match=rf"^{out / 'evaluation.csv'} is truncated or corrupted: it holds "
                           r"seeds \[0\], the piece trained \[0, 1\]"):
            pieces.load_condition("tiny", "a", root=root)
        meta = (out / "meta.json").read_bytes()
        (out / "meta.json").write_bytes(meta[: len(meta) // 3])
        with pytest.raises(IntegrityError, match=rf"^{out / 'meta.json'} is not valid JSON .*half-written"):
            pieces.stored_config("tiny", "a", root=root)
        assert {k: v for k, v in _tree(root).items() if not k.endswith("meta.json")} == {
            k: v for k, v in before.items() if not k.endswith("meta.json")}


# ----------------------------------------------------------------------------- SIGKILL mid-way
class TestKilled:
    def test_run_killed_mid_way_resumes_and_earlier_runs_are_intact(self, tmp_path, saved):
        shutil.copytree(saved[0], tmp_path / "done")  # an earlier finished run beside it
        done = _tree(tmp_path / "done")
        cfg = _cfg(checkpoint_every=1, total_steps=512)
        child = _child("train", tmp_path / "run", cfg.to_dict(), SLOW="0.15")
        try:
            _wait(lambda: _checkpoint_update(tmp_path / "run") >= 2, child, "checkpoint 2")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        at_kill = _checkpoint_update(tmp_path / "run")
        assert 2 <= at_kill < cfg.num_updates and not store.is_finished(tmp_path / "run", kind="run")
        with pytest.warns(UserWarning, match=rf"stale lock of pid {child.pid} on host {HOST}.*that process is gone"):
            run = al.train(cfg, progress=False, run_dir=tmp_path / "run", resume=True)
        assert run.resumed_from == at_kill
        _same_run(al.Run.load(tmp_path / "run"), al.train(_cfg(total_steps=512), progress=False))
        assert _tree(tmp_path / "done") == done
        assert sorted(_tree(tmp_path / "run")) == ["config.json", "history.csv", "manifest.json", "model.pt"]

    def test_sweep_driver_killed_mid_way_keeps_finished_runs_and_trains_only_the_rest(self, tmp_path, monkeypatch):
        spec = {"sweep": {"seeds": [0], "seeds_per_task": 1, "checkpoint_every": 1},
                "base": {k: v for k, v in TINY.items() if k != "seeds"} | {"total_steps": 384},
                "grid": {"head": ["linear", "etf", "random"]}, "resources": {"num_cpus": 1}}
        out = tmp_path / "sweep"
        runs = [out / "runs" / t.name for t in sweep.parse_spec(spec).tasks()]
        driver = _child("sweep", out, spec, SLOW="0.1")
        try:
            _wait(lambda: (runs[0] / "history.parquet").exists() and _checkpoint_update(runs[1]) >= 1, driver,
                  "one finished task and one mid-way")
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        done = [r for r in runs if (r / "history.parquet").exists()]  # runs[0], and runs[1] if it just ended
        finished = {r: _tree(r) for r in done}
        stale = [r for r in runs if (r / lock.LOCK_NAME).exists()]  # the run the driver was killed in
        assert runs[0] in done and runs[2] not in done and len(stale) <= 1
        monkeypatch.setattr(sweep, "run_tasks", _sequential)
        with (pytest.warns(UserWarning, match=rf"sweep task {stale[0]}: taking over the stale lock of pid {driver.pid}")
              if stale else contextlib.nullcontext()):
            result = sweep.run_sweep(sweep.parse_spec(spec), out, progress=False)
        assert (result.tasks, result.trained) == (3, 3 - len(done))
        for r in done:  # finished before the kill: not trained again, not rewritten
            assert _tree(r) == finished[r] and len((r / "attempts.jsonl").read_text().splitlines()) == 1
        if runs[1] not in done:  # killed mid-way: resumed from its checkpoint, not from the start
            assert json.loads((runs[1] / "attempts.jsonl").read_text().splitlines()[-1])["resumed_from"] >= 1
        table = sweep.load_sweep(out)
        assert sorted(table["head"].unique()) == ["etf", "linear", "random"] and len(table) == 3 * 6


# ----------------------------------------------------------------------------- a full disk at the manifest
def _full_disk_at_manifest(monkeypatch, where=None):
    """Writing a manifest (into ``where`` only, if given) fails as on a full disk."""
    original = manifest.write_atomic

    def write_atomic(path, data):
        if Path(path).name == store.MANIFEST and where in (None, Path(path).parent):
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, data)

    monkeypatch.setattr(manifest, "write_atomic", write_atomic)


class TestDiskFull:
    def test_full_disk_at_the_final_manifest_keeps_the_checkpoint_and_resume_finishes(self, tmp_path, monkeypatch):
        cfg = _cfg(checkpoint_every=1)
        kept = {}
        original_finish = checkpoint.RunDirectory.finish

        def finish(self, run):
            kept.update(_tree(self.path))
            original_finish(self, run)

        monkeypatch.setattr(checkpoint.RunDirectory, "finish", finish)
        _full_disk_at_manifest(monkeypatch)
        with pytest.raises(OSError, match=rf"saving the finished run into {tmp_path / 'run'} failed \(No space left "
                           rf"on device\); the directory is not marked finished and its checkpoint "
                           rf"{tmp_path / 'run' / 'checkpoint.pt'} is kept: rerun with resume=True to finish it"):
            al.train(cfg, progress=False, run_dir=tmp_path / "run")
        assert _tree(tmp_path / "run")["checkpoint.pt"] == kept["checkpoint.pt"]
        assert not store.is_finished(tmp_path / "run", kind="run") and not (tmp_path / "run" / lock.LOCK_NAME).exists()
        monkeypatch.undo()
        run = al.train(cfg, progress=False, run_dir=tmp_path / "run", resume=True)
        assert run.resumed_from == cfg.num_updates - 1
        _same_run(al.Run.load(tmp_path / "run"), al.train(_cfg(), progress=False))

    def test_full_disk_rewriting_a_manifest_keeps_the_previous_one(self, run_dir, saved, monkeypatch):
        before = _tree(run_dir)
        _full_disk_at_manifest(monkeypatch)
        with pytest.raises(OSError, match="No space left on device"):
            manifest.write_manifest(run_dir, ["history.csv", "model.pt", "config.json"])
        assert _tree(run_dir) == before  # the previous manifest, no temporary file left
        _same_run(al.Run.load(run_dir), saved[1])

    def test_full_disk_at_a_piece_manifest_keeps_its_run_and_the_rerun_trains_nothing(self, tmp_path,
                                                                                        monkeypatch):
        condition = Condition(PIECE_CONFIG, seeds=(0, 1), checkpoint_every=2)
        monkeypatch.setitem(EXPERIMENTS, "tiny", {"a": condition})
        out = pieces.piece_dir(tmp_path, "tiny", "a", (0, 1))
        with monkeypatch.context() as m:
            _full_disk_at_manifest(m, where=out)
            with pytest.raises(OSError, match="No space left on device"):
                pieces.run_piece("tiny", "a", (0, 1), tmp_path)
        assert not store.is_finished(out, kind="piece")
        kept = _tree(out.parent / f".{out.name}.run")  # the finished run the piece was evaluated from
        assert "manifest.json" in kept and "checkpoint.pt" not in kept
        trained = []
        monkeypatch.setattr(training, "_train_resolved", lambda *a: trained.append(a))
        pieces.run_piece("tiny", "a", (0, 1), tmp_path)
        assert trained == [] and store.is_finished(out, kind="piece")
        history, _ = pieces.load_condition("tiny", "a", root=tmp_path)
        assert len(history) == 8 and not (out.parent / f".{out.name}.run").exists()
