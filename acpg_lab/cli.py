"""The ``acpg-lab`` command line.

    acpg-lab train --env CartPole-v1 --algo ppo --head etf --seeds 0 1 2 3 --steps 100000 --out runs/etf
    acpg-lab train ... --out runs/etf --checkpoint-every 20 [--resume]   # crash-safe; --resume continues it
    acpg-lab sweep sweep.toml --out runs/sweep [--address HOST:6379]     # a grid of runs on Ray (see acpg_lab.sweep)
    acpg-lab demo --out runs/demo     # PPO with a learnable and a fixed-ETF head on CartPole, plotted
    acpg-lab notebooks --profile ci --out runs/notebooks [--device cpu] [--only 00_simplex_etf]
    acpg-lab notebooks --profile default --out runs/sweep --only 04_acpg_meets_pfo --param seeds=[0,1,2,3,4,5,6,7]
    acpg-lab lab [--profile ci]       # JupyterLab from this environment, at the repository, notebook 00 open
    acpg-lab kernel                   # register the "acpg-lab (Python 3.x)" kernel for any JupyterLab of this user
    acpg-lab book --profile ci --out site   # execute the notebooks, then build a static HTML book of them
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
from pathlib import Path

from acpg_lab.algorithms import ALGORITHMS
from acpg_lab.checks import check_int
from acpg_lab.config import HEADS, TrainConfig
from acpg_lab.entry import MissingExtra, OneLineParser, check_environment, fail

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

    pairs = _parse_pairs(args.set, "--set", FIELDS)
    check_int("--eval-episodes", args.eval_episodes, 1)
    if args.checkpoint_every is not None:
        pairs["checkpoint_every"] = args.checkpoint_every
    cfg = TrainConfig(env_id=args.env, algo=args.algo, head=args.head, seeds=tuple(args.seeds),
                      total_steps=args.steps, device=args.device, **pairs)
    from acpg_lab.lock import directory_lock
    from acpg_lab.manifest import read_manifest, write_manifest
    from acpg_lab.store import write_atomic_with

    out = Path(args.out)
    with directory_lock(out, label="--out"):  # one writer from training to the evaluation table
        run = al.train(cfg, progress=not args.quiet, run_dir=out, resume=args.resume)
        if run.interrupted:
            print(f"interrupted; rerun with --resume to continue from the last checkpoint in {out}", file=sys.stderr)
            return 130
        ev = run.evaluate(episodes=args.eval_episodes)
        write_atomic_with(out / "evaluation.csv", lambda tmp: ev.to_csv(tmp, index=False))
        listed = read_manifest(out)
        if listed is not None:  # the run's manifest, now listing the evaluation too
            write_manifest(out, [*listed["files"], "evaluation.csv"])
    print(f"trained {len(cfg.seeds)} seeds x {cfg.total_steps} steps in {run.wall_time:.1f} s -> {out}")
    print(ev.to_string(index=False))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from acpg_lab.ray_tasks import Interrupted
    from acpg_lab.sweep import run_sweep

    try:
        result = run_sweep(args.spec, args.out, address=args.address, num_cpus=args.num_cpus,
                           progress=not args.quiet)
    except Interrupted as stop:
        print(f"acpg-lab: sweep stopped by {stop}: {stop.finished} of {stop.total} tasks finished and kept in "
              f"{args.out}, the running ones cancelled (they resume from their checkpoints); rerun the same command "
              "to continue", file=sys.stderr)
        return stop.exit_code
    print(f"{result.tasks} tasks ({result.trained} trained or resumed now, {result.steps} steps) -> {result.table}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import acpg_lab as al
    from acpg_lab.paths import check_output_dir
    from acpg_lab.plotting import plot_curves

    configs = {head: TrainConfig(env_id="CartPole-v1", algo="ppo", head=head, seeds=tuple(args.seeds),
                                 total_steps=args.steps, device=args.device).resolve() for head in ("linear", "etf")}
    out = check_output_dir(args.out, what="--out", subdirs=[f"ppo_{head}" for head in configs],
                           files=["evaluation.csv", "learning_curves.png"])
    histories, rows = {}, []
    for head, cfg in configs.items():
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


KERNEL_NAME = "acpg-lab"


def kernel_display_name() -> str:
    return f"acpg-lab (Python {sys.version_info.major}.{sys.version_info.minor})"


def _kernel(args: argparse.Namespace) -> int:
    from ipykernel.kernelspec import install

    if args.prefix is not None:  # the kernel spec goes to PREFIX/share/jupyter/kernels
        from acpg_lab.paths import check_output_dir

        check_output_dir(args.prefix, what="--prefix")
    path = install(user=args.prefix is None, prefix=args.prefix, kernel_name=KERNEL_NAME,
                   display_name=kernel_display_name())
    print(f"kernel {kernel_display_name()!r} (name {KERNEL_NAME}) registered in {path}; it runs {sys.executable}")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from acpg_lab.profiles import PROFILE_ENV, PROFILES, output_root, repository_root

    env = dict(os.environ)
    if args.profile:
        env[PROFILE_ENV] = args.profile
    elif env.get(PROFILE_ENV, "") not in ("", *PROFILES):
        raise ValueError(f"environment variable {PROFILE_ENV} must be one of {PROFILES} (or unset), "
                         f"got {env[PROFILE_ENV]!r}")
    root = Path(args.root_dir).resolve() if args.root_dir else repository_root()
    if root is None or not (root / "notebooks" / "00_simplex_etf.ipynb").is_file():
        raise ValueError(f"acpg-lab lab opens the notebooks of a checkout of the repository; "
                         f"{root or Path(__file__).resolve().parents[1]} has no notebooks/00_simplex_etf.ipynb")
    try:
        import jupyterlab  # noqa: F401
    except ImportError as err:
        raise ValueError("JupyterLab is not installed in this environment: pip install -e '.[dev]'") from err
    profile = env.get(PROFILE_ENV) or "default"
    print(f"acpg-lab: JupyterLab from {sys.prefix}, at {root}; notebooks use the {profile} profile "
          f"({PROFILE_ENV}) and write to {output_root() / 'runs/notebooks'}", flush=True)
    from jupyter_core.paths import jupyter_runtime_dir

    # Kernels over Unix sockets in Jupyter's runtime directory (no "running over TCP without encryption" warning),
    # where its path leaves room for the socket names (a Unix socket path has at most 107 bytes).
    ipc = len(str(Path(jupyter_runtime_dir()).resolve())) <= 56
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}",
           "--ServerApp.default_url=/lab/tree/notebooks/00_simplex_etf.ipynb",
           *(["--KernelManager.transport=ipc"] if ipc else []), *args.jupyter_args]
    os.execve(sys.executable, cmd, env)
    return 0  # pragma: no cover - execve does not return


def _book(args: argparse.Namespace) -> int:
    from acpg_lab.book import BookError, build_book
    from acpg_lab.runner import NotebookFailed

    try:
        build_book(args.out, profile=args.profile, runs=args.runs, execute=not args.no_execute, only=args.only,
                   device=args.device)
    except (BookError, NotebookFailed) as err:
        print(f"acpg-lab: book: {err}", file=sys.stderr)
        return 1
    return 0


def _common_options() -> argparse.ArgumentParser:
    """The options that ``train`` and ``demo`` share (seeds, steps, device, output, progress bar)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="seeds, trained as one batch")
    common.add_argument("--steps", type=int, default=100_000, help="environment steps per seed")
    common.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    common.add_argument("--out", required=True, help="output directory")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    return common


def _add_training_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``train`` (one configuration), ``sweep`` (a TOML grid on Ray) and ``demo`` (both heads, plotted)."""
    p = sub.add_parser("train", parents=[common], help="train one configuration and save the run")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--algo", default="ppo", choices=list(ALGORITHMS),
                   help="; ".join(f"{name}: {spec.summary}" for name, spec in ALGORITHMS.items()))
    p.add_argument("--head", default="linear", choices=list(HEADS),
                   help="linear (learnable), etf (fixed simplex ETF, ACPG) or random (fixed random unit rows)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="any other TrainConfig field")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write a checkpoint to --out every N updates (TrainConfig.checkpoint_every)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (a finished run is only evaluated)")
    p.set_defaults(func=_train)

    p = sub.add_parser("sweep", help="run a TOML grid of conditions x seed groups on Ray (acpg_lab.sweep)",
                       description="Train every unfinished task of the sweep SPEC on Ray and gather the histories "
                                   "into OUT/sweep.parquet; rerunning continues (finished tasks are kept, running "
                                   "ones resume from their checkpoints).")
    p.add_argument("spec", help="the sweep's TOML file (sections [sweep], [base], [grid], [resources])")
    p.add_argument("--out", required=True, help="the sweep's directory")
    p.add_argument("--address", default=None,
                   help="join the Ray cluster at HOST:PORT (started with `ray start --head`); default: a local Ray "
                        "instance sized to this machine")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("demo", parents=[common], help="PPO with both heads on CartPole, plotted")
    p.set_defaults(func=_demo)


def _add_notebook_commands(sub: argparse._SubParsersAction) -> None:
    """``notebooks`` (execute with papermill), ``lab`` (JupyterLab), ``kernel`` (register this environment) and
    ``book`` (the static HTML book)."""
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

    p = sub.add_parser("lab", help="open the notebooks in JupyterLab, from this environment",
                       description="Start JupyterLab from this environment at the repository root, with notebook "
                                   "00 open. Other arguments go to jupyter lab (e.g. --port 8890 --no-browser).")
    p.add_argument("--profile", default=None, choices=["ci", "default", "full"],
                   help="profile of notebooks whose parameters cell leaves it unset (sets ACPG_LAB_PROFILE); "
                        "default: $ACPG_LAB_PROFILE, else default")
    p.add_argument("--root-dir", default=None, help="the directory JupyterLab serves, holding notebooks/ "
                                                    "(default: the repository this acpg_lab comes from)")
    p.set_defaults(func=_lab)

    p = sub.add_parser("kernel", help="register this environment as the Jupyter kernel 'acpg-lab (Python 3.x)'")
    p.add_argument("--prefix", default=None, help="install under PREFIX/share/jupyter/kernels instead of the "
                                                   "user's Jupyter directory")
    p.set_defaults(func=_kernel)

    p = sub.add_parser("book", help="build a static HTML book of the executed notebooks (Jupyter Book 1.x)")
    p.add_argument("--profile", default="default", choices=["ci", "default", "full"])
    p.add_argument("--out", required=True, help="directory of the HTML site (replaced if it holds a book)")
    p.add_argument("--runs", default="runs/notebooks",
                   help="where the notebooks are executed, or with --no-execute read from (default: the main "
                        "job's runs/notebooks, so cached training runs are reused)")
    p.add_argument("--no-execute", action="store_true", help="use the executed notebooks already in --runs")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME", help="notebook names (default: all)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="override the profile's device")
    p.set_defaults(func=_book)


def _build_parser() -> argparse.ArgumentParser:
    """The ``acpg-lab`` argument parser with every subcommand; each subcommand's ``func`` runs it."""
    parser = OneLineParser(prog="acpg-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = _common_options()
    _add_training_commands(sub, common)
    _add_notebook_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``acpg-lab`` command: parse ``argv`` and run the subcommand. A usage error (argparse's, a ValueError
    raised before any work: a bad argument, environment variable or output path) or a missing optional group is
    one line on stderr, ``acpg-lab: error: ...``, exit code 2."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "lab":
        args.jupyter_args = extra  # everything acpg-lab lab does not know goes to jupyter lab
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        check_environment()
        return args.func(args)
    except (ValueError, MissingExtra) as err:
        return fail("acpg-lab", err)


if __name__ == "__main__":
    sys.exit(main())
