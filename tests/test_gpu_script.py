"""`benchmarks/gpu.sh` and `benchmarks/device_throughput.py`, the device checks prepared for the first session with a
GPU: on the CPU, every step of the script runs in its ``--quick --device cpu`` mode (so its Python parts cannot
fail for a reason other than the GPU the first time it meets one), and bad arguments are refused naming them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.sh"
STEPS = ["env", "cuda-tests", "throughput", "compile", "notebooks"]


def _run(*args, env=None, timeout=60):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


@pytest.mark.slow
def test_every_step_runs_on_the_cpu_in_quick_mode(tmp_path):
    out = tmp_path / "out"
    done = _run("--quick", "--device", "cpu", env=dict(OUT=str(out), GPU_NOTEBOOKS_OUT=str(tmp_path / "nb")),
                timeout=500)
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, summary + (out / "gpu.log").read_text()[-3000:]
    assert [line.split()[0] for line in summary.splitlines()[:-1]] == STEPS
    assert all("rc=0" in line for line in summary.splitlines()[:-1]), summary
    rows = json.loads((out / "throughput.json").read_text())["rows"]
    kinds = {(r["row"], r.get("env"), r.get("path")) for r in rows}
    assert kinds == {("env", "CartPole-v1", None), ("train PPO", "CartPole-v1", None),
                     ("train PPO", "MinAtar/Breakout-v1", None)} | {
        ("collect", e, p) for e in ("CartPole-v1", "MinAtar/Breakout-v1") for p in ("resident", "host")}
    assert all(r["steps_per_s"] > 0 for r in rows)
    compiled = json.loads((out / "throughput_compile.json").read_text())["rows"]
    assert [r["part"] for r in compiled] == ["CartPole device step", "collection step", "PPO minibatch loss + backward"]
    assert all(r["compiled_ms"] > 0 and r["compile_s"] > 0 for r in compiled), compiled  # eager backend: no error
    assert (tmp_path / "nb" / "00_simplex_etf.ipynb").exists()


def test_fetch_wheels_lists_what_the_gpu_image_lacks_without_downloading():
    done = _run("--fetch-wheels", "--dry-run")
    assert done.returncode == 0, done.stderr
    listed = {item.split("==")[0] for item in done.stdout.split(":", 1)[1].split()}
    assert {"gymnasium", "minatar", "papermill", "ipykernel", "stable-baselines3", "pygame-ce"} <= listed
    assert not listed & {"torch", "numpy", "pandas", "matplotlib", "scipy", "acpg-lab", "jupyterlab"}


@pytest.mark.parametrize(("args", "message"), [(["--device", "tpu"], "--device must be cpu or cuda, got tpu"),
                                               (["--fast"], "unknown argument --fast"),
                                               (["--steps", "env,bogus"], "got bogus")])
def test_bad_arguments_are_refused_naming_them(args, message):
    done = _run(*args)
    assert done.returncode == 2 and message in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_throughput_refuses_cuda_without_a_gpu():
    done = subprocess.run([sys.executable, "-m", "benchmarks.device_throughput", "--device", "cuda"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "torch sees no GPU" in done.stderr


def test_steps_runs_only_the_steps_named(tmp_path):
    """The first GPU session splits the checks over two calls (the working tree that travels is limited: see the
    script's header): ``--steps`` runs those steps alone."""
    out = tmp_path / "out"
    done = _run("--quick", "--device", "cpu", "--steps", "env", env=dict(OUT=str(out)), timeout=120)
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, summary
    assert [line.split()[0] for line in summary.splitlines()[:-1]] == ["env"]
