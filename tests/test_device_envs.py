"""The device-resident environments (`acpg_lab.batched_envs.device`) and the device path of `SeedEnvs` and the
rollout, on the CPU (the same code runs on CUDA: ``tests/test_cuda.py``).

- Dynamics against the numpy batched environments (themselves bitwise gymnasium), in float64, step for step over
  9,000-36,000 transitions per id with terminations, truncations and NEXT_STEP resets occurring (counted): the
  device env is driven by the numpy env's states (each step starts from the numpy state, since the random reset
  states differ by design), and its rewards, flags, step counters, reset masks and labels must be equal bit for
  bit. The next states and observations of CartPole and Acrobot must agree to ``rtol=1e-12``: numpy's cos/sin
  (libm) and torch's differ by one ulp in ~0.2% of float64 arguments and Acrobot squares by ``pow`` in numpy,
  so the bits cannot be the same everywhere; one step amplifies a 1-ulp difference (2e-16) by less than 10^2 (the
  largest relative difference seen is reported by the test), so 1e-12 is loose by 10^2 and still catches any
  wrong term. Most elements are bitwise equal and the test checks that they are (>= 95%). The known-optimal
  environments use only tables and integer/float32 arithmetic: bitwise everywhere.
- Random streams: a seed alone equals the seed in a batch (bitwise), and the counter streams equal a pure-Python
  SplitMix64 (so every device computes the same numbers: wrapping int64 arithmetic is the same everywhere).
- `SeedEnvs(resident=True)` against the host path over the *same* device env (numpy view of it): every `EnvStep`
  field and the finished episodes equal; `collect_rollout` on the device path equals the host path's rollout and
  runs under `NoHostSync` (no read of the device inside a rollout; the episodes are read once, afterwards).
- Checkpoint continuation, bad input, and that PPO learns CartPole on the device path.
"""

import numpy as np
import pytest
import torch
from _sync import HostSync, NoHostSync
from test_batched_envs import _pump, _random

import acpg_lab as al
from acpg_lab import training
from acpg_lab.batched_envs import BatchedEnv, make_batched_env
from acpg_lab.batched_envs.device import make_device_env, supports_device
from acpg_lab.batched_envs.minatar.streams import CounterStreams
from acpg_lab.envs import SeedEnvs, resolve_env_id
from acpg_lab.rollout import EpisodeLog, Rollout

CPU = torch.device("cpu")
SEEDS = [0, 7, 2**31 + 5]
KNOWN = ["acpg_lab/ActionBandit-v0", "acpg_lab/ActionBandit-zipf-v0", "acpg_lab/IdealGrid-v0",
         "acpg_lab/IdealGrid-fixedstart-v0", "acpg_lab/ShiftingBandit-v0"]


def _wobbly_balance(rng, obs, n):
    """Keeps CartPole up, with 40% random actions: some episodes reach the time limit of 100, some fall."""
    act = (obs[..., 2] + 0.5 * obs[..., 3] > 0).astype(np.int64)
    return np.where(rng.random(act.shape) < 0.4, rng.integers(0, n, act.shape), act)


def _pair(env_id, env_kwargs, num_envs=8):
    host = make_batched_env(env_id, num_envs, SEEDS, env_kwargs)
    dev = make_device_env(env_id, num_envs=num_envs, env_seeds=SEEDS, device=CPU, env_kwargs=env_kwargs)
    obs, _ = host.reset()
    dev.reset()
    return host, dev, obs


CLASSIC = [("CartPole-v1", dict(max_episode_steps=100), _wobbly_balance, 1500, 1e-12),
           ("CartPole-v1", dict(sutton_barto_reward=True, max_episode_steps=20), _random, 1500, 1e-12),
           ("Acrobot-v1", dict(max_episode_steps=150), _pump, 1500, 1e-12)]


@pytest.mark.parametrize(("env_id", "env_kwargs", "policy", "steps", "rtol"), CLASSIC)
def test_classic_dynamics_equal_numpy_in_float64(env_id, env_kwargs, policy, steps, rtol):
    host, dev, obs = _pair(env_id, env_kwargs)
    rng = np.random.default_rng(0)
    n = host.single_action_space.n
    counts, same, total, worst = dict(terminated=0, truncated=0, resets=0), 0, 0, 0.0
    for _ in range(steps):
        dev.state = torch.from_numpy(host.state.copy())  # start from the numpy state (reset states differ)
        reset = host.prev_done.copy()
        action = policy(rng, obs, n)
        obs, reward, terminated, truncated, _ = host.step(action)
        d_obs, d_reward, d_terminated, d_truncated, _ = dev.step(torch.from_numpy(action))
        assert torch.equal(d_reward, torch.from_numpy(reward.astype(np.float64)))
        assert torch.equal(d_terminated, torch.from_numpy(terminated))
        assert torch.equal(d_truncated, torch.from_numpy(truncated))
        assert torch.equal(dev.steps, torch.from_numpy(host.steps.astype(np.int64)))
        assert torch.equal(dev.prev_done, torch.from_numpy(host.prev_done))
        live = torch.from_numpy(~reset)
        want = torch.from_numpy(host.state)[:, live]
        got = dev.state[:, live]
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * 1e-2)
        same += int((got == want).sum())
        total += got.numel()
        worst = max(worst, float(((got - want).abs() / want.abs().clamp_min(1e-300)).max()) if got.numel() else 0)
        torch.testing.assert_close(d_obs[live.view(d_obs.shape[:2])], torch.from_numpy(obs)[live.view(obs.shape[:2])],
                                   rtol=1e-6, atol=1e-7)  # float32 casts of states 1e-12 apart: one float32 ulp
        dev.state = torch.from_numpy(host.state.copy())  # the reset states, to compare the reset observations
        torch.testing.assert_close(dev.observe()[0], torch.from_numpy(obs), rtol=1e-6, atol=1e-7)
        counts["terminated"] += int(terminated.sum())
        counts["truncated"] += int(truncated.sum())
        counts["resets"] += int(reset.sum())
    print(env_id, counts, f"bitwise equal {same / total:.4f}, worst relative difference {worst:.2e}")
    assert min(counts.values()) >= 20, counts
    assert same / total >= 0.95


@pytest.mark.parametrize("env_id", KNOWN)
def test_known_optimal_envs_equal_numpy_bitwise(env_id):
    resolve_env_id(env_id)
    kwargs = dict(shift_every=40) if "Shifting" in env_id else None
    host, dev, obs = _pair(env_id, kwargs)
    rng = np.random.default_rng(1)
    counts = dict(ended=0, resets=0)
    phases = set()
    for _ in range(800):
        dev.states = torch.from_numpy(host.states.copy())
        reset = host.prev_done.copy()
        action = _random(rng, obs, host.single_action_space.n)
        obs, reward, terminated, truncated, new_labels = host.step(action)
        d_obs, d_reward, d_terminated, d_truncated, d_labels = dev.step(torch.from_numpy(action))
        assert torch.equal(d_reward, torch.from_numpy(reward.astype(np.float64)))
        assert torch.equal(d_terminated, torch.from_numpy(terminated))
        assert torch.equal(d_truncated, torch.from_numpy(truncated))
        assert torch.equal(dev.prev_done, torch.from_numpy(host.prev_done))
        if not dev.bandit:  # the grid moves deterministically: every live environment's state is the same
            live = torch.from_numpy(~reset)
            assert torch.equal(dev.states[live], torch.from_numpy(host.states)[live])
        dev.states = torch.from_numpy(host.states.copy())
        d_obs, d_labels = dev.observe()
        assert torch.equal(d_obs, torch.from_numpy(obs)) and torch.equal(d_labels, torch.from_numpy(new_labels))
        counts["ended"] += int((terminated | truncated).sum())
        counts["resets"] += int(reset.sum())
        phases.add(None if host.schedule is None else host.schedule.phase(host.clock))
    print(env_id, counts)
    assert counts["ended"] >= 20 and counts["resets"] >= 20, counts
    if "Shifting" in env_id:
        assert len(phases) == 21  # the optimal actions moved every 40 steps, and the device env's labels with them


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "acpg_lab/IdealGrid-v0", "MinAtar/Breakout-v1",
                                    "MinAtar/Seaquest-v1"])
def test_a_seed_alone_equals_the_seed_in_a_batch(env_id):
    resolve_env_id(env_id)
    alone = make_device_env(env_id, num_envs=4, env_seeds=[7], device=CPU)
    batch = make_device_env(env_id, num_envs=4, env_seeds=[3, 7, 11], device=CPU)
    n = alone.single_action_space.n
    outs = [alone.reset(), batch.reset()]
    ended = 0
    for t in range(520):  # past Acrobot's time limit of 500
        action = torch.arange(12).reshape(3, 4).add(t * 7 // 3) % n
        a, b = alone.step(action[1:2]), batch.step(action)
        for x, y in zip(a, b, strict=True):
            assert (x is None and y is None) or torch.equal(x[0], y[1])
        ended += int(a[2].sum() + a[3].sum())
    assert ended >= 2 and outs[0][0].shape[1:] == outs[1][0].shape[1:]


def _splitmix64(x):
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_counter_streams_equal_a_pure_python_splitmix64():
    """Wrapping int64 arithmetic is the same on every device: equal to Python's unbounded integers masked to 64
    bits here, so CUDA (checked in test_cuda.py) computes these very numbers."""
    keys = [0, 1, (7 << 32) + 3, ((2**31 + 5) << 32) + 7, 2**64 - 1]
    streams = CounterStreams(keys=keys, device=CPU)
    everyone = torch.ones(len(keys), dtype=torch.bool)
    for k in range(5):
        got = streams.rand(everyone)
        want = [(_splitmix64((_splitmix64(key % 2**64) + k * 0x9E3779B97F4A7C15) % 2**64) >> 11) / 2**53
                for key in keys]
        assert got.tolist() == want


class _HostView(BatchedEnv):
    """A device env seen through the numpy `BatchedEnv` interface: the host path of `SeedEnvs` over the very
    same environments, to compare the two paths' bookkeeping."""

    def __init__(self, dev):
        self.dev = dev
        super().__init__(dev.num_envs, dev.env_seeds, dev.max_episode_steps, dev.single_observation_space,
                         dev.single_action_space)

    def reset(self):
        self.dev.env_seeds = self.env_seeds
        obs, labels = self.dev.reset()
        return obs.numpy(), None if labels is None else labels.numpy()

    def step(self, actions):
        out = self.dev.step(torch.from_numpy(np.asarray(actions)))
        return tuple(None if x is None else x.numpy() for x in out)


def _both_paths(env_id, num_envs=6, seeds=(0, 1, 2), env_kwargs=None):
    """Two `SeedEnvs` over equal device envs: the resident path, and the host path through `_HostView`."""
    resolve_env_id(env_id)
    kw = dict(num_envs=num_envs, env_seeds=list(seeds), device=CPU, env_kwargs=env_kwargs)
    resident = SeedEnvs(env_id, resident=True, **kw)
    host = SeedEnvs(env_id, **kw)
    host.batched = _HostView(make_device_env(env_id, device=CPU, **{k: v for k, v in kw.items() if k != "device"}))
    host.envs = [host.batched]
    return resident, host


@pytest.mark.parametrize("env_id", ["CartPole-v1", "acpg_lab/ActionBandit-v0", "MinAtar/Breakout-v1"])
def test_resident_seed_envs_equal_the_host_path_over_the_same_envs(env_id):
    resident, host = _both_paths(env_id)
    assert resident.resident and not host.resident
    a, b = resident.reset(), host.reset()
    assert torch.equal(a[0], b[0])
    n = resident.single_action_space.n
    gen = torch.Generator().manual_seed(0)
    ended, returns = [], [[] for _ in range(3)]
    for _ in range(1500):
        action = torch.randint(0, n, (3, 6), generator=gen)
        x, y = resident.step(action), host.step(action)
        for field in ("obs", "reward", "terminated", "truncated", "valid", "labels"):
            u, v = getattr(x, field), getattr(y, field)
            assert (u is None and v is None) or (u.dtype == v.dtype and torch.equal(u, v)), field
        assert np.array_equal(x.ended.numpy(), y.ended)
        ended.append((x.ended, x.finished_returns, x.finished_lengths))
        for s in range(3):
            returns[s].append(y.finished_returns[s])
    log = EpisodeLog(*(torch.stack(z) for z in zip(*ended, strict=True)))
    got, _ = log.per_seed()
    for s in range(3):
        assert np.array_equal(got[s], np.concatenate(returns[s]))
    assert sum(len(g) for g in got) >= 30
    assert torch.equal(resident.ep_return, torch.from_numpy(host.ep_return))


def _collector(env_id, resident, seeds=(0, 1, 2), **overrides):
    """A function collecting one rollout into a `Rollout` (returned with it), on the resident or the host path."""
    cfg = al.TrainConfig(env_id=env_id, seeds=seeds, device="cpu", total_steps=4096, **overrides).resolve()
    envs = _both_paths(env_id, num_envs=cfg.num_envs, seeds=seeds, env_kwargs=cfg.env_kwargs)[0 if resident else 1]
    obs_shape, k = envs.single_observation_space.shape, int(envs.single_action_space.n)
    model = training.build_model(cfg, obs_shape, k)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    rollout = Rollout.allocate(cfg, obs_shape, k, CPU, *envs.reset())
    return (lambda: training.collect_rollout(model, envs, rollout, gens, cfg)), rollout


COLLECT = [("CartPole-v1", dict(pfo_coef=1.0)), ("acpg_lab/IdealGrid-v0", dict(algo="a2c")),
           ("acpg_lab/ShiftingBandit-v0", dict(env_kwargs=dict(shift_every=50))),  # label uploads inside
           ("MinAtar/Breakout-v1", dict(rollout_steps=64))]


@pytest.mark.parametrize(("env_id", "overrides"), COLLECT)
def test_collect_rollout_on_the_device_path_never_syncs_and_equals_the_host_path(env_id, overrides):
    (resident, a), (host, b) = (_collector(env_id, r, **overrides) for r in (True, False))
    episodes = 0
    for _ in range(3):
        with NoHostSync():
            resident()
        host()
        for name in ("obs", "actions", "logp", "logits", "rewards", "terminated", "truncated", "valid", "values",
                     "labels", "next_obs", "preacts"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or torch.equal(x, y), name
        assert isinstance(a.episodes, EpisodeLog)  # still on the device until first read
        for x, y in zip(a.episode_returns + a.episode_lengths, b.episode_returns + b.episode_lengths, strict=True):
            assert np.array_equal(x, y)
        episodes += sum(len(x) for x in a.episode_returns)
    assert episodes >= 3
    with NoHostSync(), pytest.raises(HostSync):  # the check catches the host path's reads
        host()


def test_resident_state_continues_exactly_after_restore():
    kw = dict(num_envs=4, env_seeds=[0, 1], device=CPU)
    for env_id in ("Acrobot-v1", "acpg_lab/ShiftingBandit-v0", "MinAtar/Asterix-v1"):
        resolve_env_id(env_id)
        a, b = SeedEnvs(env_id, resident=True, **kw), SeedEnvs(env_id, resident=True, **kw)
        a.reset()
        b.reset()
        n = a.single_action_space.n
        actions = torch.randint(0, n, (300, 2, 4), generator=torch.Generator().manual_seed(0))
        for act in actions[:150]:
            a.step(act)
        b.set_state(a.get_state())
        for act in actions[150:]:
            x, y = a.step(act), b.step(act)
            assert torch.equal(x.obs, y.obs) and torch.equal(x.finished_returns, y.finished_returns), env_id
        with pytest.raises(ValueError, match="device-resident"):
            SeedEnvs(env_id, **kw).set_state(a.get_state())


def test_bad_input_is_refused_naming_it():
    assert not supports_device("LunarLander-v3") and supports_device("MinAtar/Seaquest-v1")
    with pytest.raises(ValueError, match="LunarLander-v3"):
        SeedEnvs("LunarLander-v3", num_envs=2, env_seeds=[0], device=CPU, resident=True)
    kw = dict(num_envs=2, env_seeds=[0], resident=None)  # None: resident where the device is not the CPU
    assert not SeedEnvs("CartPole-v1", device=CPU, **kw).resident
    meta = torch.device("meta")  # a stand-in for a GPU: tensors without data
    assert SeedEnvs("CartPole-v1", device=meta, **kw).resident
    assert SeedEnvs("MinAtar/Seaquest-v1", device=meta, **kw).resident  # every game, on a device
    assert not SeedEnvs("CartPole-v1", device=meta, fast=False, **kw).resident  # gymnasium was asked for
    assert not SeedEnvs("MountainCar-v0", device=meta, **kw).resident  # no device version: the host path
    dev = make_device_env("CartPole-v1", num_envs=2, env_seeds=[0], device=CPU)
    dev.reset()
    with pytest.raises(ValueError, match="meta"):
        dev.step(torch.zeros(1, 2, dtype=torch.int64, device="meta"))
    state = dev.get_state()
    state["state"] = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="state of shape"):
        dev.set_state(state)


@pytest.mark.slow
def test_ppo_learns_cartpole_on_the_device_path(monkeypatch):
    """The device path trains (CartPole PPO, 3 seeds, 40k steps each; ~20 s): every seed's first rollout scores
    10-40 (an untrained policy), and its greedy policy, evaluated on the exact (gymnasium-equal) environments,
    returns at least 400 on average over 10 episodes (measured: 500 for each seed)."""
    made = []

    def resident_envs(*args, **kwargs):
        made.append(SeedEnvs(*args, **{**kwargs, "resident": True}))
        return made[-1]

    monkeypatch.setattr(training, "SeedEnvs", resident_envs)
    run = al.train(al.TrainConfig(env_id="CartPole-v1", seeds=(0, 1, 2), device="cpu", total_steps=40_000),
                   progress=False)
    first = run.history.groupby("seed").episode_return.first()
    monkeypatch.undo()
    ev = run.evaluate(episodes=10)
    print(first.tolist(), ev.return_mean.tolist())
    assert len(made) == 1 and made[0].resident
    assert (first < 50).all() and (ev.return_mean >= 400).all(), (first, ev)
