"""The action-collapse family (notebook 01): trained against untrained per condition, broken conditions against the
balanced one, and notebook 01's CartPole and MinAtar label runs against their null.

Rules (`acpg_lab.stats`): collapse is a *paired* contrast, seed by seed, between the trained actor and the same
seed's untrained actor on the same states and labels (``null_<metric>``, logged at the same update), at the last
diagnosed update; one condition against another is a *Welch* contrast over seeds (different runs); each table is
one Holm family; returns are evaluated greedily and by sampling (10 unseen episodes each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence.conditions import EXPERIMENTS
from acpg_lab.evidence.pieces import load_condition, stored_config
from acpg_lab.evidence.verdicts import Claim, smallest_effect, verdict_table
from acpg_lab.metric_registry import require
from acpg_lab.profiles import repository_root
from acpg_lab.stats import contrast_table, paired, welch

__all__ = ["QUESTIONS", "COLLAPSE_METRICS", "COMPARISONS", "RATIO_METRICS", "LABEL_METRICS", "TABLES", "LABEL_TABLES",
           "collapse_final", "collapse_tables", "labels_vs_null"]

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
#: the tables `collapse_tables` builds -> their index columns
TABLES = {"collapse_vs_null": ["condition", "metric"], "collapse_between": ["condition", "metric", "measure"]}
#: the question each verdict answers (issue 24): a paired trained - untrained contrast asks whether training moved
#: the statistic towards collapse, not whether it ends collapsed (the one-hot means' ETF statistics start at
#: 0.007, already near an ETF, and training moves them away: "contradicted" answers the first question)
QUESTIONS = {"trained - null": "did training move it towards collapse (trained - untrained, same seed and states)?",
             "trained": "which condition ends more collapsed (the trained values)?",
             "moved": "in which condition did training move it further from its untrained value?"}
#: the table `labels_vs_null` builds -> its index columns
LABEL_TABLES = {"labels_vs_null": ["env", "labels", "metric"]}


def collapse_final(history: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the trained and untrained (``null_``) collapse metrics at the last diagnosed update."""
    logged = history.dropna(subset=["nc1"])
    last = logged[logged["update"] == logged.groupby("seed")["update"].transform("max")]
    cols = [*COLLAPSE_METRICS, *(f"null_{m}" for m in COLLAPSE_METRICS)]
    return last.set_index("seed")[cols].astype(float)


def _smallest(metric: str, measure: str, reference: float) -> float:
    """The smallest effect of interest: a factor 1.25 on log scales, a quarter of the reference's scale for the
    scale-like statistics, 0.05 for the fractions and cosines (``ncc_mismatch``, ``label_alignment``)."""
    if measure.startswith("log"):
        return smallest_effect("log")
    if metric in RATIO_METRICS:
        return smallest_effect("relative", reference=reference, share=0.25, floor=1e-3)
    return smallest_effect("bounded")


def _moved(final: pd.DataFrame, metric: str) -> pd.Series:
    if metric in RATIO_METRICS:
        return np.log(final[metric] / final[f"null_{metric}"])
    return final[metric] - final[f"null_{metric}"]


def _fixed_head(config: dict) -> bool:
    """Whether a stored config trains a fixed head, whose rows' statistics (``max_angle_weights``: exactly 0
    before and after) leave nothing to test."""
    return config["head"] != "linear"


def _vs_null(root: Path | None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, dict]]:
    """``collapse_vs_null``, with each condition's final values and stored config."""
    finals, configs, rows = {}, {}, {}
    for name in EXPERIMENTS["collapse"]:
        history, evaluation = load_condition("collapse", name, root=root)
        finals[name], configs[name] = collapse_final(history), stored_config("collapse", name, root=root)
        for metric in COLLAPSE_METRICS:
            if _fixed_head(configs[name]) and metric == "max_angle_weights":
                continue
            f = finals[name]
            rows[(name, metric)] = paired(f[metric], f[f"null_{metric}"]) | dict(
                greedy=evaluation.greedy.mean(), sampled=evaluation.sampled.mean())
    table = contrast_table(rows)
    claims = {key: Claim(COLLAPSE_METRICS[key[1]], _smallest(key[1], "trained - null", row["mean_y"]))
              for key, row in rows.items()}
    table = verdict_table(table, claims, names=TABLES["collapse_vs_null"])
    table["question"] = QUESTIONS["trained - null"]
    return table, finals, configs


def collapse_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``collapse_vs_null`` (trained vs untrained per condition and metric, with the verdict) and
    ``collapse_between`` (each broken condition against its balanced one, and the ETF head against the learnable
    one, `COMPARISONS`; Welch over seeds, on two measures: the trained value itself, and how far training moved
    it from the untrained null, as ``log(trained / null)`` for the positive scale-like statistics
    (`RATIO_METRICS`), ``trained - null`` for ``ncc_mismatch`` (which reaches 0) and ``label_alignment`` (a
    cosine). The second is the one that says what training did: a broken condition can start from a different
    null (Zipf visitation weights the statistics)). Statistics of a fixed head's rows (``max_angle_weights``
    under the ETF head: exactly 0 before and after) are left out: there is nothing to test."""
    vs_null, finals, configs = _vs_null(root)
    between, claims = {}, {}
    for name, (base_name, direction) in COMPARISONS.items():
        if name not in finals or base_name not in finals:
            continue
        base = finals[base_name]
        for metric in COLLAPSE_METRICS:
            if metric == "max_angle_weights" and _fixed_head(configs[name]):
                continue  # the fixed head's rows are exact by construction
            moved = "log(trained / null)" if metric in RATIO_METRICS else "trained - null"
            for measure, x, y in (("trained", finals[name][metric], base[metric]),
                                  (moved, _moved(finals[name], metric), _moved(base, metric))):
                between[(name, metric, measure)] = result = welch(x, y)
                claims[(name, metric, measure)] = Claim(direction * COLLAPSE_METRICS[metric],
                                                        _smallest(metric, measure, result["mean_y"]))
    between_table = verdict_table(contrast_table(between), claims, names=TABLES["collapse_between"])
    between_table["question"] = [QUESTIONS["trained" if m == "trained" else "moved"]
                                 for m in between_table.index.get_level_values("measure")]
    return {"collapse_vs_null": vs_null, "collapse_between": between_table}


def labels_vs_null(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """Notebook 01's CartPole and MinAtar runs (its stored `default` run, seeds 0-4): each statistic against the
    untrained network on the same states with the same labels, paired t, Holm over the table. Read from the
    repository's results whatever ``root`` is: the tables are left out for another root."""
    if root is not None:
        return {}
    path = repository_root() / "results" / "01_observing_action_collapse" / "expert_vs_greedy_labels_per_seed.csv"
    per_seed = pd.read_csv(path)
    rows = {}
    for (env, labels), g in per_seed.groupby(["env", "labels"]):
        for metric in LABEL_METRICS:
            rows[(env, labels, metric)] = paired(g[metric], g[f"null_{metric}"])
    table = contrast_table(rows)
    table.index = pd.MultiIndex.from_tuples(table.index, names=LABEL_TABLES["labels_vs_null"])
    return {"labels_vs_null": table}
