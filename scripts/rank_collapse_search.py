"""Search for a cheap setting where PPO's feature rank collapses (issue 13), on the non-stationary bandit.

Every setting tried is logged, including those where nothing collapsed: one row per setting in
``results/rank_collapse_search/log.csv``. For each rank measure (the PFO paper's uncentred 99% PCA rank
``approx_rank``, ``srank``, ``effective_rank``, ``feature_rank``) and for dead units, the row gives the trained
actor's value and the untrained actor's on the same states (``null_actor_*``, logged at the same update) at 5%,
50% and 100% of training, means over seeds, and at 100% the paired trained - untrained difference with its t
interval over seeds (`acpg_lab.stats.paired`). It also logs the training return around those marks and its mean
over each phase of the task (``return_phase_first`` / ``return_phase_last``: does the agent still re-learn after
the last shift?), the trust region (``ratio_below_mean``, ``frac_outside``) and the training time. Runs are cached
under ``runs/rank_collapse_search/`` and the log is rewritten after each setting, so an interrupted search loses
nothing and a rerun trains only what is missing.

    python scripts/rank_collapse_search.py [--only NAME ...] [--list] [--log CSV] [--runs DIR] [--seeds N]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import acpg_lab as al
from acpg_lab.experiments import run_cached
from acpg_lab.stats import paired

ENV = "acpg_lab/ShiftingBandit-v0"
SHIFT = 2048  # vector steps between re-labellings: 16 PPO updates of 8 envs x 128 steps
STRESS = dict(anneal_lr=False, lr=1e-3, ent_coef=0.0)
#: name -> TrainConfig fields (PPO on the shifting bandit, diagnostics every 4 updates, untrained null logged)
SETTINGS: dict[str, dict] = {
    "relu_e10": dict(activation="relu", epochs=10, **STRESS),
    "relu_e40": dict(activation="relu", epochs=40, **STRESS),
    "tanh_e10": dict(activation="tanh", epochs=10, **STRESS),
    "tanh_e40": dict(activation="tanh", epochs=40, **STRESS),
    "relu_e40_stationary": dict(activation="relu", epochs=40, env_kwargs=dict(shift_every=10**9), **STRESS),
    # after the first five: ReLU with 10 epochs lowered the rank below the null; does it keep falling with more
    # phases, and with longer phases (more learned per phase)?
    "relu_e10_12phases": dict(activation="relu", epochs=10, total_steps=2 * 98_304, **STRESS),
    "relu_e10_long_phases": dict(activation="relu", epochs=10, total_steps=2 * 98_304,
                                 env_kwargs=dict(shift_every=2 * SHIFT), **STRESS),
}
TOTAL_STEPS = 98_304  # 96 updates: 6 shifts, unless a setting names its own total_steps
RANKS = ["approx_rank", "srank", "effective_rank", "feature_rank", "dead_neurons"]
OTHER = ["ratio_below_mean", "frac_outside", "kl_old_new", "policy_entropy"]


def summarize(name: str, fields: dict, run: al.Run) -> dict:
    h = run.history
    logged = h.dropna(subset=["actor_approx_rank"])
    updates = np.sort(logged["update"].unique())
    marks = {f"{int(q * 100)}%": updates[int(q * (len(updates) - 1))] for q in (0.05, 0.5, 1.0)}
    row = dict(setting=name, fields=json.dumps(fields, sort_keys=True), env_id=run.config.env_id,
               seeds=len(run.seeds), total_steps=run.config.total_steps, train_seconds=round(run.wall_time, 1))
    window = max(1, int(0.05 * h["update"].max()))
    for label, update in marks.items():
        near = h[(h["update"] > update - window) & (h["update"] <= update)]
        row[f"return@{label}"] = near.episode_return.mean()
        at = logged[logged["update"] == update]
        for metric in RANKS:
            row[f"{metric}@{label}"] = at[f"actor_{metric}"].mean()
            row[f"null_{metric}@{label}"] = at[f"null_actor_{metric}"].mean()
        for metric in OTHER:
            row[f"{metric}@{label}"] = at[metric].mean()
    last = logged[logged["update"] == updates[-1]].set_index("seed")
    for metric in RANKS:
        diff = paired(last[f"actor_{metric}"], last[f"null_actor_{metric}"])
        row[f"{metric}_minus_null"] = diff["difference"]
        row[f"{metric}_minus_null_low"], row[f"{metric}_minus_null_high"] = diff["ci_low"], diff["ci_high"]
    shift = run.config.env_kwargs.get("shift_every", SHIFT) * run.config.num_envs  # in steps per seed
    phase = (h.step - 1) // shift
    per_phase = h.groupby(phase).episode_return.mean()
    row["phases"] = int(phase.max()) + 1
    row["return_phase_first"], row["return_phase_last"] = per_phase.iloc[0], per_phase.iloc[-1]
    row["return_mean"] = h.episode_return.mean()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="setting names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the settings and exit")
    parser.add_argument("--log", default="results/rank_collapse_search/log.csv")
    parser.add_argument("--runs", default="runs/rank_collapse_search", help="cache directory of the runs")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per setting (searching, not evidence)")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="budget per seed for every setting (a smoke test; name the log after it)")
    args = parser.parse_args()
    if args.list:
        for name, fields in SETTINGS.items():
            print(name, fields)
        return
    names = args.only or list(SETTINGS)
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; known: {sorted(SETTINGS)}")
    if args.seeds < 2:
        raise SystemExit(f"--seeds must be >= 2 (a paired interval needs two), got {args.seeds}")
    configs = {}
    for name in names:
        fields = {"total_steps": TOTAL_STEPS, **SETTINGS[name]}
        fields["env_kwargs"] = {"shift_every": SHIFT, **fields.get("env_kwargs", {})}
        if args.total_steps is not None:
            fields["total_steps"] = args.total_steps
        configs[name] = al.TrainConfig(env_id=ENV, algo="ppo", seeds=tuple(range(args.seeds)), device="cpu",
                                       diagnostics_every=4, diagnostics_null=True, label_source="optimal", **fields)
    for cfg in configs.values():  # every setting validated before the first trains
        cfg.resolve()
    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
    for name, cfg in configs.items():
        run, _ = run_cached(cfg, Path(args.runs) / f"{name}_{cfg.total_steps}_s{args.seeds}", episodes=1,
                            progress=False)
        row = summarize(name, SETTINGS[name], run)
        log = pd.concat([log[log.setting != name] if len(log) else log, pd.DataFrame([row])], ignore_index=True)
        log.to_csv(log_path, index=False)
        print(f"{name}: trained in {row['train_seconds']} s, return {row['return@5%']:.1f} -> "
              f"{row['return@100%']:.1f}, approx_rank {row['approx_rank@100%']:.1f} (null "
              f"{row['null_approx_rank@100%']:.1f}), srank {row['srank@100%']:.1f} (null "
              f"{row['null_srank@100%']:.1f}), dead {row['dead_neurons@100%']:.1f}", flush=True)


if __name__ == "__main__":
    main()
