"""Every notebook is a lesson: the learner path first (goals, the claim against what we found, a picture before any
statistic, what to see under every figure, a short takeaway, exercises with worked solutions, what to try next),
then the evidence appendix, collapsed in JupyterLab and in the book. Checked statically on the stored notebooks
(nbval executes them, solutions included: test_notebooks.py)."""

import json
import re

import nbformat
import pytest

from acpg_lab.lesson import APPENDIX_HEADING, APPENDIX_TAG, SOLUTION_TAG, collapse, collapse_file
from acpg_lab.runner import NOTEBOOK_DIR, list_notebooks

NAMES = list_notebooks()
#: The markdown of the path (before the appendix) stays short enough to read in one sitting.
MAX_PATH_WORDS = 1_200
PATH_SECTIONS = ["## Goals and prerequisites", "## The claim, and what we found", "## Takeaway", "## Exercises",
                 "## What to try next"]


def _cells(name):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4).cells


def _split(cells):
    start = next(i for i, c in enumerate(cells) if c.cell_type == "markdown"
                 and c.source.lstrip().startswith(APPENDIX_HEADING))
    return cells[:start], cells[start:]


def _visible(source: str) -> str:
    """A markdown cell as the reader sees it: without HTML comments (the rendered evidence blocks' markers and the
    names of the cells their numbers come from)."""
    return re.sub(r"<!--.*?-->", "", source, flags=re.S)


def _words(cells):
    return sum(len(_visible(c.source).split()) for c in cells if c.cell_type == "markdown")


def test_every_notebook_is_listed_in_the_sequence_line_of_every_notebook():
    for name in NAMES:
        first = _cells(name)[0].source
        for other in NAMES:
            assert other[:2] in first, f"{name}: the sequence line omits {other}"


@pytest.mark.parametrize("name", NAMES)
def test_the_path_has_its_sections_in_order_and_the_appendix_last(name):
    cells = _cells(name)
    headings = [line for c in cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    positions = [next((i for i, h in enumerate(headings) if h.startswith(s)), None) for s in PATH_SECTIONS]
    missing = [s for s, p in zip(PATH_SECTIONS, positions, strict=True) if p is None]
    assert not missing, f"{name}: missing {missing}"
    assert positions == sorted(positions), f"{name}: sections out of order: {headings}"
    assert headings[-1].startswith(APPENDIX_HEADING), f"{name}: the evidence appendix must be the last section"
    assert sum(h.startswith(APPENDIX_HEADING) for h in headings) == 1


@pytest.mark.parametrize("name", NAMES)
def test_the_path_is_short_and_its_takeaway_has_at_most_three_bullets(name):
    path, _ = _split(_cells(name))
    assert _words(path) <= MAX_PATH_WORDS, f"{name}: {_words(path)} words of markdown before the appendix"
    takeaway = next(c.source for c in path if c.cell_type == "markdown" and c.source.startswith("## Takeaway"))
    bullets = [line for line in takeaway.splitlines() if re.match(r"^[-*] ", line)]
    assert 1 <= len(bullets) <= 3, f"{name}: takeaway has {len(bullets)} bullets"


@pytest.mark.parametrize("name", NAMES)
def test_at_least_three_exercises_each_with_an_expected_outcome_and_a_worked_solution(name):
    path, _ = _split(_cells(name))
    exercises = [i for i, c in enumerate(path) if c.cell_type == "markdown" and c.source.startswith("### Exercise")]
    assert len(exercises) >= 3, f"{name}: {len(exercises)} exercises"
    for i in exercises:
        following = path[i + 1:]
        stop = next((j for j, c in enumerate(following) if c.cell_type == "markdown" and c.source.startswith("#")),
                    len(following))
        block = [path[i]] + following[:stop]
        text = " ".join(c.source for c in block if c.cell_type == "markdown")
        assert "**Expected outcome.**" in text, f"{name}: {path[i].source.splitlines()[0]} has no expected outcome"
        solutions = [c for c in block if c.cell_type == "code" and SOLUTION_TAG in c.metadata.get("tags", [])]
        assert solutions, f"{name}: {path[i].source.splitlines()[0]} has no worked solution cell"
        for cell in solutions:  # collapsed in JupyterLab and behind a toggle in the book, but executed by nbval
            assert cell.metadata["jupyter"]["source_hidden"] is True and "hide-input" in cell.metadata["tags"]
            assert cell.source.strip()


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_has_what_to_see_under_it(name):
    cells = _cells(name)
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and re.search(r"\bshow\(", cell.source):
            after = next((c for c in cells[i + 1:] if c.cell_type == "markdown"), None)
            assert after is not None and _visible(after.source).lstrip().startswith("**What to see.**"), (
                f"{name}: the figure of code cell {i} has no '**What to see.**' under it")


@pytest.mark.parametrize("name", NAMES)
def test_the_appendix_is_collapsed_in_jupyterlab_and_the_book(name):
    path, appendix = _split(_cells(name))
    assert appendix[0].metadata.get("jp-MarkdownHeadingCollapsed") is True
    assert all(APPENDIX_TAG in c.metadata.get("tags", []) for c in appendix)
    assert not any(APPENDIX_TAG in c.metadata.get("tags", []) for c in path)
    for cell in appendix:
        if cell.cell_type == "code":
            assert "hide-cell" in cell.metadata["tags"] and cell.metadata["jupyter"]["source_hidden"] is True
    assert not any(c.source.lstrip().startswith("## ") for c in appendix[1:] if c.cell_type == "markdown"), (
        f"{name}: the appendix's sub-sections use ### (a ## heading would end the collapsed section)")


@pytest.mark.parametrize("name", NAMES)
def test_the_stored_notebook_is_already_collapsed(name, tmp_path):
    """`acpg_lab.lesson.collapse_file` changes nothing: the stored metadata is what the tags say."""
    copy = tmp_path / f"{name}.ipynb"
    copy.write_text((NOTEBOOK_DIR / f"{name}.ipynb").read_text())
    assert not collapse_file(copy), f"run acpg_lab.lesson.collapse_file on notebooks/{name}.ipynb"


@pytest.mark.parametrize("name", NAMES)
def test_the_setup_cell_shows_the_profile_banner_and_the_path_links_the_glossary(name):
    cells = _cells(name)
    code = [c for c in cells if c.cell_type == "code"]
    assert "banner(P" in code[1].source, f"{name}: the setup cell ends with al.lesson.banner(P, ...)"
    path, _ = _split(cells)
    anchors = set(re.findall(r"\(\.\./docs/glossary\.md#([a-z0-9-]+)\)", " ".join(c.source for c in path)))
    assert len(anchors) >= 4, f"{name}: the path links {len(anchors)} glossary terms (at least 4)"


def test_collapse_needs_exactly_one_appendix_and_is_idempotent():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"),
                                         nbformat.v4.new_code_cell("1", metadata={"tags": ["solution"]}),
                                         nbformat.v4.new_markdown_cell(APPENDIX_HEADING + "\n\ntext"),
                                         nbformat.v4.new_code_cell("2")])
    raw = json.loads(nbformat.writes(nb))
    once = collapse(json.loads(json.dumps(raw)))
    assert collapse(json.loads(json.dumps(once))) == once
    assert once["cells"][1]["metadata"]["tags"] == ["solution", "hide-input"]
    assert once["cells"][3]["metadata"]["tags"] == ["appendix", "hide-cell"]
    assert once["cells"][2]["metadata"]["jp-MarkdownHeadingCollapsed"] is True
    with pytest.raises(ValueError, match="exactly one markdown cell starting with '## Evidence appendix'; found 0"):
        collapse({"cells": raw["cells"][:2]})


def test_the_banner_says_what_the_numbers_of_this_run_can_say():
    from types import SimpleNamespace

    from acpg_lab.lesson import banner_text

    ci, default = SimpleNamespace(profile="ci"), SimpleNamespace(profile="default")
    assert "Smoke test" in banner_text(ci, what="2 seeds") and "mean nothing" in banner_text(ci)
    assert "Live run, `default` profile (5 seeds x 50,000 steps)" in banner_text(default, what="5 seeds x 50,000 steps")
    for params in (ci, default):  # a notebook that trains nothing: exact at any profile, never "mean nothing"
        text = banner_text(params, what="every K up to 8", trains=False)
        assert "Nothing in this notebook is trained" in text and "mean nothing" not in text
