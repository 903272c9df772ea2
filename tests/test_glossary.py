"""The glossary (docs/glossary.md) has exactly the terms the notebooks link to, and every link resolves.

Notebooks link a term at first use as ``../docs/glossary.md#<anchor>``; the book rewrites that to
``glossary.md#<anchor>`` and MyST makes the anchor from the heading (``myst_heading_anchors``). `slug` is MyST's
rule for these headings (lower case, spaces to hyphens, anything but letters, digits, hyphens and underscores
dropped); test_book.py checks the anchors of the built book against the same list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary.md"

#: The terms, in order, as the notebooks' helpers were told to link them.
TERMS = ["Untrained null", "Control arm", "Held-out seeds", "Confidence interval", "Welch t interval",
         "Paired t interval", "Holm correction", "IQM and rliable", "Probability of improvement",
         "Smallest effect of interest", "Verdict words", "Greedy and sampled evaluation", "PCA rank", "srank",
         "Effective rank", "Dead units", "Plasticity probe", "Trust region and the ratio statistics",
         "Collapse event", "Lead-lag test and circular-shift null", "Simplex ETF", "NC1", "Action collapse",
         "Theorem 1 alignment", "PFO", "Dose-response", "Profiles"]
ANCHORS = {"untrained-null", "control-arm", "held-out-seeds", "confidence-interval", "welch-t-interval",
           "paired-t-interval", "holm-correction", "iqm-and-rliable", "probability-of-improvement",
           "smallest-effect-of-interest", "verdict-words", "greedy-and-sampled-evaluation", "pca-rank", "srank",
           "effective-rank", "dead-units", "plasticity-probe", "trust-region-and-the-ratio-statistics",
           "collapse-event", "lead-lag-test-and-circular-shift-null", "simplex-etf", "nc1", "action-collapse",
           "theorem-1-alignment", "pfo", "dose-response", "profiles"}
_LINK = re.compile(r"\.\./docs/glossary\.md#([^)\s\"'>]*)")


def slug(heading: str) -> str:
    """MyST's heading anchor for these headings (ASCII headings; the book's build is checked separately)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(level: int = 2) -> list[str]:
    prefix = "#" * level + " "
    lines, fenced = [], False
    for line in GLOSSARY.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith(prefix):
            lines.append(line[len(prefix):].strip())
    return lines


def notebook_links() -> dict[str, set[str]]:
    """anchor -> notebooks that link ``../docs/glossary.md#anchor`` in a markdown cell."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for anchor in _LINK.findall("".join(cell["source"])):
                    found.setdefault(anchor, set()).add(path.stem)
    return found


def test_the_glossary_has_exactly_the_agreed_terms():
    assert headings() == TERMS
    assert {slug(t) for t in TERMS} == ANCHORS
    assert len(ANCHORS) == len(TERMS)


def test_every_glossary_entry_is_a_short_paragraph_with_content():
    text = GLOSSARY.read_text()
    sections = re.split(r"^## .*$", text, flags=re.M)[1:]
    assert len(sections) == len(TERMS)
    for term, body in zip(TERMS, sections, strict=True):
        words = len(body.split())
        assert 25 <= words <= 260, f"{term!r}: {words} words (one short paragraph expected)"
    # links into the metric reference name one of its sections (MyST anchors of its ## headings)
    metrics = (ROOT / "docs" / "metrics.md").read_text()
    metric_anchors = {slug(h) for h in re.findall(r"^## (.*)$", metrics, flags=re.M)}
    used = set(re.findall(r"\(metrics\.md#([^)]*)\)", text))
    assert used, "the glossary links no section of the metric reference"
    assert used <= metric_anchors, sorted(used - metric_anchors)
    assert set(re.findall(r"\]\(#([^)]*)\)", text)) <= ANCHORS


def test_every_notebook_link_to_the_glossary_names_a_term():
    links = notebook_links()
    unknown = {a: sorted(nbs) for a, nbs in links.items() if a not in ANCHORS}
    assert not unknown, f"glossary anchors that name no term (known: {sorted(ANCHORS)}): {unknown}"
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for target in re.findall(r"\]\(([^)\s]*glossary\.md[^)\s]*)", "".join(cell["source"])):
                    assert target.startswith("../docs/glossary.md"), (
                        f"{path.name}: link the glossary as ../docs/glossary.md#<anchor>, not {target!r}")


def test_the_slug_rule():
    assert slug("IQM and rliable") == "iqm-and-rliable"
    assert slug("Lead-lag test and circular-shift null") == "lead-lag-test-and-circular-shift-null"
    assert slug("PFO: Proximal Feature Optimization") == "pfo-proximal-feature-optimization"
    assert slug("Theorem 1 alignment") == "theorem-1-alignment"
