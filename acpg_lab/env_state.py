"""The state of gymnasium environments as tensors and plain data, for checkpoints (`SeedEnvs.get_state`).

`acpg_lab.batched_envs` give their own state. Gymnasium's environments (the `SeedEnvs` fallback: MinAtar, the
classic-control ids with ``ACPG_LAB_FAST_ENVS=0``, the ``acpg_lab/`` ids with unusual kwargs) are read attribute by
attribute, recursively, through the vector env, its wrappers and sub-environments: numpy arrays and scalars keep
their dtype, random generators (``Generator``, ``RandomState``) their bit-generator state, and spaces, specs,
callables and frozen dataclasses (static descriptions) are skipped. Only objects of gymnasium, MinAtar and
acpg_lab, which keep their state in ``__dict__``, are entered; any other object (a Box2D world, ale-py's emulator)
raises `Uncapturable` naming the attribute, so a run that cannot be resumed exactly is refused instead.
``tests/test_checkpoint.py`` checks that restored environments continue bitwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch

__all__ = ["Uncapturable", "as_tensors", "capture_env_state", "restore_env_state"]

#: modules whose objects keep all their state in ``__dict__`` (read recursively); anything else is refused
_CAPTURED_MODULES = ("gymnasium.", "minatar.", "acpg_lab.")
_SKIPPED = (gym.Space, gym.envs.registration.EnvSpec)  # static descriptions; training never samples a space


def as_tensors(state: Any) -> Any:
    """Numpy arrays inside dicts and lists as CPU tensors (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(state, np.ndarray):
        return torch.from_numpy(state.copy())
    if isinstance(state, dict):
        return {k: as_tensors(v) for k, v in state.items()}
    if isinstance(state, list):
        return [as_tensors(v) for v in state]
    return state


class Uncapturable(Exception):
    """An environment keeps state that cannot be read as plain data; the message names the attribute."""


def capture_env_state(obj: Any, where: str) -> Any:
    """The state of a gymnasium environment (wrappers, vector env, sub-environments) as tagged plain data and
    tensors: numpy arrays and scalars keep their dtype, random generators their bit-generator state; spaces,
    specs and callables are skipped. Raises `Uncapturable` naming the attribute of any other kind of object."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return {"__seq__": "list", "items": [capture_env_state(x, f"{where}[{i}]") for i, x in enumerate(obj)],
                    "__array__": True}
        return {"__ndarray__": torch.from_numpy(obj.copy())}
    if isinstance(obj, np.generic):
        return {"__scalar__": torch.from_numpy(np.asarray(obj).copy())}
    if isinstance(obj, np.random.Generator):
        return {"__generator__": obj.bit_generator.state}
    if isinstance(obj, np.random.RandomState):
        state = obj.get_state(legacy=False)
        return {"__randomstate__": {**state, "state": {"key": torch.from_numpy(state["state"]["key"].astype(np.int64)),
                                                       "pos": state["state"]["pos"]}}}
    if isinstance(obj, list | tuple):
        return {"__seq__": type(obj).__name__,
                "items": [capture_env_state(x, f"{where}[{i}]") for i, x in enumerate(obj)]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise Uncapturable(f"{where} is a dict with non-string keys")
        return {"__dict__": {k: capture_env_state(v, f"{where}[{k!r}]") for k, v in obj.items()}}
    frozen = dataclasses.is_dataclass(obj) and type(obj).__dataclass_params__.frozen  # immutable: a layout
    if isinstance(obj, _SKIPPED) or callable(obj) or frozen or type(obj).__name__ == "AutoresetMode":
        return {"__skipped__": True}
    if type(obj).__module__.startswith(_CAPTURED_MODULES) and hasattr(obj, "__dict__"):
        return {"__object__": {k: capture_env_state(v, f"{where}.{k}") for k, v in vars(obj).items()}}
    raise Uncapturable(f"{where} is a {type(obj).__module__}.{type(obj).__name__}")


def restore_env_state(obj: Any, state: dict[str, Any]) -> None:
    """Write ``capture_env_state(obj)``'s result back into ``obj`` (an object made the same way), in place."""
    for key, value in state["__object__"].items():
        current = getattr(obj, key, None)
        if isinstance(value, dict) and "__object__" in value:
            restore_env_state(current, value)
        elif isinstance(value, dict) and "__skipped__" in value:
            continue
        else:
            setattr(obj, key, _rebuilt(value, current))


def _rebuilt(value: Any, current: Any) -> Any:
    """The value ``capture_env_state`` recorded; objects inside are restored into ``current``'s."""
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return value["__ndarray__"].numpy().copy()
    if "__scalar__" in value:
        return value["__scalar__"].numpy()[()]
    if "__generator__" in value:
        gen = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        gen.bit_generator.state = value["__generator__"]
        return gen
    if "__randomstate__" in value:
        raw = value["__randomstate__"]
        rs = current if isinstance(current, np.random.RandomState) else np.random.RandomState()
        rs.set_state({**raw, "state": {"key": raw["state"]["key"].numpy().astype(np.uint32),
                                       "pos": raw["state"]["pos"]}})
        return rs
    if "__seq__" in value:
        olds = list(current) if isinstance(current, list | tuple | np.ndarray) else []
        items = []
        for i, item in enumerate(value["items"]):
            old = olds[i] if i < len(olds) else None
            if isinstance(item, dict) and "__object__" in item:
                restore_env_state(old, item)
                items.append(old)
            elif isinstance(item, dict) and "__skipped__" in item:
                items.append(old)
            else:
                items.append(_rebuilt(item, old))
        if value.get("__array__"):
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out
        return tuple(items) if value["__seq__"] == "tuple" else items
    if "__dict__" in value:
        old = current if isinstance(current, dict) else {}
        return {k: old.get(k) if isinstance(v, dict) and "__skipped__" in v else _rebuilt(v, old.get(k))
                for k, v in value["__dict__"].items()}
    if "__skipped__" in value:
        return current
    raise ValueError(f"unknown environment state entry {sorted(value)}")
