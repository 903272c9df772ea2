"""`Run`, what `train` returns: the resolved config, the history, the trained model, and what can be done with
them afterwards (save, load, evaluate, visited states, the plasticity probe on snapshots). Also `build_model`, the
one place a config becomes a seed-batched network, and `derived_seeds` (defined in `acpg_lab.seeds`), the integers
everything random in a seed's run is drawn from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from acpg_lab import metrics
from acpg_lab.algorithms import sample_actions, uniforms
from acpg_lab.config import TrainConfig, resolve_network
from acpg_lab.envs import SeedEnvs, probe_spaces
from acpg_lab.lock import directory_lock
from acpg_lab.manifest import declares_manifest, read_manifest, verify, write_manifest
from acpg_lab.networks import ActorCritic
from acpg_lab.seeds import derived_seeds
from acpg_lab.store import (
    MANIFEST,
    MARKERS,
    IntegrityError,
    read_json,
    read_stored,
    with_stored_defaults,
    write_atomic,
    write_atomic_with,
)

__all__ = ["Run", "build_model", "compact_obs", "derived_seeds", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is the GPU when torch sees one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(cfg: TrainConfig, obs_shape: Sequence[int], num_actions: int, init_offset: int = 0) -> ActorCritic:
    """The seed-batched actor-critic a resolved config describes (``init_offset``: see `ActorCritic`)."""
    network = resolve_network(cfg.network, cfg.env_id, obs_shape)
    return ActorCritic(obs_shape, num_actions, cfg.seeds, network=network, hidden_sizes=cfg.hidden_sizes,
                       activation=cfg.activation, head=cfg.head, head_normalize=cfg.head_normalize,
                       head_scale=cfg.head_scale, head_bias=cfg.head_bias, head_init_gain=cfg.head_init_gain,
                       shared_trunk=cfg.shared_trunk, init_offset=init_offset,
                       seed_scheme=cfg.seed_scheme, engine=cfg.engine)


def compact_obs(obs: Tensor) -> Tensor:
    """``obs`` on the CPU, as uint8 when every value is an integer in [0, 255] (image frames: 4x smaller on disk,
    read back exactly with ``.float()``)."""
    obs = obs.cpu()
    if obs.numel() and obs.min() >= 0 and obs.max() <= 255 and torch.equal(obs, obs.round()):
        return obs.to(torch.uint8)
    return obs


def fresh_model(cfg: TrainConfig) -> ActorCritic:
    """A freshly initialised model for a resolved config, its spaces read from a throw-away environment."""
    obs_space, act_space, _ = probe_spaces(cfg.env_id, cfg.env_kwargs)
    return build_model(cfg, obs_space.shape, int(act_space.n))


def _check_complete_history(history: pd.DataFrame, cfg: TrainConfig, path: Path) -> None:
    """`IntegrityError` unless ``history`` has a complete row for every seed and update (a finished run's)."""
    expected = cfg.num_updates * len(cfg.seeds)
    keys = [c for c in ("seed", "update", "step") if c in history.columns]
    cut = bool(history[keys].isna().any(axis=None)) if keys else True
    if len(history) != expected or cut:
        raise IntegrityError(f"{path} is truncated: {len(history)} rows{' (the last cut off)' if cut else ''}, a "
                             f"finished run of {len(cfg.seeds)} seeds x {cfg.num_updates} updates has {expected}")


@dataclass
class Run:
    """The result of `train`: resolved config, per-(seed, update) history, and the trained model."""

    config: TrainConfig
    history: pd.DataFrame
    model: ActorCritic
    wall_time: float
    interrupted: bool = False
    snapshots: dict[int, dict[str, Tensor] | Path] = field(default_factory=dict)
    """Actor weights by environment step (state dicts in memory, or paths of files written with torch.save)."""
    probe_obs: Tensor | None = None
    """The first rollout's observations ``[S, N, ...]`` (the initial policy's states), for the plasticity probe."""
    resumed_from: int = 0
    """The update this process resumed training at from a checkpoint (0: trained from the start)."""
    nonfinite: list[dict] = field(default_factory=list)
    """Seeds stopped or frozen by a non-finite loss, gradient or parameter: dicts of seed, update, quantity."""

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.config.seeds

    def save(self, directory: str | Path, *, tables: Mapping[str, pd.DataFrame] | None = None) -> Path:
        """Write ``history.csv``, ``model.pt`` (a state_dict), and, if the run kept them, the snapshots
        (``snapshots/actor_step<N>.pt``) and the probe batch (``probe_obs.pt``), so that a loaded run still supports
        `plasticity`; ``tables`` (file name -> table, e.g. ``{"evaluation.csv": run.evaluate()}``) as CSV files of
        the run, verified on load like the rest; then ``config.json`` (the marker of a complete run) and last
        ``manifest.json`` (every file's size and SHA-256, which `load` verifies). Each file is written
        atomically, under the directory's lock (`acpg_lab.lock`: a directory another process writes into is
        refused, naming that process)."""
        for name in tables or {}:
            if not isinstance(name, str) or Path(name).name != name or not name.endswith(".csv") \
                    or name == "history.csv":
                raise ValueError(f"tables: {name!r} is not a plain CSV file name (other than history.csv)")
        out = Path(directory)
        with directory_lock(out, label="run directory"):
            meta = dict(config=self.config.to_dict(), wall_time=self.wall_time, interrupted=self.interrupted,
                        version=version("acpg-lab"), nonfinite=self.nonfinite, manifest=MANIFEST)
            write_atomic_with(out / "history.csv", lambda tmp: self.history.to_csv(tmp, index=False))
            write_atomic_with(out / "model.pt", lambda tmp: torch.save(self.model.state_dict(), tmp))
            written = ["history.csv", "model.pt"]
            if self.snapshots:
                (out / "snapshots").mkdir(exist_ok=True)
                for step in self.snapshots:
                    name = f"snapshots/actor_step{step}.pt"
                    write_atomic_with(out / name, lambda tmp, step=step: torch.save(self.snapshot(step), tmp))
                    written.append(name)
            if self.probe_obs is not None:
                write_atomic_with(out / "probe_obs.pt", lambda tmp: torch.save(compact_obs(self.probe_obs), tmp))
                written.append("probe_obs.pt")
            for name, table in (tables or {}).items():
                write_atomic_with(out / name, lambda tmp, table=table: table.to_csv(tmp, index=False))
                written.append(name)
            marker = MARKERS["run"][0]
            write_atomic(out / marker, json.dumps(meta, indent=2))  # it marks a complete run...
            write_manifest(out, [*written, marker])  # ...once the manifest, written last, lists it
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Run:
        """Read a run written by `save` (the model with ``weights_only=True``), after verifying every file against
        its ``manifest.json``.

        Raises `acpg_lab.store.IntegrityError` naming the file when one is missing, truncated, corrupted or not
        what it should be, and when ``config.json`` is not valid JSON (half-written). A run saved before manifests
        existed loads unverified, with a one-line note; its history is still checked to be complete (every seed
        and update, no cut-off row)."""
        src = Path(directory)
        if not src.is_dir():
            raise FileNotFoundError(f"{src} is not a saved run: no such directory")
        marker = src / MARKERS["run"][0]
        required = not (src / MANIFEST).exists() and declares_manifest(read_json(marker))
        verified = verify(src, marker=marker.name, required=required)
        listed = set(read_manifest(src)["files"]) if verified else None
        meta = read_json(marker)
        try:
            raw = with_stored_defaults(meta["config"])  # saved before a field existed: what its absence meant
            raw["seeds"], raw["hidden_sizes"] = tuple(raw["seeds"]), tuple(raw["hidden_sizes"])
            cfg = TrainConfig(**raw)
            wall_time, interrupted = meta["wall_time"], meta["interrupted"]
        except (KeyError, TypeError) as err:
            raise IntegrityError(f"{marker} is not a saved run's config.json (bad or missing {err})") from None
        if {f.name for f in dataclasses.fields(TrainConfig)} - raw.keys():
            cfg = cfg.filled()  # saved before a field existed: its default reproduces what that run did
        model = fresh_model(cfg).to(device)
        model.load_state_dict(read_stored(src / "model.pt", lambda p: torch.load(p, map_location=device,
                                                                            weights_only=True)))
        snapshots: dict[int, dict[str, Tensor] | Path] = {}
        for f in (src / "snapshots").glob("actor_step*.pt"):
            if listed is not None and f"snapshots/{f.name}" not in listed:
                raise IntegrityError(f"{f} is not listed in {src / MANIFEST}: written after the run was saved")
            snapshots[int(f.stem.removeprefix("actor_step"))] = f
        probe = src / "probe_obs.pt"
        history = read_stored(src / "history.csv", lambda p: pd.read_csv(p, float_precision="round_trip"))
        if not verified and not interrupted:
            _check_complete_history(history, cfg, src / "history.csv")
        return cls(config=cfg, history=history, model=model, wall_time=wall_time, interrupted=interrupted,
                   nonfinite=meta.get("nonfinite", []), snapshots=dict(sorted(snapshots.items())),
                   probe_obs=read_stored(probe, lambda p: torch.load(p, weights_only=True)).float() if probe.exists()
                   else None)

    def snapshot(self, step: int) -> dict[str, Tensor]:
        """The actor's state dict saved at environment step ``step`` (see ``TrainConfig.snapshot_every``)."""
        if step not in self.snapshots:
            raise ValueError(f"no snapshot at step {step}; snapshots exist at steps {sorted(self.snapshots)}")
        state = self.snapshots[step]
        return torch.load(state, weights_only=True) if isinstance(state, Path) else state

    def actor_at(self, step: int) -> nn.Module:
        """A copy of the actor with the weights of the snapshot at ``step`` (on the CPU)."""
        actor = fresh_model(self.config).actor
        actor.load_state_dict(self.snapshot(step))
        return actor.eval()

    def plasticity(self, *, steps: int = 200, lr: float = 1e-3, seed: int = 0, part: str = "actor") -> pd.DataFrame:
        """The plasticity probe (`metrics.plasticity_probe`) on every snapshot: rows of seed, step, plasticity_kl.

        The probe batch is the first rollout (the initial policy's states); the target is a differently
        initialised actor, fixed by ``seed`` across snapshots. Higher = less plastic.

        ``part`` says what is refitted. ``"actor"``: the snapshot's actor as trained (its trainable parameters:
        the backbone alone under a fixed ETF or random head, backbone and head under a learnable one), towards an
        actor of the run's own architecture (whose initial logit scale depends on the head). ``"backbone"``: the
        snapshot's backbone alone, under a fixed random head of unit rows (`RandomHead`, a function of the seed:
        the same in every run of that seed), towards a learnable-head actor of row norm 1. Only ``"backbone"``
        compares runs with different heads fairly: the same parts are refitted under the same head towards the
        same target, so a difference is the backbone's.
        """
        if part not in ("actor", "backbone"):
            raise ValueError(f"part must be 'actor' or 'backbone', got {part!r}")
        if not self.snapshots or self.probe_obs is None:
            raise ValueError("this run kept no snapshots; train with TrainConfig(snapshot_every=...)")
        device = next(self.model.parameters()).device
        shape, k = self.probe_obs.shape[2:], self.model.num_actions
        target_cfg = fitted_cfg = self.config
        if part == "backbone":
            target_cfg = dataclasses.replace(self.config, head="linear", head_bias=False, head_init_gain=1.0)
            fitted_cfg = dataclasses.replace(self.config, head="random", head_bias=False)
            fixed_head = {f"head.{n}": t for n, t in build_model(fitted_cfg, shape, k).actor.head.state_dict().items()}

        def make_target() -> nn.Module:  # a fresh initialisation drawn from the probe's seeded torch RNG
            return build_model(target_cfg, shape, k, init_offset=int(torch.randint(1, 2**30, ()))).actor

        def make_fitted() -> nn.Module:
            return build_model(fitted_cfg, shape, k).actor

        def weights(step: int) -> dict[str, Tensor]:
            snap = self.snapshot(step)
            return snap if part == "actor" else {**{n: t for n, t in snap.items() if n.startswith("backbone.")},
                                                 **fixed_head}

        rows = []
        for step in sorted(self.snapshots):
            kl = metrics.plasticity_probe(make_fitted, weights(step), self.probe_obs.to(device), steps=steps,
                                          lr=lr, seed=seed, make_target=make_target)
            rows.append(pd.DataFrame(dict(seed=list(self.seeds), step=step, plasticity_kl=kl.cpu().numpy())))
        return pd.concat(rows, ignore_index=True)

    @torch.no_grad()
    def rollout_states(self, steps: int = 128, num_envs: int = 8, *, greedy: bool = True) -> Tensor:
        """Observations ``[S, steps * num_envs, ...]`` visited by each seed's policy on unseen environment seeds
        (the evaluation streams): a state batch for post-hoc analyses of a trained network."""
        cfg, model = self.config, self.model
        device = next(model.parameters()).device
        envs = SeedEnvs(cfg.env_id, num_envs=num_envs, env_seeds=[derived_seeds(s)["eval"] + 1 for s in cfg.seeds],
                        device=device, env_kwargs=cfg.env_kwargs)
        gens = [torch.Generator(device=device).manual_seed(derived_seeds(s)["eval"] + 1) for s in cfg.seeds]
        obs, _ = envs.reset()
        visited = []
        for _ in range(steps):
            visited.append(obs)
            logits = model.policy(obs).logits
            noise = None if greedy else uniforms(gens, num_envs, device=device)
            obs = envs.step(logits.argmax(-1) if greedy else sample_actions(logits, noise)).obs
        envs.close()
        return torch.cat(visited, 1)

    @torch.no_grad()
    def evaluate(self, episodes: int = 10, *, greedy: bool = True, max_steps: int = 100_000) -> pd.DataFrame:
        """Return per seed over ``episodes`` episodes on environment seeds never used in training.

        Greedy (argmax) actions by default. Each episode runs in its own environment; an episode still running
        after ``max_steps`` steps counts with the return it has so far.
        """
        if not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
        cfg, model = self.config, self.model
        device = next(model.parameters()).device
        envs = SeedEnvs(cfg.env_id, num_envs=episodes, env_seeds=[derived_seeds(s)["eval"] for s in cfg.seeds],
                        device=device, env_kwargs=cfg.env_kwargs)
        gens = [torch.Generator(device=device).manual_seed(derived_seeds(s)["eval"]) for s in cfg.seeds]
        obs, _ = envs.reset()
        first = np.full((len(cfg.seeds), episodes), np.nan)  # return of each environment's first episode
        for _ in range(max_steps):
            logits = model.policy(obs).logits
            step = envs.step(logits.argmax(-1) if greedy
                             else sample_actions(logits, uniforms(gens, episodes, device=device)))
            for s, ended in enumerate(step.ended):
                where = np.flatnonzero(ended)
                new = np.isnan(first[s, where])
                first[s, where[new]] = step.finished_returns[s][new]
            obs = step.obs
            if not np.isnan(first).any():
                break
        running = np.isnan(first)
        first[running] = envs.ep_return[running]
        envs.close()
        return pd.DataFrame(dict(seed=list(cfg.seeds), return_mean=first.mean(1), return_std=first.std(1),
                                 episodes=episodes, unfinished=running.sum(1)))
