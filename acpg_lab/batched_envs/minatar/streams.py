"""Random streams for ``N`` batched MinAtar games: one stream per environment, advanced only by its own draws.

MinAtar draws everything from one ``numpy.random.RandomState`` per environment (the gym wrapper's
``reset(seed=s)`` makes ``RandomState(s)`` and shares it between the sticky-action coin and the game), and only
two kinds of draw: ``rand()`` and ``randint(n)``. Both are functions of the 32-bit words the Mersenne Twister
emits, which is what `RandomStateStreams` exploits:

* ``rand()`` takes two words ``a, b`` and returns ``((a >> 5) * 2**26 + (b >> 6)) / 2**53``;
* ``randint(n)`` takes words ``w`` until ``w & mask <= n - 1``, ``mask`` the smallest ``2**k - 1 >= n - 1``
  (numpy's legacy masked rejection sampling), and takes no word at all when ``n == 1``.

So each environment's words are read ahead from its own ``RandomState`` into one ``[N, chunk]`` tensor, and a
draw for a masked subset of environments is a gather at their cursors: the same numbers minatar itself would get,
in the same order (``tests/test_batched_minatar.py`` checks it). It lives on the CPU and refills and rejects with
host-side checks, so it is the exact-but-CPU stream.

`CounterStreams` is the device stream: the same two draws computed from a hash of (environment key, draw counter)
with tensor ops only (SplitMix64 on int64 tensors), so a step never waits for the host, a seed's numbers do not
depend on which other seeds share the batch, and the CPU and a GPU give the same numbers. ``randint(n)`` there is
``floor(rand() * n)``. The games are the same; only the numbers differ from minatar's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Streams", "RandomStateStreams", "CounterStreams"]

_TWO_53 = 9007199254740992.0


class Streams:
    """``rand`` and ``randint`` for ``N`` environments at once; only environments in ``mask`` advance.

    ``host_checks``: whether the games may look at a mask on the host to skip work no environment needs (true
    for the CPU stream, which reads the host anyway; false for the sync-free one)."""

    host_checks = False

    def rand(self, mask: torch.Tensor) -> torch.Tensor:
        """float64 ``[N]``: ``RandomState.rand()`` where ``mask``; unspecified elsewhere."""
        raise NotImplementedError

    def randint(self, high: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """int64 ``[N]``: ``RandomState.randint(high)`` where ``mask`` (``high >= 1``); unspecified elsewhere."""
        raise NotImplementedError

    def rand_n(self, n: int, mask: torch.Tensor) -> torch.Tensor:
        """float64 ``[N, n]``: ``RandomState.rand(n)`` where ``mask`` (``n`` draws in a row)."""
        return torch.stack([self.rand(mask) for _ in range(n)], 1)

    def randint_n(self, high: int, n: int, mask: torch.Tensor) -> torch.Tensor:
        """int64 ``[N, n]``: ``RandomState.randint(high, size=n)`` where ``mask`` (each draw rejection-sampled)."""
        full = torch.full(mask.shape, high, dtype=torch.int64, device=mask.device)
        return torch.stack([self.randint(full, mask) for _ in range(n)], 1)

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class RandomStateStreams(Streams):
    """Exactly minatar's draws: one ``RandomState(seed)`` per environment, read ahead ``chunk`` words at a time."""

    host_checks = True

    def __init__(self, *, seeds: Sequence[int], chunk: int = 1024) -> None:
        if chunk < 64:
            raise ValueError(f"chunk must be at least 64 words (the longest read-ahead window), got {chunk}")
        self.states = [np.random.RandomState(int(s)) for s in seeds]
        self.chunk = int(chunk)
        self.cursor = torch.zeros(len(self.states), dtype=torch.int64)  #: next unread word per environment
        self._offsets: dict[tuple[int, int], torch.Tensor] = {}
        self._load(torch.from_numpy(np.stack([self._draw(rs, self.chunk) for rs in self.states])))

    def _load(self, words: torch.Tensor) -> None:
        """Take ``words`` as the buffer; ``doubles[:, p]`` is the ``rand()`` that starts at word ``p``."""
        self.words = words
        self.doubles = self._doubles(words[:, :-1], words[:, 1:])
        self._bound = int(self.cursor.max())  #: no cursor is beyond it (kept on the host: no reads per draw)

    @staticmethod
    def _draw(rs: np.random.RandomState, n: int) -> np.ndarray:
        return rs._bit_generator.random_raw(n).astype(np.int64)  # MT19937's raw output: one 32-bit word each

    def _ensure(self, n: int) -> None:
        """Make at least ``n`` unread words available to every environment."""
        if self._bound + n <= self.chunk:
            return
        words, cursor = self.words.numpy(), self.cursor.numpy()
        fresh = np.empty_like(words)
        for i, rs in enumerate(self.states):  # every few hundred steps only: numpy keeps one generator each
            unread = words[i, cursor[i]:]
            fresh[i, :len(unread)] = unread
            fresh[i, len(unread):] = self._draw(rs, self.chunk - len(unread))
        self.cursor.zero_()
        self._load(torch.from_numpy(fresh))

    def _offset(self, n: int, step: int = 1) -> torch.Tensor:
        if (n, step) not in self._offsets:
            self._offsets[n, step] = torch.arange(0, n * step, step)
        return self._offsets[n, step]

    def _words(self, n: int) -> torch.Tensor:
        """``[N, n]``: every environment's next ``n`` unread words (not consumed; the bound moves by ``n``)."""
        self._ensure(n)
        self._bound += n
        return self.words.gather(1, self.cursor[:, None] + self._offset(n))

    @staticmethod
    def _doubles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a >> 5) * 67108864 + (b >> 6)).to(torch.float64) / _TWO_53

    def rand(self, mask: torch.Tensor) -> torch.Tensor:
        return self.rand_n(1, mask)[:, 0]

    def rand_n(self, n: int, mask: torch.Tensor) -> torch.Tensor:
        if not bool(mask.any()):  # host checks are free here: this stream is the CPU one
            return torch.zeros(len(mask), n, dtype=torch.float64)
        self._ensure(2 * n)
        self._bound += 2 * n
        out = self.doubles.gather(1, self.cursor[:, None] + self._offset(n, 2))
        self.cursor += 2 * n * mask
        return out

    def randint(self, high: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        limit = high - 1
        out = torch.zeros_like(limit)
        pending = mask & (limit > 0)
        if not bool(pending.any()):
            return out
        bits = limit.clone()
        for shift in (1, 2, 4, 8, 16):
            bits |= bits >> shift
        while True:  # rejection: a few rounds at most, almost always one
            value = self._words(1)[:, 0] & bits
            accept = pending & (value <= limit)
            out = torch.where(accept, value, out)
            self.cursor += pending
            pending &= ~accept
            if not bool(pending.any()):
                return out

    def randint_n(self, high: int, n: int, mask: torch.Tensor) -> torch.Tensor:
        """All ``n`` rejection-sampled draws from one window of words: the ``k``-th value is the ``k``-th
        accepted word (a window too short for some environment, which almost never happens, falls back)."""
        if high <= 1 or not bool(mask.any()):
            return torch.zeros(len(mask), n, dtype=torch.int64)
        bits = (1 << (high - 1).bit_length()) - 1
        words = self._words(4 * n + 16) & bits
        accepted = (words <= high - 1).cumsum(1)
        if bool((accepted[:, -1] < n)[mask].any()):
            return super().randint_n(high, n, mask)
        ranks = (self._offset(n) + 1).expand(len(mask), n).contiguous()
        position = torch.searchsorted(accepted, ranks).clamp(max=words.shape[1] - 1)  # the k-th accepted word
        self.cursor += (position[:, -1] + 1) * mask
        return words.gather(1, position)

    def get_state(self) -> dict[str, Any]:
        return {"words": self.words.clone(), "cursor": self.cursor.clone(),
                "random_states": [{"key": torch.from_numpy(st["state"]["key"].astype(np.int64)),
                                   "pos": int(st["state"]["pos"])}
                                  for st in (rs.get_state(legacy=False) for rs in self.states)]}

    def set_state(self, state: dict[str, Any]) -> None:
        words, cursor = torch.as_tensor(state["words"], dtype=torch.int64), torch.as_tensor(state["cursor"])
        if words.shape != self.words.shape or cursor.shape != self.cursor.shape:
            raise ValueError(f"stream state of shape {tuple(words.shape)} does not fit these streams' "
                             f"{tuple(self.words.shape)}")
        self.cursor = cursor.to(torch.int64).clone()
        self._load(words.clone())
        for rs, st in zip(self.states, state["random_states"], strict=True):
            key = np.asarray(torch.as_tensor(st["key"]).numpy(), dtype=np.uint32)
            rs.set_state(("MT19937", key, int(st["pos"]), 0, 0.0))


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


_GAMMA, _M1, _M2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic, as on the CPU and CUDA)."""
    x = x + _GAMMA
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


class CounterStreams(Streams):
    """Sync-free streams: draw ``k`` of environment ``i`` is ``splitmix64(key_i + k * gamma)``, all tensor ops.

    ``keys`` identify environments (e.g. a hash of seed and index within the seed), so a seed's draws do not
    depend on the batch it is in; ``device`` is where the counters live (CPU or CUDA give the same numbers)."""

    def __init__(self, *, keys: Sequence[int], device: torch.device) -> None:
        raw = torch.tensor([_signed(int(k) % (1 << 64)) for k in keys], dtype=torch.int64, device=device)
        self.keys = splitmix64(raw)
        self.counter = torch.zeros_like(self.keys)

    def _next(self, mask: torch.Tensor) -> torch.Tensor:
        z = splitmix64(self.keys + self.counter * _GAMMA)
        self.counter += mask
        return z

    def rand(self, mask: torch.Tensor) -> torch.Tensor:
        return _shr(self._next(mask), 11).to(torch.float64) / _TWO_53

    def randint(self, high: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        draw = (self.rand(mask & (high > 1)) * high).to(torch.int64)
        return torch.minimum(draw, high - 1)

    def get_state(self) -> dict[str, Any]:
        return {"counter": self.counter.cpu().clone()}

    def set_state(self, state: dict[str, Any]) -> None:
        counter = torch.as_tensor(state["counter"], dtype=torch.int64)
        if counter.shape != self.counter.shape:
            raise ValueError(f"stream state of shape {tuple(counter.shape)} does not fit {tuple(self.counter.shape)}")
        self.counter = counter.to(self.counter.device).clone()
