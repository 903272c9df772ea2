"""Checkpoint and resume: a run killed at any moment (SIGKILL, also inside a checkpoint write) and resumed ends
bitwise as a run never interrupted; bad checkpoints are refused before anything is loaded."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from _crash import crash_after_update

import acpg_lab as al
from acpg_lab import checkpoint
from acpg_lab.checkpoint import CheckpointError, read_checkpoint
from acpg_lab.envs import SeedEnvs


def _assert_same_run(run, ref):
    pd.testing.assert_frame_equal(run.history.drop(columns="time"), ref.history.drop(columns="time"),
                                  check_exact=True)
    state, ref_state = run.model.state_dict(), ref.model.state_dict()
    assert state.keys() == ref_state.keys()
    for key in state:
        assert torch.equal(state[key], ref_state[key]), key


def _plain(cfg):
    """The same config without checkpoints: the uninterrupted reference."""
    return al.TrainConfig(**{**cfg.to_dict(), "checkpoint_every": 0})


def _train_until(cfg, run_dir, stop_after, monkeypatch):
    """Train ``cfg`` in ``run_dir`` and crash right after the update ``stop_after`` (its checkpoint written)."""
    with crash_after_update(monkeypatch, stop_after):
        al.train(cfg, progress=False, run_dir=run_dir)


def _roll(envs, steps, seed):
    gen, out = torch.Generator().manual_seed(seed), []
    for _ in range(steps):
        actions = torch.randint(0, int(envs.single_action_space.n), (envs.num_seeds, envs.num_envs), generator=gen)
        step = envs.step(actions)
        out += [step.obs, step.reward, step.terminated, step.truncated, step.valid]
    return out


@pytest.mark.parametrize("env_id, fast", [("CartPole-v1", True), ("CartPole-v1", False), ("Acrobot-v1", True),
                                          ("Acrobot-v1", False), ("acpg_lab/ActionBandit-v0", True),
                                          ("acpg_lab/IdealGrid-v0", True), ("acpg_lab/IdealGrid-v0", False),
                                          ("MinAtar/Breakout-v1", False)])
def test_environment_state_continues_bitwise(env_id, fast, tmp_path):
    def make():
        envs = SeedEnvs(env_id, num_envs=3, env_seeds=[5, 9], device=torch.device("cpu"), fast=fast)
        envs.reset()
        return envs

    envs = make()
    _roll(envs, 120, seed=0)  # episodes end and reset in between: streams and accumulators move
    torch.save(envs.get_state(), tmp_path / "env.pt")
    expected = _roll(envs, 250, seed=1)
    restored = make()
    restored.set_state(torch.load(tmp_path / "env.pt", weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(_roll(restored, 250, seed=1), expected, strict=True))
    assert (restored.ep_return == envs.ep_return).all() and (restored.ep_length == envs.ep_length).all()


def test_environment_whose_state_cannot_be_captured_is_refused_before_training(tmp_path):
    cfg = al.TrainConfig(env_id="LunarLander-v3", seeds=(0,), total_steps=1024, checkpoint_every=1, device="cpu")
    with pytest.raises(ValueError, match=r"LunarLander-v3.*b2World.*checkpoint_every=0"):
        al.train(cfg, progress=False, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "CartPole-v1"])
def test_reseeded_environments_resume_what_cannot_be_captured(env_id, tmp_path, monkeypatch):
    """resume_envs="reseed": Box2D (refused with "exact") checkpoints and resumes; the history up to the checkpoint
    is the uninterrupted run's, training then continues on fresh episodes (not bitwise the uninterrupted run),
    and resuming twice from one checkpoint gives the same run."""
    cfg = al.TrainConfig(env_id=env_id, algo="ppo", seeds=(0, 1), num_envs=2, rollout_steps=64, minibatch_size=64,
                         total_steps=128 * 6, device="cpu", checkpoint_every=2, resume_envs="reseed")
    ref = al.train(_plain(cfg), progress=False)
    runs = []
    for name in ("a", "b"):
        _train_until(cfg, tmp_path / name, stop_after=4, monkeypatch=monkeypatch)
        runs.append(al.train(cfg, progress=False, run_dir=tmp_path / name, resume=True))
    a, b = runs
    assert a.resumed_from == 4 and len(a.history) == len(ref.history)
    _assert_same_run(a, b)
    before = a.history["update"] < 4
    pd.testing.assert_frame_equal(a.history[before].drop(columns="time"), ref.history[before].drop(columns="time"))
    assert not a.history[~before].drop(columns="time").equals(ref.history[~before].drop(columns="time"))
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


@pytest.mark.parametrize("cfg", [
    al.TrainConfig(env_id="acpg_lab/IdealGrid-v0", algo="a2c", seeds=(0, 2), total_steps=1200, device="cpu",
                   label_source="optimal", diagnostics_every=7, checkpoint_every=5),
    al.TrainConfig(env_id="Acrobot-v1", algo="reinforce", seeds=(1,), num_envs=4, rollout_steps=256,
                   total_steps=1024 * 3, device="cpu",
                   env_kwargs={"max_episode_steps": 100}, snapshot_every=1, checkpoint_every=1),
    al.TrainConfig(env_id="CartPole-v1", seeds=(3, 4), total_steps=256 * 6, device="cpu", engine="fused",
                   checkpoint_every=2),
], ids=["a2c-idealgrid-labels", "reinforce-acrobot", "ppo-fused-engine"])
def test_resumed_run_equals_uninterrupted(cfg, tmp_path, monkeypatch):
    ref = al.train(_plain(cfg), progress=False)
    _train_until(cfg, tmp_path / "run", stop_after=cfg.checkpoint_every, monkeypatch=monkeypatch)
    run = al.train(cfg, progress=False, run_dir=tmp_path / "run", resume=True)
    assert run.resumed_from == cfg.checkpoint_every
    _assert_same_run(run, ref)
    _assert_same_run(al.Run.load(tmp_path / "run"), ref)  # what the finished directory holds
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert sorted(run.snapshots) == sorted(ref.snapshots)


def test_resume_with_gymnasium_environments(tmp_path, monkeypatch):
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "0")
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(4,), total_steps=256 * 6, device="cpu", checkpoint_every=2)
    ref = al.train(_plain(cfg), progress=False)
    _train_until(cfg, tmp_path / "run", stop_after=4, monkeypatch=monkeypatch)
    _assert_same_run(al.train(cfg, progress=False, run_dir=tmp_path / "run", resume=True), ref)


# ----------------------------------------------------------------------------- SIGKILL at any moment
KILL_CFG = dict(env_id="CartPole-v1", seeds=(0, 3), total_steps=256 * 16, device="cpu", pfo_coef=0.5,
                diagnostics_every=3, snapshot_every=4, checkpoint_every=1)

_CHILD = r"""
import os, signal, sys
import acpg_lab as al
from acpg_lab import checkpoint
run_dir, crash = sys.argv[1], sys.argv[2]
if crash != "none":  # die inside the n-th checkpoint write: part of the temporary file, or all of it unrenamed
    where, n = crash.split(":")
    calls, original = [0], checkpoint.write_atomic
    def write_atomic(path, data):
        calls[0] += 1
        if calls[0] == int(n):
            if where == "partial":
                with open(path.with_name(f".{path.name}.tmp{os.getpid()}"), "wb") as f:
                    f.write(data[: len(data) // 2]); f.flush()
            else:
                os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
                original(path, data)
            os.kill(os.getpid(), signal.SIGKILL)
        original(path, data)
    checkpoint.write_atomic = write_atomic
al.train(al.TrainConfig(**eval(os.environ["KILL_CFG"])), progress=False, run_dir=run_dir, resume=True)
"""


def _child(run_dir, crash="none"):
    env = {**os.environ, "KILL_CFG": repr(KILL_CFG)}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(run_dir), crash], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_update(run_dir, update, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "checkpoint.pt").exists() and read_checkpoint(run_dir / "checkpoint.pt")["update"] >= update:
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint of update {update} appeared: {proc.stderr.read().decode()}")


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_is_bitwise_uninterrupted(tmp_path):
    ref = al.train(_plain(al.TrainConfig(**KILL_CFG)), progress=False)
    run_dir, at_kill = tmp_path / "run", []
    # two deaths inside a checkpoint write: the 3rd write half done; the 2nd write of the next process complete
    # but not renamed into place
    for crash in ("partial:3", "unrenamed:2"):
        proc = _child(run_dir, crash)
        assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read().decode()
        at_kill.append(read_checkpoint(run_dir / "checkpoint.pt")["update"])
    assert at_kill == [2, 3]  # each kept the checkpoint before the interrupted write
    # SIGKILL from outside: during start-up, then at odd moments after checkpoints 7 and 11 of 16
    for target, extra in ((None, 0.3), (7, 0.0), (11, 0.07)):
        proc = _child(run_dir)
        if target is not None:
            _wait_for_update(run_dir, target, proc)
        time.sleep(extra)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill.append(read_checkpoint(run_dir / "checkpoint.pt")["update"])
    assert at_kill[2] == 3 and at_kill[3] >= 7 and at_kill[4] >= 11
    proc = _child(run_dir)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    assert not (run_dir / "checkpoint.pt").exists() and not list(run_dir.glob(".checkpoint.pt.tmp*"))
    _assert_same_run(al.Run.load(run_dir), ref)


# ----------------------------------------------------------------------------- refusals
@pytest.fixture
def stopped_run(tmp_path, monkeypatch):
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=256 * 4, device="cpu", checkpoint_every=1)
    _train_until(cfg, tmp_path / "run", stop_after=2, monkeypatch=monkeypatch)
    return cfg, tmp_path / "run"


def test_truncated_corrupted_or_foreign_checkpoints_are_refused(stopped_run):
    cfg, run_dir = stopped_run
    path = run_dir / "checkpoint.pt"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        al.train(cfg, progress=False, run_dir=run_dir, resume=True)
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="corrupted"):
        al.train(cfg, progress=False, run_dir=run_dir, resume=True)
    path.write_bytes(good[:8] + (checkpoint.FORMAT + 1).to_bytes(4, "little") + good[12:])
    with pytest.raises(CheckpointError, match=f"format {checkpoint.FORMAT + 1}"):
        al.train(cfg, progress=False, run_dir=run_dir, resume=True)
    path.write_bytes(b"not a checkpoint at all, but long enough to hold a header" * 2)
    with pytest.raises(CheckpointError, match="not an acpg_lab checkpoint"):
        al.train(cfg, progress=False, run_dir=run_dir, resume=True)
    path.write_bytes(good)
    other = al.TrainConfig(**{**cfg.to_dict(), "lr": 5e-4, "checkpoint_every": 3})  # checkpoint_every may change
    with pytest.raises(CheckpointError, match=r"another config: lr=0\.001 \(now 0\.0005\)"):
        al.train(other, progress=False, run_dir=run_dir, resume=True)
    assert read_checkpoint(path)["update"] == 2  # refusals leave the checkpoint as it was


def test_run_directory_rules(stopped_run, tmp_path):
    cfg, run_dir = stopped_run
    with pytest.raises(ValueError, match="holds a checkpoint of an unfinished run; pass resume=True"):
        al.train(cfg, progress=False, run_dir=run_dir)
    with pytest.raises(ValueError, match="checkpoint_every=1 needs a run directory"):
        al.train(cfg, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every must be a non-negative integer"):
        al.TrainConfig(checkpoint_every=-1).resolve()
    done = al.train(cfg, progress=False, run_dir=run_dir, resume=True)
    again = al.train(cfg, progress=False, run_dir=run_dir, resume=True)  # finished: loaded, not trained
    _assert_same_run(again, done)
    with pytest.raises(ValueError, match="holds a finished run of this config"):
        al.train(cfg, progress=False, run_dir=run_dir)
    with pytest.raises(ValueError, match=r"finished run of another config \(differing: \['seeds'\]\)"):
        al.train(al.TrainConfig(**{**cfg.to_dict(), "seeds": (1,)}), progress=False, run_dir=run_dir, resume=True)
    done.interrupted = True  # what `acpg-lab train` used to save after Ctrl-C
    done.save(tmp_path / "interrupted")
    with pytest.raises(ValueError, match="run saved after an interrupt"):
        al.train(cfg, progress=False, run_dir=tmp_path / "interrupted", resume=True)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=256 * 4, device="cpu", checkpoint_every=1)
    original, calls = checkpoint.write_atomic, []

    def full_disk(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) >= 2:
            with open(path.with_name(".partial"), "wb") as f:
                f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, data)

    monkeypatch.setattr(checkpoint, "write_atomic", full_disk)
    with pytest.warns(UserWarning, match="checkpoint at update 2 not written.*No space left"):
        _train_until(cfg, tmp_path / "run", stop_after=3, monkeypatch=monkeypatch)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["update"] == 1
    monkeypatch.setattr(checkpoint, "write_atomic", original)
    _assert_same_run(al.train(cfg, progress=False, run_dir=tmp_path / "run", resume=True),
                     al.train(_plain(cfg), progress=False))


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "f"
    checkpoint.write_atomic(path, b"old")

    def boom(*args):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_cli_train_checkpoints_and_resumes(tmp_path, monkeypatch, capsys):
    from acpg_lab.cli import main

    out = tmp_path / "run"
    args = ["train", "--env", "CartPole-v1", "--seeds", "0", "--steps", "1024", "--out", str(out), "--quiet",
            "--device", "cpu", "--checkpoint-every", "1", "--eval-episodes", "2"]
    with crash_after_update(monkeypatch, 2):
        main(args)
    assert main(args) == 2 and "pass resume=True (acpg-lab train --resume)" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "model.pt", "manifest.json",
                                              "evaluation.csv"}
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=1024, device="cpu")
    _assert_same_run(al.Run.load(out), al.train(cfg, progress=False))
