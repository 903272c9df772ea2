"""The main job: execute the notebooks with papermill, in order, and keep every figure as a PNG.

    acpg-lab notebooks --profile ci --out runs/nb [--device cpu] [--only 00_simplex_etf 01_observing_action_collapse]

Each notebook is executed into ``OUT/<name>.ipynb``; every PNG it displays is written to
``OUT/figures/<number>_<figure name>.png``, named after what it shows (`acpg_lab.plotting.show` tags each figure;
e.g. ``02_learning_curves.png``). Notebooks are kept in git without outputs; the executed copies are the product
of this job. Bad requests (profile, notebook names, parameters, ``--device cuda`` without a GPU, an output
directory that cannot be created) stop the job before any notebook starts; a failure in a notebook stops it with a
message naming the notebook and the cell.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager

from acpg_lab.paths import check_output_dir
from acpg_lab.plotting import FIGURE_NAME_KEY, slug
from acpg_lab.profiles import NOTEBOOKS, PROFILES, ParameterError, notebook_params

__all__ = ["NOTEBOOK_DIR", "NotebookFailed", "list_notebooks", "run_notebooks", "extract_figures",
           "IPCKernelManager", "figure_prefix"]

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


class IPCKernelManager(AsyncKernelManager):
    """The job's kernels, quiet in the job's terminal.

    They talk to the job over Unix-domain sockets in Jupyter's private runtime directory instead of TCP on
    localhost: nothing listens on a port, and the kernel has no reason to print "Kernel is running over TCP
    without encryption". And a finished notebook's kernel is shut down without the SIGINT that jupyter_client
    sends first, which a kernel still handling a message reports as "KeyboardInterrupt caught in kernel".
    """

    transport = "ipc"

    async def _async_pre_start_kernel(self, **kw):
        # Unix socket paths are limited to about 107 bytes; Jupyter's runtime directory can be deep, so the
        # sockets live in a private (0700) temporary directory with a short path instead.
        if not getattr(self, "_socket_dir", None):  # a restart keeps its directory
            self._socket_dir = tempfile.mkdtemp(prefix="acpg-lab-")
        self.ip = os.path.join(self._socket_dir, "kernel")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and getattr(self, "_socket_dir", None):
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:  # the notebook has finished: nothing to interrupt
            return
        await super()._async_interrupt_kernel()


def figure_prefix(notebook: str) -> str:
    """``02`` for ``02_acpg_fixed_etf_head``: figure files start with the notebook's number."""
    head = notebook.split("_", 1)[0]
    return head if head.isdigit() else notebook


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error."""


def list_notebooks(directory: Path = NOTEBOOK_DIR) -> list[str]:
    """Notebook names (without .ipynb) in execution order."""
    return sorted(p.stem for p in directory.glob("[0-9][0-9]_*.ipynb"))


def extract_figures(notebook: Path, out_dir: Path) -> list[Path]:
    """Write every ``image/png`` output of an executed notebook to ``out_dir`` as ``<number>_<name>.png``, the
    name being the one `acpg_lab.plotting.show` put in the output's metadata (``figure_<cell>_<k>`` for a figure
    shown otherwise; ``_2``, ``_3``... when a name repeats); return the paths. Earlier figures of the same
    notebook in ``out_dir`` are removed first, so the folder shows this run only."""
    nb = nbformat.read(notebook, as_version=4)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = figure_prefix(notebook.stem)
    for old in out_dir.glob(f"{prefix}_*.png"):
        old.unlink()
    paths: list[Path] = []
    taken: set[str] = set()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells):
        k = 0
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if not png:
                continue
            name = output.get("metadata", {}).get(FIGURE_NAME_KEY)
            name = slug(name) if name else f"figure_{i:02d}_{k}"
            unique, n = name, 1
            while unique in taken:
                n += 1
                unique = f"{name}_{n}"
            taken.add(unique)
            path = out_dir / f"{prefix}_{unique}.png"
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
    resolved = vars(notebook_params(name, {k: v for k, v in params.items() if k != "output_dir"}, create=False))
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
    provenance (the evidence behind REPRODUCTION.md). Raises ValueError before anything runs for a bad profile,
    an unknown notebook name, a parameter a notebook does not take or an ill-typed one, a CUDA device on a
    machine without one, or an output path that cannot be written (``out``, its ``figures`` and per-notebook
    folders, ``results``: `acpg_lab.paths.check_output_dir`); and `NotebookFailed` naming the notebook
    and cell when one fails (the partly executed notebook is still written).
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
    out_dir = Path(out).expanduser().resolve()
    requests = {}
    for name in names:  # every check before the first notebook starts
        params = dict(profile=profile, output_dir=str(out_dir / name), **overrides)
        if device is not None:
            params["device"] = device
        declared = pm.inspect_notebook(str(directory / f"{name}.ipynb"))
        missing = sorted(set(params) - set(declared))
        if missing:
            raise ValueError(f"{name}: its parameters cell does not declare {missing}")
        if name not in NOTEBOOKS:
            raise ValueError(f"{name}: no profile table in acpg_lab.profiles.NOTEBOOKS")
        try:
            resolved = notebook_params(name, {k: v for k, v in params.items() if k != "output_dir"}, create=False)
        except ParameterError as err:
            raise ValueError(str(err)) from err
        if resolved.device == "cuda":
            _require_cuda(name, profile, device)
        requests[name] = params
    # every path the notebooks will write, checked before the first one starts (nothing is created yet)
    check_output_dir(out, what="output directory", subdirs=["figures", *names],
                     files=[f"{name}.ipynb" for name in names])
    if results is not None:
        check_output_dir(results, what="results directory", subdirs=names)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a race: the check above passed
        raise ValueError(f"cannot create output directory --out {out}: {err.strerror or err}") from err
    executed = []
    for i, (name, params) in enumerate(requests.items(), 1):
        target = out_dir / f"{name}.ipynb"
        log(f"[{i}/{len(names)}] {name} (profile {profile}) ...")
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(directory / f"{name}.ipynb"), str(target), parameters=params,
                                kernel_name=kernel, cwd=str(directory), progress_bar=False,
                                kernel_manager_class=IPCKernelManager)
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


def _require_cuda(name: str, profile: str, device: str | None) -> None:
    """Fail before any notebook starts when a notebook would train on CUDA and torch sees no GPU."""
    import torch

    if torch.cuda.is_available():
        return
    source = "--device cuda" if device == "cuda" else f"the {profile} profile"
    raise ValueError(f"{name}: {source} asks for a CUDA device, but torch {torch.__version__} sees no GPU on "
                     f"this machine; use --device cpu (or auto), or another profile")
