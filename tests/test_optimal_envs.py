"""Environments with a known optimal action: labels, returns, balance, visitation, autoreset, seeding."""

from __future__ import annotations

import warnings
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from acpg_lab.optimal_envs import (
    ENV_IDS,
    ActionBandit,
    ActionBanditVectorEnv,
    IdealGrid,
    IdealGridVectorEnv,
    register_envs,
)

BANDIT_IDS = [i for i, (name, _) in ENV_IDS.items() if name in ("ActionBandit", "ShiftingBandit")]
GRID_IDS = [i for i, (name, _) in ENV_IDS.items() if name == "IdealGrid"]


def make_vec(env_id: str, num_envs: int = 16, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def run_vector(env: gym.vector.VectorEnv, steps: int, policy, seed: int = 0) -> dict:
    """Step ``env`` with ``policy(info, rng)``; collect finished episodes as (start state, return, length)
    and every (state, optimal action) the policy decided on, skipping NEXT_STEP reset steps."""
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    start, ret, length = info["state"].copy(), np.zeros(env.num_envs), np.zeros(env.num_envs, dtype=int)
    done = np.zeros(env.num_envs, dtype=bool)
    episodes, decisions, reset_steps = [], [], []
    for _ in range(steps):
        acting = ~done
        decisions += list(zip(info["state"][acting], info["optimal_action"][acting], strict=True))
        _, reward, term, trunc, info = env.step(policy(info, rng))
        reset_steps.append(reward[done])
        start[done], ret[done], length[done] = info["state"][done], 0.0, 0
        ret[~done] += reward[~done]
        length[~done] += 1
        ended = (term | trunc) & ~done
        episodes += [(int(start[i]), float(ret[i]), int(length[i])) for i in np.flatnonzero(ended)]
        done = ended
    return dict(episodes=episodes, decisions=decisions, reset_rewards=np.concatenate(reset_steps))


def oracle(info, rng):
    return info["optimal_action"]


def uniform_policy(info, rng):
    return rng.integers(0, 4, size=info["state"].shape[0])


# ----------------------------------------------------------------------------------------------------------
# returns


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_oracle_reaches_optimal_return_single(env_id):
    env = gym.make(env_id)
    layout = env.unwrapped.layout
    returns = []
    for episode in range(40):
        _, info = env.reset(seed=episode)
        start, ret, ended = info["state"], 0.0, False
        while not ended:
            _, reward, term, trunc, info = env.step(info["optimal_action"])
            ret += reward
            ended = term or trunc
        expected = layout.horizon if env_id in BANDIT_IDS else layout.optimal_values[start]
        assert ret == pytest.approx(expected)
        returns.append(ret)
    if env_id in BANDIT_IDS or "fixedstart" in env_id:  # every episode is optimal-return exactly
        assert np.mean(returns) == pytest.approx(env.unwrapped.optimal_return)


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_oracle_reaches_optimal_return_vector_and_random_is_much_worse(env_id):
    env = make_vec(env_id)
    layout = env.unwrapped.layout
    best = run_vector(env, 200, oracle)
    assert len(best["episodes"]) > 100
    for start, ret, _ in best["episodes"]:
        expected = layout.horizon if env_id in BANDIT_IDS else layout.optimal_values[start]
        assert ret == pytest.approx(expected)
    assert np.all(best["reset_rewards"] == 0)
    mean_best = np.mean([r for _, r, _ in best["episodes"]])
    assert mean_best == pytest.approx(env.unwrapped.optimal_return, abs=0.3)

    rand = run_vector(make_vec(env_id), 200, uniform_policy, seed=1)
    mean_rand = np.mean([r for _, r, _ in rand["episodes"]])
    if env_id in BANDIT_IDS:
        assert mean_rand == pytest.approx(layout.horizon / 4, abs=0.5)  # 4 of the optimal 16
    else:
        assert mean_rand < env.unwrapped.optimal_return - 5.0


def test_grid_optimal_return_is_mean_start_value():
    # Distances on the 5 x 5 pinwheel (written out): mean over the 24 starts is 2.5; the corner start is 4.
    dist = np.array([[4, 3, 2, 3, 4], [3, 2, 1, 2, 3], [2, 1, 0, 1, 2], [3, 2, 1, 2, 3], [4, 3, 2, 3, 4]])
    assert IdealGrid().optimal_return == pytest.approx(-dist.sum() / 24)
    assert IdealGrid(start="fixed").optimal_return == -4.0
    assert IdealGrid(start="fixed", fixed_start=(3, 2), step_cost=0.5).optimal_return == -0.5
    np.testing.assert_array_equal(IdealGrid().layout.distances.reshape(5, 5), dist)
    assert ActionBandit(horizon=7).optimal_return == 7.0


def test_sync_vectorisation_also_works():
    env = gym.make_vec("acpg_lab/IdealGrid-v0", num_envs=4, vectorization_mode="sync")
    out = run_vector(env, 60, oracle)
    layout = env.envs[0].unwrapped.layout
    assert out["episodes"] and all(r == layout.optimal_values[s] for s, r, _ in out["episodes"])


# ----------------------------------------------------------------------------------------------------------
# labels against independently computed optimal policies

EXPECTED_ARROWS_5 = [">>vvv", ">>vvv", ">>G<<", "^^^<<", "^^^<<"]


@pytest.mark.parametrize("size", [3, 5, 7])
def test_grid_labels_are_the_unique_bfs_optimum(size):
    env = IdealGrid(size=size)
    n, goal = size * size, size * size // 2
    # Dynamics by brute force: start in every state and try every action.
    nxt = np.full((n, 4), goal)
    labels = np.full(n, -1)
    for s in range(n):
        if s == goal:
            continue
        for a in range(4):
            _, info = env.reset(options={"state": s})
            labels[s] = info["optimal_action"]
            obs, reward, term, _, info = env.step(a)
            nxt[s, a] = info["state"]
            assert reward == -1.0 and term == (info["state"] == goal)
            assert obs.argmax() == info["state"]
            assert abs(nxt[s, a] // size - s // size) + abs(nxt[s, a] % size - s % size) <= 1  # moves 0 or 1
    # BFS backwards from the goal.
    dist = np.full(n, -1)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        t = queue.popleft()
        for s in range(n):
            if dist[s] < 0 and (nxt[s] == t).any():
                dist[s] = dist[t] + 1
                queue.append(s)
    assert (dist >= 0).all()
    for s in range(n):
        if s != goal:
            best = np.flatnonzero(dist[nxt[s]] == dist[nxt[s]].min())
            assert best.tolist() == [labels[s]], f"state {divmod(s, size)}: optimal {best}, label {labels[s]}"
    np.testing.assert_array_equal(labels, env.layout.optimal_actions)
    np.testing.assert_array_equal(dist, env.layout.distances)
    if size == 5:
        arrows = ["".join("G" if s == goal else "^>v<"[labels[s]] for s in range(r * 5, r * 5 + 5))
                  for r in range(5)]
        assert arrows == EXPECTED_ARROWS_5


def test_grid_goal_observation_has_label_minus_one():
    env = IdealGrid(start="fixed")
    _, info = env.reset(seed=0)
    for _ in range(4):
        obs, _, term, trunc, info = env.step(info["optimal_action"])
    assert term and not trunc and info["state"] == 12 and info["optimal_action"] == -1 and obs[12] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


@pytest.mark.parametrize("kwargs", [{}, {"imbalance": 1.0}, {"visitation": "zipf"}, {"num_actions": 3},
                                    {"obs": "embedding", "embedding_dim": 5}])
def test_bandit_labels_are_the_rewarded_action(kwargs):
    env = ActionBandit(**kwargs)
    k, n = env.action_space.n, env.layout.num_states
    for s in range(n):
        rewards = []
        for a in range(k):
            obs, info = env.reset(options={"state": s})
            np.testing.assert_array_equal(obs, env.layout.observations[s])
            rewards.append(env.step(a)[1])
        assert rewards == [float(a == info["optimal_action"]) for a in range(k)]
        assert info["optimal_action"] == env.layout.optimal_actions[s]


# ----------------------------------------------------------------------------------------------------------
# balance, visitation, exploration


def test_group_balance():
    for size in (3, 5, 7):
        labels = IdealGrid(size=size).layout.optimal_actions
        counts = np.bincount(labels[np.arange(size * size) != size * size // 2])
        assert counts.tolist() == [(size * size - 1) // 4] * 4
    assert np.bincount(ActionBandit().layout.optimal_actions).tolist() == [8, 8, 8, 8]
    assert ActionBandit(num_actions=6, states_per_action=3).layout.group_sizes.tolist() == [3] * 6
    assert gym.make("acpg_lab/ActionBandit-zipf-v0").unwrapped.layout.group_sizes.tolist() == [8, 8, 8, 8]


def test_imbalanced_groups():
    sizes = gym.make("acpg_lab/ActionBandit-imbalanced-v0").unwrapped.layout.group_sizes
    assert sizes.tolist() == [19, 8, 3, 2]  # about 32 * exp(-k) / sum, at least 1 each
    for k, spa, imb in [(4, 8, 0.5), (6, 4, 2.0), (3, 10, 20.0), (2, 1, 5.0)]:
        sizes = ActionBandit(num_actions=k, states_per_action=spa, imbalance=imb).layout.group_sizes
        assert sizes.sum() == k * spa and sizes.min() >= 1 and (np.diff(sizes) <= 0).all()
        target = 1 + (k * spa - k) * np.exp(-imb * np.arange(k)) / np.exp(-imb * np.arange(k)).sum()
        assert np.abs(sizes - target).max() < 1.0


def _chi2(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("env_id", BANDIT_IDS)
def test_bandit_visitation_frequencies(env_id):
    env = make_vec(env_id, num_envs=64)
    layout = env.unwrapped.layout
    out = run_vector(env, 250, uniform_policy)
    states = np.array([s for s, _ in out["decisions"]])
    counts = np.bincount(states, minlength=layout.num_states)
    dof = layout.num_states - 1
    assert _chi2(counts, layout.state_probs) < dof + 6 * np.sqrt(2 * dof)
    group_share = np.bincount(layout.optimal_actions, weights=counts) / counts.sum()
    np.testing.assert_allclose(group_share, layout.group_sizes / layout.num_states, atol=0.02)
    uniform = np.full(layout.num_states, 1.0 / layout.num_states)
    if "zipf" in env_id:
        assert _chi2(counts, uniform) > 50 * dof
        first, last = counts[layout.optimal_actions == 0][[0, -1]]
        assert 5 < first / last < 12  # Zipf exponent 1 over 8 states: 8 times
    else:
        np.testing.assert_allclose(layout.state_probs, 1.0 / layout.num_states)


def test_fixed_start_explores_only_the_optimal_path():
    path = {0, 1, 2, 7}  # (0,0) > (0,1) > (0,2) v (1,2) v goal
    fixed = run_vector(make_vec("acpg_lab/IdealGrid-fixedstart-v0"), 100, oracle)
    assert {s for s, _ in fixed["decisions"]} == path
    assert {a for _, a in fixed["decisions"]} == {1, 2}  # only right and down are ever optimal on it
    layout = make_vec("acpg_lab/IdealGrid-fixedstart-v0").unwrapped.layout
    assert set(np.flatnonzero(layout.oracle_visitation)) == path

    uniform = run_vector(make_vec("acpg_lab/IdealGrid-v0"), 100, oracle)
    states = np.array([s for s, _ in uniform["decisions"]])
    assert set(states) == set(range(25)) - {12}
    freq = np.bincount(states, minlength=25) / len(states)
    np.testing.assert_allclose(freq, make_vec("acpg_lab/IdealGrid-v0").unwrapped.layout.oracle_visitation,
                               atol=0.02)


# ----------------------------------------------------------------------------------------------------------
# vector semantics and seeding


def test_bandit_next_step_autoreset():
    env = make_vec("acpg_lab/ActionBandit-v0", num_envs=4, horizon=3)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    _, info = env.reset(seed=0)
    for t in range(3):
        _, reward, term, trunc, info = env.step(info["optimal_action"])
        assert (reward == 1).all() and not term.any() and trunc.tolist() == [t == 2] * 4
    assert info["optimal_action"].dtype == np.int64 and info["optimal_action"].shape == (4,)
    # Reset step: the action is ignored (even an invalid one) and earns nothing.
    obs, reward, term, trunc, info = env.step(np.array([info["optimal_action"][0], -1, 99, 3]))
    assert (reward == 0).all() and not term.any() and not trunc.any()
    np.testing.assert_array_equal(obs, env.unwrapped.layout.observations[info["state"]])
    for t in range(3):
        _, reward, _, trunc, info = env.step(info["optimal_action"])
        assert (reward == 1).all() and trunc.tolist() == [t == 2] * 4
    with pytest.raises(RuntimeError, match="reset"):
        make_vec("acpg_lab/ActionBandit-v0").step(np.zeros(16, dtype=np.int64))


def test_grid_next_step_autoreset_and_action_validation():
    env = make_vec("acpg_lab/IdealGrid-fixedstart-v0", num_envs=3)
    _, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([0.0, 1.0, 1.0]))
    for t in range(4):
        obs, reward, term, trunc, info = env.step(info["optimal_action"])
        assert (reward == -1).all() and term.tolist() == [t == 3] * 3 and not trunc.any()
    assert info["optimal_action"].tolist() == [-1, -1, -1] and (obs[:, 12] == 1).all()  # goal observation
    obs, reward, term, trunc, info = env.step(info["optimal_action"])  # -1 is fine on a reset step
    assert (reward == 0).all() and not term.any() and not trunc.any()
    assert info["state"].tolist() == [0, 0, 0] and info["optimal_action"].tolist() == [1, 1, 1]
    assert (obs[:, 0] == 1).all()
    # Truncation when the policy never gets there: always "up" from the corner bumps into the wall.
    env = make_vec("acpg_lab/IdealGrid-fixedstart-v0", num_envs=2, max_steps=6)
    env.reset(seed=0)
    truncs = [env.step(np.zeros(2, dtype=np.int64))[3].tolist() for _ in range(8)]
    assert truncs == [[False] * 2] * 5 + [[True] * 2] + [[False] * 2] * 2


def test_reset_options_choose_start_states():
    env = make_vec("acpg_lab/IdealGrid-v0", num_envs=3)
    _, info = env.reset(seed=0, options={"state": [0, 24, 13]})
    assert info["state"].tolist() == [0, 24, 13] and info["optimal_action"].tolist() == [1, 3, 3]
    _, info = make_vec("acpg_lab/ActionBandit-v0", num_envs=2).reset(options={"state": 31})
    assert info["state"].tolist() == [31, 31] and info["optimal_action"].tolist() == [3, 3]


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_seeded_reproducibility(env_id):
    def trajectory(env, seed):
        rng = np.random.default_rng(123)
        obs, info = env.reset(seed=seed)
        out = [obs.copy(), info["state"]]
        for _ in range(40):
            obs, reward, term, trunc, info = env.step(rng.integers(0, 4, size=env.num_envs))
            out += [obs.copy(), reward, term, trunc, info["state"], info["optimal_action"]]
        return out

    def single(env, seed):
        rng = np.random.default_rng(123)
        obs, info = env.reset(seed=seed)
        out = [obs.copy(), info["state"]]
        for _ in range(40):
            obs, reward, term, trunc, info = env.step(int(rng.integers(0, 4)))
            out += [obs.copy(), reward, term, trunc, info["state"]]
            if term or trunc:
                obs, info = env.reset()
                out += [obs.copy(), info["state"]]
        return out

    def same(a, b):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    env = make_vec(env_id, num_envs=8)
    first = trajectory(env, 7)
    assert same(first, trajectory(env, 7))  # same env, reseeded
    assert same(first, trajectory(make_vec(env_id, num_envs=8), 7))  # a fresh env
    if "fixedstart" not in env_id:  # the fixed-start grid, given the actions, need not depend on the seed
        assert not same(first, trajectory(env, 8))
    env = gym.make(env_id)
    assert same(single(env, 3), single(gym.make(env_id), 3))
    if "fixedstart" not in env_id:
        assert not same(single(env, 3), single(env, 4))


def test_embedding_is_fixed_by_layout_seed():
    a = ActionBandit(obs="embedding", embedding_dim=8)
    b = gym.make_vec("acpg_lab/ActionBandit-v0", num_envs=2, obs="embedding", embedding_dim=8).unwrapped
    c = ActionBandit(obs="embedding", embedding_dim=8, layout_seed=1)
    np.testing.assert_array_equal(a.layout.observations, b.layout.observations)
    assert a.layout.observations.shape == (32, 8)
    assert not np.allclose(a.layout.observations, c.layout.observations)
    assert np.linalg.matrix_rank(a.layout.observations) == 8
    obs, info = b.reset(seed=0)
    np.testing.assert_array_equal(obs, a.layout.observations[info["state"]])


# ----------------------------------------------------------------------------------------------------------
# registration, spaces, kwargs, API checks


def test_registration_is_idempotent_and_complete():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_envs()
        register_envs()
    for env_id, (name, _) in ENV_IDS.items():
        spec = gym.spec(env_id)
        assert spec.entry_point.endswith(f":{name}") and spec.vector_entry_point.endswith(f":{name}VectorEnv")
        assert spec.max_episode_steps is None


def test_spaces_and_kwargs_reach_the_envs():
    env = gym.make("acpg_lab/ActionBandit-v0")
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (32,), np.float32)
    assert env.action_space == gym.spaces.Discrete(4)
    env = gym.make("acpg_lab/ActionBandit-v0", num_actions=3, states_per_action=2, obs="embedding",
                   embedding_dim=5)
    assert env.observation_space.shape == (5,) and env.action_space == gym.spaces.Discrete(3)
    vec = make_vec("acpg_lab/ActionBandit-v0", num_envs=8, imbalance=1.0)
    assert isinstance(vec, ActionBanditVectorEnv) and vec.layout.group_sizes.tolist() == [19, 8, 3, 2]
    assert vec.observation_space.shape == (8, 32) and vec.action_space.shape == (8,)
    assert vec.single_action_space == gym.spaces.Discrete(4)
    capped = make_vec("acpg_lab/ActionBandit-v0", num_envs=2, max_episode_steps=5)
    assert capped.layout.horizon == 5 and capped.optimal_return == 5.0
    grid = make_vec("acpg_lab/IdealGrid-fixedstart-v0", num_envs=2, size=7, obs="coords")
    assert isinstance(grid, IdealGridVectorEnv) and grid.single_observation_space.shape == (2,)
    assert grid.optimal_return == -6.0 and grid.layout.max_steps == 196
    obs, _ = grid.reset(seed=0)
    np.testing.assert_allclose(obs, [[-1.0, -1.0], [-1.0, -1.0]])  # the (0, 0) corner
    single = gym.make("acpg_lab/IdealGrid-v0", size=3, obs="coords")
    assert single.unwrapped.layout.observations[4].tolist() == [0.0, 0.0]  # the goal is the centre


@pytest.mark.parametrize("kwargs", [{}, {"obs": "embedding"}, {"visitation": "zipf", "imbalance": 2.0}])
def test_gymnasium_env_checker_bandit(kwargs):
    check_env(gym.make("acpg_lab/ActionBandit-v0", **kwargs).unwrapped)


@pytest.mark.parametrize("kwargs", [{}, {"obs": "coords"}, {"start": "fixed", "size": 3}])
def test_gymnasium_env_checker_grid(kwargs):
    check_env(gym.make("acpg_lab/IdealGrid-v0", **kwargs).unwrapped)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"num_actions": 1}, "num_actions"),
    ({"num_actions": True}, "num_actions"),
    ({"states_per_action": 0}, "states_per_action"),
    ({"horizon": 0}, "horizon"),
    ({"horizon": 2.5}, "horizon"),
    ({"imbalance": -0.1}, "imbalance"),
    ({"imbalance": float("nan")}, "imbalance"),
    ({"visitation": "powerlaw"}, "visitation"),
    ({"zipf_exponent": 0.0}, "zipf_exponent"),
    ({"obs": "coords"}, "obs"),
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"layout_seed": -1}, "layout_seed"),
    ({"render_mode": "human"}, "render_mode"),
])
def test_bandit_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ActionBandit(**kwargs)
    with pytest.raises(ValueError, match=name):
        make_vec("acpg_lab/ActionBandit-v0", num_envs=2, **kwargs)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"size": 4}, "size"),
    ({"size": 1}, "size"),
    ({"start": "random"}, "start"),
    ({"fixed_start": (2, 2)}, "fixed_start"),
    ({"fixed_start": (0, 5)}, "fixed_start"),
    ({"fixed_start": 3}, "fixed_start"),
    ({"step_cost": 0.0}, "step_cost"),
    ({"step_cost": -1.0}, "step_cost"),
    ({"max_steps": 3}, "max_steps"),
    ({"obs": "embedding"}, "obs"),
])
def test_grid_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        IdealGrid(**kwargs)
    with pytest.raises(ValueError, match=name):
        gym.make("acpg_lab/IdealGrid-v0", **kwargs)
    with pytest.raises(ValueError, match=name):
        make_vec("acpg_lab/IdealGrid-v0", num_envs=2, **kwargs)


def test_bad_steps_resets_and_vector_arguments():
    for env in (ActionBandit(), IdealGrid()):
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)
        env.reset(seed=0)
        for action in (4, -1, 1.0, True):
            with pytest.raises(ValueError, match="action"):
                env.step(action)
        with pytest.raises(ValueError, match="options"):
            env.reset(options={"start": 0})
    with pytest.raises(ValueError, match="options"):
        IdealGrid().reset(options={"state": 12})  # the goal
    with pytest.raises(ValueError, match="options"):
        ActionBandit().reset(options={"state": 32})
    with pytest.raises(ValueError, match="options"):
        make_vec("acpg_lab/IdealGrid-v0", num_envs=2).reset(options={"state": [0, 1, 2]})
    with pytest.raises(ValueError, match="num_envs"):
        ActionBanditVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_vec("acpg_lab/IdealGrid-v0", num_envs=2, max_episode_steps=3)
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_vec("acpg_lab/ActionBandit-v0", num_envs=2, max_episode_steps=0)
