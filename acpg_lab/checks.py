"""Validation helpers shared by the config and the environments: bad input is refused with a message that
names the parameter, what it must be, and what it got (with a "did you mean" for near-miss choices)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_choice", "check_int", "check_number"]


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> Any:
    """``value`` if it is one of ``allowed``, else ValueError naming ``name`` (and the closest choice)."""
    if value not in allowed:
        hint = difflib.get_close_matches(str(value).lower(), list(allowed), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}{extra}")
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, *, minimum: float, strict: bool, maximum: float | None = None,
                 strict_maximum: bool = False) -> float:
    """``value`` as a float if it is a finite number (not a bool) > ``minimum`` (``strict``) or >= it, and, with
    ``maximum``, < it (``strict_maximum``) or <= it; else ValueError naming ``name``."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if maximum is not None:
        ok = ok and (value < maximum if strict_maximum else value <= maximum)
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum}"
        if maximum is not None:
            bound += f" and {'<' if strict_maximum else '<='} {maximum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False (a numpy bool too), else ValueError naming ``name`` (1 and "yes" are
    refused: a typo there should not silently switch a behaviour on)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
