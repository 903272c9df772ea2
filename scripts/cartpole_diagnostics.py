"""What the diagnostics show on PPO CartPole: a few numbers per metric at the start, middle and end of training.

    python scripts/cartpole_diagnostics.py [--steps 200000] [--seeds 4] [--head linear] [--out runs/diag]

Prints, per metric, the mean over seeds (and the min..max across seeds) at 5%, 50% and 100% of training, and the
plasticity probe on snapshots. Writes the run (history.csv and friends) to --out.
"""

import argparse

import numpy as np
import torch

import acpg_lab as al

METRICS = ["episode_return", "policy_entropy", "actor_effective_rank", "actor_approx_rank", "actor_srank",
           "actor_feature_rank", "actor_dead_neurons", "actor_feature_norm", "actor_preactivation_norm",
           "critic_approx_rank", "critic_feature_norm", "ratio_below_mean", "ratio_above_mean", "excess_ratio",
           "frac_outside", "kl_old_new", "preact_change", "nc1", "equinorm_features", "equinorm_weights",
           "max_angle_weights", "self_duality", "ncc_mismatch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--head", default="linear", choices=["linear", "etf"])
    parser.add_argument("--every", type=int, default=10, help="diagnostics every so many updates")
    parser.add_argument("--out", default="runs/cartpole_diagnostics")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = al.TrainConfig(env_id="CartPole-v1", algo="ppo", head=args.head, seeds=tuple(range(args.seeds)),
                         total_steps=args.steps, diagnostics_every=args.every, snapshot_every=100)
    run = al.train(cfg)
    run.save(args.out)
    h = run.history
    logged = h.dropna(subset=["nc1"])
    steps = np.sort(logged.step.unique())
    marks = [steps[int(q * (len(steps) - 1))] for q in (0.05, 0.5, 1.0)]
    print(f"PPO/{args.head} CartPole-v1, {args.seeds} seeds x {args.steps} steps, {run.wall_time:.0f} s; "
          f"mean over seeds [min..max] at steps {[int(m) for m in marks]} (labels: agent's greedy action)")
    for metric in METRICS:
        cells = []
        for step in marks:
            near = h[(h.step > step - 5 * cfg.resolve().batch_size) & (h.step <= step)] if metric == "episode_return" \
                else logged[logged.step == step]
            per_seed = near.groupby("seed")[metric].mean()
            cells.append(f"{per_seed.mean():9.4g} [{per_seed.min():.3g}..{per_seed.max():.3g}]")
        print(f"{metric:26s}" + "  ".join(cells))
    probe = run.plasticity().groupby("step").plasticity_kl.agg(["mean", "min", "max"])
    print("plasticity probe (KL after 200 Adam steps fitting a fresh actor; higher = less plastic):")
    print(probe.to_string(float_format=lambda v: f"{v:.4f}"))
    print(run.evaluate(10).to_string(index=False))


if __name__ == "__main__":
    main()
