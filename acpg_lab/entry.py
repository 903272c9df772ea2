"""What every command line of the package shares, so that they all speak the same way (issue 26).

- `OneLineParser`: an argparse parser whose usage errors are one line on stderr, ``PROG: error: MESSAGE``, exit 2
  (``acpg-lab``, ``python -m acpg_lab.evidence``, ``python -m benchmarks``);
- `check_environment`: every ``ACPG_LAB_*`` environment variable the package reads, validated at once with an
  error naming the variable, before any work;
- `require_extra`: the import of an optional dependency, failing with the optional group to install
  (``acpg_lab.sb3 needs the 'sb3' extra: pip install 'acpg-lab[sb3]'``);
- `one_line`: an error message on one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import NoReturn

__all__ = ["OneLineParser", "MissingExtra", "require_extra", "check_environment", "ENVIRONMENT", "one_line",
           "PROJECT"]

PROJECT = "acpg-lab"  #: the distribution name in pyproject.toml (what pip installs)

#: Every environment variable the package reads, with what it takes.
ENVIRONMENT = {
    "ACPG_LAB_PROFILE": "the notebooks' profile: ci, default or full (or unset)",
    "ACPG_LAB_OUTPUT_ROOT": "the directory relative notebook outputs are resolved against (or unset)",
    "ACPG_LAB_FAST_ENVS": "batched environments: 1, true, yes, on, empty (default) or 0, false, no, off",
    "ACPG_LAB_CHECK_FIGURES": "check every figure a notebook shows: 0 (default) or 1",
    "ACPG_LAB_CHROMIUM": "the browser tests' chromium executable (tests/_browser.py)",
}


def one_line(message: object) -> str:
    """``message`` on one line (line breaks become "; ")."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


class OneLineParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose usage errors are one line, ``PROG: error: MESSAGE``, exit 2 (argparse's
    own prints the usage first); its subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


class MissingExtra(ModuleNotFoundError):
    """An optional dependency group is not installed; the message names the group and the pip command."""


def require_extra(module: str, group: str, *, needed_by: str) -> ModuleType:
    """Import ``module`` (an optional dependency) and return it; if it is missing, raise `MissingExtra`:
    ``NEEDED_BY needs the 'GROUP' extra (no module named MODULE): pip install 'acpg-lab[GROUP]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = getattr(err, "name", None) or module
        raise MissingExtra(f"{needed_by} needs the '{group}' extra (no module named {missing!r}): "
                           f"pip install '{PROJECT}[{group}]'", name=missing) from None


def check_environment() -> None:
    """Validate every ``ACPG_LAB_*`` variable the package reads (`ENVIRONMENT`), and refuse any other
    ``ACPG_LAB_*`` name (a misspelt variable would otherwise be ignored without a word); ValueError naming the
    first bad one. Command lines call it before any work."""
    import difflib

    from acpg_lab.envs import fast_envs_default
    from acpg_lab.profiles import PROFILE_ENV, PROFILES, output_root

    for name in sorted(os.environ):
        if name.startswith("ACPG_LAB_") and name not in ENVIRONMENT:  # a typo must not be silently ignored
            hint = difflib.get_close_matches(name, list(ENVIRONMENT), n=1)
            raise ValueError(f"environment variable {name} is not one acpg_lab reads"
                             + (f" (did you mean {hint[0]}?)" if hint else "") + f"; it reads {sorted(ENVIRONMENT)}")
    profile = os.environ.get(PROFILE_ENV, "")
    if profile not in ("", *PROFILES):
        raise ValueError(f"environment variable {PROFILE_ENV} must be one of {PROFILES} (or unset), got {profile!r}")
    output_root()  # ACPG_LAB_OUTPUT_ROOT
    fast_envs_default()  # ACPG_LAB_FAST_ENVS
    check = os.environ.get("ACPG_LAB_CHECK_FIGURES", "0").strip()
    if check not in ("0", "1"):  # acpg_lab.figstyle.checking_enabled, without importing matplotlib
        raise ValueError(f"environment variable ACPG_LAB_CHECK_FIGURES must be 0 or 1, got {check!r}")


def fail(prog: str, message: object, code: int = 2) -> int:
    """Print ``PROG: error: MESSAGE`` on one line to stderr and return ``code``."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return code
