#!/usr/bin/env bash
# The device checks of issue 25 (item 4), prepared for the first session that has a CUDA GPU; under 8 minutes.
#
#   benchmarks/gpu.sh                          on the GPU machine: every step below, on CUDA
#   benchmarks/gpu.sh --quick --device cpu     anywhere: every step at toy sizes on the CPU (checks this script)
#   benchmarks/gpu.sh --fetch-wheels [--dry-run]
#                                              HERE (with a network), before: wheels of the Python packages the GPU
#                                              image lacks, into .whl/ (add /.whl/ to .git/info/exclude; carry .whl)
#
# Steps, each under its own timeout (seconds) so the script always ends, each logged into $OUT/gpu.log:
#   env          30  python, torch, CUDA, the packages acpg_lab needs (installs .whl/ into /tmp/acpg_site first)
#   cuda-tests  130  pytest tests/test_cuda.py and the CUDA tests elsewhere (MinAtar games on CUDA vs CPU):
#                    device envs under torch.cuda.set_sync_debug_mode("error"), equal to their CPU runs, rollout
#                    collection without syncs, PPO learning on the GPU, the older GPU training tests
#   throughput   70  benchmarks/device_throughput.py: env steps/s of CartPole at 1,024 seeds and MinAtar Breakout
#                    PPO at 256 seeds (device env alone, collection resident vs host path, training end to end)
#   compile      50  torch.compile (CUDA graphs) of CartPole's device step, a whole collection step and a PPO
#                    minibatch's loss + backward: compile time apart from the gain
#   notebooks   120  acpg-lab notebooks --profile ci --device cuda (executed copies into runs/gpu_notebooks, or
#                    $GPU_NOTEBOOKS_OUT)
#   benchmarks/gpu.sh --steps env,cuda-tests  only these steps (names below; default: all)
#
# What travels to the GPU machine is limited to 64 MiB (tracked files + carried .whl/), and this checkout is over
# it: results/evidence/ alone is 76 MB (measured 2026-12-04; .whl/ is 31 MB). So the first GPU session makes two
# calls, each after untracking the stored evidence it does not need, for that checkout only, and restores after:
#   1. core (no stored evidence needed):
#        git rm -r -q --cached results/evidence && echo /results/evidence/ >> .git/info/exclude
#        run: benchmarks/gpu.sh --steps env,cuda-tests,throughput,compile   (carry .whl: ~36 MB in all)
#        git reset -q -- results/evidence && sed -i '\#^/results/evidence/$#d' .git/info/exclude
#   2. notebooks (their evidence figures read results/evidence/{collapse,exploration,heads,pfo}, ~46 MB): untrack
#      results/evidence/replication and results/evidence/heads_tuned the same way, and carry only the wheels the
#      notebooks need beyond the image (pygame-ce alone is 12 MB): check the total before the call
#      (git ls-files | xargs du -cb | tail -1, du -sb .whl); if it is still over, the notebooks run without their
#      evidence appendices is the fallback this script cannot make by itself.
# Total at most 400 s (+3 s a step to kill it), plus at most 50 s installing .whl/ and this checkout (offline) where
# the image lacks them: under 8 minutes. Writes $OUT/summary.txt (one line a step: name, exit status, seconds),
# $OUT/gpu.log and throughput{,_compile}.{md,json}; OUT defaults to runs/gpu. Exit status: the number of failed steps.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
DEVICE=cuda
QUICK=""
FETCH=""
DRY=""
STEPS=env,cuda-tests,throughput,compile,notebooks
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=--quick ;;
        --device=*) DEVICE=${1#--device=} ;;
        --device) DEVICE=${2:-}; shift ;;
        --fetch-wheels) FETCH=1 ;;
        --dry-run) DRY=1 ;;
        --steps=*) STEPS=${1#--steps=} ;;
        --steps) STEPS=${2:-}; shift ;;
        *) echo "gpu.sh: unknown argument $1 (see the comment at the top of benchmarks/gpu.sh)" >&2; exit 2 ;;
    esac
    shift
done
case "$DEVICE" in cpu|cuda) ;; *) echo "gpu.sh: --device must be cpu or cuda, got $DEVICE" >&2; exit 2 ;; esac
for name in ${STEPS//,/ }; do
    case "$name" in env|cuda-tests|throughput|compile|notebooks) ;;
        *) echo "gpu.sh: --steps takes env, cuda-tests, throughput, compile, notebooks; got $name" >&2; exit 2 ;;
    esac
done

if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=$REPO/.venv/bin/python; else PY=python3; fi

if [ -n "$FETCH" ]; then
    # The distributions acpg_lab (and notebook 05's stable-baselines3) need, as installed in this venv, minus those
    # the GPU image already has (its list: /work/.library/device/KINDS.md, 2026-11-17), as Python 3.12 wheels.
    "$PY" - "$DRY" <<'PYEOF'
import importlib.metadata as md
import re
import subprocess
import sys

from packaging.requirements import Requirement

IMAGE = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash
yarl zipp""".split())
SKIP = {"jupyterlab", "ale-py", "box2d", "box2d-py", "swig"}  # not used by the ci notebooks or the CUDA tests


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


need = {"stable-baselines3": md.version("stable-baselines3")}  # notebook 05's; acpg_lab itself travels as source
extras_of, todo = {"stable-baselines3": set()}, [("acpg-lab", set()), ("stable-baselines3", set())]
while todo:
    name, extras = todo.pop()
    for text in md.distribution(name).requires or []:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        key = canon(req.name)
        if key in IMAGE or key in SKIP or (key in need and set(req.extras) <= extras_of[key]):
            continue  # there already, not needed, or seen with these extras
        need[key] = md.version(req.name)
        extras_of[key] = extras_of.get(key, set()) | set(req.extras)
        todo.append((req.name, extras_of[key]))
print(f"{len(need)} distributions the GPU image lacks:", " ".join(f"{k}=={v}" for k, v in sorted(need.items())))
if sys.argv[1]:
    sys.exit(0)
platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                        "manylinux2014_x86_64", "manylinux1_x86_64")]
for key, version in sorted(need.items()):
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                          "--python-version=3.12", "--implementation=cp", *platforms, "-d", ".whl",
                          f"{key}=={version}"])
    if got.returncode:  # no wheel on PyPI (rliable ships an sdist only): build one here; pure Python travels as is
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", ".whl", f"{key}=={version}"],
                       check=True)
PYEOF
    exit $?
fi

OUT=${OUT:-$REPO/runs/gpu}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
LOG=$OUT/gpu.log
: >"$SUMMARY"
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
    timeout 30 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/acpg_site .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/acpg_site"
fi
if ! "$PY" -c "import importlib.metadata as m; m.version('acpg-lab')" 2>/dev/null; then
    # acpg_lab runs from this checkout (first on PYTHONPATH) but reads its own version from its installed metadata:
    # install the checkout (offline, the image's setuptools) beside the wheels
    timeout 20 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --target /tmp/acpg_site . >>"$LOG" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/acpg_site"
fi
FAILED=0

step() {  # step NAME SECONDS COMMAND...: run under a timeout (its process group killed at the end), log, summarise
    local name=$1 limit=$2 start rc
    shift 2
    case ",$STEPS," in *",$name,"*) ;; *) return 0 ;; esac
    echo "===== $name (limit ${limit}s): $*" >>"$LOG"
    start=$(date +%s)
    timeout --kill-after=3 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "===== $name: timed out after ${limit}s" >>"$LOG"
    [ $rc -ne 0 ] && FAILED=$((FAILED + 1))
    printf '%-11s rc=%-3s %4ss\n' "$name" "$rc" "$(( $(date +%s) - start ))" | tee -a "$SUMMARY"
}

if [ -n "$QUICK" ]; then
    NOTEBOOKS=(--only 00_simplex_etf)
    BACKEND=eager
else
    NOTEBOOKS=()
    BACKEND=inductor
fi

step env 30 "$PY" -c "
import sys, torch, gymnasium, minatar, papermill, acpg_lab
print(sys.executable, sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
if '$DEVICE' == 'cuda' and not torch.cuda.is_available():
    sys.exit('--device cuda, but torch sees no GPU')
"
step cuda-tests 130 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py \
    "tests/test_batched_minatar.py::test_cuda_games_equal_cpu_games_without_syncs"
step throughput 70 "$PY" -m benchmarks.device_throughput --device "$DEVICE" $QUICK --out "$OUT"
step compile 50 "$PY" -m benchmarks.device_throughput --device "$DEVICE" $QUICK --compile-only \
    --compile-backend "$BACKEND" --out "$OUT"
step notebooks 120 "$PY" -c "import sys; from acpg_lab.cli import main; sys.exit(main())" notebooks --profile ci \
    --device "$DEVICE" --out "${GPU_NOTEBOOKS_OUT:-$REPO/runs/gpu_notebooks}" "${NOTEBOOKS[@]}"
echo "failed steps: $FAILED (details in $LOG)" | tee -a "$SUMMARY"
exit "$FAILED"
