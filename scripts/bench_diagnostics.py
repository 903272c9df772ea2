"""Cost of logging diagnostics every update: PPO on CartPole with diagnostics_every=1 vs 0, same seeds.

Prints the wall times and their ratio (target <= 1.10). Runs alternate to cancel drifts in machine load.

    python scripts/bench_diagnostics.py [--steps 50000] [--seeds 4] [--repeats 3] [--threads 1]
"""

import argparse
import statistics

import torch

import acpg_lab as al


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(args.repeats):
        for every in (0, 1):
            cfg = al.TrainConfig(env_id="CartPole-v1", algo="ppo", seeds=tuple(range(args.seeds)),
                                 total_steps=args.steps, diagnostics_every=every)
            times[every].append(al.train(cfg, progress=False).wall_time)
    off, on = statistics.median(times[0]), statistics.median(times[1])
    print(f"PPO CartPole, {args.seeds} seeds x {args.steps} steps, {args.threads} thread(s), median of "
          f"{args.repeats}: diagnostics off {off:.2f} s, every update {on:.2f} s, ratio {on / off:.3f}")


if __name__ == "__main__":
    main()
