"""Every table behind `REPRODUCTION.md`'s PFO rows, recomputed from the pieces of ``python -m acpg_lab.evidence
run pfo`` (written by ``python -m acpg_lab.evidence report``, checked by ``report --check``).

Design: every cell of the grid trains the same held-out seeds 16-31, so a seed's initial network and environment
streams are shared by all cells, and every comparison between cells is *paired* by seed. A cell's factors (setting,
epochs, PFO coefficient and layers, head, shared trunk) are read from its stored config (`factors`), never from its
name. Per seed, a statistic's final value is its mean over the last 20% of the run (the final window of
`acpg_lab.summaries`; diagnosed updates for the diagnostics), the plasticity probe's is its value at the last
snapshot, and its null is the same seed's untrained network on the same states (``null_actor_*``, logged at the
same updates; the probe at the initial snapshot).

- ``pfo_per_seed``: one row per (condition, seed).
- ``pfo_dose``: seed-level trend tests. Per seed, the least-squares slope of a statistic over the dose (per
  doubling of the epochs, or per step along beta = 0, 0.1, 1, 10), then a one-sample t interval over the 16
  slopes: no update and no seed is pooled. The claimed sign is the paper's: more epochs degrade, PFO counters.
- ``pfo_vs_null``: trained minus untrained per condition (rank below the null = rank collapse).
- ``pfo_contrasts``: PFO against none at each epoch count, the ETF head against a learnable one (both without a
  bias) with and without PFO and their interaction, and a shared trunk; one Holm family over the table
  (``p_holm``, the family the table had when its cells were trained). ``p_holm_split`` is Holm within two families
  (``family``: notebook 03's PFO and trunk contrasts, notebook 04's ETF-head contrasts), a split made after all
  the cells were stored: *exploratory* (issue 24), shown beside the primary adjustment, never used by a verdict.
- ``pfo_events``: collapse events per seed (`acpg_lab.leadlag.collapse_events`, defined once: `EVENTS`).
- ``pfo_lead_lag``: the order of events within seeds (`acpg_lab.experiments.lead_lag_table`).

Each table is one family for Holm's adjustment; verdicts follow `acpg_lab.stats.VERDICT_RULE`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.evidence.conditions import EXPERIMENTS, PFO_BETAS, PFO_SETTINGS
from acpg_lab.evidence.pieces import complete, load_condition, load_probes, stored_config
from acpg_lab.evidence.verdicts import TOO_FEW_SEEDS, Claim, smallest_effect, verdict_table
from acpg_lab.experiments import lead_lag_table
from acpg_lab.leadlag import MIN_CORRELATION, collapse_events, diagnosed_series, event_counts, per_seed_statistic
from acpg_lab.metric_registry import require
from acpg_lab.stats import contrast_table, enough_seeds, family_interval, holm, paired, verdict
from acpg_lab.summaries import final_window

__all__ = ["EVENTS", "STRESS_SIGN", "TABLES", "factors", "pfo_per_seed", "pfo_tables"]

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
#: the final window of a pfo run (`acpg_lab.summaries.final_window`): its last 20% of steps
FINAL_FRACTION = 0.2
#: statistics left out per setting: the shifting bandit's evaluation scores phase 0's labelling (a fresh
#: environment's clock starts at 0), not the one trained last, and its return falls at every re-labelling
NOT_MEASURED = {"shifting": {"greedy", "sampled", "events"}}
#: the tables `pfo_tables` builds -> their index columns
TABLES = {"pfo_per_seed": ["condition", "seed"], "pfo_dose": ["setting", "factor", "held_fixed", "statistic"],
          "pfo_vs_null": ["condition", "statistic"], "pfo_contrasts": ["setting", "contrast", "statistic"],
          "pfo_events": ["condition"], "pfo_lead_lag": ["against", "condition", "metric"]}
#: the rule of a row without a claim
DESCRIPTIVE = "no claim: reported with its interval"


def factors(config: dict) -> dict:
    """The factors of a pfo cell, read from its stored (resolved) config: the setting (by environment), epochs,
    PFO coefficient ``beta`` and layers, the head (``bias``: whether a learnable head has one: the head arms of the
    ETF comparison have none) and whether the trunk is shared."""
    if config["env_id"] not in PFO_SETTINGS:
        raise ValueError(f"env_id {config['env_id']!r} is no pfo setting; known: {PFO_SETTINGS}")
    return dict(setting=PFO_SETTINGS[config["env_id"]], epochs=int(config["epochs"]), beta=float(config["pfo_coef"]),
                layers=config["pfo_layers"], head=config["head"], bias=bool(config["head_bias"]),
                shared=bool(config["shared_trunk"]))


def _plain(f: dict) -> bool:
    """Whether a cell is on the dose grid: the usual learnable head (with its bias), separate trunks."""
    return f["head"] == "linear" and f["bias"] and not f["shared"]


def _cells(root: Path | None) -> dict[str, dict]:
    """Stored pfo conditions -> their factors (`factors` of the stored config)."""
    return {name: factors(stored_config("pfo", name, root=root)) for name in EXPERIMENTS["pfo"]
            if complete("pfo", name, root=root)}


def _load(name: str, root: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history, evaluation, plasticity probes) of a stored pfo condition."""
    history, evaluation = load_condition("pfo", name, root=root)
    return history, evaluation, load_probes("pfo", name, root=root)


def pfo_per_seed(root: Path | None = None) -> pd.DataFrame:
    """One row per (condition, seed): the cell (setting, epochs, beta, layers, head, shared trunk), final
    training return, greedy and sampled evaluation (10 unseen episodes each), every diagnostic and its untrained
    null, the plasticity probes (as trained, and the backbone under one fixed head) at the last snapshot and at
    initialisation, and the number of collapse events (CartPole only)."""
    rows = []
    for name, f in _cells(root).items():
        history, evaluation, probe = _load(name, root)
        events = (event_counts(history, collapse_events(history, **EVENTS)) if f["setting"] == "cartpole"
                  else pd.Series(np.nan, index=history.seed.unique()))
        for seed, h in history.groupby("seed"):
            tail = final_window(h, FINAL_FRACTION)
            p = probe[probe.seed == seed].sort_values("step")
            row = dict(condition=name, seed=seed, setting=f["setting"], epochs=f["epochs"], beta=f["beta"],
                       layers=f["layers"], head=f["head"], shared_trunk=f["shared"],
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
    return paired(x, y) if enough_seeds(x, y, paired=True) else None


#: the return range of each setting (a policy that learned nothing to the optimum), for the smallest effect
RETURN_RANGE = {"cartpole": 500.0, "shifting": 16.0}


def _smallest(stat: str, reference: float, setting: str = "cartpole") -> float:
    """The smallest effect of interest: 5% of the setting's return range (25 points on CartPole, 0.8 on the
    shifting bandit), one collapse event per seed, otherwise 10% of the reference cell's mean."""
    if stat in ("final_train", "greedy", "sampled"):
        return smallest_effect("return", span=RETURN_RANGE[setting])
    if stat == "events":
        return smallest_effect("count")
    return smallest_effect("relative", reference=reference, share=0.1, floor=1e-6)


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
    for name, f in cells.items():
        if not _plain(f):
            continue  # the head and trunk arms are contrasts, not doses
        fixed = f"beta={f['beta']:g}" + (" all layers" if f["layers"] == "all" else "")
        lines.setdefault((f["setting"], "log2(epochs)", fixed), {})[name] = float(np.log2(f["epochs"]))
        if f["layers"] == "last":
            lines.setdefault((f["setting"], "beta step", f"epochs={f['epochs']}"), {})[name] = float(
                PFO_BETAS.index(f["beta"]))
    return {k: v for k, v in lines.items() if len(v) >= 2}


def dose_table(per_seed: pd.DataFrame, cells: dict[str, dict]) -> pd.DataFrame:
    rows, claims = {}, {}
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
            claims[key] = Claim(sign if factor.startswith("log2") else -sign,
                                _smallest(stat, rows[key]["at_lowest"], setting)
                                / max(1.0, max(doses.values()) - min(doses.values())))
    return verdict_table(contrast_table(rows), claims, names=TABLES["pfo_dose"], descriptive=DESCRIPTIVE)


def null_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Trained minus untrained per condition: representation statistics (a rank below the null is the rank
    collapse the paper reports) and the plasticity probes (final minus initial)."""
    rows, claims = {}, {}
    for name, t in per_seed.groupby(level="condition"):
        for stat in (*REPRESENTATION, "plasticity_kl", "plasticity_kl_backbone"):
            key = (name, stat)
            if (result := _paired(t[stat], t[f"null_{stat}"])) is None:
                continue
            rows[key] = result
            claims[key] = Claim(STRESS_SIGN[stat], _smallest(stat, rows[key]["mean_y"], t.setting.iloc[0]))
    return verdict_table(contrast_table(rows), claims, names=TABLES["pfo_vs_null"], descriptive=DESCRIPTIVE)


#: the two Holm families of ``pfo_contrasts``: notebook 03's (PFO, shared trunk) and notebook 04's (the ETF head)
FAMILY_03, FAMILY_04 = "03: PFO and trunk", "04: ETF head"


def _find(cells: dict[str, dict], **want) -> str | None:
    """The first stored cell whose factors have the values ``want`` (None if there is none)."""
    return next((name for name, f in cells.items() if all(f[k] == v for k, v in want.items())), None)


def _contrast_pairs(cells: dict[str, dict]) -> list[tuple[str, str, str, int, str]]:
    """(label, x condition, y condition, claimed sign multiplier on STRESS_SIGN: -1 = x should be healthier,
    0 = no claim; family), from the cells' factors."""
    pairs = []
    for name, f in cells.items():
        base = _find(cells, setting=f["setting"], epochs=f["epochs"], beta=0.0, layers="last", head="linear",
                     bias=True, shared=False)
        if base is None or name == base:
            continue
        if f["beta"] > 0 and _plain(f):
            where = "all layers" if f["layers"] == "all" else "last layer"
            pairs.append((f"PFO beta={f['beta']:g} {where} - none (epochs={f['epochs']})", name, base, -1, FAMILY_03))
        if f["shared"] and f["beta"] == 0 and f["head"] == "linear":
            pairs.append((f"shared trunk - separate (epochs={f['epochs']})", name, base, 0, FAMILY_03))
    for name, f in cells.items():
        linear = _find(cells, **dict(f, head="linear", bias=False)) if f["head"] == "etf" else None
        if linear is not None:
            pairs.append((f"ETF - linear, no bias (beta={f['beta']:g})", name, linear, 0, FAMILY_04))
    return pairs


def _interactions(cells: dict[str, dict]) -> list[tuple[str, str, list[str]]]:
    """(setting, label, [ETF with PFO, ETF without, linear with, linear without]) for every ETF cell with PFO
    whose three partners (same setting and epochs, learnable heads without a bias) are stored."""
    out = []
    for name, f in cells.items():
        if f["head"] != "etf" or f["beta"] == 0:
            continue
        same = dict(setting=f["setting"], epochs=f["epochs"], layers=f["layers"], shared=f["shared"])
        names = [name, _find(cells, **same, head="etf", beta=0.0),
                 _find(cells, **same, head="linear", bias=False, beta=f["beta"]),
                 _find(cells, **same, head="linear", bias=False, beta=0.0)]
        if None not in names:
            out.append((f["setting"], f"ETF x PFO interaction (epochs={f['epochs']})", names))
    return out


def contrasts_table(per_seed: pd.DataFrame, cells: dict[str, dict]) -> pd.DataFrame:
    rows, claims, family = {}, {}, {}
    for label, x, y, claim, fam in _contrast_pairs(cells):
        setting = cells[x]["setting"]
        for stat, sign in STRESS_SIGN.items():
            if stat in NOT_MEASURED.get(setting, ()):
                continue
            key = (setting, label, stat)
            if (result := _paired(per_seed.loc[x, stat], per_seed.loc[y, stat])) is None:
                continue
            rows[key], family[key] = result, fam
            claims[key] = Claim(claim * sign, _smallest(stat, rows[key]["mean_y"], setting))
    for setting, label, names in _interactions(cells):  # does PFO do more (or less) under the ETF head?
        for stat in STRESS_SIGN:
            v = [per_seed.loc[n, stat] for n in names]
            key = (setting, label, stat)
            if (result := _paired((v[0] - v[1]) - (v[2] - v[3]), np.zeros(len(v[0])))) is None:
                continue
            rows[key], family[key], claims[key] = result, FAMILY_04, Claim(0)
    table = contrast_table(rows)  # one Holm family over the table: the family declared before the data
    if len(table):  # the split into notebook 03's and 04's families came after the data: exploratory, beside it
        table["family"] = [family[key] for key in table.index]
        table["p_holm_split"] = np.nan
        for _, group in table.groupby("family"):
            table.loc[group.index, "p_holm_split"] = holm(group["p"].to_numpy())
    return verdict_table(table, claims, names=TABLES["pfo_contrasts"], descriptive=DESCRIPTIVE)


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


def _lead_interval(history: pd.DataFrame, metric: str, target: str, max_lag: int) -> dict:
    """The leads statistic's t interval over seeds (`acpg_lab.leadlag.per_seed_statistic`, paired against 0)."""
    series = diagnosed_series(history, list(dict.fromkeys([metric, target])))
    pairs = {s: (g[metric].to_numpy(), g[target].to_numpy()) for s, g in series.groupby("seed")}
    values = per_seed_statistic(pairs, lags=range(1, max_lag + 1)).to_numpy()
    return paired(values, np.zeros_like(values)) if enough_seeds(values) else {}


def lead_lag(root: Path | None, cells: dict[str, dict]) -> pd.DataFrame:
    """``pfo_lead_lag`` (`acpg_lab.experiments.lead_lag_table`), with a verdict on each ``leads`` row: the claim is
    that a statistic's degradation (its `STRESS_SIGN` direction) comes before the return falls (sign
    ``-STRESS_SIGN``), or, against the trust region, before ``frac_outside`` rises (sign ``STRESS_SIGN``); the
    p is the shift test's Holm-adjusted ``leads_p_holm`` (the table's family: every p of the table), the interval
    the t interval of the per-seed statistics over seeds (``leads_ci_low`` / ``leads_ci_high``, and the
    family-level ``leads_ci_low_family`` / ``leads_ci_high_family``: Bonferroni over the table's p-values), the
    smallest effect `acpg_lab.leadlag.MIN_CORRELATION`, *material*: a significant correlation below it is not
    reproduced (`acpg_lab.stats.verdict`). The ``follows`` and ``before_events`` columns have no claim."""
    histories = {name: _load(name, root)[0] for name in LEAD_LAG_CELLS if name in cells}
    if not histories:
        return pd.DataFrame()
    max_lag = 5
    # 9999 draws: p no finer than 1e-4, so that a p at the floor can survive Holm over the table's ~40 tests
    to_return = lead_lag_table(histories, LEAD_LAG_METRICS, max_lag=max_lag, draws=9999, **EVENTS)
    to_trust = lead_lag_table(histories, LEAD_LAG_METRICS[3:], target="frac_outside", max_lag=max_lag, draws=9999,
                              **EVENTS)
    table = pd.concat({"episode_return": to_return, "frac_outside": to_trust}, names=["against"])
    family = int(np.isfinite(table[["before_events_p", "leads_p", "follows_p"]].to_numpy(dtype=float)).sum())
    out = []
    for (against, condition, metric), row in table.iterrows():
        r = _lead_interval(histories[condition], metric, against, max_lag)
        sign = -STRESS_SIGN[metric] if against == "episode_return" else STRESS_SIGN[metric]
        low, high = family_interval(r, family) if r else (np.nan, np.nan)
        label, rule = (verdict(r, expected_sign=sign,
                               p_adjusted=row["leads_p_holm"], smallest_effect=MIN_CORRELATION,
                               family_size=family, material=True) if r else ("not measurable", TOO_FEW_SEEDS))
        out.append(dict(claimed_sign=sign, leads_ci_low=r.get("ci_low", np.nan), leads_ci_high=r.get("ci_high", np.nan),
                        leads_ci_low_family=low, leads_ci_high_family=high, smallest=MIN_CORRELATION,
                        family_size=family, verdict=label, rule=rule))
    return pd.concat([table, pd.DataFrame(out, index=table.index)], axis=1)


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
