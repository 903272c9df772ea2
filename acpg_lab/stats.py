"""The statistics every verdict in the notebooks and `REPRODUCTION.md` uses, with the rule stated once.

- A difference of means between two independent arms (e.g. ETF head vs linear head, different seeds' runs):
  `welch`, a t interval with Welch-Satterthwaite degrees of freedom. With 5-10 seeds a normal (z = 1.96)
  interval is 10-40% too narrow; the t quantile is what makes the stated coverage hold.
- A trained network against its own initialisation (same seed, same states): `paired`, a t interval on the
  per-seed differences (n - 1 degrees of freedom). The untrained network is the null of every collapse metric.
- A family of contrasts (one notebook's table): `holm` adjusts the p-values (step-down, controls the
  family-wise error rate); tables show the raw p beside the adjusted one (`contrast_table`).
- `verdict` turns one contrast into the vocabulary of `REPRODUCTION.md` and names the rule that gave it. The
  multiplicity of a family is applied on both sides (`VERDICT_RULE`): *reproduced* / *contradicted* need the
  Holm-adjusted p, and *not reproduced* needs the family-level (Bonferroni, `family_interval`) interval to exclude
  the smallest effect of interest; otherwise the row is *inconclusive (power)*.

- Too few seeds: every test needs at least `MIN_SEEDS` finite values per arm (`enough_seeds`); a table row with
  fewer says so (`unmeasurable`) instead of failing.
- Aggregates over tasks (IQM, probability of improvement): rliable's stratified bootstrap on scores normalised per
  environment (`normalized`, `aggregate`, `probability_of_improvement`, `REFERENCE_SCORES`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats as st

__all__ = ["welch", "welch_contrast", "paired", "holm", "adjust", "family_interval", "contrast_table", "verdict",
           "VERDICT_RULE", "VERDICT_RULE_VERSION", "MIN_SEEDS",
           "enough_seeds", "unmeasurable", "REFERENCE_SCORES", "normalized", "aggregate", "probability_of_improvement"]

#: the fewest finite values (seeds) per arm a t interval is computed from
MIN_SEEDS = 2


def _clean(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float).reshape(-1)
    arr = arr[np.isfinite(arr)]
    if len(arr) < MIN_SEEDS:
        raise ValueError(f"{name} needs at least {MIN_SEEDS} finite values (one per seed), got {len(arr)}")
    return arr


def enough_seeds(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray | None = None, *,
                 paired: bool = False) -> bool:
    """Whether ``x`` (and ``y``) have `MIN_SEEDS` finite values each, and, ``paired``, as many complete pairs:
    whether `welch` / `paired` can give an interval."""
    arrays = [np.asarray(v, dtype=float).reshape(-1) for v in (x, y) if v is not None]
    if any(np.isfinite(a).sum() < MIN_SEEDS for a in arrays):
        return False
    if paired and len(arrays) == 2:
        a, b = arrays
        return len(a) == len(b) and int((np.isfinite(a) & np.isfinite(b)).sum()) >= MIN_SEEDS
    return True


def unmeasurable(x: pd.Series, y: pd.Series) -> dict[str, float]:
    """The row of a contrast with too few seeds (`enough_seeds` false): NaN statistics beside the means and the
    counts of the values there are."""
    return dict(difference=np.nan, ci_low=np.nan, ci_high=np.nan, df=np.nan, t=np.nan, p=np.nan, se=np.nan,
                mean_x=x.mean(), mean_y=y.mean(), n_x=int(x.notna().sum()), n_y=int(y.notna().sum()))


def _t_result(diff: float, se: float, df: float, confidence: float) -> dict[str, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    q = st.t.ppf(0.5 + confidence / 2, df)
    if se > 0:
        t = diff / se
        p = 2 * st.t.sf(abs(t), df)
    else:  # every seed identical: the difference is exact
        t, p = (np.inf * np.sign(diff), 0.0) if diff != 0 else (0.0, 1.0)
    return dict(difference=diff, ci_low=diff - q * se, ci_high=diff + q * se, df=df, t=t, p=p, se=se)


def welch(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
          confidence: float = 0.95) -> dict[str, float]:
    """mean(x) - mean(y) for two independent samples (one value per seed each), with its Welch t interval.

    Degrees of freedom by Welch-Satterthwaite: ``(vx/nx + vy/ny)^2 / ((vx/nx)^2/(nx-1) + (vy/ny)^2/(ny-1))``.
    Non-finite values are dropped (a seed that produced no value), and the counts are returned so a table can
    show them. Returns difference, ci_low, ci_high, df, t, p (two-sided), mean_x, mean_y, n_x, n_y.
    """
    x, y = _clean(x, "x"), _clean(y, "y")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = float(np.sqrt(vx + vy))
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)) if se > 0 else float(len(x) + len(y) - 2)
    out = _t_result(float(x.mean() - y.mean()), se, float(df), confidence)
    return out | dict(mean_x=float(x.mean()), mean_y=float(y.mean()), n_x=len(x), n_y=len(y))


def welch_contrast(groups: Sequence[Sequence[float] | np.ndarray], weights: Sequence[float], *,
                   confidence: float = 0.95) -> dict[str, float]:
    """A linear contrast ``sum_i w_i mean(group_i)`` of independent groups (one value per seed each), with its
    t interval: standard error ``sqrt(sum_i w_i^2 v_i / n_i)`` and Welch-Satterthwaite degrees of freedom
    ``se^4 / sum_i (w_i^2 v_i / n_i)^2 / (n_i - 1)``. With weights (1, -1) it is `welch`; with (1, -1, -1, 1) it
    is an interaction, a difference of two differences (e.g. how much more the ETF head gains over the
    learnable head with exploration than without). Returns difference, ci_low, ci_high, df, t, p, n (seeds in
    all groups)."""
    if len(groups) != len(weights) or len(groups) < 2:
        raise ValueError(f"a contrast needs >= 2 groups and one weight per group, got {len(groups)} groups and "
                         f"{len(weights)} weights")
    clean = [_clean(g, f"group {i}") for i, g in enumerate(groups)]
    parts = np.array([w * w * g.var(ddof=1) / len(g) for w, g in zip(weights, clean, strict=True)])
    se = float(np.sqrt(parts.sum()))
    dof = np.array([len(g) - 1 for g in clean], dtype=float)
    df = float(parts.sum() ** 2 / (parts**2 / dof).sum()) if se > 0 else float(dof.sum())
    diff = float(sum(w * g.mean() for w, g in zip(weights, clean, strict=True)))
    return _t_result(diff, se, df, confidence) | dict(n=sum(len(g) for g in clean))


def paired(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
           confidence: float = 0.95) -> dict[str, float]:
    """mean(x - y) over seeds for paired samples (seed s's trained value against seed s's untrained value),
    with a t interval on n - 1 degrees of freedom. Pairs with a non-finite member are dropped. Same keys as
    `welch` (``n_x == n_y`` = the number of pairs)."""
    x, y = np.asarray(x, dtype=float).reshape(-1), np.asarray(y, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired samples need the same length, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = _clean(x[keep] - y[keep], "paired differences")
    out = _t_result(float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), float(len(d) - 1), confidence)
    return out | dict(mean_x=float(x[keep].mean()), mean_y=float(y[keep].mean()), n_x=len(d), n_y=len(d))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input's order; NaN stays NaN and
    does not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if not len(finite):
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


#: the version of the verdict rule (`VERDICT_RULE`), recorded per claim in ``results/evidence/plan.toml``:
#: 1 = multiplicity on the positive side only (an unadjusted 95% interval decided "not reproduced");
#: 2 = two-sided multiplicity (issue 24): the family-level interval decides "not reproduced"
VERDICT_RULE_VERSION = 2

#: The rule `verdict` applies, quoted in the notebooks and `REPRODUCTION.md`.
VERDICT_RULE = (
    "reproduced: Holm-adjusted p < alpha and the difference has the claimed sign; contradicted: Holm-adjusted "
    "p < alpha and the opposite sign; not reproduced: not significant and the family-level interval (Bonferroni, "
    "1 - alpha/m for a family of m contrasts) excludes the smallest effect of interest in the claimed direction; "
    "inconclusive (power): not significant and the family-level interval still contains that effect; "
    "inconclusive (budget): an arm had not been shown to converge at the budget (its late-training rise not "
    "excluded), or one learned less than a tenth of the way from a random policy to the task's reference target, "
    "or (comparisons of heads) the learnable-head baseline was not shown able to reach its task's published "
    "reference (decided before the statistics, from the learning curves and the baseline's own returns). "
    "Where the smallest effect is material (lead-lag "
    "correlations), a significant estimate smaller than it is neither reproduced nor contradicted: the interval "
    "test decides"
)


def family_interval(result: Mapping[str, float], family_size: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """The interval of one contrast at the level of its family: the Bonferroni interval at ``1 - alpha / m`` for a
    family of ``m = family_size`` contrasts, from the contrast's difference, standard error (``se``) and degrees of
    freedom (``df``) as `welch` / `paired` / `welch_contrast` give them.

    Why Bonferroni and not an equivalence test at the Holm-adjusted level: the positive verdicts control the
    family-wise error with Holm, and the negative verdict ("not reproduced": the effect is absent) must control
    the same error rate, or a family of 100 contrasts reads a few true effects as absent by chance. Holm has no
    simple dual interval (its step-down level depends on the other rows' p-values); the Bonferroni intervals have
    simultaneous coverage >= 1 - alpha over the whole family whatever the dependence, so "every 'not reproduced'
    row of the table excludes its smallest effect" holds at 95% jointly. They are conservative (at most as
    powerful as a Holm-level TOST), which errs towards "inconclusive (power)", the honest reading at these n.
    With ``m = 1`` it is the usual 95% interval."""
    if not int(family_size) >= 1:
        raise ValueError(f"family_size must be an integer >= 1, got {family_size!r}")
    diff, se, df = (float(result[k]) for k in ("difference", "se", "df"))
    if not np.isfinite(diff):
        return np.nan, np.nan
    q = float(st.t.ppf(1 - alpha / (2 * int(family_size)), df)) if se > 0 else 0.0
    return diff - q * se, diff + q * se


def verdict(result: Mapping[str, float], *, expected_sign: int, p_adjusted: float | None = None,
            smallest_effect: float | None = None, alpha: float = 0.05, budget: str = "",
            family_size: int = 1, material: bool = False) -> tuple[str, str]:
    """(verdict, rule) for one contrast from `welch` or `paired`, oriented so that ``expected_sign`` (+1 or -1) is
    the direction the paper claims. ``smallest_effect`` (> 0, in the metric's units) is the smallest difference
    that would count as the claimed effect; without it a non-significant contrast is "inconclusive (power)".
    ``budget`` says why the budget cannot decide the contrast (an arm not shown to converge, or one that learned
    too little; "" when it can): it gives "inconclusive (budget)" with that reason as the rule, whatever the numbers
    say. The rule text names the test that decided it (see `VERDICT_RULE`).

    The rule, two-sided in its multiplicity (version `VERDICT_RULE_VERSION`): a significant row needs the
    Holm-adjusted p (``p_adjusted``) below ``alpha``; a row reads "not reproduced" only when the *family-level*
    interval (`family_interval`: Bonferroni at ``1 - alpha / family_size``) excludes the smallest effect in the
    claimed direction, so that both verdicts control the family-wise error; otherwise it is "inconclusive
    (power)". ``family_size`` is the number of contrasts in the row's Holm family (1: the row is its own family,
    and the interval is the 95% one; a result without ``se`` is read at its stored interval). ``material``: the
    smallest effect also gates the significant side: a significant difference smaller than ``smallest_effect``
    (a correlation of 0.01 that many samples make significant) is not "reproduced" or "contradicted" but goes to
    the interval test ("not reproduced" when the family-level interval excludes the smallest effect in the claimed
    direction)."""
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if smallest_effect is not None and not smallest_effect > 0:
        raise ValueError(f"smallest_effect must be > 0, got {smallest_effect!r}")
    if not isinstance(budget, str):
        raise TypeError(f"budget must be a string saying why the budget cannot decide ('' when it can), got {budget!r}")
    p = result["p"] if p_adjusted is None else p_adjusted
    which = "Holm-adjusted p" if p_adjusted is not None else "p"
    if budget:
        return "inconclusive (budget)", budget
    tiny = material and smallest_effect is not None and abs(result["difference"]) < smallest_effect
    if p < alpha and not tiny:
        sign = np.sign(result["difference"])
        return ("reproduced" if sign == expected_sign else "contradicted"), f"{which} = {p:.3g} < {alpha}"
    relation = (f"{which} = {p:.3g} < {alpha} but |difference| {abs(result['difference']):.3g} < {smallest_effect:g}"
                if p < alpha else f"{which} = {p:.3g} >= {alpha}")
    if "se" in result and "df" in result:
        low, high = family_interval(result, family_size, alpha=alpha)
    elif family_size == 1:
        low, high = result["ci_low"], result["ci_high"]
    else:
        raise ValueError("a family-level interval needs the result's se and df")
    far = high if expected_sign > 0 else low  # the end of the interval in the claimed direction
    level = f"the family-level interval (Bonferroni, m = {int(family_size)})" if family_size > 1 else "the interval"
    if smallest_effect is not None and expected_sign * far < smallest_effect:
        return "not reproduced", (f"{relation} and {level} excludes an effect of {smallest_effect:g} in the claimed "
                                  "direction")
    return "inconclusive (power)", f"{relation} and {level} is too wide to rule the effect out"


def adjust(table: pd.DataFrame, families: Sequence[object] | None = None) -> pd.DataFrame:
    """``p_holm`` (Holm over each family) and ``family_size`` (the family's contrasts with a p) set on ``table``
    in place: ``families`` gives each row's family (None: the table is one family). The one place a family is
    made: `verdict` reads ``family_size`` for the family-level interval."""
    labels = pd.Series(list(families) if families is not None else [0] * len(table), index=table.index)
    table["p_holm"], table["family_size"] = np.nan, 0
    for _, rows in labels.groupby(labels, sort=False):
        p = table.loc[rows.index, "p"].to_numpy(dtype=float)
        table.loc[rows.index, "p_holm"] = holm(p)
        table.loc[rows.index, "family_size"] = int(np.isfinite(p).sum())
    return table


def contrast_table(contrasts: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per named contrast (results of `welch` / `paired`), with ``p_holm`` adjusted over the table and
    ``family_size`` (`adjust`): the table is the family."""
    table = pd.DataFrame.from_dict({k: dict(v) for k, v in contrasts.items()}, orient="index")
    if len(table):
        adjust(table)
    return table


#: (random policy, target) per environment, only to put environments on one scale for aggregates. Approximate:
#: random-policy returns rounded; targets are the maximum (CartPole), "solved" (LunarLander 200), or roughly what a
#: well-tuned agent reaches (Acrobot, MinAtar). Aggregates depend on these choices; per-environment tables do not.
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "CartPole-v1": (22.0, 500.0),
    "Acrobot-v1": (-500.0, -70.0),
    "LunarLander-v3": (-180.0, 200.0),
    "MinAtar/Breakout-v1": (0.5, 30.0),
    "MinAtar/SpaceInvaders-v1": (3.0, 150.0),
    "MinAtar/Asterix-v1": (0.5, 20.0),
    "MinAtar/Freeway-v1": (0.0, 60.0),
    "MinAtar/Seaquest-v1": (0.1, 30.0),
    "ALE/Phoenix-v5": (761.4, 7242.6),  # the usual Atari random and human scores
}


def normalized(env_id: str, returns: np.ndarray) -> np.ndarray:
    """Returns mapped so that a random policy scores 0 and the reference target 1 (`REFERENCE_SCORES`)."""
    if env_id not in REFERENCE_SCORES:
        raise ValueError(f"no reference scores for env_id={env_id!r}; known: {sorted(REFERENCE_SCORES)}")
    low, high = REFERENCE_SCORES[env_id]
    return (np.asarray(returns, dtype=float) - low) / (high - low)


@contextmanager
def _rliable_bootstrap(seed: int) -> Iterator[None]:
    """Around an rliable call: seed numpy's global generator, then restore it, and silence the one warning arch
    gives on every call. rliable hands ``random_state`` to arch's bootstrap, which (arch 7) warns that the argument
    is deprecated and draws from the global generator anyway: without the seed, the same scores gave different
    intervals in every process."""
    state = np.random.get_state()  # noqa: NPY002 (the legacy global generator is what arch uses)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator is what arch uses)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"random_state is deprecated", category=FutureWarning,
                                    module=r"arch\.bootstrap")
            yield
    finally:
        np.random.set_state(state)  # noqa: NPY002 (the legacy global generator is what arch uses)


def aggregate(scores: Mapping[str, np.ndarray], *, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """IQM and mean with stratified-bootstrap 95% CIs; ``scores[method]`` is ``[runs, tasks]`` normalised."""
    from rliable import library as rly
    from rliable import metrics

    def iqm_and_mean(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    with _rliable_bootstrap(seed):
        point, interval = rly.get_interval_estimates(dict(scores), iqm_and_mean, reps=reps,
                                                     random_state=np.random.RandomState(seed))
    rows = [dict(method=m, iqm=point[m][0], iqm_low=interval[m][0, 0], iqm_high=interval[m][1, 0],
                 mean=point[m][1], mean_low=interval[m][0, 1], mean_high=interval[m][1, 1],
                 runs=np.asarray(scores[m]).shape[0], tasks=np.asarray(scores[m]).shape[1]) for m in scores]
    return pd.DataFrame(rows).set_index("method")


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, reps: int = 2000, seed: int = 0) -> dict[str, float]:
    """P(X > Y) averaged over tasks, with a stratified-bootstrap 95% CI; ``x``, ``y`` are ``[runs, tasks]``."""
    from rliable import library as rly
    from rliable import metrics

    with _rliable_bootstrap(seed):
        point, interval = rly.get_interval_estimates({"x,y": (np.asarray(x), np.asarray(y))},
                                                     metrics.probability_of_improvement, reps=reps,
                                                     random_state=np.random.RandomState(seed))
    low, high = np.asarray(interval["x,y"]).reshape(-1)[:2]
    return dict(probability=float(point["x,y"]), low=float(low), high=float(high))
