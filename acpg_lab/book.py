"""A static HTML book of the executed notebooks, readable as a course without running anything.

    acpg-lab book --profile default --out site            # execute with the main job, then build
    acpg-lab book --out site --runs runs/notebooks --no-execute   # build from notebooks the main job executed

The front page is the course outline: each notebook's title, question, goals and run time (read from the
notebook's first cells at build time, so it follows the notebooks), the prerequisites, and how to run everything
(the README's commands). Then the executed notebooks with their figures and tables, and the reference pages: the
glossary (``docs/glossary.md``), the metric reference (``docs/metrics.md``), the claims table
(``REPRODUCTION.md``) and an API reference generated from the package's docstrings (Sphinx autodoc).

In the book each notebook's evidence appendix (the cells from ``## Evidence appendix`` on, tagged ``appendix`` by
`acpg_lab.lesson.collapse`) is folded: its code cells are hidden whole (``hide-cell``) and its markdown cells
become closed dropdowns titled by their leading heading (or first sentence); a cell that is only a heading stays
a heading. Links to the glossary, the metric reference and
``REPRODUCTION.md`` are rewritten to the book's pages; wide tables scroll inside their own box.

It is built by Jupyter Book 1.x (Sphinx and the sphinx-book-theme), which works offline; notebooks are never
executed by the book builder itself (``execute_notebooks: off``): they come executed from `acpg_lab.runner`.
The math is typeset by a copy of MathJax 3 inside the book (``_static/mathjax``, taken from the installed
``sphinx-mathjax-offline`` package, fonts included), not by Sphinx's default CDN, so the book also reads offline.
Jupyter Book and that package are in the optional ``book`` dependency group (``pip install -e '.[book]'``;
``.[dev]`` includes it).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat

from acpg_lab.entry import PROJECT, MissingExtra, require_extra
from acpg_lab.paths import check_output_dir
from acpg_lab.runner import NOTEBOOK_DIR, list_notebooks, run_notebooks

__all__ = ["build_book", "BookError", "API_MODULES"]

ROOT = NOTEBOOK_DIR.parent
_MARKER = ".acpg-lab-book"
_APPENDIX_HEADING = "## Evidence appendix"  # acpg_lab.lesson.APPENDIX_HEADING (not imported: it pulls IPython)
_APPENDIX_TAG = "appendix"

#: The modules of the API reference, with what each holds; ``acpg_lab`` itself lists only what it defines for
#: users (the rest of its ``__all__`` is documented under the module that defines it).
API_MODULES: dict[str, str] = {
    "acpg_lab": "training in one call: `TrainConfig`, `train`, `Run`, the heads and the actor",
    "acpg_lab.etf": "the simplex ETF and the fixed ETF head",
    "acpg_lab.metrics": "action collapse, representation, trust region, plasticity probe",
    "acpg_lab.algorithms": "each algorithm as data (`AlgoSpec`) and the losses of REINFORCE, A2C, PPO, GRPO, PFO",
    "acpg_lab.training": "the seed-batched training loop",
    "acpg_lab.stats": "Welch and paired t intervals, Holm, the verdict rule",
    "acpg_lab.experiments": "cached runs, steps to threshold, contrasts, rliable aggregates",
    "acpg_lab.leadlag": "collapse events and the within-seed lead-lag tests",
    "acpg_lab.evidence": "the held-out evidence runs behind REPRODUCTION.md",
    "acpg_lab.plotting": "the figures of the notebooks",
    "acpg_lab.figstyle": "the figure rules: panels, shared legends, step axes",
    "acpg_lab.animation": "an agent's episode as an inline animation",
    "acpg_lab.lesson": "the shape of a lesson notebook: collapsed solutions and appendix, the ci banner",
    "acpg_lab.sb3": "the fixed-ETF policy and the diagnostics callback for Stable-Baselines3",
}
_TOP_LEVEL = ["TrainConfig", "train", "Run", "ETFHead", "LinearHead", "RandomHead", "Actor", "ActorCritic"]

#: MathJax 3 as shipped by the ``sphinx-mathjax-offline`` package (its files only: the book copies them itself and
#: sets ``mathjax_path``, so nothing depends on what the package's Sphinx extension does at setup).
_MATHJAX_DIST = "sphinx-mathjax-offline"
_MATHJAX_FILES = "sphinx-mathjax-offline/static/mathjax"
#: Sphinx's own default component (TeX and MathML input, CommonHTML output), here from ``_static/mathjax``. It
#: loads its fonts (``output/chtml/fonts/woff-v2``) and any TeX extension it autoloads (``input/tex/extensions``)
#: from the folder it was loaded from; the other top-level bundles (SVG output, ...) are never loaded by it.
_MATHJAX_ENTRY = "tex-mml-chtml.js"

_CONFIG = """\
title: "acpg_lab: a course on what happens inside policy-gradient networks"
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
  extra_extensions: [sphinx.ext.autodoc, sphinx.ext.napoleon]
  config:
    html_show_copyright: false
    html_last_updated_fmt: ""
    myst_heading_anchors: 3
    mathjax_path: mathjax/tex-mml-chtml.js  # _MATHJAX_ENTRY, copied into _static/mathjax: no CDN
    autodoc_typehints: none
    autodoc_member_order: bysource
    autodoc_inherit_docstrings: false
    add_module_names: false
    napoleon_google_docstring: true
    napoleon_numpy_docstring: false
    suppress_warnings: ["myst.header", "myst.xref_missing", "misc.highlighting_failure", "autodoc",
                        "autodoc.import_object", "docutils", "ref.python", "toc.not_included"]
"""

#: Wide tables (pandas outputs, the claims table) scroll inside their own box instead of widening the page.
_CSS = """\
/* acpg_lab book: a wide table scrolls inside its own box instead of overflowing the page */
.cell_output .output.text_html, .cell_output .output.text_markdown { overflow-x: auto; max-width: 100%; }
.cell_output table, .bd-article table.table { display: block; overflow-x: auto; max-width: 100%; }
.cell_output table.dataframe { font-size: 0.85em; }
"""

_COUNT = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}
_PREREQUISITES = [
    "Python and NumPy; enough PyTorch to read a small `nn.Module`.",
    "Policy gradients at the level of a first course: a policy network with a softmax over actions, returns and "
    "advantages, and what PPO's clipped objective does (the Hugging Face Deep RL course's units on policy "
    "gradients and PPO, or Spinning Up's PPO page, are enough).",
    "Basic statistics: a mean over seeds, a confidence interval, a p-value. Everything beyond that (Welch, Holm, "
    "IQM, lead-lag tests) is explained in the [glossary](glossary.md).",
]


class BookError(RuntimeError):
    """The book cannot be built: the message says why and what to do."""


def _require_jupyter_book() -> str:
    jupyter_book = require_extra("jupyter_book", "book", needed_by="acpg-lab book (Jupyter Book)")
    version = getattr(jupyter_book, "__version__", "?")
    if not version.startswith("1."):
        raise BookError(f"acpg-lab book needs Jupyter Book 1.x (it builds offline), found {version}; "
                        "pip install -e '.[book]' installs the pinned one")
    return version


def _mathjax() -> Path:
    """The folder of the MathJax 3 files the book ships (from the ``sphinx-mathjax-offline`` package)."""
    try:
        folder = Path(importlib.metadata.distribution(_MATHJAX_DIST).locate_file(_MATHJAX_FILES))
    except importlib.metadata.PackageNotFoundError:
        folder = None
    if folder is None or not (folder / _MATHJAX_ENTRY).is_file() or not (folder / "output" / "chtml").is_dir():
        raise MissingExtra(f"acpg-lab book (its offline MathJax) needs the 'book' extra (no package {_MATHJAX_DIST}): "
                           f"pip install '{PROJECT}[book]'", name=_MATHJAX_DIST)
    return folder


def _copy_mathjax(mathjax: Path, static: Path) -> None:
    """Copy MathJax into the book's ``_static/mathjax``: ``_MATHJAX_ENTRY`` and every folder it loads from."""
    target = static / "mathjax"
    target.mkdir(parents=True)
    shutil.copy2(mathjax / _MATHJAX_ENTRY, target / _MATHJAX_ENTRY)
    for folder in sorted(p for p in mathjax.iterdir() if p.is_dir() and not p.name.startswith("__")):
        shutil.copytree(folder, target / folder.name)


def _markdown(notebook: Path) -> list[str]:
    return [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "markdown"]


def _title(notebook: Path) -> str:
    """The notebook's first heading (``# 02 · ACPG ...``), else its file name."""
    for source in _markdown(notebook):
        for line in source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return notebook.stem


def _sentence(text: str, limit: int = 320) -> str:
    """``text`` on one line, cut after the sentence that passes ``limit`` characters (whole when no sentence ends
    there outside a link, math or code)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    for cut in re.finditer(r"[.?!](?=\s|$)", text):
        head = text[:cut.end()]
        if cut.end() >= limit // 2 and head.count("$") % 2 == 0 and head.count("`") % 2 == 0 \
                and head.count("[") == head.count("]") and head.count("(") == head.count(")"):
            return head
    return text


def _label(paragraph: str, *names: str) -> str | None:
    """The text of a paragraph that starts with a bold label (``**Question.** ...``), or None."""
    match = re.match(r"\*\*(?:" + "|".join(names) + r")\b[^*]*\*\*[.:]?\s*", paragraph)
    return paragraph[match.end():] if match else None


def _outline(notebook: Path) -> dict[str, object]:
    """What the front page says about a notebook, read from its first markdown cells: its title; its question
    (the paragraph labelled **Question**, else the first plain paragraph after the title and the sequence line,
    else the paragraph or bullet labelled **Claim(s)** / **The paper claims**); the bullets of its goals cell (a
    heading with "Goals") and its **Prerequisites** paragraph; its run time (the paragraph labelled **Run
    time...**, else the first sentence that gives a time)."""
    sources = _markdown(notebook)[:8]
    paragraphs = [p.strip() for s in sources for p in re.split(r"\n\s*\n", s) if p.strip()]
    items = [re.sub(r"\s+", " ", i).strip() for p in paragraphs if p.startswith("- ")
             for i in re.split(r"(?:^|\n)- ", p) if i.strip()]  # bullets, each on one line
    body = [p for p in paragraphs[:8] if not p.startswith(("#", ">", "- ", "|")) and
            not (p.startswith("*") and not p.startswith("**"))]
    kind, question = "Question", next((q for p in paragraphs if (q := _label(p, "Question")) is not None), "")
    if not question:  # the notebook's own opening paragraph, else the claim it tests
        question = next((p for p in body if not p.startswith("**")), "")
    if not question:
        kind = "Claim under test"
        question = next((q for p in paragraphs + items if (q := _label(
            p, "Claims? under test", "Claims?", "The paper(?:'s)? claims?")) is not None), "")
    goals: list[str] = []
    for source in sources:
        if re.search(r"^#+ .*Goals", source, flags=re.M):
            for line in source.splitlines():
                if line.startswith("#"):
                    continue
                if re.search(r"(?i)prerequisite", line):
                    break
                if re.match(r"\s*[-*] ", line):
                    goals.append(line.strip()[2:].strip())
                elif re.match(r"\s{2,}\S", line) and goals:  # a bullet continued on the next line
                    goals[-1] += " " + line.strip()
            break
    prerequisites = next((q for p in paragraphs if (q := _label(p, "Prerequisites?")) is not None), "")
    time_ = next((q for p in paragraphs if (q := _label(p, "Run times?", "Time", "Running time")) is not None), "")
    if not time_:
        for source in sources:
            for sentence in re.split(r"(?<=[.])\s+|\n\s*\n", source):
                if re.search(r"\d\s*(minutes?|min|s|seconds|hours?)\b", sentence) and \
                        re.search(r"(?i)\b(run|runs|time|takes|profile)\b", sentence):
                    time_ = sentence.strip().lstrip("-*> ")
                    break
            if time_:
                break
    question = re.sub(r"^\([^)]*\)[.:]?\s*", "", question)  # "(arXiv 2509.02737): when ..."
    question = question[:1].upper() + question[1:]
    return dict(title=_title(notebook), kind=kind, question=_sentence(question), goals=goals[:5],
                prerequisites=_sentence(prerequisites, 240), time=_sentence(re.split(r"\s+To change", time_)[0], 260))


def _readme_commands() -> list[str]:
    """The command lines of the README's first ``bash`` block (how to set up, run the main job, test, open)."""
    readme = ROOT / "README.md"
    if readme.is_file():
        block = re.search(r"```bash\n(.*?)```", readme.read_text(), flags=re.S)
        if block:
            return [line for line in block.group(1).splitlines() if line.strip()]
    return ["python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/acpg-lab lab"]


def _intro(names: Sequence[str], profile: str, executed: Path) -> str:
    import torch

    from acpg_lab import __version__

    lines = [
        "# acpg_lab: a course on what happens inside policy-gradient networks",
        "",
        f"{_COUNT.get(len(names), len(names))} notebooks that teach, by experiment, two recent claims about the "
        "last layers of policy networks: "
        "**action collapse** and **ACPG**, a fixed simplex-ETF action layer "
        "([arXiv 2509.02737](https://arxiv.org/abs/2509.02737)), and **PPO's representation collapse** and "
        "**PFO** ([arXiv 2405.00662](https://arxiv.org/abs/2405.00662)). Each notebook is a learner path (goals, a "
        "picture, one short live experiment, the same figure from the stored held-out evidence, a takeaway, "
        "exercises with worked solutions, what to try next) followed by a folded *evidence appendix* with every "
        "table behind the verdicts. Nothing here needs to be run: this is an executed copy with every output.",
        "",
        f"- profile of this copy: **{profile}**"
        + (" (a smoke run: every code path, far too short for any conclusion; the verdicts in the notebooks quote "
           "the stored held-out evidence, not these runs)" if profile == "ci" else ""),
        f"- built on {datetime.date.today().isoformat()} with acpg_lab {__version__}, torch {torch.__version__}",
        f"- executed notebooks taken from `{executed}`",
        "",
        "## Course outline",
        "",
    ]
    for name in names:
        info = _outline(executed / f"{name}.ipynb")
        lines += [f"### [{info['title']}]({name}.ipynb)", ""]
        if info["question"]:
            lines += [f"**{info['kind']}.** {info['question']}", ""]
        if info["goals"]:
            lines += ["**Goals.** After this notebook you can:", ""] + [f"- {g}" for g in info["goals"]] + [""]
        if info["prerequisites"]:
            lines += [f"**Prerequisites.** {info['prerequisites']}", ""]
        if info["time"]:
            lines += [f"**Run time.** {info['time']}", ""]
    lines += [
        "## Prerequisites",
        "",
        *[f"- {p}" for p in _PREREQUISITES],
        "",
        "## How to run it",
        "",
        "Each command sets up a virtual environment with everything pinned (Python 3.11 and pip on Linux), then "
        "runs the main job (every notebook executed into `runs/notebooks/`), the tests, or JupyterLab:",
        "",
        "```bash",
        *_readme_commands(),
        "```",
        "",
        "In JupyterLab, `acpg-lab lab --profile ci` runs every notebook as a quick smoke test; the `default` "
        "profile (what opens otherwise) shows each phenomenon on one CPU. Each notebook's first cell gives its "
        "measured run times. Rebuild this book with `acpg-lab book --profile default --out site` (executes the "
        "notebooks first, reusing cached training runs), or `acpg-lab book --out site --no-execute` to use the "
        "notebooks the main job already executed in `runs/notebooks`.",
        "",
        "## Reference",
        "",
        "- [Glossary](glossary.md): every term the notebooks use (untrained null, Holm, srank, lead-lag, ...) in "
        "one short paragraph",
        "- [Metric reference](metrics.md): every metric, its formula, what it measures, its range and its source",
        "- [Claims and verdicts](reproduction.md): the claims table of `REPRODUCTION.md`",
        "- [API reference](api.md): the package's public functions and classes, from their docstrings",
    ]
    return _rewrite_links("\n".join(lines) + "\n")


def _api_page() -> str:
    lines = ["# API reference", "",
             "The public functions and classes of `acpg_lab`, generated from their docstrings. The notebooks import "
             "everything they use from here; the [metric reference](metrics.md) defines the metrics and the "
             "[glossary](glossary.md) the statistics.", ""]
    for module, what in API_MODULES.items():
        lines += [f"## `{module}`", "", what[0].upper() + what[1:] + ".", "", "```{eval-rst}"]
        if module == "acpg_lab":  # what it re-exports for users, in the order a user meets it; documented (and
            # indexed) again under the module that defines it, so not indexed here
            lines += [f".. autofunction:: acpg_lab.{name}\n   :no-index:\n" if name == "train" else
                      f".. autoclass:: acpg_lab.{name}\n   :members:\n   :no-index:\n" for name in _TOP_LEVEL]
        else:
            lines += [f".. automodule:: {module}", "   :members:"]
        lines += ["```", ""]
    return "\n".join(lines)


#: Links between the repository's files, as the book's pages name them.
_LINKS = [(re.compile(r"\]\((?:\.\./)*(?:docs/)?glossary\.md"), "](glossary.md"),
          (re.compile(r"\]\((?:\.\./)*(?:docs/)?metrics\.md"), "](metrics.md"),
          (re.compile(r"\]\((?:\.\./)*REPRODUCTION\.md"), "](reproduction.md")]


def _rewrite_links(text: str) -> str:
    """Repository links as the book's pages name them; JupyterLab's in-page anchors (``#Evidence-appendix``) as
    MyST's (lower case)."""
    for pattern, replacement in _LINKS:
        text = pattern.sub(replacement, text)
    return re.sub(r"\]\(#([^)\s]+)\)", lambda m: f"](#{m.group(1).lower()})", text)


def _short(text: str, limit: int = 80) -> str:
    """The first sentence of ``text`` on one line, cut at a word before ``limit`` characters (never inside math,
    code or a link)."""
    text = " ".join(text.split())
    first = re.match(r".*?[.?!:](?=\s|$)", text)
    text = first.group(0) if first else text
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    for mark in ("$", "`"):
        if cut.count(mark) % 2:
            cut = cut[:cut.rindex(mark)]
    if cut.count("[") > cut.count("]"):
        cut = cut[:cut.rindex("[")]
    return cut.rstrip(" ,;(") + " …"


def _dropdown(source: str, default_title: str = "Details") -> str:
    """A markdown cell as a closed MyST dropdown: its leading heading becomes the title (Sphinx allows no section
    inside a directive, so later headings become bold lines)."""
    lines = source.strip().splitlines()
    title = default_title
    if lines and re.match(r"#{1,6} ", lines[0]):
        title = lines[0].lstrip("#").strip() or default_title
        lines = lines[1:]
    elif lines and not lines[0].startswith(("|", "$", "<", "```", "- ", "* ", ":::")):  # its first sentence
        title = _short(re.split(r"\n\s*\n", source.strip())[0])
        rest = source.strip()[len(title):].strip() if not title.endswith("…") else ""
        if rest and source.strip().startswith(title):  # the title is the whole first sentence: not twice
            lines = rest.splitlines()
    body = [re.sub(r"^#{1,6} +(.*?)\s*#*\s*$", r"**\1**", line) for line in lines]
    fence = ":" * max(3, max((len(m) for m in re.findall(r"^:{3,}", "\n".join(body), flags=re.M)), default=0) + 1)
    return "\n".join([f"{fence}{{dropdown}} {title}", *body, fence])


def _for_the_book(notebook: Path, target: Path) -> None:
    """Copy an executed notebook into the book's source: links rewritten to the book's pages, the evidence
    appendix folded (markdown cells as dropdowns, code cells ``hide-cell`` unless already hidden)."""
    nb = nbformat.read(notebook, as_version=4)
    appendix = False
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        is_heading = cell.cell_type == "markdown" and cell.source.lstrip().startswith(_APPENDIX_HEADING)
        appendix = appendix or is_heading
        if cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source)
        if not (appendix or _APPENDIX_TAG in tags):
            continue
        if cell.cell_type == "code" and not any(t in tags for t in ("hide-cell", "remove-cell")):
            tags[:] = [t for t in tags if t not in ("hide-input", "hide-output")] + ["hide-cell"]
        elif cell.cell_type == "markdown" and is_heading:
            rest = cell.source.lstrip()[len(_APPENDIX_HEADING):].strip()
            cell.source = _APPENDIX_HEADING + ("\n\n" + _dropdown(rest, "About this appendix") if rest else "")
        elif cell.cell_type == "markdown" and re.fullmatch(r"#{2,6} [^\n]+", cell.source.strip()):
            pass  # a heading alone stays a heading: it structures the appendix and folds nothing
        elif cell.cell_type == "markdown" and cell.source.strip():
            cell.source = _dropdown(cell.source)
    nbformat.write(nb, target)


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
    `acpg_lab.entry.MissingExtra` (the ``book`` group missing), `BookError` (executed notebooks missing, ``out``
    holding something else than a book, the build failing) or ValueError (bad profile, notebook names, device, an
    ``out`` or ``runs`` that cannot be written) before any notebook is executed.
    """
    version = _require_jupyter_book()
    mathjax = _mathjax()
    out = Path(out).expanduser().resolve()
    runs = Path(runs).expanduser().resolve()
    names = list(only) if only else list_notebooks()
    names = [n.removesuffix(".ipynb") for n in names]
    # every path the book writes, checked before a notebook runs: the site, and (executing) the runs directory
    check_output_dir(out, what="book directory --out")
    if out.is_dir() and any(out.iterdir()) and not (out / _MARKER).is_file():
        raise BookError(f"{out} exists and is not a book built by acpg-lab; refusing to replace it (choose an "
                        "empty or new directory)")
    if out == runs or out in runs.parents:
        raise ValueError(f"book directory --out {out} holds the executed notebooks' directory --runs {runs}, which "
                         "the build would delete; choose another --out")
    if execute:
        check_output_dir(runs, what="runs directory --runs")
        run_notebooks(profile, runs, device=device, only=names, log=log)
    else:
        names = _executed_names(runs, names)
        profiles = {_profile_of(runs / f"{n}.ipynb") for n in names}
        profile = profiles.pop() if len(profiles) == 1 else "mixed (" + ", ".join(sorted(profiles)) + ")"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a race: the check above passed
        raise BookError(f"book directory --out {out} cannot be created: {err.strerror or err}") from err
    with tempfile.TemporaryDirectory(prefix="acpg-lab-book-") as tmp:
        src = Path(tmp) / "book"
        src.mkdir()
        for name in names:
            _for_the_book(runs / f"{name}.ipynb", src / f"{name}.ipynb")
        for page, origin in [("glossary", ROOT / "docs" / "glossary.md"), ("metrics", ROOT / "docs" / "metrics.md"),
                             ("reproduction", ROOT / "REPRODUCTION.md")]:
            (src / f"{page}.md").write_text(_rewrite_links(origin.read_text()))
        (src / "api.md").write_text(_api_page())
        (src / "intro.md").write_text(_intro(names, profile, runs))
        (src / "_config.yml").write_text(_CONFIG)
        (src / "_static").mkdir()
        (src / "_static" / "custom.css").write_text(_CSS)
        toc = ["format: jb-book", "root: intro", "parts:", "- caption: The notebooks", "  chapters:"]
        toc += [f"  - file: {name}" for name in names]
        toc += ["- caption: Reference", "  chapters:"]
        toc += [f"  - file: {page}" for page in ("glossary", "metrics", "reproduction", "api")]
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
        _copy_mathjax(mathjax, out / "_static")
        (out / _MARKER).write_text("built by acpg-lab book; the next build replaces this directory\n")
    log(f"book written to {out} (open {out / 'index.html'})")
    return out / "index.html"
