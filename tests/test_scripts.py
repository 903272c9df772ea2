"""Every script in scripts/ still runs (with tiny arguments), so the benchmarks cited as evidence cannot rot."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

#: script -> tiny arguments; a script missing here fails the test below (add its smallest sensible arguments).
TINY = {
    "bench_diagnostics.py": ["--steps", "2048", "--seeds", "1", "--repeats", "1"],
    "bench_envs.py": ["--seeds", "1", "2", "--steps", "10", "--repeats", "1", "--train-seeds", "2",
                      "--train-steps", "512", "--train-repeats", "1"],
    "bench_metrics.py": ["--n", "400", "--d", "16", "--k", "3", "--repeats", "1", "--threads", "1"],
    "bench_nature_cnn.py": ["--seeds", "1", "--batch", "2", "--repeats", "1"],
    "bench_seed_batching.py": ["--steps", "1024", "--seeds", "2"],
    "cartpole_diagnostics.py": ["--steps", "2048", "--seeds", "1", "--every", "2", "--out", "{tmp}/diag"],
    "collapse_search.py": ["--only", "cartpole_default", "--total-steps", "2048", "--log", "{tmp}/log.csv",
                           "--runs", "{tmp}/runs"],
    "rank_collapse_search.py": ["--only", "relu_e10", "--total-steps", "2048", "--seeds", "2", "--log",
                                "{tmp}/log.csv", "--runs", "{tmp}/runs"],
}


def test_every_script_has_tiny_arguments():
    assert sorted(p.name for p in SCRIPTS.glob("*.py")) == sorted(TINY)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_script_runs(script, tmp_path):
    args = [a.format(tmp=tmp_path) for a in TINY[script]]
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), f"{script} printed nothing"


@pytest.mark.slow
def test_benchmarks_run_quick(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--no-write", "--max-seeds", "2"],
                          cwd=SCRIPTS.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"benchmarks failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    for target in ("1. PPO CartPole", "2. CleanRL PPO", "4. scaling", "6. diagnostics"):
        assert target in done.stdout, target
