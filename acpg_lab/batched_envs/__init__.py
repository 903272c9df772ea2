"""Batched environments: every seed's environments stepped in one vectorised numpy call, reproducing gymnasium.

`SeedEnvs` holds one gymnasium vector environment per seed and steps them one after the other; for the ids here
it instead holds one `BatchedEnv` that steps all ``S x E`` environments at once. Each batched environment
reproduces, bit for bit, what ``gym.make_vec(env_id, E, vectorization_mode=<native or sync>)`` reset with
``seed=env_seeds[s]`` returns for seed ``s`` (observations, rewards, terminated/truncated flags, NEXT_STEP
autoreset), because it performs the same float64 operations in the same order and draws from the same random
streams in the same sequence; a seed's stream is touched only by its own resets, so a seed's experience does not
depend on which other seeds share the batch. ``tests/test_batched_envs.py`` checks both claims side by side.

| id | gymnasium's path today | random streams | file |
|---|---|---|---|
| ``CartPole-v0``, ``CartPole-v1`` | native ``CartPoleVectorEnv`` | one per seed | ``cartpole.py`` |
| ``Acrobot-v1`` | ``SyncVectorEnv`` of ``AcrobotEnv`` + ``TimeLimit`` | one per sub-env, seed + i | ``acrobot.py`` |
| ``acpg_lab/...`` (`acpg_lab.optimal_envs`) | their numpy vector envs | one per seed | ``known_optimal.py`` |
| ``MinAtar/...`` not Seaquest | ``SyncVectorEnv`` of minatar's env | ``RandomState(seed + i)`` | ``minatar/`` (torch) |

CartPole takes the ``env_kwargs`` ``max_episode_steps`` and ``sutton_barto_reward``, Acrobot
``max_episode_steps``, the ``acpg_lab/`` ids all of their constructors' (the layout is the vector env's own);
with any other, `make_batched_env` returns None and `SeedEnvs` falls back to gymnasium. ``streams.py`` holds the
read-ahead per-seed random streams that make a step's resets of all seeds one gather.

``device.py`` has device-resident versions of the same ids (torch, on the training device, sharing these dynamics:
``torch_classic.py``, ``torch_known_optimal.py``, and the MinAtar games), which training uses on a GPU; they draw
from counter-based streams instead of gymnasium's, so they are not in the table's bitwise guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["BatchedEnv", "count_steps", "make_batched_env", "supports"]


def count_steps(steps: Any, prev_done: Any, terminated: Any, max_episode_steps: int, *,
                xp: Any = np) -> tuple[Any, Any, Any, Any, Any]:
    """gymnasium's ``TimeLimit`` and NEXT_STEP bookkeeping for ``[N]`` environments, in the array namespace ``xp``
    (``numpy`` for the `BatchedEnv`s, ``torch`` for the device ones, `acpg_lab.batched_envs.device`): the step after
    an episode end is a reset step (step count back to 0, no flags). Returns (steps, reset mask, terminated,
    truncated, the next step's reset mask)."""
    reset = prev_done
    steps = xp.where(reset, 0, steps + 1)
    truncated = (steps >= max_episode_steps) & ~reset
    terminated = terminated & ~reset
    return steps, reset, terminated, truncated, terminated | truncated


class BatchedEnv:
    """``S`` seeds x ``E`` environments of one id, stepped together; arrays are ``[S, E, ...]`` numpy.

    Subclasses implement `reset` and `step` with gymnasium 1.x NEXT_STEP autoreset semantics: the step after an
    episode ends resets that environment (action ignored, reward 0, flags False) and returns its reset observation.
    """

    def __init__(self, num_envs: int, env_seeds: Sequence[int], max_episode_steps: int,
                 single_observation_space: gym.Space, single_action_space: gym.Space) -> None:
        self.num_seeds, self.num_envs = len(env_seeds), num_envs
        self.env_seeds = [int(s) for s in env_seeds]
        self.max_episode_steps = int(max_episode_steps)
        self.single_observation_space, self.single_action_space = single_observation_space, single_action_space
        self.steps = np.zeros(self.num_seeds * num_envs, dtype=np.int32)  #: steps into the current episode
        self.prev_done = np.zeros(self.num_seeds * num_envs, dtype=bool)  #: this step is a reset step

    def reset(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Seed every random stream from ``env_seeds`` and reset all environments: observations ``[S, E, ...]``
        and the labels ``info["optimal_action"]`` (None where the environment publishes none)."""
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """``actions [S, E]`` -> observations (float32), rewards, terminated, truncated (bool), labels."""
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        """Everything an exact continuation needs, as numpy arrays and plain data (random streams included):
        `set_state` on an environment of the same ids, sizes and seeds that has been `reset` takes it back."""
        return {"steps": self.steps.copy(), "prev_done": self.prev_done.copy(), **self._get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned (arrays may also be CPU tensors); shapes must match."""
        self.steps = _array(state["steps"], self.steps)
        self.prev_done = _array(state["prev_done"], self.prev_done)
        self._set_state(state)

    def _get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _count_steps(self, terminated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The time limit and autoreset bookkeeping shared by the environments here (`count_steps`): returns
        (reset mask, terminated, truncated)."""
        self.steps, reset, terminated, truncated, self.prev_done = count_steps(
            self.steps, self.prev_done, terminated, self.max_episode_steps)
        return reset, terminated, truncated

    def _shape(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(self.num_seeds, self.num_envs, *x.shape[1:])

    def close(self) -> None:
        pass


def _array(value: Any, like: np.ndarray) -> np.ndarray:
    """``value`` (numpy array or CPU tensor) as a fresh numpy array of ``like``'s dtype and shape, or ValueError."""
    out = np.array(value.numpy() if hasattr(value, "numpy") else value, dtype=like.dtype)  # a tensor's too
    if out.shape != like.shape:
        raise ValueError(f"environment state of shape {out.shape} does not fit this environment's {like.shape}")
    return out


#: classic-control ids -> the env_kwargs their batched version takes
_CLASSIC_KWARGS = {"CartPole-v0": {"max_episode_steps", "sutton_barto_reward"},
                   "CartPole-v1": {"max_episode_steps", "sutton_barto_reward"},
                   "Acrobot-v1": {"max_episode_steps"}}


def supports(env_id: str, env_kwargs: dict[str, Any] | None = None) -> bool:
    """Whether ``env_id`` with ``env_kwargs`` has a batched implementation (else gymnasium is used)."""
    kwargs = env_kwargs or {}
    if env_id.startswith("MinAtar/"):
        from acpg_lab.batched_envs import minatar

        return minatar.supports(env_id, kwargs)
    if env_id.startswith("acpg_lab/"):
        from acpg_lab.optimal_envs import ENV_IDS

        return env_id in ENV_IDS and kwargs.get("render_mode") is None
    if env_id not in _CLASSIC_KWARGS or not set(kwargs) <= _CLASSIC_KWARGS[env_id]:
        return False
    steps = kwargs.get("max_episode_steps", 1)
    return (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1
            and isinstance(kwargs.get("sutton_barto_reward", False), bool))


def make_batched_env(env_id: str, num_envs: int, env_seeds: Sequence[int],
                     env_kwargs: dict[str, Any] | None = None) -> BatchedEnv | None:
    """A `BatchedEnv` of ``len(env_seeds)`` seeds x ``num_envs`` environments, or None if ``env_id`` with
    ``env_kwargs`` is not supported. The spaces are gymnasium's own (read from one env, made and closed)."""
    if not supports(env_id, env_kwargs):
        return None
    kwargs = dict(env_kwargs or {})
    if env_id.startswith("MinAtar/"):
        from acpg_lab.batched_envs.minatar import BatchedMinAtar

        return BatchedMinAtar(env_id=env_id, num_envs=num_envs, env_seeds=env_seeds, env_kwargs=kwargs)
    if env_id.startswith("acpg_lab/"):
        from acpg_lab.batched_envs import known_optimal

        return known_optimal.make(env_id, num_envs, env_seeds, kwargs)
    from acpg_lab.batched_envs.acrobot import BatchedAcrobot
    from acpg_lab.batched_envs.cartpole import BatchedCartPole

    max_episode_steps = kwargs.pop("max_episode_steps", gym.spec(env_id).max_episode_steps)
    probe = gym.make(env_id, **kwargs)
    try:
        spaces = probe.observation_space, probe.action_space
    finally:
        probe.close()
    cls = BatchedAcrobot if env_id.startswith("Acrobot") else BatchedCartPole
    return cls(num_envs, env_seeds, max_episode_steps, *spaces, **kwargs)
