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
import torch
from scipy import stats as scipy_stats

from acpg_lab import metrics
from acpg_lab.config import TrainConfig
from acpg_lab.envs import make_vector_env, probe_spaces
from acpg_lab.evidence.conditions import EXPLORATION_EPSILONS, HEAD_ARMS, HEAD_TASKS, exploration_condition
from acpg_lab.evidence.pieces import complete, load_condition, stored_config
from acpg_lab.evidence.verdicts import RETURN_SHARE, Claim, measured, smallest_effect, verdict_table
from acpg_lab.run import fresh_model
from acpg_lab.stats import (
    REFERENCE_SCORES,
    adjust,
    aggregate,
    contrast_table,
    enough_seeds,
    normalized,
    paired,
    probability_of_improvement,
    welch,
    welch_contrast,
)
from acpg_lab.store import with_stored_defaults
from acpg_lab.summaries import area, final_window, first_reach, window

__all__ = ["complete_tasks", "head_contrasts", "heads_per_seed", "still_rising", "convergence", "MEANINGFUL_RISE",
           "budget_table",
           "MIN_LEARNED", "heads_tables", "own_label_null", "alignment_table", "exploration_tables", "HEAD_CONTRASTS",
           "HEAD_OUTCOMES", "FINAL_FRACTION", "TABLES", "EXPLORATION_TABLES", "OWN_NULL_LABELS", "CIRCULAR_NULL_LABELS",
           "TRAINED_LABELS"]

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
    """Per (task, arm): whether the training return rose significantly at the end of the budget (the mean over
    the last 10% of updates above the previous 10%, paired t over seeds, one-sided p < 0.05). Not the convergence
    rule (a non-significant rise is no evidence of a plateau): see `convergence`."""
    out = {}
    for key, t in per_seed.groupby(list(by)):
        change = t.plateau_change.to_numpy(dtype=float)
        r = paired(change, np.zeros_like(change)) if enough_seeds(change) else None
        out[key] = bool(r is not None and r["difference"] > 0 and r["p"] / 2 < 0.05)
    return pd.Series(out, name="still_rising")


#: a meaningful late rise: `RETURN_SHARE` (5%) of the task's reference range per 10% of the budget, the smallest
#: effect of interest on returns; the change compared is the final 10% of the run against the 10% before it
MEANINGFUL_RISE = RETURN_SHARE
#: the one-sided level of the convergence test (an equivalence bound: a 90% two-sided interval's upper end)
CONVERGENCE_ALPHA = 0.05


def convergence(per_seed: pd.DataFrame, env_id: dict, by: tuple[str, str] = ("task", "arm")) -> pd.DataFrame:
    """Per (task, arm), convergence decided by equivalence (issue 24): ``rise`` (mean over seeds of the final 10%
    window's training return minus the previous 10%'s), ``rise_high`` (its one-sided 95% upper bound, paired t
    over seeds), ``meaningful_rise`` (`MEANINGFUL_RISE` of the reference range, `REFERENCE_SCORES` of
    ``env_id[key[0]]``) and ``convergence``: "converged" only when ``rise_high`` < ``meaningful_rise`` (the interval
    excludes a meaningful rise), "still rising" when the rise is significant (one-sided p < 0.05) and not excluded,
    otherwise "undecided". Only a converged arm lets the budget decide its contrasts."""
    rows = {}
    for key, t in per_seed.groupby(list(by)):
        change = t.plateau_change.to_numpy(dtype=float)
        low, high = REFERENCE_SCORES[env_id[key[0]]]
        threshold = MEANINGFUL_RISE * (high - low)
        if enough_seeds(change):
            r = paired(change, np.zeros_like(change), confidence=1 - 2 * CONVERGENCE_ALPHA)
            rise, rise_low, rise_high = r["difference"], r["ci_low"], r["ci_high"]
        else:
            rise = rise_low = rise_high = np.nan
        status = ("converged" if rise_high < threshold else "still rising" if rise_low > 0 else "undecided")
        rows[key] = dict(rise=rise, rise_high=rise_high, meaningful_rise=threshold, convergence=status)
    return pd.DataFrame.from_dict(rows, orient="index")


#: an arm whose final training return is below this fraction of the way from a random policy to the reference
#: target (`REFERENCE_SCORES`) has learned too little for a comparison at this budget: the smallest effect of
#: interest on returns (5% of that range) would be half of everything it learned
MIN_LEARNED = 0.1


def budget_table(per_seed: pd.DataFrame, env_id: dict, by: tuple[str, str] = ("task", "arm")) -> pd.DataFrame:
    """Per (task, arm) (or ``by``): ``still_rising`` (`still_rising`: a significant late rise), the equivalence
    columns of `convergence` (``rise``, ``rise_high``, ``meaningful_rise``, ``convergence``), ``learned`` (the mean
    final training return, normalised so that a random policy scores 0 and the reference target 1; ``env_id``
    maps the first key to the environment) and ``too_little`` (``learned < MIN_LEARNED``, or NaN). An arm not
    "converged", or one that learned too little, makes the arm's contrasts "inconclusive (budget)", decided from
    the learning curves before any statistic between arms."""
    table = still_rising(per_seed, by).to_frame().join(convergence(per_seed, env_id, by))
    final = per_seed.groupby(list(by)).final_train.mean()
    table["learned"] = [float(normalized(env_id[key[0]], [final[key]])[0]) for key in table.index]
    table["too_little"] = ~(table["learned"] >= MIN_LEARNED)  # no finished episode at the end: nothing learned shows
    return table


def _budget_reason(budget: pd.DataFrame, keys) -> str:
    """Why the budget cannot decide a contrast between the arms ``keys`` ("" when it can)."""
    rows = budget.loc[list(keys)]
    if (rows.convergence == "still rising").any():
        return "an arm was still rising at the end of the budget"
    if (rows.convergence != "converged").any():
        return (f"an arm's convergence is undecided: its late rise's interval does not exclude "
                f"{MEANINGFUL_RISE:g} of the reference range per tenth of the budget")
    if rows.too_little.any():
        return (f"an arm learned less than {MIN_LEARNED:g} of the way from a random policy to the reference target "
                "at this budget")
    return ""


#: the baseline gate (issue 24): before heads are compared on a task, the learnable head's greedy return must be
#: shown able to reach the environment's "solved" threshold (gymnasium's ``reward_threshold``), which the tuned
#: published reference for that budget exceeds: env -> (threshold, the reference). Where no such reference exists
#: (MinAtar: no PPO return is published for these budgets), the baseline is not shown at a reference and every
#: contrast of the task is "inconclusive (budget)".
BASELINE_REFERENCES: dict[str, tuple[float, str]] = {
    "CartPole-v1": (475.0, "rl-baselines3-zoo's tuned PPO and A2C reach 500 (benchmark.md, 100k and 500k steps)"),
    "Acrobot-v1": (-100.0, "rl-baselines3-zoo's tuned PPO: -73.5 +- 18.2 at 1M steps (benchmark.md)"),
    "LunarLander-v3": (200.0, "rl-baselines3-zoo's tuned PPO: 242.1 +- 31.8 at 1M steps (benchmark.md)"),
}
NO_REFERENCE = ("no published PPO return for this environment and budget to check the learnable-head baseline "
                "against (the MinAtar paper's baselines are DQN and actor-critic over 5M+ frames, beyond this CPU)")


def baseline_gate(per_seed: pd.DataFrame, task: str, env_id: str, *, threshold: float | None = None) -> str:
    """"" when the learnable head's mean greedy return on ``task`` has a 95% t interval that reaches the solved
    ``threshold`` (default: `BASELINE_REFERENCES`), else why every contrast of the task is "inconclusive
    (budget)": the baseline comparison would be on an agent below its reference."""
    if threshold is None and env_id not in BASELINE_REFERENCES:
        return NO_REFERENCE
    limit, source = (threshold, "the plan's gate") if threshold is not None else BASELINE_REFERENCES[env_id]
    greedy = per_seed[(per_seed.task == task) & (per_seed.arm == "linear")].greedy.to_numpy(dtype=float)
    greedy = greedy[np.isfinite(greedy)]
    if len(greedy) < 2:
        return "the learnable-head baseline has too few seeds to check the reference gate"
    half = scipy_stats.t.ppf(0.975, len(greedy) - 1) * greedy.std(ddof=1) / np.sqrt(len(greedy))
    high = greedy.mean() + half
    if high >= limit:
        return ""
    return (f"the learnable-head baseline did not reach the reference: its greedy return's 95% interval ends at "
            f"{high:.1f} < {limit:g} ({source})")


def _return_scale(env_id: str) -> float:
    """The smallest effect of interest on returns: 5% of the reference range (`REFERENCE_SCORES`)."""
    low, high = REFERENCE_SCORES[env_id]
    return smallest_effect("return", span=high - low)


def _holm_by_claim(table: pd.DataFrame, claims: dict) -> pd.DataFrame:
    """Holm over the claimed rows and, separately, over the descriptive ones (sign 0)."""
    return adjust(table, ["claims" if claims[key].sign != 0 else "descriptive" for key in table.index])


def head_contrasts(per_seed: pd.DataFrame, env_id: dict[str, str], budget: pd.DataFrame, *,
                   gate: dict[str, str] | None = None) -> tuple[dict, dict]:
    """(rows, claims) of the head-arm contrasts (`HEAD_CONTRASTS` x `HEAD_OUTCOMES`, Welch) of every task in
    ``env_id`` (task -> environment): the smallest effect is 5% of the reference range for returns, 10% of the
    median over the two arms' seeds for updates to threshold; two arms at one value with no spread are a ceiling;
    the budget reason comes from ``gate[task]`` (a reason every row of the task is inconclusive) or ``budget``."""
    rows, claims = {}, {}
    for task in env_id:
        t = per_seed[per_seed.task == task]
        for arm, against, _ in HEAD_CONTRASTS:
            for outcome, sign in HEAD_OUTCOMES.items():
                x, y = t[t.arm == arm][outcome], t[t.arm == against][outcome]
                key = (task, f"{arm} - {against}", outcome)
                rows[key] = measured(welch, x, y) | dict(reached_x=int(x.notna().sum()),
                                                         reached_y=int(y.notna().sum()))
                smallest = (smallest_effect("relative", reference=pd.concat([x, y]).median())
                            if outcome == "updates_to_threshold" else _return_scale(env_id[task]))
                ceiling = x.nunique() == 1 and y.nunique() == 1 and x.iloc[0] == y.iloc[0]
                reason = (gate or {}).get(task, "") or _budget_reason(budget, [(task, arm), (task, against)])
                claims[key] = Claim(sign, smallest, ceiling, reason)
    return rows, claims


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
    env_id = {task: HEAD_TASKS[task][0]["env_id"] for task in tasks}
    budget = budget_table(per_seed, env_id)
    gate = {task: baseline_gate(per_seed, task, env_id[task]) for task in tasks}
    rows, claims = head_contrasts(per_seed, env_id, budget, gate=gate)
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
            "heads_alignment": alignment_table(per_seed, root)}


#: the states the own-label null is scored on: a uniform random policy in `NULL_ENVS` environments for
#: `NULL_STEPS` steps from reset seed `NULL_STATE_SEED` (an untrained policy is close to uniform; the states of the
#: trained run's last rollout are not stored)
NULL_ENVS, NULL_STEPS, NULL_STATE_SEED = 8, 256, 12345
#: which labels and states each side of an alignment row uses (the ``labels_x`` / ``labels_y`` columns)
TRAINED_LABELS = "trained network's own greedy actions, on its last diagnosed rollout's states"
OWN_NULL_LABELS = (f"untrained network's own greedy actions, on {NULL_ENVS * NULL_STEPS} states of a uniform random "
                   "policy")
CIRCULAR_NULL_LABELS = "trained network's greedy actions, scored on the untrained network (same states): circular"


def _random_states(env_id: str, env_kwargs: dict | None) -> torch.Tensor:
    """`NULL_ENVS` x `NULL_STEPS` observations of a uniform random policy (seeded: the same states every time)."""
    env = make_vector_env(env_id, NULL_ENVS, env_kwargs)
    try:
        obs, _ = env.reset(seed=NULL_STATE_SEED)
        rng = np.random.default_rng(NULL_STATE_SEED)
        states = []
        for _ in range(NULL_STEPS):
            states.append(np.asarray(obs, dtype=np.float32))
            obs, *_ = env.step(rng.integers(0, env.single_action_space.n, NULL_ENVS))
    finally:
        env.close()
    return torch.as_tensor(np.concatenate(states))


def own_label_null(task: str, arm: str, seeds: list[int], root: Path | None = None) -> pd.Series:
    """Theorem 1's null, not circular (issue 24): per seed, the ``label_alignment`` of the seed's *untrained*
    network (rebuilt from the stored config: the initialisation depends on the seed alone) with its *own* greedy
    actions as labels, on the states of `_random_states`. NaN where its greedy policy takes fewer than two
    actions on those states (no class structure to align with)."""
    config = with_stored_defaults(stored_config("heads", f"{task}/{arm}", root=root))
    cfg = TrainConfig(**dict(config, seeds=tuple(int(s) for s in seeds), device="cpu"))
    states = _random_states(cfg.env_id, cfg.env_kwargs)
    model = fresh_model(cfg)
    with torch.no_grad():
        out = model.policy(states[None].expand(len(seeds), *states.shape))
        values = metrics.action_collapse(out.features, out.logits.argmax(-1), model.actor.head.weight,
                                         logits=out.logits)["label_alignment"]
    return pd.Series(np.asarray(values, dtype=float).reshape(-1), index=list(seeds), name="own_null_label_alignment")


def alignment_table(per_seed: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """ACPG's Theorem 1 on the RL tasks with at least 3 actions (with 2, any fixed head is an ETF up to scale and
    the test is vacuous): the cosine between a state's centred feature and the head row of the action the
    policy takes there (``label_alignment``, on the states of the last diagnosed rollout; the labels are the
    policy's own greedy actions, as no optimal action is known). Per arm, trained against the same seed's
    untrained network scored on *its own* greedy actions (`own_label_null`; paired over the seeds where both are
    defined): what training added. The ETF arm against each other arm's alignment with its own rows (Welch).
    Claimed sign +1; smallest effect 0.05 (a cosine); Holm over the claims. The stored null (the untrained
    network scored on the *trained* policy's labels, near 0 by construction: circular) is kept as a descriptive
    row per arm in its own family. ``labels_x`` / ``labels_y`` say which labels and states each side uses."""
    rows, claims, sources = {}, {}, {}
    for task, t in per_seed.groupby("task", sort=False):
        shared = HEAD_TASKS[task][0]
        actions = probe_spaces(shared["env_id"], shared.get("env_kwargs"))[1].n
        if actions < 3:
            continue
        by_arm = {arm: t[t.arm == arm].sort_values("seed") for arm in HEAD_ARMS}
        for arm, a in by_arm.items():
            null = own_label_null(task, arm, a.seed.tolist(), root).to_numpy()
            key = (task, actions, f"{arm}: trained - untrained")
            rows[key] = measured(paired, a.label_alignment, pd.Series(null, index=a.index))
            claims[key] = Claim(1, smallest_effect("bounded"))
            sources[key] = (TRAINED_LABELS, OWN_NULL_LABELS)
            key = (task, actions, f"{arm}: trained - untrained on the trained labels (circular)")
            rows[key], claims[key] = measured(paired, a.label_alignment, a.null_label_alignment), Claim(0)
            sources[key] = (TRAINED_LABELS, CIRCULAR_NULL_LABELS)
        for other in ("linear", "linear_scaled", "random"):
            key = (task, actions, f"etf - {other}")
            rows[key] = measured(welch, by_arm["etf"].label_alignment, by_arm[other].label_alignment)
            claims[key], sources[key] = Claim(1, smallest_effect("bounded")), (TRAINED_LABELS, TRAINED_LABELS)
    if not rows:
        return pd.DataFrame()
    table = verdict_table(_holm_by_claim(contrast_table(rows), claims), claims, names=TABLES["heads_alignment"])
    table["labels_x"] = [sources[key][0] for key in rows]
    table["labels_y"] = [sources[key][1] for key in rows]
    return table


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
    gate = baseline_gate(per_seed[per_seed.epsilon == 0].assign(task="eps0"), "eps0", env_id)  # the baseline

    def arm(eps: float, name: str, outcome: str) -> pd.Series:
        return per_seed[(per_seed.epsilon == eps) & (per_seed.arm == name)][outcome]

    contrasts, claims = {}, {}
    for outcome, sign in EXPLORATION_OUTCOMES.items():
        for eps in EXPLORATION_EPSILONS:
            key = (eps, "etf - linear", outcome)
            contrasts[key] = welch(arm(eps, "etf", outcome), arm(eps, "linear", outcome))
            claims[key] = Claim(sign if eps > 0 else 0, smallest, False,
                                gate or _budget_reason(budget, [(eps, "etf"), (eps, "linear")]))
        for eps in EXPLORATION_EPSILONS[1:]:
            key = (eps, "(etf - linear) - (etf - linear at 0)", outcome)
            contrasts[key] = welch_contrast([arm(eps, "etf", outcome), arm(eps, "linear", outcome),
                                             arm(0.0, "etf", outcome), arm(0.0, "linear", outcome)], [1, -1, -1, 1])
            claims[key] = Claim(sign, smallest, False,
                                gate or _budget_reason(budget, [(e, a) for e in (0.0, eps) for a in ("etf", "linear")]))
    table = _holm_by_claim(contrast_table(contrasts), claims)
    return {"exploration_per_seed": per_seed.set_index(["epsilon", "arm", "seed"]),
            "exploration_contrasts": verdict_table(table, claims, names=EXPLORATION_TABLES["exploration_contrasts"]),
            "exploration_convergence": budget.rename_axis(["epsilon", "arm"])}
