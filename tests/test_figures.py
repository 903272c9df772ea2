"""What a learner sees in a figure: bands that stay in range, a panel without data that says so, metric names in
words, and figures that carry their name to the main job."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from acpg_lab.plotting import FIGURE_NAME_KEY, METRIC_LABELS, bootstrap_ci, figure_name, mean_ci, plot_curves, slug  # noqa: E402
from acpg_lab.runner import extract_figures  # noqa: E402


def test_bootstrap_band_stays_within_the_range_of_the_values():
    rng = np.random.default_rng(1)
    fractions = rng.choice([0.0, 1.0], size=(4, 30), p=[0.2, 0.8])  # per-seed fractions at 30 x values
    mean, lo, hi = bootstrap_ci(fractions)
    assert np.all((lo >= 0) & (hi <= 1) & (lo <= mean) & (mean <= hi))
    _, normal_lo, normal_hi = mean_ci(fractions)
    assert (normal_hi > 1).any() or (normal_lo < 0).any()  # what the normal band did, and the bootstrap must not
    single = bootstrap_ci(np.array([[3.0, np.nan], [np.nan, np.nan]]))
    assert single[0][0] == single[1][0] == single[2][0] == 3.0 and np.isnan(single[0][1])
    assert [a.tolist() for a in bootstrap_ci(fractions)] == [a.tolist() for a in (mean, lo, hi)]  # deterministic


def test_curves_use_the_bounded_band_and_words_for_the_metric():
    hist = pd.DataFrame(dict(seed=[0, 0, 1, 1], step=[0, 100, 0, 100], frac_outside=[0.0, 1.0, 1.0, 1.0]))
    ax = plot_curves({"run": hist}, "frac_outside", bins=None)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() >= 0 and band.max() <= 1
    assert ax.get_title() == METRIC_LABELS["frac_outside"] == "fraction of ratios outside the clip range"
    assert "frac_outside" in [t.get_text() for t in ax.texts]  # the code name, in the smaller subtitle
    plt.close("all")


def test_a_panel_without_data_says_so():
    hist = pd.DataFrame(dict(seed=[0, 1], step=[0, 0], episode_return=[np.nan, np.nan]))
    ax = plot_curves({"run": hist}, "episode_return", legend=True)
    assert not ax.lines and any("no data" in t.get_text() for t in ax.texts)
    assert ax.get_legend() is None
    plt.close("all")


def test_figures_carry_their_name_to_the_main_job(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title("KL(old ‖ new) per update")
    assert figure_name(fig) == "kl_old_new_per_update"
    fig.suptitle("Learnable vs fixed simplex-ETF head (10 seeds each, mean and 95% CI)")
    assert figure_name(fig) == "learnable_vs_fixed_simplex_etf_head_10_seeds_each_mean_and"  # whole words
    assert slug("!!!") == "figure"
    plt.close(fig)
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    shown = [nbformat.v4.new_output("display_data", data={"image/png": png}, metadata={FIGURE_NAME_KEY: name})
             for name in ("learning_curves", "learning_curves")]
    unnamed = nbformat.v4.new_output("display_data", data={"image/png": png})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=shown),
                                         nbformat.v4.new_code_cell("", outputs=[unnamed])])
    nbformat.write(nb, tmp_path / "02_example.ipynb")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "02_stale_from_an_earlier_run.png").write_bytes(b"old")
    paths = extract_figures(tmp_path / "02_example.ipynb", tmp_path / "figures")
    assert [p.name for p in paths] == ["02_learning_curves.png", "02_learning_curves_2.png", "02_figure_01_0.png"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in paths)


def test_metric_labels_are_words():
    assert all("_" not in label for label in METRIC_LABELS.values())
    assert METRIC_LABELS["kl_old_new"] == "KL(old ‖ new)"
