"""The metric registry: `docs/metrics.md` documents exactly its metrics, each in its anchor's section; figures keep
their words."""

import json
import re
from pathlib import Path

import pytest

from acpg_lab import metric_registry as reg
from acpg_lab.plotting import METRIC_LABELS, metric_label

DOCS = Path(__file__).resolve().parents[1] / reg.DOCS


def _slug(heading: str) -> str:
    """MyST's anchor of a ``##`` heading (the rule `tests/test_glossary.py` checks)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def documented() -> dict[str, str]:
    """Every metric in a ``| column | ...`` table of the reference -> the anchor of the section it is in."""
    out, anchor, in_table = {}, None, False
    for line in DOCS.read_text().splitlines():
        if line.startswith("## "):
            anchor = _slug(line[3:])
        if line.startswith("| column |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            for name in re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]):
                assert name not in out, f"{name} documented twice"
                out[name] = anchor
    return out


def test_the_reference_documents_exactly_the_registry():
    docs = documented()
    assert sorted(set(reg.METRICS) - set(docs)) == [], "in the registry, not documented"
    assert sorted(set(docs) - set(reg.METRICS)) == [], "documented, not in the registry"
    anchors = {_slug(h) for h in re.findall(r"^## (.*)$", DOCS.read_text(), flags=re.M)}
    for name, entry in reg.METRICS.items():
        assert entry.anchor in anchors, f"{name}: no section #{entry.anchor} in {reg.DOCS}"
        assert docs[name] == entry.anchor, f"{name} is documented under #{docs[name]}, not #{entry.anchor}"


def test_every_entry_is_filled_in():
    for m in reg.METRICS.values():
        assert m.range and m.zero and m.source and m.anchor, m
        assert m.label is None or ("_" not in m.label and m.label.strip() == m.label), m


def test_figures_keep_their_words():
    """The labels figures used before the registry, word for word."""
    before = json.loads((Path(__file__).parent / "data" / "metric_labels.json").read_text())
    assert METRIC_LABELS == before
    assert metric_label("ratio_min") == "ratio min" and metric_label("null_nc1") == "null nc1"


def test_lookups_name_the_bad_input():
    assert reg.metric("nc1").null and reg.names(clip_relative=True)[:2] == ("ratio_below_mean", "ratio_above_mean")
    with pytest.raises(ValueError, match=r"unknown metric 'nc2'; did you mean \['nc1'"):
        reg.metric("nc2")
    with pytest.raises(ValueError, match="'policy_entropy' has no untrained null"):
        reg.require(["nc1", "policy_entropy"], null=True)
    assert reg.require(["nc1", "policy_entropy"]) == ("nc1", "policy_entropy")
