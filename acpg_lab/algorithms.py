"""The algorithms, as small pure functions of seed-batched tensors and one table that names them: `ALGORITHMS`.

REINFORCE, A2C, PPO and GRPO share one training loop (`acpg_lab.training`); everything that makes them different
is an `AlgoSpec` entry of `ALGORITHMS` (which advantage estimator, which policy loss, whether there is a critic,
whether PFO and the clip apply, the per-algorithm defaults of `TrainConfig`), and the functions it names:

=========  ==================================  ================  ========  ========  ==================  =======
algo       advantage (steps that train)        policy loss       critic    norm_adv  epochs x minibatch  shuffle
=========  ==================================  ================  ========  ========  ==================  =======
reinforce  `monte_carlo_returns` minus a       `reinforce_loss`  baseline  True      1 x whole rollout   False
           learned baseline (steps whose
           episode ended inside the rollout)
a2c        `gae`, lambda 1: n-step returns     `reinforce_loss`  yes       False     1 x whole rollout   False
           (every real step)
ppo        `gae`, lambda 0.95 (every real      `ppo_clip_loss`   yes       True      4 x 256 (CartPole   True
           step)                                                                     preset: 20 x 256)
grpo       `group_relative_advantages`: the    `ppo_clip_loss`   no        False     4 x 512             True
           episode's return against the other
           episodes of the rollout (episodes
           that start and end inside it)
=========  ==================================  ================  ========  ========  ==================  =======

``baseline``: REINFORCE learns a state-value baseline when ``TrainConfig.reinforce_baseline`` (the default).
Algorithms with a critic add ``vf_coef * value_loss``; all subtract ``ent_coef * entropy``; PFO adds
``pfo_coef * pfo_loss`` to the algorithms that reuse a rollout for several epochs (PPO, GRPO). GRPO is the
critic-free PPO of DeepSeekMath (Shao et al. 2024) without its KL penalty towards a reference policy (as DAPO
and Dr. GRPO drop it): the clip is its only trust region. Tensors are ``[S, N]`` (seeds x samples) unless said
otherwise, and every loss is a per-seed masked mean of shape ``[S]``: summing it over seeds before ``backward``
gives each seed exactly its own gradient.

Adding an algorithm is one `AlgoSpec` entry in `ALGORITHMS` plus the functions it names (its policy loss or its
advantage estimator, written with the loop's signature: see `PolicyLoss` and `AdvantageEstimator`); the config's
checks, the loop and the command line's choices all read the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import torch
from torch import Tensor

from acpg_lab.checks import check_choice

__all__ = ["gae", "monte_carlo_returns", "group_relative_advantages", "reinforce_loss", "ppo_clip_loss",
           "value_loss", "entropy", "pfo_loss", "masked_mean", "normalize_per_seed", "uniforms", "explore",
           "sample_actions", "clip_grad_norm_per_seed", "AlgoSpec", "ALGORITHMS", "algo_spec", "PolicyLoss",
           "AdvantageEstimator"]


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


def group_relative_advantages(rewards: Tensor, terminated: Tensor, truncated: Tensor,
                              valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Critic-free advantages ``[T, S, E]`` that compare whole episodes: (advantages, episode returns, mask).

    GRPO's estimator (Shao et al. 2024, DeepSeekMath), with each episode of a seed's rollout as one sample of its
    group (all start from the environment's initial-state distribution, as GRPO's answers share a prompt): every
    step of an episode gets ``(R - mean(R)) / std(R)``, its undiscounted return standardised over the seed's
    episodes in the rollout. No value function is learned and no reward is bootstrapped, at the price of one
    advantage per episode (it cannot tell which steps made the episode good). Only an episode that starts and
    ends inside the rollout has a known return and belongs to the group; the steps of the others are masked out,
    so the rollout must be several episodes long. A group of one episode (or of equal returns) gives advantage 0.
    """
    # undiscounted returns-to-go; at a reset step (reward 0, no episode end) already the whole next episode's return
    outcome, complete = monte_carlo_returns(rewards, terminated, truncated, 1.0)
    done = torch.maximum(terminated, truncated)
    episode_return, started = torch.zeros_like(rewards), torch.zeros_like(rewards)
    total, begun = torch.zeros_like(rewards[0]), torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0]):
        # an episode starts at a reset step, or right after an episode end; one running at t = 0 began before
        start = 1.0 - valid[t] if t == 0 else torch.maximum(done[t - 1], 1.0 - valid[t])
        total = torch.where(start > 0, outcome[t], total)
        begun = torch.maximum(begun, start)
        episode_return[t], started[t] = total, begun
    ends = done * started  # one entry per episode of the group: its last step
    count = ends.sum((0, 2)).clamp_min(1.0)  # [S]
    mean = (episode_return * ends).sum((0, 2)) / count
    std = (((episode_return - mean.view(1, -1, 1)) ** 2 * ends).sum((0, 2)) / count).sqrt()
    advantages = (episode_return - mean.view(1, -1, 1)) / (std.view(1, -1, 1) + 1e-8)
    return advantages, episode_return, valid * started * complete


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


# ----------------------------------------------------------------------------- the algorithms, as data
class AdvantageEstimator(Protocol):
    """How the loop calls an algorithm's advantage estimator on a rollout ``[T, S, E]`` (``values`` has T + 1
    entries, zeros without a critic): (advantages, return targets of the critic, mask of the steps that train)."""

    def __call__(self, rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor, valid: Tensor, *,
                 gamma: float, lam: float, critic: bool) -> tuple[Tensor, Tensor, Tensor]: ...


class PolicyLoss(Protocol):
    """How the loop calls an algorithm's policy loss on a minibatch ``[S, M]``: (per-seed loss ``[S]``, statistics
    to log). ``old_logp`` is the behaviour policy's log-probability at collection; ``clip`` is ``clip_coef``."""

    def __call__(self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
                 clip: float) -> tuple[Tensor, dict[str, Tensor]]: ...


def _gae_on_every_step(rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor, valid: Tensor, *,
                       gamma: float, lam: float, critic: bool) -> tuple[Tensor, Tensor, Tensor]:
    """A2C, PPO: GAE(lambda) on every real step (a step of an unfinished episode bootstraps from the critic)."""
    adv, returns = gae(rewards, values, terminated, truncated, gamma, lam)
    return adv, returns, valid


def _monte_carlo_on_ended_episodes(rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor,
                                   valid: Tensor, *, gamma: float, lam: float,
                                   critic: bool) -> tuple[Tensor, Tensor, Tensor]:
    """REINFORCE: Monte-Carlo returns, minus the critic's baseline if there is one, on the steps whose episode
    ended inside the rollout (the others have no return yet)."""
    returns, complete = monte_carlo_returns(rewards, terminated, truncated, gamma)
    return (returns - values[:-1] if critic else returns), returns, valid * complete


def _group_relative(rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor, valid: Tensor, *,
                    gamma: float, lam: float, critic: bool) -> tuple[Tensor, Tensor, Tensor]:
    """GRPO: `group_relative_advantages` (no critic: ``values``, ``gamma`` and ``lam`` are not read)."""
    return group_relative_advantages(rewards, terminated, truncated, valid)


def _score_function(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
                    clip: float) -> tuple[Tensor, dict[str, Tensor]]:
    """REINFORCE, A2C: `reinforce_loss` (on-policy: ``old_logp`` and ``clip`` are not read)."""
    return reinforce_loss(logp, advantages, mask), {}


def _clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
                       clip: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO, GRPO: `ppo_clip_loss` and its statistics (``approx_kl``, ``clip_frac``)."""
    return ppo_clip_loss(logp, old_logp, advantages, mask, clip)


CRITICS = ("yes", "baseline", "no")  #: the values of `AlgoSpec.critic`


@dataclass(frozen=True)
class AlgoSpec:
    """One algorithm of the shared loop, as data: what the config's checks, the loop and the command line ask."""

    name: str  #: the ``TrainConfig.algo`` value
    summary: str  #: one line, for documentation and ``--help``
    advantage: AdvantageEstimator  #: advantages, return targets and the steps that train, from a rollout
    policy_loss: PolicyLoss  #: the policy term of the loss
    critic: str  #: "yes" (learns V), "baseline" (V as REINFORCE's baseline if ``reinforce_baseline``) or "no"
    clip: bool  #: the policy loss clips the ratio at ``clip_coef`` (which must then be > 0)
    pfo: bool  #: ``pfo_coef > 0`` is allowed (the algorithm reuses a rollout for several epochs)
    defaults: Mapping[str, Any] = field(default_factory=dict)  #: generic `TrainConfig` defaults (presets win)

    def __post_init__(self) -> None:
        check_choice("critic", self.critic, CRITICS)
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def uses_critic(self, *, reinforce_baseline: bool) -> bool:
        """Whether the run learns a value function (REINFORCE only as its optional baseline)."""
        return self.critic == "yes" or (self.critic == "baseline" and reinforce_baseline)


#: Every algorithm the loop trains, by ``TrainConfig.algo``. Defaults: CleanRL's PPO, SB3's A2C with Adam,
#: Monte-Carlo REINFORCE with a baseline, GRPO as PPO without a critic; ``minibatch_size`` absent means the whole
#: rollout in one step, ``trust_region_clip`` absent means ``clip_coef``.
ALGORITHMS: Mapping[str, AlgoSpec] = MappingProxyType({spec.name: spec for spec in (
    AlgoSpec("reinforce", "Monte-Carlo returns minus a learned baseline, vanilla policy gradient",
             advantage=_monte_carlo_on_ended_episodes, policy_loss=_score_function, critic="baseline", clip=False,
             pfo=False,
             defaults=dict(num_envs=8, rollout_steps=500, epochs=1, shuffle=False, norm_adv=True, lr=1e-3,
                           anneal_lr=False, gamma=0.99, gae_lambda=1.0, clip_coef=0.0, ent_coef=0.0, vf_coef=0.5,
                           max_grad_norm=0.5, trust_region_clip=0.2)),
    AlgoSpec("a2c", "n-step actor-critic (GAE with lambda 1), vanilla policy gradient",
             advantage=_gae_on_every_step, policy_loss=_score_function, critic="yes", clip=False, pfo=False,
             defaults=dict(num_envs=8, rollout_steps=5, epochs=1, shuffle=False, norm_adv=False, lr=7e-4,
                           anneal_lr=False, gamma=0.99, gae_lambda=1.0, clip_coef=0.0, ent_coef=0.0, vf_coef=0.5,
                           max_grad_norm=0.5, trust_region_clip=0.2)),
    AlgoSpec("ppo", "clipped surrogate over several epochs, GAE advantages from a critic",
             advantage=_gae_on_every_step, policy_loss=_clipped_surrogate, critic="yes", clip=True, pfo=True,
             defaults=dict(num_envs=8, rollout_steps=128, epochs=4, minibatch_size=256, shuffle=True,
                           norm_adv=True, lr=2.5e-4, anneal_lr=True, gamma=0.99, gae_lambda=0.95, clip_coef=0.2,
                           ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)),
    # gamma and gae_lambda are unused (episodes are compared by their undiscounted return) and so is vf_coef
    AlgoSpec("grpo", "PPO's clipped surrogate on critic-free, group-relative episode advantages",
             advantage=_group_relative, policy_loss=_clipped_surrogate, critic="no", clip=True, pfo=True,
             defaults=dict(num_envs=8, rollout_steps=256, epochs=4, minibatch_size=512, shuffle=True,
                           norm_adv=False, lr=1e-3, anneal_lr=True, gamma=1.0, gae_lambda=1.0, clip_coef=0.2,
                           ent_coef=0.0, vf_coef=0.0, max_grad_norm=0.5)),
)})


def algo_spec(name: str) -> AlgoSpec:
    """The `AlgoSpec` of ``name``; ValueError naming ``algo`` (with the closest name) for an unknown one."""
    return ALGORITHMS[check_choice("algo", name, tuple(ALGORITHMS))]
