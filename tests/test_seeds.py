"""The seed scheme (`acpg_lab.seeds`): new runs draw init and head seeds from the training seed's SeedSequence;
the legacy scheme reproduces the streams of every run stored before `TrainConfig.seed_scheme` existed, and a stored
config without the field reads as legacy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import acpg_lab as al
from acpg_lab.evidence.conditions import EXPERIMENTS
from acpg_lab.experiments import run_cached
from acpg_lab.run import derived_seeds
from acpg_lab.seeds import model_seeds
from acpg_lab.store import config_differences, config_json


def test_legacy_scheme_is_the_old_formula_and_derived_comes_from_the_seed_sequence():
    for s, offset in [(0, 0), (3, 0), (200, 0), (7, 5)]:
        assert model_seeds(s, offset, "legacy") == (s * 7919 + 1 + 2 * offset, s * 7919 + 2 + 2 * offset)
    env, act, evaluation, init, head = np.random.SeedSequence(11).generate_state(5)
    # the env/act/eval streams are what they were (the first three words of the same SeedSequence)
    assert derived_seeds(11) == dict(env=int(env), act=int(act), eval=int(evaluation), init=int(init), head=int(head))
    assert model_seeds(11) == (int(init), int(head))
    assert model_seeds(11, 1) != model_seeds(11) and model_seeds(11, 1) != model_seeds(11, 2)
    with pytest.raises(ValueError, match="seed_scheme"):
        model_seeds(0, 0, "old")
    with pytest.raises(ValueError, match="seed_scheme"):
        al.TrainConfig(seed_scheme="old").resolve()


def test_the_scheme_changes_only_the_initialisation_and_is_per_seed():
    legacy = al.ActorCritic((4,), 2, (0, 1), seed_scheme="legacy").state_dict()
    derived = al.ActorCritic((4,), 2, (0, 1)).state_dict()
    alone = al.ActorCritic((4,), 2, (1,)).state_dict()
    assert any(not torch.equal(legacy[k], derived[k]) for k in legacy)
    assert all(torch.equal(derived[k][1:], alone[k]) for k in derived if derived[k].dim() and derived[k].shape[0] == 2)


def test_a_stored_config_without_the_field_is_legacy(tmp_path):
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=512, num_envs=4, rollout_steps=32,
                         minibatch_size=64, device="cpu").resolve()
    old = {k: v for k, v in config_json(cfg).items() if k != "seed_scheme"}
    assert config_differences(old, cfg) == ["seed_scheme"]
    legacy = al.TrainConfig(**{**cfg.to_dict(), "seed_scheme": "legacy"})
    assert config_differences(old, legacy) == []
    run = al.train(legacy, progress=False)
    run.save(tmp_path / "run")
    (tmp_path / "run" / "evaluation.csv").write_text("seed,return_mean\n0,1.0\n")
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    del meta["config"]["seed_scheme"]  # as written before the field existed
    del meta["manifest"]  # ... and before manifests (an edited config.json of a run saved with one is refused)
    (tmp_path / "run" / "config.json").write_text(json.dumps(meta))
    (tmp_path / "run" / "manifest.json").unlink()
    loaded = al.Run.load(tmp_path / "run")
    with pytest.raises(ValueError, match="pass seed_scheme='legacy' to reuse it"):
        run_cached(cfg, tmp_path / "run")
    assert run_cached(legacy, tmp_path / "run")[0].config.seed_scheme == "legacy"
    assert loaded.config.seed_scheme == "legacy"
    fresh = al.ActorCritic((4,), 2, (0,), seed_scheme="legacy", hidden_sizes=cfg.hidden_sizes,
                           activation=cfg.activation)
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), run.model.state_dict().values(),
                                                 strict=True))
    assert set(fresh.state_dict()) == set(loaded.model.state_dict())


def test_every_evidence_condition_keeps_the_stored_pieces_scheme():
    assert {cond.config["seed_scheme"] for conds in EXPERIMENTS.values() for cond in conds.values()} == {"legacy"}



def test_a_checkpoint_or_finished_run_written_before_the_field_matches_only_legacy():
    from acpg_lab import checkpoint

    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=1024, device="cpu").resolve()
    old = {k: v for k, v in config_json(cfg).items() if k != "seed_scheme"}
    assert checkpoint.config_differences(old, cfg) == ["seed_scheme"]
    assert checkpoint.config_differences(old, al.TrainConfig(**{**cfg.to_dict(), "seed_scheme": "legacy"})) == []
