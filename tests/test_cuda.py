"""The CUDA path: the same code trains, diagnoses, saves and evaluates on a GPU. Skipped where torch sees none.

The bitwise guarantees (a seed alone = the seed in a batch; the same config twice = the same history) are CPU
guarantees: on a GPU, batched matmuls take batch-size-dependent kernels and action sampling draws from CUDA
generators, so trajectories differ from the CPU's. What must hold on the GPU is checked here to float32
tolerance: the losses and diagnostics of one model on one batch equal the CPU's, and one seed's first update does
not depend on its batch-mates beyond rounding.
"""

import numpy as np
import pytest
import torch

import acpg_lab as al
from acpg_lab.training import Batch, loss_fn

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
