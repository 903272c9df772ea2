"""The batched environments (`acpg_lab.batched_envs`) reproduce gymnasium bit for bit, seed by seed.

`SeedEnvs(fast=True)` and today's gymnasium path `SeedEnvs(fast=False)` are stepped side by side from the same
seeds with the same actions over thousands of transitions (terminations, truncations at the time limit and
NEXT_STEP autoresets all occur, and are counted to prove it); every field of `EnvStep` must be equal exactly:
values, dtypes, devices, memory layout (it reaches the network), episode returns and lengths. Training with the
fast path gives bitwise the same history and weights as without it.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import acpg_lab as al
from acpg_lab.batched_envs import make_batched_env, supports
from acpg_lab.envs import SeedEnvs, make_vector_env

CPU = torch.device("cpu")
SEEDS = [0, 7, 123, 2**31 + 5, 4_000_000_000, 42, 9, 10, 11]  # includes seeds past 2**31


def _random(rng, obs, n):
    return rng.integers(0, n, obs.shape[:2])


def _balance(rng, obs, n):
    """Keeps CartPole up for 500 steps most of the time (so episodes are truncated), with 5% random actions."""
    act = (obs[..., 2] + 0.5 * obs[..., 3] > 0).astype(np.int64)
    return np.where(rng.random(act.shape) < 0.05, rng.integers(0, n, act.shape), act)


def _pump(rng, obs, n):
    """Swings Acrobot up by torquing with the second joint's velocity (so episodes terminate), 10% random."""
    act = np.where(obs[..., 5] > 0, 2, 0)
    return np.where(rng.random(act.shape) < 0.1, rng.integers(0, n, act.shape), act)


def _assert_same_step(a, b):
    for field in ("obs", "reward", "terminated", "truncated", "valid"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x.dtype, x.device, x.shape, x.stride()) == (y.dtype, y.device, y.shape, y.stride()), field
        assert torch.equal(x, y), field
    assert a.ended.dtype == b.ended.dtype and np.array_equal(a.ended, b.ended)
    if a.labels is None:
        assert b.labels is None
    else:
        assert (a.labels.dtype, a.labels.device, a.labels.stride()) == (b.labels.dtype, b.labels.device,
                                                                        b.labels.stride())
        assert torch.equal(a.labels, b.labels)
    for x, y in zip(a.finished_returns + a.finished_lengths, b.finished_returns + b.finished_lengths, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def _side_by_side(env_id, policy, steps, seeds, num_envs=8, env_kwargs=None):
    """Step the gymnasium and the batched path together; return counts of terminations, truncations, resets."""
    slow, fast = (SeedEnvs(env_id, num_envs=num_envs, env_seeds=seeds, device=CPU, env_kwargs=env_kwargs, fast=f)
                  for f in (False, True))
    assert slow.batched is None and fast.batched is not None
    assert slow.single_observation_space == fast.single_observation_space
    assert slow.single_action_space == fast.single_action_space
    (obs, labels), (obs_fast, labels_fast) = slow.reset(), fast.reset()
    assert obs.stride() == obs_fast.stride() and torch.equal(obs, obs_fast)
    assert (labels is labels_fast is None) or torch.equal(labels, labels_fast)
    rng, n = np.random.default_rng(0), int(slow.single_action_space.n)
    counts = np.zeros(3, dtype=np.int64)
    for _ in range(steps):
        actions = torch.from_numpy(policy(rng, obs.numpy(), n))
        a, b = slow.step(actions), fast.step(actions)
        _assert_same_step(a, b)
        np.testing.assert_array_equal(slow.ep_return, fast.ep_return)
        counts += [int(a.terminated.sum()), int(a.truncated.sum()), int((a.valid == 0).sum())]
        obs = a.obs
    slow.close()
    fast.close()
    return counts


CASES = {  # id: (env_id, policy, steps, number of seeds, env_kwargs, need terminations, need truncations)
    "cartpole-random": ("CartPole-v1", _random, 1500, 9, None, True, False),
    "cartpole-balanced": ("CartPole-v1", _balance, 1100, 3, None, True, True),
    "cartpole-kwargs": ("CartPole-v1", _random, 400, 4, dict(max_episode_steps=12, sutton_barto_reward=True),
                        True, True),
    "cartpole-v0": ("CartPole-v0", _balance, 450, 2, None, False, True),
    "acrobot-random": ("Acrobot-v1", _random, 1100, 3, None, False, True),
    "acrobot-pumped": ("Acrobot-v1", _pump, 600, 4, None, True, False),
    "acrobot-kwargs": ("Acrobot-v1", _pump, 400, 3, dict(max_episode_steps=90), True, True),
    "bandit": ("acpg_lab/ActionBandit-v0", _random, 300, 9, None, False, True),
    "bandit-zipf": ("acpg_lab/ActionBandit-zipf-v0", _random, 200, 4, dict(max_episode_steps=5), False, True),
    "bandit-imbalanced": ("acpg_lab/ActionBandit-imbalanced-v0", _random, 200, 3, dict(horizon=1), False, True),
    "grid": ("acpg_lab/IdealGrid-v0", _random, 400, 9, None, True, True),
    "grid-fixedstart": ("acpg_lab/IdealGrid-fixedstart-v0", _random, 300, 3, dict(size=3), True, True),
    "shifting-bandit": ("acpg_lab/ShiftingBandit-v0", _random, 300, 4, dict(shift_every=37, max_episode_steps=9),
                        False, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_path_equals_gymnasium_bitwise(case):
    env_id, policy, steps, num_seeds, env_kwargs, need_term, need_trunc = CASES[case]
    terminated, truncated, resets = _side_by_side(env_id, policy, steps, SEEDS[:num_seeds], env_kwargs=env_kwargs)
    assert resets > 0  # NEXT_STEP autoresets happened
    assert terminated > 0 or not need_term
    assert truncated > 0 or not need_trunc


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "acpg_lab/ActionBandit-v0", "acpg_lab/IdealGrid-v0",
                                    "acpg_lab/ShiftingBandit-v0"])
def test_batched_seed_alone_equals_seed_in_batch(env_id):
    seeds, steps = [5, 6, 2**32 - 1], 700
    batch = make_batched_env(env_id, 4, seeds)
    alone = make_batched_env(env_id, 4, seeds[1:2])
    rng = np.random.default_rng(1)
    for x, y in zip(batch.reset(), alone.reset(), strict=True):
        assert (x is y is None) or np.array_equal(x[1], y[0])
    for _ in range(steps):
        actions = rng.integers(0, int(batch.single_action_space.n), (3, 4))
        out, out_alone = batch.step(actions), alone.step(actions[1:2])
        for x, y in zip(out, out_alone, strict=True):
            assert (x is y is None) or np.array_equal(x[1], y[0])


def test_raw_arrays_equal_gymnasium_vector_env():
    """The batched env against ``gym.make_vec`` directly (not through SeedEnvs): dtypes of every array too."""
    for env_id in ("CartPole-v1", "Acrobot-v1", "acpg_lab/ActionBandit-v0", "acpg_lab/IdealGrid-v0"):
        seeds = [3, 4]
        envs = [make_vector_env(env_id, 5) for _ in seeds]
        batch = make_batched_env(env_id, 5, seeds)
        obs = np.stack([e.reset(seed=s)[0] for e, s in zip(envs, seeds, strict=True)])
        assert np.array_equal(obs, batch.reset()[0])
        rng = np.random.default_rng(0)
        for _ in range(300):
            actions = rng.integers(0, int(batch.single_action_space.n), (2, 5))
            results = [e.step(a) for e, a in zip(envs, actions, strict=True)]
            gym_out = [np.stack([r[i] for r in results]) for i in range(4)]
            for x, y in zip(gym_out, batch.step(actions)[:4], strict=True):
                assert x.dtype == y.dtype and np.array_equal(x, y)


def test_fast_path_is_chosen_only_where_supported(monkeypatch):
    assert supports("CartPole-v1") and supports("Acrobot-v1", dict(max_episode_steps=10))
    assert not supports("CartPole-v1", dict(render_mode="rgb_array"))
    assert not supports("Acrobot-v1", dict(max_episode_steps=0))
    assert supports("acpg_lab/ActionBandit-v0", dict(horizon=3)) and supports("acpg_lab/IdealGrid-v0")
    assert not supports("MountainCar-v0") and not supports("acpg_lab/IdealGrid-v0", dict(render_mode="human"))

    def batched(env_id, **kw):
        return SeedEnvs(env_id, num_envs=2, env_seeds=[0], device=CPU, **kw).batched is not None

    assert batched("CartPole-v1") and batched("Acrobot-v1")
    assert not batched("CartPole-v1", fast=False)
    assert not batched("CartPole-v1", env_kwargs=dict(render_mode="rgb_array"))
    assert batched("acpg_lab/ActionBandit-v0") and batched("MinAtar/Breakout-v1")
    assert not batched("MinAtar/Seaquest-v1")  # batched in torch, but slower than gymnasium on the CPU: opt-in
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "0")
    assert not batched("CartPole-v1") and batched("CartPole-v1", fast=True)


def _train(cfg, fast, monkeypatch):
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "1" if fast else "0")
    run = al.train(cfg, progress=False)
    return run, run.history.drop(columns="time")


@pytest.mark.parametrize("env_id, algo, steps, extra", [
    ("CartPole-v1", "ppo", 3072, {}), ("Acrobot-v1", "ppo", 2048, {}), ("CartPole-v1", "reinforce", 4096, {}),
    ("acpg_lab/IdealGrid-v0", "ppo", 2048, dict(label_source="optimal", diagnostics_every=4)),
    ("acpg_lab/ActionBandit-v0", "a2c", 1024, dict(label_source="optimal", diagnostics_every=4))])
def test_training_with_fast_envs_is_bitwise_the_same(env_id, algo, steps, extra, monkeypatch):
    cfg = al.TrainConfig(env_id=env_id, algo=algo, seeds=(3, 1, 4), total_steps=steps, **extra)
    (slow, slow_history), (fast, fast_history) = (_train(cfg, f, monkeypatch) for f in (False, True))
    pd.testing.assert_frame_equal(slow_history, fast_history, check_exact=True)
    for (name, x), (_, y) in zip(slow.model.state_dict().items(), fast.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "0")
    slow_eval = slow.evaluate(episodes=3)
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "1")
    pd.testing.assert_frame_equal(slow_eval, fast.evaluate(episodes=3), check_exact=True)


def test_acrobot_seed_alone_equals_seed_in_batch_when_training(monkeypatch):
    cfg = al.TrainConfig(env_id="Acrobot-v1", algo="ppo", seeds=(8, 2, 6), total_steps=2048)
    _, batched = _train(cfg, True, monkeypatch)
    _, alone = _train(dataclasses.replace(cfg, seeds=(2,)), True, monkeypatch)
    pd.testing.assert_frame_equal(alone, batched[batched.seed == 2].reset_index(drop=True), check_exact=True)
