"""The order of events within each seed: collapse events, lagged cross-correlations and event-triggered averages,
tested against within-seed shift nulls and combined over seeds.

Why within seed. Updates of one run are strongly autocorrelated, so pooling them across seeds in a rank test (what
`lead_lag_table` used to do) treats ~900 dependent values as independent and lets one seed that collapsed for good
drive the result. Here every statistic is computed inside one seed, its null keeps that seed's autocorrelation
(the series is shifted against the other, not shuffled point by point), and seeds are combined as the units.

- `collapse_events`: the training return falls by more than ``drop_fraction`` of the seed's best-so-far return
  within ``window`` updates and stays below for ``min_duration`` updates; `event_counts` counts them per seed.
- `diagnosed_series`: a history on the grid of diagnosed updates (diagnostics are logged every few updates;
  per-update columns such as the return are averaged over each interval between diagnoses).
- `cross_correlation`: Pearson correlation of ``x[t]`` with ``y[t + lag]`` (positive lag: x leads), over the pairs
  where both are finite, so a statistic that is undefined at some updates (``ratio_below_mean`` when no ratio fell
  below 1 - eps) loses those pairs only, and the number of pairs is reported.
- `lead_lag_test`: a lag-window statistic per seed (on the series' changes by default: training trends make
  levels correlate whatever the order of events) against a circular-shift (or block-permutation) null of that
  seed, and the sum over seeds against the sum under independent shifts per seed.
- `event_triggered_average`: the mean of a (per-seed standardised) statistic around event starts, optionally
  minus its mean in an earlier baseline window, against the same statistic with each seed's event times
  shifted circularly.

Combining seeds: the combined statistic is the sum of the per-seed statistics, and its null draws one shift per
seed independently. This is a permutation test of the mean over seeds under H0 "within every seed the two series
are independent"; every seed weighs the same (a correlation is bounded, so no seed can dominate by its length or
scale), and it needs no continuity of the per-seed p-values, which Fisher's and Stouffer's combinations assume
and permutation p-values (discrete, at least 1/(shifts + 1)) do not have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from acpg_lab.checks import check_choice, check_int, check_number

__all__ = ["collapse_events", "event_counts", "diagnosed_series", "cross_correlation", "lead_lag_test", "LeadLagResult",
           "per_seed_statistic", "MIN_CORRELATION", "event_triggered_average", "EventTriggered"]

#: The smallest lead-lag correlation of interest, |r| >= 0.1 (the mean over the lag window of the within-seed
#: correlation of changes). Why 0.1: it is Cohen's "small" correlation, 1% of the variance of the later change
#: explained; a mechanism "the trust region fails, then the return collapses" that explains less than that of
#: the return's changes explains none of the collapses one can see. With 16 seeds of ~600 diagnosed updates the
#: shift null detects correlations of 0.01, so significance alone says only that the series are not independent.
MIN_CORRELATION = 0.1

ALTERNATIVES = ("two-sided", "greater", "less")
NULLS = ("circular", "block")


# ---------------------------------------------------------------------------------------------- events
def collapse_events(history: pd.DataFrame, *, drop_fraction: float = 0.3, window: int = 10, min_duration: int = 10,
                    floor: float = 0.0, column: str = "episode_return") -> pd.DataFrame:
    """Collapse events of every seed: rows of seed, start (update), start_step, end (the update where the return
    is back at the event's threshold; NaN if it never is), level (the highest return of the ``window`` updates up
    to the start), threshold, best (the seed's best-so-far return) and low (the lowest return during the event).

    Per seed, the return r (``column``, carried forward over updates where no episode ended) starts an event at
    update t when ``r[t] < level(t) - drop_fraction * (best(t) - floor)``, where ``level(t)`` is the maximum of r
    over updates t - window .. t and ``best(t)`` over all updates up to t, and r stays below that threshold for
    the ``min_duration`` updates t .. t + min_duration - 1. Events do not overlap: the next one is looked for after
    the return has recovered to the threshold. A fall in the last ``min_duration - 1`` updates of a run cannot be
    confirmed and is not counted.

    Args:
        drop_fraction: the fall, as a fraction of best-so-far minus ``floor``. Smaller counts shallower dips
            (and noise) as events; larger keeps only deep collapses.
        window: updates within which the fall must happen: short windows count only abrupt falls, long ones
            also slow declines.
        min_duration: updates the return must stay down: short durations count brief dips, long ones only
            lasting collapses (and lose events near the end of a run).
        floor: the return of a policy that learned nothing (0 for CartPole; -500 for Acrobot), so that the
            fraction is of what was learned.
        column: the per-update return column.
    """
    drop_fraction = check_number("drop_fraction", drop_fraction, minimum=0.0, strict=True)
    if drop_fraction >= 1:
        raise ValueError(f"drop_fraction must lie in (0, 1), got {drop_fraction!r}")
    window, min_duration = check_int("window", window, 1), check_int("min_duration", min_duration, 1)
    floor = check_number("floor", floor, minimum=-np.inf, strict=True)
    _check_columns(history, ["seed", "update", "step", column])
    rows = []
    for seed, h in history.sort_values(["seed", "update"]).groupby("seed", sort=True):
        r = h[column].astype(float).ffill()
        best = r.cummax().to_numpy()
        level = r.rolling(window + 1, min_periods=1).max().to_numpy()
        threshold = level - drop_fraction * (best - floor)
        ahead = r[::-1].rolling(min_duration, min_periods=min_duration).max()[::-1].to_numpy()  # max of the next D
        values, updates, steps = r.to_numpy(), h["update"].to_numpy(), h["step"].to_numpy()
        candidate = (best > floor) & (ahead < threshold)  # NaN comparisons are False
        t = 0
        while True:
            starts = np.flatnonzero(candidate[t:])
            if not len(starts):
                break
            t = t + int(starts[0])
            back = np.flatnonzero(values[t:] >= threshold[t])
            end = t + int(back[0]) if len(back) else None
            stop = end if end is not None else len(values)
            rows.append(dict(seed=seed, start=int(updates[t]), start_step=int(steps[t]),
                             end=float(updates[end]) if end is not None else np.nan, level=float(level[t]),
                             threshold=float(threshold[t]), best=float(best[t]),
                             low=float(np.nanmin(values[t:stop]))))
            if end is None:
                break
            t = end
    columns = ["seed", "start", "start_step", "end", "level", "threshold", "best", "low"]
    return pd.DataFrame(rows, columns=columns)


def event_counts(history: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """Events per seed of ``history`` (`collapse_events` of it), seeds without any included as 0: the per-seed
    unit of an event-rate comparison between conditions."""
    _check_columns(history, ["seed"])
    _check_columns(events, ["seed"])
    seeds = np.sort(history["seed"].unique())
    return events.groupby("seed").size().reindex(seeds, fill_value=0).rename("events").rename_axis("seed")


# ---------------------------------------------------------------------------------------- series
def diagnosed_series(history: pd.DataFrame, columns: Sequence[str], *, grid: str = "policy_entropy",
                     per_update: Sequence[str] = ("episode_return",)) -> pd.DataFrame:
    """Rows of seed, update, step and ``columns`` at the diagnosed updates (where ``grid`` is logged; every
    diagnosed update logs ``policy_entropy``). Columns named in ``per_update`` are logged at every update: each
    is averaged over the updates since the previous diagnosed one (carried forward where no value was logged, as a
    return is between finished episodes), so it describes the same interval the next diagnosis follows. The other
    columns are read at the diagnosed update itself and may be NaN there (`cross_correlation` skips such pairs)."""
    _check_columns(history, ["seed", "update", "step", grid, *columns])
    out = []
    for seed, h in history.sort_values(["seed", "update"]).groupby("seed", sort=True):
        diagnosed = h[grid].notna().to_numpy()
        if not diagnosed.any():
            continue
        interval = np.concatenate([[0], np.cumsum(diagnosed)[:-1]])  # rows after a diagnosis start the next interval
        rows = h.loc[diagnosed, ["seed", "update", "step"]].reset_index(drop=True)
        for col in columns:
            if col in per_update:
                mean = h[col].astype(float).groupby(interval).mean().reindex(range(int(diagnosed.sum())))
                rows[col] = mean.ffill().to_numpy()
            else:
                rows[col] = h.loc[diagnosed, col].astype(float).to_numpy()
        out.append(rows.assign(seed=seed))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["seed", "update", "step", *columns])


def _lagged_corr(x: np.ndarray, ys: np.ndarray, lags: Sequence[int], min_pairs: int = 3) -> np.ndarray:
    """Pearson correlation of ``x[t]`` with ``ys[j, t + lag]`` over the pairs where both are finite: ``[m, L]``."""
    n = len(x)
    out = np.full((ys.shape[0], len(lags)), np.nan)
    for i, lag in enumerate(lags):
        if abs(lag) >= n:
            continue
        a = x[max(0, -lag):n - max(0, lag)][None]  # x[t] paired with y[t + lag]
        b = ys[:, max(0, lag):n + min(0, lag)]
        ok = np.isfinite(a) & np.isfinite(b)
        c = ok.sum(1)
        a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
        ma, mb = a0.sum(1) / np.maximum(c, 1), b0.sum(1) / np.maximum(c, 1)
        da, db = np.where(ok, a - ma[:, None], 0.0), np.where(ok, b - mb[:, None], 0.0)
        denom = np.sqrt((da**2).sum(1) * (db**2).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, i] = np.where((c >= min_pairs) & (denom > 0), (da * db).sum(1) / denom, np.nan)
    return out


def cross_correlation(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                      lags: Sequence[int]) -> pd.Series:
    """Correlation of ``x[t]`` with ``y[t + lag]`` for each lag (positive: x leads y), over the pairs where both
    are finite (NaN with fewer than 3 pairs or no spread). x and y are one seed's series on one grid."""
    x, y = _as_pair(x, y)
    lags = _check_lags("lags", lags)
    return pd.Series(_lagged_corr(x, y[None], lags)[0], index=pd.Index(lags, name="lag"), name="correlation")


# ------------------------------------------------------------------------------------------ nulls
def _shifted(y: np.ndarray, *, null: str, min_shift: int, block: int, draws: int,
             rng: np.random.Generator) -> np.ndarray:
    """Null copies of ``y`` ``[m, n]``: every circular shift by min_shift .. n - min_shift (all of them: the
    per-seed null is then exact), or ``draws`` random orders of its consecutive blocks of length ``block``."""
    n = len(y)
    if null == "circular":
        offsets = np.arange(min_shift, n - min_shift + 1)
        return y[(np.arange(n)[None] - offsets[:, None]) % n]
    blocks = [np.arange(i, min(i + block, n)) for i in range(0, n, block)]
    return np.stack([y[np.concatenate([blocks[j] for j in rng.permutation(len(blocks))])] for _ in range(draws)])


def _p_value(observed: float, null: np.ndarray, alternative: str) -> float:
    """(1 + #null at least as extreme) / (1 + #null); two-sided: twice the smaller one-sided p (capped at 1), which
    stays valid when the null is not centred on 0 (shifted copies of two trending series correlate on average)."""
    null = null[np.isfinite(null)]
    greater = (1 + (null >= observed).sum()) / (1 + len(null))
    less = (1 + (null <= observed).sum()) / (1 + len(null))
    if alternative == "greater":
        return float(greater)
    if alternative == "less":
        return float(less)
    return float(min(1.0, 2 * min(greater, less)))


def _combine(per_seed_null: list[np.ndarray], draws: int, rng: np.random.Generator) -> np.ndarray:
    """Sums over seeds of one null value per seed, drawn independently: ``draws`` sums (rows of ``[m_s, ...]``)."""
    return sum(null[rng.integers(0, len(null), draws)] for null in per_seed_null)


@dataclasses.dataclass(frozen=True)
class LeadLagResult:
    """`lead_lag_test`'s answer: per seed (statistic, p, pairs, missing, shifts), the mean over seeds, its p."""

    per_seed: pd.DataFrame
    statistic: float
    p: float
    seeds: int


def lead_lag_test(series: Mapping[object, tuple[np.ndarray, np.ndarray]], *, lags: Sequence[int],
                  against: Sequence[int] = (), difference: bool = True, null: str = "circular",
                  min_shift: int | None = None, block: int = 10, draws: int = 999, alternative: str = "two-sided",
                  seed: int = 0) -> LeadLagResult:
    """Does x lead y? Per seed, the statistic is the mean of `cross_correlation` over ``lags`` minus its mean over
    ``against`` (empty: minus nothing). ``lags=range(1, k + 1)`` asks whether x at t goes with y up to k samples
    later; adding ``against=range(-k, 0)`` asks whether it does so more than y goes with x later (a direction).

    Args:
        series: seed -> (x, y), one seed's two series on one grid (`diagnosed_series` columns).
        difference: correlate the changes from one sample to the next, not the levels. Training trends (both
            series move as the agent learns) correlate levels whatever the order of events, and shifting a
            trending or strongly autocorrelated series circularly misstates the null (measured in the tests,
            independent AR(1) pairs, phi 0.9, 120 samples, 3 seeds: 16% false positives at 5% on levels, 83%
            with a linear trend in each series, 7% on changes either way). Levels answer "high with high";
            changes answer "moves before".
        null: "circular": y shifted circularly by every offset from ``min_shift`` to n - ``min_shift`` (exact
            per-seed null, keeps all of y's autocorrelation except across the wrap); "block": y's consecutive
            blocks of ``block`` samples in ``draws`` random orders (keeps autocorrelation within blocks only).
        min_shift: the smallest circular shift. Shifts shorter than the series' memory leave x and y partly
            aligned and make the test conservative; longer ones leave fewer distinct shifts. Default: the larger
            of 2 x the largest |lag| + 1 and n // 10.
        block: block length of the "block" null: longer keeps more autocorrelation, fewer distinct orders.
        draws: random draws of the combined null (and of the block null per seed); p-values are no finer than
            1 / (draws + 1).
        alternative: "greater" (x leads y positively), "less", or "two-sided" (twice the smaller one-sided p).
        seed: of the random draws.

    A seed whose series is too short for its null (n < 2 ``min_shift`` + 1) or whose statistic is undefined is
    left out of the combination, and its row says why (NaN p).
    """
    lags, against = _check_lags("lags", lags), _check_lags("against", against, empty=True)
    check_choice("null", null, NULLS)
    check_choice("alternative", alternative, ALTERNATIVES)
    draws, block = check_int("draws", draws, 1), check_int("block", block, 1)
    if min_shift is not None:
        check_int("min_shift", min_shift, max(map(abs, [*lags, *against])) + 1)
    if not series:
        raise ValueError("series is empty: give at least one seed's (x, y)")
    pairs = {s: _as_pair(*xy) for s, xy in series.items()}
    if difference:
        pairs = {s: (np.diff(x), np.diff(y)) for s, (x, y) in pairs.items()}  # NaN next to a missing value
    rng = np.random.default_rng(seed)
    width = max(map(abs, [*lags, *against]))
    rows, nulls = [], []
    for s, (x, y) in pairs.items():
        n = len(x)
        shift = min_shift if min_shift is not None else max(2 * width + 1, n // 10)
        observed = _statistic(x, y[None], lags, against)[0]
        row = dict(seed=s, n=n, pairs=int((np.isfinite(x) & np.isfinite(y)).sum()),
                   missing=float(1 - np.mean(np.isfinite(x) & np.isfinite(y))), statistic=observed, p=np.nan,
                   shifts=0)
        if np.isfinite(observed) and (null == "block" or n >= 2 * shift + 1):
            stat_null = _statistic(x, _shifted(y, null=null, min_shift=shift, block=block, draws=draws, rng=rng),
                                   lags, against)
            stat_null = stat_null[np.isfinite(stat_null)]
            if len(stat_null):
                row.update(p=float(_p_value(observed, stat_null, alternative)), shifts=len(stat_null))
                nulls.append(stat_null)
        rows.append(row)
    per_seed = pd.DataFrame(rows).set_index("seed")
    used = per_seed.p.notna()
    if not used.any():
        return LeadLagResult(per_seed, np.nan, np.nan, 0)
    total = float(per_seed.statistic[used].sum())
    p = float(_p_value(total, _combine(nulls, draws, rng), alternative))
    return LeadLagResult(per_seed, total / int(used.sum()), p, int(used.sum()))


def per_seed_statistic(series: Mapping[object, tuple[np.ndarray, np.ndarray]], *, lags: Sequence[int],
                       against: Sequence[int] = (), difference: bool = True) -> pd.Series:
    """`lead_lag_test`'s per-seed statistic alone (no null): seed -> the mean correlation over ``lags`` (minus its
    mean over ``against``), on the changes when ``difference``. Seeds are independent units, so a t interval over
    these values is the interval of the mean statistic (`acpg_lab.stats.paired` against 0)."""
    lags, against = _check_lags("lags", lags), _check_lags("against", against, empty=True)
    out = {}
    for s, xy in series.items():
        x, y = _as_pair(*xy)
        if difference:
            x, y = np.diff(x), np.diff(y)
        out[s] = float(_statistic(x, y[None], lags, against)[0])
    return pd.Series(out, name="statistic", dtype=float)


def _statistic(x: np.ndarray, ys: np.ndarray, lags: Sequence[int], against: Sequence[int]) -> np.ndarray:
    stat = _lagged_corr(x, ys, lags).mean(1)
    return stat - _lagged_corr(x, ys, against).mean(1) if len(against) else stat


# ------------------------------------------------------------------------------- event-triggered
@dataclasses.dataclass(frozen=True)
class EventTriggered:
    """`event_triggered_average`'s answer: ``curve`` (per lag: mean, null mean and 95% null band), the statistic
    (mean over ``stat_lags`` and over events), its p, and the events and seeds that entered."""

    curve: pd.DataFrame
    statistic: float
    p: float
    events: int
    seeds: int


def event_triggered_average(series: pd.DataFrame, events: pd.DataFrame, column: str, *,
                            lags: Sequence[int] = range(-5, 6), stat_lags: Sequence[int] = range(-5, 0),
                            baseline_lags: Sequence[int] = (), standardize: bool = True,
                            min_shift: int | None = None, draws: int = 999, alternative: str = "two-sided",
                            seed: int = 0) -> EventTriggered:
    """``column`` of `diagnosed_series` around the starts of `collapse_events`, against shifted event times.

    Each event is placed at the last diagnosed update at or before its start (lag 0; lag -1 is the diagnosis
    before). Per seed the statistic is z-scored over the seed's series (``standardize``: seeds of different
    scales then weigh alike, and 0 is the seed's own mean); the answer is its mean at ``stat_lags`` (default: the
    5 diagnoses before the start) over all events, out-of-range and NaN values skipped, minus, given
    ``baseline_lags`` (e.g. ``range(-15, -5)``), its mean at those lags: a change just before the events, which
    a slow training trend shared by the events and the statistic does not produce (events come late in training,
    so without a baseline any statistic that trends reads as a "precursor"). Null: all events of a seed shifted
    together (their spacing kept) circularly by an offset from ``min_shift`` to n - ``min_shift`` (default: the
    larger of the largest |lag| + 1 and n // 10), one offset per seed drawn independently, ``draws`` times.
    The curve's band is the 2.5-97.5% range of the null mean at each lag.
    """
    lags, stat_lags = _check_lags("lags", lags), _check_lags("stat_lags", stat_lags)
    baseline_lags = _check_lags("baseline_lags", baseline_lags, empty=True)
    for name, chosen in (("stat_lags", stat_lags), ("baseline_lags", baseline_lags)):
        if not set(chosen) <= set(lags):
            raise ValueError(f"{name} {chosen} must be among lags {lags}")
    check_choice("alternative", alternative, ALTERNATIVES)
    draws = check_int("draws", draws, 1)
    width = max(map(abs, lags))
    if min_shift is not None:
        check_int("min_shift", min_shift, width + 1)
    _check_columns(series, ["seed", "update", column])
    _check_columns(events, ["seed", "start"])
    rng = np.random.default_rng(seed)
    pick, base = np.searchsorted(lags, stat_lags), np.searchsorted(lags, baseline_lags)
    sums, counts, n_events, seeds = [], [], 0, 0
    observed_sum, observed_count = np.zeros(len(lags)), np.zeros(len(lags))
    for s, rows in series.sort_values(["seed", "update"]).groupby("seed", sort=True):
        starts = events.loc[events.seed == s, "start"].to_numpy()
        if not len(starts):
            continue
        x = rows[column].to_numpy(dtype=float)
        if standardize and np.nanstd(x) > 0:
            x = (x - np.nanmean(x)) / np.nanstd(x)
        n = len(x)
        at = np.searchsorted(rows["update"].to_numpy(), starts, side="right") - 1
        at = at[at >= 0]
        shift = min_shift if min_shift is not None else max(width + 1, n // 10)
        if not len(at) or n < 2 * shift + 1:
            continue
        offsets = np.concatenate([[0], np.arange(shift, n - shift + 1)])
        idx = (at[None, :, None] + offsets[:, None, None]) % n + np.asarray(lags)[None, None]  # [m, E, L]
        inside = (idx >= 0) & (idx < n)
        values = np.where(inside, x[np.clip(idx, 0, n - 1)], np.nan)
        ok = np.isfinite(values)
        sums.append(np.where(ok, values, 0.0).sum(1)[1:])  # [m - 1, L] per offset
        counts.append(ok.sum(1)[1:])
        observed_sum += np.where(ok[0], values[0], 0.0).sum(0)
        observed_count += ok[0].sum(0)
        n_events, seeds = n_events + len(at), seeds + 1
    if not seeds:
        empty = pd.DataFrame(dict(lag=lags, mean=np.nan, null_mean=np.nan, null_low=np.nan, null_high=np.nan))
        return EventTriggered(empty, np.nan, np.nan, 0, 0)
    picks = [rng.integers(0, len(total), draws) for total in sums]  # one offset per seed and draw
    null_sum = sum(total[i] for total, i in zip(sums, picks, strict=True))  # [draws, L]
    null_count = sum(count[i] for count, i in zip(counts, picks, strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = observed_sum / observed_count
        null_curves = null_sum / null_count
        statistic = observed_sum[pick].sum() / observed_count[pick].sum()
        null_stat = null_sum[:, pick].sum(1) / null_count[:, pick].sum(1)
        if len(base):
            statistic = statistic - observed_sum[base].sum() / observed_count[base].sum()
            null_stat = null_stat - null_sum[:, base].sum(1) / null_count[:, base].sum(1)
    table = pd.DataFrame(dict(lag=lags, mean=curve, null_mean=np.nanmean(null_curves, 0),
                              null_low=np.nanpercentile(null_curves, 2.5, 0),
                              null_high=np.nanpercentile(null_curves, 97.5, 0)))
    p = float(_p_value(statistic, null_stat, alternative))
    return EventTriggered(table, float(statistic), p, n_events, seeds)


# ------------------------------------------------------------------------------------------ checks
def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame]
    if missing:
        raise ValueError(f"columns {missing} are missing; the frame has {list(frame.columns)}")


def _check_lags(name: str, lags: Sequence[int], *, empty: bool = False) -> list[int]:
    out = list(lags)
    if (not out and not empty) or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in out):
        raise ValueError(f"{name} must be {'' if empty else 'a non-empty '}sequence of integers, got {lags!r}")
    if len(set(out)) != len(out) or out != sorted(out):
        raise ValueError(f"{name} must be increasing without repeats, got {out}")
    return [int(v) for v in out]


def _as_pair(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float).reshape(-1), np.asarray(y, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must be one seed's two series on one grid (same length), got {len(x)} and {len(y)}")
    return x, y
