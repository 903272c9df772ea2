"""Training: REINFORCE, A2C and PPO for discrete actions, S seeds at once as one seed-batched model.

Reads top to bottom: `train` builds the seed-batched environments and network, then loops
collect a rollout -> estimate advantages -> update -> log.  The three algorithms differ only in how advantages
are estimated (Monte-Carlo returns or GAE) and in the policy loss (plain score function or PPO's clipped
surrogate, reused over epochs and minibatches).

Every tensor has a leading seed dimension S. Losses are per-seed masked means summed over seeds, so each seed's
gradient is its own; gradient norms are clipped per seed and per network; Adam is element-wise, so one Adam over
the stacked parameters is S independent Adams. Each seed has its own environments, action-sampling generator
and minibatch order, all derived from the seed alone.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from acpg_lab import metrics
from acpg_lab.config import TrainConfig
from acpg_lab.envs import SeedEnvs, is_atari, probe_spaces
from acpg_lab.networks import ActorCritic

__all__ = ["train", "Run", "build_model", "seed_streams", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_streams(seed: int) -> dict[str, int]:
    """Independent integer seeds for one training seed's environments, actions and evaluation."""
    env, act, evaluation = np.random.SeedSequence(int(seed)).generate_state(3)
    return dict(env=int(env), act=int(act), eval=int(evaluation))


def sample_actions(logits: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """One categorical sample per row of ``logits [S, E, K]``, seed s drawing from ``generators[s]``."""
    u = torch.stack([torch.rand(logits.shape[1], generator=g, device=logits.device) for g in generators])
    cdf = logits.softmax(-1).cumsum(-1)
    return (cdf < u.unsqueeze(-1)).sum(-1).clamp_max(logits.shape[-1] - 1)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Per-seed mean of ``x [S, N]`` over entries where ``mask`` is 1: shape ``[S]``."""
    return (x * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def normalize_per_seed(x: Tensor, mask: Tensor) -> Tensor:
    mean = masked_mean(x, mask).unsqueeze(1)
    std = masked_mean((x - mean) ** 2, mask).sqrt().unsqueeze(1)
    return (x - mean) / (std + 1e-8)


def clip_grad_norm_per_seed(params: Sequence[torch.nn.Parameter], max_norm: float) -> Tensor:
    """Scale each seed's slice of the gradients of ``params`` to norm <= max_norm; returns norms ``[S]``."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads], 1).sum(1).sqrt()  # [S, P]: layout-independent
    if max_norm > 0:
        scale = (max_norm / (norms + 1e-6)).clamp_max(1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


# ----------------------------------------------------------------------------- advantage estimators
def gae(rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor, gamma: float,
        lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over ``[T, S, E]`` rollouts with NEXT_STEP autoreset.

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


# ----------------------------------------------------------------------------- the run
@dataclass
class Run:
    """The result of `train`: resolved config, per-(seed, update) history, and the trained model."""

    config: TrainConfig
    history: pd.DataFrame
    model: ActorCritic
    wall_time: float
    interrupted: bool = False
    snapshots: dict[int, dict[str, Tensor] | Path] = field(default_factory=dict)
    """Actor weights by environment step (state dicts in memory, or paths of files written with torch.save)."""
    probe_obs: Tensor | None = None
    """The first rollout's observations ``[S, N, ...]`` (the initial policy's states), for the plasticity probe."""

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.config.seeds

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``history.csv`` and ``model.pt`` (a state_dict) into ``directory``, and, if the
        run kept them, the snapshots (``snapshots/actor_step<N>.pt``) and the probe batch (``probe_obs.pt``), so that
        a loaded run still supports `plasticity`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(config=self.config.to_dict(), wall_time=self.wall_time, interrupted=self.interrupted,
                    version=_version())
        self.history.to_csv(out / "history.csv", index=False)
        torch.save(self.model.state_dict(), out / "model.pt")
        if self.snapshots:
            (out / "snapshots").mkdir(exist_ok=True)
            for step in self.snapshots:
                torch.save(self.snapshot(step), out / "snapshots" / f"actor_step{step}.pt")
        if self.probe_obs is not None:
            obs = self.probe_obs.cpu()
            if obs.numel() and obs.min() >= 0 and obs.max() <= 255 and torch.equal(obs, obs.round()):
                obs = obs.to(torch.uint8)  # image frames: 4x smaller on disk, read back exactly
            torch.save(obs, out / "probe_obs.pt")
        (out / "config.json").write_text(json.dumps(meta, indent=2))  # last: its presence marks a complete run
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Run:
        """Read a run written by `save` (the model with ``weights_only=True``)."""
        src = Path(directory)
        meta = json.loads((src / "config.json").read_text())
        raw = meta["config"]
        raw["seeds"], raw["hidden_sizes"] = tuple(raw["seeds"]), tuple(raw["hidden_sizes"])
        cfg = TrainConfig(**raw)
        model = _model_for(cfg).to(device)
        model.load_state_dict(torch.load(src / "model.pt", map_location=device, weights_only=True))
        snapshots: dict[int, dict[str, Tensor] | Path] = {
            int(f.stem.removeprefix("actor_step")): f for f in (src / "snapshots").glob("actor_step*.pt")}
        probe = src / "probe_obs.pt"
        return cls(config=cfg, history=pd.read_csv(src / "history.csv"), model=model,
                   wall_time=meta["wall_time"], interrupted=meta["interrupted"],
                   snapshots=dict(sorted(snapshots.items())),
                   probe_obs=torch.load(probe, weights_only=True).float() if probe.exists() else None)

    def snapshot(self, step: int) -> dict[str, Tensor]:
        """The actor's state dict saved at environment step ``step`` (see ``TrainConfig.snapshot_every``)."""
        if step not in self.snapshots:
            raise ValueError(f"no snapshot at step {step}; snapshots exist at steps {sorted(self.snapshots)}")
        state = self.snapshots[step]
        return torch.load(state, weights_only=True) if isinstance(state, Path) else state

    def actor_at(self, step: int) -> nn.Module:
        """A copy of the actor with the weights of the snapshot at ``step`` (on the CPU)."""
        actor = _model_for(self.config).actor
        actor.load_state_dict(self.snapshot(step))
        return actor.eval()

    def plasticity(self, *, steps: int = 200, lr: float = 1e-3, seed: int = 0) -> pd.DataFrame:
        """The plasticity probe (`metrics.plasticity_probe`) on every snapshot: rows of seed, step, plasticity_kl.

        The probe batch is the first rollout (the initial policy's states); the target is a differently
        initialised actor of the same architecture, fixed by ``seed`` across snapshots. Higher = less plastic.
        """
        if not self.snapshots or self.probe_obs is None:
            raise ValueError("this run kept no snapshots; train with TrainConfig(snapshot_every=...)")
        device = next(self.model.parameters()).device
        shape, k = self.probe_obs.shape[2:], self.model.num_actions

        def make_actor() -> nn.Module:  # a fresh initialisation drawn from the probe's seeded torch RNG
            return build_model(self.config, shape, k, init_offset=int(torch.randint(1, 2**30, ()))).actor

        rows = []
        for step in sorted(self.snapshots):
            kl = metrics.plasticity_probe(make_actor, self.snapshot(step), self.probe_obs.to(device), steps=steps,
                                          lr=lr, seed=seed)
            rows.append(pd.DataFrame(dict(seed=list(self.seeds), step=step, plasticity_kl=kl.cpu().numpy())))
        return pd.concat(rows, ignore_index=True)

    @torch.no_grad()
    def rollout_states(self, steps: int = 128, num_envs: int = 8, *, greedy: bool = True) -> Tensor:
        """Observations ``[S, steps * num_envs, ...]`` visited by each seed's policy on unseen environment seeds
        (the evaluation streams): a state batch for post-hoc analyses of a trained network."""
        cfg, model = self.config, self.model
        device = next(model.parameters()).device
        envs = SeedEnvs(cfg.env_id, num_envs, [seed_streams(s)["eval"] + 1 for s in cfg.seeds], device,
                        cfg.env_kwargs)
        gens = [torch.Generator(device=device).manual_seed(seed_streams(s)["eval"] + 1) for s in cfg.seeds]
        obs, _ = envs.reset()
        visited = []
        for _ in range(steps):
            visited.append(obs)
            logits = model.policy(obs).logits
            obs = envs.step(logits.argmax(-1) if greedy else sample_actions(logits, gens)).obs
        envs.close()
        return torch.cat(visited, 1)

    @torch.no_grad()
    def evaluate(self, episodes: int = 10, *, greedy: bool = True, max_steps: int = 100_000) -> pd.DataFrame:
        """Return per seed over ``episodes`` episodes on environment seeds never used in training.

        Greedy (argmax) actions by default. Each episode runs in its own environment; an episode still running
        after ``max_steps`` steps counts with the return it has so far.
        """
        if not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
        cfg, model = self.config, self.model
        device = next(model.parameters()).device
        envs = SeedEnvs(cfg.env_id, episodes, [seed_streams(s)["eval"] for s in cfg.seeds], device, cfg.env_kwargs)
        gens = [torch.Generator(device=device).manual_seed(seed_streams(s)["eval"]) for s in cfg.seeds]
        obs, _ = envs.reset()
        first = np.full((len(cfg.seeds), episodes), np.nan)  # return of each environment's first episode
        for _ in range(max_steps):
            logits = model.policy(obs).logits
            step = envs.step(logits.argmax(-1) if greedy else sample_actions(logits, gens))
            for s, ended in enumerate(step.ended):
                where = np.flatnonzero(ended)
                new = np.isnan(first[s, where])
                first[s, where[new]] = step.finished_returns[s][new]
            obs = step.obs
            if not np.isnan(first).any():
                break
        running = np.isnan(first)
        first[running] = envs.ep_return[running]
        envs.close()
        return pd.DataFrame(dict(seed=list(cfg.seeds), return_mean=first.mean(1), return_std=first.std(1),
                                 episodes=episodes, unfinished=running.sum(1)))


def _version() -> str:
    from acpg_lab import __version__

    return __version__


def _model_for(cfg: TrainConfig) -> ActorCritic:
    """A freshly initialised model for a resolved config, its spaces read from a throw-away environment."""
    obs_space, act_space, _ = probe_spaces(cfg.env_id, cfg.env_kwargs)
    return build_model(cfg, obs_space.shape, int(act_space.n))


def build_model(cfg: TrainConfig, obs_shape: Sequence[int], num_actions: int, init_offset: int = 0) -> ActorCritic:
    """The seed-batched actor-critic a resolved config describes (``init_offset``: see `ActorCritic`)."""
    network = cfg.network
    if network == "auto":
        network = "nature" if is_atari(cfg.env_id) else "cnn" if len(obs_shape) == 3 else "mlp"
    return ActorCritic(obs_shape, num_actions, cfg.seeds, network=network, hidden_sizes=cfg.hidden_sizes,
                       activation=cfg.activation, head=cfg.head, head_normalize=cfg.head_normalize,
                       head_scale=cfg.head_scale, head_bias=cfg.head_bias, shared_trunk=cfg.shared_trunk,
                       init_offset=init_offset)


@torch.no_grad()
def diagnose(model: ActorCritic, cfg: TrainConfig, obs: Tensor, actions: Tensor, old_logp: Tensor,
             old_logits: Tensor, old_preacts: Tensor | None, labels: Tensor, valid: Tensor,
             expert: nn.Module | None) -> dict[str, Tensor]:
    """Metrics of the current model on a rollout's states (``[S, N, ...]``), per seed ``[S]``.

    Representation of the actor's (and critic's) last hidden layer, trust-region statistics of the update that
    produced the model against the rollout's behaviour policy, policy entropy, and action-collapse statistics
    with labels from ``cfg.label_source`` (the greedy action of the agent, of an expert, or the env's optimum).
    Every rollout state counts, final observations of episodes included (real states; their sampled actions
    are real draws of the old policy), except in action collapse, where states the agent never acted in
    (``valid`` = 0) and states without an optimal action (label -1) are left out.
    """
    out = model.actor.policy(obs)
    logp_all = out.logits.log_softmax(-1)
    new_logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    row: dict[str, Tensor] = {}
    for key, value in metrics.representation(out.features, out.preacts[-1], cfg.activation).items():
        row[f"actor_{key}"] = value
    if model.critic_backbone is not None:
        h, pre = model.critic_backbone(obs)
        for key, value in metrics.representation(h, pre[-1], cfg.activation).items():
            row[f"critic_{key}"] = value
    row.update(metrics.trust_region(new_logp, old_logp, cfg.clip_coef or 0.2, out.logits, old_logits))
    row["policy_entropy"] = -(logp_all.exp() * logp_all).sum(-1).mean(-1)
    if old_preacts is not None:
        row["preact_change"] = (pfo_features(out.preacts, cfg.pfo_layers) - old_preacts).pow(2).mean((-1, -2))
    if cfg.label_source == "greedy":
        labels = out.logits.argmax(-1)
    elif cfg.label_source == "expert":
        flat = obs.reshape(1, -1, *obs.shape[2:])
        expert_seeds = next(expert.parameters()).shape[0]  # the expert's seed 0 labels every state
        labels = expert(flat.expand(expert_seeds, *flat.shape[1:]))[0].argmax(-1).view(obs.shape[:2])
    labels = torch.where(valid > 0, labels, -1)
    row.update(metrics.action_collapse(out.features, labels, model.actor.head.weight, logits=out.logits))
    return row


def pfo_features(preacts: list[Tensor], layers: str) -> Tensor:
    """The pre-activations PFO keeps close to collection time: the last hidden layer's, or all, concatenated."""
    return preacts[-1] if layers == "last" else torch.cat(preacts, -1)


def train(config: TrainConfig, *, progress: bool = True) -> Run:
    """Train ``config.seeds`` as one seed-batched model; return a `Run`.

    Bad input raises ValueError before any training environment is created. Ctrl-C (KeyboardInterrupt) stops
    training and returns the run so far, with ``interrupted=True``.
    """
    cfg = config.resolve()
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _train(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, progress: bool) -> Run:
    device = resolve_device(cfg.device)
    num_seeds, T, E = len(cfg.seeds), cfg.rollout_steps, cfg.num_envs
    expert = Run.load(cfg.expert_run, device=str(device)).model.actor if cfg.label_source == "expert" else None
    streams = [seed_streams(s) for s in cfg.seeds]
    envs = SeedEnvs(cfg.env_id, E, [st["env"] for st in streams], device, cfg.env_kwargs)
    obs_shape = envs.single_observation_space.shape
    num_actions = int(envs.envs[0].single_action_space.n)
    model = build_model(cfg, obs_shape, num_actions).to(device)
    use_critic = cfg.algo != "reinforce" or cfg.reinforce_baseline
    params = model.actor_parameters() + (model.critic_parameters() if use_critic else [])
    optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
    gens = [torch.Generator(device=device).manual_seed(st["act"]) for st in streams]
    normalize_adv = cfg.algo != "a2c"
    keep_preacts = cfg.pfo_coef > 0 or cfg.diagnostics_every > 0

    # Rollout storage, [T, S, E, ...].
    obs_buf = torch.zeros((T, num_seeds, E, *obs_shape), device=device)
    act_buf = torch.zeros((T, num_seeds, E), dtype=torch.long, device=device)
    logp_buf, rew_buf, term_buf, trunc_buf, valid_buf = (torch.zeros((T, num_seeds, E), device=device)
                                                         for _ in range(5))
    val_buf = torch.zeros((T + 1, num_seeds, E), device=device)
    logits_buf = torch.zeros((T, num_seeds, E, num_actions), device=device)
    label_buf = torch.zeros((T, num_seeds, E), dtype=torch.long, device=device)
    preact_buf: Tensor | None = None  # allocated at the first step when needed

    columns: dict[str, list[np.ndarray]] = {}
    snapshots: dict[int, dict[str, Tensor] | Path] = {}
    probe_obs: Tensor | None = None

    def log(**values: Any) -> None:
        """Append one row per seed; a metric missing from this update (diagnostics) is NaN."""
        rows, nan = len(columns.get("update", [])), np.full(num_seeds, np.nan)
        for key, value in values.items():
            arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
            columns.setdefault(key, [nan] * rows).append(np.broadcast_to(arr, (num_seeds,)).astype(np.float64))
        for col in columns.values():
            if len(col) == rows:
                col.append(nan)

    def snapshot(step: int) -> None:
        state = {k: v.detach().cpu().clone() for k, v in model.actor.state_dict().items()}
        if cfg.snapshot_dir is None:
            snapshots[step] = state
        else:
            path = Path(cfg.snapshot_dir) / f"actor_step{step:09d}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, path)
            snapshots[step] = path

    obs, labels = envs.reset()
    start, interrupted = time.perf_counter(), False
    if cfg.snapshot_every:
        snapshot(0)
    bar = tqdm(range(cfg.num_updates), disable=not progress, desc=f"{cfg.algo}/{cfg.head} {cfg.env_id}",
               unit="update")
    try:
        for update in bar:
            lr = cfg.lr * (1.0 - update / cfg.num_updates) if cfg.anneal_lr else cfg.lr
            for group in optimizer.param_groups:
                group["lr"] = lr

            # ---- collect a rollout
            returns_done: list[list[np.ndarray]] = [[] for _ in range(num_seeds)]
            lengths_done: list[list[np.ndarray]] = [[] for _ in range(num_seeds)]
            with torch.no_grad():
                for t in range(T):
                    out = model.policy(obs)
                    if use_critic:
                        val_buf[t] = model.value(obs, out.features)
                    action = sample_actions(out.logits, gens)
                    obs_buf[t], act_buf[t], logits_buf[t] = obs, action, out.logits
                    logp_buf[t] = out.logits.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
                    if keep_preacts:
                        phi = pfo_features(out.preacts, cfg.pfo_layers)
                        if preact_buf is None:
                            preact_buf = torch.zeros((T, *phi.shape), device=device)
                        preact_buf[t] = phi
                    if labels is not None:
                        label_buf[t] = labels
                    step = envs.step(action)
                    rew_buf[t], term_buf[t], trunc_buf[t], valid_buf[t] = (
                        step.reward.sign() if cfg.reward_clip else step.reward, step.terminated, step.truncated,
                        step.valid)
                    if step.ended.any():
                        for s in range(num_seeds):
                            returns_done[s].append(step.finished_returns[s])
                            lengths_done[s].append(step.finished_lengths[s])
                    obs, labels = step.obs, step.labels
                if use_critic:
                    val_buf[T] = model.value(obs)

            # ---- advantages
            if cfg.algo == "reinforce":
                returns, complete = monte_carlo_returns(rew_buf, term_buf, trunc_buf, cfg.gamma)
                mask = valid_buf * complete
                advantages = returns - val_buf[:-1] if use_critic else returns
            else:
                advantages, returns = gae(rew_buf, val_buf, term_buf, trunc_buf, cfg.gamma, cfg.gae_lambda)
                mask = valid_buf

            # ---- update: flatten [T, S, E] -> [S, N]
            def flat(x: Tensor) -> Tensor:
                return x.transpose(0, 1).reshape(num_seeds, T * E, *x.shape[3:])

            b_obs, b_act, b_logp, b_adv, b_ret, b_mask = (flat(x) for x in (obs_buf, act_buf, logp_buf,
                                                                              advantages, returns, mask))
            b_preact = flat(preact_buf) if keep_preacts else None
            if probe_obs is None and cfg.snapshot_every:
                probe_obs = b_obs.detach().cpu().clone()  # the plasticity probe's batch: the initial policy's states
            n, mb = T * E, cfg.minibatch_size
            seed_index = torch.arange(num_seeds, device=device).unsqueeze(1)
            stats: dict[str, list[Tensor]] = {}
            for _ in range(cfg.epochs):
                if cfg.algo == "ppo":
                    order = torch.stack([torch.randperm(n, generator=g, device=device) for g in gens])
                else:
                    order = torch.arange(n, device=device).expand(num_seeds, n)
                for lo in range(0, n - mb + 1, mb):
                    idx = order[:, lo:lo + mb]
                    m = b_mask[seed_index, idx]
                    out = model.policy(b_obs[seed_index, idx])
                    logp_all = out.logits.log_softmax(-1)
                    new_logp = logp_all.gather(-1, b_act[seed_index, idx].unsqueeze(-1)).squeeze(-1)
                    entropy = masked_mean(-(logp_all.exp() * logp_all).sum(-1), m)
                    adv = b_adv[seed_index, idx]
                    if normalize_adv:
                        adv = normalize_per_seed(adv, m)
                    if cfg.algo == "ppo":
                        log_ratio = new_logp - b_logp[seed_index, idx]
                        ratio = log_ratio.exp()
                        clipped = ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
                        loss_pi = masked_mean(torch.maximum(-adv * ratio, -adv * clipped), m)
                        with torch.no_grad():
                            stats.setdefault("approx_kl", []).append(masked_mean((ratio - 1) - log_ratio, m))
                            clip_hit = ((ratio - 1.0).abs() > cfg.clip_coef).float()
                            stats.setdefault("clip_frac", []).append(masked_mean(clip_hit, m))
                    else:
                        loss_pi = masked_mean(-adv * new_logp, m)
                    loss = loss_pi - cfg.ent_coef * entropy
                    if cfg.pfo_coef > 0:  # PFO: keep the actor's pre-activations near their collection-time values
                        drift = (pfo_features(out.preacts, cfg.pfo_layers) - b_preact[seed_index, idx]).pow(2)
                        loss_pfo = masked_mean(drift.mean(-1), m)
                        loss = loss + cfg.pfo_coef * loss_pfo
                        stats.setdefault("loss_pfo", []).append(loss_pfo.detach())
                    if use_critic:
                        value = model.value(b_obs[seed_index, idx], out.features)
                        loss_v = masked_mean(0.5 * (value - b_ret[seed_index, idx]) ** 2, m)
                        loss = loss + cfg.vf_coef * loss_v
                        stats.setdefault("loss_value", []).append(loss_v.detach())
                    optimizer.zero_grad(set_to_none=True)
                    loss.sum().backward()  # seeds are independent: d(sum)/d(seed s) = that seed's loss
                    stats.setdefault("grad_norm_actor", []).append(
                        clip_grad_norm_per_seed(model.actor_parameters(), cfg.max_grad_norm))
                    if use_critic and model.critic_backbone is not None:
                        stats.setdefault("grad_norm_critic", []).append(
                            clip_grad_norm_per_seed(model.critic_parameters(), cfg.max_grad_norm))
                    optimizer.step()
                    stats.setdefault("loss_policy", []).append(loss_pi.detach())
                    stats.setdefault("entropy", []).append(entropy.detach())

            # ---- diagnostics, snapshots
            row = {k: torch.stack(v, 1).mean(1) for k, v in stats.items()}  # [S, n]: layout-independent
            if cfg.diagnostics_every and (update % cfg.diagnostics_every == 0 or update == cfg.num_updates - 1):
                row.update(diagnose(model, cfg, b_obs, b_act, b_logp, flat(logits_buf), b_preact, flat(label_buf),
                                    flat(valid_buf), expert))
            if cfg.snapshot_every and (update + 1) % cfg.snapshot_every == 0:
                snapshot((update + 1) * T * E)

            # ---- log one row per seed
            ep_returns = [np.concatenate(r) if r else np.zeros(0) for r in returns_done]
            ep_lengths = [np.concatenate(r) if r else np.zeros(0) for r in lengths_done]
            log(update=update, step=(update + 1) * T * E, time=time.perf_counter() - start, lr=lr,
                episode_return=[r.mean() if len(r) else np.nan for r in ep_returns],
                episode_length=[r.mean() if len(r) else np.nan for r in ep_lengths],
                episodes=[len(r) for r in ep_returns], valid_fraction=b_mask.mean(1), **row)
            if progress:
                recent = np.concatenate(columns["episode_return"][-10:])
                recent = recent[np.isfinite(recent)]
                bar.set_postfix(ret=f"{recent.mean():.1f}" if len(recent) else "n/a")
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(f"training interrupted after {len(columns.get('update', []))} updates; returning the run so "
                      "far", stacklevel=2)
    finally:
        bar.close()
        envs.close()

    rows = len(columns.get("update", []))
    history = pd.DataFrame({k: np.stack(v, 1).reshape(-1) for k, v in columns.items()})
    history.insert(0, "seed", np.repeat(np.array(cfg.seeds), rows))
    for col in ("update", "step", "episodes"):
        if col in history:
            history[col] = history[col].astype(np.int64)
    return Run(config=cfg, history=history, model=model, wall_time=time.perf_counter() - start,
               interrupted=interrupted, snapshots=snapshots, probe_obs=probe_obs)
