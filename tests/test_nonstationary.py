"""The non-stationary bandit (`acpg_lab.optimal_envs.nonstationary`): shifts on the environment's own clock, known
optimum in every phase, the batched path and checkpoints continue it exactly."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import acpg_lab as al
from acpg_lab.batched_envs import make_batched_env
from acpg_lab.envs import SeedEnvs
from acpg_lab.optimal_envs import ActionBandit, ShiftingBandit, ShiftingBanditVectorEnv

ENV_ID = "acpg_lab/ShiftingBandit-v0"


def _vec(num_envs=4, **kwargs):
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def test_labels_shift_exactly_every_shift_every_steps_and_stay_balanced():
    env = _vec(shift_every=10).unwrapped
    assert isinstance(env, ShiftingBanditVectorEnv) and env.layout.num_states == 256
    assert env.single_observation_space.shape == (32,)
    reference = ActionBandit(states_per_action=64, obs="embedding", embedding_dim=32).layout
    np.testing.assert_array_equal(env.layout.observations, reference.observations)
    np.testing.assert_array_equal(env.layout.optimal_actions, reference.optimal_actions)  # phase 0
    env.reset(seed=0)
    seen = []
    for t in range(35):
        before = env.layout.optimal_actions.copy()
        env.step(np.zeros(4, dtype=np.int64))
        changed = not np.array_equal(before, env.layout.optimal_actions)
        assert changed == ((t + 1) % 10 == 0), t
        assert (env.layout.group_sizes == 64).all()
        seen.append(env.phase)
    assert seen[-1] == 3 and env.clock == 35
    agree = (env.schedule.optimal_actions(0) == env.schedule.optimal_actions(10)).mean()
    assert 0.1 < agree < 0.4  # about 1/K keep their action
    other = _vec(shift_every=10, layout_seed=1).unwrapped.schedule
    assert not np.array_equal(other.optimal_actions(10), env.schedule.optimal_actions(10))
    assert np.array_equal(other.optimal_actions(0), env.schedule.optimal_actions(0))  # phase 0: group by group
    env.reset(seed=3)
    assert env.clock == 0 and env.phase == 0


def test_the_oracle_follows_the_shifts_and_a_stale_policy_falls_to_chance():
    env = _vec(num_envs=16, shift_every=50)
    stale_table = env.unwrapped.layout.optimal_actions.copy()
    _, info = env.reset(seed=0)
    oracle, stale = [], []
    for _ in range(200):
        states = info["state"]
        stale_actions = stale_table[states]
        action = info["optimal_action"]
        _, reward, _, trunc, info_next = env.step(action)
        oracle.append(reward.mean())
        stale.append((stale_actions == action).mean())
        info = info_next
    oracle = np.array(oracle)
    # every acting step is rewarded (reset steps give 0: one in horizon + 1 per environment)
    assert oracle.mean() == pytest.approx(16 / 17, abs=0.02)
    assert np.mean(stale[:49]) == 1.0 and 0.15 < np.mean(stale[60:]) < 0.4


def test_single_environment_clock_survives_episodes_and_restarts_with_a_seed():
    env = ShiftingBandit(shift_every=20, horizon=4)
    _, info = env.reset(seed=1)
    total = 0.0
    for _ in range(10):  # 40 steps, two shifts, ten episodes
        for _ in range(4):
            _, reward, _, trunc, info = env.step(info["optimal_action"])
            total += reward
        assert trunc
        _, info = env.reset()
    assert total == 40.0 and env.clock == 40 and env.phase == 2
    env.reset(seed=1)
    assert env.clock == 0
    with pytest.raises(ValueError, match="shift_every"):
        ShiftingBandit(shift_every=0)


def _roll(envs, steps, seed):
    gen, out = torch.Generator().manual_seed(seed), []
    for _ in range(steps):
        actions = torch.randint(0, 4, (envs.num_seeds, envs.num_envs), generator=gen)
        step = envs.step(actions)
        out += [step.obs, step.reward, step.labels, step.truncated, step.valid]
    return out


@pytest.mark.parametrize("fast", [True, False])
def test_environment_state_continues_bitwise_across_a_shift(fast, tmp_path):
    def make():
        envs = SeedEnvs(ENV_ID, num_envs=3, env_seeds=[5, 9], device=torch.device("cpu"), fast=fast,
                        env_kwargs=dict(shift_every=30))
        envs.reset()
        return envs

    envs = make()
    assert (envs.batched is not None) == fast
    _roll(envs, 50, seed=0)
    torch.save(envs.get_state(), tmp_path / "env.pt")
    expected = _roll(envs, 100, seed=1)  # crosses two shifts
    restored = make()
    restored.set_state(torch.load(tmp_path / "env.pt", weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(_roll(restored, 100, seed=1), expected, strict=True))


def test_batched_seeds_are_independent_of_the_batch():
    batch, alone = (make_batched_env(ENV_ID, 4, seeds, dict(shift_every=13)) for seeds in ([5, 6, 7], [6]))
    batch.reset(), alone.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.integers(0, 4, (3, 4))
        for x, y in zip(batch.step(actions), alone.step(actions[1:2]), strict=True):
            assert np.array_equal(x[1], y[0])


def test_training_on_the_shifting_bandit_is_the_same_with_batched_envs(monkeypatch):
    cfg = al.TrainConfig(env_id=ENV_ID, seeds=(2, 0), total_steps=4096, num_envs=4, rollout_steps=64,
                         label_source="optimal", diagnostics_every=4, env_kwargs=dict(shift_every=96))
    histories = []
    for fast in ("0", "1"):
        monkeypatch.setenv("ACPG_LAB_FAST_ENVS", fast)
        histories.append(al.train(cfg, progress=False).history.drop(columns="time"))
    pd.testing.assert_frame_equal(*histories, check_exact=True)
    assert histories[0].nc1.notna().any()


def test_gymnasium_api_checks_pass():
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make(ENV_ID, shift_every=3).unwrapped)
    assert gym.spec(ENV_ID).vector_entry_point.endswith(":ShiftingBanditVectorEnv")
