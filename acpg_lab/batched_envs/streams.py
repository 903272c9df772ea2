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
