"""The main job as the README runs it (papermill, ``ci`` profile), on notebooks 00-04: quiet terminal, no errors
and no warnings in the outputs, every figure named after what it shows. Its executed notebooks then make the HTML
book (``acpg-lab book --no-execute``), which a headless Chromium opens: the front page (the course outline), every
notebook page (images load), and on the 01-04 pages the checks of issue 22: the evidence appendix is collapsed
(`_browser.APPENDIX_COLLAPSED`), no image is shown below 70% of its natural width and no table overflows the
content column (`_browser.LAYOUT_PROBLEMS`); the glossary (every term's anchor, every link the notebooks make to
it), the metric reference and the API reference have their content. The browser is kept offline (every request
that leaves the local server is aborted): the math of every notebook page and of the metric reference is typeset
by the book's own copy of MathJax, fonts included (`_browser.MATH_REPORT`), and nothing but the notebooks' widget
embedding asks for a file from the internet.

Why not 05: nbval already executes every notebook (test_notebooks.py, FutureWarnings as errors), and the main job's
mechanics (parameters injected, outputs read back, figures extracted) do not depend on the notebook; 00-04 are
executed here because the book checks of issue 22 name their pages. 05's page is built the same way, and executing
it (SB3, about a minute under ``ci``) would add to the suite's time without a check the other pages do not make.
Every notebook's parameters cell is checked statically for
what the main job injects (test_notebooks.py).
"""

from __future__ import annotations

import re
import time

import nbformat
import pytest
from _browser import (
    APPENDIX_COLLAPSED,
    Screenshots,
    book_page_report,
    browser_page,
    keep_offline,
    math_problems,
    require,
    require_browser,
    static_server,
)
from test_glossary import ANCHORS

from acpg_lab.runner import figure_prefix, list_notebooks, run_notebooks

pytestmark = pytest.mark.slow

MAIN_JOB = ["00_simplex_etf", "01_observing_action_collapse", "02_acpg_fixed_etf_head", "03_ppo_trust_region_failure",
            "04_acpg_meets_pfo"]
#: The pages whose evidence appendix and layout the browser checks.
LESSONS = MAIN_JOB[1:]
MIN_IMAGE_SCALE = 0.7  # a figure shown below 70% of its natural width is unreadable (issue 22)
#: Figures a reader looks for by name (the main job writes OUT/figures/<number>_<name>.png).
#: Pages whose formulas the browser must find typeset (they have math; every page that has some is checked).
MATH_PAGES = ["02_acpg_fixed_etf_head", "03_ppo_trust_region_failure", "metrics"]
#: The only files a page may ask the internet for: require.js and the ipywidgets embedding that myst-nb adds to a
#: page whose notebook saved widget state (offline its widgets stay static; everything else is in the book).
ALLOWED_OUTSIDE = ("https://cdnjs.cloudflare.com/ajax/libs/require.js/",
                   "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@")
EXPECTED_FIGURES = {"00_etf_pictures_and_separation.png", "00_etf_head_confidence.png", "00_etf_explorer.png",
                    "02_learning_curves.png", "02_aggregate.png", "02_head_options_ablation.png"}


def _stderr_warnings(nb) -> list[str]:
    found = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"code cell {i}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr" and "Warning" in out.text:
                found.append(f"code cell {i} printed a warning: {out.text[:400]}")
    return found


def test_main_job_runs_notebooks_quietly_and_the_book_shows_them(tmp_path, capfd):
    names = MAIN_JOB
    assert set(names) <= set(list_notebooks())
    runs = tmp_path / "runs"
    timings = {}
    start = time.perf_counter()
    executed = run_notebooks("ci", runs, device="cpu", only=names, log=lambda *_: None)
    timings["main job, ci, notebooks 00-04"] = time.perf_counter() - start
    terminal = capfd.readouterr()
    for noise in ("without encryption", "KeyboardInterrupt"):  # the kernels' own chatter, if any, lands here
        assert noise not in terminal.err + terminal.out, f"the main job's terminal shows {noise!r}"
    assert [p.stem for p in executed] == names

    figures = {p.name for p in (runs / "figures").glob("*.png")}
    for name in names:
        problems = _stderr_warnings(nbformat.read(runs / f"{name}.ipynb", as_version=4))
        assert not problems, f"{name}: {problems}"
        mine = {f for f in figures if f.startswith(figure_prefix(name) + "_")}
        assert mine, f"{name} drew no figure"
        unnamed = sorted(f for f in mine if f.startswith(f"{figure_prefix(name)}_figure_"))
        assert not unnamed, f"{name}: figures shown without a name (use acpg_lab.plotting.show): {unnamed}"
    assert EXPECTED_FIGURES <= figures, sorted(EXPECTED_FIGURES - figures)

    try:
        import jupyter_book  # noqa: F401
    except ImportError:
        require("Jupyter Book 1.x", "pip install -e '.[book]'")
    from acpg_lab.book import build_book

    start = time.perf_counter()
    index = build_book(tmp_path / "site", runs=runs, execute=False, only=names, log=lambda *_: None)
    timings["book build"] = time.perf_counter() - start
    site = index.parent
    pages = {p.name for p in site.glob("*.html")}
    assert {f"{name}.html" for name in names} | {"reproduction.html", "metrics.html", "glossary.html",
                                                 "api.html"} <= pages, sorted(pages)
    _check_links_to_the_reference(site, names)

    timings |= check_the_book(site, names, figures, tmp_path)
    print(f"timings: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}")


def check_the_book(site, names, figures, tmp_path) -> dict[str, float]:
    """Open the built book in Chromium and check its pages (see the module's docstring); return the timing."""
    timings = {}
    chromium = require_browser()
    shots = Screenshots(tmp_path / "screenshots")
    try:
        start = time.perf_counter()
        with static_server(site) as url, browser_page(chromium, tmp_path / "chromium-profile") as page:
            local_failures = []
            outside = keep_offline(page, url)  # a reader without internet
            page.on("requestfailed", lambda r: local_failures.append(r.url) if r.url.startswith(url) else None)
            page.goto(f"{url}/index.html", wait_until="load")  # index.html forwards to intro.html
            page.wait_for_url(f"{url}/intro.html", timeout=30_000)
            page.wait_for_load_state("load")
            assert "acpg_lab" in page.title()
            front = page.locator("main").inner_text()
            assert "profile of this copy: ci" in front
            for section in ("Course outline", "Prerequisites", "How to run it", "acpg-lab lab"):
                assert section in front, f"the front page has no {section!r}"
            for name in names:  # every notebook has its page in the navigation and in the course outline
                assert page.locator(f"nav a[href='{name}.html']").count() >= 1, name
                assert page.locator(f"main a[href='{name}.html']").count() >= 1, name
            for reference in ("glossary", "metrics", "reproduction", "api"):
                assert page.locator(f"nav a[href='{reference}.html']").count() >= 1, reference
            shots.take(page, "book_front_page")

            problems = {}
            for name in names:
                page.goto(f"{url}/{name}.html", wait_until="load")
                page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
                images = page.evaluate("() => Array.from(document.images).map(i => [i.getAttribute('src'), "
                                       "i.naturalWidth])")
                shown = len([f for f in figures if f.startswith(figure_prefix(name) + "_")])
                assert len(images) >= shown, (name, images, shown)
                assert all(width > 0 for _, width in images), f"{name}: images that did not load: {images}"
                _check_math(page, name, shots)
                if name not in LESSONS:
                    continue
                shots.take(page, f"book_{name}_top")
                report = book_page_report(page, MIN_IMAGE_SCALE)
                appendix = report["appendix"]
                found = []
                if appendix["heading"] != 1:
                    found.append(f"{appendix['heading']} 'Evidence appendix' headings (expected 1)")
                elif appendix["visible"] or not appendix["folds"]:
                    found.append(f"evidence appendix not collapsed: {appendix['folds']} folds, "
                                 f"{appendix.get('nvisible', 0)} pieces shown, e.g. {appendix['visible']}")
                found += [f"image shown below {MIN_IMAGE_SCALE:.0%} of its width: {s}" for s in report["small"]]
                found += [f"image that did not load: {s}" for s in report["broken"]]
                found += [f"image not displayed with every fold open: {s}" for s in report["hidden"]]
                found += [f"table overflowing the {report['column']}-px column: {s}" for s in report["overflowing"]]
                if report["page_overflow"]:
                    found.append("the page scrolls sideways")
                if found:
                    problems[name] = found
                heading = page.locator("article h2", has_text="Evidence appendix")
                if heading.count():
                    heading.first.scroll_into_view_if_needed()
                shots.take(page, f"book_{name}_appendix_opened")
            assert not problems, "book pages 01-04:\n" + "\n".join(
                f"{name}: " + "; ".join(found) for name, found in problems.items())

            # the collapse check is strict: one opened fold of an appendix is reported
            page.goto(f"{url}/{LESSONS[0]}.html", wait_until="load")
            page.evaluate("() => { const h = [...document.querySelectorAll('article h2')].find(h => "
                          "h.textContent.startsWith('Evidence appendix')); const d = [...document.querySelectorAll("
                          "'article details')].filter(d => h.compareDocumentPosition(d) & 4); d[d.length - 1].open = "
                          "true; }")
            try:
                page.wait_for_function(f"() => ({APPENDIX_COLLAPSED})().visible.length > 0", timeout=10_000)
            except Exception as err:
                raise AssertionError("an opened fold of the appendix went unnoticed by the collapse check") from err

            page.goto(f"{url}/glossary.html", wait_until="load")
            glossary = page.locator("article")
            assert glossary.locator("h2").count() == len(ANCHORS), glossary.locator("h2").all_inner_texts()
            assert "Holm" in glossary.inner_text()
            shots.take(page, "book_glossary")
            page.goto(f"{url}/api.html", wait_until="load")
            api = page.locator("main").inner_text()
            for name in ("TrainConfig", "simplex_etf", "action_collapse", "welch", "holm", "collapse_events",
                         "ETFActorCriticPolicy"):
                assert name in api, f"the API reference does not document {name}"
            assert page.locator("main dl.py").count() >= 30, "the API reference documents too few objects"
            shots.take(page, "book_api_reference")
            page.goto(f"{url}/metrics.html", wait_until="load")
            assert "ratio_below_mean" in page.locator("main").inner_text()
            _check_math(page, "metrics", shots)
            shots.take(page, "book_metric_reference")
            assert not local_failures, f"the site failed to load its own files: {local_failures}"
            mathjax = [u for u in outside if "mathjax" in u.lower()]
            assert not mathjax, f"MathJax asked the internet for {mathjax}: the book must typeset math offline"
            others = sorted({u for u in outside if not u.startswith(ALLOWED_OUTSIDE)})
            assert not others, f"the book asked the internet for {others}: it must read offline"
        timings["book in the browser"] = time.perf_counter() - start
    except BaseException:
        print(f"book browser check failed; {shots.where()}")
        raise
    print(shots.where())
    return timings


def _check_math(page, name: str, shots: Screenshots) -> None:
    """The page's formulas are typeset, by the book's MathJax (a page of `MATH_PAGES` must have some)."""
    found = math_problems(page)
    if name in MATH_PAGES and not page.locator("mjx-container").count():
        found.append("no typeset formula (mjx-container)")
    if found:
        page.evaluate("() => document.querySelector('.math')?.scrollIntoView()")  # never waits
        shots.take(page, f"book_{name}_math")
    assert not found, f"{name}: math not rendered offline: " + "; ".join(found)


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def _check_links_to_the_reference(site, names) -> None:
    """Every term of the glossary has its anchor in the built page, and every link of a notebook page to the
    glossary, the metric reference or the claims table names a page of the book and an anchor on it."""
    ids = {page: _ids((site / f"{page}.html").read_text()) for page in ("glossary", "metrics", "reproduction")}
    assert ANCHORS <= ids["glossary"], f"glossary anchors missing in the book: {sorted(ANCHORS - ids['glossary'])}"
    for name in names:
        html = (site / f"{name}.html").read_text()
        stale = [h for h in re.findall(r'href="([^"]+)"', html)
                 if re.search(r"docs/|REPRODUCTION|\.md\b", h) and not h.startswith("_sources/")]
        assert not stale, f"{name}: links to the repository's files, not rewritten to the book's pages: {stale}"
        for page, anchor in re.findall(r'href="(glossary|metrics|reproduction)\.html#([^"]+)"', html):
            assert anchor in ids[page], f"{name} links {page}.html#{anchor}, which does not exist"


def test_book_bad_input(tmp_path):
    from acpg_lab.book import BookError, build_book

    with pytest.raises(BookError, match=r"no executed notebook\(s\) \['00_simplex_etf'\]"):
        build_book(tmp_path / "site", runs=tmp_path / "empty", execute=False, only=["00_simplex_etf"])
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    (tmp_path / "runs").mkdir()
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, tmp_path / "runs" / "00_simplex_etf.ipynb")
    with pytest.raises(BookError, match="not a book built by acpg-lab; refusing to replace it"):
        build_book(precious, runs=tmp_path / "runs", execute=False, only=["00_simplex_etf"])
    assert (precious / "thesis.tex").read_text() == "do not delete"
    with pytest.raises(ValueError, match="unknown notebook"):
        build_book(tmp_path / "site", runs=tmp_path / "runs", only=["99_nothing"])


def test_cli_book_reports_errors(tmp_path, capsys):
    from acpg_lab.cli import main

    assert main(["book", "--out", str(tmp_path / "site"), "--runs", str(tmp_path), "--no-execute"]) == 1
    assert "no executed notebook(s)" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_the_book_folds_the_appendix_and_links_the_reference_pages(tmp_path):
    """What `acpg_lab.book` does to a notebook before the build, and what the front page reads from it."""
    from acpg_lab.book import _for_the_book, _outline

    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# 09 · A lesson\n\n*Sequence: ...*\n\n**Run time and profile.** About 30 s with `ci`, "
                             "about 3 minutes with `default`. To change it, set `profile`."),
        v4.new_markdown_cell("## Goals and prerequisites\n\n- see a thing;\n- measure it\n  on two lines.\n\n"
                             "**Prerequisites.** Notebook 00."),
        v4.new_markdown_cell("## The claim\n\n- **The paper claims** (arXiv 1): things collapse.\n\n"
                             "[Holm](../docs/glossary.md#holm-correction), [nc1](../docs/metrics.md#action-collapse), "
                             "[claims](../REPRODUCTION.md), [appendix](#Evidence-appendix)"),
        v4.new_code_cell("1 + 1", metadata={"tags": ["solution", "hide-input"]}),
        v4.new_markdown_cell("## Evidence appendix\n\nFor researchers. A learner can skip it."),
        v4.new_markdown_cell("### The search\n\nWe searched; see [Welch](../docs/glossary.md#welch-t-interval).\n\n"
                             "#### A detail\n\n:::{note}\nnested\n:::"),
        v4.new_markdown_cell("### Only a heading"),
        v4.new_code_cell("table", metadata={"tags": ["appendix", "hide-input"]}),
    ])
    source = tmp_path / "09_lesson.ipynb"
    nbformat.write(nb, source)
    _for_the_book(source, tmp_path / "book.ipynb")
    cells = nbformat.read(tmp_path / "book.ipynb", as_version=4).cells
    assert cells[2].source.endswith("[Holm](glossary.md#holm-correction), [nc1](metrics.md#action-collapse), "
                                    "[claims](reproduction.md), [appendix](#evidence-appendix)")
    assert cells[3].metadata.tags == ["solution", "hide-input"]  # the path is left as it is
    assert cells[4].source.startswith("## Evidence appendix\n\n:::{dropdown} For researchers.\nA learner can skip")
    assert cells[5].source.splitlines()[0] == "::::{dropdown} The search"  # longer fence than the nested one
    assert "**A detail**" in cells[5].source and "#### " not in cells[5].source
    assert "(glossary.md#welch-t-interval)" in cells[5].source and cells[5].source.endswith("\n::::")
    assert cells[6].source == "### Only a heading"
    assert cells[7].metadata.tags == ["appendix", "hide-cell"]

    outline = _outline(source)
    assert outline["title"] == "09 · A lesson"
    assert (outline["kind"], outline["question"]) == ("Claim under test", "Things collapse.")
    assert outline["goals"] == ["see a thing;", "measure it on two lines."]
    assert outline["prerequisites"] == "Notebook 00."
    assert outline["time"] == "About 30 s with `ci`, about 3 minutes with `default`."


def test_the_front_page_finds_every_notebooks_question_goals_and_time():
    """The course outline is read from the notebooks: each one must keep what the front page looks for (an
    opening paragraph or a **Question** / claim, the bullets under ``## Goals and prerequisites``, a
    **Prerequisites** paragraph and a **Run time...** paragraph), or its entry silently loses a part."""
    from acpg_lab.book import _outline
    from acpg_lab.runner import NOTEBOOK_DIR

    missing = {}
    for name in list_notebooks():
        outline = _outline(NOTEBOOK_DIR / f"{name}.ipynb")
        lost = [part for part in ("question", "prerequisites", "time") if not outline[part]]
        lost += [] if 3 <= len(outline["goals"]) <= 5 else [f"goals ({len(outline['goals'])} bullets, 3-5 expected)"]
        if lost:
            missing[name] = lost
    assert not missing, f"the book's course outline cannot find: {missing}"
