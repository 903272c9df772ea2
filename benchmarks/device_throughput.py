"""Throughput of the device-resident path (issue 25, item 4): ``python -m benchmarks.device_throughput --device cuda``.

Rows, each an aggregate number of environment steps per second (all seeds x environments together):

- ``env``: the device environment alone (`acpg_lab.batched_envs.device`), random actions, CartPole at ``--seeds``
  seeds (1,024 by default) x 8 environments;
- ``collect``: `collect_rollout` (policy, sampling, environment, bookkeeping) on the resident path and, for the
  gain, on the host path (numpy environments, actions and observations crossing to the host every step);
- ``train``: `acpg_lab.train` end to end (collection and the PPO update), CartPole at ``--seeds`` seeds and MinAtar
  Breakout at ``--minatar-seeds`` (256 by default), after a warm-up run of the same shapes;
- ``compile`` (``--compile``): `torch.compile` of CartPole's device step, of one whole collection step (policy,
  sampling, device step) and of one PPO minibatch's loss and backward (mode ``reduce-overhead``, CUDA graphs, on
  a GPU), the compile time apart from the steady-state gain.

Writes ``throughput.md`` and ``throughput.json`` into ``--out`` (default ``$OUT`` if set). ``--quick`` runs every row
at toy sizes, for checking the script on a CPU (its numbers are not evidence; neither is any timing taken on a
loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

import acpg_lab as al
from acpg_lab import training
from acpg_lab.algorithms import sample_actions
from acpg_lab.batched_envs.device import make_device_env
from acpg_lab.envs import SeedEnvs, resolve_env_id
from acpg_lab.rollout import Rollout

__all__ = ["env_rate", "collect_rate", "train_rate", "compile_rows", "main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls, after one untimed call (warm-up, lazy allocations)."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def env_rate(*, env_id: str, seeds: int, num_envs: int, steps: int, device: torch.device) -> float:
    """Steps/s of the device environment alone, ``seeds x num_envs`` environments, ``steps`` random actions."""
    env = make_device_env(env_id, num_envs=num_envs, env_seeds=range(seeds), device=device)
    env.reset()
    actions = torch.randint(0, int(env.single_action_space.n), (steps, seeds, num_envs), device=device)

    def run() -> None:
        for a in actions:
            env.step(a)

    return seeds * num_envs * steps / _timed(run, device, repeats=2)


def collect_rate(*, env_id: str, seeds: int, device: torch.device, resident: bool, rollouts: int = 2) -> float:
    """Steps/s of `collect_rollout` with the package's PPO defaults for ``env_id``, on the resident or host path."""
    cfg = al.TrainConfig(env_id=env_id, seeds=tuple(range(seeds)), device=str(device)).resolve()
    envs = SeedEnvs(env_id, num_envs=cfg.num_envs, env_seeds=range(seeds), device=device, resident=resident)
    obs_shape, k = envs.single_observation_space.shape, int(envs.single_action_space.n)
    model = training.build_model(cfg, obs_shape, k).to(device)
    gens = [torch.Generator(device=device).manual_seed(s) for s in range(seeds)]
    rollout = Rollout.allocate(cfg, obs_shape, k, device, *envs.reset())
    seconds = _timed(lambda: training.collect_rollout(model, envs, rollout, gens, cfg), device, repeats=rollouts)
    return seeds * cfg.num_envs * cfg.rollout_steps / seconds


def train_rate(*, env_id: str, seeds: int, updates: int, device: torch.device) -> tuple[float, float]:
    """(steps/s, seconds) of `acpg_lab.train` for ``updates`` updates of the package's PPO defaults, timed after a
    one-update warm-up run of the same shapes (CUDA context, cuBLAS/cuDNN handles, allocator)."""
    base = al.TrainConfig(env_id=env_id, seeds=tuple(range(seeds)), device=str(device)).resolve()
    per_update = base.num_envs * base.rollout_steps
    al.train(al.TrainConfig(env_id=env_id, seeds=base.seeds, device=str(device), total_steps=per_update),
             progress=False)
    _sync(device)
    start = time.perf_counter()
    al.train(al.TrainConfig(env_id=env_id, seeds=base.seeds, device=str(device), total_steps=updates * per_update),
             progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return seeds * updates * per_update / seconds, seconds


def _compile_parts(*, seeds: int, device: torch.device) -> list[tuple[str, bool, Callable[[], object]]]:
    """(name, needs gradients, function) of the parts worth compiling, at CartPole's PPO shapes: the device step,
    one whole collection step (policy, sampling, device step), and one PPO minibatch's loss and backward."""
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=tuple(range(seeds)), device=str(device)).resolve()
    env = make_device_env("CartPole-v1", num_envs=cfg.num_envs, env_seeds=range(seeds), device=device)
    obs = env.reset()[0]
    model = training.build_model(cfg, (4,), 2).to(device)
    noise = torch.rand(seeds, cfg.num_envs, device=device)
    action = torch.zeros(seeds, cfg.num_envs, dtype=torch.int64, device=device)
    n = cfg.minibatch_size
    batch = training.Batch(obs=torch.randn(seeds, n, 4, device=device),
                           actions=torch.randint(0, 2, (seeds, n), device=device),
                           logp=-torch.rand(seeds, n, device=device), advantages=torch.randn(seeds, n, device=device),
                           returns=torch.randn(seeds, n, device=device), mask=torch.ones(seeds, n, device=device),
                           preacts=None)

    def collection_step() -> torch.Tensor:
        return env.step(sample_actions(model.policy(obs).logits, noise))[0]

    def loss_and_backward() -> torch.Tensor:
        loss = training.loss_fn(model, batch, cfg)[0].sum()
        loss.backward()
        return loss

    return [("CartPole device step", False, lambda: env.step(action)), ("collection step", False, collection_step),
            ("PPO minibatch loss + backward", True, loss_and_backward)]


def compile_rows(*, seeds: int, steps: int, device: torch.device, backend: str = "inductor") -> list[dict]:
    """Eager against `torch.compile` for each of `_compile_parts`: compile time (the first compiled call, apart)
    and steady-state time per call. A compiler that fails is reported in the row, not raised.
    ``backend``: ``inductor`` (generated kernels; with CUDA graphs on a GPU) is what can pay; ``eager`` only
    traces (seconds instead of minutes on a CPU: for checking the script)."""
    mode = "reduce-overhead" if device.type == "cuda" and backend == "inductor" else None
    rows = []
    for name, grad, fn in _compile_parts(seeds=seeds, device=device):
        with torch.set_grad_enabled(grad):  # collection runs without gradients, the update with them
            eager = _timed(fn, device, repeats=steps)
            row = dict(part=name, backend=backend, mode=mode or "default", eager_ms=1e3 * eager)
            try:
                compiled = torch.compile(fn, mode=mode, backend=backend)
                start = time.perf_counter()
                compiled()
                _sync(device)
                row["compile_s"] = time.perf_counter() - start
                row["compiled_ms"] = 1e3 * _timed(compiled, device, repeats=steps)
                row["speedup"] = row["eager_ms"] / row["compiled_ms"]
            except Exception as err:  # noqa: BLE001  (a missing compiler or backend is a result here)
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:,.3g}" if isinstance(v, float) else str(v) for v in (row.get(k, "") for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the point) or cpu (checking the script)")
    parser.add_argument("--seeds", type=int, default=1024, help="CartPole seeds (x 8 environments each)")
    parser.add_argument("--minatar-seeds", type=int, default=256, help="MinAtar Breakout seeds (x 8 environments)")
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks the script, measures nothing")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compile time apart)")
    parser.add_argument("--compile-only", action="store_true", help="only the torch.compile rows")
    parser.add_argument("--compile-backend", default="inductor", choices=("inductor", "eager"),
                        help="inductor (what can pay) or eager (traces only: a quick check of the script)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="directory for throughput.md/.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no GPU here (use --device cpu --quick to check the script)")
    seeds, minatar = (4, 2) if args.quick else (args.seeds, args.minatar_seeds)
    resolve_env_id("MinAtar/Breakout-v1")
    rows: list[dict] = []

    def add(**row: object) -> None:
        rows.append(row)
        print(row, flush=True)

    if not args.compile_only:
        steps = 5 if args.quick else 200
        add(row="env", env="CartPole-v1", seeds=seeds, steps_per_s=env_rate(env_id="CartPole-v1", seeds=seeds,
                                                                            num_envs=8, steps=steps, device=device))
        for env_id, n in (("CartPole-v1", seeds), ("MinAtar/Breakout-v1", minatar)):
            for resident in (True, False):
                add(row="collect", env=env_id, seeds=n, path="resident" if resident else "host",
                    steps_per_s=collect_rate(env_id=env_id, seeds=n, device=device, resident=resident))
        for env_id, n, updates in (("CartPole-v1", seeds, 1 if args.quick else 4),
                                   ("MinAtar/Breakout-v1", minatar, 1 if args.quick else 3)):
            rate, seconds = train_rate(env_id=env_id, seeds=n, updates=updates, device=device)
            add(row="train PPO", env=env_id, seeds=n, updates=updates, steps_per_s=rate, seconds=seconds)
    if args.compile or args.compile_only:
        for row in compile_rows(seeds=seeds, steps=3 if args.quick else 100, device=device,
                                backend=args.compile_backend):
            add(row="compile", **row)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    kinds = dict.fromkeys(r["row"] for r in rows)  # one table per kind of row, in order
    tables = "\n\n".join(_table([r for r in rows if r["row"] == kind]) for kind in kinds)
    text = (f"device throughput on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}"
            f"{' (--quick: not evidence)' if args.quick else ''}\n\n{tables}\n")
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        suffix = "_compile" if args.compile_only else ""
        (out / f"throughput{suffix}.md").write_text(text)
        (out / f"throughput{suffix}.json").write_text(json.dumps(dict(device=name, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
