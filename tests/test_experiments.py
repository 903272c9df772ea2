import numpy as np
import pandas as pd
import pytest

import acpg_lab.experiments as ex
from acpg_lab import TrainConfig


def test_run_cached_trains_once_and_refuses_another_config(tmp_path, monkeypatch):
    cfg = TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=512)
    run, ev = ex.run_cached(cfg, tmp_path / "a", episodes=2, progress=False)
    assert (tmp_path / "a" / "evaluation.csv").exists() and len(ev) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the run was saved")

    monkeypatch.setattr(ex, "train", no_training)
    again, ev2 = ex.run_cached(cfg, tmp_path / "a", episodes=2)
    pd.testing.assert_frame_equal(ev, ev2)
    pd.testing.assert_frame_equal(run.history, again.history, check_exact=False)
    with pytest.raises(ValueError, match="another config"):
        ex.run_cached(TrainConfig(env_id="CartPole-v1", seeds=(1,), total_steps=512), tmp_path / "a")


def test_run_conditions_validates_every_config_first_then_caches(tmp_path):
    good = TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=512, device="cpu")
    bad = TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=512, lr=-1.0)
    with pytest.raises(ValueError, match="lr"):
        ex.run_conditions({"first": good, "+ broken, last": bad}, tmp_path, log=lambda *_: None)
    assert not list(tmp_path.iterdir())  # nothing trained before the bad config was found
    lines = []
    runs, evals = ex.run_conditions({"+ PFO, last layer": good}, tmp_path, suffix="_512", episodes=2,
                                    progress=False, log=lines.append)
    assert (tmp_path / "PFO_last_layer_512" / "config.json").exists() and list(runs) == ["+ PFO, last layer"]
    assert len(evals["+ PFO, last layer"]) == 1 and "greedy return per seed" in lines[0]


def test_aggregates_are_reproducible_whatever_the_global_numpy_state():
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(3, 4))}
    np.random.seed(1)  # noqa: NPY002 (the legacy global generator is what arch uses)
    first, poi = ex.aggregate(scores, reps=200), ex.probability_of_improvement(scores["a"], scores["b"], reps=200)
    np.random.seed(2)  # noqa: NPY002 (the legacy global generator is what arch uses)
    pd.testing.assert_frame_equal(first, ex.aggregate(scores, reps=200), check_exact=True)
    assert poi == ex.probability_of_improvement(scores["a"], scores["b"], reps=200)
    np.random.seed(3)  # noqa: NPY002 (the legacy global generator is what arch uses)
    ex.aggregate(scores, reps=200)  # leaves the caller's global stream where it was
    assert np.random.random() == np.random.RandomState(3).random_sample()  # noqa: NPY002


def test_steps_to_threshold():
    h = pd.DataFrame(dict(seed=[0] * 6 + [1] * 6, step=list(range(100, 700, 100)) * 2,
                          episode_return=[1, 2, 9, 10, np.nan, 11] + [1] * 6))
    got = ex.steps_to_threshold(h, 9.5, window=2)
    assert got[0] == 400 and np.isnan(got[1])


def test_learning_summary():
    h = pd.DataFrame(dict(seed=[0] * 10, step=range(100, 1100, 100), episode_return=[0.0] * 9 + [10.0]))
    got = ex.learning_summary(h, final_fraction=0.1)
    assert got.loc[0, "final_return"] == 10.0 and got.loc[0, "mean_return"] == pytest.approx(1.0)


def test_normalized_and_aggregates():
    assert ex.normalized("CartPole-v1", np.array([22.0, 500.0])).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="reference"):
        ex.normalized("Pong-v5", np.zeros(2))
    gen = np.random.default_rng(0)
    low, high = gen.uniform(0, 0.4, (10, 2)), gen.uniform(0.6, 1.0, (10, 2))
    table = ex.aggregate({"low": low, "high": high}, reps=200)
    assert table.loc["high", "iqm_low"] > table.loc["low", "iqm_high"]
    assert table.loc["low", "iqm_low"] <= table.loc["low", "iqm"] <= table.loc["low", "iqm_high"]
    poi = ex.probability_of_improvement(high, low, reps=200)
    assert poi["probability"] == pytest.approx(1.0) and poi["low"] <= 1.0


def test_final_metrics_and_compare_final():
    h = pd.DataFrame(dict(seed=[0] * 5 + [1] * 5, step=list(range(100, 600, 100)) * 2,
                          dead=[9, 9, 9, 1, np.nan] + [9, 9, 9, 3, 5]))
    got = ex.final_metrics(h, ["dead"], final_fraction=0.4)  # steps 400 and 500
    assert got.dead.tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="not columns"):
        ex.final_metrics(h, ["nope"])
    x = pd.DataFrame(dict(m=[3.0, 5.0, 4.0]))
    y = pd.DataFrame(dict(m=[1.0, 1.0, 1.0]))
    row = ex.compare_final(x, y).loc["m"]
    # y has no spread: Welch's df is x's n - 1 = 2, so the half-width is t(0.975, 2) * sqrt(1/3), not 1.96 * ...
    assert row.difference == 3.0 and row.ci_low == pytest.approx(3 - 4.302653 * np.sqrt(1 / 3)) and row.ci_high > 3


def test_plasticity_cached_computes_once(tmp_path):
    class FakeRun:
        calls = 0

        def plasticity(self, steps):
            FakeRun.calls += 1
            return pd.DataFrame(dict(seed=[0], step=[0], plasticity_kl=[0.5 * steps]))

    runs = {"a": FakeRun(), "b": FakeRun()}
    first = ex.plasticity_cached(runs, tmp_path / "p.csv", steps=4)
    again = ex.plasticity_cached(runs, tmp_path / "p.csv", steps=4)
    assert FakeRun.calls == 2 and sorted(first.condition) == ["a", "b"]
    pd.testing.assert_frame_equal(first, again)


def test_lead_lag_table_finds_a_precursor_seed_by_seed():
    class FakeRun:
        pass

    rng = np.random.default_rng(0)
    frames = []
    for seed, fall in enumerate((150, 220, 300)):  # every seed collapses once, at its own update
        updates = np.arange(400)
        returns = np.where(updates < fall, 500.0, 20.0) + rng.normal(0, 10, 400)
        diagnosed = updates % 2 == 0
        stat = rng.normal(0.7, 0.02, 400) - np.where((updates >= fall - 8) & (updates < fall), 0.2, 0.0)
        frames.append(pd.DataFrame(dict(seed=seed, update=updates, step=updates * 256, episode_return=returns,
                                        stat=np.where(diagnosed, stat, np.nan),
                                        noise=np.where(diagnosed, rng.normal(size=400), np.nan),
                                        policy_entropy=np.where(diagnosed, 0.5, np.nan))))
    run = FakeRun()
    run.history = pd.concat(frames, ignore_index=True)
    table = ex.lead_lag_table({"a": run}, ["stat", "noise"], max_lag=4, draws=499)
    stat, noise = table.loc[("a", "stat")], table.loc[("a", "noise")]
    assert stat.events == 3 and stat.seeds_with_events == 3 and stat.seeds == 3 and stat.missing == 0
    assert stat.before_events < -1 and stat.before_events_p < 0.01 and stat.before_events_p_holm < 0.05
    assert noise.before_events_p > 0.05 and noise.before_events_p_holm >= noise.before_events_p
    assert {"leads", "follows_p", "follows_p_holm"} <= set(table.columns) and stat.target == "episode_return"
    # against another diagnostic (read at the diagnosed updates): independent noise does not lead it
    vs = ex.lead_lag_table({"a": run}, ["noise"], target="stat", max_lag=2, draws=99).loc[("a", "noise")]
    assert vs.target == "stat" and vs.leads_p > 0.01
    short = FakeRun()
    short.history = run.history[run.history["update"] < 16]  # a smoke-test run: too short for any null
    tiny = ex.lead_lag_table({"a": short}, ["stat"], max_lag=5).loc[("a", "stat")]
    assert tiny.events == 0 and np.isnan(tiny.before_events_p) and np.isnan(tiny.leads_p)
    with pytest.raises(ValueError, match="max_lag"):
        ex.lead_lag_table({"a": run}, ["stat"], max_lag=0)
    with pytest.raises(ValueError, match="nope"):
        ex.lead_lag_table({"a": run}, ["nope"])


def test_backbone_plasticity_probe_sees_only_the_backbone():
    """part="backbone" refits the backbone under one fixed head towards one kind of target: two runs whose
    backbones are equal give the same probe whatever their heads, while the as-trained probe differs."""
    import dataclasses

    from acpg_lab import train
    from acpg_lab.run import Run, build_model

    cfg = TrainConfig(env_id="CartPole-v1", algo="ppo", seeds=(0, 1), total_steps=1024, num_envs=4,
                      rollout_steps=32, minibatch_size=64, snapshot_every=4, device="cpu")
    linear = train(cfg, progress=False)
    etf_cfg = dataclasses.replace(linear.config, head="etf")
    shape, k = linear.probe_obs.shape[2:], linear.model.num_actions
    etf_head = {f"head.{n}": t for n, t in build_model(etf_cfg, shape, k).actor.head.state_dict().items()}
    swapped = {step: {**{n: t for n, t in linear.snapshot(step).items() if n.startswith("backbone.")}, **etf_head}
               for step in linear.snapshots}
    etf = Run(config=etf_cfg, history=linear.history, model=build_model(etf_cfg, shape, k), wall_time=0.0,
              snapshots=swapped, probe_obs=linear.probe_obs)
    a, b = linear.plasticity(steps=20, part="backbone"), etf.plasticity(steps=20, part="backbone")
    pd.testing.assert_frame_equal(a, b)
    assert a.plasticity_kl.iloc[-1] > 0
    assert not np.allclose(linear.plasticity(steps=20).plasticity_kl, etf.plasticity(steps=20).plasticity_kl)
    with pytest.raises(ValueError, match="part"):
        linear.plasticity(part="head")
