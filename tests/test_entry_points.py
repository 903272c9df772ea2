"""Every entry point speaks the same way (issue 26 items 3-5): usage errors are one line on stderr and exit 2, every
path a command writes is checked before its first environment step or notebook, every ``ACPG_LAB_*`` variable is
validated naming it, numeric arguments refuse booleans, NaN, infinities and out-of-range integers, an optional part
without its extra names the group to install, a Ray address where no Ray answers fails within seconds, and SIGTERM
or SIGINT stop a sweep promptly, keeping every finished run.

Each case asserts the exact error text and that nothing was written, trained or started."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
[sweep]
seeds = [0, 1]
[base]
env_id = "CartPole-v1"
total_steps = 512
num_envs = 4
rollout_steps = 64
device = "cpu"
[grid]
head = ["linear", "etf"]
"""


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _boom(what: str):
    def boom(*args, **kwargs):
        raise AssertionError(f"{what} started before the arguments were checked")
    return boom


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def blocker(tmp_path):
    """A plain file where a directory is meant."""
    path = tmp_path / "taken"
    path.write_text("keep me")
    return path


@pytest.fixture
def no_notebooks(monkeypatch):
    """Fail the test if a notebook is executed."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", _boom("a notebook"))


@pytest.fixture
def no_ray_tasks(monkeypatch):
    from acpg_lab import ray_tasks, sweep

    monkeypatch.setattr(sweep, "run_tasks", _boom("Ray tasks"))
    monkeypatch.setattr(sweep, "connect", _boom("Ray"))
    monkeypatch.setattr(ray_tasks, "connect", _boom("Ray"))


@pytest.fixture
def clean_env(monkeypatch):
    for name in [n for n in os.environ if n.startswith("ACPG_LAB_")]:
        monkeypatch.delenv(name)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    return err.rstrip("\n")


# ----------------------------------------------------------------------------- every output checked before work
class TestOutputPaths:
    def test_the_helper_writes_nothing_and_accepts_new_and_existing_directories(self, tmp_path):
        from acpg_lab.paths import check_output_dir

        (tmp_path / "old").mkdir()
        before = _listing(tmp_path)
        assert check_output_dir(tmp_path / "old", what="x") == tmp_path / "old"
        assert check_output_dir(tmp_path / "new" / "deeper", what="x") == tmp_path / "new" / "deeper"
        assert _listing(tmp_path) == before

    def test_a_directory_that_cannot_be_created_even_by_root(self):
        from acpg_lab.paths import check_output_dir

        with pytest.raises(ValueError) as err:
            check_output_dir("/proc/acpg-lab-out", what="output directory")
        assert str(err.value) == ("output directory /proc/acpg-lab-out cannot be created: No such file or directory "
                                  "(/proc)")

    def test_the_helper_refuses_an_inner_file_where_a_directory_goes(self, tmp_path):
        from acpg_lab.paths import check_output_dir

        (tmp_path / "figures").write_text("")
        with pytest.raises(ValueError) as err:
            check_output_dir(tmp_path, what="output directory", subdirs=["figures"])
        assert str(err.value) == (f"output directory {tmp_path} holds a file figures where a directory goes; move "
                                  "it away")

    def test_book_out_under_a_file_fails_before_any_notebook(self, tmp_path, blocker, no_notebooks, capsys,
                                                              clean_env):
        from acpg_lab.cli import main

        before = _listing(tmp_path)
        out = blocker / "site"
        assert main(["book", "--profile", "ci", "--out", str(out), "--runs", str(tmp_path / "runs"),
                     "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == (f"acpg-lab: error: book directory --out {out} cannot be created: {blocker} is "
                                     "a file, not a directory")
        assert _listing(tmp_path) == before

    def test_book_runs_under_a_file_fails_before_any_notebook(self, tmp_path, blocker, no_notebooks, capsys,
                                                               clean_env):
        from acpg_lab.cli import main

        before = _listing(tmp_path)
        runs = blocker / "runs"
        assert main(["book", "--profile", "ci", "--out", str(tmp_path / "site"), "--runs", str(runs),
                     "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == (f"acpg-lab: error: runs directory --runs {runs} cannot be created: {blocker} "
                                     "is a file, not a directory")
        assert _listing(tmp_path) == before

    def test_book_out_that_holds_the_runs_is_refused(self, tmp_path, no_notebooks, capsys, clean_env):
        from acpg_lab.cli import main

        assert main(["book", "--profile", "ci", "--out", str(tmp_path), "--runs", str(tmp_path / "runs"),
                     "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == (f"acpg-lab: error: book directory --out {tmp_path} holds the executed "
                                     f"notebooks' directory --runs {tmp_path / 'runs'}, which the build would "
                                     "delete; choose another --out")
        assert _listing(tmp_path) == []

    def test_notebooks_results_under_a_file_fails_before_the_first_notebook(self, tmp_path, blocker, no_notebooks,
                                                                            capsys, clean_env):
        from acpg_lab.cli import main

        before = _listing(tmp_path)
        results = blocker / "results"
        assert main(["notebooks", "--profile", "ci", "--out", str(tmp_path / "nb"), "--only", "00_simplex_etf",
                     "--results", str(results)]) == 2
        assert _one_line(capsys) == (f"acpg-lab: error: results directory {results} cannot be created: {blocker} "
                                     "is a file, not a directory")
        assert _listing(tmp_path) == before

    def test_notebooks_out_whose_figures_is_a_file_fails_before_the_first_notebook(self, tmp_path, no_notebooks,
                                                                                   capsys, clean_env):
        from acpg_lab.cli import main

        out = tmp_path / "nb"
        out.mkdir()
        (out / "figures").write_text("not a folder")
        before = _listing(tmp_path)
        assert main(["notebooks", "--profile", "ci", "--out", str(out), "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == (f"acpg-lab: error: output directory {out} holds a file figures where a "
                                     "directory goes; move it away")
        assert _listing(tmp_path) == before

    @pytest.mark.parametrize(("inner", "kind"), [("runs", "file"), ("sweep.parquet", "dir"), ("spec.json", "dir")])
    def test_sweep_out_with_a_wrong_kind_inside_is_refused_before_ray(self, tmp_path, spec, no_ray_tasks, capsys,
                                                                      inner, kind, clean_env):
        from acpg_lab.cli import main

        out = tmp_path / "sweep"
        out.mkdir()
        (out / inner).mkdir() if kind == "dir" else (out / inner).write_text("")
        before = _listing(tmp_path)
        assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 2
        expected = (f"the sweep directory --out {out} holds a file runs where a directory goes; move it away"
                    if kind == "file" else
                    f"{inner} in the sweep directory --out {out} {out / inner} is a directory, not a file")
        assert _one_line(capsys) == f"acpg-lab: error: {expected}"
        assert _listing(tmp_path) == before

    def test_demo_out_under_a_file_fails_before_training(self, tmp_path, blocker, monkeypatch, capsys, clean_env):
        import acpg_lab as al
        from acpg_lab.cli import main

        monkeypatch.setattr(al, "train", _boom("training"))
        out = blocker / "demo"
        assert main(["demo", "--out", str(out), "--steps", "512", "--seeds", "0", "--quiet"]) == 2
        assert _one_line(capsys) == (f"acpg-lab: error: --out {out} cannot be created: {blocker} is a file, not a "
                                     "directory")
        assert blocker.read_text() == "keep me"

    def test_evidence_run_root_under_a_file_fails_before_training(self, tmp_path, blocker, monkeypatch, capsys,
                                                                  clean_env):
        import acpg_lab.evidence.__main__ as evidence_main

        monkeypatch.setattr(evidence_main, "run_experiment", _boom("training"))
        root = blocker / "ev"
        assert evidence_main.main(["run", "collapse", "--root", str(root)]) == 2
        assert _one_line(capsys) == (f"python -m acpg_lab.evidence: error: evidence directory --root {root} cannot "
                                     f"be created: {blocker} is a file, not a directory")
        assert _listing(tmp_path) == ["taken"]

    def test_evidence_report_whose_tables_is_a_file_fails_before_computing(self, tmp_path, monkeypatch, capsys,
                                                                           clean_env):
        import acpg_lab.evidence.__main__ as evidence_main

        monkeypatch.setattr(evidence_main, "report", _boom("the report"))
        (tmp_path / "tables").write_text("")
        assert evidence_main.main(["report", "--root", str(tmp_path)]) == 2
        assert _one_line(capsys) == (f"python -m acpg_lab.evidence: error: tables directory {tmp_path / 'tables'} "
                                     "is a file, not a directory")
        assert _listing(tmp_path) == ["tables"]

    def test_benchmarks_readme_that_cannot_be_written_fails_before_measuring(self, tmp_path, blocker, monkeypatch,
                                                                             capsys, clean_env):
        sys.path.insert(0, str(ROOT))
        monkeypatch.setattr(sys, "path", sys.path)
        import benchmarks.__main__ as bench

        monkeypatch.setattr(bench, "run", _boom("the benchmark"))
        monkeypatch.setattr(bench, "README", blocker / "README.md")
        assert bench.main(["--quick"]) == 2
        assert _one_line(capsys) == (f"python -m benchmarks: error: the directory of the benchmark table {blocker} "
                                     "is a file, not a directory")
        assert blocker.read_text() == "keep me"


# ----------------------------------------------------------------------------- ACPG_LAB_* variables
class TestEnvironmentVariables:
    @pytest.mark.parametrize(("name", "value", "message"), [
        ("ACPG_LAB_PROFILE", "fast", "environment variable ACPG_LAB_PROFILE must be one of ('ci', 'default', 'full') "
                                     "(or unset), got 'fast'"),
        ("ACPG_LAB_FAST_ENVS", "maybe", "ACPG_LAB_FAST_ENVS must be one of 1, true, yes, on (batched environments, "
                                        "the default) or 0, false, no, off (one environment at a time), got 'maybe'"),
        ("ACPG_LAB_CHECK_FIGURES", "yes", "environment variable ACPG_LAB_CHECK_FIGURES must be 0 or 1, got 'yes'"),
        ("ACPG_LAB_OUTPUT_ROOT", "  ", "environment variable ACPG_LAB_OUTPUT_ROOT is blank ('  '): set it to a "
                                       "directory or unset it"),
    ])
    def test_acpg_lab_notebooks_names_a_bad_variable_before_any_notebook(self, tmp_path, monkeypatch, no_notebooks,
                                                                         capsys, name, value, message, clean_env):
        from acpg_lab.cli import main

        monkeypatch.setenv(name, value)
        assert main(["notebooks", "--profile", "ci", "--out", str(tmp_path / "nb"), "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == f"acpg-lab: error: {message}"
        assert _listing(tmp_path) == []

    def test_a_misspelt_variable_is_named_with_the_closest_one(self, tmp_path, monkeypatch, no_notebooks, capsys,
                                                              clean_env):
        from acpg_lab.cli import main

        monkeypatch.setenv("ACPG_LAB_PROFLE", "ci")
        assert main(["notebooks", "--profile", "ci", "--out", str(tmp_path / "nb"), "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == (
            "acpg-lab: error: environment variable ACPG_LAB_PROFLE is not one acpg_lab reads (did you mean "
            "ACPG_LAB_PROFILE?); it reads ['ACPG_LAB_CHECK_FIGURES', 'ACPG_LAB_CHROMIUM', 'ACPG_LAB_FAST_ENVS', "
            "'ACPG_LAB_OUTPUT_ROOT', 'ACPG_LAB_PROFILE']")
        assert _listing(tmp_path) == []

    def test_output_root_that_is_a_file_is_named(self, blocker, monkeypatch, clean_env):
        from acpg_lab.profiles import ParameterError, output_root

        monkeypatch.setenv("ACPG_LAB_OUTPUT_ROOT", str(blocker / "sub"))
        with pytest.raises(ParameterError) as err:
            output_root()
        assert str(err.value) == (f"environment variable ACPG_LAB_OUTPUT_ROOT: directory {blocker / 'sub'} cannot "
                                  f"be created: {blocker} is a file, not a directory")

    def test_evidence_names_a_bad_variable_before_training(self, tmp_path, monkeypatch, capsys, clean_env):
        import acpg_lab.evidence.__main__ as evidence_main

        monkeypatch.setattr(evidence_main, "run_experiment", _boom("training"))
        monkeypatch.setenv("ACPG_LAB_CHECK_FIGURES", "2")
        assert evidence_main.main(["run", "collapse", "--root", str(tmp_path / "ev")]) == 2
        assert _one_line(capsys) == ("python -m acpg_lab.evidence: error: environment variable "
                                     "ACPG_LAB_CHECK_FIGURES must be 0 or 1, got '2'")
        assert _listing(tmp_path) == []


# ----------------------------------------------------------------------------- usage errors: one line, exit 2
class TestUsageErrors:
    @pytest.mark.parametrize(("argv", "message"), [
        (["sweep"], "acpg-lab sweep: error: the following arguments are required: spec, --out"),
        (["notebooks", "--profile", "fast", "--out", "x"],
         "acpg-lab notebooks: error: argument --profile: invalid choice: 'fast' (choose from 'ci', 'default', 'full')"),
        (["train", "--out", "x", "--steps", "many"], "acpg-lab train: error: argument --steps: invalid int value: "
                                                     "'many'"),
    ])
    def test_acpg_lab_argparse_errors_are_one_line(self, argv, message, capsys):
        from acpg_lab.cli import main

        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and _one_line(capsys) == message

    def test_evidence_argparse_errors_are_one_line(self, capsys):
        import acpg_lab.evidence.__main__ as evidence_main

        with pytest.raises(SystemExit) as exit_:
            evidence_main.main(["run", "nothing"])
        assert exit_.value.code == 2
        assert _one_line(capsys).startswith("python -m acpg_lab.evidence run: error: argument experiment: invalid "
                                            "choice: 'nothing' (choose from ")

    @pytest.mark.parametrize(("argv", "message"), [
        (["--max-seeds", "0"], "--max-seeds must be an integer >= 1, got 0"),
        (["--max-seeds", "many"], "argument --max-seeds: invalid int value: 'many'"),
    ])
    def test_benchmarks_usage_errors_are_one_line(self, argv, message, monkeypatch, capsys, clean_env):
        sys.path.insert(0, str(ROOT))
        monkeypatch.setattr(sys, "path", sys.path)
        import benchmarks.__main__ as bench

        monkeypatch.setattr(bench, "run", _boom("the benchmark"))
        try:
            code = bench.main([*argv, "--no-write"])
        except SystemExit as exit_:
            code = exit_.code
        assert code == 2 and _one_line(capsys) == f"python -m benchmarks: error: {message}"

    def test_train_refuses_zero_eval_episodes_before_training(self, tmp_path, monkeypatch, capsys, clean_env):
        import acpg_lab as al
        from acpg_lab.cli import main

        monkeypatch.setattr(al, "train", _boom("training"))
        assert main(["train", "--out", str(tmp_path / "run"), "--eval-episodes", "0", "--quiet"]) == 2
        assert _one_line(capsys) == "acpg-lab: error: --eval-episodes must be an integer >= 1, got 0"
        assert _listing(tmp_path) == []

    @pytest.mark.parametrize("address", ["localhost", "127.0.0.1:70000", "host:port", "ray://h:10001"])
    def test_sweep_address_that_is_not_host_port_is_refused_at_once(self, tmp_path, spec, no_ray_tasks, capsys,
                                                                   address, clean_env):
        from acpg_lab.cli import main

        assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--address", address, "--quiet"]) == 2
        assert _one_line(capsys) == ("acpg-lab: error: --address must be HOST:PORT of a Ray head (port 1-65535) or "
                                     f"'auto', got {address!r}")
        assert _listing(tmp_path) == ["sweep.toml"]


# ----------------------------------------------------------------------------- numeric arguments of constructors
@pytest.fixture
def no_tensor_built(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a tensor was built before the arguments were checked")
    for name in ("eye", "randn", "empty", "zeros", "ones", "stack"):
        monkeypatch.setattr(torch, name, boom)


class TestNumericArguments:
    @pytest.mark.parametrize(("scheme", "seed", "message"), [
        ("derived", 2**63, f"seeds must be <= {2**63 - 1} under the 'derived' seed scheme (they are stored as "
                           f"int64), got {2**63}"),
        ("legacy", 2**60, f"seeds must be <= {(2**63 - 3 - 2 * (2**32 - 1)) // 7919} under the 'legacy' seed "
                          f"scheme (they are stored as int64), got {2**60}"),
        ("derived", True, "seeds (each of (True,)) must be a non-negative integer, got True"),
    ])
    def test_train_config_refuses_seeds_out_of_the_schemes_range(self, scheme, seed, message):
        import acpg_lab as al

        with pytest.raises(ValueError) as err:
            al.TrainConfig(seeds=(seed,), seed_scheme=scheme).resolve()
        assert str(err.value) == message

    @pytest.mark.parametrize(("notebook", "param", "message"), [
        ("01_observing_action_collapse", "seeds=[0,-1]", f"parameter seeds must hold seeds in [0, {2**63 - 1}], "
                                                         "got -1"),
        ("05_sb3_etf_policy", "seeds=[5000000]", "parameter seeds must hold seeds in [0, 4293966], got 5000000"),
        ("05_sb3_etf_policy", "exercise_seeds=[True]", "parameter exercise_seeds must be a non-empty list of "
                                                       "integers, got [True]"),
    ])
    def test_notebook_seeds_out_of_their_consumers_range_stop_the_runner(self, tmp_path, notebook, param, message,
                                                                         no_notebooks, capsys, clean_env):
        from acpg_lab.cli import main

        assert main(["notebooks", "--profile", "ci", "--out", str(tmp_path / "nb"), "--only", notebook,
                     "--param", param]) == 2
        assert _one_line(capsys) == f"acpg-lab: error: {notebook}: {message}"
        assert _listing(tmp_path) == []

    @pytest.mark.parametrize(("kwargs", "message"), [
        (dict(num_actions=True), "num_actions must be an integer >= 2, got True"),
        (dict(seeds=[0, 0]), "seeds must be distinct, [0] appear more than once in (0, 0)"),
        (dict(seeds=[-1]), "seeds (each of (-1,)) must be a non-negative integer, got -1"),
        (dict(hidden_sizes=(64, 0)), "hidden_sizes (each of (64, 0)) must be an integer >= 1, got 0"),
        (dict(obs_shape=(4.0,)), "obs_shape (each of (4.0,)) must be an integer >= 1, got 4.0"),
        (dict(init_offset=True), "init_offset must be a non-negative integer, got True"),
        (dict(shared_trunk=1), "shared_trunk must be True or False, got 1"),
        (dict(head_scale=math.nan), "scale must be > 0 and finite (a number, not a bool), got nan"),
        (dict(head_init_gain=math.inf), "init_gain must be > 0 and finite (a number, not a bool), got inf"),
    ])
    def test_actor_critic_refuses_bad_arguments_before_any_tensor(self, kwargs, message, no_tensor_built):
        from acpg_lab.networks import ActorCritic

        args = dict(obs_shape=(4,), num_actions=2, seeds=[0, 1]) | kwargs
        with pytest.raises(ValueError) as err:
            ActorCritic(args.pop("obs_shape"), args.pop("num_actions"), args.pop("seeds"), **args)
        assert str(err.value) == message

    @pytest.mark.parametrize(("options", "message"), [
        (dict(head_scale=math.inf), "head_scale must be > 0 and finite (a number, not a bool), got inf"),
        (dict(head_scale=True), "head_scale must be > 0 and finite (a number, not a bool), got True"),
        (dict(head_bias=1), "head_bias must be True or False, got 1"),
        (dict(head_seeds=-1), f"head_seeds must be None (canonical orientation) or one int in [0, {2**64 - 1}] (a "
                              "random orientation); an SB3 model trains one seed, so it has one frame. Got -1"),
    ])
    def test_sb3_policy_refuses_bad_head_options_before_sb3_builds(self, options, message, monkeypatch):
        pytest.importorskip("stable_baselines3")
        import gymnasium as gym
        from stable_baselines3.common.policies import ActorCriticPolicy

        from acpg_lab.sb3 import ETFActorCriticPolicy

        monkeypatch.setattr(ActorCriticPolicy, "__init__", _boom("SB3's policy"))
        with pytest.raises(ValueError) as err:
            ETFActorCriticPolicy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), lambda _: 1e-3, **options)
        assert str(err.value) == message

    @pytest.mark.parametrize(("kwargs", "message"), [
        (dict(clip=True), "clip must be None or a finite number > 0 (not a bool), got True"),
        (dict(clip=math.nan), "clip must be None or a finite number > 0 (not a bool), got nan"),
        (dict(verbose=-1), "verbose must be a non-negative integer, got -1"),
    ])
    def test_sb3_callback_refuses_bad_numbers(self, kwargs, message):
        pytest.importorskip("stable_baselines3")
        from acpg_lab.sb3 import DiagnosticsCallback

        with pytest.raises(ValueError) as err:
            DiagnosticsCallback(**kwargs)
        assert str(err.value) == message

    @pytest.mark.parametrize(("kwargs", "message"), [
        (dict(seed=2**32), f"seed must be <= 4293966 (SB3 seeds numpy's 32-bit generators from it), got {2**32}"),
        (dict(total_steps=True), "total_steps must be a non-negative integer, got True"),
        (dict(episodes=0), "episodes must be an integer >= 1, got 0"),
        (dict(num_threads=0), "num_threads (or None) must be an integer >= 1, got 0"),
    ])
    def test_sb3_train_and_evaluate_refuses_bad_numbers_before_any_environment(self, kwargs, message, monkeypatch,
                                                                                tmp_path):
        pytest.importorskip("stable_baselines3")
        from acpg_lab.sb3 import runs

        monkeypatch.setattr(runs, "make_vec_env", _boom("an environment"))
        with pytest.raises(ValueError) as err:
            runs.train_and_evaluate("CartPole-v1", directory=tmp_path / "run", **kwargs)
        assert str(err.value) == message
        assert _listing(tmp_path) == []


# ----------------------------------------------------------------------------- optional parts without their extra
class TestMissingExtras:
    def test_require_extra_names_the_group(self, monkeypatch):
        from acpg_lab.entry import MissingExtra, require_extra

        monkeypatch.setitem(sys.modules, "stable_baselines3", None)
        with pytest.raises(MissingExtra) as err:
            require_extra("stable_baselines3", "sb3", needed_by="acpg_lab.sb3")
        assert str(err.value) == ("acpg_lab.sb3 needs the 'sb3' extra (no module named 'stable_baselines3'): "
                                  "pip install 'acpg-lab[sb3]'")
        assert isinstance(err.value, ModuleNotFoundError)

    def test_import_acpg_lab_sb3_without_sb3_names_the_extra(self):
        code = ("import sys; sys.modules['stable_baselines3'] = None\n"
                "try:\n    import acpg_lab.sb3\nexcept ModuleNotFoundError as err:\n    print(err)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.stdout == ("acpg_lab.sb3 needs the 'sb3' extra (no module named 'stable_baselines3'): "
                               "pip install 'acpg-lab[sb3]'\n"), done.stderr

    def test_sweep_without_ray_is_one_line_and_writes_nothing(self, tmp_path, spec, monkeypatch, capsys, clean_env):
        from acpg_lab import sweep
        from acpg_lab.cli import main

        monkeypatch.setitem(sys.modules, "ray", None)
        monkeypatch.setattr(sweep, "run_tasks", _boom("Ray tasks"))
        assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2
        assert _one_line(capsys) == ("acpg-lab: error: acpg-lab sweep needs the 'sweep' extra (no module named "
                                     "'ray'): pip install 'acpg-lab[sweep]'")
        assert _listing(tmp_path) == ["sweep.toml"]

    def test_book_without_jupyter_book_is_one_line(self, tmp_path, monkeypatch, no_notebooks, capsys, clean_env):
        from acpg_lab.cli import main

        monkeypatch.setitem(sys.modules, "jupyter_book", None)
        assert main(["book", "--profile", "ci", "--out", str(tmp_path / "site"), "--only", "00_simplex_etf"]) == 2
        assert _one_line(capsys) == ("acpg-lab: error: acpg-lab book (Jupyter Book) needs the 'book' extra (no "
                                     "module named 'jupyter_book'): pip install 'acpg-lab[book]'")
        assert _listing(tmp_path) == []

    def test_benchmarks_without_sb3_is_one_line(self, monkeypatch, capsys, clean_env):
        sys.path.insert(0, str(ROOT))
        monkeypatch.setattr(sys, "path", sys.path)
        import benchmarks.__main__ as bench

        monkeypatch.setattr(bench, "run", _boom("the benchmark"))
        monkeypatch.setitem(sys.modules, "stable_baselines3", None)
        assert bench.main(["--no-write"]) == 2
        assert _one_line(capsys) == ("python -m benchmarks: error: python -m benchmarks needs the 'bench' extra (no "
                                     "module named 'stable_baselines3'): pip install 'acpg-lab[bench]'")


# ----------------------------------------------------------------------------- sweeps that cannot hang (subprocesses)
def _fake_server(mode: str):
    """A TCP server on a free local port that is not Ray: it accepts, then writes garbage ("garbage") or nothing
    ("silent"), and keeps the connection open."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if mode == "garbage":
                try:
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nnot a Ray GCS\n" * 20)
                except OSError:
                    pass
        for conn in held:
            conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], stop


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPG_LAB_")} | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "acpg_lab.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


class TestSweepsThatCannotHang:
    @pytest.mark.parametrize("mode", ["garbage", "silent"])
    def test_address_where_something_else_listens_fails_within_seconds(self, tmp_path, spec, mode):
        port, stop = _fake_server(mode)
        out = tmp_path / "out"
        start = time.monotonic()
        try:
            proc = _cli("sweep", str(spec), "--out", str(out), "--address", f"127.0.0.1:{port}", "--quiet")
            _, err = proc.communicate(timeout=60)
        finally:
            stop.set()
        seconds = time.monotonic() - start
        assert proc.returncode == 2, err
        assert err == (f"acpg-lab: error: cannot reach a Ray cluster at --address '127.0.0.1:{port}': something "
                       "listens there but gave no Ray handshake within 8 s (is it a Ray head's GCS port?); start one "
                       "with `ray start --head --port=6379` and pass its address HOST:6379\n")
        assert seconds < 20, f"{seconds:.1f} s from start to error"
        assert not out.exists()
        print(f"--address {mode}: {seconds:.1f} s from start to error")

    def test_an_interrupted_task_is_never_stored_as_finished(self, tmp_path, monkeypatch):
        """`acpg_lab.train` turns a KeyboardInterrupt into a partial run; a sweep task must not store it."""
        import tomllib
        from types import SimpleNamespace

        import pandas as pd

        from acpg_lab import sweep, training
        from acpg_lab.store import is_finished

        task = sweep.parse_spec(tomllib.loads(SPEC)).tasks()[0]
        partial = SimpleNamespace(interrupted=True, history=pd.DataFrame({"seed": [0], "update": [1]}))
        monkeypatch.setattr(training, "train", lambda *args, **kwargs: partial)
        run_dir = tmp_path / "runs" / task.name
        with pytest.raises(KeyboardInterrupt, match=f"^sweep task {task.name} interrupted after 1 history rows"):
            sweep.train_task(task.config.to_dict(), task.condition, str(run_dir))
        assert not (run_dir / "history.parquet").exists() and not is_finished(run_dir, kind="sweep_task")

    def test_address_auto_without_a_cluster_is_one_line(self, tmp_path, spec, monkeypatch, capsys, clean_env):
        ray = pytest.importorskip("ray")
        from acpg_lab.cli import main

        if ray.is_initialized():
            pytest.skip("a Ray session of this process would be used as it is")
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        out = tmp_path / "out"
        assert main(["sweep", str(spec), "--out", str(out), "--address", "auto", "--quiet"]) == 2
        assert _one_line(capsys) == (
            "acpg-lab: error: cannot reach a Ray cluster at --address 'auto' (Could not find any running Ray "
            "instance. Please specify the one to connect to by setting `--address` flag or `RAY_ADDRESS` environment "
            "variable.); start one with `ray start --head --port=6379` and pass its address HOST:6379")
        assert not out.exists()

    def test_num_cpus_zero_fails_at_once(self, tmp_path, spec):
        start = time.monotonic()
        proc = _cli("sweep", str(spec), "--out", str(tmp_path / "out"), "--num-cpus", "0", "--quiet")
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - start
        assert proc.returncode == 2 and err == "acpg-lab: error: --num-cpus must be an integer >= 1, got 0\n"
        assert seconds < 15 and not (tmp_path / "out").exists()
        print(f"--num-cpus 0: {seconds:.1f} s from start to error")

    @pytest.mark.slow
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_signal_stops_a_local_ray_sweep_and_keeps_finished_runs(self, tmp_path, signum):
        import pandas as pd

        from acpg_lab.store import is_finished

        spec = tmp_path / "sweep.toml"  # 4 tasks, one at a time: the first finishes long before the last
        spec.write_text(SPEC.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3]\nseeds_per_task = 2")
                        .replace("total_steps = 512", "total_steps = 8192"))
        out = tmp_path / "out"
        proc = _cli("sweep", str(spec), "--out", str(out), "--num-cpus", "1", "--quiet")
        deadline = time.monotonic() + 240
        try:
            while not list(out.glob("runs/*/history.parquet")) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
            assert list(out.glob("runs/*/history.parquet")), "no task finished in time"
            sent = time.monotonic()
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
            seconds = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 128 + signum, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"acpg-lab: sweep stopped by {signal.Signals(signum).name}: ") and \
            last.endswith("tasks finished and kept in " + str(out) + ", the running ones cancelled (they resume "
                          "from their checkpoints); rerun the same command to continue"), err
        assert seconds < 30, f"{seconds:.1f} s from the signal to the exit"
        assert not (out / "sweep.parquet").exists()  # no half-written table
        finished = [d for d in (out / "runs").iterdir() if is_finished(d, kind="sweep_task")]
        assert finished and len(finished) < 4
        for run in finished:  # each finished run still loads
            assert len(pd.read_parquet(run / "history.parquet")) > 0
        print(f"{signal.Signals(signum).name}: {seconds:.1f} s from the signal to the exit, {len(finished)} of 4 kept")

    @pytest.mark.slow
    def test_sigterm_stops_a_local_evidence_run_with_one_line(self, tmp_path):
        """The local process path (no Ray): SIGTERM mid-training ends the command with one line and 143, the
        pieces stored before it intact (each piece is written whole, so none is half there)."""
        from acpg_lab.evidence.pieces import PIECE
        from acpg_lab.store import is_finished

        root = tmp_path / "ev"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACPG_LAB_")} | {"OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "acpg_lab.evidence", "run", "collapse", "--only",
                                 "onehot/balanced", "--root", str(root)], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not (root.exists() and any(root.rglob("*"))) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
            time.sleep(1.0)  # inside the training loop
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            seconds = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 143, err
        assert err.strip().splitlines()[-1] == ("python -m acpg_lab.evidence: stopped by SIGTERM: the pieces stored "
                                                "so far are kept; rerun the same command to continue"), err
        assert seconds < 15, f"{seconds:.1f} s from the signal to the exit"
        for piece in (p for p in root.rglob("seeds_*") if p.is_dir() and is_finished(p, kind="piece")):
            assert json.loads((piece / PIECE).read_text())  # a stored piece is whole
        print(f"evidence SIGTERM: {seconds:.1f} s from the signal to the exit")
