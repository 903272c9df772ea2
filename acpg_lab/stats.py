"""The statistics every verdict in the notebooks and `REPRODUCTION.md` uses, with the rule stated once.

- A difference of means between two independent arms (e.g. ETF head vs linear head, different seeds' runs):
  `welch`, a t interval with Welch-Satterthwaite degrees of freedom. With 5-10 seeds a normal (z = 1.96)
  interval is 10-40% too narrow; the t quantile is what makes the stated coverage hold.
- A trained network against its own initialisation (same seed, same states): `paired`, a t interval on the
  per-seed differences (n - 1 degrees of freedom). The untrained network is the null of every collapse metric.
- A family of contrasts (one notebook's table): `holm` adjusts the p-values (step-down, controls the
  family-wise error rate); tables show the raw p beside the adjusted one (`contrast_table`).
- `verdict` turns one contrast into the vocabulary of `REPRODUCTION.md` and names the rule that gave it.

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

__all__ = ["welch", "welch_contrast", "paired", "holm", "contrast_table", "verdict", "VERDICT_RULE", "MIN_SEEDS",
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
    return dict(difference=np.nan, ci_low=np.nan, ci_high=np.nan, df=np.nan, t=np.nan, p=np.nan,
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
    return dict(difference=diff, ci_low=diff - q * se, ci_high=diff + q * se, df=df, t=t, p=p)


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


#: The rule `verdict` applies, quoted in the notebooks and `REPRODUCTION.md`.
VERDICT_RULE = (
    "reproduced: Holm-adjusted p < alpha and the difference has the claimed sign; contradicted: Holm-adjusted "
    "p < alpha and the opposite sign; not reproduced: not significant and the t interval excludes the smallest "
    "effect of interest in the claimed direction; inconclusive (power): not significant and the interval still "
    "contains that effect; inconclusive (budget): the arms had not converged at the budget, or one learned less "
    "than a tenth of the way from a random policy to the task's reference target (decided before the statistics, "
    "from the learning curves)"
)


def verdict(result: Mapping[str, float], *, expected_sign: int, p_adjusted: float | None = None,
            smallest_effect: float | None = None, alpha: float = 0.05, budget: str = "") -> tuple[str, str]:
    """(verdict, rule) for one contrast from `welch` or `paired`, oriented so that ``expected_sign`` (+1 or -1) is
    the direction the paper claims. ``smallest_effect`` (> 0, in the metric's units) is the smallest difference
    that would count as the claimed effect; without it a non-significant contrast is "inconclusive (power)".
    ``budget`` says why the budget cannot decide the contrast (an arm still learning, or one that learned too
    little; "" when it can): it gives "inconclusive (budget)" with that reason as the rule, whatever the numbers
    say. The rule text names the test that decided it (see `VERDICT_RULE`)."""
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
    if p < alpha:
        sign = np.sign(result["difference"])
        return ("reproduced" if sign == expected_sign else "contradicted"), f"{which} = {p:.3g} < {alpha}"
    # the end of the interval in the claimed direction
    far = result["ci_high"] if expected_sign > 0 else result["ci_low"]
    if smallest_effect is not None and expected_sign * far < smallest_effect:
        return "not reproduced", (f"{which} = {p:.3g} >= {alpha} and the interval excludes an effect of "
                                  f"{smallest_effect:g} in the claimed direction")
    return "inconclusive (power)", f"{which} = {p:.3g} >= {alpha} and the interval is too wide to rule the effect out"


def contrast_table(contrasts: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per named contrast (results of `welch` / `paired`), with ``p_holm`` adjusted over the table:
    the table is the family."""
    table = pd.DataFrame.from_dict({k: dict(v) for k, v in contrasts.items()}, orient="index")
    if len(table):
        table["p_holm"] = holm(table["p"].to_numpy())
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
