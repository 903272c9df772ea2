"""A static HTML book of the executed notebooks, readable without running anything.

    acpg-lab book --profile default --out site            # execute with the main job, then build
    acpg-lab book --out site --runs runs/notebooks --no-execute   # build from notebooks the main job executed

The book has an introduction (which profile, when, with which versions), the executed notebooks with their
figures and tables, the claims table (``REPRODUCTION.md``) and the metric reference (``docs/metrics.md``). It is
built by Jupyter Book 1.x (Sphinx and the sphinx-book-theme), which works offline; notebooks are never executed by
the book builder itself (``execute_notebooks: off``): they come executed from `acpg_lab.runner`. Jupyter Book is
in the optional ``book`` dependency group (``pip install -e '.[book]'``; ``.[dev]`` includes it).
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat

from acpg_lab.runner import NOTEBOOK_DIR, list_notebooks, run_notebooks

__all__ = ["build_book", "BookError"]

ROOT = NOTEBOOK_DIR.parent
_MARKER = ".acpg-lab-book"

_CONFIG = """\
title: "acpg_lab: the notebooks, executed"
author: acpg_lab
copyright: ""
only_build_toc_files: true
exclude_patterns: [_build, "**.ipynb_checkpoints"]
execute:
  execute_notebooks: "off"
parse:
  myst_enable_extensions: [dollarmath, colon_fence]
html:
  use_repository_button: false
  use_issues_button: false
  use_edit_page_button: false
  home_page_in_navbar: true
launch_buttons:
  notebook_interface: jupyterlab
sphinx:
  config:
    html_show_copyright: false
    html_last_updated_fmt: ""
    suppress_warnings: ["myst.header", "myst.xref_missing", "misc.highlighting_failure"]
"""


class BookError(RuntimeError):
    """The book cannot be built: the message says why and what to do."""


def _require_jupyter_book() -> str:
    try:
        import jupyter_book
    except ImportError as err:
        raise BookError("Jupyter Book is not installed in this environment; install the book group: "
                        "pip install -e '.[book]' (the dev group includes it)") from err
    version = getattr(jupyter_book, "__version__", "?")
    if not version.startswith("1."):
        raise BookError(f"acpg-lab book needs Jupyter Book 1.x (it builds offline), found {version}; "
                        "pip install -e '.[book]' installs the pinned one")
    return version


def _title(notebook: Path) -> str:
    """The notebook's first heading (``# 02 · ACPG ...``), else its file name."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def _intro(names: Sequence[str], profile: str, executed: Path) -> str:
    import torch

    from acpg_lab import __version__

    lines = [
        "# acpg_lab: the notebooks, executed",
        "",
        "A readable copy of the acpg_lab notebooks with every output: figures, tables and verdicts. Nothing here "
        "needs to be run. The notebooks study **action collapse** and **ACPG**, a fixed simplex-ETF action "
        "layer ([arXiv 2509.02737](https://arxiv.org/abs/2509.02737)), and **PPO representation collapse** and "
        "**PFO** ([arXiv 2405.00662](https://arxiv.org/abs/2405.00662)).",
        "",
        f"- profile: **{profile}**"
        + (" (a smoke run: every code path, far too short for any conclusion; the verdicts in the notebooks were "
           "measured with the `default` profile)" if profile == "ci" else ""),
        f"- built on {datetime.date.today().isoformat()} with acpg_lab {__version__}, torch {torch.__version__}",
        f"- executed notebooks taken from `{executed}`",
        "",
        "## Contents",
        "",
    ]
    for name in names:
        lines.append(f"- [{_title(executed / f'{name}.ipynb')}]({name}.ipynb)")
    lines += [
        "- [Claims and verdicts](reproduction.md): the claims table of `REPRODUCTION.md`",
        "- [Metric reference](metrics.md): every metric, its formula, what it measures, its range and its source",
        "",
        "Rebuild: `acpg-lab book --profile default --out site` (executes the notebooks first, reusing cached "
        "training runs), or `acpg-lab book --out site --no-execute` to use the notebooks the main job already "
        "executed in `runs/notebooks`.",
    ]
    return "\n".join(lines) + "\n"


def _executed_names(runs: Path, names: Sequence[str]) -> list[str]:
    missing = [n for n in names if not (runs / f"{n}.ipynb").is_file()]
    if missing:
        raise BookError(f"no executed notebook(s) {missing} in {runs}; run the main job first "
                        f"(acpg-lab notebooks --profile ... --out {runs}) or drop --no-execute")
    return list(names)


def _profile_of(notebook: Path) -> str:
    """The profile an executed notebook ran with (papermill records its parameters)."""
    params = nbformat.read(notebook, as_version=4).metadata.get("papermill", {}).get("parameters", {})
    return str(params.get("profile", "unknown"))


def build_book(out: str | Path, *, profile: str = "default", runs: str | Path = "runs/notebooks",
               execute: bool = True, only: Sequence[str] | None = None, device: str | None = None,
               log=print) -> Path:
    """Build the HTML book into ``out`` (replaced); return the path of its ``index.html``.

    With ``execute`` the notebooks are first executed with ``profile`` into ``runs`` by the main job (training
    runs cached there are reused); without it, the executed notebooks already in ``runs`` are used. Raises
    `BookError` (Jupyter Book missing, executed notebooks missing, the build failing) or ValueError (bad
    profile, notebook names, device) before anything is built.
    """
    version = _require_jupyter_book()
    out = Path(out).expanduser().resolve()
    runs = Path(runs).expanduser().resolve()
    names = list(only) if only else list_notebooks()
    names = [n.removesuffix(".ipynb") for n in names]
    if execute:
        run_notebooks(profile, runs, device=device, only=names, log=log)
    else:
        names = _executed_names(runs, names)
        profiles = {_profile_of(runs / f"{n}.ipynb") for n in names}
        profile = profiles.pop() if len(profiles) == 1 else "mixed (" + ", ".join(sorted(profiles)) + ")"
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).is_file():
        raise BookError(f"{out} exists and is not a book built by acpg-lab; refusing to replace it (choose an "
                        "empty or new directory)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BookError(f"output directory {str(out)!r} cannot be created: {err.strerror or err}") from err
    with tempfile.TemporaryDirectory(prefix="acpg-lab-book-") as tmp:
        src = Path(tmp) / "book"
        src.mkdir()
        for name in names:
            shutil.copy2(runs / f"{name}.ipynb", src / f"{name}.ipynb")
        shutil.copy2(ROOT / "REPRODUCTION.md", src / "reproduction.md")
        shutil.copy2(ROOT / "docs" / "metrics.md", src / "metrics.md")
        (src / "intro.md").write_text(_intro(names, profile, runs))
        (src / "_config.yml").write_text(_CONFIG)
        toc = ["format: jb-book", "root: intro", "chapters:"]
        toc += [f"- file: {name}" for name in names] + ["- file: reproduction", "- file: metrics"]
        (src / "_toc.yml").write_text("\n".join(toc) + "\n")
        log(f"building the book with Jupyter Book {version} ...")
        cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
               "build", str(src), "--path-output", str(Path(tmp) / "build"), "--builder", "html"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        html = Path(tmp) / "build" / "_build" / "html"
        if done.returncode != 0 or not (html / "index.html").is_file():
            raise BookError(f"jupyter-book build failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                            f"{done.stderr[-3000:]}")
        shutil.rmtree(out)
        shutil.copytree(html, out)
        (out / _MARKER).write_text("built by acpg-lab book; the next build replaces this directory\n")
    log(f"book written to {out} (open {out / 'index.html'})")
    return out / "index.html"
