"""Bad input refused before any work (issue 26): each case asserts the error text names the argument, and that
nothing was built, written or started."""

from __future__ import annotations

import math

import pytest
import torch

import acpg_lab as al
from acpg_lab import envs
from acpg_lab.etf import ETFHead, LinearHead, RandomHead, simplex_etf

HEADS = [ETFHead, LinearHead, RandomHead]


@pytest.fixture
def no_tensor_built(monkeypatch):
    """Fail the test if a refused constructor reaches torch (eye, randn, empty, zeros)."""
    def boom(*args, **kwargs):
        raise AssertionError("a tensor was built before the arguments were checked")
    for name in ("eye", "randn", "empty", "zeros", "ones"):
        monkeypatch.setattr(torch, name, boom)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("scale", [math.inf, -math.inf, math.nan, True, 0.0, -1.0, "1"])
def test_heads_refuse_a_bad_scale_before_building(head, scale, no_tensor_built):
    with pytest.raises(ValueError, match=r"^scale must be > 0 and finite \(a number, not a bool\), got "):
        head(8, 4, scale=scale)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(("args", "name"), [((True, 2), "feature_dim"), ((8, True), "num_actions"),
                                            ((False, 2), "feature_dim"), ((8.0, 4), "feature_dim"),
                                            ((8, 4.0), "num_actions")])
def test_heads_refuse_boolean_and_float_sizes_before_building(head, args, name, no_tensor_built):
    with pytest.raises(ValueError, match=f"^{name} must be an integer"):
        head(*args)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("option", ["normalize", "bias"])
def test_heads_refuse_non_boolean_switches(head, option, no_tensor_built):
    with pytest.raises(ValueError, match=f"^{option} must be True or False, got 1"):
        head(8, 4, **{option: 1})


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("seeds", [True, [0, False], [0, 1.5], -1, [math.nan]])
def test_heads_refuse_boolean_float_and_negative_seeds(head, seeds, no_tensor_built):
    with pytest.raises(ValueError, match="^seeds must be a non-negative integer, got "):
        head(8, 4, seeds=seeds)


@pytest.mark.parametrize("gain", [math.inf, math.nan, True, 0.0])
def test_linear_head_refuses_a_bad_init_gain(gain, no_tensor_built):
    with pytest.raises(ValueError, match=r"^init_gain must be > 0 and finite"):
        LinearHead(8, 4, init_gain=gain)


@pytest.mark.parametrize(("kwargs", "message"), [(dict(num_actions=True, feature_dim=2), "^num_actions must be"),
                                                 (dict(num_actions=4, feature_dim=8, seed=True), "^seed must be"),
                                                 (dict(num_actions=4, feature_dim=8, seed=2.5), "^seed must be")])
def test_simplex_etf_refuses_booleans_before_building(kwargs, message, no_tensor_built):
    with pytest.raises(ValueError, match=message):
        simplex_etf(**kwargs)


def test_good_heads_still_build():
    assert ETFHead(8, 4, scale=2, seeds=[0, 1]).weight.shape == (2, 4, 8)
    assert RandomHead(8, 4, normalize=True).weight.shape == (4, 8)
    assert LinearHead(8, 4, init_gain=1, bias=False).weight.shape == (4, 8)


@pytest.mark.parametrize(("value", "fast"), [("1", True), ("true", True), ("Yes", True), (" on ", True), ("", True),
                                             ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_fast_envs_accepts_the_documented_values(monkeypatch, value, fast):
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", value)
    assert envs.fast_envs_default() is fast


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "-1"])
def test_fast_envs_refuses_anything_else_before_an_environment_is_made(monkeypatch, value):
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", value)
    made = []
    monkeypatch.setattr(envs, "make_vector_env", lambda *a, **k: made.append(a))
    monkeypatch.setattr(envs, "make_batched_env", lambda *a, **k: made.append(a))
    with pytest.raises(ValueError, match=f"^ACPG_LAB_FAST_ENVS must be one of 1, true, yes, on .* got '{value}'$"):
        envs.SeedEnvs("CartPole-v1", num_envs=2, env_seeds=[0], device=torch.device("cpu"))
    assert made == []


def test_train_refuses_a_bad_fast_envs_before_touching_its_run_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "maybe")
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="^ACPG_LAB_FAST_ENVS must be one of .* got 'maybe'$"):
        al.train(al.TrainConfig(env_id="CartPole-v1", total_steps=512, num_envs=4, rollout_steps=64), progress=False,
                 run_dir=run_dir)
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- sweeps that cannot hang
SWEEP_TOML = """
[sweep]
seeds = [0, 1]
[base]
env_id = "CartPole-v1"
total_steps = 512
num_envs = 4
rollout_steps = 64
device = "cpu"
[grid]
{grid}
[resources]
num_cpus = {task_cpus}
"""


def _sweep_spec(tmp_path, grid='head = ["linear", "etf"]', task_cpus=1):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP_TOML.format(grid=grid, task_cpus=task_cpus))
    return path


def _no_ray(monkeypatch):
    """Any attempt to run tasks (and so to start Ray) fails the test."""
    from acpg_lab import sweep

    def boom(*args, **kwargs):
        raise AssertionError("Ray tasks were started")
    monkeypatch.setattr(sweep, "run_tasks", boom)


@pytest.mark.parametrize(("grid", "message"), [
    ('head = ["etf", "etf"]', r"grid repeats a condition: head='etf' and head='etf' train the same runs "
                              r"\(seeds \[0, 1\]\) into runs/head=etf__seeds=0-1; list each value once"),
    ("lr = [1, 1.0]", r"grid repeats a condition: lr=1 and lr=1.0 train the same runs"),
    ('head = ["linear", "etf"]\npfo_coef = [0.0, 0.5, 0]', r"head='linear',pfo_coef=0.0 and "
                                                          r"head='linear',pfo_coef=0 train the same runs"),
])
def test_a_sweep_whose_grid_repeats_a_condition_is_refused_before_anything_is_written(
        tmp_path, monkeypatch, capsys, grid, message):
    from acpg_lab.cli import main
    from acpg_lab.sweep import load_spec

    spec = _sweep_spec(tmp_path, grid)
    with pytest.raises(ValueError, match=message):
        load_spec(spec)
    _no_ray(monkeypatch)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("acpg-lab: error: grid repeats a condition: ") and err.count("\n") == 1
    assert not out.exists()


def test_a_grid_without_repeats_is_accepted():
    from acpg_lab.sweep import parse_spec

    raw = {"sweep": {"seeds": [0, 1]}, "base": {"env_id": "CartPole-v1", "device": "cpu"},
           "grid": {"head": ["linear", "etf"], "lr": [1e-3, 3e-4]}}
    assert len(parse_spec(raw).tasks()) == 4


@pytest.mark.parametrize(("num_cpus", "task_cpus", "message"), [
    (0, 1, "--num-cpus must be an integer >= 1, got 0"),
    (-2, 1, "--num-cpus must be an integer >= 1, got -2"),
    (1, 2, "--num-cpus 1 is fewer than the 2 CPUs each task asks for (resources.num_cpus): no task could ever start"),
])
def test_a_sweep_with_no_cpu_for_its_tasks_is_refused_before_ray_starts(
        tmp_path, monkeypatch, capsys, num_cpus, task_cpus, message):
    from acpg_lab.cli import main

    spec = _sweep_spec(tmp_path, task_cpus=task_cpus)
    _no_ray(monkeypatch)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--num-cpus", str(num_cpus), "--quiet"]) == 2
    assert capsys.readouterr().err == f"acpg-lab: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize(("num_cpus", "task_cpus", "message"), [
    (0, 1.0, "^--num-cpus must be an integer >= 1, got 0$"),
    (True, 1.0, "^--num-cpus must be an integer >= 1, got True$"),
    (1, 2.0, "^--num-cpus 1 is fewer than the 2 CPUs each of the tasks asks for: none could ever start$"),
])
def test_run_tasks_refuses_no_cpu_before_importing_ray(monkeypatch, num_cpus, task_cpus, message):
    import sys

    from acpg_lab.ray_tasks import run_tasks

    monkeypatch.setitem(sys.modules, "ray", None)  # importing ray would now fail with "needs Ray"
    with pytest.raises(ValueError, match=message):
        run_tasks(print, {"a": (1,)}, num_cpus=num_cpus, task_cpus=task_cpus)


# ----------------------------------------------------------------------------- usage errors: one line, exit 2
def test_evidence_run_with_an_only_that_matches_nothing_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from acpg_lab.evidence import pieces
    from acpg_lab.evidence.__main__ import main

    monkeypatch.setattr(pieces, "run_piece", lambda *a, **k: pytest.fail("a piece was trained"))
    assert main(["run", "collapse", "--only", "NOMATCH", "--root", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m acpg_lab.evidence: error: --only ['NOMATCH'] matches no condition of "
                          "'collapse': [")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_evidence_run_with_no_cpus_is_one_line_and_exit_2_before_ray(tmp_path, capsys, monkeypatch):
    import sys

    from acpg_lab.evidence import pieces
    from acpg_lab.evidence.__main__ import main

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(pieces, "run_piece", lambda *a, **k: pytest.fail("a piece was trained"))
    monkeypatch.setattr(pieces, "is_finished", lambda *a, **k: False)  # every piece pending, so Ray would start
    assert main(["run", "collapse", "--ray", "--num-cpus", "0", "--root", str(tmp_path / "ev")]) == 2
    assert capsys.readouterr().err == "python -m acpg_lab.evidence: error: --num-cpus must be an integer >= 1, got 0\n"
    assert list(tmp_path.iterdir()) == []


def test_evidence_num_cpus_without_ray_is_a_usage_error(capsys):
    from acpg_lab.evidence.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "collapse", "--num-cpus", "0"])
    assert exit_.value.code == 2 and "--address and --num-cpus need --ray" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_sweep_out_that_is_a_file_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, where):
    from acpg_lab.cli import main

    spec = _sweep_spec(tmp_path)
    _no_ray(monkeypatch)
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    expected = (f"acpg-lab: error: the sweep directory --out {out} is a file, not a directory: pass the sweep's "
                "directory (new or a previous run of this sweep)\n" if where == "file" else
                f"acpg-lab: error: the sweep directory --out {out} cannot be created: {blocker} is a file, not a "
                "directory\n")
    assert err == expected
    assert blocker.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml", "taken"]
