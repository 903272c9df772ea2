"""Diagnostics logged during training, PFO, snapshots and the plasticity probe, label sources."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import acpg_lab as al

TRAINING_COLUMNS = ["seed", "update", "step", "episode_return", "loss_policy", "loss_value", "entropy", "approx_kl",
                    "grad_norm_actor"]


def _run(**kw):
    base = dict(env_id="CartPole-v1", seeds=(0, 1), total_steps=4096, device="cpu")  # bitwise guarantees: CPU
    return al.train(al.TrainConfig(**{**base, **kw}), progress=False)


def test_diagnostics_and_pfo_off_leave_training_bitwise_identical():
    plain = _run()
    observed = _run(diagnostics_every=1, pfo_coef=0.0, pfo_layers="all", snapshot_every=4)
    pd.testing.assert_frame_equal(plain.history[TRAINING_COLUMNS], observed.history[TRAINING_COLUMNS],
                                  check_exact=True)
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), observed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert "loss_pfo" not in observed.history


def test_diagnostics_cadence_and_values():
    h = _run(diagnostics_every=4).history
    logged = h.dropna(subset=["nc1"])
    updates = sorted(h["update"].unique())
    assert sorted(logged["update"].unique()) == [u for u in updates if u % 4 == 0 or u == updates[-1]]
    for col in ("actor_effective_rank", "actor_approx_rank", "actor_dead_fraction", "critic_feature_norm",
                "ratio_below_mean", "kl_old_new", "policy_entropy", "preact_change", "nc1", "self_duality"):
        assert logged[col].notna().any(), col
    assert (logged.actor_approx_rank >= 1).all() and (logged.actor_approx_rank <= 64).all()
    assert (logged.kl_old_new >= 0).all() and (logged.ratio_min <= logged.ratio_max).all()
    assert np.allclose(logged.policy_entropy, logged.entropy, atol=0.05)  # after vs during the update


def test_ratio_statistics_split_by_the_sign_of_the_advantage():
    h = _run(diagnostics_every=2, epochs=10).history.dropna(subset=["policy_entropy"])
    for sign in ("pos", "neg"):
        frac = h[f"frac_outside_adv_{sign}"]
        assert frac.notna().all() and frac.between(0, 1).all()
        below, above = h[f"ratio_below_mean_adv_{sign}"].dropna(), h[f"ratio_above_mean_adv_{sign}"].dropna()
        assert (below < 0.8).all() and (above > 1.2).all() and len(below) + len(above) > 0
    # every group's escapes are escapes of the whole batch: the extremes bound them
    assert (h.ratio_below_mean_adv_neg.dropna() >= h.ratio_min[h.ratio_below_mean_adv_neg.notna()]).all()
    assert (h.ratio_above_mean_adv_pos.dropna() <= h.ratio_max[h.ratio_above_mean_adv_pos.notna()]).all()


def test_diagnostics_keep_seeds_independent():
    alone = _run(seeds=(1,), diagnostics_every=2).history.drop(columns="time")
    batched = _run(seeds=(0, 1, 2, 3), diagnostics_every=2).history.drop(columns="time")
    pd.testing.assert_frame_equal(alone, batched[batched.seed == 1].reset_index(drop=True), check_exact=True)


def test_pfo_reduces_feature_change_per_update():
    kw = dict(seeds=(0, 1, 2), total_steps=16_384, diagnostics_every=1, epochs=20)
    plain, pfo = _run(**kw).history, _run(pfo_coef=10.0, **kw).history
    change_plain = plain.groupby("seed").preact_change.mean()
    change_pfo = pfo.groupby("seed").preact_change.mean()
    print("mean pre-activation change per update, PPO vs PPO+PFO:", change_plain.tolist(), change_pfo.tolist())
    assert (change_pfo < 0.7 * change_plain).all()
    assert pfo.loss_pfo.notna().all() and (pfo.loss_pfo >= 0).all()


def test_snapshots_in_memory_on_disk_and_plasticity(tmp_path):
    run = _run(snapshot_every=8, snapshot_dir=str(tmp_path / "snaps"))
    files = sorted((tmp_path / "snaps").glob("*.pt"))
    assert [int(f.stem.removeprefix("actor_step")) for f in files] == sorted(run.snapshots) == [0, 2048, 4096]
    state = run.snapshot(4096)  # read back with weights_only=True
    assert all(torch.equal(state[k], v) for k, v in run.model.actor.state_dict().items())
    in_memory = _run(snapshot_every=8)
    assert all(torch.equal(in_memory.snapshot(0)[k], v) for k, v in run.snapshot(0).items())
    probe = run.plasticity(steps=50)
    assert list(probe.columns) == ["seed", "step", "plasticity_kl"] and len(probe) == 6
    assert (probe.plasticity_kl > -1e-6).all()
    with pytest.raises(ValueError, match="no snapshot at step 7"):
        run.snapshot(7)
    loaded = al.Run.load(in_memory.save(tmp_path / "saved"))  # a cached run keeps what the probe needs
    assert sorted(loaded.snapshots) == [0, 2048, 4096] and torch.equal(loaded.probe_obs, in_memory.probe_obs)
    pd.testing.assert_frame_equal(loaded.plasticity(steps=50), in_memory.plasticity(steps=50))


def test_save_load_and_expert_labels(tmp_path):
    expert = _run(seeds=(5,), total_steps=2048)
    expert.save(tmp_path / "expert")
    loaded = al.Run.load(tmp_path / "expert")
    obs = torch.randn(1, 16, 4)
    assert torch.equal(loaded.model.actor(obs), expert.model.actor(obs))
    pd.testing.assert_frame_equal(loaded.history, expert.history, check_exact=False)
    run = _run(label_source="expert", expert_run=str(tmp_path / "expert"), diagnostics_every=4)
    assert run.history.nc1.notna().any()
    with pytest.raises(ValueError, match="expert_run"):
        _run(label_source="expert", expert_run=str(tmp_path / "missing"))


def test_optimal_labels_need_an_env_that_publishes_them():
    with pytest.raises(ValueError, match="optimal_action"):
        _run(label_source="optimal")


def _greedy_on_every_state(run, env_id):
    layout = gym.make(env_id).unwrapped.layout
    obs = torch.tensor(np.array(layout.observations), dtype=torch.float32)
    greedy = run.model.actor(obs.expand(len(run.seeds), *obs.shape)).argmax(-1).numpy()
    known = layout.optimal_actions >= 0  # the grid's goal has no action
    return (greedy[:, known] == layout.optimal_actions[known]).mean(1), layout


@pytest.mark.slow
def test_agent_reaches_the_optimum_of_the_known_optimal_bandit_and_labels_agree():
    env_id = "acpg_lab/ActionBandit-v0"
    kw = dict(env_id=env_id, seeds=(0, 1, 2), total_steps=30_000, diagnostics_every=5)
    run = _run(label_source="optimal", **kw)
    agree, layout = _greedy_on_every_state(run, env_id)
    assert (agree == 1.0).all(), agree
    assert (run.evaluate(episodes=5).return_mean == layout.optimal_return).all()
    # greedy == optimal on every state, so both label sources give the same collapse statistics
    greedy = _run(label_source="greedy", **kw).history
    last = run.history["update"].max()
    cols = ["nc1", "self_duality", "ncc_mismatch", "max_angle_features"]
    np.testing.assert_allclose(run.history[run.history["update"] == last][cols].to_numpy(),
                               greedy[greedy["update"] == last][cols].to_numpy(), rtol=1e-9)


@pytest.mark.slow
def test_agent_learns_the_ideal_grid():
    run = _run(env_id="acpg_lab/IdealGrid-v0", seeds=(0, 1, 2), total_steps=30_000)
    agree, _ = _greedy_on_every_state(run, "acpg_lab/IdealGrid-v0")
    assert (agree >= 0.9).all(), agree


def test_diagnostics_null_is_the_untrained_actor_on_the_same_states():
    # with a vanishing learning rate the trained actor is the untrained one: the null must equal the metrics
    still = _run(env_id="acpg_lab/ActionBandit-v0", label_source="optimal", diagnostics_every=2,
                 diagnostics_null=True, lr=1e-12, total_steps=2048).history.dropna(subset=["nc1"])
    for metric in ("nc1", "self_duality", "max_angle_weights", "ncc_mismatch", "actor_srank"):
        np.testing.assert_allclose(still[f"null_{metric}"], still[metric], rtol=1e-4, atol=1e-6)
    # with training, the null stays the untrained network's: it does not follow the trained head
    trained = _run(env_id="acpg_lab/ActionBandit-v0", label_source="optimal", diagnostics_every=2,
                   diagnostics_null=True, total_steps=8192).history.dropna(subset=["nc1"])
    last = trained[trained["update"] == trained["update"].max()]
    assert (last.self_duality < last.null_self_duality).all()
    plain = _run(env_id="acpg_lab/ActionBandit-v0", label_source="optimal", diagnostics_every=2, total_steps=8192)
    assert not any(c.startswith("null_") for c in plain.history.columns)
