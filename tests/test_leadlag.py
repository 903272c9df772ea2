"""Collapse events, within-seed cross-correlations, shift nulls and event-triggered averages (`acpg_lab.leadlag`)."""

import numpy as np
import pandas as pd
import pytest

from acpg_lab.leadlag import (
    collapse_events,
    cross_correlation,
    diagnosed_series,
    event_counts,
    event_triggered_average,
    lead_lag_test,
)


def _history(returns_by_seed, **columns):
    frames = []
    for seed, returns in returns_by_seed.items():
        n = len(returns)
        frame = pd.DataFrame(dict(seed=seed, update=np.arange(n), step=np.arange(n) * 100, episode_return=returns))
        for name, values in columns.items():
            frame[name] = values[seed]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _ar1(rng, n, phi=0.9):
    x = np.zeros(n)
    noise = rng.standard_normal(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    return x


# --------------------------------------------------------------------------------------------- events
def test_collapse_events_are_counted_once_with_start_end_and_levels():
    ramp = list(np.linspace(0, 500, 20))
    seed0 = ramp + [500.0] * 30 + [100.0] * 20 + [500.0] * 30 + [50.0] * 40  # a dip (50-69), then for good (100-)
    seed1 = ramp + [500.0] * 30 + [100.0] * 3 + [500.0] * 30  # a 3-update dip: too short
    seed2 = ramp + [500.0] * 30 + [np.nan, 320.0, np.nan, np.nan] + [320.0] * 20  # ffilled; a 36% fall
    events = collapse_events(_history({0: seed0, 1: seed1, 2: seed2}), drop_fraction=0.3, window=10,
                             min_duration=10)
    e0 = events[events.seed == 0]
    assert e0.start.tolist() == [50, 100] and e0.end.iloc[0] == 70 and np.isnan(e0.end.iloc[1])
    assert e0.level.tolist() == [500.0, 500.0] and e0.threshold.tolist() == [350.0, 350.0]
    assert e0.low.tolist() == [100.0, 50.0] and e0.start_step.tolist() == [5000, 10000]
    assert 1 not in set(events.seed)
    assert events[events.seed == 2].start.tolist() == [51]
    # a shallower criterion no longer counts seed 2's fall; a shorter duration counts seed 1's dip
    assert 2 not in set(collapse_events(_history({2: seed2}), drop_fraction=0.4).seed)
    assert collapse_events(_history({1: seed1}), min_duration=3).start.tolist() == [50]
    history = _history({0: seed0, 1: seed1, 2: seed2})
    assert event_counts(history, events).to_dict() == {0: 2, 1: 0, 2: 1}


def test_collapse_events_measure_the_fall_from_the_floor_and_ignore_slow_declines_outside_the_window():
    acrobot = [-500.0] * 10 + [-100.0] * 30 + [-300.0] * 20  # fell by 200 of the 400 learned above the floor
    assert collapse_events(_history({0: acrobot}), floor=-500.0).start.tolist() == [40]
    assert collapse_events(_history({0: acrobot}), floor=0.0).empty  # best-so-far <= floor: nothing learned
    slow = list(np.linspace(500, 200, 100)) + [200.0] * 20  # 60% down, but 3 per update
    assert collapse_events(_history({0: slow}), window=10).empty
    assert not collapse_events(_history({0: slow}), window=60).empty


def test_collapse_events_reject_bad_parameters_by_name():
    h = _history({0: [1.0, 2.0]})
    for kwargs, name in ((dict(drop_fraction=1.0), "drop_fraction"), (dict(window=0), "window"),
                         (dict(min_duration=1.5), "min_duration"), (dict(column="nope"), "nope")):
        with pytest.raises(ValueError, match=name):
            collapse_events(h, **kwargs)


# --------------------------------------------------------------------------------------------- series
def test_diagnosed_series_averages_per_update_columns_over_each_interval():
    n = 10
    stat = [0.5 if u % 3 == 0 or u == n - 1 else np.nan for u in range(n)]
    entropy = [1.0 if not np.isnan(s) else np.nan for s in stat]
    returns = [1.0, 2.0, 3.0, 4.0, np.nan, np.nan, 7.0, 8.0, 9.0, 10.0]
    h = _history({4: returns}, stat={4: stat}, policy_entropy={4: entropy})
    s = diagnosed_series(h, ["stat", "episode_return"])
    assert s["update"].tolist() == [0, 3, 6, 9] and s.seed.tolist() == [4] * 4
    # intervals (.., 0], (0, 3], (3, 6], (6, 9]: means 1, 3, 7 (update 6 only), 9 (8, 9, 10)
    assert s.episode_return.tolist() == [1.0, 3.0, 7.0, 9.0]
    assert s.stat.tolist() == [0.5] * 4
    with pytest.raises(ValueError, match="missing"):
        diagnosed_series(h, ["nope"])


# ------------------------------------------------------------------------------------ cross-correlation
def test_cross_correlation_finds_the_lead_and_skips_missing_pairs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200)
    y = np.concatenate([[0.0, 0.0], x[:-2]])  # y[t] = x[t - 2]: x leads by 2
    cc = cross_correlation(x, y, lags=range(-3, 4))
    assert cc.idxmax() == 2 and cc[2] == pytest.approx(1.0) and abs(cc[-2]) < 0.2
    x_missing = x.copy()
    x_missing[::5] = np.nan  # a statistic undefined at some updates: those pairs only are skipped
    assert cross_correlation(x_missing, y, lags=[2])[2] == pytest.approx(1.0)
    assert np.isnan(cross_correlation([1.0, 2.0], [3.0, 4.0], lags=[0])[0])  # fewer than 3 pairs
    with pytest.raises(ValueError, match="same length"):
        cross_correlation([1.0, 2.0, 3.0], [1.0, 2.0], lags=[0])
    with pytest.raises(ValueError, match="lags"):
        cross_correlation(x, y, lags=[1, 0])


def test_lead_lag_test_detects_a_lead_in_every_seed_and_its_direction():
    rng = np.random.default_rng(1)
    series = {}
    for seed in range(4):
        x = _ar1(rng, 150)
        series[seed] = (x, np.concatenate([[0.0, 0.0], x[:-2]]) + rng.standard_normal(150))
    lead = lead_lag_test(series, lags=range(1, 4), alternative="greater")
    assert lead.p < 0.01 and lead.seeds == 4 and (lead.per_seed.p < 0.05).all() and lead.statistic > 0.1
    direction = lead_lag_test(series, lags=range(1, 4), against=range(-3, 0), alternative="greater")
    assert direction.p < 0.01
    backwards = lead_lag_test({s: (y, x) for s, (x, y) in series.items()}, lags=range(1, 4), against=range(-3, 0),
                              alternative="greater")
    assert backwards.p > 0.5  # y does not lead x
    block = lead_lag_test(series, lags=range(1, 4), null="block", block=10, draws=199, alternative="greater")
    assert block.p < 0.01 and (block.per_seed.shifts == 199).all()


@pytest.mark.parametrize("trend", [0.0, 0.05])
def test_shift_null_keeps_its_level_on_independent_autocorrelated_series(trend):
    """Two independent AR(1) series (phi 0.9, 120 samples), with or without a trend each (training moves every
    statistic): their levels correlate strongly by chance. A point-by-point shuffle rejects far too often; the
    within-seed circular shift of levels too (short, strongly autocorrelated or trending series); on changes
    (the default) it keeps its level."""
    rng = np.random.default_rng(2)
    ramp = trend * np.arange(120)
    p_changes, p_levels, p_naive = [], [], []
    for _ in range(150):
        series = {s: (_ar1(rng, 120) + ramp, _ar1(rng, 120) + ramp) for s in range(3)}
        seed = int(rng.integers(1 << 30))
        p_changes.append(lead_lag_test(series, lags=[0, 1, 2], draws=199, seed=seed).p)
        p_levels.append(lead_lag_test(series, lags=[0, 1, 2], draws=199, seed=seed, difference=False).p)
        x, y = series[0]
        shuffled = [np.corrcoef(x, rng.permutation(y))[0, 1] for _ in range(199)]
        p_naive.append(min(1, 2 * min(np.mean(np.r_[shuffled, 1] >= np.corrcoef(x, y)[0, 1]),
                                      np.mean(np.r_[shuffled, -1] <= np.corrcoef(x, y)[0, 1]))))
    rates = {name: np.mean(np.array(p) < 0.05) for name, p in
             (("changes", p_changes), ("levels", p_levels), ("point shuffle", p_naive))}
    print(f"trend {trend}: false-positive rates at 5%: {rates}")
    assert rates["changes"] <= 0.10 and rates["point shuffle"] >= 0.3


def test_lead_lag_test_reports_seeds_it_cannot_use_and_rejects_bad_input():
    rng = np.random.default_rng(3)
    series = {0: (rng.standard_normal(60), rng.standard_normal(60)), 1: (np.ones(8), np.arange(8.0))}
    out = lead_lag_test(series, lags=[1], difference=False)
    assert out.seeds == 1 and np.isnan(out.per_seed.loc[1, "p"]) and out.per_seed.loc[0, "shifts"] == 60 - 2 * 6 + 1
    x = rng.standard_normal(50)
    x[:10] = np.nan
    levels = lead_lag_test({0: (x, rng.standard_normal(50))}, lags=[0], difference=False).per_seed.loc[0]
    changes = lead_lag_test({0: (x, rng.standard_normal(50))}, lags=[0]).per_seed.loc[0]
    assert levels.missing == pytest.approx(0.2) and changes.n == 49 and changes.missing == pytest.approx(10 / 49)
    for kwargs, name in ((dict(null="shuffle"), "null"), (dict(alternative="bigger"), "alternative"),
                         (dict(min_shift=1), "min_shift"), (dict(draws=0), "draws")):
        with pytest.raises(ValueError, match=name):
            lead_lag_test(series, lags=[1], **kwargs)
    with pytest.raises(ValueError, match="empty"):
        lead_lag_test({}, lags=[1])


# ------------------------------------------------------------------------------------- event-triggered
def _triggered(rng, precursor):
    """Per seed 200 diagnosed updates and 4 events; with ``precursor`` the statistic dips in the 3 diagnoses
    before each event start."""
    frames, events = [], []
    for seed in range(3):
        x = rng.standard_normal(200)
        starts = rng.choice(np.arange(20, 180), 4, replace=False)
        if precursor:
            for s in starts:
                x[s - 3:s] -= 2.0
        frames.append(pd.DataFrame(dict(seed=seed, update=np.arange(200) * 10, stat=x)))
        events += [dict(seed=seed, start=int(s) * 10 + 5) for s in starts]  # between two diagnoses
    return pd.concat(frames, ignore_index=True), pd.DataFrame(events)


def test_event_triggered_average_finds_a_precursor_against_shifted_events():
    rng = np.random.default_rng(4)
    series, events = _triggered(rng, precursor=True)
    out = event_triggered_average(series, events, "stat", lags=range(-5, 3), stat_lags=range(-3, 0))
    curve = out.curve.set_index("lag")
    assert out.events == 12 and out.seeds == 3 and out.p < 0.01 and out.statistic < -1.0
    assert (curve.loc[[-3, -2, -1], "mean"] < curve.loc[[-3, -2, -1], "null_low"]).all()
    assert curve.loc[-5, "null_low"] < curve.loc[-5, "mean"] < curve.loc[-5, "null_high"]
    quiet = event_triggered_average(*_triggered(rng, precursor=False), "stat", lags=range(-5, 3),
                                    stat_lags=range(-3, 0))
    assert quiet.p > 0.01
    none = event_triggered_average(series, events.iloc[:0], "stat")
    assert none.events == 0 and np.isnan(none.p)
    with pytest.raises(ValueError, match="stat_lags"):
        event_triggered_average(series, events, "stat", lags=range(-2, 1), stat_lags=[-3])


@pytest.mark.parametrize("late", [False, True])
def test_event_triggered_null_keeps_its_level_on_autocorrelated_statistics(late):
    """Events placed independently of an autocorrelated statistic: the shifted-events null rejects at about its
    level. When events come late in training and the statistic trends (as every statistic does while the agent
    learns), the plain pre-event mean reads as a precursor; compared with an earlier baseline window it does
    not."""
    rng = np.random.default_rng(5)
    plain, with_baseline = [], []
    for _ in range(100):
        frames, events = [], []
        for seed in range(3):
            trend = 0.03 * np.arange(150) if late else 0.0
            frames.append(pd.DataFrame(dict(seed=seed, update=np.arange(150), stat=_ar1(rng, 150) + trend)))
            window = np.arange(100, 150) if late else np.arange(10, 150)
            events += [dict(seed=seed, start=int(s)) for s in rng.choice(window, 3, replace=False)]
        series, events, sd = pd.concat(frames), pd.DataFrame(events), int(rng.integers(1 << 30))
        plain.append(event_triggered_average(series, events, "stat", draws=199, seed=sd).p < 0.05)
        with_baseline.append(event_triggered_average(series, events, "stat", lags=range(-10, 6),
                                                     baseline_lags=range(-10, -5), draws=199, seed=sd).p < 0.05)
    print(f"late events {late}: false-positive rate at 5%: plain {np.mean(plain):.3f}, "
          f"against a baseline {np.mean(with_baseline):.3f}")
    assert np.mean(with_baseline) <= 0.11
    assert np.mean(plain) <= 0.11 if not late else np.mean(plain) >= 0.2


def test_per_seed_statistic_is_the_tests_statistic_without_its_null():
    from acpg_lab.leadlag import MIN_CORRELATION, lead_lag_test, per_seed_statistic

    rng = np.random.default_rng(7)
    series = {}
    for s in range(4):
        x = rng.normal(size=120).cumsum()
        series[s] = (x, np.roll(x, 2) + rng.normal(size=120))
    stats = per_seed_statistic(series, lags=range(1, 4))
    test = lead_lag_test(series, lags=range(1, 4), draws=99)
    np.testing.assert_allclose(stats.to_numpy(), test.per_seed.statistic.to_numpy())
    assert stats.mean() > MIN_CORRELATION == 0.1
