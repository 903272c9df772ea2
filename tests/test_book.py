"""The main job as the README runs it (papermill, ``ci`` profile), on notebooks 00 and 02: quiet terminal, no
errors and no warnings in the outputs, every figure named after what it shows. Its executed notebooks then make
the HTML book (``acpg-lab book --no-execute``), which a headless Chromium opens: the index, notebook 02's page
whose images must load, and the metric reference.

Why two notebooks: nbval already executes every notebook (test_notebooks.py, FutureWarnings as errors), and the
main job's mechanics (parameters injected, outputs read back, figures extracted) do not depend on the notebook;
running all of them a second time would roughly double the suite's notebook time for no new check. Notebook 02
is the one with the most figures and the library warning that must stay filtered; 00 has the widget explorer.
Every notebook's parameters cell is checked statically for what the main job injects (test_notebooks.py).
"""

from __future__ import annotations

import time

import nbformat
import pytest
from _browser import Screenshots, browser_page, require, require_browser, static_server

from acpg_lab.runner import figure_prefix, list_notebooks, run_notebooks

pytestmark = pytest.mark.slow

MAIN_JOB = ["00_simplex_etf", "02_acpg_fixed_etf_head"]
#: Figures a reader looks for by name (the main job writes OUT/figures/<number>_<name>.png).
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
    timings["main job, ci, notebooks 00 and 02"] = time.perf_counter() - start
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
    assert {f"{name}.html" for name in names} | {"reproduction.html", "metrics.html"} <= {
        p.name for p in site.glob("*.html")}

    chromium = require_browser()
    shots = Screenshots(tmp_path / "screenshots")
    try:
        start = time.perf_counter()
        with static_server(site) as url, browser_page(chromium, tmp_path / "chromium-profile") as page:
            local_failures = []
            page.on("requestfailed", lambda r: local_failures.append(r.url) if r.url.startswith(url) else None)
            page.goto(f"{url}/index.html", wait_until="load")  # index.html forwards to intro.html
            page.wait_for_url(f"{url}/intro.html", timeout=30_000)
            page.wait_for_load_state("load")
            assert "acpg_lab" in page.title()
            assert "profile: ci" in page.locator("main").inner_text()
            for name in names:  # every notebook has its page in the navigation
                assert page.locator(f"nav a[href='{name}.html']").count() >= 1, name
            shots.take(page, "book_index")

            page.goto(f"{url}/02_acpg_fixed_etf_head.html", wait_until="load")
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
            images = page.evaluate("() => Array.from(document.images).map(i => [i.getAttribute('src'), "
                                   "i.naturalWidth])")
            shown = len([f for f in figures if f.startswith("02_")])
            assert len(images) >= shown, (images, shown)
            assert all(width > 0 for _, width in images), f"images that did not load: {images}"
            page.locator("img").first.scroll_into_view_if_needed()
            shots.take(page, "book_notebook_02_figure")

            page.goto(f"{url}/metrics.html", wait_until="load")
            assert "ratio_below_mean" in page.locator("main").inner_text()
            shots.take(page, "book_metric_reference")
            assert not local_failures, f"the site failed to load its own files: {local_failures}"
        timings["book in the browser"] = time.perf_counter() - start
    except BaseException:
        print(f"book browser check failed; {shots.where()}")
        raise
    print(f"timings: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}; {shots.where()}")


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
