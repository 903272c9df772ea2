"""The update's loss as one autograd node: heads, log-softmax, policy term, entropy and value loss, hand-differentiated.

`acpg_lab.training.loss_fn` reads as the algorithm: logits from the action head, a log-softmax, the policy loss of
`acpg_lab.algorithms` (PPO's clipped surrogate or the score function), the entropy bonus and the critic's squared
error, each a few tensor operations. Through autograd that is about forty small nodes per minibatch step, and at
small-MLP sizes they cost as much as the network itself: 1.6 ms of a 5 ms step at 16 seeds x 256 samples (rl-zoo
CartPole, one thread of the Intel AVX-512 machine of issue 25). `fused_loss_fn` computes the same loss from the
backbones' features with a hand-written backward of a few batched operations:

- logits kept transposed, ``[S, K, M]``: one ``bmm(W, h^T)`` (a ``K x d`` by ``d x M`` product, ~3x faster here
  than ``h W^T`` with its two-column output), and the log-softmax over K as element-wise operations on K rows;
- d(loss)/d(logits) written out: the policy term's derivative through the log-probability of the taken action
  (the clipped surrogate passes gradient only where its unclipped branch is the larger, ties included, exactly
  as autograd's ``maximum`` and ``clamp`` do together), plus the entropy's ``p (log p + 1)``, through the
  log-softmax's ``G - p sum(G)``;
- the value head as the reference computes it (`acpg_lab.networks.SeedLinear` with one output: a product and a
  sum, which keeps every seed's arithmetic independent of the batch), with its derivative ``vf_coef (V - G)``.

Every operation is element-wise or reduces within one seed, so a seed's loss and gradients do not depend on the
other seeds of the batch (`tests/test_fused_loss.py` checks it bitwise, checks values and gradients against
`acpg_lab.training.loss_fn`'s autograd path to float32 rounding, and runs ``gradcheck`` in float64). The policy
losses' definitions stay the readable ones of `acpg_lab.algorithms`; this is their derivative, checked against
them. PFO's term, when on, is added through autograd on top.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from acpg_lab import algorithms
from acpg_lab.algorithms import masked_mean, normalize_per_seed
from acpg_lab.diagnostics import pfo_features

__all__ = ["POLICY_TERMS", "supports", "fused_loss", "fused_loss_fn"]

#: The policy losses this node differentiates, by `acpg_lab.algorithms.AlgoSpec.policy_loss`: PPO's and GRPO's
#: clipped surrogate, REINFORCE's and A2C's score function.
POLICY_TERMS = {algorithms.ALGORITHMS["ppo"].policy_loss: "clip", algorithms.ALGORITHMS["a2c"].policy_loss: "score"}


def supports(model, cfg) -> bool:
    """Whether `fused_loss_fn` computes ``cfg``'s loss on ``model``: the fused engine with its fused loss on
    (`acpg_lab.networks.ActorCritic.use_engine`) on fused backbones (`ActorCritic.fused_backbones`), a
    seed-batched head without feature normalisation, a policy loss of `POLICY_TERMS`."""
    head = model.actor.head
    spec = algorithms.algo_spec(cfg.algo)
    return (getattr(model, "fused_loss", False) and model.fused_backbones() and getattr(head, "batched", False)
            and not head.normalize and spec.policy_loss in POLICY_TERMS)


def _log_softmax_rows(z: Tensor) -> tuple[Tensor, Tensor]:
    """``(log p, p)`` of logits ``z [S, K, M]`` over K (dim 1), in place of ``z``'s copy."""
    shifted = z - z.amax(1, keepdim=True)
    p = shifted.exp()
    total = p.sum(1, keepdim=True)
    p.div_(total)
    return shifted.sub_(total.log_()), p


class _FusedLoss(torch.autograd.Function):
    """Inputs ``(h, weight, bias, h_critic, critic_weight, critic_bias, actions, old_logp, adv, returns, mask,
    term, clip, scale, ent_coef, vf_coef)``; outputs ``(loss [S], loss_policy, entropy, loss_value, approx_kl,
    clip_frac)``, the statistics not differentiable (``h_critic`` None: no critic)."""

    @staticmethod
    def forward(ctx, h, weight, bias, h_critic, critic_weight, critic_bias, actions, old_logp, adv,  # type: ignore[override]
                returns, mask, term, clip, scale, ent_coef, vf_coef):
        z = torch.bmm(weight, h.transpose(1, 2))  # [S, K, M]
        if scale != 1.0:
            z.mul_(scale)
        if bias is not None:
            z.add_(bias.unsqueeze(-1))
        logp_all, p = _log_softmax_rows(z)
        taken = actions.unsqueeze(1)
        logp = logp_all.gather(1, taken).squeeze(1)  # [S, M]
        if term == "clip":
            log_ratio = logp - old_logp
            ratio = log_ratio.exp()
            unclipped, clipped = -adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip)
            per_sample = torch.maximum(unclipped, clipped)
            slope = torch.where(unclipped >= clipped, unclipped, 0.0)  # d(per_sample)/d(logp): -A r where it flows
            approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
            clip_frac = masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
        else:
            per_sample, slope = -adv * logp, -adv
            approx_kl = clip_frac = None
        loss_policy = masked_mean(per_sample, mask)
        ent = masked_mean(-(p * logp_all).sum(1), mask)
        loss = loss_policy - ent_coef * ent
        error = loss_value = None
        if h_critic is not None:
            values = (h_critic * critic_weight.transpose(1, 2)).sum(-1) + critic_bias.view(-1, 1)
            error = values - returns
            loss_value = masked_mean(0.5 * error ** 2, mask)
            loss = loss + vf_coef * loss_value
        ctx.save_for_backward(h, weight, h_critic, critic_weight, logp_all, p, taken, slope, mask, error)
        ctx.scale, ctx.ent_coef, ctx.vf_coef, ctx.has_bias = scale, ent_coef, vf_coef, bias is not None
        stats = (loss_policy, ent, loss_value, approx_kl, clip_frac)
        ctx.mark_non_differentiable(*(t for t in stats if t is not None))
        return loss, *stats

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, *_):  # type: ignore[override]
        h, weight, h_critic, critic_weight, logp_all, p, taken, slope, mask, error = ctx.saved_tensors
        # d(masked mean)/d(sample): the seed's incoming gradient over its count of unmasked samples
        w = (grad_loss / mask.sum(1).clamp_min(1.0)).unsqueeze(1) * mask  # [S, M]
        g_logp = slope * w
        if ctx.ent_coef != 0:
            g = (ctx.ent_coef * w).unsqueeze(1) * p * (logp_all + 1.0)  # d(-c H)/d(log p) = c p (log p + 1)
        else:
            g = torch.zeros_like(p)
        g.scatter_add_(1, taken, g_logp.unsqueeze(1))
        g_z = g.sub_(p * g.sum(1, keepdim=True))  # through the log-softmax
        g_bias = g_z.sum(2) if ctx.has_bias and ctx.needs_input_grad[2] else None
        if ctx.scale != 1.0:
            g_z = g_z * ctx.scale
        g_weight = torch.bmm(g_z, h) if ctx.needs_input_grad[1] else None
        g_h = torch.bmm(g_z.transpose(1, 2), weight) if ctx.needs_input_grad[0] else None
        g_hc = g_cw = g_cb = None
        if h_critic is not None:
            g_v = (ctx.vf_coef * w) * error  # [S, M]
            g_hc = g_v.unsqueeze(-1) * critic_weight.transpose(1, 2)
            g_cw = (h_critic * g_v.unsqueeze(-1)).sum(1).unsqueeze(-1)
            g_cb = g_v.sum(1).view(-1, 1, 1)
        return g_h, g_weight, g_bias, g_hc, g_cw, g_cb, *([None] * 10)


def fused_loss(h: Tensor, weight: Tensor, bias: Tensor | None, h_critic: Tensor | None, critic_weight: Tensor | None,
               critic_bias: Tensor | None, *, actions: Tensor, old_logp: Tensor, advantages: Tensor, returns: Tensor,
               mask: Tensor, term: str, clip: float, scale: float, ent_coef: float,
               vf_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The per-seed loss ``[S]`` of one minibatch from the backbones' features, and its statistics (detached).

    ``h [S, M, d]`` the actor's features, ``weight [S, K, d]`` and ``bias [S, K]`` (or None) its head's, with logits
    ``scale h W^T + b``; ``h_critic [S, M, d]`` (None: no critic) and the value head's ``critic_weight [S, d, 1]``,
    ``critic_bias [S, 1, 1]``; ``advantages`` as the policy term reads them (normalised already if the config
    says so); ``term`` "clip" or "score" (`POLICY_TERMS`)."""
    loss, loss_policy, ent, loss_value, approx_kl, clip_frac = _FusedLoss.apply(
        h, weight, bias, h_critic, critic_weight, critic_bias, actions, old_logp, advantages, returns, mask, term,
        clip, scale, ent_coef, vf_coef)
    stats = {} if approx_kl is None else dict(approx_kl=approx_kl, clip_frac=clip_frac)
    if loss_value is not None:
        stats["loss_value"] = loss_value
    return loss, stats | dict(loss_policy=loss_policy, entropy=ent)


def fused_loss_fn(model, mb, cfg) -> tuple[Tensor, dict[str, Tensor]]:
    """`acpg_lab.training.loss_fn` through `fused_loss` (where `supports` says so): the same loss and statistics,
    to float32 rounding."""
    spec = algorithms.algo_spec(cfg.algo)
    h, preacts, h_critic, _ = model.backbone_features(mb.obs)
    critic = spec.uses_critic(reinforce_baseline=cfg.reinforce_baseline)
    head, value_head = model.actor.head, model.critic_head
    adv = normalize_per_seed(mb.advantages, mb.mask) if cfg.norm_adv else mb.advantages
    loss, stats = fused_loss(h, head.weight, head.bias, h_critic if critic else None,
                             value_head.weight if critic else None, value_head.bias if critic else None,
                             actions=mb.actions, old_logp=mb.logp, advantages=adv, returns=mb.returns, mask=mb.mask,
                             term=POLICY_TERMS[spec.policy_loss], clip=cfg.clip_coef,
                             scale=head.scale, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef)
    if cfg.pfo_coef > 0:  # through autograd, on the backbone's pre-activations; the statistics in loss_fn's order
        pfo = algorithms.pfo_loss(pfo_features(preacts, cfg.pfo_layers), mb.preacts, mb.mask)
        loss = loss + cfg.pfo_coef * pfo
        policy = {k: stats.pop(k) for k in ("approx_kl", "clip_frac") if k in stats}
        stats = policy | {"loss_pfo": pfo.detach()} | stats
    return loss, stats
