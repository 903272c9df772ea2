"""Per-seed random streams read ahead, so that draws for many seeds are one gather instead of a loop.

gymnasium's environments draw from one ``np.random.Generator`` per seed (or per sub-environment), and the draws
used here are functions of the stream's next doubles: ``uniform(low, high, size=n)`` is
``low + (high - low) * random(n)`` and ``choice(m, size=n, p=p)`` is ``cdf.searchsorted(random(n),
side="right")`` with ``cdf = p.cumsum() / p.cumsum()[-1]`` (numpy's own implementation; the tests compare them).
Drawing ahead into a buffer and consuming it in the same order therefore gives the same numbers, and a seed's
stream is advanced only by its own draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class SeedStreams:
    """``random()`` doubles from one generator per seed, ``chunk`` of them buffered per seed."""

    def __init__(self, generators: Sequence[np.random.Generator], chunk: int) -> None:
        self.generators = list(generators)
        self.buffer = np.stack([gen.random(chunk) for gen in self.generators])  # [S, chunk]
        self.cursor = np.zeros(len(self.generators), dtype=np.int64)  #: next unread position per seed
        self.row_start = np.arange(len(self.generators)) * chunk  #: each seed's row in the flat buffer

    def take(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next ``counts[s]`` doubles of every seed's stream, concatenated seed after seed, and where each
        seed's block starts in that array. ``counts[s]`` may be 0; each must be at most ``chunk``."""
        if (self.cursor + counts).max() > self.buffer.shape[1]:
            self._refill()
        ends = np.cumsum(counts)
        starts = ends - counts
        seed = np.repeat(np.arange(len(counts)), counts)
        position = np.arange(ends[-1]) + (self.row_start + self.cursor - starts)[seed]
        self.cursor += counts
        return self.buffer.ravel()[position], starts

    def _refill(self) -> None:
        """Move each seed's unread doubles to the front of its row and draw the rest from its generator."""
        for s, gen in enumerate(self.generators):
            unread = self.buffer[s, self.cursor[s]:].copy()
            self.buffer[s, :len(unread)] = unread
            self.buffer[s, len(unread):] = gen.random(self.buffer.shape[1] - len(unread))
        self.cursor[:] = 0

    def get_state(self) -> dict[str, Any]:
        """The buffer, the cursors and every generator's bit-generator state (plain data)."""
        return {"buffer": self.buffer.copy(), "cursor": self.cursor.copy(),
                "generators": [gen.bit_generator.state for gen in self.generators]}

    def set_state(self, state: dict[str, Any]) -> None:
        buffer, cursor = (np.array(x.numpy() if hasattr(x, "numpy") else x, dtype=dtype)
                          for x, dtype in ((state["buffer"], np.float64), (state["cursor"], np.int64)))
        if buffer.shape != self.buffer.shape or cursor.shape != self.cursor.shape:
            raise ValueError(f"stream state of shape {buffer.shape} does not fit these streams' {self.buffer.shape}")
        self.buffer, self.cursor = buffer, cursor
        for gen, bit_state in zip(self.generators, state["generators"], strict=True):
            gen.bit_generator.state = bit_state
