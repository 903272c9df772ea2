"""Plotting helpers shared by the notebooks and the command line (matplotlib only).

Figures are titled, axes labelled with units, and drawn with colours and a transparent background that read in
both light and dark JupyterLab themes.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties

from acpg_lab.figstyle import check_layout, checking_enabled, plain_label, steps_axis
from acpg_lab.metric_registry import figure_labels

__all__ = ["mean_ci", "bootstrap_ci", "plot_curves", "plot_dose", "plot_plasticity", "plot_aggregate", "plot_frame",
           "plot_gram", "plot_collapse_projection", "METRIC_LABELS", "metric_label", "titled", "no_data", "show",
           "figure_name", "slug", "FIGURE_NAME_KEY"]

#: Colour-blind-safe palette (Okabe-Ito) that stays legible on dark backgrounds.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a 95% t interval of the mean (n - 1 degrees of freedom, n the finite values) over ``axis``,
    ignoring NaNs; where fewer than 2 values are finite the band collapses onto the mean."""
    with warnings.catch_warnings():  # bins with one or no finite value: no band there (NaN), no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=axis)
        n = np.sum(np.isfinite(values), axis=axis)
        sem = np.nanstd(values, axis=axis, ddof=1) / np.sqrt(np.maximum(n, 1))
    half = np.where(n > 1, scipy.stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sem, 0.0)
    return mean, mean - half, mean + half


def bootstrap_ci(values: np.ndarray, axis: int = 0, *, level: float = 0.95, samples: int = 2000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over ``axis`` and a percentile-bootstrap ``level`` interval of that mean, ignoring NaNs.

    A resampled mean is a mean of observed values, so the interval never leaves the range the observations span
    (returns stay within what the environment can give, fractions within [0, 1]), unlike a normal-approximation
    band. With one finite value the interval is that value; with none, NaN. Deterministic for a given ``seed``.
    """
    values = np.moveaxis(np.asarray(values, dtype=float), axis, 0)
    n_rows = values.shape[0]
    finite = np.isfinite(values)
    with warnings.catch_warnings():  # columns with no finite value: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        if n_rows == 0:
            return mean, mean.copy(), mean.copy()
        picks = np.random.default_rng(seed).integers(0, n_rows, size=(samples, n_rows))
        drawn = values[picks]  # [samples, n_rows, ...]: NaNs stay NaN and are ignored by nanmean
        means = np.nanmean(drawn, axis=1)
        tail = (1 - level) / 2 * 100
        lo, hi = np.nanpercentile(means, [tail, 100 - tail], axis=0)
    one = finite.sum(0) <= 1
    return mean, np.where(one, mean, lo), np.where(one, mean, hi)


#: Words a learner understands for the code names of the logged quantities (the code name goes in a subtitle):
#: the labels of `acpg_lab.metric_registry.METRICS`.
METRIC_LABELS = figure_labels()

#: Key of a displayed figure's output metadata that carries its name (the main job names the PNG after it).
FIGURE_NAME_KEY = "acpg_lab_figure"


def metric_label(metric: str) -> str:
    """The words for ``metric`` (`METRIC_LABELS`), else the code name with spaces."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _wrapped(ax: Axes, text: str) -> str:
    """``text`` broken into lines that fit the panel's width (a title must not run into its neighbour's)."""
    width_in = ax.get_position().width * ax.figure.get_size_inches()[0]
    points = FontProperties(size=plt.rcParams["axes.titlesize"]).get_size_in_points()
    chars = max(16, int(width_in * 72 / (0.55 * points)))  # an average character is ~0.55 em wide
    return textwrap.fill(text, chars, break_long_words=False)


def titled(ax: Axes, title: str, code: str | None = None) -> Axes:
    """Set ``title`` and, when given, the code name ``code`` in a smaller grey line under it; the title is wrapped
    to the panel's width."""
    title = _wrapped(ax, title)
    if code and code != title:
        ax.set_title(title, pad=15)
        ax.text(0.5, 1.01, code, transform=ax.transAxes, ha="center", va="bottom", fontsize="small",
                color="grey")
    else:
        ax.set_title(title)
    return ax


def no_data(ax: Axes, message: str = "no data") -> Axes:
    """Say in the panel that there is nothing to draw (e.g. a run too short to finish an episode)."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="grey", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_curves(histories: Mapping[str, pd.DataFrame], metric: str = "episode_return", *, x: str = "step",
                bins: int | None = 50, ax: Axes | None = None, title: str | None = None, ylabel: str | None = None,
                log: bool = False, legend: bool | dict = True, null: bool = False,
                count: str = "legend") -> Axes:
    """One line per history (mean over seeds) with a 95% percentile-bootstrap band (`bootstrap_ci`, which stays
    within the range of the values); values are averaged into ``bins`` x-bins per seed, or taken at their own x
    values with ``bins=None`` (for values every seed logs at the same x, e.g. snapshots).

    ``histories`` maps a label to a run's history (rows per seed and update); rows where ``metric`` is NaN (updates
    without diagnostics) are skipped, and a panel with no value at all says so instead of showing empty axes.
    ``log=True`` draws a log axis, the band's lower edge floored at a tenth of the mean so that it stays drawable.
    The default title is `metric_label` with the code name under it; ``legend`` may be a dict of legend options.
    ``null=True`` adds, for histories that have a ``null_<metric>`` column (``TrainConfig.diagnostics_null``), the
    untrained network's value on the same states as a dashed line of the same colour: the null to read the
    metric against.

    Labels that are code names (``linear_scaled``, ``e10_b0``) are shown in words (`figstyle.plain_label`). The
    number of seeds behind each line goes in its legend label (``count="legend"``) or, for a figure with one shared
    legend (`figstyle.shared_legend`), into the panel's title (``count="title"``). A step axis is labelled in
    thousands / millions of steps.
    """
    if count not in ("legend", "title"):
        raise ValueError(f"count must be 'legend' or 'title', got {count!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    drawn, counts = 0, []
    for i, (label, hist) in enumerate(histories.items()):
        if metric not in hist:
            raise ValueError(f"metric {metric!r} is not a column of history {label!r}; columns: {list(hist.columns)}")
        hist = hist.dropna(subset=[metric])
        if hist.empty:
            continue
        if bins is None:
            table = hist.pivot_table(index="seed", columns=x, values=metric, aggfunc="mean")
            centres = table.columns.to_numpy(dtype=float)
        else:
            edges = np.linspace(0, hist[x].max(), bins + 1)
            binned = hist.assign(_bin=np.clip(np.digitize(hist[x], edges[1:-1]), 0, bins - 1))
            table = binned.pivot_table(index="seed", columns="_bin", values=metric, aggfunc="mean")
            centres = (edges[:-1] + edges[1:])[table.columns.to_numpy()] / 2
        mean, lo, hi = bootstrap_ci(table.to_numpy())
        if log:
            lo = np.maximum(lo, mean / 10)
        colour = PALETTE[i % len(PALETTE)]
        words = plain_label(label)
        counts.append(len(table))
        ax.plot(centres, mean, color=colour, label=f"{words} (n={len(table)})" if count == "legend" else words,
                marker="o" if len(centres) == 1 else None)  # a lone point needs a marker to be seen
        ax.fill_between(centres, lo, hi, color=colour, alpha=0.25, linewidth=0)
        if null and f"null_{metric}" in hist:
            values = (hist if bins is None else binned).pivot_table(
                index="seed", columns=x if bins is None else "_bin", values=f"null_{metric}", aggfunc="mean")
            ax.plot(centres, values.reindex(columns=table.columns).mean(0).to_numpy(), color=colour,
                    linestyle="--", linewidth=1.2, label=f"{words}: untrained (null)")
        drawn += 1
    if count == "title" and counts:
        seeds = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"
        suffix = f" (n\u00a0=\u00a0{seeds}\u00a0seeds)"  # no-break spaces: the count stays on one line
    else:
        suffix = ""
    if title is None:
        titled(ax, metric_label(metric) + suffix, metric)
    else:
        titled(ax, title + suffix)
    if not drawn:
        return no_data(ax, "no data: the run was too short\n(no episode finished,\nor no update was diagnosed)")
    if log:
        ax.set_yscale("log")
    if x == "step":
        steps_axis(ax)
    else:
        ax.set_xlabel(x)
    ax.set_ylabel(ylabel or metric_label(metric))
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(**{"frameon": False, **(legend if isinstance(legend, dict) else {})})
    return ax


def plot_plasticity(table: pd.DataFrame, conditions: Sequence[str] | None = None, *,
                    ax: Axes | None = None) -> Axes:
    """The plasticity probe's KL at every snapshot, per condition (a `experiments.plasticity_cached` table): mean
    over seeds and 95% band. Higher = the network at that step is harder to refit to a new target."""
    names = list(conditions) if conditions is not None else list(dict.fromkeys(table.condition))
    return plot_curves({name: table[table.condition == name] for name in names}, "plasticity_kl", bins=None,
                       title="Plasticity probe (higher = less plastic)", ylabel="KL after the probe's fit", ax=ax)


def plot_dose(per_seed: pd.DataFrame, metric: str, *, dose: str = "epochs", by: str = "beta",
              ax: Axes | None = None, null: bool = True, log_x: bool = True) -> Axes:
    """A dose-response panel from a per-seed table (``pfo_per_seed``): ``metric`` against ``dose`` (x), one line per
    value of ``by``, mean and 95% t interval over seeds at each dose. With ``null`` and a ``null_<metric>`` column,
    the untrained network's mean is drawn as a dashed grey line (the level that "collapse" is read against)."""
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.6))[1]
    if metric not in per_seed:
        return no_data(ax, f"{metric}: not in the table")
    if per_seed[metric].notna().sum() == 0:
        return no_data(ax, f"no data: no seed has a value of {metric}")
    for i, (level, group) in enumerate(per_seed.groupby(by, sort=True)):
        stats = [(x, *(float(v) for v in mean_ci(g[metric].to_numpy(float))))
                 for x, g in group.groupby(dose, sort=True)]
        xs, mean, low, high = (np.array(v) for v in zip(*stats, strict=True))
        colour = PALETTE[i % len(PALETTE)]
        words = f"PFO β = {level:g}" if by == "beta" else (f"{by} = {level:g}" if isinstance(level, float)
                                                             else plain_label(str(level)))
        ax.plot(xs, mean, "o-", color=colour, label=words)
        ax.fill_between(xs, low, high, color=colour, alpha=0.15)
    if null and f"null_{metric}" in per_seed:
        ax.axhline(per_seed[f"null_{metric}"].mean(), color="grey", ls="--", lw=1, label="untrained network")
    if log_x:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(per_seed[dose].unique()), [f"{v:g}" for v in sorted(per_seed[dose].unique())])
    ax.set(xlabel="epochs per rollout" if dose == "epochs" else dose, ylabel=metric_label(metric),
           title=metric_label(metric))
    ax.legend(frameon=False, fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def plot_aggregate(table: pd.DataFrame, *, metric: str = "iqm", ax: Axes | None = None,
                   xlabel: str = "IQM of normalised greedy return (95% bootstrap CI)") -> Axes:
    """One point per method with its confidence interval, from `experiments.aggregate`'s table (columns
    ``metric``, ``metric_low``, ``metric_high``; one row per method)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * len(table)), layout="constrained")
    if table.empty:
        return no_data(ax, "no data: no method in the table")
    for i, name in enumerate(table.index):
        point, low, high = table.loc[name, [metric, f"{metric}_low", f"{metric}_high"]]
        ax.errorbar(point, i, xerr=[[point - low], [high - point]], fmt="o", capsize=4,
                    color=PALETTE[i % len(PALETTE)])
    ax.set_yticks(range(len(table)), [plain_label(str(name)) for name in table.index])
    ax.set_ylim(-0.5, len(table) - 0.5)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    return ax


def plot_frame(vectors: np.ndarray, *, ax: Axes | None = None, labels: Sequence[str] | None = None,
               title: str | None = None, points: np.ndarray | None = None,
               point_labels: np.ndarray | None = None) -> Axes:
    """Arrows from the origin for the rows of ``vectors`` ([K, 2] or [K, 3]); optional scattered ``points``.

    With 3 columns the axes are 3-D. ``points`` (e.g. features projected to the same space) are coloured by
    ``point_labels`` in the arrows' colours.
    """
    vectors = np.asarray(vectors, dtype=float)
    dim = vectors.shape[1]
    if dim not in (2, 3):
        raise ValueError(f"plot_frame draws 2-D or 3-D vectors, got shape {vectors.shape}")
    if ax is None:
        fig = plt.figure(figsize=(4.5, 4.5))
        ax = fig.add_subplot(projection="3d" if dim == 3 else None)
    for k, v in enumerate(vectors):
        colour = PALETTE[k % len(PALETTE)]
        if points is not None and point_labels is not None:
            sel = np.asarray(point_labels) == k
            ax.scatter(*np.asarray(points)[sel].T, color=colour, s=24, alpha=0.7,
                       **({"depthshade": False} if dim == 3 else {}))
        ax.quiver(*np.zeros(dim), *v, color=colour, linewidth=2, **({} if dim == 3 else dict(
            angles="xy", scale_units="xy", scale=1)))
        ax.text(*(1.12 * v), labels[k] if labels else f"a{k}", color=colour)
    lim = 1.25 * max(1.0, float(np.abs(vectors).max()))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    if dim == 3:
        ax.set_zlim(-lim, lim)
    else:
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    ax.set_xlabel("coordinate 1")
    ax.set_ylabel("coordinate 2")
    ax.set_title(title or f"{len(vectors)} vectors in {dim}-D")
    return ax


def plot_gram(weights: np.ndarray, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Heat map of the cosine similarities between the rows of ``weights``, values written in the cells."""
    w = np.asarray(weights, dtype=float)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = w @ w.T
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.5))
    image = ax.imshow(cos, vmin=-1, vmax=1, cmap="coolwarm")
    if len(cos) <= 8:
        for i in range(len(cos)):
            for j in range(len(cos)):
                ax.text(j, i, f"{cos[i, j]:.2f}", ha="center", va="center", fontsize=8)
    plt.colorbar(image, ax=ax, label="cosine")
    for axis in (ax.xaxis, ax.yaxis):  # actions are integers
        axis.set_major_locator(plt.MaxNLocator(integer=True, nbins=6))
    ax.set_xlabel("action k'")
    ax.set_ylabel("action k")
    ax.set_title(title or "pairwise cosines")
    return ax


def plot_collapse_projection(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, *,
                             ax: Axes | None = None, title: str | None = None) -> Axes:
    """Features and head rows in the (at most 3-D) span of the centred class means, all scaled to unit size.

    The basis is the top principal directions of the centred class means, so for K <= 4 actions the picture is
    exact: collapsed features sit on K points, and if those points and the head rows form a simplex ETF the
    arrows and the clusters line up at equal angles.
    """
    h = np.asarray(features, dtype=float)
    y = np.asarray(labels)
    w = np.asarray(weights, dtype=float)
    classes = np.unique(y[y >= 0])
    means = np.stack([h[y == c].mean(0) for c in classes])
    centre = means.mean(0)
    _, _, vt = np.linalg.svd(means - centre, full_matrices=False)
    basis = vt[: min(3, len(classes) - 1, vt.shape[0])].T
    if basis.shape[1] < 2:
        basis = np.linalg.svd(h - centre, full_matrices=False)[2][:2].T
    pts = (h - centre) @ basis
    pts /= np.abs(pts).max() + 1e-12
    arrows = np.zeros((w.shape[0], basis.shape[1]))
    arrows[classes] = w[classes] @ basis
    arrows /= np.linalg.norm(arrows, axis=1, keepdims=True).max() + 1e-12
    if ax is None:
        fig = plt.figure(figsize=(4.5, 4.5))
        ax = fig.add_subplot(projection="3d" if basis.shape[1] == 3 else None)
    return plot_frame(arrows, ax=ax, points=pts, point_labels=y, title=title or "features and head rows",
                      labels=[f"w{k}" for k in range(len(arrows))])


def slug(text: str, max_length: int = 60) -> str:
    """A file-name-safe lower-case slug of ``text`` (letters, digits and single underscores)."""
    text = text.lower().replace("‖", " ").replace("×", "x").replace("−", "-")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    out = ""
    for word in words:  # whole words up to max_length
        if out and len(out) + 1 + len(word) > max_length:
            break
        out = f"{out}_{word}" if out else word[:max_length]
    return out or "figure"


def figure_name(fig: plt.Figure) -> str:
    """A slug of what ``fig`` shows: its suptitle, else the first non-empty axes title, else ``figure``."""
    if fig.get_suptitle():
        return slug(fig.get_suptitle())
    for ax in fig.axes:
        if ax.get_title():
            return slug(ax.get_title())
    return "figure"


def show(fig: plt.Figure | None = None, name: str | None = None) -> None:
    """Display ``fig`` (default: the current figure) and close it, tagging the output with ``name`` (default: a
    slug of its title, `figure_name`) so that the main job saves it as ``<number>_<name>.png``. Outside IPython
    it is ``plt.show()``."""
    fig = fig if fig is not None else plt.gcf()
    if checking_enabled():
        check_layout(fig)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        plt.show()
        return
    display(fig, metadata={FIGURE_NAME_KEY: slug(name) if name else figure_name(fig)})
    plt.close(fig)
