"""A training run that crashes right after a given update (its checkpoint, if one is due, written first)."""

from contextlib import contextmanager

import pytest

from acpg_lab import checkpoint


class Crash(Exception):
    """Raised by `crash_after_update` (not KeyboardInterrupt: training saves an interrupted run on that)."""


@contextmanager
def crash_after_update(monkeypatch, update):
    """Within the block, training raises `Crash` right after update ``update``; the block expects it."""
    original = checkpoint.RunDirectory.after_update

    def after_update(self, state):
        original(self, state)
        if state.next_update == update:
            raise Crash

    with monkeypatch.context() as m:
        m.setattr(checkpoint.RunDirectory, "after_update", after_update)
        with pytest.raises(Crash):
            yield
