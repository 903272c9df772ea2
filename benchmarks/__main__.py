"""acpg_lab against Stable-Baselines3, measured side by side in one run: ``python -m benchmarks``.

Prints one table with every ratio of the performance issue's targets and the machine it ran on, and (unless
``--no-write``) writes it with the date into ``benchmarks/README.md``. Both libraries run on the CPU with one torch
thread each, one after the other, so a ratio compares them on the same machine at the same moment; on a busy
machine absolute numbers move, ratios much less. ``--quick`` runs every code path with tiny budgets (a smoke test,
not evidence).

Targets (SB3 = one Stable-Baselines3 run of the same configuration):
1. seeds/s: PPO, CartPole-v1, rl-zoo hyperparameters, 100k steps per seed, 16 seeds in one call: >= 15 solved
   (greedy >= 475) in <= 0.10x SB3's time per seed;
2. throughput: CleanRL's PPO hyperparameters, aggregate steps/s at 16 seeds >= 20x SB3 and at 64 seeds >= 25x;
   Acrobot-v1 at 16 seeds >= 12x (issue 25's goals; the previous issue's were 23x and 10x);
3. MinAtar Breakout, 8 seeds, against SB3 with the same CNN (SB3 gets acpg_lab's torso as a features extractor), and
   the update's FLOP rate against the conv + dense matmuls alone at its own shapes (>= 50%);
4. scaling: time per seed as seeds grow 1 -> 256;
5. roofline: achieved FLOP rate of the update phase against the ceiling, the higher of two measured batched-matmul
   rates (a large ``[16, 1024, 256]`` product, and the update's own ``[S, 256, 64]`` products);
6. diagnostics every update <= 1.10x the time without;
7. where the time goes: a 16-seed CartPole run split into collect / advantages / update / logging (the rest:
   set-up, batching, the non-finite guard);
8. engines: ``TrainConfig.engine`` "fused" against "reference", side by side in this process (update phase and
   whole run at 16 seeds, aggregate CleanRL throughput at 64 seeds);
9. JAX: a PureJaxRL-style PPO (CleanRL's CartPole settings, one seed, the whole loop jit-compiled) against the
   64-seed aggregate, when JAX is importable (the ``bench`` extra; skipped, saying why, otherwise).

``--engine`` chooses the engine of targets 1-7 (default "reference", `TrainConfig`'s default); the table's
stamp records it.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import torch

import acpg_lab as al
from acpg_lab import training
from acpg_lab.checks import check_int
from acpg_lab.entry import MissingExtra, OneLineParser, check_environment, fail, require_extra
from acpg_lab.networks import ENGINES
from acpg_lab.paths import check_output_file
from acpg_lab.recording import History, Instruments

#: rl-baselines3-zoo's CartPole PPO (target 1).
RL_ZOO = dict(num_envs=8, rollout_steps=32, epochs=20, minibatch_size=256, gamma=0.98, gae_lambda=0.8, lr=1e-3,
              anneal_lr=True, clip_coef=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
#: The package's PPO defaults for MinAtar (target 3): 8 envs x 128 steps, 4 epochs, minibatch 256.
MINATAR = dict(num_envs=8, rollout_steps=128, epochs=4, minibatch_size=256, gamma=0.99, gae_lambda=0.95, lr=2.5e-4,
               anneal_lr=True, clip_coef=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)
#: CleanRL's ppo.py (target 2): 4 envs x 128 steps, 4 epochs x 4 minibatches.
CLEANRL = dict(num_envs=4, rollout_steps=128, epochs=4, minibatch_size=128, gamma=0.99, gae_lambda=0.95, lr=2.5e-4,
               anneal_lr=True, clip_coef=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)
NETWORK = dict(hidden_sizes=(64, 64), activation="tanh")


def minatar_extractor(observation_space, features_dim: int = 16 * 8 * 8):
    """acpg_lab's MinAtar torso in SB3 (its ``net_arch`` adds the dense layers): a 3x3 convolution to 16 channels
    without padding and tanh, on ``[10, 10, C]`` observations (built lazily: SB3 is an optional dependency)."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MinAtarTorso(BaseFeaturesExtractor):
        def __init__(self, space) -> None:
            height, width, channels = space.shape
            super().__init__(space, 16 * (height - 2) * (width - 2))
            self.conv = torch.nn.Conv2d(channels, 16, 3)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.conv(obs.permute(0, 3, 1, 2))).flatten(1)

    return MinAtarTorso(observation_space)


def sb3_seconds(env_id: str, fields: dict, steps: int, seed: int = 0) -> float:
    """Wall time of one SB3 PPO run of ``fields`` (our TrainConfig names) on the CPU with one thread; MinAtar ids
    get acpg_lab's MinAtar torso (`minatar_extractor`) with separate actor and critic torsos, as ours."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from acpg_lab.envs import resolve_env_id

    resolve_env_id(env_id)  # registers MinAtar ids
    torch.set_num_threads(1)
    env = make_vec_env(env_id, n_envs=fields["num_envs"], seed=seed)
    lr = fields["lr"]
    policy_kwargs = dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh)
    if env_id.startswith("MinAtar/"):
        policy_kwargs |= dict(features_extractor_class=lambda space: minatar_extractor(space),
                              share_features_extractor=False)
    model = PPO("MlpPolicy", env, n_steps=fields["rollout_steps"], batch_size=fields["minibatch_size"],
                n_epochs=fields["epochs"], gamma=fields["gamma"], gae_lambda=fields["gae_lambda"],
                learning_rate=(lambda progress: lr * progress) if fields["anneal_lr"] else lr,
                clip_range=fields["clip_coef"], ent_coef=fields["ent_coef"], vf_coef=fields["vf_coef"],
                max_grad_norm=fields["max_grad_norm"], device="cpu", seed=seed, verbose=0,
                policy_kwargs=policy_kwargs)
    start = time.perf_counter()
    model.learn(steps)
    seconds = time.perf_counter() - start
    env.close()
    return seconds


DEVICE = "cpu"  #: where acpg_lab trains (``--device``); SB3 always runs on the CPU, its fastest for small MLPs
ENGINE = "reference"  #: acpg_lab's engine for targets 1-7 (``--engine``)
#: The phases of `acpg_lab.training.train` that `ours` times: (owner, attribute) -> phase name.
PHASES = {(training, "collect_rollout"): "collect", (training, "advantages"): "advantages",
          (training, "update"): "update", (Instruments, "after_update"): "logging", (History, "log"): "logging"}


def _timed(function, phase: str, spent: dict[str, float]):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            spent[phase] += time.perf_counter() - start

    return timed


def ours(env_id: str, fields: dict, seeds: int, steps: int, **extra) -> tuple[float, dict[str, float], al.Run]:
    """(wall seconds, seconds spent in each phase of `PHASES`, run) of one acpg_lab call training ``seeds`` seeds
    (with the engine `ENGINE` unless ``extra`` names one)."""
    spent = dict.fromkeys(PHASES.values(), 0.0)
    originals = {key: getattr(*key) for key in PHASES}
    for (owner, name), phase in PHASES.items():
        setattr(owner, name, _timed(originals[owner, name], phase, spent))
    try:
        cfg = al.TrainConfig(env_id=env_id, seeds=tuple(range(seeds)), total_steps=steps, device=DEVICE,
                             num_threads=1, **NETWORK, **fields, **{"engine": ENGINE, **extra})
        start = time.perf_counter()
        run = al.train(cfg, progress=False)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, spent, run
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


def gflops(work, flops: float, seconds: float) -> float:
    """GFLOP/s of ``work()`` (``flops`` operations a call), called once to warm up and then repeatedly for
    ``seconds`` (synchronising after each call on a GPU)."""
    work()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        reps += 1
        if DEVICE == "cuda":
            torch.cuda.synchronize()
    return flops * reps / (time.perf_counter() - start) / 1e9


def matmul_peak_gflops(seconds: float = 1.0) -> float:
    """Measured float32 batched-matmul rate where acpg_lab trains: [16, 1024, 256] x [16, 256, 256] on one CPU
    thread, or [64, 4096, 1024] x [64, 1024, 1024] on the GPU."""
    torch.set_num_threads(1)
    s, n, k = (16, 1024, 256) if DEVICE == "cpu" else (64, 4096, 1024)
    a, b = torch.randn(s, n, k, device=DEVICE), torch.randn(s, k, k, device=DEVICE)
    return gflops(lambda: torch.bmm(a, b), 2 * s * n * k * k, seconds)


def matmul_at_update_shapes(seeds: int, batch: int, width: int = 64, seconds: float = 1.0) -> float:
    """GFLOP/s of the matmuls alone at the update's own shapes: the forward ``[S, B, 64] x [S, 64, 64]`` and its two
    backward products, as the update runs them for every hidden layer. This is the ceiling of target 5 at these
    shapes: the roofline can be no higher than this rate over the peak."""
    x, w = torch.randn(seeds, batch, width, device=DEVICE), torch.randn(seeds, width, width, device=DEVICE)
    bias, grad = torch.randn(seeds, 1, width, device=DEVICE), torch.randn(seeds, batch, width, device=DEVICE)

    def products() -> None:
        torch.baddbmm(bias, x, w)
        torch.bmm(grad, w.transpose(1, 2))
        torch.bmm(x.transpose(1, 2), grad)

    return gflops(products, 3 * 2 * seeds * batch * width * width, seconds)


def update_flops(obs_dim: int, num_actions: int, fields: dict, seeds: int, steps: int) -> float:
    """Floating-point operations of the update phase: forward and backward (3x the forward's matmuls) of actor and
    critic on every sample of every epoch."""
    sizes = [obs_dim, *NETWORK["hidden_sizes"]]
    dense = sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
    per_sample = 2 * (2 * dense + sizes[-1] * (num_actions + 1))
    batch = fields["num_envs"] * fields["rollout_steps"]
    used = batch // fields["minibatch_size"] * fields["minibatch_size"]
    return 3 * per_sample * used * fields["epochs"] * (steps // batch) * seeds


#: MinAtar Breakout's observation (10 x 10 x 4 channels) and minimal action set (target 3's roofline)
MINATAR_OBS, MINATAR_ACTIONS, MINATAR_CHANNELS = (10, 10, 4), 3, 16


def minatar_layers() -> list[tuple[int, int, int]]:
    """The matmuls of one MinAtar network (`acpg_lab.networks.MinAtarCNN` and a head) per sample, as (rows, k, n):
    the 3x3 convolution as an unfolded matmul over the 8 x 8 patches, then the dense layers and the output."""
    height, width, channels = MINATAR_OBS
    patches = (height - 2) * (width - 2)
    sizes = [MINATAR_CHANNELS * patches, *NETWORK["hidden_sizes"]]
    return [(patches, channels * 9, MINATAR_CHANNELS),
            *((1, i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)), (1, sizes[-1], MINATAR_ACTIONS + 1)]


def minatar_update_flops(fields: dict, seeds: int, steps: int) -> float:
    """Floating-point operations of the MinAtar update phase: actor and critic (each its own torso), forward and
    backward (3x the forward's matmuls), on every sample of every epoch."""
    per_sample = 2 * sum(2 * rows * k * n for rows, k, n in minatar_layers())
    batch = fields["num_envs"] * fields["rollout_steps"]
    used = batch // fields["minibatch_size"] * fields["minibatch_size"]
    return 3 * per_sample * used * fields["epochs"] * (steps // batch) * seeds


def minatar_matmuls_gflops(seeds: int, batch: int, seconds: float = 1.0) -> float:
    """GFLOP/s of the MinAtar update's matmuls alone at their own shapes (the unfolded convolution and the dense
    layers, forward and both backward products, seed-batched): the ceiling of target 3's roofline."""
    shapes = [(torch.randn(seeds, batch * rows, k, device=DEVICE), torch.randn(seeds, k, n, device=DEVICE),
               torch.randn(seeds, batch * rows, n, device=DEVICE)) for rows, k, n in minatar_layers()]

    def products() -> None:
        for x, w, grad in shapes:
            torch.bmm(x, w)
            torch.bmm(grad, w.transpose(1, 2))
            torch.bmm(x.transpose(1, 2), grad)

    return gflops(products, sum(3 * 2 * seeds * batch * rows * k * n for rows, k, n in minatar_layers()), seconds)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    gpu = f", acpg_lab on {torch.cuda.get_device_name()}" if DEVICE == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} (1 CPU thread per run){gpu}, "
            f"Python {platform.python_version()}, acpg_lab {al.__version__}, engine {ENGINE!r} for targets 1-7")


README = Path(__file__).with_name("README.md")  #: where the latest table is written (unless --no-write)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks``: a usage error (argparse's, a bad ``ACPG_LAB_*`` variable, ``--max-seeds`` below 1,
    ``--device cuda`` without a GPU, a README that cannot be written, Stable-Baselines3 missing) is one line on
    stderr, exit 2, before anything is measured."""
    parser = OneLineParser(prog="python -m benchmarks", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: every code path, no evidence")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/README.md alone")
    parser.add_argument("--max-seeds", type=int, default=256, help="largest seed count of the scaling curve")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where acpg_lab trains")
    parser.add_argument("--engine", default="reference", choices=list(ENGINES),
                        help="acpg_lab's TrainConfig.engine for targets 1-7 (8 runs both)")
    args = parser.parse_args(argv)
    try:
        check_environment()
        check_int("--max-seeds", args.max_seeds, 1)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no GPU here")
        require_extra("stable_baselines3", "bench", needed_by="python -m benchmarks")
        if not args.no_write:
            check_output_file(README, what="the benchmark table")
    except (ValueError, MissingExtra) as err:
        return fail(parser.prog, err)
    run(quick=args.quick, write=not args.no_write, max_seeds=args.max_seeds, device=args.device, engine=args.engine)
    return 0


def run(*, quick: bool, write: bool, max_seeds: int, device: str, engine: str = "reference") -> None:
    """Measure every target, print the table and (``write``) write it into `README`."""
    global DEVICE, ENGINE
    DEVICE, ENGINE = device, engine
    q = quick
    solve_steps, thru_steps, scale_steps = (2048, 1024, 512) if q else (100_000, 50_000, 10_240)
    rows: list[tuple[str, str, str, str]] = []  # (target, measured, ratio, goal)

    def say(target: str, measured: str, ratio: str, goal: str) -> None:
        rows.append((target, measured, ratio, goal))
        print(f"{target:<44} {measured:<52} {ratio:>10}  {goal}", flush=True)

    print(machine(), flush=True)
    # 1. seeds per second
    sb3 = sb3_seconds("CartPole-v1", RL_ZOO, solve_steps)
    wall, _, run = ours("CartPole-v1", RL_ZOO, 16, solve_steps)
    solved = int((run.evaluate(episodes=10).return_mean >= 475).sum())
    say("1. PPO CartPole rl-zoo, 16 seeds x 100k", f"ours {wall:.1f} s ({wall / 16:.2f} s/seed, {solved}/16 solved),"
        f" SB3 {sb3:.1f} s", f"{wall / 16 / sb3:.3f}x", "<= 0.10x, >= 15 solved")
    # 2. throughput
    for env_id, seeds, goal in (("CartPole-v1", 16, 20), ("CartPole-v1", 64, 25), ("Acrobot-v1", 16, 12)):
        sb3 = thru_steps / sb3_seconds(env_id, CLEANRL, thru_steps)
        wall, _, _ = ours(env_id, CLEANRL, seeds, thru_steps)
        rate = seeds * thru_steps / wall
        say(f"2. CleanRL PPO {env_id}, {seeds} seeds", f"ours {rate:,.0f} steps/s, SB3 {sb3:,.0f} steps/s",
            f"{rate / sb3:.1f}x", f">= {goal}x")
    sb3 = thru_steps / sb3_seconds("MinAtar/Breakout-v1", MINATAR, thru_steps)
    wall, spent, _ = ours("MinAtar/Breakout-v1", MINATAR, 8, thru_steps)
    rate = 8 * thru_steps / wall
    say("3. PPO MinAtar Breakout, 8 seeds, same CNN", f"ours {rate:,.0f} steps/s, SB3 {sb3:,.0f} steps/s",
        f"{rate / sb3:.1f}x", "(was >= 5x; the goal is now the roofline below)")
    conv_ceiling = minatar_matmuls_gflops(8, MINATAR["minibatch_size"], seconds=0.2 if q else 1.0)
    achieved = minatar_update_flops(MINATAR, 8, thru_steps) / spent["update"] / 1e9
    say("3. roofline: MinAtar update, 8 seeds", f"update at {achieved:.1f} of {conv_ceiling:.1f} GFLOP/s (the conv "
        f"+ dense matmuls alone at its shapes); update {spent['update'] / wall:.0%} of the run",
        f"{achieved / conv_ceiling:.1%}", ">= 50%")
    # 4. scaling, 5. roofline against the higher of the two measured matmul rates
    peak = matmul_peak_gflops(0.2 if q else 1.0)
    at_shapes = matmul_at_update_shapes(16, RL_ZOO["minibatch_size"], seconds=0.2 if q else 1.0)
    ceiling = max(peak, at_shapes)
    counts = [s for s in (1, 2, 4, 8, 16, 64, 256, 1024) if s <= max_seeds]
    for seeds in counts:
        wall, spent, _ = ours("CartPole-v1", RL_ZOO, seeds, scale_steps)
        achieved = update_flops(4, 2, RL_ZOO, seeds, scale_steps) / spent["update"] / 1e9
        say(f"4. scaling: CartPole rl-zoo, {seeds} seeds", f"{wall / seeds * 1e3:.0f} ms/seed per {scale_steps} "
            f"steps; update {spent['update'] / wall:.0%} of the time", f"{achieved / ceiling:.1%}",
            f"5. update at {achieved:.1f} of {ceiling:.0f} GFLOP/s (goal >= 50%)")
    say("5. ceiling: the matmuls alone at the update's shapes", f"[16, 256, 64] x [16, 64, 64] fwd + bwd: "
        f"{at_shapes:.1f} GFLOP/s, large bmm {peak:.1f} GFLOP/s", f"{at_shapes / peak:.1%}",
        "at-shapes over large: the higher is target 5's ceiling")
    # 6. diagnostics overhead
    plain, _, _ = ours("CartPole-v1", RL_ZOO, 16, scale_steps)
    observed, _, _ = ours("CartPole-v1", RL_ZOO, 16, scale_steps, diagnostics_every=1)
    say("6. diagnostics every update, 16 seeds", f"{observed:.1f} s vs {plain:.1f} s", f"{observed / plain:.2f}x",
        "<= 1.10x")
    time_split_row(say, scale_steps)
    aggregate = engine_rows(say, scale_steps, thru_steps, ceiling)
    jax_row(say, thru_steps, aggregate)
    if write:
        write_readme(rows, quick=q)


def time_split_row(say, steps: int) -> None:
    """Target 7: where a 16-seed CartPole rl-zoo run spends its time, by phase of `acpg_lab.training.train`."""
    wall, spent, _ = ours("CartPole-v1", RL_ZOO, 16, steps)
    parts = [f"{phase} {seconds / wall:.0%}" for phase, seconds in spent.items()]
    say("7. time split: CartPole rl-zoo, 16 seeds", " / ".join(parts) + f" / other {1 - sum(spent.values()) / wall:.0%}"
        f" of {wall:.1f} s", "-", "where the time goes")


def engine_rows(say, scale_steps: int, thru_steps: int, ceiling: float) -> float:
    """Target 8: ``engine="fused"`` against ``"reference"``, each run twice in alternation and its faster run
    kept (so a moment of load elsewhere hurts neither more); returns the fused engine's aggregate steps/s at 64
    seeds on CleanRL's CartPole settings (target 9's comparison)."""
    best: dict[str, tuple[float, float]] = {}
    flops = update_flops(4, 2, RL_ZOO, 16, scale_steps)
    for _ in range(2):
        for engine in ("reference", "fused"):
            wall, spent, _ = ours("CartPole-v1", RL_ZOO, 16, scale_steps, engine=engine)
            best[engine] = min(best.get(engine, (wall, spent["update"])), (wall, spent["update"]))
    (ref_wall, ref_update), (wall, update) = best["reference"], best["fused"]
    say("8. engine fused vs reference: rl-zoo, 16 seeds", f"update {update:.2f} s vs {ref_update:.2f} s (at "
        f"{flops / update / 1e9:.1f} vs {flops / ref_update / 1e9:.1f} of {ceiling:.0f} GFLOP/s); run {wall:.1f} s "
        f"vs {ref_wall:.1f} s", f"{update / ref_update:.2f}x", f"update < 1x (run {wall / ref_wall:.2f}x)")
    rates = {}
    for engine in ("reference", "fused"):
        wall, _, _ = ours("CartPole-v1", CLEANRL, 64, thru_steps, engine=engine)
        rates[engine] = 64 * thru_steps / wall
    say("8. engine fused vs reference: CleanRL, 64 seeds", f"{rates['fused']:,.0f} vs {rates['reference']:,.0f} "
        "steps/s (aggregate)", f"{rates['fused'] / rates['reference']:.2f}x", "> 1x")
    return rates["fused"]


def jax_row(say, steps: int, aggregate: float) -> None:
    """Target 9: one seed of a PureJaxRL-style PPO (`benchmarks.jax_ppo`) against acpg_lab's 64-seed aggregate,
    when JAX is importable; otherwise a row saying why it was skipped."""
    try:
        from benchmarks import jax_ppo
    except ImportError as err:
        reason = f"skipped: JAX is not importable ({err}); pip install -e '.[bench]'"
        print(reason, flush=True)
        say("9. PureJaxRL-style PPO CartPole, 1 seed", reason, "-", "64-seed aggregate > 1 JAX seed")
        return
    rate = jax_ppo.steps_per_second(total_steps=max(steps, 4 * 512))
    say("9. PureJaxRL-style PPO CartPole, 1 seed", f"JAX {rate:,.0f} steps/s (1 seed, jit, compile excluded); "
        f"ours {aggregate:,.0f} steps/s (64 seeds, fused)", f"{aggregate / rate:.2f}x", "64-seed aggregate > 1x")


def write_readme(rows: list[tuple[str, str, str, str]], *, quick: bool) -> None:
    path = README
    head = path.read_text().split("<!-- latest -->")[0] if path.exists() else "# Benchmarks\n\n"
    table = ["| target | measured | ratio | goal |", "|---|---|---|---|"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    stamp = f"{datetime.date.today().isoformat()}{' (--quick: not evidence)' if quick else ''}, {machine()}"
    path.write_text(f"{head}<!-- latest -->\nLatest run: {stamp}.\n\n" + "\n".join(table) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
