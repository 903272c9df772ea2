"""Every table behind `REPRODUCTION.md`'s PFO rows, recomputed from the pieces of ``python -m acpg_lab.evidence
run pfo`` (written by ``python -m acpg_lab.evidence report``, checked by ``report --check``).

Design: every cell of the grid trains the same held-out seeds 16-31, so a seed's initial network and environment
streams are shared by all cells, and every comparison between cells is *paired* by seed. Per seed, a statistic's
final value is its mean over the last 20% of updates (diagnosed updates for the diagnostics), the plasticity
probe's is its value at the last snapshot, and its null is the same seed's untrained network on the same states
(``null_actor_*``, logged at the same updates; the probe at the initial snapshot).

- ``pfo_per_seed``: one row per (condition, seed).
- ``pfo_dose``: seed-level trend tests. Per seed, the least-squares slope of a statistic over the dose (per
  doubling of the epochs, or per step along beta = 0, 0.1, 1, 10), then a one-sample t interval over the 16
  slopes: no update and no seed is pooled. The claimed sign is the paper's: more epochs degrade, PFO counters.
- ``pfo_vs_null``: trained minus untrained per condition (rank below the null = rank collapse).
- ``pfo_contrasts``: PFO against none at each epoch count, the ETF head against a learnable one (both without a
  bias) with and without PFO and their interaction, and a shared trunk; two Holm families (``family``): notebook
  03's PFO and trunk contrasts, notebook 04's ETF-head contrasts.
- ``pfo_events``: collapse events per seed (`acpg_lab.leadlag.collapse_events`, defined once: `EVENTS`).
- ``pfo_lead_lag``: the order of events within seeds (`acpg_lab.experiments.lead_lag_table`).

Each table is one family for Holm's adjustment; verdicts follow `acpg_lab.stats.VERDICT_RULE`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence import EXPERIMENTS, PFO_BETAS, complete, load_condition, stored_pieces
from acpg_lab.experiments import lead_lag_table
from acpg_lab.leadlag import collapse_events, event_counts
from acpg_lab.metric_registry import require
from acpg_lab.stats import contrast_table, holm, paired, verdict

__all__ = ["EVENTS", "STRESS_SIGN", "pfo_per_seed", "pfo_tables"]

#: statistic -> the sign the PFO paper predicts for more optimisation pressure (more epochs); PFO is claimed to
#: move it the other way. ``ratio_below_mean`` falls as ratios escape further below 1 - eps.
STRESS_SIGN = {"final_train": -1, "greedy": -1, "sampled": -1, "events": 1, "actor_dead_neurons": 1,
               "actor_preactivation_norm": 1, "actor_approx_rank": -1, "actor_srank": -1,
               "actor_effective_rank": -1, "plasticity_kl": 1, "plasticity_kl_backbone": 1,
               "ratio_below_mean": -1, "frac_outside": 1, "kl_old_new": 1}
require(STRESS_SIGN)
#: diagnostics with an untrained null (``null_<name>``)
REPRESENTATION = require(("actor_dead_neurons", "actor_preactivation_norm", "actor_approx_rank", "actor_srank",
                          "actor_effective_rank"), null=True)
#: reported per seed; the advantage-sign variants (ratios of actions with positive / negative advantage) have no claim
DIAGNOSTICS = require((*REPRESENTATION, "ratio_below_mean", "frac_outside", "kl_old_new", "policy_entropy",
               "ratio_below_mean_adv_pos", "ratio_below_mean_adv_neg", "frac_outside_adv_pos", "frac_outside_adv_neg"))
#: a collapse event: the training return falls by more than 30% of the seed's best within 10 updates and stays
#: there for 10 updates (CartPole; the shifting bandit's return falls by design at every re-labelling)
EVENTS = dict(drop_fraction=0.3, window=10, min_duration=10, floor=0.0)
FINAL_FRACTION = 0.2
#: statistics left out per setting: the shifting bandit's evaluation scores phase 0's labelling (a fresh
#: environment's clock starts at 0), not the one trained last, and its return falls at every re-labelling
NOT_MEASURED = {"shifting": {"greedy", "sampled", "events"}}


def _cells(root: Path | None) -> dict[str, dict]:
    """Stored pfo conditions -> their config."""
    return {name: cond.config for name, cond in EXPERIMENTS["pfo"].items() if complete("pfo", name, root=root)}


def _load(name: str, root: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history, evaluation, plasticity probes) of a stored pfo condition."""
    history, evaluation = load_condition("pfo", name, root=root)
    probe = pd.concat([pd.read_csv(p / "plasticity.csv") for p in stored_pieces("pfo", name, root=root)],
                      ignore_index=True)
    return history, evaluation, probe


def pfo_per_seed(root: Path | None = None) -> pd.DataFrame:
    """One row per (condition, seed): the cell (setting, epochs, beta, layers, head, shared trunk), final
    training return, greedy and sampled evaluation (10 unseen episodes each), every diagnostic and its untrained
    null, the plasticity probes (as trained, and the backbone under one fixed head) at the last snapshot and at
    initialisation, and the number of collapse events (CartPole only)."""
    rows = []
    for name, cfg in _cells(root).items():
        history, evaluation, probe = _load(name, root)
        setting = name.split("/")[0]
        events = (event_counts(history, collapse_events(history, **EVENTS)) if setting == "cartpole"
                  else pd.Series(np.nan, index=history.seed.unique()))
        for seed, h in history.groupby("seed"):
            tail = h[h["update"] >= (1 - FINAL_FRACTION) * h["update"].max()]
            p = probe[probe.seed == seed].sort_values("step")
            row = dict(condition=name, seed=seed, setting=setting, epochs=cfg["epochs"],
                       beta=float(cfg.get("pfo_coef", 0.0)), layers=cfg.get("pfo_layers", "last"),
                       head=cfg.get("head", "linear"), shared_trunk=bool(cfg.get("shared_trunk", False)),
                       final_train=tail.episode_return.mean(), greedy=evaluation.greedy[seed],
                       sampled=evaluation.sampled[seed], events=float(events[seed]),
                       plasticity_kl=p.plasticity_kl.iloc[-1], null_plasticity_kl=p.plasticity_kl.iloc[0],
                       plasticity_kl_backbone=p.plasticity_kl_backbone.iloc[-1],
                       null_plasticity_kl_backbone=p.plasticity_kl_backbone.iloc[0])
            for stat in DIAGNOSTICS:
                row[stat] = tail[stat].mean()
                if f"null_{stat}" in tail:
                    row[f"null_{stat}"] = tail[f"null_{stat}"].mean()
            rows.append(row)
    return pd.DataFrame(rows).set_index(["condition", "seed"]) if rows else pd.DataFrame()


def _paired(x, y) -> dict | None:
    """`paired`, or None where fewer than two seeds have a value (a statistic undefined in a short run)."""
    try:
        return paired(x, y)
    except ValueError:
        return None


#: the return range of each setting (a policy that learned nothing to the optimum), for the smallest effect
RETURN_RANGE = {"cartpole": 500.0, "shifting": 16.0}


def _smallest(stat: str, reference: float, setting: str = "cartpole") -> float:
    """The smallest effect of interest: 5% of the setting's return range (25 points on CartPole, 0.8 on the
    shifting bandit), one collapse event per seed, otherwise 10% of the reference cell's mean."""
    if stat in ("final_train", "greedy", "sampled"):
        return 0.05 * RETURN_RANGE[setting]
    if stat == "events":
        return 1.0
    return max(0.1 * abs(reference), 1e-6)


def _dose_slopes(per_seed: pd.DataFrame, conditions: dict[str, float], stat: str) -> pd.Series:
    """Per seed, the least-squares slope of ``stat`` over the doses ``conditions`` (condition -> dose)."""
    values = pd.DataFrame({c: per_seed.loc[c, stat] for c in conditions})
    x = np.array(list(conditions.values()), dtype=float)
    xc = x - x.mean()
    return pd.Series((values.to_numpy() - values.to_numpy().mean(1, keepdims=True)) @ xc / (xc @ xc),
                     index=values.index)


def _grids(cells: dict[str, dict]) -> dict[tuple[str, str, str], dict[str, float]]:
    """(setting, factor, held fixed) -> {condition: dose} for every dose-response line with >= 2 stored doses."""
    lines: dict[tuple[str, str, str], dict[str, float]] = {}
    for name, cfg in cells.items():
        setting, rest = name.split("/")
        if cfg.get("head", "linear") != "linear" or cfg.get("shared_trunk") or "linear" in rest:
            continue  # the head and trunk arms are contrasts, not doses
        beta, layers, epochs = float(cfg.get("pfo_coef", 0.0)), cfg.get("pfo_layers", "last"), cfg["epochs"]
        fixed = f"beta={beta:g}" + (" all layers" if layers == "all" else "")
        lines.setdefault((setting, "log2(epochs)", fixed), {})[name] = float(np.log2(epochs))
        if layers == "last":
            lines.setdefault((setting, "beta step", f"epochs={epochs}"), {})[name] = float(PFO_BETAS.index(beta))
    return {k: v for k, v in lines.items() if len(v) >= 2}


def dose_table(per_seed: pd.DataFrame, cells: dict[str, dict]) -> pd.DataFrame:
    rows, meta = {}, {}
    for (setting, factor, fixed), doses in _grids(cells).items():
        lowest = min(doses, key=doses.get)
        for stat, sign in STRESS_SIGN.items():
            if stat in NOT_MEASURED.get(setting, ()):
                continue
            slopes = _dose_slopes(per_seed, doses, stat)
            key = (setting, factor, fixed, stat)
            if (result := _paired(slopes, np.zeros(len(slopes)))) is None:
                continue
            rows[key] = result | dict(
                doses=len(doses), at_lowest=per_seed.loc[lowest, stat].mean(),
                at_highest=per_seed.loc[max(doses, key=doses.get), stat].mean())
            meta[key] = (sign if factor.startswith("log2") else -sign,
                         _smallest(stat, rows[key]["at_lowest"], setting)
                         / max(1.0, max(doses.values()) - min(doses.values())))
    return _verdicts(contrast_table(rows), meta, ["setting", "factor", "held_fixed", "statistic"])


def _verdicts(table: pd.DataFrame, meta: dict, names: list[str]) -> pd.DataFrame:
    if not len(table):
        return table
    out = []
    for key, row in table.iterrows():
        sign, smallest = meta[key]
        out.append(("descriptive", "no claim: reported with its interval") if sign == 0 else
                   verdict(row, expected_sign=sign, p_adjusted=row["p_holm"], smallest_effect=smallest))
    table["verdict"], table["rule"] = [v for v, _ in out], [r for _, r in out]
    table.index = pd.MultiIndex.from_tuples(table.index, names=names)
    return table


def null_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Trained minus untrained per condition: representation statistics (a rank below the null is the rank
    collapse the paper reports) and the plasticity probes (final minus initial)."""
    rows, meta = {}, {}
    for name, t in per_seed.groupby(level="condition"):
        for stat in (*REPRESENTATION, "plasticity_kl", "plasticity_kl_backbone"):
            key = (name, stat)
            if (result := _paired(t[stat], t[f"null_{stat}"])) is None:
                continue
            rows[key] = result
            meta[key] = (STRESS_SIGN[stat], _smallest(stat, rows[key]["mean_y"], name.split("/")[0]))
    return _verdicts(contrast_table(rows), meta, ["condition", "statistic"])


def _contrast_pairs(cells: dict[str, dict]) -> list[tuple[str, str, str, int]]:
    """(label, x condition, y condition, claimed sign multiplier on STRESS_SIGN: -1 = x should be healthier;
    0 = no claim)."""
    pairs = []
    for name, cfg in cells.items():
        setting, rest = name.split("/")
        e = cfg["epochs"]
        base = f"{setting}/e{e}_b0"
        if base not in cells or name == base or not rest.startswith(f"e{e}_"):
            continue
        if cfg.get("pfo_coef", 0) > 0 and cfg.get("head", "linear") == "linear" and "linear" not in rest:
            where = "all layers" if cfg.get("pfo_layers") == "all" else "last layer"
            pairs.append((f"PFO beta={cfg['pfo_coef']:g} {where} - none (epochs={e})", name, base, -1))
        if rest == f"e{e}_shared_b0":
            pairs.append((f"shared trunk - separate (epochs={e})", name, base, 0))
    for b in ("0", "1"):
        etf, lin = f"cartpole/e40_etf_b{b}", f"cartpole/e40_linear_b{b}"
        if etf in cells and lin in cells:
            pairs.append((f"ETF - linear, no bias (beta={b})", etf, lin, 0))
    return pairs


def contrasts_table(per_seed: pd.DataFrame, cells: dict[str, dict]) -> pd.DataFrame:
    rows, meta = {}, {}
    for label, x, y, claim in _contrast_pairs(cells):
        setting = x.split("/")[0]
        for stat, sign in STRESS_SIGN.items():
            if stat in NOT_MEASURED.get(setting, ()):
                continue
            key = (setting, label, stat)
            if (result := _paired(per_seed.loc[x, stat], per_seed.loc[y, stat])) is None:
                continue
            rows[key] = result
            meta[key] = (claim * sign, _smallest(stat, rows[key]["mean_y"], setting))
    names = ["cartpole/e40_etf_b1", "cartpole/e40_etf_b0", "cartpole/e40_linear_b1", "cartpole/e40_linear_b0"]
    if all(n in cells for n in names):  # does PFO do more (or less) under the ETF head? (b1 - b0) - (b1 - b0)
        for stat in STRESS_SIGN:
            v = [per_seed.loc[n, stat] for n in names]
            key = ("cartpole", "ETF x PFO interaction (epochs=40)", stat)
            if (result := _paired((v[0] - v[1]) - (v[2] - v[3]), np.zeros(len(v[0])))) is None:
                continue
            rows[key] = result
            meta[key] = (0, None)
    table = contrast_table(rows)
    if len(table):  # two families: notebook 03's (PFO, shared trunk) and notebook 04's (the ETF head and PFO)
        table["family"] = ["04: ETF head" if label.startswith("ETF") else "03: PFO and trunk"
                           for _, label, _ in table.index]
        for _, group in table.groupby("family"):
            table.loc[group.index, "p_holm"] = holm(group["p"].to_numpy())
    return _verdicts(table, meta, ["setting", "contrast", "statistic"])


def events_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per CartPole condition: seeds, events, seeds with an event, and events per seed with its t interval."""
    rows = {}
    for name, t in per_seed[per_seed.setting == "cartpole"].groupby(level="condition"):
        r = _paired(t.events, np.zeros(len(t))) or dict(difference=np.nan, ci_low=np.nan, ci_high=np.nan)
        rows[name] = dict(seeds=len(t), events=t.events.sum(), seeds_with_events=int((t.events > 0).sum()),
                          per_seed=r["difference"], ci_low=r["ci_low"], ci_high=r["ci_high"],
                          greedy=t.greedy.mean(), sampled=t.sampled.mean(), final_train=t.final_train.mean())
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "condition"
    return table


#: the conditions and statistics of the lead-lag table: the stressed cells without PFO, each statistic's change
#: against the training return's later/earlier changes, and the representation against the trust region
LEAD_LAG_CELLS = ("cartpole/e40_b0", "cartpole/e80_b0")
LEAD_LAG_METRICS = require(("ratio_below_mean", "frac_outside", "kl_old_new", "actor_dead_neurons",
                            "actor_preactivation_norm", "actor_approx_rank", "actor_srank"))


def lead_lag(root: Path | None, cells: dict[str, dict]) -> pd.DataFrame:
    histories = {name: _load(name, root)[0] for name in LEAD_LAG_CELLS if name in cells}
    if not histories:
        return pd.DataFrame()
    # 9999 draws: p no finer than 1e-4, so that a p at the floor can survive Holm over the table's ~40 tests
    to_return = lead_lag_table(histories, LEAD_LAG_METRICS, max_lag=5, draws=9999, **EVENTS)
    to_trust = lead_lag_table(histories, LEAD_LAG_METRICS[3:], target="frac_outside", max_lag=5, draws=9999,
                              **EVENTS)
    table = pd.concat({"episode_return": to_return, "frac_outside": to_trust}, names=["against"])
    return table


def pfo_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """Every PFO table from the stored pieces (empty while no pfo piece is stored)."""
    cells = _cells(root)
    if not cells:
        return {}
    per_seed = pfo_per_seed(root)
    tables = {"pfo_per_seed": per_seed, "pfo_dose": dose_table(per_seed, cells), "pfo_vs_null": null_table(per_seed),
              "pfo_contrasts": contrasts_table(per_seed, cells), "pfo_events": events_table(per_seed),
              "pfo_lead_lag": lead_lag(root, cells)}
    return {name: table for name, table in tables.items() if len(table)}  # a table waits for its cells
