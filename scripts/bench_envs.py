"""What batched environments buy: gymnasium's path (one vector env per seed) vs `acpg_lab.batched_envs`.

1. Environment steps per second through `SeedEnvs` (random actions, no network) at S seeds x E envs, for each
   id; also the batched env alone (its numpy step, without SeedEnvs' bookkeeping and torch conversion).
2. End-to-end `al.train` wall time of PPO on CartPole-v1 with the fast path on and off (``ACPG_LAB_FAST_ENVS``),
   with the package's preset (rl-zoo's: 8 envs x 32 steps, 20 epochs) and with CleanRL's settings (4 envs x 128
   steps, 4 epochs x 4 minibatches); the histories are compared too (they must be identical).
3. Where one `al.train` call with the fast path spends its time, per configuration: the loop's phases (and,
   inside them, the environment step, action sampling, the loss forward pass, gradient clipping) timed by
   wrapping the functions `acpg_lab.training` calls (a wrapped name that no longer exists is skipped).

Old and new are measured in the same run, interleaved and repeated; ratios are medians of the per-repeat
ratios, so a busy machine slows both sides alike.

    python scripts/bench_envs.py [--seeds 1 4 16 64] [--envs 8] [--steps 300] [--repeats 5]
                                 [--train-seeds 16] [--train-steps 20000] [--train-repeats 2]
                                 [--train-configs preset cleanrl]
"""

import argparse
import collections
import contextlib
import dataclasses
import functools
import os
import platform
import statistics
import time

import numpy as np
import torch

import acpg_lab as al
from acpg_lab.batched_envs import make_batched_env
from acpg_lab.envs import SeedEnvs


def time_seed_envs(env_id: str, seeds: int, envs: int, steps: int, fast: bool) -> float:
    """Seconds for ``steps`` steps of ``SeedEnvs`` (after a reset and a few warm-up steps)."""
    env = SeedEnvs(env_id, num_envs=envs, env_seeds=list(range(seeds)), device=torch.device("cpu"), fast=fast)
    n = int(env.single_action_space.n)
    actions = torch.randint(0, n, (steps + 5, seeds, envs), generator=torch.Generator().manual_seed(0))
    env.reset()
    for a in actions[:5]:
        env.step(a)
    start = time.perf_counter()
    for a in actions[5:]:
        env.step(a)
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


def time_batched_alone(env_id: str, seeds: int, envs: int, steps: int) -> float:
    env = make_batched_env(env_id, envs, list(range(seeds)))
    actions = np.random.default_rng(0).integers(0, int(env.single_action_space.n), (steps, seeds, envs))
    env.reset()
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return time.perf_counter() - start


def bench_env_steps(args: argparse.Namespace) -> None:
    print(f"env steps/s through SeedEnvs, random actions, {args.envs} envs per seed, {args.steps} steps, "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'env':<25} {'S':>4} {'gymnasium':>12} {'batched':>12} {'ratio':>7} {'env alone':>12}")
    for env_id in args.env_ids:
        for s in args.seeds:
            old, new, alone, ratios = [], [], [], []
            for _ in range(args.repeats):
                t_old = time_seed_envs(env_id, s, args.envs, args.steps, fast=False)
                t_new = time_seed_envs(env_id, s, args.envs, args.steps, fast=True)
                alone.append(time_batched_alone(env_id, s, args.envs, args.steps))
                old.append(t_old)
                new.append(t_new)
                ratios.append(t_old / t_new)
            total = s * args.envs * args.steps
            print(f"{env_id:<25} {s:>4} {total / statistics.median(old):>12,.0f} "
                  f"{total / statistics.median(new):>12,.0f} {statistics.median(ratios):>6.1f}x "
                  f"{total / statistics.median(alone):>12,.0f}", flush=True)


#: end-to-end configurations: the package's CartPole PPO preset, and CleanRL's PPO hyperparameters
TRAIN_CONFIGS = {
    "preset": {},
    "cleanrl": dict(num_envs=4, rollout_steps=128, epochs=4, minibatch_size=128, gamma=0.99, gae_lambda=0.95,
                    lr=2.5e-4, ent_coef=0.01, clip_coef=0.2, vf_coef=0.5, max_grad_norm=0.5),
}


def train_config(args: argparse.Namespace, name: str) -> al.TrainConfig:
    return al.TrainConfig(env_id="CartPole-v1", algo="ppo", seeds=tuple(range(args.train_seeds)),
                          total_steps=args.train_steps, **TRAIN_CONFIGS[name])


def bench_train(args: argparse.Namespace, name: str) -> None:
    cfg = train_config(args, name)
    times: dict[bool, list[float]] = {False: [], True: []}
    histories = {}
    previous = os.environ.get("ACPG_LAB_FAST_ENVS")
    al.train(dataclasses.replace(cfg, seeds=(0,), total_steps=cfg.resolve().batch_size), progress=False)  # warm-up
    try:
        for _ in range(args.train_repeats):
            for fast in (False, True):
                os.environ["ACPG_LAB_FAST_ENVS"] = "1" if fast else "0"
                start = time.perf_counter()
                run = al.train(cfg, progress=False)
                times[fast].append(time.perf_counter() - start)
                histories[fast] = run.history.drop(columns="time")
    finally:
        if previous is None:
            os.environ.pop("ACPG_LAB_FAST_ENVS", None)
        else:
            os.environ["ACPG_LAB_FAST_ENVS"] = previous
    ratios = [a / b for a, b in zip(times[False], times[True], strict=True)]
    total = args.train_seeds * args.train_steps
    print(f"al.train PPO CartPole-v1 {name}, {args.train_seeds} seeds x {args.train_steps} steps "
          f"(median of {args.train_repeats}): gymnasium {statistics.median(times[False]):.1f} s "
          f"({total / statistics.median(times[False]):,.0f} steps/s), batched {statistics.median(times[True]):.1f} s "
          f"({total / statistics.median(times[True]):,.0f} steps/s), speed-up {statistics.median(ratios):.2f}x, "
          f"identical histories: {histories[False].equals(histories[True])}", flush=True)


@contextlib.contextmanager
def phase_timers(totals: dict[str, float]):
    """Wrap the functions `acpg_lab.training` calls so each call adds its wall time to ``totals[name]``."""
    import acpg_lab.training as training

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - start
        return wrapper

    targets = [(training, "collect_rollout", "collect_rollout"), (SeedEnvs, "step", "  of which SeedEnvs.step"),
               (training, "sample_actions", "  of which sample_actions"), (training, "advantages", "advantages"),
               (training, "update", "update"), (training, "loss_fn", "  of which loss_fn (forward)"),
               (training, "clip_grad_norm_per_seed", "  of which clip_grad_norm_per_seed")]
    for _, _, name in targets:
        totals[name] = 0.0
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets if hasattr(owner, attr)]
    for owner, attr, name in targets:
        if hasattr(owner, attr):
            setattr(owner, attr, timed(name, getattr(owner, attr)))
    try:
        yield
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)


def bench_phases(args: argparse.Namespace, name: str) -> None:
    cfg = train_config(args, name)
    totals: dict[str, float] = collections.defaultdict(float)
    with phase_timers(totals):
        start = time.perf_counter()
        al.train(cfg, progress=False)
        total = time.perf_counter() - start
    print(f"one al.train call with the fast path, {name}, {args.train_seeds} seeds x {args.train_steps} steps: "
          f"{total:.1f} s")
    top = sum(v for k, v in totals.items() if not k.startswith(" "))
    for name, seconds in [*totals.items(), ("other (logging, instruments, setup)", total - top)]:
        print(f"  {name:<38} {seconds:7.2f} s {seconds / total:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-ids", nargs="+", default=["CartPole-v1", "Acrobot-v1", "acpg_lab/IdealGrid-v0"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-seeds", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=20_000)
    parser.add_argument("--train-repeats", type=int, default=2, help="0 skips the training benchmark")
    parser.add_argument("--train-configs", nargs="+", default=list(TRAIN_CONFIGS), choices=list(TRAIN_CONFIGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"numpy {np.__version__}")
    bench_env_steps(args)
    if args.train_repeats:
        for name in args.train_configs:
            bench_train(args, name)
        for name in args.train_configs:
            bench_phases(args, name)


if __name__ == "__main__":
    main()
