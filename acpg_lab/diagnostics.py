"""What training logs about the network beyond its losses: `diagnose` (representation, trust region, action
collapse on a rollout's states) and `pfo_features` (which pre-activations PFO keeps close to collection time).

The metric definitions live in `acpg_lab.metrics` (and ``docs/metrics.md``); this module only decides which
tensors of a training step they are computed on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from acpg_lab import metrics
from acpg_lab.config import TrainConfig
from acpg_lab.networks import ActorCritic, PolicyOutput

__all__ = ["diagnose", "pfo_features"]


def pfo_features(preacts: list[Tensor], layers: str) -> Tensor:
    """The pre-activations PFO keeps close to collection time: the last hidden layer's (``"last"``) or all hidden
    layers' concatenated (``"all"``), ``[S, N, D]``."""
    return preacts[-1] if layers == "last" else torch.cat(preacts, -1)


@torch.no_grad()
def diagnose(model: ActorCritic, *, cfg: TrainConfig, obs: Tensor, actions: Tensor, old_logp: Tensor,
             old_logits: Tensor, old_preacts: Tensor | None, labels: Tensor, valid: Tensor,
             expert: nn.Module | None = None, null_actor: nn.Module | None = None,
             advantages: Tensor | None = None, train_mask: Tensor | None = None) -> dict[str, Tensor]:
    """Metrics of the current model on a rollout's states (``[S, N, ...]``), per seed ``[S]``.

    Args:
        model: the model after the update.
        cfg: the resolved config (activation, PFO layers, trust-region clip range, label source).
        obs, actions, old_logp, old_logits: the rollout: states, sampled actions, and the behaviour policy's
            log-probabilities of them and logits.
        old_preacts: `pfo_features` at collection time (None: ``preact_change`` is not logged).
        labels: the environment's optimal actions (used when ``cfg.label_source == "optimal"``).
        valid: 0 on reset steps (states the agent never acted in).
        expert: the labelling actor when ``cfg.label_source == "expert"`` (its seed 0 labels every state).
        null_actor: the untrained actor (same seeds): its representation and action-collapse metrics on the same
            states with the same labels are added as ``null_<metric>``, the null of every collapse statement.
        advantages, train_mask: the update's advantages and the mask of the steps it trained on (``[S, N]``);
            given, the ratio statistics are also split by the sign of the advantage the loss saw (``_adv_pos``,
            ``_adv_neg``: with ``cfg.norm_adv``, the sign after centring on the seed's mean over the trained
            steps, which the per-minibatch normalisation approximates), over the trained steps only.

    Returns representation statistics of the actor's (and critic's) last hidden layer, trust-region statistics of
    the update that produced the model against the rollout's behaviour policy (clip range
    ``cfg.trust_region_clip``), the policy entropy, and action-collapse statistics. Every rollout state counts,
    final observations of episodes included (real states; their sampled actions are real draws of the old
    policy), except in action collapse, where states the agent never acted in (``valid`` = 0) and states
    without an optimal action (label -1) are left out.
    """
    if model.fused_backbones() and model.critic_backbone is not None:  # both backbones in one fused pass
        features, preacts, h, pre = model.backbone_features(obs)
        out = PolicyOutput(model.actor.head(features), features, preacts)
    else:
        out = model.actor.policy(obs)
        h, pre = model.critic_backbone(obs) if model.critic_backbone is not None else (None, None)
    logp_all = out.logits.log_softmax(-1)
    new_logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    row: dict[str, Tensor] = {}
    for key, value in metrics.representation(out.features, out.preacts[-1], cfg.activation).items():
        row[f"actor_{key}"] = value
    if h is not None:
        for key, value in metrics.representation(h, pre[-1], cfg.activation).items():
            row[f"critic_{key}"] = value
    signed = None
    if advantages is not None:
        mask = torch.ones_like(advantages) if train_mask is None else train_mask.to(advantages.dtype)
        signed = advantages
        if cfg.norm_adv:  # the loss's sign: after centring (scaling keeps it)
            signed = advantages - (advantages * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp_min(1)
        signed = torch.where(mask > 0, signed, torch.full((), float("nan"), dtype=signed.dtype, device=signed.device))
    row.update(metrics.trust_region(new_logp, old_logp, cfg.trust_region_clip, out.logits, old_logits,
                                    advantages=signed))
    row["policy_entropy"] = -(logp_all.exp() * logp_all).sum(-1).mean(-1)
    if old_preacts is not None:
        row["preact_change"] = (pfo_features(out.preacts, cfg.pfo_layers) - old_preacts).pow(2).mean((-1, -2))
    if cfg.label_source == "greedy":
        labels = out.logits.argmax(-1)
    elif cfg.label_source == "expert":
        if expert is None:
            raise ValueError("label_source='expert' needs the expert actor (diagnose(..., expert=...))")
        flat = obs.reshape(1, -1, *obs.shape[2:])
        expert_seeds = next(expert.parameters()).shape[0]
        labels = expert(flat.expand(expert_seeds, *flat.shape[1:]))[0].argmax(-1).view(obs.shape[:2])
    labels = torch.where(valid > 0, labels, -1)
    row.update(metrics.action_collapse(out.features, labels, model.actor.head.weight, logits=out.logits))
    if null_actor is not None:
        null = null_actor.policy(obs)
        for key, value in metrics.representation(null.features, null.preacts[-1], cfg.activation).items():
            row[f"null_actor_{key}"] = value
        for key, value in metrics.action_collapse(null.features, labels, null_actor.head.weight,
                                                  logits=null.logits).items():
            row[f"null_{key}"] = value
    return row
