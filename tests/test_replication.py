"""The planned replications' analysis (acpg_lab.evidence.replication), fixed before their data: the families, claims
and smallest effects of results/evidence/plan.toml, no interim look, and verdicts that follow the data."""

import numpy as np
import pandas as pd
import pytest

from acpg_lab import evidence
from acpg_lab.evidence import Condition, pieces, plan, replication
from acpg_lab.evidence.conditions import CRITIC_COLUMNS, PFO_BASE, PFO_COLUMNS

SEEDS = tuple(range(300, 312))


def _per_seed(values: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """A per-seed table like `replication_per_seed`'s: condition -> statistic -> per-seed values."""
    frames = []
    for condition, stats in values.items():
        n = len(next(iter(stats.values())))
        frame = pd.DataFrame(stats, index=pd.Index(SEEDS[:n], name="seed"))
        frame["condition"] = condition
        frame["epochs"] = int(condition.split("/e")[1].split("_")[0])
        frames.append(frame.reset_index().set_index(["condition", "seed"]))
    return pd.concat(frames)


def _cells_04(rng, *, dead_gap: float, events_gap: float, return_gap: float) -> pd.DataFrame:
    base = {s: rng.normal(0, 1, 12) for s in ("actor_dead_neurons", "events", "final_train", "greedy", "sampled")}
    cells = {}
    for name, (dead, events, ret) in {"etf_pfo/e40_etf_b0": (-dead_gap, -events_gap, 0.0),
                                      "etf_pfo/e40_linear_b0": (0.0, 0.0, 0.0),
                                      "etf_pfo/e40_etf_b1": (0.0, 0.0, return_gap),
                                      "etf_pfo/e40_linear_b1": (0.0, 0.0, 0.0)}.items():
        noise = {k: v + rng.normal(0, 0.1, 12) for k, v in base.items()}
        cells[name] = dict(noise, actor_dead_neurons=20 + dead + noise["actor_dead_neurons"],
                           events=np.clip(3 + events + noise["events"], 0, None),
                           final_train=300 + ret + noise["final_train"])
    return _per_seed(cells)


def test_the_plan_and_the_analysis_name_the_same_families_effects_and_seeds():
    entries = plan.load_plan()["claims"]
    e = entries["replication_04_etf_pfo"]
    assert [c[3] for c in replication.CLAIMS_04] == e["outcomes"]
    assert [c[5] for c in replication.CLAIMS_04] == e["smallest_effects"]
    assert [c[4] for c in replication.CLAIMS_04] == [-1, -1, 1]
    r = entries["replication_pfo_return"]
    assert [replication.CLAIM_RETURN[5]] == r["smallest_effects"] and replication.CLAIM_RETURN[3] == "final_train"
    assert [replication.CRITIC_SMALLEST] == entries["replication_actor_critic"]["smallest_effects"]
    for entry in e, r, entries["replication_actor_critic"]:
        assert entry["experiment"] == "replication" and entry["tables"][0] in replication.TABLES
    assert entries["replication_heads_lunarlander_zoo"]["tables"] == ["heads_tuned_contrasts"]


def test_notebook_04s_three_claims_are_one_family_of_three_and_follow_the_data():
    rng = np.random.default_rng(0)
    strong = replication._contrasts(_cells_04(rng, dead_gap=10, events_gap=3, return_gap=60),
                                    {replication.FAMILY_04: replication.CLAIMS_04})
    claimed = strong[strong.verdict != "descriptive"]
    assert len(claimed) == 3 and (claimed.family_size == 3).all()
    assert (claimed.verdict == "reproduced").all(), claimed.verdict
    described = strong[strong.verdict == "descriptive"]
    assert sorted(described.index.get_level_values("statistic")) == ["greedy", "sampled"]
    null = replication._contrasts(_cells_04(np.random.default_rng(1), dead_gap=0, events_gap=0, return_gap=0),
                                  {replication.FAMILY_04: replication.CLAIMS_04})
    assert not (null.verdict == "reproduced").any()
    # 12 seeds with noise 0.1 around zero: the family-level interval excludes every smallest effect
    assert (null[null.verdict != "descriptive"].verdict == "not reproduced").all()


def test_the_actor_critic_claim_is_the_difference_of_dose_slopes():
    rng = np.random.default_rng(2)
    cells = {}
    for e in (10, 20, 40, 80):
        stats = {f"{part}_{s}": rng.normal(5, 0.1, 12) for part in ("actor", "critic")
                 for s in replication.REPRESENTATION}
        stats["actor_dead_neurons"] = stats["actor_dead_neurons"] + 3.0 * np.log2(e)  # 3 per doubling
        cells[f"actor_critic/e{e}_b0"] = stats
    per_seed = _per_seed(cells)
    table = replication._actor_critic(per_seed, list(cells))
    row = table.loc[(replication.ACTOR_MINUS_CRITIC, "dead_neurons")]
    assert row.difference == pytest.approx(3.0, abs=0.1) and row.verdict == "reproduced" and row.family_size == 1
    assert (table.drop(index=(replication.ACTOR_MINUS_CRITIC, "dead_neurons")).verdict == "descriptive").all()


def test_the_baseline_gate_makes_every_tuned_row_inconclusive_below_the_reference():
    """The plan's gate for the tuned re-run (`replication.BASELINE_GATE`) and the heads experiment's gate (the
    environment's solved threshold; no published reference for MinAtar): one function, `heads.baseline_gate`."""
    from acpg_lab.evidence.heads import NO_REFERENCE, baseline_gate

    below = pd.DataFrame(dict(task="t", arm="linear", greedy=np.r_[120.0, 130.0, 125.0, 128.0]))
    gate = replication.BASELINE_GATE
    assert "did not reach the reference" in baseline_gate(below, "t", "LunarLander-v3", threshold=gate)
    above = below.assign(greedy=np.r_[230.0, 260.0, 250.0, 240.0])
    assert baseline_gate(above, "t", "LunarLander-v3", threshold=gate) == ""
    assert baseline_gate(above, "t", "LunarLander-v3") == ""  # BASELINE_REFERENCES: 200
    ceiling = below.assign(greedy=500.0)  # every seed at the maximum: no spread, still at the reference
    assert baseline_gate(ceiling, "t", "CartPole-v1") == ""
    assert "did not reach" in baseline_gate(below.assign(greedy=-300.0), "t", "Acrobot-v1")
    assert baseline_gate(above, "t", "MinAtar/Breakout-v1") == NO_REFERENCE
    assert "too few seeds" in baseline_gate(above.head(1), "t", "LunarLander-v3")


def test_no_interim_look_and_the_pieces_carry_the_plan_hash(monkeypatch, tmp_path):
    """Tables appear only when every piece of a replication is stored; a stored piece records the plan's hash."""
    tiny = dict(PFO_BASE, total_steps=2048, num_envs=2, rollout_steps=64, minibatch_size=64, snapshot_every=0)
    keep = (*PFO_COLUMNS, *CRITIC_COLUMNS)
    cells = {f"actor_critic/e{e}_b0": Condition(dict(tiny, epochs=e), seeds=(500, 501, 502), group=2, keep=keep)
             for e in (1, 2)}
    monkeypatch.setitem(evidence.EXPERIMENTS, "replication", cells)
    pieces.run_piece("replication", "actor_critic/e1_b0", (500, 501), tmp_path)
    with pytest.raises(FileNotFoundError, match="not every piece stored yet"):
        replication.replication_tables(tmp_path)
    evidence.run_experiment("replication", root=tmp_path)
    meta = pd.read_json(tmp_path / "replication/actor_critic/e1_b0/seeds_500-501/meta.json", typ="series")
    assert meta["plan_hash"] == plan.plan_hash()
    tables = replication.replication_tables(tmp_path)
    assert set(tables) == {"replication_per_seed", "replication_actor_critic"}
    per_seed = tables["replication_per_seed"]
    assert len(per_seed) == 6 and per_seed.critic_dead_neurons.notna().all()
    assert len(tables["replication_actor_critic"]) == len(replication.REPRESENTATION)


def test_each_replication_row_is_marked_by_its_own_plan_entry():
    rng = np.random.default_rng(3)
    per_seed = pd.concat([_cells_04(rng, dead_gap=0, events_gap=0, return_gap=0),
                          _per_seed({n: {s: rng.normal(0, 1, 12) for s in ("final_train", "greedy", "sampled")}
                                     for n in ("pfo_return/e80_b0", "pfo_return/e80_b1")})])
    table = replication._contrasts(per_seed, {replication.FAMILY_04: replication.CLAIMS_04,
                                              replication.FAMILY_RETURN: (replication.CLAIM_RETURN,)})
    marked = plan.mark_tables({"replication_contrasts": table})["replication_contrasts"]
    entries = marked.groupby(level="family").plan_entry.unique()
    assert entries[replication.FAMILY_04].tolist() == ["replication_04_etf_pfo"]
    assert entries[replication.FAMILY_RETURN].tolist() == ["replication_pfo_return"]
    assert set(marked.analysis) <= {"confirmatory", "exploratory"}
    assert marked.loc[(replication.FAMILY_RETURN, replication.CLAIM_RETURN[0], "final_train")].family_size == 1
