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


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```bash")
    main_job, test_cmd = lines[start + 1], lines[start + 2]
    assert lines[start + 3] == "```" and start <= 2
    assert "acpg-lab" in main_job and "pytest" in test_cmd
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci_lines[-1] == test_cmd


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
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "model.pt", "evaluation.csv"}
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
