"""Validation helpers shared by the config and the environments: bad input is refused with a message that
names the parameter, what it must be, and what it got (with a "did you mean" for near-miss choices)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_int", "check_number"]


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
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    """``value`` as a float if it is a finite number > ``minimum`` (``strict``) or >= it, else ValueError."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)
