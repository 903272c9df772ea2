"""ACPG in Stable-Baselines3: a fixed simplex-ETF action layer for SB3's actor-critic policies, and the package's
diagnostics as an SB3 callback.

    from stable_baselines3 import PPO
    from acpg_lab.sb3 import ETFActorCriticPolicy, DiagnosticsCallback

    model = PPO(ETFActorCriticPolicy, "CartPole-v1", policy_kwargs=dict(head_scale=1.0))
    model.learn(100_000, callback=DiagnosticsCallback(every=10))   # diagnostics/* in SB3's logger

`ETFActorCriticPolicy` is SB3's `ActorCriticPolicy` (PPO, A2C; any features extractor: MLP, NatureCNN, your own)
with its action layer ``action_net`` replaced by an `acpg_lab.ETFHead` on the policy's latent features. The frame
is a buffer: saved by ``model.save`` and restored by ``PPO.load``, never seen by the optimiser. Only discrete
action spaces are supported (an ETF has one vector per action).

`DiagnosticsCallback` logs `acpg_lab.metrics.representation`, `trust_region` and `action_collapse` of the policy
on its own rollouts into SB3's logger (stdout, CSV, TensorBoard: whatever the logger writes) and keeps them in a
``history`` DataFrame that the `acpg_lab.experiments` helpers accept.

`train_and_evaluate` trains one SB3 agent (rl-zoo hyperparameters from `HYPERPARAMS`) and evaluates it greedily
and by sampling on environment seeds never used in training; notebook 05 and the tests use it.

This module needs the optional dependency group ``sb3`` (``pip install 'acpg-lab[sb3]'``); ``import acpg_lab``
does not import it.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import textwrap
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

try:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
    from stable_baselines3.common.torch_layers import NatureCNN
    from stable_baselines3.common.utils import LinearSchedule
except ImportError as error:  # pragma: no cover - exercised only without the optional group
    raise ImportError("acpg_lab.sb3 needs Stable-Baselines3: pip install 'acpg-lab[sb3]'") from error

import acpg_lab.optimal_envs  # noqa: F401  (registers the acpg_lab/ ids with gymnasium, for make_vec_env)
from acpg_lab import metrics
from acpg_lab.etf import ETFHead

__all__ = ["ETFActorCriticPolicy", "ETFActorCriticCnnPolicy", "DiagnosticsCallback", "HEAD_OPTIONS",
           "HYPERPARAMS", "policy_features", "evaluate", "train_and_evaluate"]


# ------------------------------------------------------------------------------------------- the ETF policy
def _etf_options() -> dict[str, Any]:
    """ETFHead's own options (everything after feature_dim and num_actions) and their defaults."""
    params = inspect.signature(ETFHead.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _etf_option_docs() -> str:
    """The ``Args:`` entries of ETFHead's docstring for its options, renamed ``head_<name>``."""
    doc = inspect.cleandoc(ETFHead.__doc__ or "")
    entries = re.findall(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", doc.split("Args:", 1)[1], flags=re.M | re.S)
    docs = "\n".join(f"head_{name}: " + text.rstrip().replace("\n        ", "\n    ")
                     for name, text in entries if name in _etf_options())
    return textwrap.indent(docs, "        ")


#: The head options of `ETFActorCriticPolicy` (``policy_kwargs``) and their defaults: `acpg_lab.ETFHead`'s own
#: options, each prefixed ``head_`` (``head_normalize`` is ETFHead's ``normalize``, and so on).
HEAD_OPTIONS: dict[str, Any] = {f"head_{name}": default for name, default in _etf_options().items()}


class ETFActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy with a fixed simplex-ETF action layer (ACPG): ``action_net`` is an
    `acpg_lab.ETFHead` on the policy's latent features, so logits = scale * W h with W fixed.

    Everything else (features extractor, ``net_arch``, value network, optimiser) is SB3's `ActorCriticPolicy`,
    and it takes all of that class's arguments. The frame is a buffer (``action_net.weight``, ``[K, d]`` with d the
    last width of ``net_arch["pi"]``, or the features extractor's output when that list is empty): in the policy's
    ``state_dict``, so ``model.save`` / ``PPO.load`` keep it, and never in ``parameters()``, so the optimiser never
    changes it. Only ``head_bias=True`` adds parameters (a learnable per-action bias, initialised to 0).
    Discrete action spaces only: anything else raises ValueError.

    **Orientation.** The default ``head_seeds=None`` (ETFHead's default) is the canonical frame, which lies on the
    first K-1 of the d features: the head reads only those. With SB3's Tanh features that caps the logit gap (K = 2,
    scale 1: ``logits = (h_1, -h_1)``, so no action gets more than 1/(1 + e^-2) = 0.88), and the policy stays
    stochastic: measured in notebook 05 (PPO, rl-zoo settings), greedy returns are unaffected but sampled ones are
    lower than the learnable policy's, which ``head_seeds=<int>`` (a random orientation over all d features, as
    acpg_lab's own agents use) removes. With ReLU features (NatureCNN, ``activation_fn=nn.ReLU``), which are
    nonnegative, the canonical frame leaves some actions unreachable altogether; the policy warns when it sees this.

    The head options are those of `acpg_lab.ETFHead`, prefixed ``head_``, with the same defaults
    (`HEAD_OPTIONS`); ``head_seeds`` takes None or one int here (SB3 trains one seed per model). Their documentation,
    ETFHead's own:

    Args:
"""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                 lr_schedule: Callable[[float], float], *args: Any,
                 head_seeds: int | None = HEAD_OPTIONS["head_seeds"],
                 head_normalize: bool = HEAD_OPTIONS["head_normalize"],
                 head_scale: float = HEAD_OPTIONS["head_scale"],
                 head_bias: bool = HEAD_OPTIONS["head_bias"], **kwargs: Any) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(
                f"ETFActorCriticPolicy needs a Discrete action space (a simplex ETF has one vector per action), got "
                f"{action_space}; continuous or multi-discrete actions have no fixed-ETF head here: use SB3's "
                f"MlpPolicy for them")
        if head_seeds is not None and (isinstance(head_seeds, bool) or not isinstance(head_seeds, int | np.integer)):
            raise ValueError(f"head_seeds must be None (canonical orientation) or one int (a random orientation); "
                             f"an SB3 model trains one seed, so it has one frame. Got {head_seeds!r}")
        self.head_options = dict(head_seeds=None if head_seeds is None else int(head_seeds),
                                 head_normalize=head_normalize, head_scale=head_scale, head_bias=head_bias)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Callable[[float], float]) -> None:
        super()._build(lr_schedule)  # SB3's networks, a linear action_net, and the optimiser over all of them
        self.action_net = ETFHead(self.mlp_extractor.latent_dim_pi, int(self.action_space.n),
                                  **{name.removeprefix("head_"): value for name, value in self.head_options.items()})
        # the optimiser again, now without the linear layer's parameters (and with the bias, if any)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        if self.head_options["head_seeds"] is None and _last_activation(_pi_path(self)) == "relu":
            warnings.warn(
                "ETFActorCriticPolicy: the policy's features end in a ReLU (nonnegative) and head_seeds=None puts the "
                "canonical ETF on the first K-1 feature axes only, where some actions can never get the highest logit "
                "(K = 2: one of the two; NatureCNN + K = 3: one of three, measured). Pass head_seeds=<int> for a "
                "random orientation that uses every feature, as acpg_lab's own agents do.", UserWarning, stacklevel=2)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.head_options}


ETFActorCriticPolicy.__doc__ = (ETFActorCriticPolicy.__doc__ or "") + _etf_option_docs() + "\n"


class ETFActorCriticCnnPolicy(ETFActorCriticPolicy):
    """`ETFActorCriticPolicy` with SB3's NatureCNN features extractor by default (image observations), like SB3's
    ``CnnPolicy``: the ETF sits on the CNN's 512 ReLU features (``net_arch`` defaults to none for NatureCNN), so
    pass ``head_seeds=<int>`` (see `ETFActorCriticPolicy`)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                 lr_schedule: Callable[[float], float], *args: Any,
                 features_extractor_class: type = NatureCNN, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, lr_schedule, *args,
                         features_extractor_class=features_extractor_class, **kwargs)


# ------------------------------------------------------------------------------------------ diagnostics
def _pi_path(policy: ActorCriticPolicy) -> list[nn.Module]:
    """The modules that produce the policy's latent features, in order (the extractor's when ``net_arch`` has
    no policy layers)."""
    return list(policy.mlp_extractor.policy_net) or list(policy.pi_features_extractor.modules())


def _last_activation(modules: list[nn.Module]) -> str | None:
    """"relu" or "tanh": the last such module on the path (None if there is none)."""
    for module in reversed(modules):
        if isinstance(module, nn.Tanh):
            return "tanh"
        if isinstance(module, nn.ReLU):
            return "relu"
    return None


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
_CLIP_DEPENDENT = ("ratio_above_mean", "ratio_below_mean", "frac_outside", "excess_ratio")


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
        if clip is not None and not (isinstance(clip, int | float) and math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be None or a finite number > 0, got {clip!r}")
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
            values.update({key: math.nan for key in _CLIP_DEPENDENT})
        pending["row"].update(values)
        for key, value in values.items():
            self.logger.record(f"diagnostics/{key}", value)


# ----------------------------------------------------------------------------------- training and evaluation
#: rl-baselines3-zoo's hyperparameters (``hyperparams/<algo>.yml``), per (env id, algorithm): what SB3 users run.
#: Learning rates and clip ranges written ``lin_x`` there decay linearly to 0 (`LinearSchedule`).
HYPERPARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("CartPole-v1", "ppo"): dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                                 ent_coef=0.0, learning_rate=("lin", 1e-3), clip_range=("lin", 0.2)),
    ("CartPole-v1", "a2c"): dict(n_envs=8, ent_coef=0.0),
    ("Acrobot-v1", "ppo"): dict(n_envs=16, n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0),
    ("acpg_lab/ActionBandit-v0", "ppo"): dict(n_envs=8, n_steps=32, batch_size=256, gamma=0.0, n_epochs=10,
                                              ent_coef=0.0),
}

_ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C}
_EVAL_SEED_OFFSET = 1_000_000  # evaluation environments' seeds: far from the training ones (seed + env index)


def _schedule(value: Any) -> Any:
    if isinstance(value, tuple) and value[0] == "lin":
        return LinearSchedule(float(value[1]), 0.0, 1.0)
    return value


def _env_kwargs(env_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """SB3's ``make_vec_env`` asks for ``render_mode="rgb_array"`` unless told otherwise; nothing here renders (and
    the acpg_lab/ environments refuse a render mode)."""
    return {"render_mode": None, **(env_kwargs or {})}


def evaluate(model: BaseAlgorithm, env_id: str, *, episodes: int = 10, deterministic: bool = True, seed: int = 0,
             env_kwargs: Mapping[str, Any] | None = None, max_steps: int = 100_000) -> np.ndarray:
    """The returns of ``episodes`` episodes, one per environment, each seeded ``1_000_000 + 1_000 * seed + i``
    (never a training seed). ``deterministic=True``: greedy (argmax) actions; False: actions sampled from the
    policy, as in training. An episode still running after ``max_steps`` steps counts with what it has so far."""
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    envs = make_vec_env(env_id, n_envs=episodes, seed=_EVAL_SEED_OFFSET + 1_000 * seed,
                        env_kwargs=_env_kwargs(env_kwargs))
    if deterministic is False:
        model.set_random_seed(_EVAL_SEED_OFFSET + seed)  # the sampling draws, reproducibly
    obs = envs.reset()
    returns, first = np.zeros(episodes), np.full(episodes, np.nan)
    for _ in range(max_steps):
        actions, _ = model.predict(obs, deterministic=deterministic)
        obs, rewards, dones, _ = envs.step(actions)
        returns += rewards
        newly = dones & np.isnan(first)
        first[newly] = returns[newly]
        returns[dones] = 0.0
        if not np.isnan(first).any():
            break
    envs.close()
    running = np.isnan(first)
    first[running] = returns[running]
    return first


def train_and_evaluate(env_id: str, *, policy: str = "etf", algo: str = "ppo", seed: int = 0,
                       total_steps: int = 100_000, episodes: int = 10, hyperparams: Mapping[str, Any] | None = None,
                       policy_kwargs: Mapping[str, Any] | None = None, diagnostics_every: int = 0,
                       label_source: str = "greedy", directory: str | Path | None = None, device: str = "cpu",
                       num_threads: int | None = 1) -> tuple[BaseAlgorithm, dict[str, Any], pd.DataFrame]:
    """Train one SB3 agent and evaluate it greedily and by sampling; returns (model, summary, diagnostics).

    Args:
        env_id: a gymnasium id (``acpg_lab/`` ids included); its `HYPERPARAMS` entry is used when there is one.
        policy: "etf" (`ETFActorCriticPolicy`) or "mlp" (SB3's ``MlpPolicy``, the learnable action layer).
        algo: "ppo" or "a2c".
        seed: SB3's seed (network, sampling and the training environments' seeds seed..seed + n_envs - 1).
        total_steps: environment steps over all parallel environments.
        episodes: evaluation episodes, greedy and sampled each (see `evaluate`).
        hyperparams: keyword arguments of the algorithm on top of `HYPERPARAMS` (``n_envs`` included).
        policy_kwargs: SB3's ``policy_kwargs`` (for "etf" also the head options, `HEAD_OPTIONS`).
        diagnostics_every: run a `DiagnosticsCallback` every so many rollouts (0 = none).
        label_source: its action-collapse labels.
        directory: if given, the model (``model.zip``), the summary and the diagnostics are saved there, and a
            later call with the same arguments loads them instead of training again (another call's directory
            is an error, not overwritten).
        device: "cpu" (SB3's MLP policies are fastest there), "cuda" or "auto" (SB3's choice).
        num_threads: torch CPU threads while training (restored after); None keeps torch's setting.

    The summary holds env_id, algo, policy, seed, total_steps, wall_s (training wall time), greedy_return and
    sampled_return (means over the episodes), greedy_returns and sampled_returns (per episode) and, with
    diagnostics, callback_s (the callback's own time).
    """
    if policy not in ("etf", "mlp"):
        raise ValueError(f"policy must be 'etf' or 'mlp', got {policy!r}")
    if algo not in _ALGOS:
        raise ValueError(f"algo must be one of {sorted(_ALGOS)}, got {algo!r}")
    settings = dict(env_id=env_id, algo=algo, policy=policy, seed=seed, total_steps=total_steps, episodes=episodes,
                    hyperparams=dict(hyperparams or {}), policy_kwargs=dict(policy_kwargs or {}),
                    diagnostics_every=diagnostics_every, label_source=label_source)
    out = None if directory is None else Path(directory)
    if out is not None and (out / "summary.json").exists():
        stored = json.loads((out / "summary.json").read_text())
        if stored["settings"] != json.loads(json.dumps(settings, default=repr)):
            raise ValueError(f"{out} holds a run with other settings; remove it or choose another directory")
        model = _ALGOS[algo].load(out / "model.zip", device=device)
        diagnostics = pd.read_csv(out / "diagnostics.csv") if (out / "diagnostics.csv").exists() else pd.DataFrame()
        return model, stored["summary"], diagnostics

    kwargs = {**HYPERPARAMS.get((env_id, algo), {}), **settings["hyperparams"]}
    n_envs = kwargs.pop("n_envs", 1)
    kwargs = {key: _schedule(value) for key, value in kwargs.items()}
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        envs = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=_env_kwargs(None))
        model = _ALGOS[algo](ETFActorCriticPolicy if policy == "etf" else "MlpPolicy", envs, seed=seed,
                             policy_kwargs=settings["policy_kwargs"] or None, device=device, verbose=0, **kwargs)
        callback = DiagnosticsCallback(diagnostics_every, label_source) if diagnostics_every else None
        start = time.perf_counter()
        model.learn(total_steps, callback=callback)
        wall = time.perf_counter() - start
        greedy = evaluate(model, env_id, episodes=episodes, deterministic=True, seed=seed)
        sampled = evaluate(model, env_id, episodes=episodes, deterministic=False, seed=seed)
    finally:
        torch.set_num_threads(previous_threads)
    summary = dict(env_id=env_id, algo=algo, policy=policy, seed=seed, total_steps=total_steps, wall_s=wall,
                   greedy_return=float(greedy.mean()), sampled_return=float(sampled.mean()),
                   greedy_returns=greedy.tolist(), sampled_returns=sampled.tolist(),
                   callback_s=callback.seconds if callback else float("nan"))
    diagnostics = callback.history if callback else pd.DataFrame()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.zip")
        if callback:
            diagnostics.to_csv(out / "diagnostics.csv", index=False)
        (out / "summary.json").write_text(json.dumps(dict(settings=settings, summary=summary), default=repr))
    return model, summary, diagnostics
