"""Plotting helpers shared by the notebooks and the command line (matplotlib only).

Figures are titled, axes labelled with units, and drawn with colours and a transparent background that read in
both light and dark JupyterLab themes.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

__all__ = ["mean_ci", "plot_curves"]

#: Colour-blind-safe palette (Okabe-Ito) that stays legible on dark backgrounds.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a 95% confidence band (normal approximation, t-free) over ``axis``, ignoring NaNs."""
    mean = np.nanmean(values, axis=axis)
    n = np.sum(np.isfinite(values), axis=axis)
    sem = np.nanstd(values, axis=axis, ddof=1) / np.sqrt(np.maximum(n, 1)) if values.shape[axis] > 1 else 0 * mean
    return mean, mean - 1.96 * sem, mean + 1.96 * sem


def plot_curves(histories: Mapping[str, pd.DataFrame], metric: str = "episode_return", *, x: str = "step",
                bins: int = 50, ax: Axes | None = None, title: str | None = None, ylabel: str | None = None) -> Axes:
    """One line per history (mean over seeds) with a 95% band; values are averaged into ``bins`` x-bins per seed.

    ``histories`` maps a label to a run's history (rows per seed and update).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for i, (label, hist) in enumerate(histories.items()):
        if metric not in hist:
            raise ValueError(f"metric {metric!r} is not a column of history {label!r}; columns: {list(hist.columns)}")
        edges = np.linspace(0, hist[x].max(), bins + 1)
        binned = hist.assign(_bin=np.clip(np.digitize(hist[x], edges[1:-1]), 0, bins - 1))
        table = binned.pivot_table(index="seed", columns="_bin", values=metric, aggfunc="mean")
        centres = (edges[:-1] + edges[1:])[table.columns.to_numpy()] / 2
        mean, lo, hi = mean_ci(table.to_numpy())
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(centres, mean, color=colour, label=f"{label} (n={len(table)})")
        ax.fill_between(centres, lo, hi, color=colour, alpha=0.25, linewidth=0)
    ax.set_xlabel("environment steps per seed" if x == "step" else x)
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    ax.set_title(title or f"{metric.replace('_', ' ')} (mean, 95% CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax
