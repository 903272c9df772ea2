"""The curve and aggregate plots draw what they say: means over seeds, bands, points with intervals."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from acpg_lab.plotting import mean_ci, plot_aggregate, plot_curves, plot_dose  # noqa: E402


def _history():
    return pd.DataFrame(dict(seed=[0, 0, 0, 1, 1, 1], step=[0, 100, 200] * 2, kl=[0.0, 1.0, 2.0, 0.0, 3.0, 4.0]))


def test_plot_curves_at_own_x_values_and_binned():
    ax = plot_curves({"a": _history()}, "kl", bins=None)
    line = ax.lines[0]
    assert line.get_xdata().tolist() == [0, 100, 200] and line.get_ydata().tolist() == [0.0, 2.0, 3.0]
    binned = plot_curves({"a": _history()}, "kl", bins=2).lines[0]
    assert binned.get_ydata().tolist() == [0.0, 2.5]  # step 0 alone; steps 100 and 200 share the second bin
    with pytest.raises(ValueError, match="not a column"):
        plot_curves({"a": _history()}, "nope")


def test_plot_curves_draws_the_untrained_null_dashed():
    h = _history().assign(null_kl=[5.0, 5.0, 5.0, 7.0, 7.0, 7.0])
    ax = plot_curves({"a": h}, "kl", bins=None, null=True)
    trained, null = ax.lines
    assert null.get_linestyle() == "--" and null.get_ydata().tolist() == [6.0, 6.0, 6.0]
    assert len(plot_curves({"a": _history()}, "kl", bins=None, null=True).lines) == 1  # no null column: no line
    assert plot_curves({"a": h}, "kl", bins=2, null=True).lines[1].get_ydata().tolist() == [6.0, 6.0]


def test_plot_dose_draws_one_line_per_level_at_the_dose_means_and_the_null():
    per_seed = pd.DataFrame(dict(epochs=[10, 10, 40, 40] * 2, beta=[0.0] * 4 + [1.0] * 4,
                                 x=[1.0, 3.0, 5.0, 7.0, 0.0, 0.0, 1.0, 1.0], null_x=9.0))
    ax = plot_dose(per_seed, "x")
    first, second, null = ax.lines
    assert first.get_xdata().tolist() == [10, 40] and first.get_ydata().tolist() == [2.0, 6.0]
    assert second.get_ydata().tolist() == [0.0, 1.0] and null.get_linestyle() == "--"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["PFO β = 0", "PFO β = 1", "untrained network"]
    assert "not in the table" in plot_dose(per_seed, "y").texts[0].get_text()


def test_mean_ci_and_plot_aggregate():
    mean, lo, hi = mean_ci(np.array([[1.0, np.nan], [3.0, 2.0]]))
    assert mean.tolist() == [2.0, 2.0] and lo[1] == hi[1] == 2.0 and lo[0] < 2.0 < hi[0]
    table = pd.DataFrame(dict(iqm=[0.5, 0.8], iqm_low=[0.4, 0.7], iqm_high=[0.6, 0.9]), index=["x", "y"])
    ax = plot_aggregate(table)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
