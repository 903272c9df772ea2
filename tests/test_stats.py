"""The statistics behind the verdicts: Welch and paired t intervals, Holm's adjustment, the verdict rule."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from acpg_lab.experiments import compare_final
from acpg_lab.stats import contrast_table, holm, paired, verdict, welch


def test_welch_matches_scipy_and_the_satterthwaite_df():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 3.0, 9)
    r = welch(x, y)
    ref = st.ttest_ind(x, y, equal_var=False)
    assert r["p"] == pytest.approx(ref.pvalue) and r["t"] == pytest.approx(ref.statistic)
    vx, vy = x.var(ddof=1) / 5, y.var(ddof=1) / 9
    assert r["df"] == pytest.approx((vx + vy) ** 2 / (vx**2 / 4 + vy**2 / 8))
    low, high = ref.confidence_interval(0.95)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
    # wider than the normal approximation with few seeds
    assert r["ci_high"] - r["difference"] > 1.96 * np.sqrt(vx + vy)


def test_welch_interval_covers_the_true_difference_at_its_level_with_five_seeds():
    rng = np.random.default_rng(1)
    hits = [welch(rng.normal(0.5, 1, 5), rng.normal(0, 2, 5)) for _ in range(4000)]
    coverage = np.mean([h["ci_low"] <= 0.5 <= h["ci_high"] for h in hits])
    assert 0.935 <= coverage <= 0.965, coverage


def test_paired_matches_scipy_and_drops_incomplete_pairs():
    x, y = np.array([3.0, 2.5, 4.0, np.nan, 3.3]), np.array([1.0, 1.5, 1.2, 0.9, 2.0])
    r = paired(x, y)
    ref = st.ttest_rel(x[[0, 1, 2, 4]], y[[0, 1, 2, 4]])
    assert r["p"] == pytest.approx(ref.pvalue) and r["df"] == 3 and r["n_x"] == 4
    with pytest.raises(ValueError, match="same length"):
        paired([1, 2], [1, 2, 3])


def test_too_few_seeds_is_an_error_naming_the_sample():
    with pytest.raises(ValueError, match="y needs at least 2"):
        welch([1.0, 2.0], [1.0, np.nan])


def test_holm_by_hand_and_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.005])
    # sorted finite: 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, 0.06 (monotone)
    np.testing.assert_allclose(holm(p), [0.03, 0.06, np.nan, 0.06, 0.02])
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0]


def test_verdict_rules():
    sig_up = dict(difference=2.0, ci_low=1.0, ci_high=3.0, p=0.001)
    assert verdict(sig_up, expected_sign=1)[0] == "reproduced"
    assert verdict(sig_up, expected_sign=-1)[0] == "contradicted"
    assert verdict(sig_up, expected_sign=1, p_adjusted=0.2)[0] == "inconclusive (power)"
    assert verdict(sig_up, expected_sign=1, budget="an arm was still rising") == ("inconclusive (budget)",
                                                                                "an arm was still rising")
    with pytest.raises(TypeError, match="budget must be a string"):
        verdict(sig_up, expected_sign=1, budget=True)
    narrow_null = dict(difference=0.1, ci_low=-0.2, ci_high=0.4, p=0.5)
    assert verdict(narrow_null, expected_sign=1, smallest_effect=1.0)[0] == "not reproduced"
    assert verdict(narrow_null, expected_sign=1, smallest_effect=0.3)[0] == "inconclusive (power)"
    assert verdict(narrow_null, expected_sign=-1, smallest_effect=0.3)[0] == "not reproduced"
    label, rule = verdict(sig_up, expected_sign=1, p_adjusted=0.01)
    assert "Holm" in rule
    with pytest.raises(ValueError, match="expected_sign"):
        verdict(sig_up, expected_sign=0)


def test_compare_final_is_a_welch_family_with_holm():
    rng = np.random.default_rng(2)
    a = pd.DataFrame(dict(ret=rng.normal(10, 1, 6), ent=rng.normal(0.5, 0.1, 6), few=[1.0] + [np.nan] * 5))
    b = pd.DataFrame(dict(ret=rng.normal(8, 1, 7), ent=rng.normal(0.5, 0.1, 7), few=rng.normal(0, 1, 7)))
    table = compare_final(a, b)
    assert table.loc["ret", "p"] == pytest.approx(welch(a.ret, b.ret)["p"])
    np.testing.assert_allclose(table["p_holm"], holm(table["p"].to_numpy()))
    assert np.isnan(table.loc["few", "p"]) and table.loc["few", "value"] == 1.0
    assert list(contrast_table({}).columns) == []


def test_not_reproduced_needs_the_family_level_interval():
    """Issue 24: multiplicity on both sides. A contrast whose 95% interval excludes the smallest effect, but whose
    Bonferroni interval over its family of 50 does not, is "inconclusive (power)", not "not reproduced"."""
    from acpg_lab.stats import family_interval

    r = dict(difference=0.0, se=0.02, df=9.0, p=1.0)
    low95, high95 = family_interval(r, 1)
    assert high95 == pytest.approx(st.t.ppf(0.975, 9) * 0.02)  # m = 1: the usual 95% interval
    r95 = dict(r, ci_low=low95, ci_high=high95)
    assert verdict(r95, expected_sign=1, smallest_effect=0.05)[0] == "not reproduced"  # 0.045 < 0.05
    low, high = family_interval(r, 50)
    assert high == pytest.approx(st.t.ppf(1 - 0.05 / 100, 9) * 0.02) and high > 0.05
    label, rule = verdict(r95, expected_sign=1, p_adjusted=1.0, smallest_effect=0.05, family_size=50)
    assert label == "inconclusive (power)" and "Bonferroni, m = 50" in rule
    assert verdict(r95, expected_sign=1, smallest_effect=0.2, family_size=50)[0] == "not reproduced"
    with pytest.raises(ValueError, match="family_size"):
        family_interval(r, 0)


def test_adjust_makes_families_and_their_sizes():
    from acpg_lab.stats import adjust

    table = pd.DataFrame(dict(p=[0.01, 0.02, np.nan, 0.04]), index=list("abcd"))
    adjust(table, ["one", "one", "one", "two"])
    np.testing.assert_allclose(table.p_holm, [0.02, 0.02, np.nan, 0.04])
    assert table.family_size.tolist() == [2, 2, 2, 1]


def test_a_significant_but_immaterial_effect_is_not_reproduced():
    """Lead-lag correlations: with a material smallest effect (|r| >= 0.1), a significant r of 0.01 is not
    "reproduced" (nor "contradicted"): the family-level interval decides."""
    tiny = dict(difference=0.012, se=0.003, df=15.0, p=0.001)
    assert verdict(tiny, expected_sign=1, smallest_effect=0.1)[0] == "reproduced"  # not material: size ignored
    label, rule = verdict(tiny, expected_sign=1, smallest_effect=0.1, material=True, family_size=40)
    assert label == "not reproduced" and "< 0.1" in rule
    assert verdict(dict(tiny, difference=-0.012), expected_sign=1, smallest_effect=0.1, material=True)[0] == (
        "not reproduced")
    big = dict(difference=0.3, se=0.05, df=15.0, p=0.0001)
    assert verdict(big, expected_sign=-1, smallest_effect=0.1, material=True)[0] == "contradicted"
    wide = dict(difference=0.05, se=0.04, df=15.0, p=0.01)
    assert verdict(wide, expected_sign=1, smallest_effect=0.1, material=True, family_size=40)[0] == (
        "inconclusive (power)")
