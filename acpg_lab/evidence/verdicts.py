"""Verdicts, written once for every evidence table: a table of contrasts (`acpg_lab.stats.contrast_table`) gets a
verdict and the rule that gave it per row (`verdict_table`), from what the row claims (`Claim`) and the smallest
effect of interest (`smallest_effect`), under `acpg_lab.stats.VERDICT_RULE`; rows with too few seeds say so
(`measured`, after `acpg_lab.stats.enough_seeds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from acpg_lab.stats import enough_seeds, family_interval, paired, unmeasurable, verdict

__all__ = ["Claim", "verdict_table", "smallest_effect", "measured", "LOG_FACTOR", "BOUNDED_STEP", "RETURN_SHARE",
           "TOO_FEW_SEEDS"]

#: the smallest effect of interest by what a statistic is: a factor on log scales, ...
LOG_FACTOR = 1.25
#: ... an absolute step for bounded statistics (fractions, cosines), ...
BOUNDED_STEP = 0.05
#: ... a share of the return range (a random policy to the reference target, or the setting's range)
RETURN_SHARE = 0.05
#: the rule of a row whose arms have too few seeds with a value
TOO_FEW_SEEDS = "fewer than 2 seeds of an arm have a value"


@dataclass(frozen=True)
class Claim:
    """What one row of a contrast table claims."""

    sign: int  #: the direction the paper claims (+1 or -1); 0: a descriptive row, no claim
    smallest: float | None = None  #: the smallest effect of interest (`smallest_effect`), None: none stated
    ceiling: bool = False  #: every seed of both arms at the same value: nothing to test
    budget: str = ""  #: why the budget cannot decide the contrast ("" when it can)


def smallest_effect(kind: str, *, reference: float = np.nan, share: float = 0.1, floor: float = 0.0,
                    span: float = np.nan) -> float:
    """The smallest difference that would count as the claimed effect (below it, a tight interval around 0 reads
    "not reproduced"), by ``kind``: ``"log"`` a factor `LOG_FACTOR` (on a log-ratio measure), ``"bounded"``
    `BOUNDED_STEP` (fractions, cosines), ``"return"`` `RETURN_SHARE` of the return range ``span``, ``"count"``
    one (event per seed), ``"relative"`` ``share`` of the reference arm's mean, at least ``floor``."""
    if kind == "log":
        return float(np.log(LOG_FACTOR))
    if kind == "bounded":
        return BOUNDED_STEP
    if kind == "return":
        return RETURN_SHARE * span
    if kind == "count":
        return 1.0
    if kind == "relative":
        return max(share * abs(reference), floor)
    raise ValueError(f"unknown kind of smallest effect {kind!r}; known: log, bounded, return, count, relative")


def measured(test: Callable[..., Mapping[str, float]], x: pd.Series, y: pd.Series) -> dict[str, float]:
    """``test(x, y)`` (`welch` or `paired`), or a row of NaN statistics (`unmeasurable`) where too few seeds have a
    value (updates to a threshold few seeds reached; an alignment where a policy took one action only)."""
    if not enough_seeds(x, y, paired=test is paired):
        return unmeasurable(x, y)
    return dict(test(x, y))


def _row_verdict(row: pd.Series, claim: Claim, descriptive: str) -> tuple[str, str]:
    if not np.isfinite(row["p"]):
        return "not measurable", TOO_FEW_SEEDS
    if claim.sign == 0:
        return "descriptive", descriptive
    if claim.ceiling:
        return "no difference (ceiling)", "every seed of both arms at the same value"
    return verdict(row, expected_sign=claim.sign, p_adjusted=row["p_holm"], smallest_effect=claim.smallest,
                   budget=claim.budget, family_size=int(row["family_size"]))


def verdict_table(table: pd.DataFrame, claims: Mapping[tuple, Claim], *, names: list[str],
                  descriptive: str = "reported beside the claims, no claim") -> pd.DataFrame:
    """``table`` (rows keyed by tuples, with ``p``, ``p_holm`` and ``family_size`` from `acpg_lab.stats.adjust`)
    indexed by ``names``, with the family-level interval (``ci_low_family``, ``ci_high_family``:
    `acpg_lab.stats.family_interval`), the ``smallest`` effect of interest, and ``verdict`` and ``rule`` columns
    from each row's `Claim` in ``claims``; ``descriptive`` is the rule of the rows without a claim. An empty table
    is returned as it is."""
    if not len(table):
        return table
    table.index = pd.MultiIndex.from_tuples(list(table.index), names=names)
    missing = [key for key in table.index if key not in claims]
    if missing:
        raise ValueError(f"rows without a claim: {missing[:3]}")
    bounds = [family_interval(row, max(int(row["family_size"]), 1)) if "se" in row else (np.nan, np.nan)
              for _, row in table.iterrows()]
    table["ci_low_family"], table["ci_high_family"] = [b[0] for b in bounds], [b[1] for b in bounds]
    table["smallest"] = [np.nan if claims[key].smallest is None or claims[key].sign == 0 else claims[key].smallest
                         for key in table.index]
    out = [_row_verdict(row, claims[key], descriptive) for key, row in table.iterrows()]
    table["verdict"], table["rule"] = [v for v, _ in out], [r for _, r in out]
    return table
