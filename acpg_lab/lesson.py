"""The shape of a lesson notebook: the learner path first, the evidence appendix last and collapsed.

Every notebook is a learner path (goals, the claim against what we found, a picture, one live experiment, the same
figure from stored evidence, a takeaway, exercises with worked solutions, what to try next) followed by an
``## Evidence appendix`` that a learner can skip. Two cell tags carry the structure, and `collapse` turns them
into what JupyterLab and the book read:

- ``solution``: an exercise's worked solution (a code cell that nbval executes): its source is collapsed in
  JupyterLab (``metadata.jupyter.source_hidden``) and behind a "show" toggle in the book (``hide-input``);
- ``appendix``: every cell from the ``## Evidence appendix`` heading to the end. The heading is saved collapsed
  (``jp-MarkdownHeadingCollapsed``), so JupyterLab folds the whole appendix under it; in the book code cells are
  folded whole (``hide-cell``) and `acpg_lab.book` folds the markdown into dropdowns.

`banner` prints, under the ``ci`` profile, that the run is a smoke test whose numbers mean nothing, and under the
others which budget the live run has against the stored evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

__all__ = ["APPENDIX_HEADING", "SOLUTION_TAG", "APPENDIX_TAG", "collapse", "collapse_file", "banner", "banner_text",
           "is_smoke"]

APPENDIX_HEADING = "## Evidence appendix"
SOLUTION_TAG = "solution"
APPENDIX_TAG = "appendix"
_BOOK_TAGS = {SOLUTION_TAG: ["hide-input"], APPENDIX_TAG: ["hide-cell"]}


def _tags(cell: dict) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def collapse(nb: dict) -> dict:
    """Set the collapse metadata of a notebook (nbformat JSON as a dict) from its tags, in place; return it.

    Cells from the ``## Evidence appendix`` heading on are tagged ``appendix`` (a notebook without that heading is
    an error); the heading is saved collapsed; ``solution`` and appendix code cells get their JupyterLab and book
    flags. Idempotent: a notebook already collapsed is returned unchanged."""
    cells = nb["cells"]
    starts = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
              and "".join(c["source"]).lstrip().startswith(APPENDIX_HEADING)]
    if len(starts) != 1:
        raise ValueError(f"a lesson notebook has exactly one markdown cell starting with {APPENDIX_HEADING!r}; "
                         f"found {len(starts)}")
    for i, cell in enumerate(cells):
        tags = _tags(cell)
        if i >= starts[0] and APPENDIX_TAG not in tags:
            tags.append(APPENDIX_TAG)
        if i < starts[0] and APPENDIX_TAG in tags:
            tags.remove(APPENDIX_TAG)
        for tag, book in _BOOK_TAGS.items():
            if tag in tags and cell["cell_type"] == "code":
                tags.extend(t for t in book if t not in tags)
        if cell["cell_type"] == "code" and SOLUTION_TAG in tags:
            cell["metadata"].setdefault("jupyter", {})["source_hidden"] = True
        if cell["cell_type"] == "code" and APPENDIX_TAG in tags:
            cell["metadata"].setdefault("jupyter", {}).update(source_hidden=True, outputs_hidden=False)
        if not tags:
            del cell["metadata"]["tags"]
    cells[starts[0]]["metadata"]["jp-MarkdownHeadingCollapsed"] = True
    return nb


def collapse_file(path: str | Path) -> bool:
    """`collapse` a notebook file in place (nbformat's JSON layout, one-space indent); True if it changed."""
    path = Path(path)
    text = path.read_text()
    nb = json.loads(text)
    new = json.dumps(collapse(nb), indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def is_smoke(params: SimpleNamespace) -> bool:
    """Whether the notebook runs the ``ci`` profile: a smoke test whose numbers mean nothing."""
    return getattr(params, "profile", None) == "ci"


def banner_text(params: SimpleNamespace, *, what: str = "", trains: bool = True) -> str:
    """The text of `banner` (markdown)."""
    size = f" ({what})" if what else ""
    if not trains:  # exact geometry: the profile changes how much is checked, not what the numbers mean
        return (f"> **`{params.profile}` profile{size}.** Nothing in this notebook is trained: every number is exact "
                "geometry, whatever the profile" + (" (`ci` checks fewer sizes)." if is_smoke(params) else "."))
    if is_smoke(params):
        return ("> **Smoke test (`ci` profile).** Every code path runs, on budgets far too small to show anything: "
                "the numbers and figures of the live runs below mean nothing. The verdicts quote the stored "
                "evidence in `results/evidence/`, which this run does not touch. Run the `default` profile to see "
                "the phenomenon.")
    return (f"> **Live run, `{params.profile}` profile{size}.** Fewer seeds and steps than the stored evidence: it "
            "shows the phenomenon; the verdicts rest on the held-out evidence in the appendix.")


def banner(params: SimpleNamespace, *, what: str = "", trains: bool = True) -> None:
    """Display, at the top of a notebook and beside its verdicts, what the numbers of this run can say: under
    ``ci`` a smoke-test warning; under the other profiles the live run's size (``what``, e.g. "5 seeds x 60k
    steps"), smaller than the stored evidence the verdicts rest on. ``trains=False`` for a notebook that trains
    nothing (its numbers are exact at any profile)."""
    from IPython.display import Markdown, display

    display(Markdown(banner_text(params, what=what, trains=trains)))
