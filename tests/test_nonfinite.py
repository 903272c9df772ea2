"""The non-finite guard: a seed whose loss, gradient or parameters stop being finite never trains on them; the
run stops naming seed, update and quantity, or freezes that seed while the others finish bitwise unchanged."""

import math

import numpy as np
import pytest
import torch

import acpg_lab as al
from acpg_lab import training
from acpg_lab.nonfinite import NonFiniteError

# a constant learning rate: the first updates of a run are then a shorter run of the same config
CFG = dict(env_id="CartPole-v1", seeds=(0, 1, 2), total_steps=256 * 6, device="cpu", anneal_lr=False)
BAD_UPDATE, BAD_SEED = 3, 1  # update index (from 0) and position in seeds


@pytest.fixture(params=["reference", "fused"])
def engine(request, monkeypatch):
    """Both engines: the fused one's optimiser (`acpg_lab.flat_adam.FlatAdam`) keeps Adam's moments as views of
    one buffer, which the guard's restore must reach."""
    monkeypatch.setitem(CFG, "engine", request.param)
    return request.param


def _cfg(**kw):
    return al.TrainConfig(**{**CFG, **kw})


@pytest.fixture
def nan_gradient(monkeypatch):
    """Write NaN into seed ``BAD_SEED``'s slice of the first actor gradient in update ``BAD_UPDATE``."""
    original, calls = training.clip_grad_norm_per_seed, {"n": 0}
    steps_per_update = _cfg().resolve().epochs  # CartPole's PPO preset: one minibatch per epoch

    def clip(params, max_norm):
        if calls["n"] == BAD_UPDATE * steps_per_update * 2 + 4:  # actor and critic alternate: some step inside
            params[0].grad[BAD_SEED].fill_(math.nan)
        calls["n"] += 1
        return original(params, max_norm)

    monkeypatch.setattr(training, "clip_grad_norm_per_seed", clip)


@pytest.fixture
def nan_loss(monkeypatch):
    """Make seed ``BAD_SEED``'s loss NaN in the first step of update ``BAD_UPDATE``."""
    original, calls = training.loss_fn, {"n": 0}
    steps_per_update = _cfg().resolve().epochs

    def loss_fn(model, mb, cfg):
        loss, stats = original(model, mb, cfg)
        if calls["n"] == BAD_UPDATE * steps_per_update:
            loss = loss * torch.tensor([1.0 if s != BAD_SEED else math.nan for s in range(len(cfg.seeds))])
        calls["n"] += 1
        return loss, stats

    monkeypatch.setattr(training, "loss_fn", loss_fn)


def _seed_state(run, position):
    return {k: v[position].clone() for k, v in run.model.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stop_names_seed_update_quantity_and_keeps_the_last_good_state(engine, nan_gradient):
    with pytest.raises(NonFiniteError, match=rf"seed {CFG['seeds'][BAD_SEED]}: non-finite gradient in update "
                                             rf"{BAD_UPDATE}") as err:
        al.train(_cfg(), progress=False)
    [event] = err.value.events
    assert (event.seed, event.update, event.quantity) == (CFG["seeds"][BAD_SEED], BAD_UPDATE, "gradient")
    run = err.value.run
    assert run.history["update"].max() == BAD_UPDATE - 1 and run.nonfinite == [dict(seed=1, update=3,
                                                                                  quantity="gradient")]
    good = al.train(_cfg(total_steps=256 * BAD_UPDATE), progress=False)  # what the model was before the update
    assert _equal(run.model.state_dict(), good.model.state_dict())
    assert all(torch.isfinite(v).all() for v in run.model.state_dict().values())


def test_freeze_seed_keeps_it_fixed_and_the_others_finish_unchanged(engine, nan_loss):
    run = al.train(_cfg(on_nonfinite="freeze_seed"), progress=False)
    assert run.nonfinite == [dict(seed=CFG["seeds"][BAD_SEED], update=BAD_UPDATE, quantity="loss")]
    frozen = run.history.pivot(index="update", columns="seed", values="frozen")
    expected = np.zeros_like(frozen.to_numpy())
    expected[BAD_UPDATE:, BAD_SEED] = 1
    assert (frozen.to_numpy() == expected).all()
    clean_full = al.train(_cfg(), progress=False)
    clean_before = al.train(_cfg(total_steps=256 * BAD_UPDATE), progress=False)
    for position in range(len(CFG["seeds"])):
        reference = clean_before if position == BAD_SEED else clean_full
        assert _equal(_seed_state(run, position), _seed_state(reference, position)), position
    others = run.history[run.history.seed != CFG["seeds"][BAD_SEED]].drop(columns=["time", "frozen"])
    expected_rows = clean_full.history[clean_full.history.seed != CFG["seeds"][BAD_SEED]].drop(columns="time")
    assert others.reset_index(drop=True).equals(expected_rows.reset_index(drop=True))


def test_exploding_learning_rate_stops_cleanly():
    with pytest.raises(NonFiniteError, match=r"seed 0: non-finite \w+ in update \d+.*seed 1") as err:
        al.train(_cfg(seeds=(0, 1), lr=1e30, max_grad_norm=0.0), progress=False)
    assert all(torch.isfinite(v).all() for v in err.value.run.model.state_dict().values())
    with pytest.raises(NonFiniteError, match="every seed is frozen"):
        al.train(_cfg(seeds=(0, 1), lr=1e30, max_grad_norm=0.0, on_nonfinite="freeze_seed"), progress=False)


def test_on_nonfinite_is_validated():
    with pytest.raises(ValueError, match=r"on_nonfinite must be one of \('stop', 'freeze_seed'\), got 'freeze'"):
        _cfg(on_nonfinite="freeze").resolve()
