"""Notebook 02's evidence, recomputed from the stored pieces of ``heads`` and ``exploration``: the four head arms
(`HEAD_ARMS`) on every task, ACPG's Theorem 1 on the tasks where it is not vacuous, and the paper's exploration
ablation (epsilon-greedy on top of the policy) on MinAtar Breakout.

Rules (``acpg_lab.stats``): arms are different runs, so arms are compared with *Welch* t intervals over seeds; a
trained network against the same seed's untrained one on the same states and labels is *paired*; each table is a
Holm family (claims and descriptive rows in separate families); returns are evaluated greedily and by sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.envs import probe_spaces
from acpg_lab.evidence.conditions import EXPLORATION_EPSILONS, HEAD_ARMS, HEAD_TASKS, exploration_condition
from acpg_lab.evidence.pieces import complete, load_condition
from acpg_lab.evidence.verdicts import Claim, measured, smallest_effect, verdict_table
from acpg_lab.stats import (
    REFERENCE_SCORES,
    aggregate,
    contrast_table,
    enough_seeds,
    holm,
    normalized,
    paired,
    probability_of_improvement,
    welch,
    welch_contrast,
)
from acpg_lab.summaries import area, final_window, first_reach, window

__all__ = ["complete_tasks", "heads_per_seed", "still_rising", "budget_table", "MIN_LEARNED", "heads_tables",
           "alignment_table", "exploration_tables", "HEAD_CONTRASTS", "HEAD_OUTCOMES", "FINAL_FRACTION", "TABLES",
           "EXPLORATION_TABLES"]

#: the final window of a head run (`acpg_lab.summaries.final_window`): its last 10% of steps; the 10% before it
#: tell whether the return was still rising
FINAL_FRACTION = 0.1
#: the tables `heads_tables` builds -> their index columns
TABLES = {"heads_per_seed": ["task", "arm", "seed"], "heads_contrasts": ["task", "contrast", "outcome"],
          "heads_aggregate": ["arm"], "heads_convergence": ["task", "arm"],
          "heads_alignment": ["task", "actions", "contrast"]}
#: the tables `exploration_tables` builds -> their index columns
EXPLORATION_TABLES = {"exploration_per_seed": ["epsilon", "arm", "seed"],
                      "exploration_contrasts": ["epsilon", "contrast", "outcome"],
                      "exploration_convergence": ["epsilon", "arm"]}


def complete_tasks(root: Path | None = None) -> list[str]:
    """The head tasks whose four arms are all stored (the tables cover these; a task still running is left out,
    and `report` says so)."""
    return [task for task in HEAD_TASKS if all(complete("heads", f"{task}/{arm}", root=root) for arm in HEAD_ARMS)]


def _seed_rows(history: pd.DataFrame, evaluation: pd.DataFrame, threshold: float, **keys) -> list[dict]:
    """The per-seed outcomes of one condition (see `heads_per_seed`)."""
    rows = []
    for seed, h in history.groupby("seed"):
        h = h.sort_values("update")
        final, before = final_window(h, FINAL_FRACTION), window(h, 1 - 2 * FINAL_FRACTION, 1 - FINAL_FRACTION)
        reach = first_reach(h, threshold).reindex([seed]).iloc[0]
        logged = h.dropna(subset=["label_alignment"])  # NaN where fewer than 2 actions were taken
        last_logged = logged.iloc[-1] if len(logged) else pd.Series(np.nan, ["label_alignment",
                                                                             "null_label_alignment"])
        final_train = area(final).get(seed, np.nan)
        rows.append(dict(keys, seed=seed, area=area(h).get(seed, np.nan), final_train=final_train,
                         best=reach["best"], greedy=evaluation.greedy[seed], sampled=evaluation.sampled[seed],
                         updates_to_threshold=reach["update"], steps_to_threshold=reach["step"],
                         final_entropy=final.entropy.mean(), label_alignment=last_logged.label_alignment,
                         null_label_alignment=last_logged.null_label_alignment,
                         plateau_change=final_train - area(before).get(seed, np.nan)))
    return rows


def heads_per_seed(root: Path | None = None) -> pd.DataFrame:
    """One row per (task, arm, seed): area under the training curve (mean training return over all updates),
    final training return (last 10% of updates), best 5-update mean training return (the paper's "best score"),
    greedy and sampled evaluation, updates and steps until the 5-update mean training return first reaches the
    task's threshold (NaN if never; updates are the paper's "epochs"), final policy entropy, and the final
    ``label_alignment`` with its untrained null."""
    rows = []
    for task in complete_tasks(root):
        for arm in HEAD_ARMS:
            history, evaluation = load_condition("heads", f"{task}/{arm}", root=root)
            rows += _seed_rows(history, evaluation, HEAD_TASKS[task][1], task=task, arm=arm)
    return pd.DataFrame(rows)


#: head-arm contrasts: (arm, against, what the contrast isolates)
HEAD_CONTRASTS = (("etf", "linear", "the fixed ETF against the usual learnable head"),
                  ("etf", "linear_scaled", "the ETF against a learnable head with the same initial logit scale"),
                  ("etf", "random", "the ETF's geometry against a fixed random head"))
#: outcome -> the sign the paper claims for ETF minus the other arm (0: reported, no claim)
HEAD_OUTCOMES = {"area": 1, "final_train": 1, "greedy": 1, "sampled": 1, "updates_to_threshold": -1,
                 "final_entropy": 0}


def still_rising(per_seed: pd.DataFrame, by: tuple[str, str] = ("task", "arm")) -> pd.Series:
    """Per (task, arm): whether the training return was still rising at the end of the budget (the mean over
    the last 10% of updates above the previous 10%, paired t over seeds, one-sided p < 0.05): such an arm has not
    converged, and a contrast involving it is "inconclusive (budget)"."""
    out = {}
    for key, t in per_seed.groupby(list(by)):
        change = t.plateau_change.to_numpy(dtype=float)
        r = paired(change, np.zeros_like(change)) if enough_seeds(change) else None
        out[key] = bool(r is not None and r["difference"] > 0 and r["p"] / 2 < 0.05)
    return pd.Series(out, name="still_rising")


#: an arm whose final training return is below this fraction of the way from a random policy to the reference
#: target (`REFERENCE_SCORES`) has learned too little for a comparison at this budget: the smallest effect of
#: interest on returns (5% of that range) would be half of everything it learned
MIN_LEARNED = 0.1


def budget_table(per_seed: pd.DataFrame, env_id: dict, by: tuple[str, str] = ("task", "arm")) -> pd.DataFrame:
    """Per (task, arm) (or ``by``): ``still_rising`` (`still_rising`), ``learned`` (the mean final training
    return, normalised so that a random policy scores 0 and the reference target 1; ``env_id`` maps the first
    key to the environment) and ``too_little`` (``learned < MIN_LEARNED``, or NaN). Either makes the arm's contrasts
    "inconclusive (budget)", decided from the learning curves before any statistic between arms."""
    table = still_rising(per_seed, by).to_frame()
    final = per_seed.groupby(list(by)).final_train.mean()
    table["learned"] = [float(normalized(env_id[key[0]], [final[key]])[0]) for key in table.index]
    table["too_little"] = ~(table["learned"] >= MIN_LEARNED)  # no finished episode at the end: nothing learned shows
    return table


def _budget_reason(budget: pd.DataFrame, keys) -> str:
    """Why the budget cannot decide a contrast between the arms ``keys`` ("" when it can)."""
    rows = budget.loc[list(keys)]
    if rows.still_rising.any():
        return "an arm was still rising at the end of the budget"
    if rows.too_little.any():
        return (f"an arm learned less than {MIN_LEARNED:g} of the way from a random policy to the reference target "
                "at this budget")
    return ""


def _return_scale(env_id: str) -> float:
    """The smallest effect of interest on returns: 5% of the reference range (`REFERENCE_SCORES`)."""
    low, high = REFERENCE_SCORES[env_id]
    return smallest_effect("return", span=high - low)


def _holm_by_claim(table: pd.DataFrame, claims: dict) -> pd.DataFrame:
    """Holm over the claimed rows and, separately, over the descriptive ones (sign 0)."""
    claimed = np.array([claims[key].sign != 0 for key in table.index])
    table.loc[claimed, "p_holm"] = holm(table.loc[claimed, "p"].to_numpy())
    table.loc[~claimed, "p_holm"] = holm(table.loc[~claimed, "p"].to_numpy())
    return table


def heads_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``heads_per_seed``, ``heads_contrasts`` (Welch, Holm over the claims; the claimed sign is +1 for returns
    and -1 for updates to threshold; entropy is reported, in its own family, to tell "faster" from "less
    random"; steps to threshold compare the seeds that reached it, and the row says how many did),
    ``heads_aggregate`` (rliable IQM of normalised greedy and sampled returns over the tasks, and
    P(ETF > linear), on the seeds every task has), ``heads_convergence`` and ``heads_alignment``
    (`alignment_table`). The smallest effect of interest for returns is 5% of the task's reference range
    (`REFERENCE_SCORES`), for updates to threshold 10% of the median over the two arms' seeds that reached it;
    two arms both at the maximum return with no spread are "no difference (ceiling)"."""
    tasks = complete_tasks(root)
    if not tasks:
        return {}
    per_seed = heads_per_seed(root)
    budget = budget_table(per_seed, {task: HEAD_TASKS[task][0]["env_id"] for task in tasks})
    rows, claims = {}, {}
    for task in tasks:
        t = per_seed[per_seed.task == task]
        for arm, against, _ in HEAD_CONTRASTS:
            for outcome, sign in HEAD_OUTCOMES.items():
                x, y = t[t.arm == arm][outcome], t[t.arm == against][outcome]
                key = (task, f"{arm} - {against}", outcome)
                rows[key] = measured(welch, x, y) | dict(reached_x=int(x.notna().sum()),
                                                         reached_y=int(y.notna().sum()))
                smallest = (smallest_effect("relative", reference=pd.concat([x, y]).median())
                            if outcome == "updates_to_threshold" else _return_scale(HEAD_TASKS[task][0]["env_id"]))
                ceiling = x.nunique() == 1 and y.nunique() == 1 and x.iloc[0] == y.iloc[0]
                claims[key] = Claim(sign, smallest, ceiling, _budget_reason(budget, [(task, arm), (task, against)]))
    contrasts = _holm_by_claim(contrast_table(rows), claims)
    contrasts = verdict_table(contrasts, claims, names=TABLES["heads_contrasts"])
    # rliable wants a [runs, tasks] matrix: the aggregate uses the seeds every task has (200-209)
    common = sorted(set.intersection(*(set(per_seed[per_seed.task == task].seed) for task in tasks)))
    agg = []
    for mode in ("greedy", "sampled"):
        scores = {}
        for arm in HEAD_ARMS:
            cols = [normalized(HEAD_TASKS[task][0]["env_id"],
                               per_seed[(per_seed.task == task) & (per_seed.arm == arm)].set_index("seed")
                               .loc[common, mode].to_numpy()) for task in tasks]
            scores[arm] = np.stack(cols, 1)
        table = aggregate(scores)
        table.index.name = "arm"
        better = probability_of_improvement(scores["etf"], scores["linear"])
        table["mode"], table["seeds_per_task"] = mode, len(common)
        table["p_etf_over_linear"] = better["probability"]
        table["p_low"], table["p_high"] = better["low"], better["high"]
        agg.append(table)
    return {"heads_per_seed": per_seed.set_index(["task", "arm", "seed"]), "heads_contrasts": contrasts,
            "heads_aggregate": pd.concat(agg), "heads_convergence": budget.rename_axis(["task", "arm"]),
            "heads_alignment": alignment_table(per_seed)}


def alignment_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """ACPG's Theorem 1 on the RL tasks with at least 3 actions (with 2, any fixed head is an ETF up to scale and
    the test is vacuous): the cosine between a state's centred feature and the head row of the action the
    policy takes there (``label_alignment``, on the states of the last diagnosed rollout; the labels are the
    policy's own greedy actions, as no optimal action is known), per arm trained against the same seed's
    untrained network with the same labels (paired), and the ETF arm against each other arm's alignment with
    its own rows (Welch). Claimed sign +1 throughout; smallest effect 0.05 (a cosine); Holm over the table."""
    rows = {}
    for task, t in per_seed.groupby("task", sort=False):
        shared = HEAD_TASKS[task][0]
        actions = probe_spaces(shared["env_id"], shared.get("env_kwargs"))[1].n
        if actions < 3:
            continue
        by_arm = {arm: t[t.arm == arm].sort_values("seed") for arm in HEAD_ARMS}
        for arm, a in by_arm.items():
            key = (task, actions, f"{arm}: trained - untrained")
            rows[key] = measured(paired, a.label_alignment, a.null_label_alignment)
        for other in ("linear", "linear_scaled", "random"):
            rows[(task, actions, f"etf - {other}")] = measured(welch, by_arm["etf"].label_alignment,
                                                                by_arm[other].label_alignment)
    if not rows:
        return pd.DataFrame()
    claims = dict.fromkeys(rows, Claim(1, smallest_effect("bounded")))
    return verdict_table(_holm_by_claim(contrast_table(rows), claims), claims, names=TABLES["heads_alignment"])


#: outcome -> claimed sign of the ETF's gain with exploration (the paper reports the best score)
EXPLORATION_OUTCOMES = {"best": 1, "final_train": 1, "greedy": 1, "sampled": 1}


def exploration_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """The paper's exploration ablation (its PPO on Pong: ACPG below the baseline without exploration, above it
    with epsilon = 0.01 or 0.1; "ACPG needs some exploration"), on MinAtar Breakout with the learnable and the ETF
    head (both without a bias) at epsilon 0, 0.01, 0.1. ``exploration_per_seed``; ``exploration_contrasts``:
    ETF - learnable at each epsilon (Welch; claimed +1 with exploration, descriptive at epsilon = 0, where the
    paper saw both arms fail), and the interaction (ETF - learnable at epsilon) - (ETF - learnable at 0)
    (`welch_contrast`, claimed +1: exploration helps the ETF head more). Outcomes: best 5-update training return
    (the paper's measure; the training returns include the epsilon-random actions), final training return, and
    greedy and sampled evaluation of the policy itself (no epsilon). Holm over the claims; "inconclusive
    (budget)" where an arm was still rising or learned too little (`budget_table`)."""
    names = [exploration_condition(eps, arm) for eps in EXPLORATION_EPSILONS for arm in ("linear", "etf")]
    if not all(complete(exp, cond, root=root) for exp, cond in names):
        return {}
    threshold = HEAD_TASKS["ppo_minatar_breakout"][1]
    rows = []
    for eps in EXPLORATION_EPSILONS:
        for arm in ("linear", "etf"):
            history, evaluation = load_condition(*exploration_condition(eps, arm), root=root)
            rows += _seed_rows(history, evaluation, threshold, epsilon=eps, arm=arm)
    per_seed = pd.DataFrame(rows)
    env_id = HEAD_TASKS["ppo_minatar_breakout"][0]["env_id"]
    budget = budget_table(per_seed, dict.fromkeys(EXPLORATION_EPSILONS, env_id), by=("epsilon", "arm"))
    smallest = _return_scale(env_id)

    def arm(eps: float, name: str, outcome: str) -> pd.Series:
        return per_seed[(per_seed.epsilon == eps) & (per_seed.arm == name)][outcome]

    contrasts, claims = {}, {}
    for outcome, sign in EXPLORATION_OUTCOMES.items():
        for eps in EXPLORATION_EPSILONS:
            key = (eps, "etf - linear", outcome)
            contrasts[key] = welch(arm(eps, "etf", outcome), arm(eps, "linear", outcome))
            claims[key] = Claim(sign if eps > 0 else 0, smallest, False,
                                _budget_reason(budget, [(eps, "etf"), (eps, "linear")]))
        for eps in EXPLORATION_EPSILONS[1:]:
            key = (eps, "(etf - linear) - (etf - linear at 0)", outcome)
            contrasts[key] = welch_contrast([arm(eps, "etf", outcome), arm(eps, "linear", outcome),
                                             arm(0.0, "etf", outcome), arm(0.0, "linear", outcome)], [1, -1, -1, 1])
            claims[key] = Claim(sign, smallest, False,
                                _budget_reason(budget, [(e, a) for e in (0.0, eps) for a in ("etf", "linear")]))
    table = _holm_by_claim(contrast_table(contrasts), claims)
    return {"exploration_per_seed": per_seed.set_index(["epsilon", "arm", "seed"]),
            "exploration_contrasts": verdict_table(table, claims, names=EXPLORATION_TABLES["exploration_contrasts"]),
            "exploration_convergence": budget.rename_axis(["epsilon", "arm"])}
