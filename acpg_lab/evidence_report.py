"""Every table behind `REPRODUCTION.md`'s ACPG rows (and, through `acpg_lab.pfo_report`, its PFO rows),
recomputed from the pieces `acpg_lab.evidence` stored.

``python -m acpg_lab.evidence report`` writes the tables to ``results/evidence/tables/``; with ``--check`` it
recomputes them and fails if a stored table differs. The rules (``acpg_lab.stats``):

- collapse is a *paired* contrast, seed by seed, between the trained actor and the same seed's untrained actor
  on the same states and labels (``null_<metric>``, logged at the same update), at the last diagnosed update;
- a broken condition against the balanced one, and one head arm against another, are *Welch* contrasts over
  seeds (different runs);
- each experiment's table is one family: Holm-adjusted p beside the raw p; verdicts use the adjusted one;
- returns are evaluated greedily and by sampling (10 unseen episodes each); both are reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence import EXPERIMENTS, HEAD_TASKS, PIECE, evidence_dir, load_condition
from acpg_lab.heads_report import complete_tasks, exploration_tables, heads_tables
from acpg_lab.metric_registry import require
from acpg_lab.profiles import repository_root
from acpg_lab.stats import VERDICT_RULE, contrast_table, paired, verdict, welch

__all__ = ["COLLAPSE_METRICS", "collapse_final", "collapse_tables", "labels_vs_null", "compute_time", "report"]

#: metric -> the sign of (trained - untrained) that collapse predicts
COLLAPSE_METRICS = {"nc1": -1, "equinorm_features": -1, "max_angle_features": -1, "max_angle_weights": -1,
                    "self_duality": -1, "ncc_mismatch": -1, "label_alignment": 1}
require(COLLAPSE_METRICS, null=True)


#: condition -> (the condition it is compared with, +1 if the paper expects it to collapse more, -1 if less):
#: a broken condition collapses less than the balanced one; with the fixed ETF head the features align with it
#: (Theorem 1) at least as well as a learnable head's with its own rows
COMPARISONS = {"onehot/imbalanced": ("onehot/balanced", -1), "onehot/zipf": ("onehot/balanced", -1),
               "dense/imbalanced": ("dense/balanced", -1), "dense/zipf": ("dense/balanced", -1),
               "dense/balanced_etf": ("dense/balanced", 1)}

#: statistics compared between conditions as log(trained / null): positive, and their nulls differ in scale
RATIO_METRICS = require(("nc1", "equinorm_features", "max_angle_features", "max_angle_weights", "self_duality"))
#: the statistics of notebook 01's CartPole and MinAtar label runs against their untrained null
LABEL_METRICS = require(("nc1", "max_angle_features", "self_duality", "ncc_mismatch", "label_alignment"), null=True)


def collapse_final(history: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the trained and untrained (``null_``) collapse metrics at the last diagnosed update."""
    logged = history.dropna(subset=["nc1"])
    last = logged[logged["update"] == logged.groupby("seed")["update"].transform("max")]
    cols = [*COLLAPSE_METRICS, *(f"null_{m}" for m in COLLAPSE_METRICS)]
    return last.set_index("seed")[cols].astype(float)


def collapse_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``collapse_vs_null`` (trained vs untrained per condition and metric, with the verdict) and
    ``collapse_between`` (each broken condition against its balanced one, and the ETF head against the learnable
    one, `COMPARISONS`; Welch over seeds, on two measures: the
    trained value itself, and how far training moved it from the untrained null, as ``log(trained / null)``
    for the positive scale-like statistics (`RATIO_METRICS`), ``trained - null`` for ``ncc_mismatch`` (which
    reaches 0) and ``label_alignment`` (a cosine). The second is the one that says what
    training did: a broken condition can start from a different null (Zipf visitation weights the statistics)).
    Statistics of a fixed head's rows (``max_angle_weights`` under the ETF head: exactly 0 before and after)
    are left out: there is nothing to test."""
    finals, rows = {}, {}
    for name, cond in EXPERIMENTS["collapse"].items():
        history, evaluation = load_condition("collapse", name, root=root)
        finals[name] = collapse_final(history)
        fixed = cond.config.get("head", "linear") != "linear"
        for metric in COLLAPSE_METRICS:
            if fixed and metric == "max_angle_weights":
                continue
            f = finals[name]
            rows[(name, metric)] = paired(f[metric], f[f"null_{metric}"]) | dict(
                greedy=evaluation.greedy.mean(), sampled=evaluation.sampled.mean())
    vs_null = _with_verdicts(contrast_table(rows), lambda key: (
        COLLAPSE_METRICS[key[0][1]], _smallest_effect(key[0][1], "trained - null", key[1]["mean_y"])),
        names=["condition", "metric"])
    between, claimed = {}, {}
    for name, (base_name, direction) in COMPARISONS.items():
        if name not in finals or base_name not in finals:
            continue
        base = finals[base_name]
        for metric in COLLAPSE_METRICS:
            if metric == "max_angle_weights" and EXPERIMENTS["collapse"][name].config.get("head") == "etf":
                continue  # the ETF's rows are exact by construction
            between[(name, metric, "trained")] = welch(finals[name][metric], base[metric])
            moved = "log(trained / null)" if metric in RATIO_METRICS else "trained - null"
            between[(name, metric, moved)] = welch(_moved(finals[name], metric), _moved(base, metric))
            claimed[name] = direction
    between_table = _with_verdicts(contrast_table(between), lambda key: (
        claimed[key[0][0]] * COLLAPSE_METRICS[key[0][1]], _smallest_effect(key[0][1], key[0][2], key[1]["mean_y"])),
        names=["condition", "metric", "measure"])
    return {"collapse_vs_null": vs_null, "collapse_between": between_table}


def _smallest_effect(metric: str, measure: str, reference: float) -> float:
    """The smallest difference that would count as the claimed effect (below it a tight interval around 0 reads
    "not reproduced"): a factor 1.25 on log scales, a quarter of the reference's scale for the scale-like
    statistics, 0.05 for the fractions and cosines (``ncc_mismatch``, ``label_alignment``)."""
    if measure.startswith("log"):
        return float(np.log(1.25))
    if metric in RATIO_METRICS:
        return max(0.25 * abs(reference), 1e-3)
    return 0.05


def _moved(final: pd.DataFrame, metric: str) -> pd.Series:
    if metric in RATIO_METRICS:
        return np.log(final[metric] / final[f"null_{metric}"])
    return final[metric] - final[f"null_{metric}"]


def _with_verdicts(table: pd.DataFrame, expected: Callable[[tuple], tuple[int, float | None]], *,
                   names: list[str]) -> pd.DataFrame:
    """Add verdict and rule columns; ``expected`` maps ``(index tuple, row)`` to (the claimed sign, the smallest
    effect of interest or None)."""
    if not len(table):
        return table
    table.index = pd.MultiIndex.from_tuples(table.index, names=names)
    out = []
    for key, row in table.iterrows():
        sign, smallest = expected((key, row))
        out.append(verdict(row, expected_sign=sign, p_adjusted=row["p_holm"], smallest_effect=smallest))
    table["verdict"], table["rule"] = [v for v, _ in out], [r for _, r in out]
    return table


def labels_vs_null() -> dict[str, pd.DataFrame]:
    """Notebook 01's CartPole and MinAtar runs (its stored `default` run, seeds 0-4): each statistic against the
    untrained network on the same states with the same labels, paired t, Holm over the table."""
    path = repository_root() / "results" / "01_observing_action_collapse" / "expert_vs_greedy_labels_per_seed.csv"
    per_seed = pd.read_csv(path)
    rows = {}
    for (env, labels), g in per_seed.groupby(["env", "labels"]):
        for metric in LABEL_METRICS:
            rows[(env, labels, metric)] = paired(g[metric], g[f"null_{metric}"])
    table = contrast_table(rows)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["env", "labels", "metric"])
    return {"labels_vs_null": table}


def compute_time(root: Path | None = None) -> pd.DataFrame:
    """What each experiment cost, from the stored pieces' ``meta.json``: per experiment and condition group (the
    task, or the first part of the condition's name), the pieces and seeds stored, and the training time in
    seconds summed over pieces (one core per piece, ``num_threads=1``; for a piece resumed from a checkpoint,
    the time before and after the resume; on a shared machine it includes waiting for the core)."""
    rows = []
    for meta_path in sorted(evidence_dir(root).glob(f"*/**/seeds_*/{PIECE}")):
        meta = json.loads(meta_path.read_text())
        rows.append(dict(experiment=meta["experiment"], group=meta["condition"].split("/")[0],
                         seeds=len(meta["seeds"]), train_seconds=meta["train_seconds"],
                         wall_seconds=meta["wall_seconds"]))
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).groupby(["experiment", "group"]).agg(
        pieces=("seeds", "size"), seed_runs=("seeds", "sum"), train_seconds=("train_seconds", "sum"),
        wall_seconds=("wall_seconds", "sum"))
    table["train_cpu_hours"] = table.train_seconds / 3600
    return table


def _tables(root: Path | None) -> dict[str, pd.DataFrame]:
    tables = labels_vs_null() if root is None else {}
    tables["evidence_cpu"] = compute_time(root)
    waiting = [task for task in HEAD_TASKS if task not in complete_tasks(root)]
    if waiting:
        print(f"heads: tasks not (fully) stored yet, left out of the tables: {waiting}")
    from acpg_lab.pfo_report import pfo_tables

    for experiment, build in (("collapse", collapse_tables), ("heads", heads_tables),
                              ("exploration", exploration_tables), ("pfo", pfo_tables)):
        try:
            tables |= build(root)
        except FileNotFoundError as missing:
            print(f"{experiment}: not all pieces are stored yet ({missing})")
    return tables


#: constants of the verdict rule that the rows quote (alpha, the factor on log scales)
RULE_CONSTANTS = (0.05, 1.25)


#: the sections of REPRODUCTION.md whose numbers `report --check` verifies
SECTIONS = ("acpg", "pfo")


def unmatched_numbers(markdown: str, tables: dict[str, pd.DataFrame], *,
                      sections: tuple[str, ...] = SECTIONS) -> list[str]:
    """Decimal numbers in the rows between ``<!-- evidence:acpg -->`` and ``<!-- /evidence:acpg -->`` (and the
    same for ``pfo``) that no table cell gives at the printed precision (rows marked "to be rerun" quote older
    results and are skipped)."""
    values = np.concatenate([t.reset_index().select_dtypes("number").to_numpy(float).ravel() for t in tables.values()]
                            + [np.array(RULE_CONSTANTS)])
    values = values[np.isfinite(values)]
    missing = []
    for name in sections:
        if f"<!-- evidence:{name} -->" not in markdown:
            missing.append(f"the markers <!-- evidence:{name} --> ... <!-- /evidence:{name} --> are missing")
            continue
        section = markdown.split(f"<!-- evidence:{name} -->", 1)[1].split(f"<!-- /evidence:{name} -->", 1)[0]
        for line in section.splitlines():
            if not line.startswith("| ") or line.startswith("| claim") or "to be rerun" in line:
                continue
            for text in re.findall(r"[−-]?\d+\.\d+", line):
                x = float(text.replace("−", "-"))
                digits = len(text.split(".")[1])
                if not np.any(np.abs(np.round(values, digits) - x) < 0.5 * 10.0**-digits):
                    missing.append(text)
    return missing


def report(*, root: str | Path | None = None, check: bool = False) -> int:
    """Recompute every table; write them (or, with ``check``, compare them with the stored ones: 1 if any
    differs or is missing)."""
    base = evidence_dir(root)
    out_dir = base / "tables"
    tables = _tables(Path(root) if root else None)
    bad = 0
    for name, table in tables.items():
        path = out_dir / f"{name}.csv"
        if check:
            if not path.exists():
                print(f"MISSING {path}")
                bad += 1
                continue
            stored = pd.read_csv(path)
            fresh = pd.read_csv(_csv_buffer(table))
            same = stored.shape == fresh.shape and all(
                np.allclose(stored[c], fresh[c], rtol=1e-9, atol=1e-12, equal_nan=True)
                if pd.api.types.is_numeric_dtype(fresh[c]) else stored[c].equals(fresh[c]) for c in fresh)
            print(f"{'same' if same else 'DIFFERS'} {path}")
            bad += not same
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            table.to_csv(path)
            print(f"wrote {path}")
    if check and root is None and tables:
        missing = unmatched_numbers((repository_root() / "REPRODUCTION.md").read_text(), tables)
        print(f"REPRODUCTION.md: {'every number found in the tables' if not missing else f'NOT FOUND: {missing}'}")
        bad += bool(missing)
    print(f"verdict rule: {VERDICT_RULE}")
    return int(bad > 0)


def _csv_buffer(table: pd.DataFrame):
    import io

    buffer = io.StringIO()
    table.to_csv(buffer)
    buffer.seek(0)
    return buffer
