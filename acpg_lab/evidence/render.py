"""`REPRODUCTION.md`'s evidence blocks, rendered from the tables: one idea, a template per row whose every number
and verdict word names the table cell it comes from.

The blocks are the text between ``<!-- evidence:NAME -->`` and ``<!-- /evidence:NAME -->`` (``BLOCKS``): the
one-screen ``summary`` at the top (built here from the analysis plan and the tables: `summary`), and the ``acpg``
and ``pfo`` sections (the templates in ``reproduction_templates.md``, beside this module, between
``<!-- template:NAME -->`` and ``<!-- /template:NAME -->``); the notebooks' appendix verdicts are blocks too
(`NOTEBOOK_BLOCKS`: the templates in ``notebook_templates/NN.md``, one markdown cell each, wherever a notebook
quotes the stored evidence: its claim, takeaway, exercises' expected outcomes and appendix verdict). Everything
outside the blocks is hand-written.

A placeholder is ``{{table[key; key].column:spec}}``: the table (as `acpg_lab.evidence.report` builds it), the row's
index values joined by ``"; "`` (as strings; ``; @column=value`` adds a column or index level where the index alone
is not unique, as in ``heads_aggregate``, or picks the rows an aggregate runs over), the column, and a format spec
(Python's, e.g. ``+.4f``; a leading ``p`` prints a p-value below 1e-4 as ``< 1e-4``; ``abs`` first prints the
magnitude; a leading ``a`` keeps an ASCII minus, otherwise numbers print with the typographic ``−``).
``{{min:table[key prefix].column}}`` (or max, sum, count) aggregates the column over the rows whose key starts with
the prefix. A string cell (a ``verdict``) takes no spec, or ``cap`` to start a sentence with it. Each rendered value
is followed by an HTML comment that names its cell, ``0.0075<!--collapse_vs_null[onehot/balanced; nc1].mean_x-->``,
invisible on GitHub, in JupyterLab and in the book, readable in the source.

`render_reproduction` replaces the blocks of a markdown text; `reproduction_diff` is what ``report --check``
prints (empty when ``REPRODUCTION.md`` is byte for byte its rendering); `template_cells` lists the cells the
templates use (a test changes each and sees the text change).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["BLOCKS", "NOTEBOOK_BLOCKS", "TEMPLATES", "PLACEHOLDER", "cell", "format_value", "render",
           "render_reproduction", "reproduction_diff", "first_difference", "render_notebook_blocks", "summary",
           "NOTEBOOK_TEMPLATES", "NOTEBOOKS", "notebook_blocks",
           "template_cells", "templates"]

#: the generated blocks of REPRODUCTION.md, in the order they appear
BLOCKS = ("summary", "replication", "acpg", "pfo", "compute")
#: the templates of the ``acpg`` and ``pfo`` blocks
TEMPLATES = Path(__file__).with_name("reproduction_templates.md")
#: the templates of the notebooks' generated blocks: ``NN.md`` holds notebook ``NN``'s, each named ``nbNN_...``
NOTEBOOK_TEMPLATES = Path(__file__).with_name("notebook_templates")
_TEMPLATE = re.compile(r"<!-- template:(\w+) -->\n(.*?)<!-- /template:\1 -->", flags=re.S)


#: the notebooks that have generated blocks, by their number
NOTEBOOKS = {"01": "notebooks/01_observing_action_collapse.ipynb", "02": "notebooks/02_acpg_fixed_etf_head.ipynb",
             "03": "notebooks/03_ppo_trust_region_failure.ipynb", "04": "notebooks/04_acpg_meets_pfo.ipynb"}


def notebook_blocks(directory: Path | None = None) -> dict[str, str]:
    """Every generated block of the notebooks' markdown cells (the claim, the takeaway, the appendix's verdict,
    ...): block -> its notebook, relative to the repository (``NN.md``'s ``nbNN_...`` -> `NOTEBOOKS` ``[NN]``)."""
    blocks = {}
    for path in sorted((directory or NOTEBOOK_TEMPLATES).glob("[0-9][0-9].md")):
        if path.stem not in NOTEBOOKS:
            raise ValueError(f"{path}: no notebook {path.stem} in acpg_lab.evidence.render.NOTEBOOKS")
        for name, _ in _TEMPLATE.findall(path.read_text()):
            if not name.startswith(f"nb{path.stem}_"):
                raise ValueError(f"{path}: template {name!r} must be named nb{path.stem}_...")
            blocks[name] = NOTEBOOKS[path.stem]
    return blocks


#: generated blocks inside the notebooks' markdown cells: block -> notebook, relative to the repository (rendered
#: and checked with REPRODUCTION.md's blocks: `render_notebook_blocks`)
NOTEBOOK_BLOCKS = notebook_blocks()
#: ``{{table[key; key].column:spec}}``
PLACEHOLDER = re.compile(r"\{\{(?:(?P<agg>min|max|sum|count):)?(?P<table>[a-z0-9_]+)\[(?P<key>[^\]]*)\]"
                         r"\.(?P<column>[A-Za-z0-9_]+)(?::(?P<spec>[^}]*))?\}\}")
KEY_SEPARATOR = "; "


def _key_text(key: Any) -> str:
    return KEY_SEPARATOR.join(str(k) for k in (key if isinstance(key, tuple) else (key,)))


_ROWS: dict[int, dict[str, Any]] = {}


def cell(tables: dict[str, pd.DataFrame], table: str, key: str, column: str, agg: str | None = None) -> Any:
    """The value of ``tables[table]`` at the row whose index values, as strings joined by ``"; "``, are ``key``;
    with ``agg`` (min, max, sum, count), that function of the column over every row whose key starts with
    ``key`` (all rows for an empty one) and matches its ``@column=value`` filters."""
    if table not in tables:
        raise KeyError(f"{{{{{table}[{key}].{column}}}}}: no table {table!r}")
    frame = tables[table]
    rows = _ROWS.get(id(frame))
    if rows is None or rows.get("__frame__") is not frame:
        rows = {"__frame__": frame}
        for i, k in enumerate(frame.index):
            rows.setdefault(_key_text(k), []).append(i)
        _ROWS[id(frame)] = rows
    index_key, *filters = key.split("@")  # `@column=value`: a non-index column picks the row
    index_key = index_key.removesuffix(KEY_SEPARATOR)
    if agg:
        found = [i for k, ii in rows.items() if k != "__frame__" and (
            not index_key or k == index_key or k.startswith(index_key + KEY_SEPARATOR)) for i in ii]
    else:
        found = rows.get(index_key, []) if index_key != "__frame__" else []
    for f in filters:
        name, _, value = f.partition("=")
        if name in frame.columns:
            values = frame[name]
        elif name in (frame.index.names or []):
            values = pd.Series(frame.index.get_level_values(name))
        else:
            raise KeyError(f"{{{{{table}[{key}].{column}}}}}: no column or index level {name!r} in {table}")
        found = [i for i in found if str(values.iloc[i]) == value]
    if agg:
        if column not in frame.columns or not found:
            raise KeyError(f"{{{{{agg}:{table}[{key}].{column}}}}}: no such rows or column in {table}")
        values = frame[column].iloc[sorted(found)].astype(float).dropna()
        return {"min": values.min, "max": values.max, "sum": values.sum, "count": values.count}[agg]()
    if len(found) != 1:
        raise KeyError(f"{{{{{table}[{key}].{column}}}}}: {len(found)} rows {key!r} in {table}")
    if column not in frame.columns:
        raise KeyError(f"{{{{{table}[{key}].{column}}}}}: no column {column!r} in {table}")
    return frame.iloc[found[0], frame.columns.get_loc(column)]


def format_value(value: Any, spec: str | None) -> str:
    """``value`` as the prose prints it (see the module's docstring for the spec)."""
    if spec is None or spec == "":
        return str(value)
    if spec == "cap":  # a verdict that starts a sentence
        return str(value)[:1].upper() + str(value)[1:]
    if spec.startswith("abs"):  # the magnitude ("falls by 74")
        value, spec = abs(float(value)), spec[3:]
    ascii_minus = spec.startswith("a")
    spec = spec[1:] if ascii_minus else spec
    if spec.startswith("p"):
        spec = spec[1:]
        if float(value) < 1e-4:
            return "< 1e-4"
    if isinstance(value, str):
        return value
    if math.isnan(float(value)):
        return "n/a"
    text = format(float(value), spec)
    return text if ascii_minus else text.replace("-", "−")


def render(template: str, tables: dict[str, pd.DataFrame], *, trace: bool = True) -> str:
    """``template`` with every placeholder replaced by its cell's value (and, with ``trace``, the cell's name in an
    HTML comment after it)."""
    def fill(m: re.Match) -> str:
        value = format_value(cell(tables, m["table"], m["key"], m["column"], m["agg"]), m["spec"])
        agg = f"{m['agg']}:" if m["agg"] else ""
        return value + (f"<!--{agg}{m['table']}[{m['key']}].{m['column']}-->" if trace else "")
    return PLACEHOLDER.sub(fill, template)


def templates(path: Path | None = None, *, notebooks: Path | None = None) -> dict[str, str]:
    """Every template by name: the ``acpg`` and ``pfo`` blocks' (``path``) and the notebooks' (``notebooks``)."""
    text = (path or TEMPLATES).read_text()
    found = dict(_TEMPLATE.findall(text))
    missing = [name for name in BLOCKS if name != "summary" and name not in found]
    if missing:
        raise ValueError(f"{path or TEMPLATES} has no template for {missing}")
    for file in sorted((notebooks or NOTEBOOK_TEMPLATES).glob("[0-9][0-9].md")):
        found.update(_TEMPLATE.findall(file.read_text()))
    return found


def template_cells(path: Path | None = None) -> list[tuple[str | None, str, str, str, str | None]]:
    """Every (aggregate, table, key, column, spec) the templates name, in order, without repeats."""
    seen: dict[tuple, None] = {}
    for text in templates(path).values():
        for m in PLACEHOLDER.finditer(text):
            seen[(m["agg"], m["table"], m["key"], m["column"], m["spec"])] = None
    return list(seen)


# ------------------------------------------------------------------------------------------------ the summary
#: per stored claim of the plan: the row whose number decides it (table, key, what the number is)
DECIDING = {
    "collapse_vs_null": ("collapse_vs_null", "onehot/balanced; nc1", "one-hot `nc1`, trained − untrained"),
    "collapse_between": ("collapse_between", "onehot/imbalanced; equinorm_features; log(trained / null)",
                         "one-hot imbalanced − balanced, log(trained / null) of `equinorm_features`"),
    "heads_contrasts": ("heads_contrasts", "reinforce_cartpole; etf - linear; updates_to_threshold",
                        "REINFORCE CartPole, updates to 475, ETF − learnable"),
    "heads_alignment": ("heads_alignment", "ppo_acrobot; 3; etf - linear",
                        "Acrobot `label_alignment`, ETF − learnable (own rows)"),
    "exploration_contrasts": ("exploration_contrasts", "0.1; (etf - linear) - (etf - linear at 0); best",
                              "Breakout best return, (ETF − learnable) at ε = 10% minus at ε = 0"),
    "pfo_dose": ("pfo_dose", "cartpole; log2(epochs); beta=0; final_train",
                 "CartPole final training return per doubling of the epochs"),
    "pfo_vs_null": ("pfo_vs_null", "shifting/e10_b0; actor_approx_rank",
                    "shifting bandit, PCA rank trained − untrained (10 epochs)"),
    "pfo_contrasts": ("pfo_contrasts", "cartpole; PFO beta=1 last layer - none (epochs=80); final_train",
                      "final training return, PFO β = 1 − none at 80 epochs"),
    "pfo_lead_lag": ("pfo_lead_lag", "episode_return; cartpole/e40_b0; ratio_below_mean",
                     "r of `ratio_below_mean`'s change with the return's next change (40 epochs)"),
}
#: how each kind of table names its difference, interval and Holm p
_COLUMNS = {"pfo_lead_lag": ("leads", "leads_ci_low", "leads_ci_high", "leads_p_holm")}


def _g(value: float) -> str:
    return format_value(value, ".3g")


def summary(tables: dict[str, pd.DataFrame], plan: dict[str, Any], *, trace: bool = True) -> str:
    """The one-screen summary: per claim of the plan, its verdict (the deciding row's, and how the rows of its
    tables split), the number that decides it with its 95% interval and Holm p, the notebook, and whether the
    analysis is confirmatory or exploratory. A planned claim whose tables are not built yet reads "planned (not
    trained yet)"."""
    def named(table: str, key: str, column: str, text: str) -> str:
        return text + (f"<!--{table}[{key}].{column}-->" if trace else "")

    lines = ["| claim | verdict | the number that decides it | notebook | analysis |", "|---|---|---|---|---|"]
    for claim, entry in plan["claims"].items():
        text = entry["claim"][0].upper() + entry["claim"][1:]
        table, key, what, rows = _deciding(claim, entry, tables)
        if table is None:
            lines.append(f"| {text} | planned (not trained yet) | {entry.get('n_per_arm', '?')} seeds per arm planned "
                         f"({entry.get('seeds', '?')}) | {entry['notebook']} | {entry['status']} |")
            continue
        diff, low, high, holm = _COLUMNS.get(table, ("difference", "ci_low", "ci_high", "p_holm"))
        values = {c: cell(tables, table, key, c) for c in (diff, low, high, holm, "verdict", "analysis")}
        split = ", ".join(f"{n} {v}" for v, n in sorted(Counter(rows["verdict"]).items(), key=lambda vn: -vn[1]))
        number = (f"{what}: {named(table, key, diff, _g(values[diff]))} "
                  f"[{named(table, key, low, _g(values[low]))}, {named(table, key, high, _g(values[high]))}], "
                  f"Holm p {named(table, key, holm, format_value(values[holm], 'p.2g'))}")
        lines.append(f"| {text} | **{named(table, key, 'verdict', values['verdict'])}** (rows of `{table}`: "
                     f"{split}) | {number} | {entry['notebook']} | "
                     f"{named(table, key, 'analysis', values['analysis'])} |")
    return "\n".join(lines) + "\n"


def _deciding(claim: str, entry: dict[str, Any], tables: dict[str, pd.DataFrame]
              ) -> tuple[str | None, str, str, pd.DataFrame]:
    """(table, row key, what the number is, the rows whose verdicts the summary counts) of a claim; a claim not
    in `DECIDING` (a planned replication) is decided by the first claimed row its tables give it (``plan_entry``),
    and has no table (None) while they are not built."""
    if claim in DECIDING:
        table, key, what = DECIDING[claim]
        return (table, key, what, tables[table]) if table in tables else (None, "", "", pd.DataFrame())
    for table in entry.get("tables", []):
        frame = tables.get(table)
        if frame is None or "plan_entry" not in frame or "verdict" not in frame:
            continue
        rows = frame[(frame["plan_entry"] == claim) & ~frame["verdict"].astype(str).str.startswith("descriptive")]
        if len(rows):
            key = _key_text(rows.index[0])
            return table, key, key.replace(KEY_SEPARATOR, ", "), rows
    return None, "", "", pd.DataFrame()


# ------------------------------------------------------------------------------------------------ the document
def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- evidence:{name} -->\n)(.*?)(<!-- /evidence:{name} -->)", flags=re.S)


def render_reproduction(markdown: str, tables: dict[str, pd.DataFrame], *, plan: dict[str, Any] | None = None,
                        template_path: Path | None = None) -> str:
    """``markdown`` with each generated block replaced by its rendering (a missing block's markers raise)."""
    if plan is None:
        from acpg_lab.evidence.plan import load_plan
        plan = load_plan()
    found = templates(template_path)
    for name in BLOCKS:
        pattern = _block(name)
        if not pattern.search(markdown):
            raise ValueError(f"REPRODUCTION.md lacks <!-- evidence:{name} --> ... <!-- /evidence:{name} -->")
        body = summary(tables, plan) if name == "summary" else render(found[name], tables)
        markdown = pattern.sub(lambda m, body=body: m[1] + body + m[3], markdown, count=1)
    return markdown


def reproduction_diff(markdown: str, tables: dict[str, pd.DataFrame], **kwargs: Any) -> list[str]:
    """The unified diff from ``markdown`` to its rendering (empty when they are equal byte for byte)."""
    rendered = render_reproduction(markdown, tables, **kwargs)
    if rendered == markdown:
        return []
    return [first_difference(markdown, rendered)] + list(difflib.unified_diff(
        markdown.splitlines(keepends=True), rendered.splitlines(keepends=True), "REPRODUCTION.md (stored)",
        "REPRODUCTION.md (rendered from the tables)"))


def first_difference(stored: str, rendered: str, width: int = 60) -> str:
    """Where two texts first differ (line, column) and the stored and rendered text there: the rows are long
    lines, so the unified diff alone does not show which number moved."""
    at = next((i for i, (a, b) in enumerate(zip(stored, rendered, strict=False)) if a != b),
              min(len(stored), len(rendered)))
    line = stored.count("\n", 0, at) + 1
    column = at - (stored.rfind("\n", 0, at) + 1) + 1
    start = max(0, at - width)
    return (f"first difference at line {line}, column {column}:\n  stored:   …{stored[start:at + width]!r}\n"
            f"  rendered: …{rendered[start:at + width]!r}\n")


def render_notebook_blocks(tables: dict[str, pd.DataFrame], *, root: Path, check: bool) -> list[str]:
    """Render each of `NOTEBOOK_BLOCKS` inside its notebook's one markdown cell that holds its markers: with
    ``check``, one message per block that differs from its rendering (where it first differs); otherwise each
    notebook with a changed block is rewritten once (nbformat JSON, `acpg_lab.lesson.collapse_file`) and one
    message per rewritten block."""
    from acpg_lab.lesson import collapse_file

    found = templates()
    messages = []
    by_notebook: dict[str, list[str]] = {}
    for name, relative in NOTEBOOK_BLOCKS.items():
        by_notebook.setdefault(relative, []).append(name)
    for relative, names in by_notebook.items():
        path = root / relative
        nb = json.loads(path.read_text())
        changed = []
        for name in names:
            cells = [c for c in nb["cells"]
                     if c["cell_type"] == "markdown" and _block(name).search("".join(c["source"]))]
            if len(cells) != 1:
                raise ValueError(f"{relative} has {len(cells)} markdown cells with <!-- evidence:{name} --> ... "
                                 f"<!-- /evidence:{name} -->; it needs exactly one")
            text = "".join(cells[0]["source"])
            body = render(found[name], tables)
            rendered = _block(name).sub(lambda m, body=body: m[1] + body + m[3], text, count=1)
            if rendered == text:
                continue
            if check:
                messages.append(f"{relative} ({name}) " + first_difference(text, rendered))
                continue
            cells[0]["source"] = rendered.splitlines(keepends=True)
            changed.append(name)
        if changed:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            collapse_file(path)
            messages += [f"wrote {relative} ({name})" for name in changed]
    return messages
