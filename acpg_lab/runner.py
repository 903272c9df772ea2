"""The main job: execute the notebooks with papermill, in order, and keep every figure as a PNG.

    acpg-lab notebooks --profile ci --out runs/nb [--device cpu] [--only 00_simplex_etf 01_observing_action_collapse]

Each notebook is executed into ``OUT/<name>.ipynb``; every PNG it displays is written to
``OUT/figures/<name>_<cell>_<k>.png``. Notebooks are kept in git without outputs; the executed copies are the
product of this job. A failure stops the job with a message naming the notebook and the cell.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from acpg_lab.profiles import NOTEBOOKS, PROFILES, notebook_params

__all__ = ["NOTEBOOK_DIR", "NotebookFailed", "list_notebooks", "run_notebooks", "extract_figures"]

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error."""


def list_notebooks(directory: Path = NOTEBOOK_DIR) -> list[str]:
    """Notebook names (without .ipynb) in execution order."""
    return sorted(p.stem for p in directory.glob("[0-9][0-9]_*.ipynb"))


def extract_figures(notebook: Path, out_dir: Path) -> list[Path]:
    """Write every ``image/png`` output of an executed notebook to ``out_dir``; return the paths."""
    nb = nbformat.read(notebook, as_version=4)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells):
        k = 0
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                path = out_dir / f"{notebook.stem}_cell{i:02d}_{k}.png"
                path.write_bytes(base64.b64decode(png))
                paths.append(path)
                k += 1
    return paths


def collect_results(name: str, run_dir: Path, results_dir: Path, params: dict, seconds: float) -> list[Path]:
    """Copy the CSV tables a notebook wrote into ``results_dir/name`` with a ``provenance.json`` (profile,
    parameters, package and torch versions, date, wall time), replacing what was there."""
    import datetime
    import json
    import shutil

    import torch

    from acpg_lab import __version__

    target = results_dir / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    copied = [Path(shutil.copy2(csv, target)) for csv in sorted(run_dir.glob("*.csv"))]
    resolved = vars(notebook_params(name, {k: v for k, v in params.items() if k != "output_dir"}))
    resolved.pop("output_dir")
    provenance = dict(notebook=name, parameters=resolved,
                      acpg_lab=__version__, torch=torch.__version__, date=datetime.date.today().isoformat(),
                      wall_seconds=round(seconds), regenerate=f"acpg-lab notebooks --profile {params['profile']} "
                      f"--out runs/notebooks --results {results_dir} --only {name}")
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2))
    return copied


def run_notebooks(profile: str, out: str | Path, *, device: str | None = None, only: Sequence[str] | None = None,
                  directory: Path = NOTEBOOK_DIR, kernel: str = "python3", results: str | Path | None = None,
                  parameters: Mapping[str, Any] | None = None, log=print) -> list[Path]:
    """Execute the notebooks (all, or those named in ``only``) with ``profile``; return the executed paths.

    ``parameters`` override the profile's values (a sweep: more seeds, another environment); each must be a
    parameter of every selected notebook, which still validates its type in its first code cell.

    With ``results``, the CSV tables each notebook writes are copied to ``results/<notebook>/`` with their
    provenance (the evidence behind REPRODUCTION.md). Raises ValueError for a bad profile or unknown notebook
    name before anything runs, and `NotebookFailed` naming the notebook and cell when one fails (the partly
    executed notebook is still written).
    """
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    available = list_notebooks(directory)
    if not available:
        raise ValueError(f"no notebooks found in {directory}")
    names = available if not only else list(only)
    unknown = [n.removesuffix(".ipynb") for n in names if n.removesuffix(".ipynb") not in available]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; available: {available}")
    names = [n.removesuffix(".ipynb") for n in names]
    overrides = dict(parameters or {})
    for name in names:
        wrong = sorted(set(overrides) - set(NOTEBOOKS.get(name, {})))
        if wrong:
            raise ValueError(f"{name} takes no parameter(s) {wrong} (profile and output_dir have their own "
                             f"options); it takes {sorted(NOTEBOOKS.get(name, {}))}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for i, name in enumerate(names, 1):
        params = dict(profile=profile, output_dir=str((out_dir / name).resolve()), **overrides)
        if device is not None:
            params["device"] = device
        declared = pm.inspect_notebook(str(directory / f"{name}.ipynb"))
        missing = sorted(set(params) - set(declared))
        if missing:
            raise ValueError(f"{name}: its parameters cell does not declare {missing}")
        if name not in NOTEBOOKS:
            raise ValueError(f"{name}: no profile table in acpg_lab.profiles.NOTEBOOKS")
        target = out_dir / f"{name}.ipynb"
        log(f"[{i}/{len(names)}] {name} (profile {profile}) ...")
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(directory / f"{name}.ipynb"), str(target), parameters=params,
                                kernel_name=kernel, cwd=str(directory), progress_bar=False)
        except pm.PapermillExecutionError as err:
            raise NotebookFailed(f"{name} failed in code cell {err.exec_count} (execution count): "
                                 f"{err.ename}: {err.evalue}; partly executed notebook: {target}") from err
        seconds = time.perf_counter() - start
        figures = extract_figures(target, out_dir / "figures")
        if results is not None:
            collect_results(name, out_dir / name, Path(results), params, seconds)
        log(f"[{i}/{len(names)}] {name} done in {seconds:.0f} s, {len(figures)} figures")
        executed.append(target)
    return executed
