"""Every notebook passes nbval with ACPG_LAB_PROFILE=ci (FutureWarnings as errors); its parameters are validated;
notebooks are stored without outputs and show figures by name. (The papermill main job is tested in test_book.py,
whose book is built from its executed notebooks.)"""

import os
import re
import subprocess
import sys

import nbformat
import pytest

from acpg_lab.figstyle import CHECK_ENV
from acpg_lab.profiles import NOTEBOOKS, OUTPUT_ROOT_ENV, PROFILE_ENV, ParameterError, notebook_params
from acpg_lab.runner import NOTEBOOK_DIR, NotebookFailed, list_notebooks, run_notebooks

NAMES = list_notebooks()


@pytest.fixture(autouse=True)
def _own_output_root(tmp_path, monkeypatch):
    """Notebook outputs go under the test's directory, and no profile comes from the caller's environment."""
    monkeypatch.setenv(OUTPUT_ROOT_ENV, str(tmp_path / "output_root"))
    monkeypatch.delenv(PROFILE_ENV, raising=False)


def test_every_notebook_has_a_profile_table_and_a_parameters_cell():
    assert NAMES and set(NAMES) <= set(NOTEBOOKS)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[0] is tagged[0] and f'notebook_params("{name}", globals())' in code[1].source
        # profile left unset, so that ACPG_LAB_PROFILE applies; an explicit value would override it
        assert re.search(r"^profile = None\b", tagged[0].source, re.M), name


@pytest.mark.parametrize("name", NAMES)
def test_first_cell_states_run_times_and_how_to_change_the_profile(name):
    first = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4).cells[0]
    assert first.cell_type == "markdown"
    text = first.source
    assert "Run time and profile" in text, name
    for profile in ("`ci`", "`default`", "`full`"):
        assert profile in text, (name, profile)
    assert "parameters cell" in text and "ACPG_LAB_PROFILE" in text, name


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_keep_the_default_kernel_name(name):
    """The notebooks name the standard ``python3`` kernel: papermill, nbval and Binder open it with no flag, and
    the venv's JupyterLab runs it in the venv. The named kernel ``acpg-lab`` (``acpg-lab kernel``) is for other
    JupyterLabs; stored in the metadata it would fail papermill wherever it is not registered (NoSuchKernel)."""
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == "python3"


def _nbval(notebook, tmp_path) -> subprocess.CompletedProcess:
    """``ACPG_LAB_PROFILE=ci pytest --nbval-lax NOTEBOOK`` in a subprocess, outputs under ``tmp_path/root``, with
    ``PYTHONWARNINGS=error::FutureWarning`` in the kernel: a library FutureWarning that would print into the
    learner's notebook fails its cell instead (the one known, precisely filtered warning excepted); and with
    ``ACPG_LAB_CHECK_FIGURES=1``, so that a figure that does not read at book width fails its cell."""
    env = {**os.environ, PROFILE_ENV: "ci", OUTPUT_ROOT_ENV: str(tmp_path / "root"),
           "PYTHONWARNINGS": "error::FutureWarning", CHECK_ENV: "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q",
                           "-p", "no:cacheprovider", "-p", "no:xdist", "--rootdir", str(notebook.parent),
                           str(notebook)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_passes_nbval_with_the_ci_profile_from_the_environment(name, tmp_path):
    """Every cell runs without error (and without a FutureWarning), the profile coming from the environment as in
    JupyterLab (nothing is injected into the notebook), its outputs in the one output tree."""
    done = _nbval(NOTEBOOK_DIR / f"{name}.ipynb", tmp_path)
    cells = sum(c.cell_type == "code" for c in nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4).cells)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert re.search(rf"\b{cells} passed\b", done.stdout), done.stdout[-2000:]  # one nbval test per code cell
    assert list((tmp_path / "root" / "runs" / "notebooks" / name).iterdir()) or name == "00_simplex_etf"


def test_nbval_fails_a_cell_that_errs_or_warns(tmp_path):
    """The nbval check can fail: a cell raising, a library FutureWarning, an exercise's collapsed solution that
    fails, or a figure too wide for the book fails it."""
    solution = nbformat.v4.new_code_cell("raise AssertionError('the worked solution is wrong')",
                                         metadata={"tags": ["solution", "hide-input"],
                                                   "jupyter": {"source_hidden": True}})
    wide = nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nfrom acpg_lab.plotting import show\n"
                                     "fig, ax = plt.subplots(figsize=(15, 3))\nax.plot([0, 1])\n"
                                     "ax.set(xlabel='x', ylabel='y')\nshow(fig, 'too_wide')")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nassert os.environ['ACPG_LAB_PROFILE'] == 'ci'"),
        nbformat.v4.new_code_cell("import warnings\nwarnings.warn('old API', FutureWarning)"), solution, wide])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "warns.ipynb")
    done = _nbval(tmp_path / "warns.ipynb", tmp_path)
    assert done.returncode == 1 and "3 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    assert "FutureWarning" in done.stdout and "old API" in done.stdout
    assert "the worked solution is wrong" in done.stdout  # a collapsed exercise solution is executed and checked
    assert "FigureLayoutError" in done.stdout and "15.0 in wide" in done.stdout


@pytest.mark.parametrize("name", NAMES)
def test_figures_are_shown_by_name_and_the_main_job_can_parameterise_every_notebook(name):
    """Figures go through acpg_lab.plotting.show(fig, name) (the main job saves them as <number>_<name>.png, not
    after a cell number), and the parameters cell declares what the main job injects."""
    import papermill as pm

    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert "plt.show()" not in cell.source, f"{name}: use show(fig, 'name') instead of plt.show()"
    declared = pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))
    assert {"profile", "output_dir", "device", "seeds"} <= set(declared), name


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")



def test_unknown_parameter_stops_the_notebook_in_its_first_code_cell(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter.*'colour'"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "00_simplex_etf.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=dict(profile="ci", colour="red"), kernel_name="python3", progress_bar=False,
                            cwd=str(NOTEBOOK_DIR))


@pytest.mark.parametrize(("given", "message"), [
    (dict(colour="red"), r"unknown parameter\(s\) \['colour'\]"),
    (dict(profile="huge"), "profile must be one of"),
    (dict(profile="ci", seeds=3), "seeds must be a non-empty list of integers"),
    (dict(profile="ci", seeds=[1, 1]), "seeds has duplicates"),
    (dict(profile="ci", bandit_steps="many"), "bandit_steps must be a int"),
    (dict(profile="ci", bandit_steps=-5), "bandit_steps must be positive"),
    (dict(profile="ci", device="tpu"), "device must be"),
    (dict(profile="ci", output_dir=3), "output_dir must be a str"),
])
def test_parameter_validation_names_the_problem(given, message):
    with pytest.raises(ParameterError, match=message):
        notebook_params("01_observing_action_collapse", given)


def test_profile_from_the_environment_and_explicit_parameters_win(monkeypatch):
    name = "01_observing_action_collapse"
    assert notebook_params(name, dict(profile=None)).profile == "default"
    monkeypatch.setenv(PROFILE_ENV, "ci")
    assert notebook_params(name, dict(profile=None)).profile == "ci"
    assert notebook_params(name, {}).bandit_steps == NOTEBOOKS[name]["bandit_steps"]["ci"]
    assert notebook_params(name, dict(profile="default")).profile == "default"  # explicit wins
    monkeypatch.setenv(PROFILE_ENV, "fast")
    with pytest.raises(ParameterError, match=r"environment variable ACPG_LAB_PROFILE must be one of .* got 'fast'"):
        notebook_params(name, dict(profile=None))
    assert notebook_params(name, dict(profile="ci")).profile == "ci"  # not consulted when the profile is given


def test_one_output_tree_whatever_the_working_directory(tmp_path, monkeypatch):
    name = "01_observing_action_collapse"
    root = tmp_path / "output_root"
    monkeypatch.chdir(tmp_path)  # a kernel started in notebooks/ or anywhere else
    assert notebook_params(name, {}).output_dir == str(root / "runs" / "notebooks" / name)
    assert (root / "runs" / "notebooks" / name).is_dir()
    assert notebook_params(name, dict(output_dir="elsewhere/x")).output_dir == str(root / "elsewhere" / "x")
    assert notebook_params(name, dict(output_dir=str(tmp_path / "abs"))).output_dir == str(tmp_path / "abs")
    monkeypatch.delenv(OUTPUT_ROOT_ENV)  # default: the repository root
    expected = NOTEBOOK_DIR.parent / "runs" / "notebooks" / name
    assert notebook_params(name, {}, create=False).output_dir == str(expected)


def test_an_output_directory_that_cannot_be_created_stops_the_notebook(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ParameterError, match=r"output directory '.*a_file/sub' cannot be created"):
        notebook_params("01_observing_action_collapse", dict(profile="ci", output_dir=str(blocker / "sub")))


def test_profile_values_and_overrides():
    ci = notebook_params("01_observing_action_collapse", dict(profile="ci"))
    assert ci.bandit_steps == NOTEBOOKS["01_observing_action_collapse"]["bandit_steps"]["ci"]
    explicit = notebook_params("01_observing_action_collapse", dict(profile="ci", bandit_steps=123, seeds=[4, 5]))
    assert explicit.bandit_steps == 123 and explicit.seeds == (4, 5)
    assert notebook_params("00_simplex_etf", {}).profile == "default"


@pytest.mark.parametrize("name", ["03_ppo_trust_region_failure", "04_acpg_meets_pfo"])
@pytest.mark.parametrize("profile", ["ci", "default", "full"])
def test_every_profile_of_the_ppo_notebooks_gives_valid_configs(name, profile):
    import acpg_lab as al

    p = notebook_params(name, dict(profile=profile, ent_coef=0.0))  # a zero coefficient is a valid value
    cfg = al.TrainConfig(env_id=p.env_id, seeds=p.seeds, total_steps=p.total_steps, device="cpu", epochs=p.epochs,
                         lr=p.lr, ent_coef=p.ent_coef, clip_coef=p.clip_coef, pfo_coef=p.pfo_coef,
                         activation="relu", diagnostics_every=p.diagnostics_every,
                         snapshot_every=p.snapshot_every).resolve()
    assert cfg.epochs == p.epochs and cfg.num_updates >= p.snapshot_every
    with pytest.raises(ParameterError, match="epochs must be positive"):
        notebook_params(name, dict(profile=profile, epochs=0))


def test_runner_rejects_bad_requests_before_running(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        run_notebooks("fast", tmp_path)
    with pytest.raises(ValueError, match="unknown notebook"):
        run_notebooks("ci", tmp_path, only=["99_nothing"])
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['bandit_steps'\]"):
        run_notebooks("ci", tmp_path, only=["00_simplex_etf"], parameters=dict(bandit_steps=5))
    with pytest.raises(ValueError, match="own options"):
        run_notebooks("ci", tmp_path, only=["00_simplex_etf"], parameters=dict(output_dir="x"))
    with pytest.raises(ValueError, match="seeds must be a non-empty list of integers"):
        run_notebooks("ci", tmp_path, only=["00_simplex_etf"], parameters=dict(seeds="many"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="output directory .* cannot be created"):
        run_notebooks("ci", blocker / "out", only=["00_simplex_etf"])
    assert issubclass(NotebookFailed, RuntimeError)
    assert not list(tmp_path.glob("*.ipynb"))


def test_cuda_without_a_gpu_fails_before_any_notebook_starts(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started = []
    with pytest.raises(ValueError, match="--device cuda asks for a CUDA device, but .* sees no GPU"):
        run_notebooks("ci", tmp_path, device="cuda", log=started.append)
    with pytest.raises(ValueError, match="the full profile asks for a CUDA device"):
        run_notebooks("full", tmp_path, only=["02_acpg_fixed_etf_head"], log=started.append)
    assert not started and not list(tmp_path.iterdir())


def test_parameter_overrides_reach_the_notebook_and_its_provenance(tmp_path):
    run_notebooks("ci", tmp_path / "out", only=["00_simplex_etf"], parameters=dict(seeds=[3]),
                  results=tmp_path / "results", log=lambda *_: None)
    import json

    meta = json.loads((tmp_path / "results" / "00_simplex_etf" / "provenance.json").read_text())
    assert meta["parameters"]["seeds"] == [3]
    executed = (tmp_path / "out" / "00_simplex_etf.ipynb").read_text()
    assert "seeds=(3,)" in executed  # the validated parameters the notebook printed


def test_collect_results_copies_tables_with_provenance(tmp_path):
    import json

    from acpg_lab.runner import collect_results

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "table.csv").write_text("a,b\n1,2\n")
    (run_dir / "model.pt").write_text("not copied")
    params = dict(profile="default", output_dir=str(run_dir), seeds=(0, 1))
    collect_results("02_acpg_fixed_etf_head", run_dir, tmp_path / "results", params, 12.3)
    target = tmp_path / "results" / "02_acpg_fixed_etf_head"
    assert sorted(p.name for p in target.iterdir()) == ["provenance.json", "table.csv"]
    meta = json.loads((target / "provenance.json").read_text())
    assert meta["parameters"]["profile"] == "default" and meta["parameters"]["seeds"] == [0, 1]
    assert meta["parameters"]["cartpole_steps"] == NOTEBOOKS["02_acpg_fixed_etf_head"]["cartpole_steps"]["default"]
    assert meta["wall_seconds"] == 12
