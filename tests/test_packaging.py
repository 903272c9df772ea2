"""The README's commands, .ci/run, the pins and binder/ agree with each other; the command line works."""

import re
import tomllib
from pathlib import Path

import pytest

from acpg_lab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = {}
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([0-9][^ ;]*)", dep)
        assert match, f"dependency {dep!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(3)
    return pins


def test_readme_opens_with_the_three_commands_and_ci_runs_the_second():
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```bash")
    main_job, test_cmd, lab = lines[start + 1], lines[start + 2], lines[start + 3]
    assert lines[start + 4] == "```" and start <= 2
    assert "acpg-lab notebooks" in main_job and "pytest" in test_cmd
    setup = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && "
    assert lab == setup + ".venv/bin/acpg-lab lab"  # JupyterLab from the same venv
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci_lines[-1] == test_cmd


def test_jupyterlab_nbval_and_the_browser_tools_are_in_what_the_readme_installs():
    pins = _pins()
    assert pins["jupyterlab"].startswith("4.") and "nbval" in pins and "playwright" in pins
    assert pins["jupyter-book"].startswith("1."), "Jupyter Book 2 fetches its theme online at build time"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "jupyterlab==" + pins["jupyterlab"] in project["dependencies"]  # also what binder's `-e .` installs
    assert project["optional-dependencies"]["book"] == ["jupyter-book==" + pins["jupyter-book"],
                                                        "sphinx-mathjax-offline==" + pins["sphinx-mathjax-offline"]]


def test_no_file_of_the_product_points_outside_the_repository():
    """Definitions are cited from docs/, which is in the repository; nothing refers to the project's shared
    folder beside it, which users do not have."""
    outside = re.compile(r"(?<![\w-])shared" + "/")  # spelled in two parts so that this file does not match
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = ROOT / name
        if path.suffix in {".py", ".md", ".ipynb", ".toml", ".txt", ".yml", ".cfg"} or name == ".ci/run":
            if path.is_file() and outside.search(path.read_text(errors="replace")):
                offenders.append(name)
    assert not offenders
    assert (ROOT / "docs" / "metrics.md").is_file()


def test_cli_kernel_registers_this_environment(tmp_path, capsys):
    import json
    import sys

    assert main(["kernel", "--prefix", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/acpg-lab/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    assert spec["display_name"] == f"acpg-lab (Python {sys.version_info.major}.{sys.version_info.minor})"
    assert "registered" in capsys.readouterr().out


def test_cli_lab_rejects_a_bad_profile_before_starting(monkeypatch, capsys):
    monkeypatch.setenv("ACPG_LAB_PROFILE", "fast")
    assert main(["lab"]) == 2
    assert "ACPG_LAB_PROFILE must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lab", "--profile", "huge"])
    monkeypatch.delenv("ACPG_LAB_PROFILE")
    assert main(["lab", "--root-dir", str(ROOT / "docs")]) == 2
    assert "has no notebooks/00_simplex_etf.ipynb" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["notebooks", "--out", "x", "--no-browser"])  # unknown options go to jupyter only for `lab`


def test_cli_notebooks_cuda_without_a_gpu_fails_before_anything_runs(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["notebooks", "--profile", "ci", "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "sees no GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_torch_is_pinned_and_binder_follows_the_pins():
    pins = _pins()
    assert pins["torch"] == "2.13.0"
    binder = (ROOT / "binder/requirements.txt").read_text()
    assert f"torch=={pins['torch']}+cpu" in binder and "-e ." in binder.splitlines()
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"


def test_cli_train_writes_a_run_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--env", "CartPole-v1", "--seeds", "0", "--steps", "512", "--out", str(out), "--quiet",
                 "--set", "num_envs=2", "rollout_steps=64", "minibatch_size=64", "--eval-episodes", "2"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "model.pt", "manifest.json",
                                              "evaluation.csv"}
    assert main(["train", "--env", "Nope-v0", "--steps", "512", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "env_id='Nope-v0'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), "--set", "colour=red"]) == 2
    with pytest.raises(SystemExit):
        main(["train", "--algo", "dqn", "--out", str(tmp_path / "z")])


def test_cli_notebooks_param_is_parsed_and_checked_before_running(tmp_path, capsys):
    args = ["notebooks", "--profile", "ci", "--out", str(tmp_path), "--only", "00_simplex_etf"]
    assert main([*args, "--param", "bandit_steps=5"]) == 2
    assert "takes no parameter(s) ['bandit_steps']" in capsys.readouterr().err
    assert main([*args, "--param", "seeds"]) == 2
    assert "--param expects key=value" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.ipynb"))  # nothing ran
