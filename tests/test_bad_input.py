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
