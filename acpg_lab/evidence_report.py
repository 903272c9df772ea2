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

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence import EXPERIMENTS, HEAD_ARMS, HEAD_TASKS, complete, evidence_dir, load_condition
from acpg_lab.experiments import REFERENCE_SCORES, aggregate, normalized, probability_of_improvement
from acpg_lab.profiles import repository_root
from acpg_lab.stats import VERDICT_RULE, contrast_table, holm, paired, verdict, welch

__all__ = ["COLLAPSE_METRICS", "collapse_final", "collapse_tables", "heads_per_seed", "heads_tables", "report"]

#: metric -> the sign of (trained - untrained) that collapse predicts
COLLAPSE_METRICS = {"nc1": -1, "equinorm_features": -1, "max_angle_features": -1, "max_angle_weights": -1,
                    "self_duality": -1, "ncc_mismatch": -1, "label_alignment": 1}


#: condition -> (the condition it is compared with, +1 if the paper expects it to collapse more, -1 if less):
#: a broken condition collapses less than the balanced one; with the fixed ETF head the features align with it
#: (Theorem 1) at least as well as a learnable head's with its own rows
COMPARISONS = {"onehot/imbalanced": ("onehot/balanced", -1), "onehot/zipf": ("onehot/balanced", -1),
               "dense/imbalanced": ("dense/balanced", -1), "dense/zipf": ("dense/balanced", -1),
               "dense/balanced_etf": ("dense/balanced", 1)}

#: statistics compared between conditions as log(trained / null): positive, and their nulls differ in scale
RATIO_METRICS = ("nc1", "equinorm_features", "max_angle_features", "max_angle_weights", "self_duality")


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


def complete_tasks(root: Path | None = None) -> list[str]:
    """The head tasks whose four arms are all stored (the tables cover these; a task still running is left out,
    and `report` says so)."""
    return [task for task in HEAD_TASKS if all(complete("heads", f"{task}/{arm}", root=root) for arm in HEAD_ARMS)]


def heads_per_seed(root: Path | None = None) -> pd.DataFrame:
    """One row per (task, arm, seed): area under the training curve (mean training return over all updates),
    final training return (last 10% of updates), greedy and sampled evaluation, updates and steps until the
    5-update mean training return first reaches the task's threshold (NaN if never; updates are the paper's
    "epochs"), final policy entropy, and the final ``label_alignment`` with its untrained null."""
    rows = []
    for task in complete_tasks(root):
        threshold = HEAD_TASKS[task][1]
        for arm in HEAD_ARMS:
            history, evaluation = load_condition("heads", f"{task}/{arm}", root=root)
            for seed, h in history.groupby("seed"):
                h = h.sort_values("update")
                ret = h.dropna(subset=["episode_return"])
                tail = ret[ret["update"] >= 0.9 * h["update"].max()]
                smooth = ret.episode_return.rolling(5, min_periods=5).mean()
                hit = ret[smooth >= threshold]
                logged = h.dropna(subset=["label_alignment"])
                rows.append(dict(task=task, arm=arm, seed=seed, area=ret.episode_return.mean(),
                                 final_train=tail.episode_return.mean(), greedy=evaluation.greedy[seed],
                                 sampled=evaluation.sampled[seed],
                                 updates_to_threshold=float(hit["update"].iloc[0] + 1) if len(hit) else np.nan,
                                 steps_to_threshold=float(hit["step"].iloc[0]) if len(hit) else np.nan,
                                 final_entropy=h[h["update"] >= 0.9 * h["update"].max()].entropy.mean(),
                                 label_alignment=logged.label_alignment.iloc[-1],
                                 null_label_alignment=logged.null_label_alignment.iloc[-1],
                                 plateau_change=tail.episode_return.mean()
                                 - ret[(ret["update"] >= 0.8 * h["update"].max())
                                       & (ret["update"] < 0.9 * h["update"].max())].episode_return.mean()))
    return pd.DataFrame(rows)


#: head-arm contrasts: (arm, against, what the contrast isolates)
HEAD_CONTRASTS = (("etf", "linear", "the fixed ETF against the usual learnable head"),
                  ("etf", "linear_scaled", "the ETF against a learnable head with the same initial logit scale"),
                  ("etf", "random", "the ETF's geometry against a fixed random head"))
#: outcome -> the sign the paper claims for ETF minus the other arm (0: reported, no claim)
HEAD_OUTCOMES = {"area": 1, "final_train": 1, "greedy": 1, "sampled": 1, "updates_to_threshold": -1,
                 "final_entropy": 0}


def still_rising(per_seed: pd.DataFrame) -> pd.Series:
    """Per (task, arm): whether the training return was still rising at the end of the budget (the mean over
    the last 10% of updates above the previous 10%, paired t over seeds, one-sided p < 0.05): such an arm has not
    converged, and a contrast involving it is "inconclusive (budget)"."""
    out = {}
    for (task, arm), t in per_seed.groupby(["task", "arm"]):
        change = t.plateau_change.to_numpy(dtype=float)
        r = paired(change, np.zeros_like(change)) if np.isfinite(change).sum() >= 2 else None
        out[(task, arm)] = bool(r is not None and r["difference"] > 0 and r["p"] / 2 < 0.05)
    return pd.Series(out, name="still_rising")


def heads_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``heads_per_seed``, ``heads_contrasts`` (Welch, Holm over the whole table; the claimed sign is +1 for
    returns and -1 for updates to threshold; entropy is reported to tell "faster" from "less random", with no
    claim; steps to threshold compare the seeds that reached it, and the row says how many did) and
    ``heads_aggregate`` (rliable IQM of normalised greedy and sampled returns over the tasks, and P(ETF > linear)).
    The smallest effect of interest for returns is 5% of the task's reference range (`REFERENCE_SCORES`), for
    updates to threshold 10% of the linear head's median; two arms both at the maximum return with no spread are
    "no difference (ceiling)"."""
    if not complete_tasks(root):
        return {}
    per_seed = heads_per_seed(root)
    rising = still_rising(per_seed)
    rows, meta = {}, {}
    tasks = complete_tasks(root)
    for task in tasks:
        shared = HEAD_TASKS[task][0]
        t = per_seed[per_seed.task == task]
        low, high = REFERENCE_SCORES[shared["env_id"]]
        for arm, against, _ in HEAD_CONTRASTS:
            for outcome, sign in HEAD_OUTCOMES.items():
                x, y = t[t.arm == arm][outcome], t[t.arm == against][outcome]
                key = (task, f"{arm} - {against}", outcome)
                rows[key] = welch(x, y) | dict(reached_x=int(x.notna().sum()), reached_y=int(y.notna().sum()))
                smallest = (0.1 * t[t.arm == "linear"].updates_to_threshold.median()
                            if outcome == "updates_to_threshold" else 0.05 * (high - low))
                ceiling = x.nunique() == 1 and y.nunique() == 1 and x.iloc[0] == y.iloc[0]
                meta[key] = (sign, smallest, ceiling, not (rising[(task, arm)] or rising[(task, against)]))
    table = contrast_table(rows)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["task", "contrast", "outcome"])
    claimed = np.array([meta[key][0] != 0 for key in table.index])
    # two families: the claims, and the entropy contrasts reported beside them
    table.loc[claimed, "p_holm"] = holm(table.loc[claimed, "p"].to_numpy())
    table.loc[~claimed, "p_holm"] = holm(table.loc[~claimed, "p"].to_numpy())
    verdicts, rules = [], []
    for key, row in table.iterrows():
        sign, smallest, ceiling, converged = meta[key]
        if sign == 0:
            verdicts.append("descriptive"), rules.append("reported beside returns, no claim")
        elif ceiling:
            verdicts.append("no difference (ceiling)"), rules.append("every seed of both arms at the same value")
        else:
            v, r = verdict(row, expected_sign=sign, p_adjusted=row["p_holm"], smallest_effect=smallest,
                           converged=converged)
            verdicts.append(v), rules.append(r)
    table["verdict"], table["rule"] = verdicts, rules
    contrasts = table
    agg = []
    for mode in ("greedy", "sampled"):
        scores = {}
        for arm in HEAD_ARMS:
            cols = []
            for task in tasks:
                t = per_seed[(per_seed.task == task) & (per_seed.arm == arm)].sort_values("seed")
                cols.append(normalized(HEAD_TASKS[task][0]["env_id"], t[mode].to_numpy()))
            scores[arm] = np.stack(cols, 1)
        table = aggregate(scores)
        table.index.name = "arm"
        better = probability_of_improvement(scores["etf"], scores["linear"])
        table["mode"], table["p_etf_over_linear"] = mode, better["probability"]
        table["p_low"], table["p_high"] = better["low"], better["high"]
        agg.append(table)
    return {"heads_per_seed": per_seed.set_index(["task", "arm", "seed"]), "heads_contrasts": contrasts,
            "heads_aggregate": pd.concat(agg), "heads_convergence": rising.rename_axis(["task", "arm"]).to_frame()}


def labels_vs_null() -> dict[str, pd.DataFrame]:
    """Notebook 01's CartPole and MinAtar runs (its stored `default` run, seeds 0-4): each statistic against the
    untrained network on the same states with the same labels, paired t, Holm over the table."""
    path = repository_root() / "results" / "01_observing_action_collapse" / "expert_vs_greedy_labels_per_seed.csv"
    per_seed = pd.read_csv(path)
    rows = {}
    for (env, labels), g in per_seed.groupby(["env", "labels"]):
        for metric in ("nc1", "max_angle_features", "self_duality", "ncc_mismatch", "label_alignment"):
            rows[(env, labels, metric)] = paired(g[metric], g[f"null_{metric}"])
    table = contrast_table(rows)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["env", "labels", "metric"])
    return {"labels_vs_null": table}


def _tables(root: Path | None) -> dict[str, pd.DataFrame]:
    tables = labels_vs_null() if root is None else {}
    waiting = [task for task in HEAD_TASKS if task not in complete_tasks(root)]
    if waiting:
        print(f"heads: tasks not (fully) stored yet, left out of the tables: {waiting}")
    from acpg_lab.pfo_report import pfo_tables

    for experiment, build in (("collapse", collapse_tables), ("heads", heads_tables), ("pfo", pfo_tables)):
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
