"""The fused loss (`acpg_lab.fused_loss`) against the autograd loss of `acpg_lab.training.loss_fn`.

Tolerances, and why: the fused node computes the logits as ``W h^T`` (the reference: ``h W^T``) and writes the
derivative out instead of letting autograd chain about forty nodes, so values and gradients differ from the
autograd path by float32 rounding: losses and statistics within 1e-6 absolute (measured: at most 1e-8), gradients
within 1e-5 of each tensor's largest entry (measured: at most 6e-7). ``gradcheck`` runs in float64 with its
default tolerances. A seed's loss and gradients are bitwise the same alone and inside a batch, and the same twice.
"""

import pytest
import torch

import acpg_lab as al
from acpg_lab import fused_loss, training
from acpg_lab.fused_loss import _FusedLoss
from acpg_lab.rollout import Batch

RL_ZOO = dict(num_envs=8, rollout_steps=32, epochs=20, minibatch_size=256, gamma=0.98, gae_lambda=0.8, lr=1e-3,
              clip_coef=0.2, ent_coef=0.0)


def _minibatch(seeds=(0, 1, 2), **kw):
    """A model (fused engine) and one shuffled minibatch of a rollout it collected."""
    cfg = al.TrainConfig(**{"env_id": "CartPole-v1", "seeds": seeds, "total_steps": 2048, "num_threads": 1,
                            "engine": "fused", **RL_ZOO, **kw}).resolve()
    s = training._setup(cfg)
    training.collect_rollout(s.model, s.envs, s.rollout, s.generators, cfg)
    batch = Batch.from_rollout(s.rollout, *training.advantages(s.rollout, cfg))
    order = torch.stack([torch.randperm(batch.obs.shape[1], generator=g) for g in s.generators])
    size = cfg.minibatch_size or batch.obs.shape[1]
    return s.model, cfg, next(iter(batch.minibatches(size).epoch(order)))


def _loss_and_grads(model, mb, cfg, *, fused):
    for p in model.parameters():
        p.grad = None
    if fused:
        loss, stats = fused_loss.fused_loss_fn(model, mb, cfg)
    else:
        model.fused_loss = False
        try:
            loss, stats = training.loss_fn(model, mb, cfg)
        finally:
            model.fused_loss = True
    loss.sum().backward()
    return loss.detach(), stats, [None if p.grad is None else p.grad.clone() for p in model.parameters()]


CONFIGS = {
    "ppo": dict(),
    "ppo, entropy bonus": dict(ent_coef=0.01),
    "ppo, clip 0.05 (many clipped ratios)": dict(clip_coef=0.05, ent_coef=0.01),
    "a2c": dict(algo="a2c", rollout_steps=5, epochs=1, minibatch_size=None, gae_lambda=1.0),
    "reinforce with baseline": dict(algo="reinforce", rollout_steps=100, epochs=1, minibatch_size=None),
    "reinforce without baseline": dict(algo="reinforce", rollout_steps=100, epochs=1, minibatch_size=None,
                                       reinforce_baseline=False),
    "grpo (no critic)": dict(algo="grpo", rollout_steps=128, vf_coef=0.0),
    "fixed etf head, scale 3": dict(head="etf", head_scale=3.0, ent_coef=0.01),
    "random head without bias": dict(head="random"),
    "shared trunk": dict(shared_trunk=True, ent_coef=0.01),
    "pfo": dict(pfo_coef=1.0, pfo_layers="all"),
    "relu": dict(activation="relu"),
    "minatar cnn": dict(env_id="MinAtar/Breakout-v1", num_envs=4, rollout_steps=64, epochs=4, ent_coef=0.01),
}


@pytest.mark.parametrize("kw", CONFIGS.values(), ids=CONFIGS.keys())
def test_fused_loss_equals_autograd_loss(kw):
    model, cfg, mb = _minibatch(**kw)
    assert fused_loss.supports(model, cfg)
    if cfg.epochs > 1:  # a second step, so that ratios differ from 1 and the clip and PFO terms are live
        loss, _, _ = _loss_and_grads(model, mb, cfg, fused=False)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=0.05)
    (l1, s1, g1), (l2, s2, g2) = (_loss_and_grads(model, mb, cfg, fused=f) for f in (True, False))
    assert list(s1) == list(s2)  # same statistics, in the same order
    torch.testing.assert_close(l1, l2, rtol=0, atol=1e-6)
    for key in s1:
        assert not s1[key].requires_grad
        torch.testing.assert_close(s1[key], s2[key], rtol=0, atol=1e-6)
    assert [a is None for a in g1] == [b is None for b in g2]  # the same parameters get gradients
    for a, b in zip(g1, g2, strict=True):
        if b is not None:
            assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (a - b).abs().max() / b.abs().max()
    if "clip_frac" in s2 and cfg.clip_coef == 0.05:
        assert (s2["clip_frac"] > 0.01).all()  # the clipped branch was exercised


def _random_inputs(seeds=3, samples=40, features=5, actions=3, dtype=torch.float64, critic=True):
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, grad=True):
        return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(grad)

    h, weight, bias = rand(seeds, samples, features), rand(seeds, actions, features), rand(seeds, actions)
    critic_inputs = (rand(seeds, samples, features), rand(seeds, features, 1), rand(seeds, 1, 1))
    hc, cw, cb = critic_inputs if critic else (None,) * 3
    data = dict(actions=torch.randint(actions, (seeds, samples), generator=gen),
                old_logp=-1.1 + 0.3 * rand(seeds, samples, grad=False), advantages=rand(seeds, samples, grad=False),
                returns=rand(seeds, samples, grad=False),
                mask=(torch.rand(seeds, samples, generator=gen) > 0.2).to(dtype))
    return (h, weight, bias, hc, cw, cb), data


@pytest.mark.parametrize("term", ["clip", "score"])
@pytest.mark.parametrize("critic", [True, False])
def test_gradcheck_float64(term, critic):
    inputs, data = _random_inputs(critic=critic)

    def loss(*tensors):
        return _FusedLoss.apply(*tensors, data["actions"], data["old_logp"], data["advantages"], data["returns"],
                                data["mask"], term, 0.2, 1.5, 0.01, 0.5)[0]

    assert torch.autograd.gradcheck(loss, inputs)


def test_seed_alone_equals_seed_in_batch_and_runs_repeat_bitwise():
    inputs, data = _random_inputs(seeds=5, samples=256, features=64, actions=2, dtype=torch.float32)
    options = dict(term="clip", clip=0.2, scale=1.0, ent_coef=0.01, vf_coef=0.5)

    def run(rows):
        cut = [t[rows].detach().requires_grad_(True) for t in inputs]
        loss, stats = fused_loss.fused_loss(*cut, **{k: v[rows] for k, v in data.items()}, **options)
        loss.sum().backward()
        return [loss.detach(), *stats.values(), *(t.grad for t in cut)]

    batched, alone, again = run(slice(0, 5)), run(slice(3, 4)), run(slice(0, 5))
    for b, a, r in zip(batched, alone, again, strict=True):
        assert torch.equal(b[3:4], a) and torch.equal(b, r)


def test_reference_engine_and_switch_keep_the_autograd_loss():
    model, cfg, _ = _minibatch()
    assert fused_loss.supports(model, cfg)
    assert not fused_loss.supports(model.use_engine("fused", fused_loss=False), cfg)
    assert not fused_loss.supports(model.use_engine("reference"), cfg)
    normalized, cfg_n, _ = _minibatch(head="etf", head_normalize=True)
    assert not fused_loss.supports(normalized, cfg_n)  # normalised features: the autograd loss
