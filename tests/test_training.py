"""Mechanics of training: advantage estimators, autoreset handling, determinism, seed-batch independence."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import acpg_lab as al
from acpg_lab.algorithms import gae, monte_carlo_returns, sample_actions, uniforms
from acpg_lab.envs import SeedEnvs
from acpg_lab.networks import tanh


def _col(*xs):
    return torch.tensor(xs, dtype=torch.float32).view(-1, 1, 1)


def test_gae_termination_does_not_bootstrap_truncation_does():
    # steps: 0, 1 (ends), 2 (reset step, masked), 3; values has T+1 entries, V[2] = V(final obs of episode 1)
    rewards, values = _col(1, 1, 0, 1), _col(0.5, 0.5, 10.0, 0.5, 2.0)
    gamma, lam = 0.9, 1.0
    term_adv, _ = gae(rewards, values, _col(0, 1, 0, 0), _col(0, 0, 0, 0), gamma, lam)
    trunc_adv, trunc_ret = gae(rewards, values, _col(0, 0, 0, 0), _col(0, 1, 0, 0), gamma, lam)
    assert term_adv[1].item() == pytest.approx(1 - 0.5)  # terminated: no bootstrap
    assert trunc_adv[1].item() == pytest.approx(1 + gamma * 10.0 - 0.5)  # truncated: bootstrap from V(final)
    assert term_adv[3].item() == pytest.approx(1 + gamma * 2.0 - 0.5)  # rollout end bootstraps from V(next)
    # nothing flows across the episode end into step 0
    assert term_adv[0].item() == pytest.approx(1 + gamma * 0.5 - 0.5 + gamma * (1 - 0.5))
    assert trunc_ret[1].item() == pytest.approx(trunc_adv[1].item() + 0.5)


def test_gae_lambda_zero_is_td_error():
    rewards, values = _col(1, 2, 3), _col(1, 2, 3, 4)
    adv, _ = gae(rewards, values, _col(0, 0, 0), _col(0, 0, 0), 0.5, 0.0)
    assert adv.flatten().tolist() == pytest.approx([1 + 1 - 1, 2 + 1.5 - 2, 3 + 2 - 3])


def test_monte_carlo_returns_mask_unfinished_episodes():
    rewards = _col(1, 1, 1, 0, 1, 1)
    done = _col(0, 0, 1, 0, 0, 0)
    returns, complete = monte_carlo_returns(rewards, done, torch.zeros_like(done), 0.5)
    assert returns[:3].flatten().tolist() == pytest.approx([1.75, 1.5, 1.0])
    assert complete.flatten().tolist() == [1, 1, 1, 0, 0, 0]


def test_tanh_matches_float64_tanh_and_its_gradient():
    x = torch.linspace(-30, 30, 600_001)
    assert (tanh(x).double() - torch.tanh(x.double())).abs().max() < 2.5e-7
    assert tanh(torch.tensor([-1e4, 0.0, 1e4])).tolist() == [-1.0, 0.0, 1.0]
    x64 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tanh, (x64,))
    x32 = torch.randn(4, 3, requires_grad=True)
    (g,) = torch.autograd.grad(tanh(x32).sum(), x32)
    torch.testing.assert_close(g, 1 - torch.tanh(x32.detach()) ** 2, atol=1e-6, rtol=0)


def test_uniforms_drawn_up_front_equal_successive_draws_and_sample_the_policy():
    gens = [torch.Generator().manual_seed(s) for s in (3, 11)]
    block = uniforms(gens, 7, 5)  # [T, S, E]
    gens = [torch.Generator().manual_seed(s) for s in (3, 11)]
    assert torch.equal(block, torch.stack([uniforms(gens, 5) for _ in range(7)]))
    probs = torch.tensor([0.2, 0.5, 0.3])
    logits = probs.log().expand(2, 20_000, 3)
    actions = sample_actions(logits, uniforms([torch.Generator().manual_seed(s) for s in (0, 1)], 20_000))
    freq = torch.stack([(actions == k).float().mean(1) for k in range(3)], 1)
    torch.testing.assert_close(freq, probs.expand(2, 3), atol=0.015, rtol=0)


def test_seed_envs_mark_next_step_reset_steps():
    envs = SeedEnvs("CartPole-v1", num_envs=2, env_seeds=[0, 1], device=torch.device("cpu"))
    envs.reset()
    saw_reset = False
    for _ in range(200):
        was_done = envs.done.copy()
        step = envs.step(torch.zeros(2, 2, dtype=torch.long))  # always push left: episodes end fast
        assert np.array_equal(step.valid.numpy() == 0, was_done)
        assert (step.reward.numpy()[was_done] == 0).all() and (step.terminated.numpy()[was_done] == 0).all()
        saw_reset |= was_done.any()
        for s in range(2):
            assert len(step.finished_returns[s]) == step.ended[s].sum()
            assert (step.finished_returns[s] >= 8).all()
    assert saw_reset
    envs.close()


def _history(seeds, algo, **kw):
    cfg = al.TrainConfig(env_id="CartPole-v1", algo=algo, seeds=seeds, total_steps=kw.pop("total_steps", 3072),
                         device="cpu", **kw)
    return al.train(cfg, progress=False).history.drop(columns="time")


@pytest.mark.parametrize("algo", ["reinforce", "a2c", "ppo"])
def test_batch_independence_and_determinism(algo):
    kw = dict(num_envs=4, rollout_steps=256) if algo == "reinforce" else {}
    batch = (7, 5, 9, 11)  # 4 seeds: wide enough for vectorised reductions across seeds to kick in
    batched = _history(batch, algo, **kw)
    for seed in (7, 11):
        alone = _history((seed,), algo, **kw)
        pd.testing.assert_frame_equal(alone, batched[batched.seed == seed].reset_index(drop=True), check_exact=True)
    again = _history((11,), algo, **kw)
    pd.testing.assert_frame_equal(alone, again, check_exact=True)
    other = batched[batched.seed == 5].reset_index(drop=True)
    assert not other.drop(columns="seed").equals(alone.drop(columns="seed"))


def test_history_and_evaluate_shapes():
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(3, 1), total_steps=1024, device="cpu")
    run = al.train(cfg, progress=False)
    h = run.history
    per_update = cfg.resolve().batch_size
    assert list(h.seed.unique()) == [3, 1] and len(h) == 2 * (1024 // per_update)
    for col in ("seed", "update", "step", "episode_return", "loss_policy", "loss_value", "entropy", "approx_kl",
                "clip_frac", "grad_norm_actor", "grad_norm_critic", "lr"):
        assert col in h, col
    assert h.groupby("seed").step.max().tolist() == [1024, 1024]
    assert (h.entropy <= math.log(2) + 1e-6).all() and (h.grad_norm_actor > 0).all()
    ev = run.evaluate(episodes=3)
    assert list(ev.columns[:3]) == ["seed", "return_mean", "return_std"] and ev.seed.tolist() == [3, 1]
    assert (ev.return_mean >= 8).all() and (ev.unfinished == 0).all()
    assert run.config.lr == pytest.approx(1e-3)  # the CartPole preset was applied


def test_anneal_lr_reaches_zero_and_explicit_values_win():
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=1024, lr=5e-4, anneal_lr=True, device="cpu")
    h = al.train(cfg, progress=False).history
    assert h.lr.iloc[0] == pytest.approx(5e-4) and h.lr.iloc[-1] < 5e-4 and h.lr.is_monotonic_decreasing


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "Acrobot-v1"])
def test_other_environments_train(env_id):
    cfg = al.TrainConfig(env_id=env_id, head="etf", seeds=(0, 1), total_steps=256, num_envs=2, rollout_steps=64,
                         minibatch_size=64, hidden_sizes=(32,), device="cpu")
    run = al.train(cfg, progress=False)
    assert np.isfinite(run.history.loss_policy).all()
    if env_id.startswith("MinAtar"):
        assert type(run.model.actor.backbone).__name__ == "MinAtarCNN"


def test_shared_trunk_and_relu_variants_train():
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=512, shared_trunk=True, activation="relu",
                         device="cpu")
    run = al.train(cfg, progress=False)
    assert run.model.critic_backbone is None and np.isfinite(run.history.loss_value).all()


def test_rollout_states_and_actor_at():
    run = al.train(al.TrainConfig(env_id="CartPole-v1", seeds=(0, 1), total_steps=1024, snapshot_every=2, device="cpu"),
                   progress=False)
    states = run.rollout_states(steps=10, num_envs=3)
    assert states.shape == (2, 30, 4)
    first = run.actor_at(0)
    fresh = al.ActorCritic((4,), 2, (0, 1)).actor
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), fresh.state_dict().values(),
                                                strict=True))
    last = run.actor_at(max(run.snapshots))
    assert torch.equal(last(states), run.model.actor(states))


def test_a_run_saved_before_a_field_existed_loads_with_that_fields_default(tmp_path):
    import json

    run = al.train(al.TrainConfig(env_id="CartPole-v1", algo="a2c", seeds=(0,), total_steps=320, device="cpu"),
                   progress=False)
    meta_path = run.save(tmp_path / "run") / "config.json"
    meta = json.loads(meta_path.read_text())
    for name in ("norm_adv", "shuffle", "trust_region_clip"):  # fields added after the first runs were saved
        del meta["config"][name]
    del meta["manifest"]  # ... which had no manifest either (an edited config.json of a run with one is refused)
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "run" / "manifest.json").unlink()
    loaded = al.Run.load(tmp_path / "run")
    assert loaded.config == run.config
    assert (loaded.config.norm_adv, loaded.config.shuffle, loaded.config.trust_region_clip) == (False, False, 0.2)


def test_epsilon_exploration_samples_and_scores_the_mixture_policy():
    from acpg_lab.algorithms import explore

    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    assert explore(logits, 0.0) is logits
    mixture = explore(logits, 0.3).exp()
    torch.testing.assert_close(mixture, 0.7 * logits.softmax(-1) + 0.1)
    # in training: the stored behaviour log-probabilities are the mixture's, and epsilon -> 1 acts uniformly
    cfg = al.TrainConfig(env_id="acpg_lab/ActionBandit-v0", seeds=(0, 1), total_steps=2048, explore_epsilon=0.9,
                         device="cpu")
    run = al.train(cfg, progress=False)
    assert run.history.episode_return.notna().all()
    from acpg_lab import training
    from acpg_lab.envs import SeedEnvs
    from acpg_lab.run import derived_seeds

    r = cfg.resolve()
    envs = SeedEnvs(r.env_id, num_envs=r.num_envs, env_seeds=[derived_seeds(s)["env"] for s in r.seeds],
                    device=torch.device("cpu"))
    rollout = training.Rollout.allocate(r, envs.single_observation_space.shape, 4, torch.device("cpu"), *envs.reset())
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    training.collect_rollout(run.model, envs, rollout, gens, r)
    want = explore(rollout.logits, 0.9).log_softmax(-1).gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(rollout.logp, want)
    share = torch.stack([(rollout.actions == k).float().mean() for k in range(4)])
    assert (share - 0.25).abs().max() < 0.08  # mostly uniform although the policy has learned something
    with pytest.raises(ValueError, match="explore_epsilon"):
        al.TrainConfig(env_id="CartPole-v1", explore_epsilon=1.0).resolve()
