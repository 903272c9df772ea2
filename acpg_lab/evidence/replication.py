"""The confirmatory replications of ``results/evidence/plan.toml``, analysed exactly as planned before their data.

This module was committed before any replication piece: what each table tests, its family, its smallest effect
and its sample size come from the plan's entries (``replication_*``), and the tables are built only once every
piece of a replication is stored (no interim look: `acpg_lab.evidence.report` says the family is waiting).

- ``replication_contrasts``: notebook 04's three claims at 40 epochs (one Holm family, m = 3: the ETF head has
  fewer dead units and fewer collapse events than a learnable head without PFO, and with PFO a higher final
  training return), paired by seed over seeds 300-379; and PFO's effect on the final training return at 80 epochs
  (its own family, m = 1), paired over seeds 400-447. The greedy and sampled evaluations (10 unseen episodes) are
  reported beside each return claim in a descriptive family: the verdicts use the final training return, as
  planned.
- ``replication_actor_critic``: per seed, the least-squares slope of the actor's and the critic's dead units over
  log2(epochs) (10, 20, 40, 80; no PFO), and the planned claim: actor slope minus critic slope > 0 (paired t,
  m = 1, smallest effect 1.5 dead units per doubling); the other representation statistics descriptive.
- ``heads_tuned_per_seed`` / ``heads_tuned_contrasts`` / ``heads_tuned_convergence``: the four head arms on
  LunarLander with rl-baselines3-zoo's tuned hyperparameters (seeds 600-622), Welch t, one Holm family of the 15
  claimed rows (entropy descriptive), the heads experiment's convergence rule, and the plan's baseline gate: the
  learnable head's greedy return must reach the reference (its 95% interval's upper end at or above
  `BASELINE_GATE`), else every row reads "inconclusive (budget)".

Verdicts follow `acpg_lab.stats.VERDICT_RULE` (`acpg_lab.evidence.verdicts.verdict_table`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence.conditions import EXPERIMENTS, HEAD_ARMS, HEAD_TASKS_TUNED
from acpg_lab.evidence.heads import _seed_rows, baseline_gate, budget_table, head_contrasts
from acpg_lab.evidence.pfo import EVENTS, FINAL_FRACTION
from acpg_lab.evidence.pieces import complete, load_condition
from acpg_lab.evidence.verdicts import Claim, measured, verdict_table
from acpg_lab.leadlag import collapse_events, event_counts
from acpg_lab.stats import adjust, contrast_table, paired
from acpg_lab.summaries import final_window

__all__ = ["TABLES", "BASELINE_GATE", "replication_tables", "heads_tuned_tables", "replication_per_seed"]

#: the tables this module builds -> their index columns
TABLES = {"replication_per_seed": ["condition", "seed"], "replication_contrasts": ["family", "contrast", "statistic"],
          "replication_actor_critic": ["contrast", "statistic"], "heads_tuned_per_seed": ["task", "arm", "seed"],
          "heads_tuned_contrasts": ["task", "contrast", "outcome"], "heads_tuned_convergence": ["task", "arm"]}
#: the plan's baseline gate for the tuned LunarLander comparison: rl-baselines3-zoo's PPO reference is 242.1
#: (deterministic, 1M steps); the gate asks that the learnable head's greedy return can be 200 ("solved") or more
BASELINE_GATE = 200.0
#: statistics of the replication cells: the final window of a pfo run (its last 20%), per seed
REPRESENTATION = ("dead_neurons", "preactivation_norm", "srank", "approx_rank", "effective_rank")
#: notebook 04's family: (label, x condition, y condition, statistic, claimed sign, smallest effect) from the plan
FAMILY_04 = "04: ETF head x PFO (m = 3)"
CLAIMS_04 = (("ETF - linear, no PFO", "etf_pfo/e40_etf_b0", "etf_pfo/e40_linear_b0", "actor_dead_neurons", -1, 3.0),
             ("ETF - linear, no PFO", "etf_pfo/e40_etf_b0", "etf_pfo/e40_linear_b0", "events", -1, 1.0),
             ("ETF - linear, with PFO", "etf_pfo/e40_etf_b1", "etf_pfo/e40_linear_b1", "final_train", 1, 25.0))
FAMILY_RETURN = "03: PFO on the return at 80 epochs (m = 1)"
#: family -> the plan entry that governs it (``plan_entry``; `acpg_lab.evidence.plan.mark_tables` then decides
#: per row whether the entry was committed before the data)
PLAN_ENTRIES = {FAMILY_04: "replication_04_etf_pfo", FAMILY_RETURN: "replication_pfo_return",
                "actor_critic": "replication_actor_critic", "heads_tuned": "replication_heads_lunarlander_zoo"}
CLAIM_RETURN = ("PFO beta=1 - none (epochs=80)", "pfo_return/e80_b1", "pfo_return/e80_b0", "final_train", 1, 50.0)
#: the actor-vs-critic claim: slope of dead units per doubling of the epochs, actor minus critic
CRITIC_SMALLEST = 1.5
ACTOR_MINUS_CRITIC = "actor - critic, slope per doubling of the epochs"
DESCRIPTIVE = "descriptive: reported beside the claims, its own Holm family"


def _complete(prefix: str, root: Path | None) -> list[str]:
    """The replication's conditions starting with ``prefix``; FileNotFoundError until every piece is stored (the
    report then leaves the family out and says so: no interim analysis)."""
    names = [name for name in EXPERIMENTS["replication"] if name.startswith(prefix)]
    missing = [name for name in names if not complete("replication", name, root=root)] or (
        [] if names else [f"{prefix}*: no such condition"])
    if missing:
        raise FileNotFoundError(f"replication {prefix}: not every piece stored yet ({missing})")
    return names


def replication_per_seed(names: list[str], root: Path | None = None) -> pd.DataFrame:
    """One row per (condition, seed): final training return (last 20% of the run), greedy and sampled evaluation,
    collapse events (`acpg_lab.evidence.pfo.EVENTS`), and the final-window actor (and, where kept, critic)
    representation statistics."""
    rows = []
    for name in names:
        history, evaluation = load_condition("replication", name, root=root)
        events = event_counts(history, collapse_events(history, **EVENTS))
        for seed, h in history.groupby("seed"):
            tail = final_window(h, FINAL_FRACTION)
            row = dict(condition=name, seed=seed, epochs=int(name.split("/e")[1].split("_")[0]),
                       final_train=tail.episode_return.mean(), greedy=evaluation.greedy[seed],
                       sampled=evaluation.sampled[seed], events=float(events[seed]))
            for part in ("actor", "critic"):
                for stat in REPRESENTATION:
                    column = f"{part}_{stat}"
                    row[column] = tail[column].mean() if column in tail else np.nan
            rows.append(row)
    return pd.DataFrame(rows).set_index(["condition", "seed"])


def _pair(per_seed: pd.DataFrame, x: str, y: str, stat: str) -> dict:
    """`paired` of ``stat`` between conditions ``x`` and ``y``, aligned by seed."""
    a, b = per_seed.loc[x, stat], per_seed.loc[y, stat]
    seeds = a.index.intersection(b.index)
    return measured(paired, a.loc[seeds], b.loc[seeds])


def _contrasts(per_seed: pd.DataFrame, claims_in: dict[str, tuple]) -> pd.DataFrame:
    """Rows of the planned claims (family -> claims) and their descriptive evaluations (greedy, sampled beside
    a return claim), Holm within each family and within the descriptive rows."""
    rows, claims, families = {}, {}, []
    for family, planned in claims_in.items():
        for label, x, y, stat, sign, smallest in planned:
            key = (family, label, stat)
            rows[key], claims[key] = _pair(per_seed, x, y, stat), Claim(sign, smallest)
            families.append(family)
            if stat == "final_train":
                for mode in ("greedy", "sampled"):
                    key = (family, label, mode)
                    rows[key], claims[key] = _pair(per_seed, x, y, mode), Claim(0)
                    families.append("descriptive")
    table = adjust(contrast_table(rows), families)
    table = verdict_table(table, claims, names=TABLES["replication_contrasts"], descriptive=DESCRIPTIVE)
    table["plan_entry"] = [PLAN_ENTRIES[family] for family in table.index.get_level_values("family")]
    return table


def _slopes(per_seed: pd.DataFrame, names: list[str], stat: str) -> pd.Series:
    """Per seed, the least-squares slope of ``stat`` over log2(epochs) across the conditions ``names``."""
    values = pd.DataFrame({n: per_seed.loc[n, stat] for n in names}).dropna()
    x = np.log2([per_seed.loc[n, "epochs"].iloc[0] for n in names])
    xc = x - x.mean()
    v = values.to_numpy()
    return pd.Series((v - v.mean(1, keepdims=True)) @ xc / (xc @ xc), index=values.index)


def _actor_critic(per_seed: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per statistic, the actor's slope over log2(epochs) minus the critic's, paired by seed; dead units carry
    the planned claim (sign +1: the actor degrades faster), the rest are descriptive."""
    rows, claims = {}, {}
    for stat in REPRESENTATION:
        actor, critic = _slopes(per_seed, names, f"actor_{stat}"), _slopes(per_seed, names, f"critic_{stat}")
        seeds = actor.index.intersection(critic.index)
        key = (ACTOR_MINUS_CRITIC, stat)
        rows[key] = measured(paired, actor.loc[seeds], critic.loc[seeds])
        claims[key] = Claim(1, CRITIC_SMALLEST) if stat == "dead_neurons" else Claim(0)
    table = adjust(contrast_table(rows), ["claim" if claims[k].sign else "descriptive" for k in rows])
    table = verdict_table(table, claims, names=TABLES["replication_actor_critic"], descriptive=DESCRIPTIVE)
    table["plan_entry"] = PLAN_ENTRIES["actor_critic"]
    return table


def replication_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """The replication's tables, each family once all its pieces are stored (FileNotFoundError while none is:
    the report leaves the experiment out and says what is missing)."""
    tables, per_seed, waiting = {}, [], []
    families = {}
    for prefix, family, claims in (("etf_pfo/", FAMILY_04, CLAIMS_04), ("pfo_return/", FAMILY_RETURN,
                                                                         (CLAIM_RETURN,))):
        try:
            names = _complete(prefix, root)
        except FileNotFoundError as missing:
            waiting.append(str(missing))
            continue
        per_seed.append(replication_per_seed(names, root))
        families[family] = claims
    try:
        critic_names = _complete("actor_critic/", root)
        critic = replication_per_seed(critic_names, root)
        per_seed.append(critic)
        tables["replication_actor_critic"] = _actor_critic(critic, critic_names)
    except FileNotFoundError as missing:
        waiting.append(str(missing))
    if not per_seed:
        raise FileNotFoundError("; ".join(waiting))
    all_seeds = pd.concat(per_seed)
    tables["replication_per_seed"] = all_seeds
    if families:
        tables["replication_contrasts"] = _contrasts(all_seeds, families)
    return tables


def heads_tuned_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """The tuned LunarLander comparison (see the module docstring), once all four arms are stored."""
    rows = []
    for task, (_, threshold) in HEAD_TASKS_TUNED.items():
        for arm in HEAD_ARMS:
            if not complete("heads_tuned", f"{task}/{arm}", root=root):
                raise FileNotFoundError(f"heads_tuned {task}/{arm}: not every piece stored yet")
            history, evaluation = load_condition("heads_tuned", f"{task}/{arm}", root=root)
            rows += _seed_rows(history, evaluation, threshold, task=task, arm=arm)
    per_seed = pd.DataFrame(rows)
    env_id = {task: config["env_id"] for task, (config, _) in HEAD_TASKS_TUNED.items()}
    budget = budget_table(per_seed, env_id)
    gate = {task: baseline_gate(per_seed, task, env_id[task], threshold=BASELINE_GATE) for task in HEAD_TASKS_TUNED}
    results, claims = head_contrasts(per_seed, env_id, budget, gate=gate)
    table = adjust(contrast_table(results), ["claims" if claims[k].sign else "descriptive" for k in results])
    contrasts = verdict_table(table, claims, names=TABLES["heads_tuned_contrasts"])
    contrasts["plan_entry"] = PLAN_ENTRIES["heads_tuned"]
    return {"heads_tuned_per_seed": per_seed.set_index(["task", "arm", "seed"]),
            "heads_tuned_contrasts": contrasts, "heads_tuned_convergence": budget.rename_axis(["task", "arm"])}
