"""The pre-registered analysis plan (issue 24): results/evidence/plan.toml, acpg_lab/evidence/plan.py."""

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.power import TTestPower

from acpg_lab.evidence import plan
from acpg_lab.evidence.report import TABLE_INDEX
from acpg_lab.stats import VERDICT_RULE_VERSION

ROOT = Path(__file__).resolve().parents[1]


def _ranges(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b or a)) for a, b in re.findall(r"(\d+)(?:-(\d+))?", text)]


def test_every_verdict_table_has_one_retrospective_entry_and_the_rule_version():
    p = plan.load_plan()
    assert p["verdict_rule_version"] == VERDICT_RULE_VERSION
    governed = plan._entries_by_table(p)
    verdict_tables = {"collapse_vs_null", "collapse_between", "heads_contrasts", "heads_alignment",
                      "exploration_contrasts", "pfo_dose", "pfo_vs_null", "pfo_contrasts", "pfo_lead_lag"}
    assert set(governed) == verdict_tables and verdict_tables <= set(TABLE_INDEX)
    for entry in p["claims"].values():
        assert {"status", "tables", "experiment", "claim", "primary_outcome", "family", "seeds",
                "n_per_arm"} <= set(entry)


def test_planned_sample_sizes_follow_from_their_power_analysis():
    """The n of each planned replication is what a paired t test at the family's worst-case Holm level needs for
    power 0.8 at the stated smallest effect and stored SD (checked against statsmodels too)."""
    p = plan.load_plan()
    planned = {k: e for k, e in p["claims"].items() if e["status"] == "planned"}
    assert set(planned) == {"replication_04_etf_pfo", "replication_pfo_return", "replication_actor_critic",
                            "replication_heads_lunarlander_zoo"}
    assert planned["replication_04_etf_pfo"]["claims_in_family"] == 3
    for claim, e in planned.items():
        assert e["alpha_worst_case"] == pytest.approx(p["alpha"] / e["claims_in_family"])
        needed = [plan.required_seeds(sd, d, alpha=e["alpha_worst_case"], power=p["power"])
                  for sd, d in zip(e["stored_sd"], e["smallest_effects"], strict=True)]
        assert needed == e["required_seeds"], claim
        reference = [int(np.ceil(TTestPower().solve_power(effect_size=d / sd, alpha=e["alpha_worst_case"],
                                                           power=p["power"])))
                     for sd, d in zip(e["stored_sd"], e["smallest_effects"], strict=True)]
        assert needed == reference, claim
        (low, high), = _ranges(e["seeds"])
        assert e["n_per_arm"] == high - low + 1 == max(needed), claim


def test_planned_seeds_are_fresh():
    """The planned replications' seeds overlap no seed of the stored (retrospective) evidence nor each other;
    the pieces of a planned experiment stay within its planned seeds."""
    planned = [e for e in plan.load_plan()["claims"].values() if e["status"] == "planned"]
    planned_experiments = {e["experiment"] for e in planned}
    stored, replicated = set(), set()
    for piece in (ROOT / "results" / "evidence").glob("*/**/seeds_*"):
        (low, high), = _ranges(piece.name.removeprefix("seeds_"))
        experiment = piece.relative_to(ROOT / "results" / "evidence").parts[0]
        (replicated if experiment in planned_experiments else stored).update(range(low, high + 1))
    assert stored and stored <= {s for a, b in plan.STORED_SEED_RANGES for s in range(a, b + 1)}
    assert replicated <= {s for e in planned for a, b in _ranges(e["seeds"]) for s in range(a, b + 1)}
    taken = {s for a, b in plan.STORED_SEED_RANGES for s in range(a, b + 1)}
    seen: set[int] = set()
    for e in planned:
        (low, high), = _ranges(e["seeds"])
        seeds = set(range(low, high + 1))
        assert not seeds & taken and not seeds & seen
        seen |= seeds


def test_hashes_ignore_formatting_but_not_content(tmp_path):
    text = (ROOT / plan.PLAN_FILE).read_text()
    path = tmp_path / "plan.toml"
    path.write_text(text)
    assert plan.plan_hash(path) == plan.plan_hash()
    entry = plan.load_plan()["claims"]["pfo_contrasts"]
    assert plan.entry_hash(dict(reversed(list(entry.items())))) == plan.entry_hash(entry)
    assert plan.entry_hash(dict(entry, family="two families")) != plan.entry_hash(entry)
    path.write_text(text + "\n# a comment\n")
    assert plan.plan_hash(path) != plan.plan_hash()


def test_a_verdict_is_confirmatory_only_when_its_entry_predates_its_data(monkeypatch):
    entry = {"experiment": "pfo"}
    before, after = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    monkeypatch.setattr(plan, "data_commit_time", lambda experiment: after)
    monkeypatch.setattr(plan, "entry_commit_time", lambda claim, e: before)
    assert plan.analysis_status("c", entry) == "confirmatory"
    monkeypatch.setattr(plan, "data_commit_time", lambda experiment: before)
    monkeypatch.setattr(plan, "entry_commit_time", lambda claim, e: after)
    assert plan.analysis_status("c", entry) == "exploratory"
    monkeypatch.setattr(plan, "entry_commit_time", lambda claim, e: None)  # not committed: newer than anything
    assert plan.analysis_status("c", entry) == "exploratory"


def test_the_stored_evidence_is_exploratory_under_the_plan():
    """Every stored piece predates the plan: git says so."""
    p = plan.load_plan()
    for claim, entry in p["claims"].items():
        if entry["status"] == "retrospective":
            assert plan.analysis_status(claim, entry) == "exploratory", claim


def test_power_helpers():
    # a paired t with se 1 and many df: MDE ~ (1.96 + 0.84) se
    assert plan.minimal_detectable_effect(1.0, 1e6, alpha=0.05) == pytest.approx(2.80, abs=0.01)
    assert plan.achieved_power(1.0, 1e6, 2.80, alpha=0.05) == pytest.approx(0.80, abs=0.01)
    assert plan.achieved_power(1.0, 1e6, 0.0, alpha=0.05) == pytest.approx(0.05, abs=1e-3)
    with pytest.raises(ValueError):
        plan.required_seeds(0.0, 1.0, alpha=0.05)


def test_planned_replications_train_exactly_their_planned_seeds():
    """The conditions of each planned replication (conditions.EXPERIMENTS) run the plan's seeds, no more, no fewer:
    the plan is the witness of what is trained."""
    from acpg_lab.evidence.conditions import EXPERIMENTS

    planned = {k: e for k, e in plan.load_plan()["claims"].items() if e["status"] == "planned"}
    prefixes = {"replication_04_etf_pfo": "etf_pfo/", "replication_pfo_return": "pfo_return/",
                "replication_actor_critic": "actor_critic/",
                "replication_heads_lunarlander_zoo": "ppo_lunarlander_zoo/"}
    for claim, e in planned.items():
        (low, high), = _ranges(e["seeds"])
        conditions = [c for name, c in EXPERIMENTS[e["experiment"]].items() if name.startswith(prefixes[claim])]
        assert conditions, claim
        for c in conditions:
            assert c.seeds == tuple(range(low, high + 1)), claim
