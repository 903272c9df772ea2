"""Every metric `acpg_lab` logs, tabulates or plots, in one table: its name, the words figures use for it, its
range, what 0 means, whether the untrained network gives it a null, where ``docs/metrics.md`` defines it and the
paper it comes from.

The computations live in `acpg_lab.metrics`; this table is what the rest reads about them: figure labels
(`acpg_lab.plotting.metric_label`), the metric lists of the evidence tables (`require` checks them against it),
the SB3 callback's clip-dependent statistics, and ``tests/test_metric_registry.py``, which checks that
``docs/metrics.md`` documents exactly these metrics, each in the section its anchor names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "metric", "names", "require", "figure_labels", "DOCS"]

#: the reference the anchors point into
DOCS = "docs/metrics.md"


@dataclass(frozen=True)
class Metric:
    """One metric. ``label`` is None where figures show the code name with spaces (no words chosen yet)."""

    name: str  #: the history / table column (representation statistics of the actor carry ``actor_``)
    label: str | None  #: the words figures use (`acpg_lab.plotting.metric_label`)
    range: str  #: the values it can take
    zero: str  #: what a value of 0 means
    null: bool  #: the untrained network gives a null (``null_<name>`` under ``diagnostics_null``; probes: initial)
    anchor: str  #: the section of `DOCS` that defines it
    source: str  #: the paper (or "this package")
    clip_relative: bool = False  #: defined relative to the clip range (NaN for an update with clip range 0)


_AC, _REP, _TR, _PL, _OUT = "action-collapse", "representation-quality", "trust-region", "plasticity", \
    "returns-and-events"


def _collapse(name: str, label: str | None, range_: str, zero: str, source: str) -> Metric:
    return Metric(name, label, range_, zero, null=True, anchor=_AC, source=source)


def _representation(name: str, label: str | None, range_: str, zero: str, source: str) -> Metric:
    return Metric(f"actor_{name}", label, range_, zero, null=True, anchor=_REP, source=source)


def _trust(name: str, label: str | None, range_: str, zero: str, *, clip: bool = False) -> Metric:
    return Metric(name, label, range_, zero, null=False, anchor=_TR, source="PFO", clip_relative=clip)


def _sides(stat: str) -> list[Metric]:
    """The advantage-sign variants of a trust-region statistic (no figure words, no claim)."""
    return [_trust(f"{stat}_adv_{sign}", None, "as the statistic over all samples",
                   "as the statistic over all samples", clip=True) for sign in ("pos", "neg")]


_TABLE = [
    _collapse("nc1", "within-action feature spread (NC1)", "[0, inf)",
              "every state sits exactly on its action's mean", "NC (NC1), AC"),
    _collapse("equinorm_features", "unequal lengths of the action means", "[0, sqrt(K-1)]",
              "all centred action means equally long", "NC (NC2), AC"),
    _collapse("equinorm_weights", "unequal lengths of the head rows", "[0, sqrt(K-1)]",
              "all head rows equally long", "NC, AC"),
    _collapse("equiangular_features", "unequal angles between action means", "[0, 1]",
              "every pair of action means makes the same angle", "NC (NC2), AC"),
    _collapse("equiangular_weights", "unequal angles between head rows", "[0, 1]",
              "every pair of head rows makes the same angle", "NC, AC"),
    _collapse("max_angle_features", "action means' distance from simplex-ETF angles", "[0, K/(K-1)]",
              "the action means form a simplex ETF", "NC (NC2), AC"),
    _collapse("max_angle_weights", "head rows' distance from simplex-ETF angles", "[0, K/(K-1)]",
              "the head rows form a simplex ETF (always, for ACPG's fixed head)", "NC, AC"),
    _collapse("self_duality", "misalignment of head rows and action means", "[0, 4]",
              "head rows and centred action means are the same frame up to scale", "NC (NC3), AC"),
    _collapse("ncc_mismatch", "policy disagrees with nearest action mean (fraction)", "[0, 1]",
              "the policy always acts like a nearest-action-mean rule", "NC (NC4), AC"),
    _collapse("label_alignment", "feature alignment with its action's head row (cos)", "[-1, 1]",
              "features orthogonal to their action's head row (1: aligned)", "AC (Theorem 1)"),
    _representation("approx_rank", "feature rank, 99% PCA", "integers 0..min(N, d)",
                    "all-zero features", "PFO"),
    _representation("srank", "feature rank, srank", "integers 0..min(N, d)", "all-zero features",
                    "Kumar et al. 2021"),
    _representation("effective_rank", "effective feature rank", "0 or [1, min(N, d)]", "all-zero features",
                    "Roy and Vetterli 2007"),
    _representation("feature_rank", "feature rank (Lyle et al.)", "integers 0..min(N, d)",
                    "no direction above the threshold", "Lyle et al. 2022"),
    _representation("dead_neurons", "dead units in the actor's last layer", "integers 0..d",
                    "every unit still responds to the input", "PFO (Sokar et al. 2023)"),
    _representation("dead_fraction", None, "[0, 1]", "every unit still responds to the input", "PFO"),
    _representation("feature_norm", "size of the features", "[0, inf)", "all-zero features", "PFO"),
    _representation("preactivation_norm", "size of the pre-activations", "[0, inf)", "all-zero pre-activations",
                    "PFO"),
    Metric("policy_entropy", "policy entropy", "[0, log K]", "a deterministic policy", null=False, anchor=_REP,
           source="standard"),
    Metric("preact_change", "change of the pre-activations in an update", "[0, inf)",
           "the update left the pre-activations unchanged", null=False, anchor=_REP, source="PFO"),
    _trust("ratio_below_mean", "mean of the ratios below 1 − ε", "[0, 1-eps)",
           "some probability fell to 0 (NaN: no ratio below 1 - eps)", clip=True),
    _trust("ratio_above_mean", "mean of the ratios above 1 + ε", "(1+eps, inf)",
           "cannot be 0 (NaN: no ratio above 1 + eps)", clip=True),
    _trust("ratio_min", None, "[0, inf)", "some action's probability fell to 0"),
    _trust("ratio_max", None, "[0, inf)", "every action's probability fell to 0"),
    _trust("frac_outside", "fraction of ratios outside the clip range", "[0, 1]",
           "every ratio within the clip range", clip=True),
    _trust("excess_ratio", "ratios above over ratios below", "above (1+eps)/(1-eps)",
           "cannot be 0 (NaN unless ratios escaped both ways)", clip=True),
    _trust("kl_old_new", "KL(old ‖ new)", "[0, inf)", "the update did not change the policy"),
    *_sides("ratio_above_mean"), *_sides("ratio_below_mean"), *_sides("frac_outside"),
    Metric("plasticity_kl", "KL left after the plasticity probe's fit", "[0, inf)",
           "the snapshot fitted a new target exactly", null=True, anchor=_PL, source="PFO (after Lyle et al. 2022)"),
    Metric("plasticity_kl_backbone", "probe KL, backbone under one fixed head", "[0, inf)",
           "the backbone fitted a new target exactly", null=True, anchor=_PL, source="this package"),
    Metric("episode_return", "training episode return", "the environment's returns",
           "the environment's own zero", null=False, anchor=_OUT, source="standard"),
    Metric("final_train", "final training return", "the environment's returns", "the environment's own zero",
           null=False, anchor=_OUT, source="standard"),
    Metric("greedy", "greedy evaluation return", "the environment's returns", "the environment's own zero",
           null=False, anchor=_OUT, source="standard"),
    Metric("sampled", "sampled evaluation return", "the environment's returns", "the environment's own zero",
           null=False, anchor=_OUT, source="standard"),
    Metric("events", "collapse events per seed", "integers 0..", "no collapse event", null=False, anchor=_OUT,
           source="this package, after PFO"),
]

#: name -> `Metric`, in the order of `DOCS`
METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}


def metric(name: str) -> Metric:
    """The registry's entry for ``name``; ValueError with the closest names for an unknown one."""
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS), n=3)
        hint = f"; did you mean {close}?" if close else f"; known: {sorted(METRICS)}"
        raise ValueError(f"unknown metric {name!r}{hint}")
    return METRICS[name]


def names(*, anchor: str | None = None, null: bool | None = None, clip_relative: bool | None = None) -> tuple[str, ...]:
    """The registry's metric names (in its order) with the given properties (None: any)."""
    return tuple(m.name for m in METRICS.values() if (anchor is None or m.anchor == anchor)
                 and (null is None or m.null == null) and (clip_relative is None or m.clip_relative == clip_relative))


def require(metrics: Iterable[str], *, null: bool = False) -> tuple[str, ...]:
    """``metrics`` as a tuple, after checking each is in the registry (and, with ``null``, has an untrained null):
    a table's metric list that names an unknown metric fails where it is defined."""
    out = tuple(metrics)
    for name in out:
        if null and not metric(name).null:
            raise ValueError(f"metric {name!r} has no untrained null in the registry")
        metric(name)
    return out


def figure_labels() -> dict[str, str]:
    """name -> the words figures use, for the metrics that have them."""
    return {m.name: m.label for m in METRICS.values() if m.label is not None}
