"""The command line of the evidence (``python -m acpg_lab.evidence``): train the missing pieces of an experiment,
or recompute every table from the stored pieces.

    python -m acpg_lab.evidence run collapse           # trains the missing pieces of one experiment
    python -m acpg_lab.evidence run heads --only reinforce_cartpole
    python -m acpg_lab.evidence run heads --ray [--address HOST:6379]   # pieces in parallel on Ray
    python -m acpg_lab.evidence report [--check]       # recomputes every table from results/evidence/
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

import torch

from acpg_lab.entry import MissingExtra, OneLineParser, check_environment, fail
from acpg_lab.evidence.conditions import EXPERIMENTS
from acpg_lab.evidence.pieces import evidence_dir, run_experiment
from acpg_lab.evidence.report import report
from acpg_lab.paths import check_output_dir
from acpg_lab.ray_tasks import Interrupted, check_address, interrupt_on_signals

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m acpg_lab.evidence``: a usage error (argparse's, a bad ``ACPG_LAB_*`` variable, a ``--root``
    that cannot be written, an ``--only`` that matches nothing, a missing optional group) is one line on stderr,
    exit 2, before any training."""
    parser = OneLineParser(prog="python -m acpg_lab.evidence", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the missing pieces of an experiment")
    r.add_argument("experiment", choices=sorted(EXPERIMENTS))
    r.add_argument("--only", nargs="+", help="conditions whose name contains one of these")
    r.add_argument("--root", help="results directory (default: results/evidence of the repository)")
    r.add_argument("--ray", action="store_true", help="train the pieces as parallel Ray tasks (optional group sweep)")
    r.add_argument("--address", help="with --ray: join the Ray cluster at HOST:PORT (shared filesystem for --root)")
    r.add_argument("--num-cpus", type=int, help="with --ray and no --address: CPUs of the local Ray instance")
    rep = sub.add_parser("report", help="recompute every table from the stored pieces")
    rep.add_argument("--root")
    rep.add_argument("--check", action="store_true", help="fail if a stored table differs from the recomputed one")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "run" and (args.address or args.num_cpus is not None) and not args.ray:
        parser.error("--address and --num-cpus need --ray")
    try:
        check_environment()
        if args.command == "run" and args.address is not None:
            check_address(args.address)
        if args.command == "run":  # every piece is written under --root: checked before any training
            check_output_dir(evidence_dir(args.root), what="evidence directory --root")
            with contextlib.nullcontext() if args.ray else interrupt_on_signals():  # Ray's path has its own
                run_experiment(args.experiment, root=args.root, only=args.only, ray=args.ray, address=args.address,
                               num_cpus=args.num_cpus)
            return 0
        if not args.check:  # the tables are written to --root/tables
            check_output_dir(evidence_dir(args.root) / "tables", what="tables directory")
        return report(root=args.root, check=args.check)
    except (ValueError, MissingExtra) as err:  # a usage error (no matching --only, bad --num-cpus, ...): one line
        return fail(parser.prog, err)
    except Interrupted as stop:  # SIGINT or SIGTERM: the pieces stored so far are kept (each is written whole)
        done = f"{stop.finished} of {stop.total} pieces of this call finished and kept" if stop.total else \
            "the pieces stored so far are kept"
        print(f"{parser.prog}: stopped by {stop}: {done}; rerun the same command to continue", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
