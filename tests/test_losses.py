"""Properties of every loss of `acpg_lab.algorithms`, called directly on small tensors (no training).

Each loss is a per-seed masked mean ``[S]``; the properties are the ones its formula promises: PPO's clipped
side passes no gradient, the KL estimate is never negative, REINFORCE's gradient is the score-function estimate,
the value loss vanishes at its target, PFO vanishes when the features do not move, and the mask selects samples.
"""

import math

import pytest
import torch

from acpg_lab.algorithms import (
    entropy,
    masked_mean,
    normalize_per_seed,
    pfo_loss,
    ppo_clip_loss,
    reinforce_loss,
    value_loss,
)

CLIP = 0.2


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ppo_grad(ratio: float, advantage: float) -> float:
    """d(PPO loss)/d(log pi) of one sample with the given probability ratio and advantage."""
    logp = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=torch.float64)
    loss, _ = ppo_clip_loss(logp, old, torch.tensor([[advantage]], dtype=torch.float64), torch.ones(1, 1), CLIP)
    loss.sum().backward()
    return logp.grad.item()


@pytest.mark.parametrize(("ratio", "advantage"), [(1.5, 1.0), (1.0 + CLIP + 1e-3, 2.0), (0.5, -1.0),
                                                  (1.0 - CLIP - 1e-3, -3.0)])
def test_ppo_clipped_side_passes_no_gradient(ratio, advantage):
    # the ratio already moved past the clip in the direction the advantage favours: the objective is flat there
    assert _ppo_grad(ratio, advantage) == 0.0


@pytest.mark.parametrize(("ratio", "advantage"), [(1.0, 1.0), (1.1, -2.0), (0.9, 0.5), (1.5, -1.0), (0.5, 1.0)])
def test_ppo_unclipped_side_has_the_surrogate_gradient(ratio, advantage):
    # inside the range, or outside it on the side that makes the objective worse (the pessimistic min keeps the
    # unclipped term): d(-r A)/d(log pi) = -r A
    assert _ppo_grad(ratio, advantage) == pytest.approx(-ratio * advantage, rel=1e-12)


def test_ppo_loss_at_the_old_policy_is_minus_the_mean_advantage_and_kl_is_never_negative():
    gen = _gen()
    logp = torch.randn(3, 50, generator=gen) * 0.3 - 1.0
    adv = torch.randn(3, 50, generator=gen)
    mask = (torch.rand(3, 50, generator=gen) > 0.3).float()
    loss, stats = ppo_clip_loss(logp, logp.clone(), adv, mask, CLIP)
    torch.testing.assert_close(loss, -masked_mean(adv, mask))
    assert torch.equal(stats["approx_kl"], torch.zeros(3)) and torch.equal(stats["clip_frac"], torch.zeros(3))
    for seed in range(20):
        g = _gen(seed)
        new = logp + torch.randn(3, 50, generator=g) * (0.05 + seed / 5)  # small to large policy changes
        _, stats = ppo_clip_loss(new, logp, adv, mask, CLIP)
        assert (stats["approx_kl"] >= 0).all(), stats["approx_kl"]
        assert ((stats["clip_frac"] >= 0) & (stats["clip_frac"] <= 1)).all()
    assert (stats["approx_kl"] > 0).all() and (stats["clip_frac"] > 0).all()


def test_reinforce_gradient_is_the_score_function_estimate_on_a_tiny_categorical():
    theta = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64, requires_grad=True)  # K = 3 logits
    reward = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)  # A(a): a fixed function of the action
    gen = _gen(1)
    actions = torch.multinomial(theta.detach().softmax(0), 200_000, replacement=True, generator=gen)
    logp = theta.log_softmax(0)[actions].unsqueeze(0)  # [S=1, N]
    loss = reinforce_loss(logp, reward[actions].unsqueeze(0), torch.ones_like(logp))
    (grad,) = torch.autograd.grad(loss.sum(), theta)
    # the score-function estimate, by hand: -mean_i A(a_i) (onehot(a_i) - softmax(theta))
    pi = theta.detach().softmax(0)
    score = torch.nn.functional.one_hot(actions, 3).double() - pi
    torch.testing.assert_close(grad, -(reward[actions].unsqueeze(1) * score).mean(0))
    # and it estimates the true gradient of -E_pi[A] = -sum_a pi(a) A(a), i.e. -pi * (A - E_pi[A])
    true = -pi * (reward - (pi * reward).sum())
    torch.testing.assert_close(grad, true, atol=0.01, rtol=0)


def test_losses_of_one_seed_do_not_depend_on_the_others():
    gen = _gen(2)
    logp = torch.randn(2, 8, generator=gen, requires_grad=True)
    adv, mask = torch.randn(2, 8, generator=gen), torch.ones(2, 8)
    for loss in (reinforce_loss(logp, adv, mask), ppo_clip_loss(logp, logp.detach() + 0.1, adv, mask, CLIP)[0]):
        (grad,) = torch.autograd.grad(loss[0], logp)
        assert torch.equal(grad[1], torch.zeros(8)) and grad[0].abs().sum() > 0


def test_value_loss_is_zero_at_the_target_and_pulls_towards_it():
    gen = _gen(3)
    returns = torch.randn(2, 10, generator=gen)
    mask = torch.ones(2, 10)
    assert torch.equal(value_loss(returns.clone(), returns, mask), torch.zeros(2))
    values = (returns + torch.randn(2, 10, generator=gen)).requires_grad_(True)
    loss = value_loss(values, returns, mask)
    assert (loss > 0).all()
    (grad,) = torch.autograd.grad(loss.sum(), values)
    torch.testing.assert_close(grad, (values - returns).detach() / 10)  # d/dV mean(0.5 (V - G)^2)


def test_pfo_is_zero_when_features_do_not_move_and_the_mean_squared_change_otherwise():
    gen = _gen(4)
    feats = torch.randn(2, 6, 5, generator=gen)  # [S, N, D]
    mask = torch.ones(2, 6)
    assert torch.equal(pfo_loss(feats.clone(), feats, mask), torch.zeros(2))
    moved = feats.clone()
    moved[1] += 0.5  # only seed 1's features move, by 0.5 in every coordinate
    torch.testing.assert_close(pfo_loss(moved, feats, mask), torch.tensor([0.0, 0.25]))


def test_masked_mean_averages_only_the_masked_entries_per_seed():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, -7.0, 5.0, 6.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([2.0, -0.5, 0.0]))  # empty mask: 0, not nan
    changed = x.clone()
    changed[mask == 0] = 1e6  # what the mask leaves out does not count
    torch.testing.assert_close(masked_mean(changed, mask), masked_mean(x, mask))


def test_normalize_per_seed_gives_zero_mean_unit_std_over_the_mask():
    gen = _gen(5)
    x = torch.randn(3, 40, generator=gen) * torch.tensor([[1.0], [10.0], [0.1]]) + 5
    mask = (torch.rand(3, 40, generator=gen) > 0.5).float()
    z = normalize_per_seed(x, mask)
    torch.testing.assert_close(masked_mean(z, mask), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(masked_mean(z ** 2, mask), torch.ones(3), atol=1e-4, rtol=0)


def test_entropy_is_log_k_for_the_uniform_policy_and_zero_for_a_certain_one():
    mask = torch.ones(1, 2)
    uniform = torch.full((1, 2, 4), 0.25).log()
    torch.testing.assert_close(entropy(uniform, mask), torch.tensor([math.log(4)]))
    certain = torch.tensor([[[0.0, -1e4, -1e4], [-1e4, 0.0, -1e4]]]).log_softmax(-1)
    torch.testing.assert_close(entropy(certain, mask), torch.zeros(1), atol=1e-6, rtol=0)
