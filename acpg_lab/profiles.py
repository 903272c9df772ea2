"""Notebook parameters: the values of each profile, kept once here, and their validation.

Every notebook has one cell tagged ``parameters`` holding literals only (``profile``, ``seeds``, ``device``,
``output_dir`` and whatever else it needs, most of them ``None`` = "take the profile's value"). Its next cell
calls `notebook_params`, which rejects an unknown parameter name (papermill only warns about one), a bad profile
or an ill-typed value with a message naming it, then returns the profile's values with explicit ones on top.

Profiles:
- ``ci``: every code path, each notebook <= 2 minutes on 2 CPU cores (what CI executes);
- ``default``: what opens in JupyterLab; shows the phenomenon convincingly on one CPU in <= 10 minutes;
- ``full``: paper scale for a GPU box (``device="cuda"``), hours allowed.

Two environment variables apply when the parameters cell leaves a value unset (``None``), so that JupyterLab, nbval
and papermill need no edit of the notebook; an explicit parameter always wins:
- ``ACPG_LAB_PROFILE`` (ci | default | full): the profile (else ``default``);
- ``ACPG_LAB_OUTPUT_ROOT``: the directory that relative output paths are resolved against (else the repository
  root, so a notebook writes to ``<repository>/runs/notebooks/<notebook>`` whether it runs under the main job,
  under papermill or interactively, whatever the kernel's working directory).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

__all__ = ["PROFILES", "NOTEBOOKS", "PROFILE_ENV", "OUTPUT_ROOT_ENV", "notebook_params", "ParameterError",
           "repository_root", "output_root", "resolve_output_dir"]

PROFILES = ("ci", "default", "full")
PROFILE_ENV = "ACPG_LAB_PROFILE"
OUTPUT_ROOT_ENV = "ACPG_LAB_OUTPUT_ROOT"

#: Notebooks 03 and 04 share the stressed PPO setting (so 04's learnable-head runs are 03's, bitwise): the
#: cheapest setting found where collapse appears (default), and the PFO paper's own (full: ALE Phoenix, 8 epochs).
#: ``default`` is a live run a learner waits for (4 seeds x 80k steps: about 1-2 minutes per condition on one CPU);
#: the held-out evidence (16 seeds x 150k steps per cell) is stored in results/evidence/pfo.
_STRESSED_PPO: dict[str, dict[str, Any]] = {
    "seeds": dict(ci=(0, 1), default=(0, 1, 2, 3), full=(0, 1, 2, 3, 4)),
    "device": dict(ci="cpu", default="auto", full="cuda"),
    "env_id": dict(ci="CartPole-v1", default="CartPole-v1", full="ALE/Phoenix-v5"),
    "total_steps": dict(ci=4_096, default=80_000, full=5_000_000),
    "epochs": dict(ci=40, default=40, full=8),
    "lr": dict(ci=1e-3, default=1e-3, full=2.5e-4),
    "ent_coef": dict(ci=0.0, default=0.0, full=0.01),
    "clip_coef": dict(ci=0.2, default=0.2, full=0.1),
    "pfo_coef": dict(ci=1.0, default=1.0, full=1.0),
    "diagnostics_every": dict(ci=2, default=5, full=50),
    "snapshot_every": dict(ci=8, default=20, full=1000),
    "probe_steps": dict(ci=20, default=200, full=500),
}

#: Per notebook: parameter -> value per profile. The common ones (profile, seeds, device, output_dir) first.
NOTEBOOKS: dict[str, dict[str, dict[str, Any]]] = {
    "00_simplex_etf": {
        "seeds": dict(ci=(0, 1), default=(0, 1, 2, 3), full=tuple(range(10))),
        "device": dict(ci="cpu", default="auto", full="cuda"),
        "max_actions": dict(ci=8, default=18, full=18),
    },
    "01_observing_action_collapse": {
        "seeds": dict(ci=(0, 1), default=(0, 1, 2, 3, 4), full=tuple(range(10))),
        "device": dict(ci="cpu", default="auto", full="cuda"),
        "bandit_steps": dict(ci=8_000, default=60_000, full=300_000),
        "grid_steps": dict(ci=8_000, default=60_000, full=300_000),
        # the appendix's CartPole / MinAtar label runs (minutes): default shows its stored run instead
        "label_runs": dict(ci=True, default=False, full=True),
        "cartpole_steps": dict(ci=4_096, default=100_000, full=500_000),
        "minatar_env": dict(ci="MinAtar/Breakout-v1", default="MinAtar/Breakout-v1", full="MinAtar/Breakout-v1"),
        "minatar_steps": dict(ci=2_048, default=100_000, full=5_000_000),
        "diagnostics_every": dict(ci=2, default=5, full=10),
    },
    "02_acpg_fixed_etf_head": {  # the live run: PPO on CartPole, learnable vs fixed ETF head (seeds x cartpole_steps)
        "seeds": dict(ci=(0, 1), default=(0, 1, 2, 3, 4), full=tuple(range(20))),
        "device": dict(ci="cpu", default="auto", full="cuda"),
        "cartpole_steps": dict(ci=2_048, default=50_000, full=500_000),
        "episode_steps": dict(ci=30, default=500, full=500),  # the animated episode of each trained agent
        # the exercises (~1 minute each under default): REINFORCE on CartPole, the ETF's scale, ETF vs random on Acrobot
        "exercise_seeds": dict(ci=(0, 1), default=(0, 1, 2), full=tuple(range(10))),
        "reinforce_steps": dict(ci=8_000, default=150_000, full=300_000),
        "exercise_steps": dict(ci=2_048, default=30_000, full=150_000),
        "acrobot_steps": dict(ci=2_048, default=100_000, full=500_000),
    },
    "03_ppo_trust_region_failure": {
        **_STRESSED_PPO,
        # the exercises: each a short run on fewer seeds and steps than the live run (~1 minute under default)
        "exercise_seeds": dict(ci=(0, 1), default=(0, 1), full=(0, 1, 2, 3, 4)),
        "exercise_steps": dict(ci=2_048, default=30_000, full=1_000_000),
        "exercise_epochs": dict(ci=80, default=80, full=16),
        "animation_steps": dict(ci=20, default=240, full=1_000),  # steps of the animated episode (every 2nd drawn)
    },
    "04_acpg_meets_pfo": {  # the stressed setting of 03; default: the live 2 x 2 (4 arms) in <= 3 min on one CPU
        **_STRESSED_PPO,
        "seeds": dict(ci=(0, 1), default=(0, 1, 2, 3, 4), full=(0, 1, 2, 3, 4)),
        "total_steps": dict(ci=4_096, default=50_000, full=5_000_000),
        "diagnostics_every": dict(ci=2, default=5, full=50),
        "exercise_steps": dict(ci=2_048, default=30_000, full=1_000_000),  # each exercise: ~1 min under default
    },
    "05_sb3_etf_policy": {  # SB3 trains one seed per model; its small MLP policies are fastest on the CPU
        # default: the live run (2 policies x 2 seeds, <= 3 min on one CPU); the verdicts quote the stored run
        # results/05_sb3_etf_policy (3 policies x 3 seeds at rl-zoo's budgets, CartPole 100k, bandit 30k)
        "seeds": dict(ci=(0, 1), default=(0, 1), full=tuple(range(10))),
        "device": dict(ci="cpu", default="cpu", full="cpu"),
        "cartpole_steps": dict(ci=2_048, default=50_000, full=100_000),  # rl-zoo's budget for CartPole PPO: 100k
        "bandit_steps": dict(ci=2_048, default=30_000, full=100_000),
        "diagnostics_every": dict(ci=2, default=10, full=10),
        "exercise_seeds": dict(ci=(0,), default=(0, 1), full=(0, 1, 2)),  # each exercise: ~1 min under default
        "exercise_steps": dict(ci=2_048, default=20_000, full=30_000),
    },
}

_COMMON = {"profile": str, "output_dir": str}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """A notebook parameter is unknown, ill-typed, or names no profile."""


def repository_root() -> Path | None:
    """The checkout this package is imported from (it has ``notebooks/`` and ``pyproject.toml``), or None when
    the package is installed elsewhere (then relative output paths fall back to the working directory)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "notebooks").is_dir() and (root / "pyproject.toml").is_file() else None


def output_root() -> Path:
    """Where relative output paths are resolved: ``$ACPG_LAB_OUTPUT_ROOT``, else the repository root, else the
    working directory. `ParameterError` naming the variable when it is a file, cannot be created or written, or is
    blank (only spaces); nothing is created."""
    env = os.environ.get(OUTPUT_ROOT_ENV)
    if env is not None and env != "" and not env.strip():
        raise ParameterError(f"environment variable {OUTPUT_ROOT_ENV} is blank ({env!r}): set it to a directory or "
                             "unset it")
    if env:
        from acpg_lab.paths import check_output_dir

        try:
            return check_output_dir(env, what="directory").resolve()
        except ValueError as err:
            raise ParameterError(f"environment variable {OUTPUT_ROOT_ENV}: {err}") from None
    return repository_root() or Path.cwd()


def resolve_output_dir(notebook: str, value: str | None, *, create: bool = True) -> Path:
    """The absolute output directory of ``notebook``: ``value`` if absolute, else ``value`` (default
    ``runs/notebooks/<notebook>``) under `output_root`; created unless ``create=False``. Raises
    `ParameterError` naming the path when it cannot be created."""
    path = Path(value or f"runs/notebooks/{notebook}").expanduser()
    if not path.is_absolute():
        path = output_root() / path
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ParameterError(f"{notebook}: output directory {str(path)!r} cannot be created: "
                                 f"{err.strerror or err}") from err
    return path


def _profile_from(notebook: str, given: Mapping[str, Any]) -> str:
    """An explicit ``profile`` wins; else ``$ACPG_LAB_PROFILE``; else ``default``."""
    profile = given.get("profile")
    if profile is not None:
        if profile not in PROFILES:
            raise ParameterError(f"{notebook}: profile must be one of {PROFILES}, got {profile!r}")
        return profile
    env = os.environ.get(PROFILE_ENV)
    if env is None or env == "":
        return "default"
    if env not in PROFILES:
        raise ParameterError(f"{notebook}: environment variable {PROFILE_ENV} must be one of {PROFILES} "
                             f"(or unset), got {env!r}")
    return env


def _seed_limit(notebook: str) -> int:
    """The largest seed a notebook's runs accept: Stable-Baselines3's (notebook 05) or `acpg_lab.train`'s."""
    if notebook.startswith("05_"):
        try:
            from acpg_lab.sb3.runs import MAX_SEED
        except ImportError:  # the notebook's own import then names the extra to install
            pass
        else:
            return MAX_SEED
    from acpg_lab.networks import MAX_SEED as TRAIN_MAX_SEED

    return TRAIN_MAX_SEED["derived"]


def _check_type(notebook: str, name: str, value: Any, like: Any) -> Any:
    if isinstance(like, tuple):
        if not isinstance(value, list | tuple) or not value or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ParameterError(f"{notebook}: parameter {name} must be a non-empty list of integers, got {value!r}")
        if len(set(value)) != len(value):
            raise ParameterError(f"{notebook}: parameter {name} has duplicates: {value!r}")
        limit = _seed_limit(notebook)
        wrong = [v for v in value if not 0 <= v <= limit]
        if wrong:
            raise ParameterError(f"{notebook}: parameter {name} must hold seeds in [0, {limit}], got {wrong[0]!r}")
        return tuple(value)
    if isinstance(like, bool) or isinstance(like, str):
        if not isinstance(value, type(like)):
            raise ParameterError(f"{notebook}: parameter {name} must be a {type(like).__name__}, got {value!r}")
        return value
    if isinstance(like, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(like, int) and
                                                                            not isinstance(value, int)):
            raise ParameterError(f"{notebook}: parameter {name} must be a {type(like).__name__}, got {value!r}")
        if value < 0 or (value == 0 and isinstance(like, int)):  # counts must be positive; coefficients may be 0
            raise ParameterError(f"{notebook}: parameter {name} must be "
                                 f"{'positive' if isinstance(like, int) else 'non-negative'}, got {value!r}")
        return value
    return value


def notebook_params(notebook: str, namespace: Mapping[str, Any], *, create: bool = True) -> SimpleNamespace:
    """Validate a notebook's parameters and fill in its profile; call it with ``globals()`` in the cell after
    the ``parameters`` cell.

    Every public name defined in ``namespace`` must be a parameter of ``notebook`` (so call it before defining
    anything else); ``None`` means the profile's value. ``profile=None`` takes ``$ACPG_LAB_PROFILE`` (else
    ``default``). ``output_dir`` comes back absolute (see `resolve_output_dir`) and is created. Raises `ParameterError`
    naming the offending parameter, environment variable or path.
    """
    if notebook not in NOTEBOOKS:
        raise ParameterError(f"unknown notebook {notebook!r}; known: {sorted(NOTEBOOKS)}")
    table = NOTEBOOKS[notebook]
    given = {k: v for k, v in namespace.items()
             if not k.startswith("_") and k not in _IPYTHON_NAMES and not callable(v) and not isinstance(v, ModuleType)}
    allowed = set(table) | set(_COMMON)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ParameterError(f"{notebook}: unknown parameter(s) {unknown}; this notebook takes {sorted(allowed)}")
    profile = _profile_from(notebook, given)
    output_dir = given.get("output_dir")
    if output_dir is not None and not isinstance(output_dir, str):
        raise ParameterError(f"{notebook}: parameter output_dir must be a str, got {output_dir!r}")
    values: dict[str, Any] = {"profile": profile, "output_dir": None}
    for name, per_profile in table.items():
        default = per_profile[profile]
        value = given.get(name)
        values[name] = default if value is None else _check_type(notebook, name, value, default)
    if values.get("device") not in (None, "auto", "cpu", "cuda"):
        raise ParameterError(f"{notebook}: parameter device must be 'auto', 'cpu' or 'cuda', got {values['device']!r}")
    values["output_dir"] = str(resolve_output_dir(notebook, output_dir, create=create))
    return SimpleNamespace(**values)
