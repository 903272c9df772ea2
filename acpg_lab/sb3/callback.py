"""`DiagnosticsCallback`: the package's representation, trust-region and action-collapse metrics on an SB3 agent's
own rollouts, into SB3's logger."""

from __future__ import annotations

import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
from torch import Tensor, nn

import acpg_lab.optimal_envs  # noqa: F401  (registers the acpg_lab/ ids with gymnasium, for make_vec_env)
from acpg_lab import metrics
from acpg_lab.checks import check_int
from acpg_lab.metric_registry import names
from acpg_lab.sb3.policy import _last_activation, _pi_path


# ------------------------------------------------------------------------------------------ diagnostics
def policy_features(policy: ActorCriticPolicy, obs: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
    """The policy's latent features ``[N, d]`` (what the action layer sees), the pre-activations of the layer that
    produced them (None when ``net_arch["pi"]`` is empty and the features come straight from the extractor), and
    the logits ``[N, K]``; ``obs`` as the rollout buffer stores them (preprocessed here, as SB3 does)."""
    feats = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
    net = policy.mlp_extractor.policy_net
    pre = None
    if len(net) >= 2 and isinstance(net[-1], nn.Tanh | nn.ReLU):
        pre = net[:-1](feats)
        latent = net[-1](pre)
    else:
        latent = net(feats)
    return latent, pre, policy.action_net(latent)


#: The trust-region statistics defined relative to the clip range (NaN for an update made with clip range 0).
_CLIP_DEPENDENT = names(clip_relative=True)


class DiagnosticsCallback(BaseCallback):
    """Log the package's diagnostics of an SB3 actor-critic (PPO, A2C) every ``every`` rollouts.

    On a diagnosed rollout's N = n_steps x n_envs states, with the policy that collected them:

    - ``diagnostics/actor_<key>`` for every key of `acpg_lab.metrics.representation` of the policy's latent
      features (pre-activations of their layer when there is one; dead units by the last Tanh/ReLU on the path);
    - ``diagnostics/<key>`` for every key of `acpg_lab.metrics.action_collapse` of those features against the action
      layer's weights (the ETF or SB3's learnable ``action_net``), with the policy's logits for ``ncc_mismatch``;
      labels from ``label_source``; and ``diagnostics/policy_entropy``;
    - ``diagnostics/<key>`` for every key of `acpg_lab.metrics.trust_region` of the update made on the diagnosed
      rollout: the policy after that update against the rollout's own log-probabilities and logits. The update
      happens after the rollout, so these are logged one rollout later (at the next rollout's end, or when
      training ends) in the row of the rollout they describe; in SB3's logger they appear with the next dump.

    Everything is recorded with SB3's logger (so TensorBoard shows it when the model has a ``tensorboard_log``)
    and appended to `history` (a DataFrame: one row per diagnosed rollout with ``seed``, ``rollout``, ``step``,
    ``episode_return`` (mean return of the episodes that ended during that rollout, as SB3's ``Monitor`` reports
    them; NaN if none) and every metric: the shape `acpg_lab.experiments.final_metrics` and
    `acpg_lab.experiments.learning_summary` take). The cost is one forward pass over the
    rollout for the statistics and one more for the trust region, plus the metrics themselves.

    Args:
        every: diagnose every so many rollouts (1 = each), counting from the first; the last rollout of a run
            is diagnosed too.
        label_source: action-collapse labels: "greedy" (the policy's own argmax), "optimal" (``info
            ["optimal_action"]`` published by the environment, as `acpg_lab.optimal_envs` do; -1 = no label), or a
            trained SB3 model (an expert) whose deterministic ``predict`` labels each state.
        clip: the clip range ε of the trust-region statistics; None takes PPO's ``clip_range`` at that update,
            and 0.2 for algorithms without one (A2C). When that update's clip range is 0 (rl-zoo's linearly
            decayed ``clip_range`` reaches 0 at the last update), the statistics relative to it (ratio above /
            below mean, fraction outside, excess ratio) are NaN; ratio extremes and the KL are still logged.
    """

    def __init__(self, every: int = 10, label_source: str | BaseAlgorithm = "greedy", clip: float | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be an integer >= 1 (rollouts), got {every!r}")
        if not (label_source in ("greedy", "optimal") or isinstance(label_source, BaseAlgorithm)):
            raise ValueError(f"label_source must be 'greedy', 'optimal' or a trained SB3 model, got {label_source!r}")
        if clip is not None and (isinstance(clip, bool) or not (isinstance(clip, int | float) and math.isfinite(clip)
                                                                and clip > 0)):
            raise ValueError(f"clip must be None or a finite number > 0 (not a bool), got {clip!r}")
        check_int("verbose", verbose, 0)
        self.every, self.label_source, self.clip = every, label_source, clip
        self.rows: list[dict[str, float]] = []
        self.rollouts = 0
        self.seconds = 0.0  #: time spent in this callback (wall clock), to measure its overhead
        self._pending: dict[str, Any] | None = None  # the last diagnosed rollout, waiting for its update
        self._labels: list[np.ndarray] = []
        self._returns: list[float] = []
        self._next_labels: np.ndarray | None = None

    @property
    def history(self) -> pd.DataFrame:
        """One row per diagnosed rollout: seed, rollout, step and every metric (NaN where none was computed)."""
        return pd.DataFrame(self.rows)

    # -------------------------------------------------------------------------------- SB3 hooks
    def _on_training_start(self) -> None:
        policy = self.model.policy
        if not isinstance(policy, ActorCriticPolicy) or not isinstance(self.model.action_space, gym.spaces.Discrete):
            raise ValueError("DiagnosticsCallback needs an actor-critic policy (PPO, A2C) with a Discrete action "
                             f"space, got {type(policy).__name__} on {self.model.action_space}")
        if isinstance(self.model.observation_space, gym.spaces.Dict):
            raise ValueError("DiagnosticsCallback does not support Dict observation spaces")
        if self.label_source == "optimal":
            self._next_labels = self._optimal_labels(self.training_env.reset_infos, "reset")

    def _on_rollout_start(self) -> None:
        self._labels = []
        self._returns = []

    def _on_step(self) -> bool:
        start = time.perf_counter()
        infos = self.locals["infos"]
        for info in infos:  # SB3's Monitor wrapper reports each finished episode
            if "episode" in info:
                self._returns.append(float(info["episode"]["r"]))
        if self.label_source == "optimal":
            self._labels.append(self._next_labels)  # labels of the observations the agent just acted on
            after_reset = [self.training_env.reset_infos[i] if done else info
                           for i, (info, done) in enumerate(zip(infos, self.locals["dones"], strict=True))]
            self._next_labels = self._optimal_labels(after_reset, "step")
        self.seconds += time.perf_counter() - start
        return True

    def _on_rollout_end(self) -> None:
        start = time.perf_counter()
        self.rollouts += 1
        if self._pending is not None:
            self._finish_pending()
        if (self.rollouts - 1) % self.every == 0 or self.num_timesteps >= self._total_timesteps():
            self._diagnose()
        self.seconds += time.perf_counter() - start

    def _on_training_end(self) -> None:
        start = time.perf_counter()
        if self._pending is not None:
            self._finish_pending()
            self.logger.dump(self.num_timesteps)
        self.seconds += time.perf_counter() - start

    # -------------------------------------------------------------------------------- work
    def _total_timesteps(self) -> int:
        return int(self.locals.get("total_timesteps", getattr(self.model, "_total_timesteps", 0)))

    @staticmethod
    def _optimal_labels(infos: list[dict[str, Any]] | tuple[dict[str, Any], ...], when: str) -> np.ndarray:
        if any("optimal_action" not in info for info in infos):
            raise ValueError(f"label_source='optimal' needs an environment that publishes info['optimal_action'] at "
                             f"{when} (the acpg_lab/ environments do); this one does not")
        return np.array([int(info["optimal_action"]) for info in infos], dtype=np.int64)

    def _clip(self) -> float:
        if self.clip is not None:
            return float(self.clip)
        clip_range = getattr(self.model, "clip_range", None)
        return float(clip_range(self.model._current_progress_remaining)) if callable(clip_range) else 0.2

    def _batch(self) -> tuple[Tensor, Tensor, Tensor]:
        buffer = self.model.rollout_buffer
        n = buffer.buffer_size * buffer.n_envs
        obs = torch.as_tensor(buffer.observations.reshape(n, *buffer.obs_shape), device=self.model.device)
        actions = torch.as_tensor(buffer.actions.reshape(n), device=self.model.device).long()
        old_logp = torch.as_tensor(buffer.log_probs.reshape(n), device=self.model.device)
        return obs, actions, old_logp

    @torch.no_grad()
    def _diagnose(self) -> None:
        policy = self.model.policy
        obs, actions, old_logp = self._batch()
        features, pre, logits = policy_features(policy, obs)
        row: dict[str, float] = {"seed": float("nan") if self.model.seed is None else self.model.seed,
                                 "rollout": self.rollouts, "step": self.num_timesteps,
                                 "episode_return": float(np.mean(self._returns)) if self._returns else math.nan}
        for key, value in metrics.representation(features, pre, _last_activation(_pi_path(policy)) or "relu").items():
            row[f"actor_{key}"] = value
        logp_all = logits.log_softmax(-1)
        row["policy_entropy"] = float(-(logp_all.exp() * logp_all).sum(-1).mean())
        if self.label_source == "greedy":
            labels = logits.argmax(-1)
        elif self.label_source == "optimal":
            labels = torch.as_tensor(np.stack(self._labels).reshape(-1), device=obs.device)
        else:
            expert = self.label_source
            labels = torch.as_tensor(expert.predict(obs.cpu().numpy(), deterministic=True)[0].reshape(-1),
                                     device=obs.device)
        row.update(metrics.action_collapse(features, labels.long(), policy.action_net.weight, logits=logits))
        self.rows.append(row)
        self._pending = dict(row=row, obs=obs, actions=actions, old_logp=old_logp, old_logits=logits)
        for key, value in row.items():
            if key not in ("seed", "rollout", "step", "episode_return"):  # SB3 logs rollout/ep_rew_mean itself
                self.logger.record(f"diagnostics/{key}", value)

    @torch.no_grad()
    def _finish_pending(self) -> None:
        """Trust-region statistics of the update made on the pending rollout (the policy has changed since)."""
        pending, self._pending = self._pending, None
        assert pending is not None
        _, _, logits = policy_features(self.model.policy, pending["obs"])
        new_logp = logits.log_softmax(-1).gather(-1, pending["actions"][:, None]).squeeze(-1)
        clip = self._clip()
        values = metrics.trust_region(new_logp, pending["old_logp"], clip if clip > 0 else 1.0, logits,
                                      pending["old_logits"])
        if not clip > 0:  # a linearly decayed clip range reaches 0 at the last update: no range to escape from
            values.update({key: math.nan for key in _CLIP_DEPENDENT if key in values})
        pending["row"].update(values)
        for key, value in values.items():
            self.logger.record(f"diagnostics/{key}", value)
