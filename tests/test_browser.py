"""JupyterLab in a real browser, as a learner uses it.

JupyterLab is started from this environment with ``acpg-lab lab --profile ci`` (the README's third command, so
``ACPG_LAB_PROFILE=ci``) on 127.0.0.1, a free port and a random token, and stopped at the end whatever happens. A
headless Chromium opens notebook 00, runs every cell, checks that no cell shows an error, moves the K slider of
the ETF explorer and checks that a new figure appears; then it opens notebook 03 as a learner does (its evidence
appendix folded under its collapsed heading), runs it to the end, the learner path, the exercises' solutions and
the appendix, and checks that no cell shows an error. The screenshots are kept under the test's temporary
directory (printed on failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from _browser import Screenshots, browser_page, free_port, require, require_browser

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

_APP_READY = """(path) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.context && w.context.path === path && w.sessionContext && w.sessionContext.session
        && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle' && !!w.content && w.content.widgets.length > 0; }"""
_ALL_RAN = """() => { const w = window.jupyterapp.shell.currentWidget;
    const cells = w.content.widgets.filter(c => c.model.type === 'code');
    return cells.every(c => c.model.executionCount !== null) && w.sessionContext.session.kernel.status === 'idle'; }"""
#: The notebook's markdown cells whose text starts with the appendix heading: [collapsed?, cells hidden under it].
_APPENDIX_STATE = """() => { const w = window.jupyterapp.shell.currentWidget;
    return w.content.widgets.filter(c => c.model.type === 'markdown'
            && c.model.sharedModel.getSource().trimStart().startsWith('## Evidence appendix'))
        .map(c => [!!c.headingCollapsed, w.content.widgets.filter(x => x.isHidden).length]); }"""
_OUTPUTS = """() => window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code')
    .map(c => c.model.outputs.toJSON())"""


def _require_jupyterlab() -> None:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        require("JupyterLab", "pip install -e '.[dev]'")


@contextlib.contextmanager
def _jupyterlab(tmp: Path, profile: str):
    """``acpg-lab lab --profile PROFILE`` on 127.0.0.1; yields (base URL, token, log path). Jupyter's config,
    data, runtime, settings and workspaces live under ``tmp``, as do the notebooks' outputs
    (``ACPG_LAB_OUTPUT_ROOT``)."""
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp / "settings"
    for plugin, values in {"apputils-extension/notification": {"fetchNews": "false"},  # no news toast
                           "docmanager-extension/plugin": {"autosave": False}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    # JupyterLab serves a copy of the notebooks (results/ and docs/ beside them, as in the repository): running
    # them in a browser must never write outputs into the repository's notebooks.
    root = tmp / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("results", "docs"):
        (root / name).symlink_to(ROOT / name)
    runtime = tempfile.mkdtemp(prefix="jl-")  # short: kernels use Unix sockets there (paths <= 107 bytes)
    env = {**os.environ, "ACPG_LAB_OUTPUT_ROOT": str(tmp / "out"), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTER_RUNTIME_DIR": runtime, "JUPYTER_DATA_DIR": str(tmp / "data")}
    cmd = [sys.executable, "-m", "acpg_lab.cli", "lab", "--profile", profile, "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--root-dir", str(root)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = tmp / "jupyterlab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as answer:
                    if answer.status == 200:
                        break
            if time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab did not answer within 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token, log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)


def _open(page, url: str, token: str, notebook: str) -> None:
    """Open ``notebook`` in JupyterLab and wait until its kernel is idle."""
    path = f"notebooks/{notebook}.ipynb"
    page.goto(f"{url}/lab/tree/{path}?token={token}")
    page.wait_for_function(_APP_READY, arg=path, timeout=120_000, polling=250)


def _run_all(page, url: str, token: str, notebook: str, timeout_s: float, *, opened: bool = False
             ) -> list[list[dict]]:
    """Open ``notebook`` (unless ``opened``), wait for its kernel, run all cells, wait until every code cell has
    run; return the outputs of each code cell (nbformat JSON, read from JupyterLab's model)."""
    if not opened:
        _open(page, url, token, notebook)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function(_ALL_RAN, timeout=timeout_s * 1000, polling=500)
    return page.evaluate(_OUTPUTS)


def _problems(outputs: list[list[dict]]) -> list[str]:
    """Error outputs and warnings printed to stderr, per code cell."""
    found = []
    for i, cell in enumerate(outputs):
        for out in cell:
            if out.get("output_type") == "error":
                found.append(f"code cell {i}: {out.get('ename')}: {out.get('evalue')}")
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if out.get("name") == "stderr" and "Warning" in text:
                found.append(f"code cell {i} printed a warning: {text[:300]}")
    return found


def _text(outputs: list[list[dict]]) -> str:
    return "\n".join("".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
                     for cell in outputs for o in cell)


#: The lesson a learner runs to the end in the browser: the longest learner path, with the most to fold.
LESSON = "03_ppo_trust_region_failure"


def test_jupyterlab_runs_notebooks_00_and_03_in_a_real_browser(tmp_path):
    chromium = require_browser()
    _require_jupyterlab()
    shots = Screenshots(tmp_path / "screenshots")
    timings = {}
    try:
        with _jupyterlab(tmp_path, "ci") as (url, token, log_path), \
                browser_page(chromium, tmp_path / "chromium-profile") as page:
            start = time.perf_counter()
            outputs = _run_all(page, url, token, "00_simplex_etf", timeout_s=180)
            timings["00 run all"] = time.perf_counter() - start
            assert not _problems(outputs), _problems(outputs)
            assert "profile='ci'" in _text(outputs), "ACPG_LAB_PROFILE=ci did not reach the notebook"

            explorer = page.locator(".jp-Cell", has=page.locator(".widget-slider"))
            explorer.scroll_into_view_if_needed()
            images = explorer.locator(".jp-OutputArea-output img")
            assert images.count() == 1, "the explorer should first show one static figure"
            static = images.nth(0).get_attribute("src")
            shots.take(page, "00_ran_all_cells_explorer")
            k_slider = explorer.locator(".widget-slider", has=page.locator("text=K actions"))
            k_slider.locator(".noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")  # K: 4 -> 5
            live = explorer.locator(".widget-output img")
            live.first.wait_for(timeout=60_000)
            assert k_slider.locator(".widget-readout").inner_text().strip() == "5"
            assert live.first.get_attribute("src") != static, "moving K did not change the figure"
            explorer.scroll_into_view_if_needed()  # the cell, not its image: the widget may redraw the image again
            shots.take(page, "00_explorer_after_K_slider")

            _open(page, url, token, LESSON)
            state = page.evaluate(_APPENDIX_STATE)
            assert len(state) == 1, f"{LESSON}: {len(state)} markdown cells start with '## Evidence appendix'"
            assert state[0][0] and state[0][1] > 0, (
                f"{LESSON} opens with its evidence appendix unfolded (heading collapsed: {state[0][0]}, hidden "
                f"cells: {state[0][1]}); acpg_lab.lesson.collapse_file saves it collapsed")
            shots.take(page, "03_opened_appendix_collapsed")
            start = time.perf_counter()
            outputs = _run_all(page, url, token, LESSON, timeout_s=540, opened=True)
            timings["03 run all"] = time.perf_counter() - start
            assert not _problems(outputs), _problems(outputs)
            assert "profile='ci'" in _text(outputs) or "Smoke test" in _text(outputs), (
                "ACPG_LAB_PROFILE=ci did not reach notebook 03")
            out_dir = tmp_path / "out" / "runs" / "notebooks" / LESSON
            assert out_dir.is_dir() and any(out_dir.iterdir()), f"{LESSON} wrote nothing to {out_dir}"
            page.locator(".jp-Cell .jp-OutputArea-output").last.scroll_into_view_if_needed()
            shots.take(page, "03_ran_to_the_end")
            server_log = log_path.read_text()
            assert f"Serving notebooks from local directory: {tmp_path / 'root'}" in server_log
            assert "without encryption" not in server_log, "JupyterLab's kernels run over TCP (expected IPC)"
    except BaseException:
        print(f"JupyterLab browser test failed; {shots.where()}")
        raise
    print(f"timings: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}; {shots.where()}")


def test_a_missing_browser_skips_outside_ci_with_how_to_install_and_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        require("Chromium (/usr/bin/chromium)", "apt-get install -y chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"install it with: apt-get install -y chromium"):
        require("Chromium (/usr/bin/chromium)", "apt-get install -y chromium")
