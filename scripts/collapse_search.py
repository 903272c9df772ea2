"""Search for cheap settings where PPO's representation and trust region degrade (issue: notebooks 03/04).

Every setting tried is logged, including those where nothing collapsed: one row per setting in
``results/collapse_search/log.csv`` with the representation and trust-region metrics at 5%, 50% and 100% of
training (mean over seeds) and the final greedy return. Runs are cached under ``runs/collapse_search/`` and the
log is rewritten after each setting, so an interrupted search loses nothing.

    python scripts/collapse_search.py [--only NAME ...] [--list] [--log CSV] [--runs DIR]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import acpg_lab as al
from acpg_lab.experiments import run_cached

STRESS = dict(epochs=40, anneal_lr=False, activation="relu", lr=1e-3, ent_coef=0.0)
#: name -> TrainConfig fields (PPO, 4 seeds, diagnostics every 10 updates unless overridden).
SETTINGS: dict[str, dict] = {
    "cartpole_default": dict(env_id="CartPole-v1", total_steps=200_000),
    "cartpole_relu_e40_lr1e-3": dict(env_id="CartPole-v1", total_steps=200_000, **STRESS),
    "cartpole_relu_e40_lr1e-3_pfo1": dict(env_id="CartPole-v1", total_steps=200_000, pfo_coef=1.0, **STRESS),
    "cartpole_relu_e40_lr1e-3_pfo10_all": dict(env_id="CartPole-v1", total_steps=200_000, pfo_coef=10.0,
                                               pfo_layers="all", **STRESS),
    "cartpole_tanh_e40_lr1e-3": dict(env_id="CartPole-v1", total_steps=200_000, **{**STRESS, "activation": "tanh"}),
    "cartpole_relu_e10_lr1e-3": dict(env_id="CartPole-v1", total_steps=200_000, **{**STRESS, "epochs": 10}),
    "acrobot_relu_e40_lr1e-3": dict(env_id="Acrobot-v1", total_steps=200_000, **STRESS),
    "acrobot_relu_e40_lr1e-3_pfo1": dict(env_id="Acrobot-v1", total_steps=200_000, pfo_coef=1.0, **STRESS),
    "cartpole_relu_e40_lr3e-3": dict(env_id="CartPole-v1", total_steps=200_000, **{**STRESS, "lr": 3e-3}),
    "cartpole_relu_e80_lr1e-3": dict(env_id="CartPole-v1", total_steps=200_000, **{**STRESS, "epochs": 80}),
    "breakout_cnn_relu_e40_lr1e-3": dict(env_id="MinAtar/Breakout-v1", total_steps=150_000, **STRESS),
    "breakout_cnn_relu_e40_lr1e-3_pfo1": dict(env_id="MinAtar/Breakout-v1", total_steps=150_000, pfo_coef=1.0,
                                              **STRESS),
}
METRICS = ["episode_return", "actor_approx_rank", "actor_srank", "actor_effective_rank", "actor_dead_neurons",
           "actor_preactivation_norm", "ratio_below_mean", "excess_ratio", "kl_old_new", "policy_entropy"]


def summarize(name: str, fields: dict, run: al.Run, evaluation: pd.DataFrame) -> dict:
    h = run.history
    logged = h.dropna(subset=["actor_approx_rank"])
    steps = np.sort(logged.step.unique())
    marks = {f"{int(q * 100)}%": steps[int(q * (len(steps) - 1))] for q in (0.05, 0.5, 1.0)}
    window = 0.05 * h.step.max()
    row = dict(setting=name, fields=json.dumps(fields), seeds=len(run.seeds), wall_seconds=round(run.wall_time),
               greedy_mean=evaluation.return_mean.mean(), greedy_min=evaluation.return_mean.min())
    for metric in METRICS:
        for label, step in marks.items():
            if metric == "episode_return":
                value = h[(h.step > step - window) & (h.step <= step)].episode_return.mean()
            else:
                value = logged[logged.step == step][metric].mean()
            row[f"{metric}@{label}"] = value
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="setting names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the settings and exit")
    parser.add_argument("--log", default="results/collapse_search/log.csv")
    parser.add_argument("--runs", default="runs/collapse_search", help="cache directory of the runs")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="override every setting's budget (a smoke test; do not log such runs as evidence)")
    args = parser.parse_args()
    if args.list:
        for name, fields in SETTINGS.items():
            print(name, fields)
        return
    names = args.only or list(SETTINGS)
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; known: {sorted(SETTINGS)}")
    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
    for name in names:
        fields = SETTINGS[name] if args.total_steps is None else {**SETTINGS[name], "total_steps": args.total_steps}
        cfg = al.TrainConfig(algo="ppo", seeds=(0, 1, 2, 3), diagnostics_every=10, **fields)
        run, evaluation = run_cached(cfg, Path(args.runs) / name, progress=False)
        row = summarize(name, fields, run, evaluation)
        log = pd.concat([log[log.setting != name] if len(log) else log, pd.DataFrame([row])], ignore_index=True)
        log.to_csv(log_path, index=False)
        print(f"{name}: {row['wall_seconds']} s, greedy {row['greedy_mean']:.1f} (min {row['greedy_min']:.1f}), "
              f"dead units {row['actor_dead_neurons@5%']:.1f} -> {row['actor_dead_neurons@100%']:.1f}, "
              f"ratio_below_mean {row['ratio_below_mean@5%']:.2f} -> {row['ratio_below_mean@100%']:.2f}", flush=True)


if __name__ == "__main__":
    main()
