"""Running comparisons: cached runs (finished work is never lost), steps to a threshold, the lead-lag table,
rliable aggregates.

`run_cached` trains a config unless a run with the very same resolved config is already saved in its directory,
so a sweep interrupted after 9 of 12 runs resumes at the 10th. `aggregate` computes IQM (interquartile mean) with
stratified-bootstrap 95% confidence intervals and the probability of improvement (Agarwal et al. 2021, the
`rliable` package) from per-seed scores normalised per environment.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.config import TrainConfig
from acpg_lab.run import Run
from acpg_lab.stats import contrast_table, holm, welch
from acpg_lab.store import check_stored_config, is_finished, write_atomic_with
from acpg_lab.training import train

__all__ = ["REFERENCE_SCORES", "run_cached", "condition_slug", "run_conditions", "plasticity_cached",
           "show_stored_results", "steps_to_threshold", "learning_summary", "final_metrics", "final_summary",
           "per_condition_table", "lead_lag_table", "compare_final", "normalized", "aggregate",
           "probability_of_improvement"]

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


def run_cached(config: TrainConfig, directory: str | Path, *, episodes: int = 10,
               progress: bool = True) -> tuple[Run, pd.DataFrame]:
    """Train ``config`` (or load it from ``directory`` if that run is already there) and evaluate it.

    The run and its greedy evaluation (``evaluation.csv``) are written as soon as training ends, so a sweep that
    is interrupted keeps every finished run. A directory holding a run of a *different* config is an error, not
    silently overwritten; fields that did not exist when the run was saved count as equal (a new field's default
    keeps the earlier behaviour).
    """
    out = Path(directory)
    if is_finished(out, kind="cached_run"):
        check_stored_config(out, config.resolve())
        return Run.load(out), pd.read_csv(out / "evaluation.csv")
    run = train(config, progress=progress)
    run.save(out)
    evaluation = run.evaluate(episodes=episodes)
    write_atomic_with(out / "evaluation.csv", lambda tmp: evaluation.to_csv(tmp, index=False))
    return run, evaluation


def condition_slug(name: str) -> str:
    """A directory name for a condition's label: "+ PFO, last layer" -> "PFO_last_layer"."""
    return name.replace("+ ", "").replace(", ", "_").replace(" ", "_")


def run_conditions(configs: Mapping[str, TrainConfig], directory: str | Path, *, suffix: str = "",
                   episodes: int = 10, progress: bool = True,
                   log=print) -> tuple[dict[str, Run], dict[str, pd.DataFrame]]:
    """`run_cached` for each named condition, in ``directory/<condition_slug(name)><suffix>``; every config is
    validated before the first one trains, so a typo in the last condition fails at once, not after hours.

    Returns the runs and their greedy evaluations by condition name, and logs one line per condition (wall time
    and greedy return per seed). Name ``suffix`` after what is not in the name but changes the run (the budget).
    """
    for cfg in configs.values():
        cfg.resolve()
    runs, evaluations = {}, {}
    width = max(map(len, configs), default=0)
    for name, cfg in configs.items():
        runs[name], evaluations[name] = run_cached(cfg, Path(directory) / f"{condition_slug(name)}{suffix}",
                                                   episodes=episodes, progress=progress)
        log(f"{name:>{width}}: {runs[name].wall_time:6.0f} s, greedy return per seed "
            f"{evaluations[name].return_mean.round(0).tolist()}")
    return runs, evaluations


def plasticity_cached(runs: Mapping[str, Run], path: str | Path, *, steps: int = 200) -> pd.DataFrame:
    """`Run.plasticity` on every snapshot of every run (rows of condition, seed, step, plasticity_kl), read from
    ``path`` if an earlier call wrote it: the probe is deterministic given the snapshots, so re-executing a notebook
    does not pay for it again. Name ``path`` after what determines the result (runs and ``steps``)."""
    path = Path(path)
    if path.exists():
        table = pd.read_csv(path)
        if set(table.condition) == set(runs):
            return table
    table = pd.concat([run.plasticity(steps=steps).assign(condition=name) for name, run in runs.items()],
                      ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def show_stored_results(notebook: str, tables: Sequence[str], *,
                        sweeps: Sequence[str] = ("",)) -> dict[str, pd.DataFrame]:
    """Print the provenance and display ``tables`` of the evidence stored for ``notebook`` in the repository's
    ``results/<sweep>/<notebook>/`` (``""``: the main profile run; e.g. ``"16_seeds"``: a sweep); returns the tables
    by ``"<sweep>/<table>"``. Says so, instead of failing, where a directory is missing (the package installed
    outside a checkout, say)."""
    from IPython.display import display

    from acpg_lab.profiles import repository_root

    root, shown = repository_root(), {}
    for sweep in sweeps:
        stored = root / "results" / sweep / notebook if root is not None else None
        if stored is None or not (stored / "provenance.json").exists():
            print(f"no stored results in {stored or 'results/'} (running outside the repository?)")
            continue
        meta = json.loads((stored / "provenance.json").read_text())
        params = meta["parameters"]
        print(f"{stored.relative_to(root)}: profile {params['profile']}, {len(params.get('seeds', []))} seeds, "
              f"acpg_lab {meta['acpg_lab']}, {meta['date']}, {meta['wall_seconds']} s")
        for table in tables:
            if (stored / table).exists():
                shown[f"{sweep}/{table}".lstrip("/")] = frame = pd.read_csv(stored / table)
                print(table)
                display(frame.round(3))
    return shown


def steps_to_threshold(history: pd.DataFrame, threshold: float, *, window: int = 5) -> pd.Series:
    """Per seed, the first environment step at which the mean training return over the last ``window`` updates
    with finished episodes reaches ``threshold`` (NaN if never): the paper's "epoch at which 500 is reached"."""
    out = {}
    for seed, h in history.dropna(subset=["episode_return"]).groupby("seed"):
        smooth = h.episode_return.rolling(window, min_periods=window).mean()
        hit = h.step[smooth >= threshold]
        out[seed] = float(hit.iloc[0]) if len(hit) else np.nan
    return pd.Series(out, name="steps_to_threshold")


def learning_summary(history: pd.DataFrame, *, final_fraction: float = 0.1) -> pd.DataFrame:
    """Per seed: the mean training return over the whole run (area under the learning curve, a speed measure) and
    over its last ``final_fraction`` of steps (where training ended, with exploration noise, unlike a greedy
    evaluation)."""
    if not 0 < final_fraction <= 1:
        raise ValueError(f"final_fraction must lie in (0, 1], got {final_fraction!r}")
    h = history.dropna(subset=["episode_return"])
    late = h[h.step > (1 - final_fraction) * h.step.max()]
    return pd.DataFrame({"mean_return": h.groupby("seed").episode_return.mean(),
                         "final_return": late.groupby("seed").episode_return.mean()})


def final_metrics(history: pd.DataFrame, metrics: list[str], *, final_fraction: float = 0.2) -> pd.DataFrame:
    """Per seed (rows) and metric (columns): the mean of the values logged in the last ``final_fraction`` of steps.

    NaNs (updates without diagnostics, or a statistic with nothing to average) are skipped; a longer window gives
    a steadier value that reacts later to a collapse near the end.
    """
    if not 0 < final_fraction <= 1:
        raise ValueError(f"final_fraction must lie in (0, 1], got {final_fraction!r}")
    missing = [m for m in metrics if m not in history]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the history; columns: {list(history.columns)}")
    late = history[history.step > (1 - final_fraction) * history.step.max()]
    return late.groupby("seed")[list(metrics)].mean()


def final_summary(run: Run, evaluation: pd.DataFrame, metrics: list[str], *, plasticity: pd.DataFrame | None = None,
                  final_fraction: float = 0.2) -> pd.DataFrame:
    """Per seed: `final_metrics` of ``metrics``, the greedy ``evaluation`` return (``greedy_return``) and, given a
    `plasticity_cached`-style table of this run's seeds, the probe's KL at the last snapshot (``plasticity_kl``)."""
    table = final_metrics(run.history, metrics, final_fraction=final_fraction)
    table["greedy_return"] = evaluation.set_index("seed").return_mean
    if plasticity is not None:
        last = plasticity[plasticity.step == plasticity.step.max()]
        table["plasticity_kl"] = last.set_index("seed").plasticity_kl
    return table


def per_condition_table(final: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean, min and max over seeds of every metric (rows), per condition (column groups), from per-seed tables such
    as `final_summary`'s."""
    table = pd.concat({name: f.agg(["mean", "min", "max"]).T for name, f in final.items()}, axis=1)
    table.index.name = "metric"
    return table


def lead_lag_table(runs: Mapping[str, Run | pd.DataFrame], metrics: Sequence[str], *, target: str = "episode_return",
                   max_lag: int = 5, drop_fraction: float = 0.3, window: int = 10, min_duration: int = 10,
                   floor: float = 0.0, draws: int = 999, seed: int = 0) -> pd.DataFrame:
    """The order of events per run (condition) and metric, seed by seed (`acpg_lab.leadlag`), one row each
    (``runs`` maps a condition to its `Run` or to its history, as stored evidence pieces give it):

    - ``seeds``, ``events`` and ``seeds_with_events``: `collapse_events` of the training return (a fall of more
      than ``drop_fraction`` of the seed's best-so-far above ``floor`` within ``window`` updates, lasting
      ``min_duration`` updates);
    - ``missing``: the share of diagnosed updates where the metric is undefined (``ratio_below_mean`` when no ratio
      fell below 1 - eps), skipped pair by pair, never silently;
    - ``before_events``: `event_triggered_average` of the per-seed z-scored metric over the ``max_lag`` diagnoses
      before each event start minus over the ``max_lag`` diagnoses before those (a change just before the
      events, which a training trend alone does not make), with its p against circularly shifted event times;
    - ``leads`` / ``follows``: the within-seed correlation of the metric's change at t with ``target``'s change at
      t + 1 .. t + ``max_lag`` diagnoses / at t - ``max_lag`` .. t - 1 (changes between consecutive diagnoses:
      levels correlate through the training trend alone), averaged over seeds, with p from the circular-shift
      null combined over seeds (`lead_lag_test`). The target is the training return (averaged over each
      diagnostics interval) by default, or another diagnostic (a representation statistic against a
      trust-region one, say: read at the diagnosed updates);
    - ``*_p_holm``: every p of the table adjusted together (Holm; the table is the family).

    Lags count diagnosed updates (``diagnostics_every`` updates each); p-values are two-sided and no finer than
    1 / (``draws`` + 1). Seeds are the units: no update is pooled across seeds.
    """
    from acpg_lab.leadlag import collapse_events, diagnosed_series, event_triggered_average, lead_lag_test

    max_lag = int(max_lag)
    if max_lag < 1:
        raise ValueError(f"max_lag must be an integer >= 1 (diagnosed updates), got {max_lag!r}")
    rows = {}
    for name, run in runs.items():
        history = run if isinstance(run, pd.DataFrame) else run.history
        missing = [m for m in [*metrics, target] if m not in history]
        if missing:
            raise ValueError(f"metrics {missing} are not columns of {name!r}'s history (diagnostics_every > 0?)")
        events = collapse_events(history, drop_fraction=drop_fraction, window=window, min_duration=min_duration,
                                 floor=floor)
        series = diagnosed_series(history, list(dict.fromkeys([*metrics, target])))
        for metric in metrics:
            pairs = {s: (g[metric].to_numpy(), g[target].to_numpy()) for s, g in series.groupby("seed")}
            eta = event_triggered_average(series, events, metric, lags=range(-2 * max_lag, max_lag + 1),
                                          stat_lags=range(-max_lag, 0), baseline_lags=range(-2 * max_lag, -max_lag),
                                          draws=draws, seed=seed)
            lead = lead_lag_test(pairs, lags=range(1, max_lag + 1), draws=draws, seed=seed)
            follow = lead_lag_test(pairs, lags=range(-max_lag, 0), draws=draws, seed=seed)
            rows[(name, metric)] = dict(
                seeds=history.seed.nunique(), events=len(events), seeds_with_events=events.seed.nunique(),
                missing=float(series[metric].isna().mean()), before_events=eta.statistic, before_events_p=eta.p,
                target=target, leads=lead.statistic, leads_p=lead.p, follows=follow.statistic, follows_p=follow.p)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["condition", "metric"]
    columns = ["before_events_p", "leads_p", "follows_p"]
    adjusted = holm(table[columns].to_numpy(dtype=float).reshape(-1)).reshape(len(table), len(columns))
    for i, col in enumerate(columns):
        table[f"{col}_holm"] = adjusted[:, i]
    return table


def compare_final(values: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per metric (the columns of both seeds x metrics frames): mean of ``values`` and of ``reference``, their
    difference with a Welch t 95% interval (Welch-Satterthwaite df, `acpg_lab.stats.welch`), the two-sided p and
    the Holm-adjusted p over the table's metrics (the table is one family). Fewer than 2 finite seeds on a side
    give NaN for that metric."""
    rows = {}
    for metric in values.columns:
        x, y = values[metric].to_numpy(dtype=float), reference[metric].to_numpy(dtype=float)
        if min(np.isfinite(x).sum(), np.isfinite(y).sum()) < 2:
            rows[metric] = dict(value=np.nanmean(x) if np.isfinite(x).any() else np.nan,
                                reference=np.nanmean(y) if np.isfinite(y).any() else np.nan, difference=np.nan,
                                ci_low=np.nan, ci_high=np.nan, df=np.nan, p=np.nan)
            continue
        r = welch(x, y)
        rows[metric] = dict(value=r["mean_x"], reference=r["mean_y"], difference=r["difference"],
                            ci_low=r["ci_low"], ci_high=r["ci_high"], df=r["df"], p=r["p"])
    table = contrast_table(rows)
    table.index.name = "metric"
    return table


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
