"""The report: every table behind `REPRODUCTION.md`'s ACPG and PFO rows, recomputed from the stored pieces by one
ordered list of table builders (`BUILDERS`: each names its family, the tables it builds and their index).

``python -m acpg_lab.evidence report`` writes the tables to ``results/evidence/tables/`` and renders
`REPRODUCTION.md`'s generated blocks from them (`acpg_lab.evidence.render`: the summary, and the ACPG and PFO
sections from their templates, every number naming its table cell); with ``--check`` it recomputes the tables,
fails if a stored table differs, and fails (printing the diff) unless `REPRODUCTION.md` is byte for byte its
rendering from the recomputed tables (and likewise the generated verdict blocks of the notebooks,
`acpg_lab.evidence.render.NOTEBOOK_BLOCKS`). `stored_table` reads a written table back, indexed.
Every verdict table is marked with its analysis-plan entry and whether it is confirmatory or exploratory
(`acpg_lab.evidence.plan.mark_tables`), and the plan's tables (``plan_claims``, ``plan_power``) are built last.
`verdict_changes` lists the verdicts that moved between two sets of tables (``results/evidence/verdict_changes.csv``:
the tables before issue 24's rules against after, then the 44 verdicts the baseline gate moved, appended).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence.collapse import LABEL_TABLES, collapse_tables, labels_vs_null
from acpg_lab.evidence.collapse import TABLES as COLLAPSE_TABLES
from acpg_lab.evidence.conditions import HEAD_TASKS
from acpg_lab.evidence.heads import EXPLORATION_TABLES, complete_tasks, exploration_tables, heads_tables
from acpg_lab.evidence.heads import TABLES as HEADS_TABLES
from acpg_lab.evidence.pfo import TABLES as PFO_TABLES
from acpg_lab.evidence.pfo import pfo_tables
from acpg_lab.evidence.pieces import PIECE, evidence_dir
from acpg_lab.evidence.plan import PLAN_TABLES, mark_tables, plan_tables
from acpg_lab.evidence.render import NOTEBOOK_BLOCKS, render_notebook_blocks, render_reproduction, reproduction_diff
from acpg_lab.evidence.replication import TABLES as REPLICATION_TABLES
from acpg_lab.evidence.replication import heads_tuned_tables, replication_tables
from acpg_lab.profiles import repository_root
from acpg_lab.stats import VERDICT_RULE

__all__ = ["Builder", "BUILDERS", "TABLE_INDEX", "compute_time", "report", "render_reproduction_md",
           "stored_table", "verdict_changes"]


def compute_time(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``evidence_cpu``: what each experiment cost, from the stored pieces' ``meta.json``: per experiment and
    condition group (the task, or the first part of the condition's name), the pieces and seeds stored, and the
    training time in seconds summed over pieces (one core per piece, ``num_threads=1``; for a piece resumed from a
    checkpoint, the time before and after the resume; on a shared machine it includes waiting for the core)."""
    rows = []
    for meta_path in sorted(evidence_dir(root).glob(f"*/**/seeds_*/{PIECE}")):
        meta = json.loads(meta_path.read_text())
        rows.append(dict(experiment=meta["experiment"], group=meta["condition"].split("/")[0],
                         seeds=len(meta["seeds"]), train_seconds=meta["train_seconds"],
                         wall_seconds=meta["wall_seconds"]))
    if not rows:
        return {"evidence_cpu": pd.DataFrame()}
    table = pd.DataFrame(rows).groupby(["experiment", "group"]).agg(
        pieces=("seeds", "size"), seed_runs=("seeds", "sum"), train_seconds=("train_seconds", "sum"),
        wall_seconds=("wall_seconds", "sum"))
    table["train_cpu_hours"] = table.train_seconds / 3600
    return {"evidence_cpu": table}


@dataclass(frozen=True)
class Builder:
    """One family's tables: ``build(root)`` returns them by name (empty while the family waits for pieces)."""

    family: str  #: named when its pieces are not all stored yet
    build: Callable[[Path | None], dict[str, pd.DataFrame]]
    tables: dict[str, list[str]]  #: table name -> its index columns
    partial: bool = False  #: whether missing pieces are reported (and the family left out) instead of failing


#: every table, in the order the report writes them
BUILDERS = (Builder("labels", labels_vs_null, LABEL_TABLES),
            Builder("cpu", compute_time, {"evidence_cpu": ["experiment", "group"]}),
            Builder("collapse", collapse_tables, COLLAPSE_TABLES, partial=True),
            Builder("heads", heads_tables, HEADS_TABLES, partial=True),
            Builder("exploration", exploration_tables, EXPLORATION_TABLES, partial=True),
            Builder("pfo", pfo_tables, PFO_TABLES, partial=True),
            # the planned confirmatory replications (results/evidence/plan.toml): built once all their pieces are
            Builder("replication", replication_tables, REPLICATION_TABLES, partial=True),
            Builder("heads_tuned", heads_tuned_tables, REPLICATION_TABLES, partial=True))
#: index columns of each stored table (the plan's tables are built from the others, last: `_tables`)
TABLE_INDEX = {name: index for builder in BUILDERS for name, index in builder.tables.items()} | PLAN_TABLES


def _tables(root: Path | None) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    waiting = [task for task in HEAD_TASKS if task not in complete_tasks(root)]
    if waiting:
        print(f"heads: tasks not (fully) stored yet, left out of the tables: {waiting}")
    for builder in BUILDERS:
        try:
            built = builder.build(root)
        except FileNotFoundError as missing:
            if not builder.partial:
                raise
            print(f"{builder.family}: not all pieces are stored yet ({missing})")
            continue
        unknown = sorted(set(built) - set(builder.tables))
        if unknown:
            raise ValueError(f"{builder.family} built tables it does not declare: {unknown}")
        tables |= built
    # the plan (results/evidence/plan.toml): which entry governs each verdict and whether it was decided before
    # the data; the power each claimed row had
    tables = mark_tables(tables)
    return tables | plan_tables(tables)


#: the generated document (its blocks are rendered by `acpg_lab.evidence.render`)
REPRODUCTION = "REPRODUCTION.md"
#: at most this many diff lines are printed by ``report --check`` (the diff's length is printed too)
DIFF_LINES = 80
DIFF_WIDTH = 400


def render_reproduction_md(tables: dict[str, pd.DataFrame], *, check: bool, path: Path | None = None) -> int:
    """Render `REPRODUCTION.md`'s generated blocks from ``tables``: write them (0), or with ``check`` compare them
    with the file byte for byte (1 and the diff printed if they differ)."""
    path = path or repository_root() / REPRODUCTION
    markdown = path.read_text()
    if not check:
        rendered = render_reproduction(markdown, tables)
        if rendered != markdown:
            path.write_text(rendered)
        print(f"{'wrote' if rendered != markdown else 'unchanged'} {path}")
        return 0
    diff = reproduction_diff(markdown, tables)
    if not diff:
        print(f"same {path} (its generated blocks re-rendered from the tables, byte for byte)")
        return 0
    print(f"DIFFERS {path}: its generated blocks are not the tables' rendering ({len(diff)} diff lines; run "
          "`python -m acpg_lab.evidence report` after editing acpg_lab/evidence/reproduction_templates.md):")
    for line in diff[:DIFF_LINES]:  # the rows are long lines: each diff line is cut at DIFF_WIDTH characters
        line = line.rstrip("\n")
        print(line if len(line) <= DIFF_WIDTH else line[:DIFF_WIDTH] + f" … ({len(line)} characters)")
    return 1


def _same(path: Path, table: pd.DataFrame) -> bool:
    """Whether the stored CSV at ``path`` holds ``table`` (numbers to 1e-9 relative)."""
    buffer = io.StringIO()
    table.to_csv(buffer)
    buffer.seek(0)
    stored, fresh = pd.read_csv(path), pd.read_csv(buffer)
    return stored.shape == fresh.shape and all(
        np.allclose(stored[c], fresh[c], rtol=1e-9, atol=1e-12, equal_nan=True)
        if pd.api.types.is_numeric_dtype(fresh[c]) else stored[c].equals(fresh[c]) for c in fresh)


def report(*, root: str | Path | None = None, check: bool = False) -> int:
    """Recompute every table; write them (or, with ``check``, compare them with the stored ones: 1 if any
    differs or is missing)."""
    out_dir = evidence_dir(root) / "tables"
    tables = _tables(Path(root) if root else None)
    bad = 0
    for name, table in tables.items():
        path = out_dir / f"{name}.csv"
        if not check:
            out_dir.mkdir(parents=True, exist_ok=True)
            table.to_csv(path)
            print(f"wrote {path}")
        elif not path.exists():
            print(f"MISSING {path}")
            bad += 1
        else:
            same = _same(path, table)
            print(f"{'same' if same else 'DIFFERS'} {path}")
            bad += not same
    if root is None and tables:  # the repository's tables: REPRODUCTION.md's generated blocks follow them
        bad += render_reproduction_md(tables, check=check)
        for message in render_notebook_blocks(tables, root=repository_root(), check=check):
            print(message if not check else f"DIFFERS {message}")
            bad += check
        if check:
            print(f"notebook blocks {sorted(NOTEBOOK_BLOCKS)}: checked")
    print(f"verdict rule: {VERDICT_RULE}")
    return int(bad > 0)


def stored_table(name: str, *, root: str | Path | None = None) -> pd.DataFrame:
    """A table `python -m acpg_lab.evidence report` wrote (``results/evidence/tables/<name>.csv``), indexed."""
    if name not in TABLE_INDEX:
        raise ValueError(f"unknown table {name!r}; known: {sorted(TABLE_INDEX)}")
    path = evidence_dir(root) / "tables" / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is not stored yet: run `python -m acpg_lab.evidence report`")
    return pd.read_csv(path, index_col=TABLE_INDEX[name])


def _why(table: str, before: str, after: str, rule: str) -> str:
    """Which change of issue 24 moved a verdict from ``before`` to ``after`` (``rule``: the new row's rule)."""
    if before == "(no row)":
        return "a new row (issue 24): " + (
            "the circular null of the stored history, kept beside the own-label null" if table == "heads_alignment"
            else rule)
    if table == "pfo_lead_lag":
        return "lead-lag smallest effect |r| >= 0.1 (material), with the family-level interval: " + rule
    if after == "inconclusive (budget)" and ("did not reach the reference" in rule or "no published PPO" in rule):
        return "baseline gate (the learnable head at its published reference before heads are compared): " + rule
    if "inconclusive (budget)" in (before, after):
        return "convergence decided by equivalence (late rise's interval against 5% of the range per tenth): " + (
            rule if after == "inconclusive (budget)" else "every arm now shown converged; " + rule)
    if before == "not reproduced" and after == "inconclusive (power)":
        return "two-sided multiplicity (family-level Bonferroni interval): " + rule
    if table == "pfo_contrasts":
        return "one Holm family over pfo_contrasts (the split came after the data): " + rule
    return rule


def verdict_changes(before: str | Path, after: str | Path | None = None, *,
                    lead_lag_before: str = "partially reproduced (REPRODUCTION.md; the table had no verdict)"
                    ) -> pd.DataFrame:
    """Every verdict that moved between the tables in the directory ``before`` and those in ``after`` (default:
    the stored tables): table, row key, before, after, why. Rows present on one side only are listed with
    "(no row)". ``pfo_lead_lag`` had no verdict column before issue 24: its rows' "before" is
    ``lead_lag_before``."""
    after = Path(after) if after is not None else evidence_dir() / "tables"
    rows = []
    for name, index in TABLE_INDEX.items():
        new_path, old_path = after / f"{name}.csv", Path(before) / f"{name}.csv"
        if not new_path.exists():
            continue
        new = pd.read_csv(new_path, index_col=index)
        if "verdict" not in new or "rule" not in new:  # plan_power repeats the verdicts
            continue
        old = pd.read_csv(old_path, index_col=index) if old_path.exists() else pd.DataFrame(index=new.index)
        old_verdict = old["verdict"] if "verdict" in old else pd.Series(lead_lag_before, index=old.index)
        for key in new.index.union(old.index, sort=False):
            b = old_verdict.get(key, "(no row)") if key in old.index else "(no row)"
            a, rule = (new.loc[key, "verdict"], new.loc[key, "rule"]) if key in new.index else ("(no row)", "")
            if b != a:
                rows.append(dict(table=name, row=" | ".join(map(str, key if isinstance(key, tuple) else (key,))),
                                 before=b, after=a, why=_why(name, b, a, rule)))
    return pd.DataFrame(rows, columns=["table", "row", "before", "after", "why"])
