"""The algorithms, as small pure functions of seed-batched tensors: advantage estimators and losses.

REINFORCE, A2C and PPO share one training loop (`acpg_lab.training`); everything that makes them different is a
function here or a `TrainConfig` field with a per-algorithm default:

==========================  =========================  ========================  =========================
                            REINFORCE                  A2C                       PPO
==========================  =========================  ========================  =========================
advantage                   `monte_carlo_returns`      `gae` (lambda 1: n-step)  `gae` (lambda 0.95)
                            minus a learned baseline
                            (``reinforce_baseline``)
steps that train            those whose episode ended  every real step           every real step
                            inside the rollout
policy loss                 `reinforce_loss`           `reinforce_loss`          `ppo_clip_loss`
``norm_adv``                True                       False                     True
``epochs``                  1                          1                         4 (CartPole preset: 20)
``minibatch_size``          the whole rollout          the whole rollout         256
``shuffle``                 False                      False                     True
==========================  =========================  ========================  =========================

All three add ``vf_coef * value_loss`` (when there is a critic) and subtract ``ent_coef * entropy``; PFO adds
``pfo_coef * pfo_loss`` to PPO's loss. Tensors are ``[S, N]`` (seeds x samples) unless said otherwise, and
every loss is a per-seed masked mean of shape ``[S]``: summing it over seeds before ``backward`` gives each seed
exactly its own gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["gae", "monte_carlo_returns", "reinforce_loss", "ppo_clip_loss", "value_loss", "entropy", "pfo_loss",
           "masked_mean", "normalize_per_seed", "uniforms", "explore", "sample_actions", "clip_grad_norm_per_seed"]


# ----------------------------------------------------------------------------- advantage estimators, [T, S, E]
def gae(rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor, gamma: float,
        lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over ``[T, S, E]`` rollouts with NEXT_STEP autoreset: (advantages, returns).

    ``values`` has T+1 entries (the last is V of the observation after the rollout). A terminated step does not
    bootstrap; a truncated one bootstraps from V(final observation), which is the next entry of ``values``
    because NEXT_STEP autoreset hands the final observation out as the next observation. Reset steps (the entry
    after an episode end) produce junk that the loss masks, and no advantage flows across an episode end.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * values[t + 1] * (1.0 - terminated[t]) - values[t]
        last = delta + gamma * lam * (1.0 - torch.maximum(terminated[t], truncated[t])) * last
        advantages[t] = last
    return advantages, advantages + values[:-1]


def monte_carlo_returns(rewards: Tensor, terminated: Tensor, truncated: Tensor,
                        gamma: float) -> tuple[Tensor, Tensor]:
    """Discounted returns-to-go ``[T, S, E]`` and a mask of the steps whose episode ended inside the rollout.

    REINFORCE needs the whole future of an episode; steps of an episode still running when the rollout stops
    have no return yet and are masked out (their states come back, with a known future, in the next rollout).
    """
    done = torch.maximum(terminated, truncated)
    returns, complete = torch.zeros_like(rewards), torch.zeros_like(rewards)
    g, c = torch.zeros_like(rewards[0]), torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        g = rewards[t] + gamma * g * (1.0 - done[t])
        c = torch.maximum(done[t], c)
        returns[t], complete[t] = g, c
    return returns, complete


# ----------------------------------------------------------------------------- policy losses, side by side
def reinforce_loss(logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """The score-function (vanilla policy-gradient) loss of REINFORCE and A2C: ``-mean(A * log pi(a|s))``."""
    return masked_mean(-advantages * logp, mask)


def ppo_clip_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                  clip: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate ``-mean(min(r A, clip(r, 1-eps, 1+eps) A))`` with ``r = pi/pi_old``, and its
    statistics: ``approx_kl`` (the ``(r-1) - log r`` estimator of KL(old || new)) and ``clip_frac`` (fraction of
    ratios outside the clip range)."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(-advantages * ratio, -advantages * clipped), mask)
    with torch.no_grad():
        stats = dict(approx_kl=masked_mean((ratio - 1) - log_ratio, mask),
                     clip_frac=masked_mean(((ratio - 1.0).abs() > clip).float(), mask))
    return loss, stats


# ----------------------------------------------------------------------------- the other terms
def value_loss(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """Squared error of the critic against the return targets: ``mean(0.5 (V(s) - G)^2)``."""
    return masked_mean(0.5 * (values - returns) ** 2, mask)


def entropy(logp_all: Tensor, mask: Tensor) -> Tensor:
    """Mean entropy of the policy, from log-probabilities of every action ``[S, N, K]``."""
    return masked_mean(-(logp_all.exp() * logp_all).sum(-1), mask)


def pfo_loss(preacts: Tensor, preacts_at_collection: Tensor, mask: Tensor) -> Tensor:
    """Proximal Feature Optimization: mean squared change of the actor's pre-activations ``[S, N, D]`` since the
    rollout was collected (the PFO paper's regulariser, added to PPO's loss with weight ``pfo_coef``)."""
    return masked_mean((preacts - preacts_at_collection).pow(2).mean(-1), mask)


# ----------------------------------------------------------------------------- seed-batched helpers
def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Per-seed mean of ``x [S, N]`` over entries where ``mask`` is 1: shape ``[S]``."""
    return (x * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def normalize_per_seed(x: Tensor, mask: Tensor) -> Tensor:
    """``x [S, N]`` shifted and scaled to zero mean and unit standard deviation per seed (over the mask)."""
    mean = masked_mean(x, mask).unsqueeze(1)
    std = masked_mean((x - mean) ** 2, mask).sqrt().unsqueeze(1)
    return (x - mean) / (std + 1e-8)


def uniforms(generators: Sequence[torch.Generator], *shape: int, device: torch.device | str = "cpu") -> Tensor:
    """``[*shape[:1], S, *shape[1:]]`` uniform draws in [0, 1), seed s's slice drawn from ``generators[s]`` in one
    call: ``uniforms(gens, T, E)[t]`` equals the t-th of T successive ``[S, E]`` draws (on the CPU, where torch
    fills a tensor from its generator in order), so a rollout's action noise can be drawn up front."""
    u = torch.stack([torch.rand(shape, generator=g, device=device) for g in generators])
    return u.movedim(0, 1) if len(shape) > 1 else u


def explore(logits: Tensor, epsilon: float) -> Tensor:
    """Log-probabilities of the behaviour policy that takes a uniformly random action with probability
    ``epsilon`` and follows ``logits`` otherwise: ``log((1 - epsilon) softmax(logits) + epsilon / K)``. Actions
    are sampled from it and PPO's ratio divides by it; ``epsilon=0`` returns ``logits`` itself."""
    if epsilon == 0:
        return logits
    uniform = torch.full_like(logits, math.log(epsilon / logits.shape[-1]))
    return torch.logaddexp(logits.log_softmax(-1) + math.log1p(-epsilon), uniform)


def sample_actions(logits: Tensor, u: Tensor) -> Tensor:
    """One categorical sample per row of ``logits [S, E, K]`` by inverting the CDF at the uniforms ``u [S, E]``
    (from `uniforms`, so each seed's noise comes from its own generator)."""
    cdf = logits.softmax(-1).cumsum(-1)
    return (cdf < u.unsqueeze(-1)).sum(-1).clamp_max(logits.shape[-1] - 1)


def clip_grad_norm_per_seed(params: Sequence[torch.nn.Parameter], max_norm: float) -> Tensor:
    """Scale each seed's slice of the gradients of ``params`` to norm <= max_norm; returns norms ``[S]``."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads], 1).sum(1).sqrt()  # [S, P]: layout-independent
    if max_norm > 0:
        scale = (max_norm / (norms + 1e-6)).clamp_max(1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms
