"""The pre-registered analysis plan (``results/evidence/plan.toml``, issue 24): what each claim's verdict was
decided by, and whether that was decided before its data.

- `load_plan`: the plan (tomllib). `plan_hash`: the SHA-256 of the file (what a piece's ``meta.json`` records
  when it is trained); `entry_hash`: the SHA-256 of one claim's entry, normalised (keys sorted, JSON), so that
  reformatting the file changes no entry.
- `entry_commit_time`: the git commit time of the commit that last changed an entry (None while the working copy's
  entry is not committed as it is). `data_commit_time`: the time of the first commit that added an experiment's
  pieces. `analysis_status`: "confirmatory" only when the entry was committed before the data, else
  "exploratory" (git history is the witness; without git, "exploratory").
- `required_seeds`, `minimal_detectable_effect`, `achieved_power`: the power analyses (t tests: paired / one-sample
  for planned replications; for stored rows from their standard error and df, at the Holm level's worst case
  ``alpha / m``).
- `plan_tables`: ``plan_claims`` (per entry: status, hash, analysis: "planned" until its data exist, then
  confirmatory or exploratory; planned and required n) and ``plan_power``
  (per claimed row of every verdict table: family, alpha / m, minimal detectable effect at power 0.8, power at
  the smallest effect); `mark_tables` adds ``plan_entry`` and ``analysis`` to every verdict table.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from acpg_lab.profiles import repository_root

__all__ = ["PLAN_FILE", "plan_path", "load_plan", "plan_hash", "entry_hash", "entry_commit_time", "data_commit_time",
           "analysis_status", "required_seeds", "minimal_detectable_effect", "achieved_power", "plan_tables",
           "mark_tables", "PLAN_TABLES", "STORED_SEED_RANGES"]

#: the plan, relative to the repository root
PLAN_FILE = Path("results") / "evidence" / "plan.toml"
#: the tables `plan_tables` builds -> their index columns
PLAN_TABLES = {"plan_claims": ["claim"], "plan_power": ["table", "row"]}


def plan_path() -> Path:
    return repository_root() / PLAN_FILE


def load_plan(path: str | Path | None = None) -> dict[str, Any]:
    """The plan as a dict (``claims``: claim id -> entry)."""
    with open(path or plan_path(), "rb") as f:
        plan = tomllib.load(f)
    if "claims" not in plan or not isinstance(plan["claims"], dict):
        raise ValueError(f"{path or plan_path()} has no [claims.<id>] tables")
    return plan


def plan_hash(path: str | Path | None = None) -> str:
    """SHA-256 of the plan file's bytes: recorded in each piece's ``meta.json`` when it is trained."""
    return hashlib.sha256(Path(path or plan_path()).read_bytes()).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of one claim's entry, normalised (JSON with sorted keys): formatting and comments do not count."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repository_root(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.cache
def _plan_history() -> tuple[tuple[dt.datetime, dict[str, str]], ...]:
    """(commit time, {claim: entry hash}) for every commit that changed the plan, newest first."""
    log = _git("log", "--format=%H %cI", "--", str(PLAN_FILE))
    history = []
    for line in (log or "").splitlines():
        commit, when = line.split()
        text = _git("show", f"{commit}:{PLAN_FILE.as_posix()}")
        try:
            claims = tomllib.loads(text or "").get("claims", {})
        except tomllib.TOMLDecodeError:
            claims = {}
        history.append((dt.datetime.fromisoformat(when), {k: entry_hash(v) for k, v in claims.items()}))
    return tuple(history)


def entry_commit_time(claim: str, entry: dict[str, Any]) -> dt.datetime | None:
    """When ``entry`` (the working copy's entry of ``claim``) was last changed: the commit time of the oldest commit
    of the newest run of commits whose entry hashes equal it. None when the working copy's entry is not committed
    (or without git): newer than any data."""
    want, since = entry_hash(entry), None
    for when, hashes in _plan_history():
        if hashes.get(claim) != want:
            break
        since = when
    return since


@functools.cache
def data_commit_time(experiment: str) -> dt.datetime | None:
    """The commit time of the first commit that added a piece of ``experiment`` (``results/evidence/<experiment>``)."""
    log = _git("log", "--diff-filter=A", "--format=%cI", "--", f"results/evidence/{experiment}")
    times = [dt.datetime.fromisoformat(t) for t in (log or "").split()]
    return min(times) if times else None


def analysis_status(claim: str, entry: dict[str, Any]) -> str:
    """"confirmatory" when the claim's plan entry was committed before its experiment's first piece, else
    "exploratory" (the entry is newer than the data, uncommitted, or git cannot tell)."""
    planned, data = entry_commit_time(claim, entry), data_commit_time(entry.get("experiment", ""))
    return "confirmatory" if planned is not None and data is not None and planned < data else "exploratory"


def required_seeds(sd: float, smallest: float, *, alpha: float, power: float = 0.8) -> int:
    """Seeds (pairs) a two-sided paired / one-sample t test needs to detect a mean difference ``smallest`` with
    probability ``power`` at level ``alpha``, when the paired differences have standard deviation ``sd``: the
    smallest n whose noncentral-t power reaches ``power``."""
    if not (sd > 0 and smallest > 0 and 0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"need sd > 0, smallest > 0, alpha and power in (0, 1); got {sd}, {smallest}, {alpha}, "
                         f"{power}")
    n = 2
    while _power(smallest * math.sqrt(n) / sd, n - 1, alpha) < power:
        n += 1
    return n


def _power(ncp: float, df: float, alpha: float) -> float:
    """Two-sided t test's power at noncentrality ``ncp``."""
    q = st.t.ppf(1 - alpha / 2, df)
    return float(st.nct.sf(q, df, ncp) + st.nct.cdf(-q, df, ncp))


def achieved_power(se: float, df: float, smallest: float, *, alpha: float) -> float:
    """The power a stored contrast (standard error ``se``, ``df``) had to detect ``smallest`` at level ``alpha``."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df) and np.isfinite(smallest)):
        return np.nan
    return _power(smallest / se, df, alpha)


def minimal_detectable_effect(se: float, df: float, *, alpha: float, power: float = 0.8) -> float:
    """The difference a stored contrast detects with probability ``power`` at level ``alpha``:
    ``(t_{1 - alpha/2} + t_{power}) * se`` (the usual approximation)."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df)):
        return np.nan
    return float((st.t.ppf(1 - alpha / 2, df) + st.t.ppf(power, df)) * se)


def _entries_by_table(plan: dict[str, Any]) -> dict[str, str]:
    """table -> the retrospective entry that governs its stored verdicts."""
    out = {}
    for claim, entry in plan["claims"].items():
        if entry.get("status") == "retrospective":
            for table in entry.get("tables", []):
                out[table] = claim
    return out


def mark_tables(tables: dict[str, pd.DataFrame], plan: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """Every table with a ``verdict`` column gets ``plan_entry`` (the claim id in the plan governing it) and
    ``analysis`` ("confirmatory" / "exploratory", `analysis_status`; "exploratory" when no entry covers it). A
    table that already has ``plan_entry`` (its rows belong to different planned entries: the replications) keeps
    it, and each row's ``analysis`` follows its own entry."""
    plan = plan or load_plan()
    governs = _entries_by_table(plan)
    for name, table in tables.items():
        if "verdict" not in table:
            continue
        if "plan_entry" in table:  # rows that name their entry (a table holding several planned families)
            table["analysis"] = [analysis_status(c, plan["claims"][c]) if c in plan["claims"] else "exploratory"
                                 for c in table["plan_entry"]]
            continue
        claim = governs.get(name, "")
        table["plan_entry"] = claim
        table["analysis"] = analysis_status(claim, plan["claims"][claim]) if claim else "exploratory"
    return tables


def _power_rows(name: str, table: pd.DataFrame, alpha: float, power: float) -> list[dict]:
    rows = []
    claimed = table[~table.verdict.isin(["descriptive", "not measurable", "no difference (ceiling)"])]
    for key, row in claimed.iterrows():
        se = row.get("se", np.nan)
        df = row.get("df", np.nan)
        smallest = row.get("smallest", np.nan)
        m = int(row.get("family_size", 1) or 1)
        rows.append(dict(table=name, row=" | ".join(map(str, key if isinstance(key, tuple) else (key,))),
                         family_size=m, alpha_family=alpha / m, se=se, df=df, smallest=smallest,
                         mde=minimal_detectable_effect(se, df, alpha=alpha / m, power=power),
                         power_at_smallest=achieved_power(se, df, smallest, alpha=alpha / m),
                         verdict=row["verdict"]))
    return rows


def plan_tables(tables: dict[str, pd.DataFrame], plan: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """``plan_claims`` and ``plan_power`` (module docstring) from the verdict tables ``tables``."""
    plan = plan or load_plan()
    alpha, power = float(plan.get("alpha", 0.05)), float(plan.get("power", 0.8))
    claims = []
    for claim, entry in plan["claims"].items():
        required = ([required_seeds(sd, d, alpha=float(entry["alpha_worst_case"]), power=power)
                     for sd, d in zip(entry["stored_sd"], entry["smallest_effects"], strict=True)]
                    if entry.get("status") == "planned" else [])
        claims.append(dict(claim=claim, status=entry.get("status", ""), tables=" ".join(entry.get("tables", [])),
                           entry_hash=entry_hash(entry)[:16],
                           analysis=("planned" if entry.get("status") == "planned"
                                     and data_commit_time(entry.get("experiment", "")) is None
                                     else analysis_status(claim, entry)),
                           seeds=entry.get("seeds", ""), n_per_arm=entry.get("n_per_arm", np.nan),
                           required_seeds=max(required) if required else np.nan,
                           cpu_hours=entry.get("cpu_hours", np.nan),
                           verdict_rule_version=plan.get("verdict_rule_version")))
    power_rows = []
    for name, table in tables.items():
        if "verdict" in table and "se" in table:
            power_rows += _power_rows(name, table, alpha, power)
    return {"plan_claims": pd.DataFrame(claims).set_index("claim"),
            "plan_power": pd.DataFrame(power_rows).set_index(["table", "row"])}


#: the seed ranges the stored evidence uses (and the setting-selection seeds 0-15): planned seeds must avoid them
STORED_SEED_RANGES = ((0, 15), (16, 31), (100, 109), (200, 219))
