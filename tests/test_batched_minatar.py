"""The torch MinAtar games (`acpg_lab.batched_envs.minatar`) reproduce the minatar package step for step.

Side by side with gymnasium's path (one ``gym.make_vec(id, E)`` per seed, stepping minatar's own game one
environment at a time, seeded ``seed + e``): the same actions (random, or game-aware policies that live long
enough for the difficulty to ramp), 3,000-100,000 transitions per game (``CASES``) over 3-24 environments and 1-4
seeds, every observation, reward, terminated and truncated flag equal (values and dtypes), with terminations,
NEXT_STEP resets, sticky actions (0 to 0.6), ``-v0`` action sets, ramping on and off and time limits all
occurring (counted to prove it); states late in a game (Asterix's last ramps, Space Invaders' cleared waves,
Seaquest's surfacing with divers) are written into both sides and compared too. Also: `SeedEnvs` fast vs
gymnasium (`EnvStep` fields and layout), checkpoint resume, a seed alone vs in a batch, training and evaluation
bitwise the same, and that `VectorGames.step` on counter streams never synchronises with the host (and, with
CUDA, that the CUDA games equal the CPU ones).
"""

import io

import numpy as np
import pandas as pd
import pytest
import torch
from _sync import HostSync, NoHostSync

import acpg_lab as al
from acpg_lab.batched_envs import make_batched_env, supports
from acpg_lab.batched_envs.minatar import DEFAULT_GAMES, GAMES, BatchedMinAtar, make_games, make_streams
from acpg_lab.batched_envs.minatar.streams import CounterStreams, RandomStateStreams
from acpg_lab.env_state import as_tensors
from acpg_lab.envs import SeedEnvs, make_vector_env

CPU = torch.device("cpu")
IDS = [f"MinAtar/{name}-v1" for name in GAMES]
DEFAULT_IDS = [f"MinAtar/{name}-v1" for name in GAMES if name in DEFAULT_GAMES]  # what SeedEnvs picks itself
MOVES = np.array([[0, 0], [0, -1], [-1, 0], [0, 1], [1, 0]])  # (dy, dx) of Asterix's n, l, u, r, d


def _random(rng, obs, n):
    return rng.integers(0, n, obs.shape[:2])


def _dodge(rng, obs, n):
    """Asterix: step where no enemy is within 2 columns in the target lane (3% random), so episodes last long
    enough for the difficulty to ramp several times."""
    s, e = obs.shape[:2]
    flat = np.asarray(obs).reshape(s * e, 10, 10, -1).astype(bool)
    py, px = np.unravel_index(flat[..., 0].reshape(s * e, 100).argmax(1), (10, 10))
    ty, tx = np.clip(py[:, None] + MOVES[:, 0], 1, 8), np.clip(px[:, None] + MOVES[:, 1], 0, 9)
    near = np.abs(np.arange(10) - tx[..., None]) <= 2
    danger = (flat[..., 1][np.arange(s * e)[:, None], ty] & near).any(-1)
    act = (0.5 * rng.random(danger.shape) - danger).argmax(1)
    return np.where(rng.random(act.shape) < 0.03, rng.integers(0, n, act.shape), act).reshape(s, e)


def _up(rng, obs, n):
    """Freeway: mostly up (action 1 of the minimal n, u, d; 2 of all six), so the chicken scores and the cars
    are re-drawn."""
    return np.where(rng.random(obs.shape[:2]) < 0.8, 1 if n == 3 else 2, rng.integers(0, n, obs.shape[:2]))


SEAQUEST_MOVES = np.array([[0, 0], [0, -1], [-1, 0], [0, 1], [1, 0], [0, 0]])  # n, l, u, r, d, f


def _dive(rng, obs, n):
    """Seaquest: dive, avoid enemies and bullets within 2 columns, fire often, never surface without a diver,
    surface with divers when oxygen is low or 6 are aboard (3% random): long episodes that ramp the difficulty."""
    s, e = obs.shape[:2]
    flat = np.asarray(obs).reshape(s * e, 10, 10, -1).astype(bool)
    sy, sx = np.unravel_index(flat[..., 0].reshape(s * e, 100).argmax(1), (10, 10))
    oxygen, divers = flat[:, 9, :, 7].sum(1), flat[:, 9, :, 8].sum(1)
    ty = np.clip(sy[:, None] + SEAQUEST_MOVES[:, 0], 0, 8)
    tx = np.clip(sx[:, None] + SEAQUEST_MOVES[:, 1], 0, 9)
    threats = flat[..., 4] | flat[..., 5] | flat[..., 6]
    danger = (threats[np.arange(s * e)[:, None], ty] & (np.abs(np.arange(10) - tx[..., None]) <= 2)).any(-1)
    danger |= (ty == 0) & (divers == 0)[:, None] & (sy > 0)[:, None]
    score = 0.5 * rng.random(danger.shape) - 2 * danger
    score[:, 5] += 0.3
    score[:, 2] += 3 * ((divers > 0) & ((oxygen <= 3) | (divers >= 6)))
    score[:, 4] += 1.0 * (sy == 0)
    act = score.argmax(1)
    return np.where(rng.random(act.shape) < 0.03, rng.integers(0, n, act.shape), act).reshape(s, e)


def _gym(env_id, num_envs, seeds, env_kwargs=None):
    envs = [make_vector_env(env_id, num_envs, env_kwargs) for _ in seeds]
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)])
    return envs, obs


def _gym_step(envs, actions):
    results = [env.step(a) for env, a in zip(envs, actions, strict=True)]
    return [np.stack([r[i] for r in results]) for i in range(4)]


def _same(gym_out, batched_out):
    for name, x, y in zip(("obs", "reward", "terminated", "truncated"), gym_out, batched_out, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y), name


CASES = {  # id: (env_id, policy, steps, seeds, envs per seed, env_kwargs, need truncations)
    "breakout": ("MinAtar/Breakout-v1", _random, 2500, [0, 7, 123, 2**31 + 5], 6, None, False),
    "breakout-v0-sticky": ("MinAtar/Breakout-v0", _random, 1200, [3, 4], 5,
                           dict(sticky_action_prob=0.6), False),
    "breakout-timelimit": ("MinAtar/Breakout-v1", _random, 800, [11, 12, 13], 4,
                           dict(max_episode_steps=17, sticky_action_prob=0.0), True),
    "asterix": ("MinAtar/Asterix-v1", _random, 2500, [0, 7, 123, 2**31 + 5], 6, None, False),
    "asterix-dodge": ("MinAtar/Asterix-v1", _dodge, 2500, [1, 2], 8, None, False),
    "asterix-v0-noramp": ("MinAtar/Asterix-v0", _dodge, 1200, [5, 6], 4,
                          dict(difficulty_ramping=False, sticky_action_prob=0.3), False),
    "asterix-timelimit": ("MinAtar/Asterix-v1", _random, 800, [21, 22], 5, dict(max_episode_steps=40), True),
    "freeway": ("MinAtar/Freeway-v1", _up, 2700, [0, 7, 2**31 + 5], 3, None, False),  # episodes: 2501 steps
    "freeway-v0-timelimit": ("MinAtar/Freeway-v0", _up, 800, [1, 2], 4,
                             dict(max_episode_steps=150, sticky_action_prob=0.5), True),
    "space_invaders": ("MinAtar/SpaceInvaders-v1", _random, 2500, [0, 7, 123, 2**31 + 5], 6, None, False),
    "space_invaders-v0-noramp": ("MinAtar/SpaceInvaders-v0", _random, 1200, [3, 4], 4,
                                 dict(difficulty_ramping=False, sticky_action_prob=0.0), False),
    "space_invaders-timelimit": ("MinAtar/SpaceInvaders-v1", _random, 800, [5], 6, dict(max_episode_steps=60),
                                 True),
    "seaquest": ("MinAtar/Seaquest-v1", _random, 1500, [0, 7, 2**31 + 5], 5, None, False),
    "seaquest-dive": ("MinAtar/Seaquest-v1", _dive, 3000, [1, 2, 3], 6, None, False),
    "seaquest-v0-noramp": ("MinAtar/Seaquest-v0", _dive, 1200, [4, 5], 4,
                           dict(difficulty_ramping=False, sticky_action_prob=0.3), False),
    "seaquest-timelimit": ("MinAtar/Seaquest-v1", _dive, 600, [6], 6, dict(max_episode_steps=70), True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_minatar_equals_minatar_step_for_step(case):
    env_id, policy, steps, seeds, num_envs, env_kwargs, need_trunc = CASES[case]
    envs, obs = _gym(env_id, num_envs, seeds, env_kwargs)
    batch = BatchedMinAtar(env_id=env_id, num_envs=num_envs, env_seeds=seeds, env_kwargs=env_kwargs)
    if env_id.split("/")[1].split("-")[0] in DEFAULT_GAMES:
        assert isinstance(make_batched_env(env_id, num_envs, seeds, env_kwargs), BatchedMinAtar)
    assert batch.single_observation_space == envs[0].single_observation_space
    assert batch.single_action_space == envs[0].single_action_space
    first, labels = batch.reset()
    assert labels is None and obs.dtype == first.dtype and np.array_equal(obs, first)
    rng, n = np.random.default_rng(0), int(batch.single_action_space.n)
    terminated = truncated = rewards = 0
    ramp = 0
    for _ in range(steps):
        actions = policy(rng, obs, n)
        out = _gym_step(envs, actions)
        _same(out, batch.step(actions)[:4])
        obs = out[0]
        terminated, truncated, rewards = terminated + out[2].sum(), truncated + out[3].sum(), rewards + out[1].sum()
        if hasattr(batch.games.game, "ramp_index"):
            ramp = max(ramp, int(batch.games.game.ramp_index.max()))
    assert (terminated > 0 or need_trunc) and rewards > 0
    assert truncated > 0 or not need_trunc
    if case in ("asterix-dodge", "seaquest-dive"):
        assert ramp >= 4  # the spawn and move intervals were both lowered, more than once
    assert not bool(getattr(batch.games.game, "overflow", torch.zeros(1)).any())  # Seaquest's lists fitted
    for env in envs:
        env.close()


def test_asterix_ramps_to_its_fastest_exactly():
    """Start every game late in its difficulty ramp (written into both minatar's games and the batched ones), so
    the last steps of the ramp (intervals reaching 1, the ramp switching off) are compared too."""
    seeds, num_envs = [8, 9], 4
    envs, obs = _gym("MinAtar/Asterix-v1", num_envs, seeds)
    batch = BatchedMinAtar(env_id="MinAtar/Asterix-v1", num_envs=num_envs, env_seeds=seeds)
    batch.reset()
    game = batch.games.game
    for i, (spawn, move, index, timer) in enumerate([(3, 2, 7, 5), (2, 2, 8, 0), (2, 1, 9, 3), (4, 3, 5, 1)] * 2):
        raw = envs[i // num_envs].envs[i % num_envs].unwrapped.game.env
        raw.spawn_speed, raw.move_speed, raw.ramp_index, raw.ramp_timer = spawn, move, index, timer
        raw.spawn_timer, raw.move_timer = min(raw.spawn_timer, spawn), min(raw.move_timer, move)
        for name in ("spawn_speed", "move_speed", "ramp_index", "ramp_timer", "spawn_timer", "move_timer"):
            getattr(game, name)[i] = getattr(raw, name)
    rng = np.random.default_rng(3)
    lowest = 10
    for _ in range(1500):
        actions = _dodge(rng, obs, 5)
        out = _gym_step(envs, actions)
        _same(out, batch.step(actions)[:4])
        obs = out[0]
        live = ~batch.games.prev_done
        lowest = min(lowest, int(torch.where(live, game.spawn_speed + game.move_speed, 10).min()))
    assert lowest == 2  # some game reached spawn and move intervals of 1


def _aim(rng, obs, n):
    """Space Invaders (minimal actions n, l, r, f): fire under the nearest column of aliens, else move there."""
    s, e = obs.shape[:2]
    flat = np.asarray(obs).reshape(s * e, 10, 10, -1).astype(bool)
    pos = flat[:, 9, :, 0].argmax(1)
    target = np.where(flat[..., 1].any(1), np.abs(np.arange(10) - pos[:, None]), 99).argmin(1)
    act = np.where(target == pos, 3, np.where(target < pos, 1, 2))
    return np.where(rng.random(act.shape) < 0.1, rng.integers(0, n, act.shape), act).reshape(s, e)


def test_space_invaders_waves_and_ramp_exactly():
    """Start every game with one alien left, just above the cannon (written into both minatar's games and the
    batched ones), so the wave is cleared at once, a new one appears and, with a move interval of 7 (half the
    games), the difficulty ramps to the floor of 6 (the other half start at the floor: no ramp)."""
    seeds, num_envs = [8, 9], 4
    envs, obs = _gym("MinAtar/SpaceInvaders-v1", num_envs, seeds)
    batch = BatchedMinAtar(env_id="MinAtar/SpaceInvaders-v1", num_envs=num_envs, env_seeds=seeds)
    batch.reset()
    game = batch.games.game
    for i in range(len(seeds) * num_envs):
        raw = envs[i // num_envs].envs[i % num_envs].unwrapped.game.env
        raw.alien_map[:] = 0
        raw.alien_map[8, raw.pos] = 1
        raw.enemy_move_interval, raw.alien_move_timer = 6 + i % 2, 9
        game.aliens[i] = torch.from_numpy(raw.alien_map.astype(bool))
        game.move_interval[i], game.alien_move_timer[i] = raw.enemy_move_interval, 9
    rng, ramped, floor, cleared = np.random.default_rng(3), 0, 0, np.zeros((2, 4))
    for t in range(1000):
        actions = _aim(rng, obs, 4)
        out = _gym_step(envs, actions)
        _same(out, batch.step(actions)[:4])
        obs = out[0]
        if t < 8:
            cleared += out[1]
        ramped = max(ramped, int(game.ramp_index.max()))
        floor = max(floor, int(((game.move_interval == 6) & (game.aliens.flatten(1).sum(1) == 24)).sum()))
    assert cleared.min() >= 1 and ramped == 1 and floor == 8  # all cleared; half ramped, all at the floor


def test_seaquest_surfacing_with_divers_exactly():
    """Start every game one row below the surface with 6 divers (or 1, 5) and some oxygen (written into both
    minatar's games and the batched ones), then surface: the oxygen bonus, minatar's -1 divers after a full
    load, and the pick-up cap on the way, all compared."""
    seeds, num_envs = [8, 9], 4
    envs, obs = _gym("MinAtar/Seaquest-v1", num_envs, seeds)
    batch = BatchedMinAtar(env_id="MinAtar/Seaquest-v1", num_envs=num_envs, env_seeds=seeds)
    batch.reset()
    game = batch.games.game
    for i, (divers, oxygen) in enumerate([(6, 200), (6, 37), (6, 1), (5, 120), (1, 60), (6, 0), (6, 199), (5, 9)]):
        raw = envs[i // num_envs].envs[i % num_envs].unwrapped.game.env
        raw.diver_count, raw.oxygen, raw.sub_y, raw.surface = divers, oxygen, 1, False
        game.divers[i], game.oxygen[i], game.sub_y[i], game.surface[i] = divers, oxygen, 1, False
        obs[i // num_envs, i % num_envs] = raw.state()
    rng, bonus, minus = np.random.default_rng(4), 0, 0
    for t in range(800):
        actions = np.full((2, num_envs), 2) if t == 0 else _dive(rng, obs, 6)
        out = _gym_step(envs, actions)
        _same(out, batch.step(actions)[:4])
        obs = out[0]
        bonus += int((out[1] > 1).sum())
        minus += int((game.divers < 0).sum())
    assert bonus >= 2 and minus > 0  # oxygen 200 and 199 give +10 and +9


@pytest.mark.parametrize("env_id", DEFAULT_IDS)
def test_seed_envs_fast_equals_gymnasium(env_id):
    """Through `SeedEnvs`: every field of `EnvStep` equal, with its dtype, device, shape and memory layout."""
    seeds = [4, 0, 99]
    slow, fast = (SeedEnvs(env_id, num_envs=5, env_seeds=seeds, device=CPU, fast=f) for f in (False, True))
    assert slow.batched is None and isinstance(fast.batched, BatchedMinAtar)
    (obs, _), (obs_fast, _) = slow.reset(), fast.reset()
    assert obs.stride() == obs_fast.stride() and torch.equal(obs, obs_fast)
    rng, n = np.random.default_rng(5), int(slow.single_action_space.n)
    for _ in range(600):
        actions = torch.from_numpy(rng.integers(0, n, (3, 5)))
        a, b = slow.step(actions), fast.step(actions)
        for field in ("obs", "reward", "terminated", "truncated", "valid"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x.dtype, x.device, x.shape, x.stride()) == (y.dtype, y.device, y.shape, y.stride()), field
            assert torch.equal(x, y), field
        assert np.array_equal(a.ended, b.ended) and a.labels is None and b.labels is None
        for x, y in zip(a.finished_returns + a.finished_lengths, b.finished_returns + b.finished_lengths,
                        strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    # a second reset of the same objects (the sticky action's memory survives it, in minatar too)
    (obs, _), (obs_fast, _) = slow.reset(reseed=3), fast.reset(reseed=3)
    assert torch.equal(obs, obs_fast)
    for _ in range(200):
        actions = torch.from_numpy(rng.integers(0, n, (3, 5)))
        a, b = slow.step(actions), fast.step(actions)
        assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward) and np.array_equal(a.ended, b.ended)


@pytest.mark.parametrize("env_id", IDS)
def test_checkpoint_resume_continues_bitwise(env_id):
    """get_state mid-run, through torch.save/load (weights_only), into a freshly made and reset env."""
    seeds, rng = [2, 3], np.random.default_rng(0)
    env = BatchedMinAtar(env_id=env_id, num_envs=4, env_seeds=seeds)
    env.reset()
    n = int(env.single_action_space.n)
    for _ in range(777):  # past a stream refill
        env.step(rng.integers(0, n, (2, 4)))
    buffer = io.BytesIO()
    torch.save(as_tensors(env.get_state()), buffer)
    buffer.seek(0)
    other = BatchedMinAtar(env_id=env_id, num_envs=4, env_seeds=seeds)
    other.reset()
    other.set_state(torch.load(buffer, weights_only=True))
    for _ in range(900):
        actions = rng.integers(0, n, (2, 4))
        for x, y in zip(env.step(actions)[:4], other.step(actions)[:4], strict=True):
            assert np.array_equal(x, y)
    with pytest.raises(ValueError, match="does not fit"):
        BatchedMinAtar(env_id=env_id, num_envs=3, env_seeds=seeds).set_state(env.get_state())


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("exact", [True, False])
def test_seed_alone_equals_seed_in_batch(env_id, exact):
    seeds = [5, 6, 2**31]
    batch = BatchedMinAtar(env_id=env_id, num_envs=3, env_seeds=seeds, exact=exact)
    alone = BatchedMinAtar(env_id=env_id, num_envs=3, env_seeds=seeds[1:2], exact=exact)
    assert np.array_equal(batch.reset()[0][1], alone.reset()[0][0])
    rng = np.random.default_rng(1)
    for _ in range(500):
        actions = rng.integers(0, int(batch.single_action_space.n), (3, 3))
        for x, y in zip(batch.step(actions)[:4], alone.step(actions[1:2])[:4], strict=True):
            assert np.array_equal(x[1], y[0])


def test_random_state_streams_are_numpys_draws():
    seeds = [0, 1, 2**32 - 1]
    streams = RandomStateStreams(seeds=seeds, chunk=64)  # small: refills often
    reference = [np.random.RandomState(s) for s in seeds]
    rng = np.random.default_rng(0)
    for _ in range(600):
        mask = torch.from_numpy(rng.random(3) < 0.7)
        kind = rng.random()
        if kind < 0.2:  # Freeway's rand(8)
            got = streams.rand_n(8, mask)
            want = [rs.rand(8).tolist() if m else None for rs, m in zip(reference, mask.tolist(), strict=True)]
        elif kind < 0.4:  # Freeway's randint(1, 6, 8)
            got = streams.randint_n(5, 8, mask) + 1
            want = [rs.randint(1, 6, 8).tolist() if m else None for rs, m in zip(reference, mask.tolist(),
                                                                                strict=True)]
        elif kind < 0.7:
            got = streams.rand(mask)
            want = [rs.rand() if m else None for rs, m in zip(reference, mask.tolist(), strict=True)]
        else:
            high = torch.from_numpy(rng.integers(1, 9, 3))
            got = streams.randint(high, mask)
            want = [rs.randint(h) if m else None for rs, h, m in zip(reference, high.tolist(), mask.tolist(),
                                                                       strict=True)]
        for g, w in zip(got.tolist(), want, strict=True):
            assert w is None or g == w


def test_counter_streams_are_uniform_and_keyed():
    streams = CounterStreams(keys=range(4000), device=CPU)
    everyone = torch.ones(4000, dtype=torch.bool)
    u = torch.cat([streams.rand(everyone) for _ in range(25)])
    assert u.dtype == torch.float64 and 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.003 and abs(float(u.var()) - 1 / 12) < 0.002
    k = torch.cat([streams.randint(torch.full((4000,), 5), everyone) for _ in range(25)])
    assert torch.bincount(k, minlength=5).tolist() == pytest.approx([20000] * 5, rel=0.03)
    one, many = CounterStreams(keys=[17], device=CPU), CounterStreams(keys=[3, 17], device=CPU)
    assert one.rand(torch.tensor([True])).item() == many.rand(torch.tensor([True, True]))[1].item()


def _counter_games(env_id, device, num=48):
    streams = make_streams(env_seeds=[0, 1, 2], num_envs=num // 3, device=device, exact=False)
    games = make_games(env_id, num=num, streams=streams, device=device, env_kwargs=dict(max_episode_steps=120))
    return games, games.reset()


@pytest.mark.parametrize("env_id", IDS)
def test_step_on_counter_streams_never_syncs_with_the_host(env_id):
    games, _ = _counter_games(env_id, CPU)
    actions = torch.randint(0, len(games.action_set), (300, 48), generator=torch.Generator().manual_seed(0))
    ended = torch.zeros(48, dtype=torch.int64)
    with NoHostSync():
        for a in actions:
            _, _, terminated, truncated = games.step(a)
            ended += terminated | truncated
    assert int(ended.sum()) > 10  # resets happened inside the forbidden region
    exact = make_games(env_id, num=6, device=CPU,
                       streams=make_streams(env_seeds=[0, 1], num_envs=3, device=CPU, exact=True))
    exact.reset()
    with NoHostSync(), pytest.raises(HostSync):  # the check does catch a host sync: the exact stream has some
        for _ in range(1000):
            exact.step(torch.zeros(6, dtype=torch.int64))
    for sync in (lambda x: x.sum().item(), lambda x: x[x > 0], lambda x: x.nonzero(), lambda x: x.to("cpu"),
                 lambda x: [0, 1][x[0]], lambda x: bool(x.any())):
        with NoHostSync(), pytest.raises(HostSync):
            sync(torch.arange(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("env_id", IDS)
def test_cuda_games_equal_cpu_games_without_syncs(env_id):
    """Counter streams give the same numbers on either device, so the CUDA games must equal the CPU ones; and
    under ``set_sync_debug_mode("error")`` no step may synchronise."""
    cuda = torch.device("cuda")
    (cpu_games, cpu_obs), (gpu_games, gpu_obs) = _counter_games(env_id, CPU), _counter_games(env_id, cuda)
    assert torch.equal(cpu_obs, gpu_obs.cpu())
    actions = torch.randint(0, len(cpu_games.action_set), (400, 48), generator=torch.Generator().manual_seed(0))
    gpu_actions = actions.to(cuda)
    outs = []
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for a in gpu_actions:
            outs.append(gpu_games.step(a))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for a, gpu_out in zip(actions, outs, strict=True):
        for x, y in zip(cpu_games.step(a), gpu_out, strict=True):
            assert torch.equal(x, y.cpu())


def test_supports():
    assert all(supports(i) for i in DEFAULT_IDS) and supports("MinAtar/Breakout-v0")
    assert not supports("MinAtar/Seaquest-v1")  # batched, but slower than gymnasium on the CPU: not by default
    assert SeedEnvs("MinAtar/Seaquest-v1", num_envs=2, env_seeds=[0], device=CPU).batched is None
    assert supports("MinAtar/Asterix-v1", dict(sticky_action_prob=0.0, difficulty_ramping=False,
                                               max_episode_steps=100, use_minimal_action_set=False))
    assert not supports("MinAtar/Breakout-v1", dict(render_mode="rgb_array"))
    assert not supports("MinAtar/Breakout-v1", dict(max_episode_steps=0))
    assert not supports("MinAtar/Breakout-v1", dict(difficulty_ramping=1))
    assert not supports("MinAtar/Breakout-v2") and not supports("MinAtar/Pong-v1")
    assert SeedEnvs("MinAtar/Breakout-v1", num_envs=2, env_seeds=[0], device=CPU).batched is not None
    assert SeedEnvs("MinAtar/Breakout-v1", num_envs=2, env_seeds=[0], device=CPU, fast=False).batched is None


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"])
def test_training_with_batched_minatar_is_bitwise_the_same(env_id, monkeypatch):
    cfg = al.TrainConfig(env_id=env_id, algo="ppo", seeds=(0, 1), total_steps=1024, num_envs=4, rollout_steps=128)
    runs = []
    for fast in ("0", "1"):
        monkeypatch.setenv("ACPG_LAB_FAST_ENVS", fast)
        runs.append(al.train(cfg, progress=False))
    slow, fast = runs
    pd.testing.assert_frame_equal(slow.history.drop(columns="time"), fast.history.drop(columns="time"),
                                  check_exact=True)
    for (name, x), (_, y) in zip(slow.model.state_dict().items(), fast.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "0")
    slow_eval = slow.evaluate(episodes=3)
    monkeypatch.setenv("ACPG_LAB_FAST_ENVS", "1")
    pd.testing.assert_frame_equal(slow_eval, fast.evaluate(episodes=3), check_exact=True)


@pytest.mark.parametrize("shape", [(3, 5, 10, 10, 4), (2, 7, 10, 10, 6), (1, 1, 10, 10, 10), (2, 3, 6, 9, 2)])
def test_conv_patches_are_unfold_value_for_value(shape):
    """`acpg_lab.networks.conv_patches` (the MinAtar CNN's patch array, nine slice copies) is ``F.unfold``'s
    layout bit for bit, so the CNN computes what it computed with ``F.unfold`` (stored MinAtar runs stay valid)."""
    from torch.nn import functional as F  # noqa: N812

    from acpg_lab.networks import conv_patches

    obs = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    s, b, h, w, _ = shape
    unfolded = F.unfold(obs.reshape(s * b, h, w, -1).permute(0, 3, 1, 2), kernel_size=3)
    assert torch.equal(conv_patches(obs), unfolded.transpose(1, 2).reshape(s, b * (h - 2) * (w - 2), -1))


def test_conv_patches_reused_only_for_the_same_unchanged_tensor():
    from acpg_lab.networks import conv_patches

    obs = torch.rand(2, 3, 10, 10, 4)
    first = conv_patches(obs)
    assert conv_patches(obs) is first  # the critic's CNN reads the actor's observations: computed once
    obs[0, 0, 0, 0, 0] = 5.0  # an in-place write: recomputed
    changed = conv_patches(obs)
    assert changed is not first and changed[0, 0, 0] == 5.0
    copy = obs.clone()
    assert conv_patches(copy) is not changed and torch.equal(conv_patches(copy), changed)


def test_minatar_cnn_equals_its_unfold_formulation():
    """The CNN's convolution on the transposed patch array computes the products of the ``F.unfold`` layout (bit
    for bit on the Intel AVX-512 machine where it was measured; to float32 rounding asserted here)."""
    from torch.nn import functional as F  # noqa: N812

    from acpg_lab.networks import MinAtarCNN

    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    cnn = MinAtarCNN((10, 10, 4), (64,), "tanh", gens)
    obs = (torch.rand(3, 40, 10, 10, 4, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    patches = F.unfold(obs.reshape(120, 10, 10, 4).permute(0, 3, 1, 2), kernel_size=3).transpose(1, 2)
    z = cnn.conv(patches.reshape(3, 40 * 64, 36))
    h, preacts = cnn(obs)
    torch.testing.assert_close(preacts[0], z.reshape(3, 40, -1), rtol=0, atol=1e-6)
