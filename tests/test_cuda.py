"""The CUDA path: the same code trains, diagnoses, saves and evaluates on a GPU. Skipped where torch sees none.

The bitwise guarantees (a seed alone = the seed in a batch; the same config twice = the same history) are CPU
guarantees: on a GPU, batched matmuls take batch-size-dependent kernels and action sampling draws from CUDA
generators, so trajectories differ from the CPU's. What must hold on the GPU is checked here to float32
tolerance: the losses and diagnostics of one model on one batch equal the CPU's, and one seed's first update does
not depend on its batch-mates beyond rounding.

Training on a GPU steps the device-resident environments (`acpg_lab.batched_envs.device`): checked here to step
and collect rollouts under ``torch.cuda.set_sync_debug_mode("error")``, to equal their CPU runs (bitwise, or to
rtol 1e-12 where CUDA's cos/sin round differently), and to learn.
"""

import contextlib

import numpy as np
import pytest
import torch

import acpg_lab as al
from acpg_lab.batched_envs.device import make_device_env
from acpg_lab.envs import resolve_env_id
from acpg_lab.training import Batch, _setup, collect_rollout, loss_fn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

KW = dict(env_id="CartPole-v1", total_steps=2048, diagnostics_every=1, snapshot_every=4, pfo_coef=1.0)


def test_training_with_every_instrument_runs_on_the_gpu(tmp_path):
    run = al.train(al.TrainConfig(seeds=(0, 1, 2), device="cuda", head="etf", **KW), progress=False)
    assert next(run.model.parameters()).is_cuda
    h = run.history
    for col in ("loss_policy", "loss_value", "loss_pfo", "approx_kl", "actor_srank", "ratio_below_mean", "nc1"):
        assert np.isfinite(h[col].dropna()).all() and h[col].notna().any(), col
    fresh = al.ActorCritic((4,), 2, (0, 1, 2), head="etf")
    assert torch.equal(run.model.actor.head.weight.cpu(), fresh.actor.head.weight)  # the ETF frame never trains
    assert (run.evaluate(episodes=2).return_mean > 0).all()
    assert run.rollout_states(steps=4, num_envs=2).is_cuda
    assert (run.plasticity(steps=5).plasticity_kl >= 0).all()
    loaded = al.Run.load(run.save(tmp_path / "run"), device="cpu")
    for (name, a), (_, b) in zip(run.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a.cpu(), b), name


def test_losses_and_diagnostics_match_the_cpu_on_the_same_batch():
    cfg = al.TrainConfig(seeds=(0, 1), device="cpu", **KW).resolve()
    model = al.ActorCritic((4,), 2, cfg.seeds)
    gen = torch.Generator().manual_seed(0)
    n = 64
    batch = Batch(obs=torch.randn(2, n, 4, generator=gen), actions=torch.randint(0, 2, (2, n), generator=gen),
                  logp=-torch.rand(2, n, generator=gen), advantages=torch.randn(2, n, generator=gen),
                  returns=torch.randn(2, n, generator=gen), mask=torch.ones(2, n),
                  preacts=torch.randn(2, n, 64, generator=gen))
    cpu_loss, cpu_stats = loss_fn(model, batch, cfg)
    gpu_batch = Batch(*(x.cuda() for x in batch))
    gpu_loss, gpu_stats = loss_fn(model.cuda(), gpu_batch, cfg)
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss, rtol=1e-4, atol=1e-5)
    for key, value in cpu_stats.items():
        torch.testing.assert_close(gpu_stats[key].cpu(), value, rtol=1e-4, atol=1e-5, msg=key)


def test_a_seed_first_update_does_not_depend_on_its_batch_beyond_rounding():
    kw = dict(KW, total_steps=256, snapshot_every=0)
    alone = al.train(al.TrainConfig(seeds=(7,), device="cuda", **kw), progress=False).history
    batched = al.train(al.TrainConfig(seeds=(5, 7, 9, 11), device="cuda", **kw), progress=False).history
    row = batched[batched.seed == 7].iloc[0]
    assert alone.iloc[0].episodes == row.episodes  # the same actions were sampled in the first rollout
    for col in ("loss_policy", "loss_value", "entropy", "actor_srank"):
        assert alone.iloc[0][col] == pytest.approx(row[col], rel=1e-4, abs=1e-5), col


# ----------------------------------------------------------------------------- the device-resident path (issue 25)
DEVICE_IDS = ["CartPole-v1", "Acrobot-v1", "acpg_lab/IdealGrid-v0", "acpg_lab/ShiftingBandit-v0",
              "MinAtar/Breakout-v1", "MinAtar/Seaquest-v1"]
SHIFTING = dict(shift_every=50)  # several shifts, so label uploads happen inside the checked region


@contextlib.contextmanager
def _sync_is_an_error():
    """``torch.cuda.set_sync_debug_mode("error")`` inside: any synchronising CUDA call raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _kwargs(env_id):
    resolve_env_id(env_id)
    return SHIFTING if "Shifting" in env_id else {}


@pytest.mark.parametrize("env_id", DEVICE_IDS)
def test_device_envs_step_on_cuda_without_syncs_as_on_the_cpu(env_id):
    """200 steps on CUDA under the sync check; then the same environments on the CPU given the same actions: the
    counter streams give the same numbers on both, so tables and integer games (known-optimal, MinAtar) are equal
    bit for bit; CartPole and Acrobot re-run from the CUDA side's states step by step (CUDA's cos/sin round
    differently from the CPU's) and agree to rtol 1e-12, their flags and rewards exactly."""
    cuda, kw = torch.device("cuda"), dict(num_envs=8, env_seeds=[0, 7, 2**31 + 5], env_kwargs=_kwargs(env_id))
    gpu, cpu = make_device_env(env_id, device=cuda, **kw), make_device_env(env_id, device="cpu", **kw)
    gpu_reset, cpu_reset = gpu.reset(), cpu.reset()
    n = gpu.single_action_space.n
    actions = torch.randint(0, n, (200, 3, 8), generator=torch.Generator().manual_seed(0))
    gpu_actions = actions.to(cuda)
    classic = hasattr(cpu, "state")
    outs, states = [], []  # states: each step's (start, end) on the GPU, for the classic envs
    with _sync_is_an_error():
        for a in gpu_actions:
            start = gpu.state.clone() if classic else None
            outs.append(gpu.step(a))
            states.append((start, gpu.state.clone() if classic else None))
    assert all(x is None or torch.equal(x.cpu(), y) for x, y in zip(gpu_reset, cpu_reset, strict=True))
    ended = 0
    for a, (start, end), gpu_out in zip(actions, states, outs, strict=True):
        if classic:
            cpu.state = start.cpu()
        cpu_out = cpu.step(a)
        for i, (x, y) in enumerate(zip(gpu_out, cpu_out, strict=True)):
            if x is None:
                assert y is None
            elif classic and i == 0:
                torch.testing.assert_close(x.cpu(), y, rtol=1e-6, atol=1e-7)  # float32 observations
            else:
                assert torch.equal(x.cpu(), y), i
        if classic:
            torch.testing.assert_close(end.cpu(), cpu.state, rtol=1e-12, atol=1e-14)
        ended += int(cpu_out[2].sum() + cpu_out[3].sum())
    assert ended >= 3 or env_id.startswith(("Acrobot", "acpg_lab/Shifting"))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "acpg_lab/ShiftingBandit-v0", "MinAtar/Breakout-v1"])
def test_training_on_cuda_collects_rollouts_without_syncs(env_id):
    """The training loop's environments on CUDA are the resident ones, and `collect_rollout` (policy, sampling,
    environment steps, episode bookkeeping) never synchronises; the episodes are read afterwards."""
    cfg = al.TrainConfig(env_id=env_id, seeds=(0, 1, 2), device="cuda", total_steps=4096, pfo_coef=1.0,
                         env_kwargs=_kwargs(env_id)).resolve()
    s = _setup(cfg)
    assert s.envs.resident and s.rollout.next_obs.is_cuda
    for _ in range(2):
        with _sync_is_an_error():
            collect_rollout(s.model, s.envs, s.rollout, s.generators, cfg)
        assert len(s.rollout.episode_returns) == 3
    assert sum(len(x) for x in s.rollout.episode_returns) >= 1 or env_id.startswith("MinAtar")


def test_ppo_learns_cartpole_on_the_resident_cuda_path():
    """CartPole PPO on the GPU (resident environments): every seed's greedy policy, evaluated on the exact
    environments, returns at least 400 after 40k steps (500 on the CPU stand-in of tests/test_device_envs.py)."""
    run = al.train(al.TrainConfig(env_id="CartPole-v1", seeds=(0, 1, 2), device="cuda", total_steps=40_000),
                   progress=False)
    ev = run.evaluate(episodes=10)
    assert (ev.return_mean >= 400).all(), ev


def test_fused_engine_loss_and_optimiser_on_cuda_match_the_cpu():
    """The fused engine's hand-differentiated loss (`acpg_lab.fused_loss`) gives on the GPU the CPU's loss,
    statistics and gradients to float32 tolerance, and its `acpg_lab.flat_adam.FlatAdam` trains on the GPU."""
    from acpg_lab import fused_loss

    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0, 1), device="cpu", engine="fused", ent_coef=0.01).resolve()
    model = al.ActorCritic((4,), 2, cfg.seeds).use_engine("fused")
    gen = torch.Generator().manual_seed(0)
    n = 64
    batch = Batch(obs=torch.randn(2, n, 4, generator=gen), actions=torch.randint(0, 2, (2, n), generator=gen),
                  logp=-torch.rand(2, n, generator=gen), advantages=torch.randn(2, n, generator=gen),
                  returns=torch.randn(2, n, generator=gen), mask=torch.ones(2, n), preacts=None)
    assert fused_loss.supports(model, cfg)
    results = []
    for device in ("cpu", "cuda"):
        model.to(device).zero_grad(set_to_none=True)
        loss, stats = loss_fn(model, Batch(*(None if x is None else x.to(device) for x in batch)), cfg)
        loss.sum().backward()
        results.append((loss.cpu(), {k: v.cpu() for k, v in stats.items()}, [p.grad.cpu() for p in model.parameters()]))
    (cpu_loss, cpu_stats, cpu_grads), (gpu_loss, gpu_stats, gpu_grads) = results
    torch.testing.assert_close(gpu_loss, cpu_loss, rtol=1e-4, atol=1e-5)
    for key, value in cpu_stats.items():
        torch.testing.assert_close(gpu_stats[key], value, rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(gpu_grads, cpu_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    run = al.train(al.TrainConfig(env_id="CartPole-v1", seeds=(0, 1, 2), device="cuda", engine="fused",
                                  total_steps=4096), progress=False)
    assert next(run.model.parameters()).is_cuda and np.isfinite(run.history.loss_policy).all()
