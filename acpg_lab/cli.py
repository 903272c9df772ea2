"""The ``acpg-lab`` command line.

    acpg-lab train --env CartPole-v1 --algo ppo --head etf --seeds 0 1 2 3 --steps 100000 --out runs/etf
    acpg-lab demo --out runs/demo     # PPO with a learnable and a fixed-ETF head on CartPole, plotted
    acpg-lab notebooks --profile ci --out runs/notebooks [--device cpu] [--only 00_simplex_etf]
    acpg-lab notebooks --profile default --out runs/sweep --only 04_acpg_meets_pfo --param seeds=[0,1,2,3,4,5,6,7]
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

from acpg_lab.config import TrainConfig

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _parse_pairs(items: list[str], flag: str, fields: set[str] | None = None) -> dict:
    """``key=value`` pairs given to ``flag``; values are Python literals (strings may be bare). With ``fields``,
    every key must be one of them (TrainConfig fields for --set; notebook parameters are checked by the runner)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        if fields is not None and key not in fields:
            raise ValueError(f"{flag} {key}: not a TrainConfig field; fields are {sorted(fields)}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _train(args: argparse.Namespace) -> int:
    import acpg_lab as al

    cfg = TrainConfig(env_id=args.env, algo=args.algo, head=args.head, seeds=tuple(args.seeds),
                      total_steps=args.steps, device=args.device, **_parse_pairs(args.set, "--set", FIELDS))
    run = al.train(cfg, progress=not args.quiet)
    out = run.save(args.out)
    ev = run.evaluate(episodes=args.eval_episodes)
    ev.to_csv(out / "evaluation.csv", index=False)
    print(f"trained {len(cfg.seeds)} seeds x {cfg.total_steps} steps in {run.wall_time:.1f} s -> {out}")
    print(ev.to_string(index=False))
    return 130 if run.interrupted else 0


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import acpg_lab as al
    from acpg_lab.plotting import plot_curves

    out = Path(args.out)
    histories, rows = {}, []
    for head in ("linear", "etf"):
        cfg = TrainConfig(env_id="CartPole-v1", algo="ppo", head=head, seeds=tuple(args.seeds),
                          total_steps=args.steps, device=args.device)
        run = al.train(cfg, progress=not args.quiet)
        run.save(out / f"ppo_{head}")
        ev = run.evaluate(episodes=10).assign(head=head, train_seconds=round(run.wall_time, 1))
        histories[f"PPO, {head} head"] = run.history
        rows.append(ev)
    import pandas as pd

    table = pd.concat(rows)
    table.to_csv(out / "evaluation.csv", index=False)
    ax = plot_curves(histories, title="PPO on CartPole-v1: learnable vs fixed simplex-ETF head")
    ax.set_ylabel("episode return")
    plt.savefig(out / "learning_curves.png", dpi=120, bbox_inches="tight")
    print(table.to_string(index=False))
    print(f"figure and runs written to {out}")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from acpg_lab.runner import NotebookFailed, run_notebooks

    try:
        executed = run_notebooks(args.profile, args.out, device=args.device, only=args.only, results=args.results,
                                 parameters=_parse_pairs(args.param, "--param"))
    except NotebookFailed as err:
        print(f"acpg-lab: notebook failed: {err}", file=sys.stderr)
        return 1
    print(f"{len(executed)} notebook(s) executed into {args.out} (figures in {Path(args.out) / 'figures'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acpg-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="seeds, trained as one batch")
    common.add_argument("--steps", type=int, default=100_000, help="environment steps per seed")
    common.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    common.add_argument("--out", required=True, help="output directory")
    common.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("train", parents=[common], help="train one configuration and save the run")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--algo", default="ppo", choices=["reinforce", "a2c", "ppo"])
    p.add_argument("--head", default="linear", choices=["linear", "etf"])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="any other TrainConfig field")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.set_defaults(func=_train)

    p = sub.add_parser("demo", parents=[common], help="PPO with both heads on CartPole, plotted")
    p.set_defaults(func=_demo)

    p = sub.add_parser("notebooks", help="execute the notebooks with papermill (the main job)")
    p.add_argument("--profile", default="default", choices=["ci", "default", "full"])
    p.add_argument("--out", required=True, help="directory for executed notebooks and figures")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="override the profile's device")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME", help="notebook names to run (default: all)")
    p.add_argument("--param", nargs="*", default=[], metavar="NAME=VALUE",
                   help="override a notebook parameter of the profile (a Python literal, e.g. seeds=[0,1,2]); "
                        "every selected notebook must take it")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="also copy each notebook's CSV tables, with provenance, to DIR/<notebook> (e.g. results)")
    p.set_defaults(func=_notebooks)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"acpg-lab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
