"""`train_and_evaluate` and `evaluate`: one SB3 agent with rl-zoo hyperparameters, evaluated greedily and by sampling
on environment seeds never used in training."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule

import acpg_lab.optimal_envs  # noqa: F401  (registers the acpg_lab/ ids with gymnasium, for make_vec_env)
from acpg_lab.checks import check_int
from acpg_lab.sb3.callback import DiagnosticsCallback
from acpg_lab.sb3.policy import ETFActorCriticPolicy

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
#: The largest ``seed``: SB3 seeds numpy's 32-bit legacy generator, and evaluation uses ``1_000_000 + 1_000 * seed``
#: plus the episode's index, which must stay below 2**32.
MAX_SEED = (2**32 - 1 - _EVAL_SEED_OFFSET) // 1_000 - 1


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
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if check_int("seed", seed, 0) > MAX_SEED:
        raise ValueError(f"seed must be <= {MAX_SEED} (SB3 seeds numpy's 32-bit generators from it), got {seed!r}")
    check_int("max_steps", max_steps, 1)
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
    if check_int("seed", seed, 0) > MAX_SEED:
        raise ValueError(f"seed must be <= {MAX_SEED} (SB3 seeds numpy's 32-bit generators from it), got {seed!r}")
    check_int("total_steps", total_steps, 0)  # 0: the untrained model, evaluated (the null)
    check_int("episodes", episodes, 1)
    check_int("diagnostics_every", diagnostics_every, 0)
    if num_threads is not None:
        check_int("num_threads (or None)", num_threads, 1)
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
