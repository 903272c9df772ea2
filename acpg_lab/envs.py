"""Environments: id resolution (MinAtar and acpg_lab ids register themselves) and seed-batched vector envs.

Each seed owns its own gymnasium vector environment and random stream, so a seed's experience does not depend
on which other seeds share the batch. Gymnasium 1.x NEXT_STEP autoreset is used throughout: after a step that
ends an episode, the next step of that sub-environment is a *reset step* (action ignored, reward 0, the reset
observation returned); training masks those steps out.

For CartPole, Acrobot and the ``acpg_lab/`` ids (`acpg_lab.batched_envs`) `SeedEnvs` steps every seed's
environments in one vectorised numpy call instead of one gymnasium call per seed: the same observations,
rewards, flags and labels bit for bit, and the same per-seed random streams, only faster. Turn it off with
``SeedEnvs(..., fast=False)``, or for a whole process (`acpg_lab.train`, the notebooks) with the environment
variable ``ACPG_LAB_FAST_ENVS=0``.

On a GPU, training (`acpg_lab.training`) steps the same ids' device-resident versions instead
(`acpg_lab.batched_envs.device`, ``SeedEnvs(..., resident=True)``): environments, rewards, flags, labels and the
episode bookkeeping stay tensors on the training device, so a rollout never waits for the host. They draw from
counter-based streams rather than gymnasium's (the same dynamics, other random numbers); the CPU default path is
untouched.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from acpg_lab.batched_envs import BatchedEnv, make_batched_env
from acpg_lab.batched_envs.device import DeviceEnv, make_device_env, restore_tensors, supports_device
from acpg_lab.env_state import Uncapturable, as_tensors, capture_env_state, restore_env_state

_SEED_RANGE = 2**31 - 2**16  #: seeds below it stay valid C ints for ale-py, which adds the sub-environment index

__all__ = ["resolve_env_id", "is_atari", "probe_spaces", "SeedEnvs", "EnvStep", "make_vector_env", "fast_envs_default"]


def _register_namespaces(env_id: str) -> None:
    if env_id.startswith("MinAtar/"):
        import minatar.gym

        if "MinAtar/Breakout-v1" not in gym.registry:
            minatar.gym.register_envs()
    elif env_id.startswith("acpg_lab/"):
        import acpg_lab.optimal_envs  # noqa: F401  (registers on import)
    elif env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError as err:  # pragma: no cover - ale-py is a dependency
            raise ValueError(f"env_id={env_id!r} needs the ale-py package (pip install ale-py)") from err
        if "ALE/Pong-v5" not in gym.registry:
            gym.register_envs(ale_py)


def is_atari(env_id: str) -> bool:
    """ALE ids: vectorised by ale-py's native `AtariVectorEnv` (84x84 grey, 4 stacked frames, frameskip 4)."""
    return env_id.startswith("ALE/")


def resolve_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``; ValueError with close matches if there is none. Creates no env."""
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string, got {env_id!r}")
    _register_namespaces(env_id)
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(f"env_id={env_id!r} is not a registered gymnasium environment{hint}")
    return gym.spec(env_id)


def probe_spaces(env_id: str, env_kwargs: dict[str, Any] | None = None,
                 reset: bool = False) -> tuple[gym.Space, gym.Space, dict]:
    """Observation space, action space and (if ``reset``) the reset info of one environment as training sees it
    (through `make_vector_env` with one copy, so preprocessing vector envs such as ALE's report their own
    spaces), made and closed."""
    resolve_env_id(env_id)
    try:
        env = make_vector_env(env_id, 1, env_kwargs)
    except TypeError as err:
        raise ValueError(f"env_kwargs={env_kwargs!r} were rejected by {env_id!r}: {err}") from err
    try:
        info = env.reset(seed=0)[1] if reset else {}
        return env.single_observation_space, env.single_action_space, info
    finally:
        env.close()


def make_vector_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies: gymnasium's native vector version where one exists, else sync.

    ALE ids get ale-py's native vector env with its standard preprocessing but unclipped rewards (training clips
    them when ``TrainConfig.reward_clip`` is on, so logged returns are game scores); ``env_kwargs`` override.
    """
    spec = resolve_env_id(env_id)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    kwargs = dict(env_kwargs or {})
    if is_atari(env_id):
        kwargs.setdefault("reward_clipping", False)
        kwargs.setdefault("num_threads", 1)  # one worker thread per seed's env set; seeds already run side by side
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)


class EnvStep(NamedTuple):
    """What `SeedEnvs.step` returns; tensors are ``[S, E]`` float on the training device.

    On the device-resident path (`SeedEnvs.resident`) nothing is read to the host: ``ended`` is a bool tensor
    and ``finished_returns`` / ``finished_lengths`` are ``[S, E]`` tensors holding the ended episodes' return
    (float64) and length (int64) where ``ended``, 0 elsewhere (`acpg_lab.rollout.EpisodeLog` reads them per seed)."""

    obs: torch.Tensor  #: next observations ``[S, E, *obs_shape]`` (a final observation after an episode end)
    reward: torch.Tensor
    terminated: torch.Tensor  #: 1 where an episode terminated on this step
    truncated: torch.Tensor  #: 1 where an episode was truncated (time limit) on this step
    valid: torch.Tensor  #: 0 on NEXT_STEP reset steps (action ignored, no transition), else 1
    ended: np.ndarray | torch.Tensor  #: bool ``[S, E]``, an episode ended on this step
    labels: torch.Tensor | None  #: ``info["optimal_action"]`` for ``obs``, int64 ``[S, E]``, if published
    finished_returns: list[np.ndarray] | torch.Tensor  #: per seed, returns of the episodes that ended on this step
    finished_lengths: list[np.ndarray] | torch.Tensor  #: per seed, their lengths


def fast_envs_default() -> bool:
    """Whether `SeedEnvs` uses batched environments where it can when not told: yes, unless the environment
    variable ``ACPG_LAB_FAST_ENVS`` is ``0``, ``false``, ``no`` or ``off`` (results are bitwise the same either way).
    ``1``, ``true``, ``yes``, ``on`` or empty mean yes; anything else is refused with an error naming the variable
    (a typo must not silently pick a path)."""
    raw = os.environ.get("ACPG_LAB_FAST_ENVS", "")
    value = raw.strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"ACPG_LAB_FAST_ENVS must be one of 1, true, yes, on (batched environments, the default) or "
                     f"0, false, no, off (one environment at a time), got {raw!r}")


class SeedEnvs:
    """S independent vector environments (one per seed) stepped together; tensors are ``[S, E, ...]``.

    Tracks episode returns and lengths itself, so it does not depend on wrappers, and reports which steps were
    NEXT_STEP reset steps. If the environments publish ``info["optimal_action"]`` it is returned as labels.

    ``fast`` (default `fast_envs_default`): for the ids and ``env_kwargs`` that `acpg_lab.batched_envs` supports,
    one `BatchedEnv` steps all seeds at once (bitwise the same results); ``envs`` is then ``[that env]``, else
    one gymnasium vector env per seed.

    ``resident``: step a `DeviceEnv` on ``device`` and keep everything there (`EnvStep` says what changes); its
    random streams are counter-based, not gymnasium's, so results differ from the other paths'. True demands it
    (ValueError for an id without one, `supports_device`); None picks it when ``device`` is not the CPU, the
    fast path is on and the id has one (what training does); False (the default, what evaluation uses) never.
    ``envs`` is then ``[that env]``.
    """

    def __init__(self, env_id: str, *, num_envs: int, env_seeds: Sequence[int], device: torch.device,
                 env_kwargs: dict[str, Any] | None = None, fast: bool | None = None,
                 resident: bool | None = False) -> None:
        fast = fast_envs_default() if fast is None else fast
        device = torch.device(device)
        if fast or resident:
            resolve_env_id(env_id)  # registers the id's namespace
        if resident is None:
            resident = fast and device.type != "cpu" and supports_device(env_id, env_kwargs)
        self.batched: BatchedEnv | None = None
        self.device_env: DeviceEnv | None = None
        if resident:
            self.device_env = make_device_env(env_id, num_envs=num_envs, env_seeds=env_seeds, device=device,
                                              env_kwargs=env_kwargs)
        elif fast:
            self.batched = make_batched_env(env_id, num_envs, env_seeds, env_kwargs)
        if self.device_env is not None or self.batched is not None:
            self.envs: list[Any] = [self.device_env or self.batched]
        else:
            self.envs = [make_vector_env(env_id, num_envs, env_kwargs) for _ in env_seeds]
        # ale-py seeds sub-environments with seed, seed + 1, ... as C ints: keep them below 2**31
        self.env_seeds = [int(s) % _SEED_RANGE if is_atari(env_id) else int(s) for s in env_seeds]
        self.device, self.env_id = device, env_id
        self.num_seeds, self.num_envs = len(self.env_seeds), num_envs
        self.single_observation_space = self.envs[0].single_observation_space
        self.single_action_space = self.envs[0].single_action_space
        self.ep_return = np.zeros((self.num_seeds, num_envs))
        self.ep_length = np.zeros((self.num_seeds, num_envs), dtype=np.int64)
        self.done = np.zeros((self.num_seeds, num_envs), dtype=bool)
        if self.resident:  # the same accumulators as tensors on the device
            self.ep_return, self.ep_length, self.done = (torch.from_numpy(x).to(device)
                                                         for x in (self.ep_return, self.ep_length, self.done))
        self._no_return, self._no_length = np.zeros(0), np.zeros(0, dtype=np.int64)

    @property
    def resident(self) -> bool:
        """Whether the environments and their bookkeeping live on ``device`` (`EnvStep` holds tensors only)."""
        return self.device_env is not None

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(obs.astype(np.float32, copy=False)).to(self.device)

    def _labels(self, infos: list[dict]) -> torch.Tensor | None:
        if "optimal_action" not in infos[0]:
            return None
        return torch.from_numpy(np.stack([np.asarray(i["optimal_action"]) for i in infos]).astype(np.int64))

    @staticmethod
    def _batched_labels(labels: np.ndarray | None) -> torch.Tensor | None:
        return None if labels is None else torch.from_numpy(labels.astype(np.int64))

    def reset(self, *, reseed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Seed and reset every environment; ``reseed`` > 0 shifts every seed (a resumed run's fresh episodes
        under ``TrainConfig.resume_envs="reseed"``: the shift is a function of the update it resumes at)."""
        self.ep_return[:] = 0
        self.ep_length[:] = 0
        self.done[:] = False
        seeds = [(s + 7919 * int(reseed)) % _SEED_RANGE if reseed else s for s in self.env_seeds]
        if self.device_env is not None:
            self.device_env.env_seeds = seeds
            obs, labels = self.device_env.reset()
            return obs.to(torch.float32), labels
        if self.batched is not None:
            self.batched.env_seeds = seeds
            obs, labels = self.batched.reset()
            return self._obs(obs), self._batched_labels(labels)
        out = [env.reset(seed=seed) for env, seed in zip(self.envs, seeds, strict=True)]
        return self._obs(np.stack([o for o, _ in out])), self._labels([i for _, i in out])

    def step(self, actions: torch.Tensor) -> EnvStep:
        """Step every seed's environments with ``actions [S, E]``."""
        if self.device_env is not None:
            return self._step_on_device(actions)
        if self.batched is not None:
            obs, reward, terminated, truncated, labels = self.batched.step(actions.cpu().numpy())
            labels = self._batched_labels(labels)
        else:
            results = [env.step(a) for env, a in zip(self.envs, actions.cpu().numpy(), strict=True)]
            obs, reward, terminated, truncated, infos = zip(*results, strict=True)
            obs, reward, terminated, truncated = (np.stack(x) for x in (obs, reward, terminated, truncated))
            labels = self._labels(list(infos))
        reward = reward.astype(np.float64)
        real, terminated, truncated, ended, ep_return, ep_length = self._account(reward, terminated, truncated, np)
        finished_returns, finished_lengths = self._finished(ended, ep_return, ep_length)
        signals = np.empty((4, *ended.shape), dtype=np.float32)
        signals[0], signals[1], signals[2], signals[3] = reward, terminated, truncated, real
        return EnvStep(self._obs(obs), *torch.from_numpy(signals).to(self.device).unbind(0), ended, labels,
                       finished_returns, finished_lengths)

    def _step_on_device(self, actions: torch.Tensor) -> EnvStep:
        """`step`'s bookkeeping as tensor ops on the device (the same arithmetic, nothing read to the host)."""
        obs, reward, terminated, truncated, labels = self.device_env.step(actions)
        real, terminated, truncated, ended, ep_return, ep_length = self._account(reward, terminated, truncated, torch)
        finished_returns = torch.where(ended, ep_return, 0.0)
        finished_lengths = torch.where(ended, ep_length, 0)
        signals = torch.stack([x.to(torch.float32) for x in (reward, terminated, truncated, real)])
        return EnvStep(obs.to(torch.float32), *signals.unbind(0), ended, labels, finished_returns, finished_lengths)

    def _account(self, reward: Any, terminated: Any, truncated: Any, xp: Any) -> tuple[Any, ...]:
        """The episode bookkeeping of a step, the same arithmetic on the host (``xp`` numpy) and on the device
        (torch): the step after an episode end is a reset step, not a transition. Returns (real, terminated,
        truncated, ended, each episode's return and length including this step); the accumulators restart where
        an episode ended."""
        real = ~self.done
        terminated, truncated = terminated & real, truncated & real
        ep_return, ep_length = self.ep_return + xp.where(real, reward, 0.0), self.ep_length + real
        ended = terminated | truncated
        self.ep_return, self.ep_length = xp.where(ended, 0.0, ep_return), xp.where(ended, 0, ep_length)
        self.done = ended
        return real, terminated, truncated, ended, ep_return, ep_length

    def _finished(self, ended: np.ndarray, ep_return: np.ndarray,
                  ep_length: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per seed, the returns and lengths of its episodes that ended: slices of one gather (no per-seed
        boolean indexing), or shared empty arrays on the many steps where nothing ended."""
        if not ended.any():
            return [self._no_return] * self.num_seeds, [self._no_length] * self.num_seeds
        stops = np.cumsum(ended.sum(1)).tolist()
        starts = [0, *stops[:-1]]
        returns, lengths = ep_return[ended], ep_length[ended]
        return ([returns[a:b] for a, b in zip(starts, stops, strict=True)],
                [lengths[a:b] for a, b in zip(starts, stops, strict=True)])

    def get_state(self) -> dict[str, Any]:
        """Everything an exact continuation needs after `reset`: the episode accumulators and each environment's
        internal state and random streams, as numpy arrays and plain data (`set_state` takes it back).

        Batched environments give their own state; gymnasium environments are read attribute by attribute
        (`capture_env_state`), and ValueError names the env id and the attribute where one keeps state that
        cannot be captured exactly (Box2D worlds, ALE emulators)."""
        if self.device_env is not None:
            accumulators = {k: getattr(self, k).cpu().clone() for k in ("ep_return", "ep_length", "done")}
            return {"accumulators": accumulators, "device": self.device_env.get_state()}
        accumulators = as_tensors({"ep_return": self.ep_return, "ep_length": self.ep_length, "done": self.done})
        if self.batched is not None:
            return {"accumulators": accumulators, "batched": as_tensors(self.batched.get_state())}
        try:
            envs = [capture_env_state(env, f"envs[{i}]") for i, env in enumerate(self.envs)]
        except Uncapturable as err:
            raise ValueError(f"env_id={self.env_id!r} keeps state that cannot be checkpointed exactly ({err}); "
                             "train it with checkpoint_every=0, or with resume_envs='reseed' (resumed runs "
                             "restart their environments)") from None
        return {"accumulators": accumulators, "vector": envs}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned, into environments made with the same arguments and `reset`."""
        if ("device" in state) != self.resident:
            raise ValueError("environment state of device-resident environments cannot be restored into host ones, "
                             "or the reverse (was it saved on another device?)")
        if self.device_env is not None:
            restore_tensors(self, state["accumulators"], ("ep_return", "ep_length", "done"))
            self.device_env.set_state(state["device"])
            return
        for key, value in state["accumulators"].items():
            current = getattr(self, key)
            restored = np.array(value.numpy() if isinstance(value, torch.Tensor) else value, dtype=current.dtype)
            if restored.shape != current.shape:
                raise ValueError(f"{key} of shape {restored.shape} does not fit these environments' {current.shape}")
            setattr(self, key, restored)
        if ("batched" in state) != (self.batched is not None):
            raise ValueError("environment state of batched environments cannot be restored into gymnasium ones, or "
                             "the reverse (is ACPG_LAB_FAST_ENVS set differently?)")
        if self.batched is not None:
            self.batched.set_state(state["batched"])
        else:
            for env, env_state in zip(self.envs, state["vector"], strict=True):
                restore_env_state(env, env_state)

    def close(self) -> None:
        for env in self.envs:
            env.close()
