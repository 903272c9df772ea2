"""What seed batching buys: S seeds trained as one batched model vs the same seeds one after another.

Both sides train the same configurations (and, by batch independence, produce identical histories); the
script prints the wall times, env steps per second and the speed-up ratio.

    python scripts/bench_seed_batching.py [--algo ppo] [--seeds 4] [--steps 50000] [--threads 1]
"""

import argparse
import time

import pandas as pd
import torch

import acpg_lab as al
from acpg_lab.algorithms import ALGORITHMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo", choices=list(ALGORITHMS))
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = tuple(range(args.seeds))

    def run(batch: tuple[int, ...]) -> pd.DataFrame:
        cfg = al.TrainConfig(env_id="CartPole-v1", algo=args.algo, seeds=batch, total_steps=args.steps)
        return al.train(cfg, progress=False).history.drop(columns="time")

    start = time.perf_counter()
    batched = run(seeds)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    alone = pd.concat([run((s,)) for s in seeds], ignore_index=True)
    t_alone = time.perf_counter() - start
    same = batched.equals(alone)
    total = args.seeds * args.steps
    print(f"{args.algo} CartPole, {args.seeds} seeds x {args.steps} steps, {args.threads} thread(s): batched "
          f"{t_batched:.1f} s ({total / t_batched:,.0f} steps/s), one by one {t_alone:.1f} s "
          f"({total / t_alone:,.0f} steps/s), speed-up {t_alone / t_batched:.2f}x, identical histories: {same}")


if __name__ == "__main__":
    main()
