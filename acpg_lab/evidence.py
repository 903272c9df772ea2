"""The evidence behind `REPRODUCTION.md`'s ACPG and PFO rows: experiments defined once here, trained in cached pieces
(one condition x one seed group per piece), stored compactly under ``results/evidence/`` and summarised from
what is stored, so every number can be recomputed without training anything.

    python -m acpg_lab.evidence run collapse           # trains the missing pieces of one experiment
    python -m acpg_lab.evidence run heads --only reinforce_cartpole
    python -m acpg_lab.evidence run heads --ray [--address HOST:6379]   # pieces in parallel on Ray
    python -m acpg_lab.evidence report [--check]       # recomputes every table from results/evidence/

A piece is written atomically (temporary file, then rename) when it finishes, so an interrupted run loses at most
the piece in progress and the next call trains only what is missing. Per piece: ``history.parquet`` (every
per-seed, per-update column, float32), ``evaluation.csv`` (greedy and sampled returns of every seed on 10 unseen
episodes each) and ``meta.json`` (the resolved config, versions, wall time).

Seeds: the settings (budgets, learning rates, the dense bandit's dimension) were chosen on seeds 0-9 in earlier
runs and in tuning; every experiment here uses held-out seeds (100+ for collapse, 200+ for heads; 16-31 for pfo,
whose setting seeds 0-15 chose in notebooks 03/04 and the logged searches).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from acpg_lab.config import TrainConfig
from acpg_lab.metric_registry import require
from acpg_lab.profiles import repository_root
from acpg_lab.ray_tasks import run_tasks
from acpg_lab.store import MARKERS, check_stored_config, is_finished, write_atomic, write_atomic_with
from acpg_lab.training import train

__all__ = ["Condition", "EXPERIMENTS", "evidence_dir", "run_experiment", "load_condition", "stored_pieces", "piece_dir",
           "stored_table", "complete"]


@dataclasses.dataclass(frozen=True)
class Condition:
    """One arm of an experiment: the config (without seeds) and the seeds it runs, in groups of ``group``."""

    config: dict
    seeds: tuple[int, ...]
    group: int = 10
    checkpoint_every: int = 0  #: updates between checkpoints of a piece in progress (long pieces: resume, not redo)
    keep: tuple[str, ...] | None = None  #: the history columns stored (None: all); dense diagnostics need fewer

    def stored(self, history: pd.DataFrame) -> pd.DataFrame:
        return history if self.keep is None else history[[c for c in history.columns if c in self.keep]]

    def groups(self) -> list[tuple[int, ...]]:
        return [self.seeds[i:i + self.group] for i in range(0, len(self.seeds), self.group)]


COLLAPSE_SEEDS = tuple(range(100, 110))
HEAD_SEEDS = tuple(range(200, 210))
#: the four short tasks (minutes per arm) take 10 more held-out seeds, 20 in all: their differences are small
HEAD_SEEDS_SHORT = tuple(range(200, 220))
_DENSE = dict(obs="embedding", embedding_dim=16)
_COLLAPSE = dict(algo="ppo", head="linear", label_source="optimal", diagnostics_every=10, diagnostics_null=True,
                 lr=1e-3, total_steps=200_000)


def _collapse(env_id: str, **kw) -> Condition:
    return Condition(dict(_COLLAPSE, env_id=env_id, **kw), COLLAPSE_SEEDS)


#: The four head arms of the ETF comparison, all without a bias (ACPG's head has none): the learnable head as
#: usually initialised (gain 0.01), the learnable head with the fixed heads' initial logit scale, a fixed random
#: head (fixed, not equiangular) and the fixed ETF.
HEAD_ARMS = {"linear": dict(head="linear", head_bias=False),
             "linear_scaled": dict(head="linear", head_bias=False, head_init_gain=1.0),
             "random": dict(head="random"),
             "etf": dict(head="etf")}

#: (task name) -> (config shared by the arms, threshold of "solved" for steps-to-threshold). The last three take
#: CPU hours (LunarLander through gymnasium's Box2D, MinAtar's CNN): they run in pieces of 5 seeds, MinAtar's with
#: checkpoints, and the tables include a task once all its pieces are stored.
HEAD_TASKS = {
    "reinforce_cartpole": (dict(env_id="CartPole-v1", algo="reinforce", total_steps=300_000), 475.0),
    "a2c_cartpole": (dict(env_id="CartPole-v1", algo="a2c", total_steps=500_000), 475.0),
    "ppo_cartpole": (dict(env_id="CartPole-v1", algo="ppo", total_steps=150_000), 475.0),
    "ppo_acrobot": (dict(env_id="Acrobot-v1", algo="ppo", total_steps=500_000), -100.0),
    "ppo_lunarlander": (dict(env_id="LunarLander-v3", algo="ppo", total_steps=1_000_000), 100.0),
    "ppo_minatar_breakout": (dict(env_id="MinAtar/Breakout-v1", algo="ppo", total_steps=1_000_000), 10.0),
    "ppo_minatar_asterix": (dict(env_id="MinAtar/Asterix-v1", algo="ppo", total_steps=1_000_000), 5.0),
}
_LONG = {"ppo_lunarlander": 0, "ppo_minatar_breakout": 50, "ppo_minatar_asterix": 50}  # task -> checkpoint_every


def _heads() -> dict[str, Condition]:
    out = {}
    for task, (shared, _) in HEAD_TASKS.items():
        for arm, head in HEAD_ARMS.items():
            config = dict(shared, **head, diagnostics_every=25, diagnostics_null=True)
            out[f"{task}/{arm}"] = Condition(config, HEAD_SEEDS if task in _LONG else HEAD_SEEDS_SHORT,
                                             group=5 if task in _LONG else 10, checkpoint_every=_LONG.get(task, 0))
    return out


PFO_SEEDS = tuple(range(16, 32))
PFO_EPOCHS = (10, 20, 40, 80)
PFO_BETAS = (0.0, 0.1, 1.0, 10.0)
#: The stressed PPO setting of notebooks 03/04 (CartPole, ReLU, constant lr 1e-3, no entropy bonus), diagnosed
#: every 2nd update (the lead-lag tests need dense series) with the untrained null, snapshots for the probe.
PFO_BASE = dict(env_id="CartPole-v1", algo="ppo", head="linear", activation="relu", lr=1e-3, anneal_lr=False,
                ent_coef=0.0, clip_coef=0.2, total_steps=150_000, diagnostics_every=2, diagnostics_null=True,
                snapshot_every=100)
#: The non-stationary bandit where the uncentred rank fell below the null in the logged search
#: (results/rank_collapse_search: ReLU, 10 epochs, 12 phases).
SHIFTING_BASE = dict(env_id="acpg_lab/ShiftingBandit-v0", algo="ppo", head="linear", activation="relu", lr=1e-3,
                     anneal_lr=False, ent_coef=0.0, total_steps=196_608, diagnostics_every=2,
                     diagnostics_null=True, snapshot_every=16)


#: what a pfo piece stores of the history (diagnosed every 2nd update, so everything would be ~1.2 MB per cell):
#: the return, the losses, the actor's representation and its untrained null, the trust region
PFO_METRICS = require(("episode_return", "policy_entropy", "preact_change", "ratio_below_mean", "ratio_above_mean",
                       "frac_outside", "excess_ratio", "kl_old_new", "ratio_below_mean_adv_pos",
                       "ratio_below_mean_adv_neg", "frac_outside_adv_pos", "frac_outside_adv_neg"))
PFO_NULL_METRICS = require(("actor_effective_rank", "actor_approx_rank", "actor_srank", "actor_dead_neurons",
                            "actor_preactivation_norm", "actor_feature_norm"), null=True)
PFO_COLUMNS = ("seed", "update", "step", "episode_length", "episodes", "approx_kl", "clip_frac", "loss_value",
               "loss_policy", "entropy", "grad_norm_actor", "grad_norm_critic", *PFO_METRICS, *PFO_NULL_METRICS,
               *(f"null_{m}" for m in PFO_NULL_METRICS))


def _pfo() -> dict[str, Condition]:
    """Dose-response of issue 13 on held-out seeds 16-31 (seeds 0-15 chose the settings), one piece of 16 seeds
    per cell. Ordered so that the cells most claims rest on run first."""
    def cell(base: dict, **kw) -> Condition:
        return Condition(dict(base, **kw), PFO_SEEDS, group=16, keep=PFO_COLUMNS)

    out = {f"cartpole/e{e}_b0": cell(PFO_BASE, epochs=e) for e in PFO_EPOCHS}
    out |= {f"cartpole/e{e}_b1": cell(PFO_BASE, epochs=e, pfo_coef=1.0) for e in PFO_EPOCHS}
    out |= {f"shifting/e{e}_b{b:g}": cell(SHIFTING_BASE, epochs=e, pfo_coef=b) for e in (10, 40) for b in (0, 1)}
    out |= {f"cartpole/e40_{arm}_b{b:g}": cell(PFO_BASE, epochs=40, pfo_coef=b, **HEAD_ARMS[arm])
            for arm in ("linear", "etf") for b in (0, 1)}  # ETF x PFO: both arms without a bias
    out["cartpole/e40_shared_b0"] = cell(PFO_BASE, epochs=40, shared_trunk=True)
    out |= {f"cartpole/e{e}_b{b:g}": cell(PFO_BASE, epochs=e, pfo_coef=b) for b in (0.1, 10.0) for e in PFO_EPOCHS}
    out |= {f"cartpole/e{e}_all10": cell(PFO_BASE, epochs=e, pfo_coef=10.0, pfo_layers="all") for e in PFO_EPOCHS}
    out |= {f"shifting/e{e}_b10": cell(SHIFTING_BASE, epochs=e, pfo_coef=10.0) for e in (10, 40)}
    return out


#: experiment -> condition -> `Condition`
EXPERIMENTS: dict[str, dict[str, Condition]] = {
    "collapse": {
        "onehot/balanced": _collapse("acpg_lab/ActionBandit-v0"),
        "onehot/imbalanced": _collapse("acpg_lab/ActionBandit-imbalanced-v0"),
        "onehot/zipf": _collapse("acpg_lab/ActionBandit-zipf-v0"),
        "dense/balanced": _collapse("acpg_lab/ActionBandit-dense-v0"),
        "dense/imbalanced": _collapse("acpg_lab/ActionBandit-v0", env_kwargs=dict(_DENSE, imbalance=1.0)),
        "dense/zipf": _collapse("acpg_lab/ActionBandit-v0", env_kwargs=dict(_DENSE, visitation="zipf")),
        "dense/balanced_etf": _collapse("acpg_lab/ActionBandit-dense-v0", head="etf"),
        "grid/exploring_starts": _collapse("acpg_lab/IdealGrid-v0"),
    },
    "heads": _heads(),
    "pfo": _pfo(),
    # the paper's exploration ablation on one MinAtar game: epsilon-greedy on top of the policy; epsilon = 0 is
    # heads/ppo_minatar_breakout (same seeds and config), so only 0.01 and 0.1 are trained here
    "exploration": {f"eps{eps}/{arm}": Condition(dict(HEAD_TASKS["ppo_minatar_breakout"][0], **HEAD_ARMS[arm],
                                                      explore_epsilon=eps, diagnostics_every=25,
                                                      diagnostics_null=True),
                                                 HEAD_SEEDS, group=5, checkpoint_every=50)
                    for eps in (0.01, 0.1) for arm in ("linear", "etf")},
}


PIECE = MARKERS["piece"][0]  #: the file a finished piece writes last


def evidence_dir(root: str | Path | None = None) -> Path:
    """``results/evidence`` of the repository (or under ``root``)."""
    return Path(root) if root is not None else repository_root() / "results" / "evidence"


def piece_dir(root: Path, experiment: str, condition: str, seeds: Sequence[int]) -> Path:
    return root / experiment / condition / f"seeds_{seeds[0]}-{seeds[-1]}"


def _compact(history: pd.DataFrame, max_rows_per_seed: int = 1000) -> pd.DataFrame:
    """The stored form of a history: float64 columns as float32 (far finer than any difference between seeds),
    and runs of more than ``max_rows_per_seed`` updates (A2C's thousands of small updates) averaged over blocks
    of consecutive updates: each stored row is then a block, with ``update``/``step`` of its last update, the
    NaN-ignoring mean of every statistic and the sum of ``episodes``."""
    updates = int(history["update"].max()) + 1
    if updates > max_rows_per_seed:
        block = -(-updates // max_rows_per_seed)
        keys = [history["seed"], history["update"] // block]
        means = history.drop(columns=["seed", "update", "step", "episodes"]).groupby(keys).mean()
        last = history.groupby(keys)[["update", "step"]].max()
        episodes = history.groupby(keys)["episodes"].sum()
        history = pd.concat([last, episodes, means], axis=1).droplevel(1).reset_index()
    return history.astype({c: np.float32 for c in history.columns if history[c].dtype == np.float64})


def run_piece(experiment: str, condition: str, seeds: tuple[int, ...], root: Path, *,
              episodes: int = 10) -> Path:
    """Train one piece (if it is not stored yet) and store it; returns its directory."""
    out = piece_dir(root, experiment, condition, seeds)
    cond = EXPERIMENTS[experiment][condition]
    cfg = TrainConfig(**cond.config, seeds=seeds, device="cpu", checkpoint_every=cond.checkpoint_every)
    if is_finished(out, kind="piece"):
        check_stored_config(out, cfg.resolve(), marker=PIECE)
        return out
    run_dir = out.parent / f".{out.name}.run" if cond.checkpoint_every else None
    start = time.perf_counter()
    run = train(cfg, progress=False, run_dir=run_dir, resume=True)
    greedy = run.evaluate(episodes).set_index("seed").return_mean.rename("greedy")
    sampled = run.evaluate(episodes, greedy=False).set_index("seed").return_mean.rename("sampled")
    wall = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_atomic_with(out / "history.parquet", lambda p: _compact(cond.stored(run.history)).to_parquet(
        p, index=False, compression="zstd"))
    write_atomic_with(out / "evaluation.csv", lambda p: pd.concat([greedy, sampled], axis=1).to_csv(p))
    if cfg.snapshot_every:  # the plasticity probe on every snapshot: as trained, and the backbone under one head
        probe = run.plasticity().merge(run.plasticity(part="backbone"), on=["seed", "step"],
                                       suffixes=("", "_backbone"))
        write_atomic_with(out / "plasticity.csv", lambda p: probe.to_csv(p, index=False, float_format="%.6g"))
    meta = dict(experiment=experiment, condition=condition, seeds=list(seeds), wall_seconds=round(wall, 1),
                train_seconds=round(run.wall_time, 1), config=dataclasses.asdict(run.config), episodes=episodes,
                torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d"))
    write_atomic(out / PIECE, json.dumps(meta, indent=1, default=str))
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)  # the piece is stored: its checkpoints are no longer needed
    return out


def run_experiment(experiment: str, *, root: str | Path | None = None, only: Sequence[str] | None = None,
                   ray: bool = False, address: str | None = None, num_cpus: int | None = None) -> None:
    """Train every missing piece of ``experiment`` (conditions whose name contains one of ``only``).

    ``ray=True`` trains the pieces as Ray tasks, one CPU each, in parallel: on a local Ray instance with
    ``num_cpus`` CPUs (default: the machine's), or on the cluster at ``address`` (``HOST:PORT`` of
    ``ray start --head``; the workers must see ``root`` on a shared filesystem). A failed task is retried twice
    (a checkpointed piece resumes); pieces that finished are never trained again, so rerunning the command after
    a crash continues.
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {sorted(EXPERIMENTS)}")
    conditions = [c for c in EXPERIMENTS[experiment] if not only or any(o in c for o in only)]
    if not conditions:
        raise ValueError(f"--only {list(only or [])} matches no condition of {experiment!r}: "
                         f"{sorted(EXPERIMENTS[experiment])}")
    for cfg in (EXPERIMENTS[experiment][c] for c in conditions):  # validate everything before training anything
        TrainConfig(**cfg.config, seeds=cfg.seeds, device="cpu").resolve()
    base = evidence_dir(root)
    pieces = [(name, seeds) for name in conditions for seeds in EXPERIMENTS[experiment][name].groups()]
    pending = [(n, s) for n, s in pieces if not is_finished(piece_dir(base, experiment, n, s), kind="piece")]
    for name, seeds in pieces:
        if (name, seeds) not in pending:
            print(f"{experiment}/{name} seeds {seeds[0]}-{seeds[-1]}: stored", flush=True)
    if ray and pending:
        calls = {f"{name} seeds {seeds[0]}-{seeds[-1]}": (experiment, name, seeds, str(base),
                                                          EXPERIMENTS[experiment]) for name, seeds in pending}
        run_tasks(_piece_task, calls, address=address, num_cpus=num_cpus, what=f"evidence pieces of {experiment}")
        return
    for name, seeds in pending:
        start = time.perf_counter()
        run_piece(experiment, name, seeds, base)
        print(f"{experiment}/{name} seeds {seeds[0]}-{seeds[-1]}: trained in {time.perf_counter() - start:.0f} s",
              flush=True)


def _piece_task(experiment: str, name: str, seeds: tuple[int, ...], base: str, conditions: dict) -> str:
    """One piece on a Ray worker (the experiment's conditions travel with it: a worker imports a fresh module)."""
    torch.set_num_threads(1)
    EXPERIMENTS[experiment] = conditions
    return str(run_piece(experiment, name, tuple(seeds), Path(base)))


def complete(experiment: str, condition: str, *, root: str | Path | None = None) -> bool:
    """Whether every seed group of a condition is stored."""
    base = evidence_dir(root)
    return all(is_finished(piece_dir(base, experiment, condition, seeds), kind="piece")
               for seeds in EXPERIMENTS[experiment][condition].groups())


def stored_pieces(experiment: str, condition: str, *, root: str | Path | None = None) -> list[Path]:
    """The directories of a condition's stored pieces (FileNotFoundError when there is none)."""
    base = evidence_dir(root) / experiment / condition
    pieces = sorted(p for p in base.glob("seeds_*") if is_finished(p, kind="piece"))
    if not pieces:
        raise FileNotFoundError(f"no stored pieces under {base}; run `python -m acpg_lab.evidence run "
                                f"{experiment}` first")
    return pieces


def load_condition(experiment: str, condition: str, *, root: str | Path | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, evaluation) of every stored piece of a condition; evaluation is indexed by seed."""
    pieces = stored_pieces(experiment, condition, root=root)
    history = pd.concat([pd.read_parquet(p / "history.parquet") for p in pieces], ignore_index=True)
    evaluation = pd.concat([pd.read_csv(p / "evaluation.csv", index_col="seed") for p in pieces])
    return history, evaluation


#: index columns of each stored table
TABLE_INDEX = {"collapse_vs_null": ["condition", "metric"], "collapse_between": ["condition", "metric", "measure"],
               "heads_per_seed": ["task", "arm", "seed"], "heads_contrasts": ["task", "contrast", "outcome"],
               "heads_aggregate": ["arm"], "heads_convergence": ["task", "arm"],
               "heads_alignment": ["task", "actions", "contrast"], "exploration_per_seed": ["epsilon", "arm", "seed"],
               "exploration_contrasts": ["epsilon", "contrast", "outcome"],
               "exploration_convergence": ["epsilon", "arm"], "evidence_cpu": ["experiment", "group"],
               "labels_vs_null": ["env", "labels", "metric"], "pfo_per_seed": ["condition", "seed"],
               "pfo_dose": ["setting", "factor", "held_fixed", "statistic"], "pfo_vs_null": ["condition", "statistic"],
               "pfo_contrasts": ["setting", "contrast", "statistic"], "pfo_events": ["condition"],
               "pfo_lead_lag": ["against", "condition", "metric"]}


def stored_table(name: str, *, root: str | Path | None = None) -> pd.DataFrame:
    """A table `python -m acpg_lab.evidence report` wrote (``results/evidence/tables/<name>.csv``), indexed."""
    if name not in TABLE_INDEX:
        raise ValueError(f"unknown table {name!r}; known: {sorted(TABLE_INDEX)}")
    path = evidence_dir(root) / "tables" / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is not stored yet: run `python -m acpg_lab.evidence report`")
    return pd.read_csv(path, index_col=TABLE_INDEX[name])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acpg_lab.evidence", description=__doc__,
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
    if args.command == "run":
        if (args.address or args.num_cpus) and not args.ray:
            parser.error("--address and --num-cpus need --ray")
        run_experiment(args.experiment, root=args.root, only=args.only, ray=args.ray, address=args.address,
                       num_cpus=args.num_cpus)
        return 0
    from acpg_lab.evidence_report import report

    return report(root=args.root, check=args.check)


if __name__ == "__main__":
    raise SystemExit(main())
