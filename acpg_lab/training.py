"""Training: REINFORCE, A2C, PPO and GRPO for discrete actions, S seeds at once as one seed-batched model.

`train` reads as its phases, each a named function below::

    collect_rollout -> advantages -> update (epochs x minibatches of loss_fn) -> Instruments.after_update -> History.log

The algorithms themselves are the small functions of `acpg_lab.algorithms`, and its table `ALGORITHMS` names,
per algorithm, every difference between them (advantage estimator, policy loss, critic, per-algorithm defaults
of ``norm_adv``, ``epochs``, ``minibatch_size``, ``shuffle``...); this module only reads the table and calls
them, so it holds no algorithm's name. What is recorded beyond the losses (diagnostics, actor snapshots, the
plasticity probe's batch) hangs off the loop in `Instruments`, so it cannot change what is trained.

Every tensor has a leading seed dimension S. Losses are per-seed masked means summed over seeds, so each seed's
gradient is its own; gradient norms are clipped per seed and per network; Adam is element-wise, so one Adam over
the stacked parameters is S independent Adams. Each seed has its own environments, action-sampling generator
and minibatch order, all derived from the seed alone (`derived_seeds`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from acpg_lab import fused_loss
from acpg_lab.algorithms import (
    algo_spec,
    clip_grad_norm_per_seed,
    entropy,
    explore,
    normalize_per_seed,
    pfo_loss,
    sample_actions,
    uniforms,
    value_loss,
)
from acpg_lab.checkpoint import RunDirectory
from acpg_lab.config import TrainConfig
from acpg_lab.diagnostics import pfo_features
from acpg_lab.envs import SeedEnvs, fast_envs_default
from acpg_lab.flat_adam import FlatAdam
from acpg_lab.networks import ActorCritic
from acpg_lab.nonfinite import NonFiniteError, NonFiniteGuard
from acpg_lab.recording import History, Instruments, episode_stats
from acpg_lab.rollout import Batch, EpisodeLog, Rollout
from acpg_lab.run import Run, build_model, derived_seeds, resolve_device
from acpg_lab.state import TrainState

__all__ = ["train", "TrainState", "NonFiniteError", "Rollout", "Batch", "collect_rollout", "advantages", "update",
           "loss_fn", "Instruments"]


def uses_critic(cfg: TrainConfig) -> bool:
    """Whether the run learns a value function (`AlgoSpec.critic`: REINFORCE only as its optional baseline)."""
    return algo_spec(cfg.algo).uses_critic(reinforce_baseline=cfg.reinforce_baseline)


# ----------------------------------------------------------------------------- phase 1: collect a rollout
@torch.no_grad()
def collect_rollout(model: ActorCritic, envs: SeedEnvs, rollout: Rollout, generators: Sequence[torch.Generator],
                    cfg: TrainConfig) -> None:
    """Act ``cfg.rollout_steps`` steps in every seed's environments with the current policy (seed s sampling
    from ``generators[s]``), filling ``rollout`` in place, with the value estimates if there is a critic.

    With device-resident environments (`SeedEnvs.resident`) nothing here reads the device: the ended episodes
    are logged as tensors (`acpg_lab.rollout.EpisodeLog`) and read when first asked for, after the rollout."""
    r, critic = rollout, uses_critic(cfg)
    obs, labels = r.next_obs, r.next_labels
    returns: list[list[np.ndarray]] = [[] for _ in cfg.seeds]
    lengths: list[list[np.ndarray]] = [[] for _ in cfg.seeds]
    log: list[tuple[Tensor, Tensor, Tensor]] = []  # the resident path's (ended, returns, lengths) per step
    noise = uniforms(generators, cfg.rollout_steps, cfg.num_envs, device=obs.device)  # [T, S, E]
    for t in range(cfg.rollout_steps):
        out = model.policy(obs)
        if critic:
            r.values[t] = model.value(obs, out.features)
        behaviour = explore(out.logits, cfg.explore_epsilon)  # the policy itself unless explore_epsilon > 0
        action = sample_actions(behaviour, noise[t])
        r.obs[t], r.actions[t], r.logits[t] = obs, action, out.logits
        r.logp[t] = behaviour.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        if r.keep_preacts:
            phi = pfo_features(out.preacts, cfg.pfo_layers)
            if r.preacts is None:
                r.preacts = torch.zeros((cfg.rollout_steps, *phi.shape), device=phi.device)
            r.preacts[t] = phi
        if labels is not None:
            r.labels[t] = labels
        step = envs.step(action)
        r.rewards[t] = step.reward.sign() if cfg.reward_clip else step.reward
        r.terminated[t], r.truncated[t], r.valid[t] = step.terminated, step.truncated, step.valid
        if envs.resident:
            log.append((step.ended, step.finished_returns, step.finished_lengths))
        elif step.ended.any():
            for s in range(len(cfg.seeds)):
                returns[s].append(step.finished_returns[s])
                lengths[s].append(step.finished_lengths[s])
        obs, labels = step.obs, step.labels
    if critic:
        r.values[-1] = model.value(obs)
    r.next_obs, r.next_labels = obs, labels
    if envs.resident:
        r.episodes = EpisodeLog(*(torch.stack(x) for x in zip(*log, strict=True)))
    else:
        r.episodes = ([np.concatenate(x) if x else np.zeros(0) for x in returns],
                      [np.concatenate(x) if x else np.zeros(0) for x in lengths])


# ----------------------------------------------------------------------------- phase 2: advantages
def advantages(rollout: Rollout, cfg: TrainConfig) -> tuple[Tensor, Tensor, Tensor]:
    """(advantages, return targets, mask of the steps that train), ``[T, S, E]``, by the algorithm's estimator
    (`AlgoSpec.advantage`): REINFORCE's Monte-Carlo returns minus the baseline on the steps whose episode ended
    inside the rollout, A2C's and PPO's GAE(lambda) on every real step, GRPO's group-relative episode returns."""
    r = rollout
    return algo_spec(cfg.algo).advantage(r.rewards, r.values, r.terminated, r.truncated, r.valid, gamma=cfg.gamma,
                                         lam=cfg.gae_lambda, critic=uses_critic(cfg))


# ----------------------------------------------------------------------------- phase 3: update
def loss_fn(model: ActorCritic, mb: Batch, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """The per-seed loss ``[S]`` of one minibatch and its statistics (detached)::

        policy loss (`AlgoSpec.policy_loss`: reinforce_loss, ppo_clip_loss) - ent_coef * entropy
        [+ pfo_coef * pfo_loss] [+ vf_coef * value_loss]

    On the fused engine (where `acpg_lab.fused_loss.supports` it) the same loss comes from one hand-differentiated
    node, `acpg_lab.fused_loss.fused_loss_fn`, equal to this to float32 rounding.
    """
    if fused_loss.supports(model, cfg):  # False unless the model runs the fused engine with its fused loss
        return fused_loss.fused_loss_fn(model, mb, cfg)
    out = model.policy(mb.obs)
    logp_all = out.logits.log_softmax(-1)
    logp = logp_all.gather(-1, mb.actions.unsqueeze(-1)).squeeze(-1)
    adv = normalize_per_seed(mb.advantages, mb.mask) if cfg.norm_adv else mb.advantages
    loss_pi, stats = algo_spec(cfg.algo).policy_loss(logp, mb.logp, adv, mb.mask, clip=cfg.clip_coef)
    ent = entropy(logp_all, mb.mask)
    loss = loss_pi - cfg.ent_coef * ent
    if cfg.pfo_coef > 0:
        stats["loss_pfo"] = pfo_loss(pfo_features(out.preacts, cfg.pfo_layers), mb.preacts, mb.mask)
        loss = loss + cfg.pfo_coef * stats["loss_pfo"]
    if uses_critic(cfg):
        stats["loss_value"] = value_loss(model.value(mb.obs, out.features), mb.returns, mb.mask)
        loss = loss + cfg.vf_coef * stats["loss_value"]
    stats.update(loss_policy=loss_pi, entropy=ent)
    return loss, {k: v.detach() for k, v in stats.items()}


def update(model: ActorCritic, optimizer: torch.optim.Optimizer, batch: Batch, cfg: TrainConfig,
           generators: Sequence[torch.Generator], *, guard: NonFiniteGuard | None = None) -> dict[str, Tensor]:
    """``cfg.epochs`` passes over ``batch`` in minibatches of ``cfg.minibatch_size`` (each seed in its own random
    order when ``cfg.shuffle``); returns the statistics averaged over the steps, per seed ``[S]``. ``guard`` sees
    every step's per-seed loss and gradient norms (after `NonFiniteGuard.begin`)."""
    num_seeds, n = batch.obs.shape[:2]
    device, minibatches = batch.obs.device, batch.minibatches(cfg.minibatch_size)
    stats: dict[str, list[Tensor]] = defaultdict(list)
    for _ in range(cfg.epochs):
        if cfg.shuffle:
            order = torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])
        else:
            order = torch.arange(n, device=device).expand(num_seeds, n)
        for minibatch in minibatches.epoch(order):
            loss, step_stats = loss_fn(model, minibatch, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # seeds are independent: d(sum)/d(seed s) = that seed's loss
            step_stats["grad_norm_actor"] = clip_grad_norm_per_seed(model.actor_parameters(), cfg.max_grad_norm)
            if uses_critic(cfg) and model.critic_backbone is not None:
                step_stats["grad_norm_critic"] = clip_grad_norm_per_seed(model.critic_parameters(),
                                                                         cfg.max_grad_norm)
            if guard is not None:
                guard.check_step(loss, [v for k, v in step_stats.items() if k.startswith("grad_norm")])
            optimizer.step()
            for key, value in step_stats.items():
                stats[key].append(value)
    return {k: torch.stack(v, 1).mean(1) for k, v in stats.items()}  # [S, steps]: layout-independent


# ----------------------------------------------------------------------------- phases 4 and 5: record, log
# `Instruments` and `History` live in acpg_lab.recording.


# ----------------------------------------------------------------------------- the loop
def train(config: TrainConfig, *, progress: bool = True, run_dir: str | Path | None = None,
          resume: bool = False) -> Run:
    """Train ``config.seeds`` as one seed-batched model; return a `Run`.

    ``run_dir``: the run's directory. It gets a checkpoint every ``config.checkpoint_every`` updates and the saved
    run (`Run.save`) when training ends. It has one writer: before the first environment step it is created and
    locked (`acpg_lab.lock`), so a path that is a file, cannot be created or is not writable is a ValueError
    naming it, and a directory another process trains into is `acpg_lab.lock.DirectoryBusyError` naming that
    process (pid, host, start time); the lock of a process that died is taken over with a warning.
    ``resume=True`` continues from its checkpoint (bitwise as if never stopped, on the CPU) or returns the finished
    run it holds; without it, a directory holding a checkpoint or a run is an error. A checkpoint or run of
    another config is always an error.

    Bad input raises ValueError before any training environment is created. Ctrl-C (KeyboardInterrupt) stops
    training and returns the run so far, with ``interrupted=True``. A non-finite loss, gradient or parameter
    raises `NonFiniteError` or freezes that seed (``config.on_nonfinite``).
    """
    cfg = config.resolve()
    fast_envs_default()  # a bad ACPG_LAB_FAST_ENVS is refused before run_dir is touched
    if cfg.checkpoint_every and run_dir is None:
        raise ValueError(f"checkpoint_every={cfg.checkpoint_every} needs a run directory: train(cfg, run_dir=...)")
    directory = RunDirectory(run_dir, cfg) if run_dir is not None else None
    with directory.owned() if directory is not None else contextlib.nullcontext():
        if directory is not None and (finished := directory.finished(resume=resume)) is not None:
            return finished
        threads = torch.get_num_threads()
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        try:
            return _train_resolved(cfg, progress, directory, resume)
        finally:
            torch.set_num_threads(threads)


def _setup(cfg: TrainConfig) -> TrainState:
    """Environments, model, optimiser, generators and recorders, freshly made for a resolved config."""
    device = resolve_device(cfg.device)
    expert = Run.load(cfg.expert_run, device=str(device)).model.actor if cfg.label_source == "expert" else None
    seeds = [derived_seeds(s) for s in cfg.seeds]
    envs = SeedEnvs(cfg.env_id, num_envs=cfg.num_envs, env_seeds=[d["env"] for d in seeds], device=device,
                    env_kwargs=cfg.env_kwargs, resident=None)  # device-resident where the device is not the CPU
    obs_shape, num_actions = envs.single_observation_space.shape, int(envs.single_action_space.n)
    model = build_model(cfg, obs_shape, num_actions).to(device)
    params = model.actor_parameters() + (model.critic_parameters() if uses_critic(cfg) else [])
    # not fused=True: 4-9% faster updates, but its vectorised loop rounds an element differently depending on where
    # it falls in the tensor, so a seed's weights would depend on how many seeds share the batch. FlatAdam is torch's
    # (single-tensor) arithmetic, bitwise, run once over one buffer instead of once per tensor.
    optimizer = FlatAdam(params, lr=cfg.lr, eps=1e-5)
    generators = [torch.Generator(device=device).manual_seed(d["act"]) for d in seeds]
    rollout = Rollout.allocate(cfg, obs_shape, num_actions, device, *envs.reset())
    return TrainState(cfg, model, optimizer, generators, envs, rollout, Instruments(cfg, model, expert),
                      History(cfg.seeds), NonFiniteGuard(params, optimizer, cfg.seeds, cfg.on_nonfinite),
                      start=time.perf_counter())


def _train_resolved(cfg: TrainConfig, progress: bool, directory: RunDirectory | None, resume: bool) -> Run:
    s = _setup(cfg)
    model, optimizer, generators, envs, rollout = s.model, s.optimizer, s.generators, s.envs, s.rollout
    interrupted, bar = False, None
    try:
        if directory is not None:
            directory.check_capturable(s)
        if not (resume and directory is not None and directory.resume(s)):
            s.instruments.start()
        bar = tqdm(range(s.next_update, cfg.num_updates), disable=not progress, initial=s.next_update,
                   total=cfg.num_updates, desc=f"{cfg.algo}/{cfg.head} {cfg.env_id}", unit="update")
        for index in bar:
            lr = cfg.lr * (1.0 - index / cfg.num_updates) if cfg.anneal_lr else cfg.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            collect_rollout(model, envs, rollout, generators, cfg)
            batch = Batch.from_rollout(rollout, *advantages(rollout, cfg))
            s.guard.begin()
            stats = update(model, optimizer, batch, cfg, generators, guard=s.guard)
            stats |= s.guard.end(index)
            stats |= s.instruments.after_update(index, rollout, batch)
            s.history.log(update=index, step=(index + 1) * cfg.batch_size, time=s.elapsed(), lr=lr,
                          **episode_stats(rollout), valid_fraction=batch.mask.mean(1), **stats)
            s.next_update = index + 1
            if directory is not None:
                directory.after_update(s)
            if progress:
                bar.set_postfix(ret=s.history.recent_return())
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(f"training interrupted after {s.history.rows} updates; returning the run so far", stacklevel=2)
    except NonFiniteError as err:
        err.run = s.run()
        raise
    finally:
        if bar is not None:
            bar.close()
        envs.close()
    run = s.run(interrupted)
    if directory is not None and not interrupted:
        directory.finish(run)
    return run
