"""Running comparisons: cached runs (finished work is never lost), per-condition tables, the lead-lag table.

`run_cached` trains a config unless a run with the very same resolved config is already saved in its directory
(`acpg_lab.store`), so a sweep interrupted after 9 of 12 runs resumes at the 10th. The per-seed summaries
(`steps_to_threshold`, `learning_summary`, `final_metrics`) come from `acpg_lab.summaries` and the rliable
aggregates (`aggregate`: IQM with stratified-bootstrap 95% confidence intervals, `probability_of_improvement`,
`normalized`, `REFERENCE_SCORES`) from `acpg_lab.stats`; both are re-exported here for the notebooks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from acpg_lab.config import TrainConfig
from acpg_lab.leadlag import collapse_events, diagnosed_series, event_triggered_average, lead_lag_test
from acpg_lab.lock import directory_lock
from acpg_lab.run import Run
from acpg_lab.stats import REFERENCE_SCORES as REFERENCE_SCORES  # re-exported for the notebooks
from acpg_lab.stats import aggregate as aggregate
from acpg_lab.stats import contrast_table, enough_seeds, holm, welch
from acpg_lab.stats import normalized as normalized
from acpg_lab.stats import probability_of_improvement as probability_of_improvement
from acpg_lab.store import check_stored_config, is_finished
from acpg_lab.summaries import final_metrics, learning_summary, steps_to_threshold
from acpg_lab.training import train

#: what this module offers (with the summaries it re-exports); the rliable helpers imported above for the notebooks
#: are documented where they are defined, `acpg_lab.stats`
__all__ = ["run_cached", "condition_slug", "run_conditions", "plasticity_cached", "show_stored_results",
           "steps_to_threshold", "learning_summary", "final_metrics", "final_summary", "per_condition_table",
           "lead_lag_table", "compare_final"]


def run_cached(config: TrainConfig, directory: str | Path, *, episodes: int = 10,
               progress: bool = True) -> tuple[Run, pd.DataFrame]:
    """Train ``config`` (or load it from ``directory`` if that run is already there) and evaluate it.

    The run and its greedy evaluation (``evaluation.csv``, listed in the run's manifest) are written as soon as
    training ends, so a sweep that is interrupted keeps every finished run. The directory is locked (and so
    checked to be writable) before training starts: a second writer, or a path that is a file, fails at once.
    A directory holding a run of a *different* config is an error, not silently overwritten; fields that did not
    exist when the run was saved count as equal (a new field's default keeps the earlier behaviour).
    """
    out = Path(directory)
    if is_finished(out, kind="cached_run"):
        check_stored_config(out, config.resolve())
        return Run.load(out), pd.read_csv(out / "evaluation.csv")
    with directory_lock(out, label="run directory"):
        run = train(config, progress=progress)
        evaluation = run.evaluate(episodes=episodes)
        run.save(out, tables={"evaluation.csv": evaluation})  # evaluation.csv in the manifest, verified on load
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
        if not enough_seeds(x, y):
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
