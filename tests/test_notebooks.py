"""Every notebook runs with the ci profile; its parameters are validated; notebooks are stored without outputs."""

import nbformat
import pytest

from acpg_lab.profiles import NOTEBOOKS, ParameterError, notebook_params
from acpg_lab.runner import NOTEBOOK_DIR, NotebookFailed, list_notebooks, run_notebooks

NAMES = list_notebooks()


def test_every_notebook_has_a_profile_table_and_a_parameters_cell():
    assert NAMES and set(NAMES) <= set(NOTEBOOKS)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[0] is tagged[0] and f'notebook_params("{name}", globals())' in code[1].source


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_with_the_ci_profile(name, tmp_path):
    (executed,) = run_notebooks("ci", tmp_path, device="cpu", only=[name], log=lambda *_: None)
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert list((tmp_path / "figures").glob(f"{name}_*.png")), "the notebook drew no figure"


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
    assert issubclass(NotebookFailed, RuntimeError)


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
