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


# --- Figures read at book width: every figure function, drawn on small data, passes the layout check ----------

import pytest  # noqa: E402

import acpg_lab as al  # noqa: E402
from acpg_lab import figstyle, plotting  # noqa: E402
from acpg_lab.figstyle import FigureLayoutError, layout_problems, panels, shared_legend  # noqa: E402


def _history(seed_count=3, updates=40, **columns):
    rng = np.random.default_rng(0)
    base = dict(seed=np.repeat(np.arange(seed_count), updates), step=np.tile(np.arange(updates) * 2_500, seed_count))
    base.update({name: rng.normal(value, 1.0, seed_count * updates) for name, value in columns.items()})
    return pd.DataFrame(base)


def _figures():
    """(name, figure) for every figure function of acpg_lab.plotting, as the notebooks use them."""
    hist = _history(episode_return=100.0, null_episode_return=20.0, actor_dead_neurons=5.0,
                    ratio_below_mean=0.7, frac_outside=0.2, kl_old_new=0.01, actor_srank=30.0)
    made = []
    ax = plot_curves({"linear": hist, "etf": hist}, "episode_return", null=True)
    ax.figure.suptitle("A suptitle is one text, not two")
    made.append(("plot_curves, one panel", ax.figure))
    fig, axes = panels(5)
    for ax, metric in zip(axes, ["episode_return", "actor_dead_neurons", "ratio_below_mean", "frac_outside",
                                 "kl_old_new"], strict=True):
        plot_curves({"linear": hist, "linear_scaled": hist, "random": hist}, metric, ax=ax, count="title",
                    legend=False, null=True)
    shared_legend(fig)
    made.append(("plot_curves, five panels and one legend", fig))
    per_seed = pd.DataFrame(dict(epochs=[10, 10, 20, 20, 40, 40, 80, 80] * 2, beta=[0.0] * 8 + [1.0] * 8,
                                 actor_dead_neurons=np.arange(16.0), null_actor_dead_neurons=3.0))
    fig, axes = panels(3)
    for ax in axes:
        plotting.plot_dose(per_seed, "actor_dead_neurons", ax=ax)
    shared_legend(fig)
    made.append(("plot_dose, three panels", fig))
    table = pd.DataFrame(dict(iqm=[0.5, 0.8, 0.6], iqm_low=[0.4, 0.7, 0.5], iqm_high=[0.6, 0.9, 0.7]),
                         index=["linear", "linear_scaled", "etf"])
    made.append(("plot_aggregate", plotting.plot_aggregate(table).figure))
    probe = pd.DataFrame(dict(condition=["e40_b0"] * 4 + ["e40_b1"] * 4, seed=[0, 1] * 4,
                              step=[0, 0, 10_000, 10_000] * 2, plasticity_kl=np.linspace(0.1, 1, 8)))
    made.append(("plot_plasticity", plotting.plot_plasticity(probe).figure))
    fig, axes = panels(3, projection=None)
    plotting.plot_frame(al.simplex_etf(3, 2, seed=0).numpy(), ax=axes[0])
    plotting.plot_gram(al.simplex_etf(4, 3, seed=0).numpy(), ax=axes[1])
    rng = np.random.default_rng(1)
    plotting.plot_collapse_projection(rng.normal(size=(32, 8)), np.arange(32) % 3, rng.normal(size=(3, 8)),
                                      ax=axes[2])
    made.append(("plot_frame, plot_gram, plot_collapse_projection", fig))
    return made


def test_every_figure_function_reads_at_book_width():
    problems = {name: layout_problems(fig) for name, fig in _figures()}
    plt.close("all")
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_the_layout_check_finds_each_kind_of_problem():
    fig, axes = plt.subplots(1, 4, figsize=(16, 3))
    for ax in axes:
        ax.plot([1, 2], [1, 2], label="linear_scaled")
        ax.legend()
        ax.set_title("a title long enough to run into the title of the next panel on its right")
    found = "\n".join(layout_problems(fig))
    for expected in ("16.0 in wide", "row 1 has 4 panels", "4 legends", "'linear_scaled' is a code name",
                     "x axis has no label", "texts overlap"):
        assert expected in found, (expected, found)
    with pytest.raises(FigureLayoutError, match="does not read at book width"):
        figstyle.check_layout(fig)
    plt.close(fig)


def test_show_refuses_a_figure_that_breaks_a_rule_when_checking_is_on(monkeypatch):
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.plot([0, 1], [0, 1])
    ax.set(xlabel="x", ylabel="y", title="too wide")
    monkeypatch.setenv(figstyle.CHECK_ENV, "1")
    with pytest.raises(FigureLayoutError, match="14.0 in wide"):
        plotting.show(fig, "too_wide")
    monkeypatch.setenv(figstyle.CHECK_ENV, "maybe")
    with pytest.raises(ValueError, match="ACPG_LAB_CHECK_FIGURES must be 0 or 1, got 'maybe'"):
        plotting.show(fig, "too_wide")
    plt.close("all")


def test_panels_keep_to_three_per_row_and_book_width():
    fig, axes = panels(7)
    assert len(axes) == 7 and fig.get_size_inches()[0] <= figstyle.BOOK_WIDTH_IN
    assert max(figstyle._rows(fig).values()) == 3 and len(figstyle._rows(fig)) == 3
    for bad in (dict(n=0), dict(n=True), dict(n=2, ncols=4), dict(n=2, width=12)):
        with pytest.raises(ValueError, match="panels:"):
            panels(**bad)
    plt.close("all")


@pytest.mark.parametrize(("code", "words"), [
    ("linear_scaled", "learnable head at the ETF's scale"), ("etf", "fixed ETF head"),
    ("cartpole/e40_b1", "40 epochs, PFO β = 1"), ("shifting/e10_b0", "10 epochs, no PFO"),
    ("cartpole/e10_all10", "10 epochs, PFO β = 10 on all layers"),
    ("cartpole/e40_etf_b1", "fixed ETF head, 40 epochs, PFO β = 1"), ("eps0.01/linear", "learnable head, ε = 0.01"),
    ("some_other_name", "some other name")])
def test_plain_labels_for_code_names(code, words):
    assert figstyle.plain_label(code) == words


def test_step_ticks_in_thousands_and_millions():
    assert [figstyle.format_steps(v) for v in (0, 500, 250_000, 1_500_000)] == ["0", "500", "250k", "1.5M"]


def test_figure_functions_given_nothing_say_so_in_the_panel():
    empty = _history(episode_return=1.0).iloc[:0]
    for ax in (plot_curves({}, "episode_return"), plot_curves({"linear": empty}, "episode_return"),
               plotting.plot_dose(pd.DataFrame(dict(epochs=[], beta=[], x=[])), "x"),
               plotting.plot_aggregate(pd.DataFrame(columns=["iqm", "iqm_low", "iqm_high"])),
               plotting.plot_plasticity(pd.DataFrame(columns=["condition", "seed", "step", "plasticity_kl"]))):
        assert any("no data" in t.get_text() for t in ax.texts), ax
    plt.close("all")


def test_a_category_axis_needs_no_label_but_a_numeric_one_does():
    fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
    ax.barh(["balanced bandit", "imbalanced bandit"], [0.2, 0.5])
    ax.set_xlabel("nc1")
    assert layout_problems(fig) == []
    ax.set_xlabel("")
    assert layout_problems(fig) == ["panel '(untitled)': its x axis has no label"]
    assert [figstyle._numeric(t) for t in ("−3", "250k", "1.5M", "$\\mathdefault{10^{2}}$", "learnable head")] == [
        True, True, True, True, False]
    plt.close(fig)
