"""Per-seed summaries of a training history, each defined once: the final window, the smoothed return and when it
first reaches a threshold, the area under the learning curve.

A history is one row per (seed, update) (or per diagnosed rollout of an SB3 run, or per block of updates of a
compacted evidence piece) with ``seed``, ``step`` (environment steps after that row) and ``episode_return`` (mean
return of the episodes that finished there; NaN if none). Every window is measured in steps, relative to each
seed's last step, so the same definition serves the notebooks (`acpg_lab.experiments`), the evidence tables
(`acpg_lab.evidence`) and SB3 histories alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SMOOTHING", "window", "final_window", "first_reach", "steps_to_threshold", "area", "per_seed_mean",
           "learning_summary", "final_metrics"]

#: updates with finished episodes in the moving average of "solved" (the paper's best score and threshold)
SMOOTHING = 5


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return float(value)


def window(history: pd.DataFrame, start: float, end: float = 1.0) -> pd.DataFrame:
    """The rows of each seed whose step lies in (``start``, ``end``] times that seed's last step: ``window(h,
    0.9)`` is the last 10% of each run, ``window(h, 0.8, 0.9)`` the 10% before."""
    if not 0 <= start < end <= 1:
        raise ValueError(f"a window needs 0 <= start < end <= 1, got start={start!r}, end={end!r}")
    last = history.groupby("seed")["step"].transform("max")
    return history[(history["step"] > start * last) & (history["step"] <= end * last)]


def final_window(history: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The rows of each seed in the last ``fraction`` of its steps (where training ended)."""
    return window(history, 1 - _fraction("final_fraction", fraction))


def first_reach(history: pd.DataFrame, threshold: float, *, smoothing: int = SMOOTHING) -> pd.DataFrame:
    """Per seed (rows): ``best``, the highest mean training return over ``smoothing`` consecutive rows with
    finished episodes, and the first ``step`` and ``update`` (counted from 1: the paper's "epochs") at which that
    mean reaches ``threshold`` (NaN if never)."""
    out = {}
    for seed, h in history.dropna(subset=["episode_return"]).groupby("seed"):
        h = h.sort_values("step", kind="stable")
        smooth = h.episode_return.rolling(smoothing, min_periods=smoothing).mean()
        hit = h[smooth >= threshold]
        out[seed] = dict(best=smooth.max(), step=float(hit["step"].iloc[0]) if len(hit) else np.nan,
                         update=float(hit["update"].iloc[0] + 1) if len(hit) and "update" in hit else np.nan)
    return pd.DataFrame.from_dict(out, orient="index", columns=["best", "step", "update"])


def steps_to_threshold(history: pd.DataFrame, threshold: float, *, window: int = SMOOTHING) -> pd.Series:
    """Per seed, the first environment step at which the mean training return over the last ``window`` updates
    with finished episodes reaches ``threshold`` (NaN if never): the paper's "epoch at which 500 is reached"."""
    return first_reach(history, threshold, smoothing=window)["step"].rename("steps_to_threshold")


def area(history: pd.DataFrame) -> pd.Series:
    """Per seed, the mean training return over the rows with finished episodes: over a whole run, the area under
    the learning curve (a speed measure); over `final_window`, where training ended."""
    return per_seed_mean(history.dropna(subset=["episode_return"]), "episode_return")


def per_seed_mean(history: pd.DataFrame, column: str) -> pd.Series:
    """Per seed, the mean of ``column`` over the seed's rows, NaN skipped (the float32 columns of stored
    evidence are averaged seed by seed, as every published table was)."""
    return pd.Series({seed: h[column].mean() for seed, h in history.groupby("seed")}, name=column)


def learning_summary(history: pd.DataFrame, *, final_fraction: float = 0.1) -> pd.DataFrame:
    """Per seed: the mean training return over the whole run (`area`) and over its last ``final_fraction`` of
    steps (`final_window`: where training ended, with exploration noise, unlike a greedy evaluation)."""
    late = final_window(history, final_fraction)
    return pd.DataFrame({"mean_return": area(history), "final_return": area(late)})


def final_metrics(history: pd.DataFrame, metrics: list[str], *, final_fraction: float = 0.2) -> pd.DataFrame:
    """Per seed (rows) and metric (columns): the mean of the values logged in the last ``final_fraction`` of steps.

    NaNs (updates without diagnostics, or a statistic with nothing to average) are skipped; a longer window gives
    a steadier value that reacts later to a collapse near the end.
    """
    _fraction("final_fraction", final_fraction)
    missing = [m for m in metrics if m not in history]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the history; columns: {list(history.columns)}")
    return final_window(history, final_fraction).groupby("seed")[list(metrics)].mean()
