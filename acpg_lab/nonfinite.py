"""The guard against non-finite training: a seed whose loss, gradient or parameters stop being finite never trains
on them.

Seeds are independent in the seed-batched model (per-seed losses summed, gradients and Adam state in per-seed
slices), so one seed's NaN never reaches another's numbers, and a seed can be put back on its own. `NonFiniteGuard`
keeps a copy of the parameters and Adam's moments at the start of each update (the last good state), collects per
step, on the device and without a host sync, which seeds had a non-finite loss or gradient norm, checks the
parameters once after the update, and reads the verdict with one host sync per update. A bad seed is put back to
its last good state; then ``TrainConfig.on_nonfinite`` decides: "stop" raises `NonFiniteError` naming the seed,
the update and the quantity, "freeze_seed" keeps that seed fixed from then on (its parameters and optimiser state
are put back after every update) while the others finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["NonFiniteError", "NonFiniteEvent", "NonFiniteGuard"]

#: in the order a bad step shows them: a non-finite loss makes the gradients non-finite too
QUANTITIES = ("loss", "gradient", "parameter")
_NEVER = 2**62


@dataclass(frozen=True)
class NonFiniteEvent:
    """Seed ``seed`` first had a non-finite ``quantity`` ("loss", "gradient" or "parameter") in update ``update``
    (counted from 0); its state is the one it had before that update."""

    seed: int
    update: int
    quantity: str

    def __str__(self) -> str:
        return f"seed {self.seed}: non-finite {self.quantity} in update {self.update}"


class NonFiniteError(FloatingPointError):
    """Training stopped on a non-finite loss, gradient or parameter. ``events`` say which seeds, update and
    quantity; ``run`` (set by `acpg_lab.train`) is the run so far, its model at the last good state."""

    def __init__(self, events: Sequence[NonFiniteEvent], *, detail: str = "") -> None:
        self.events, self.run = list(events), None
        super().__init__("training stopped: " + "; ".join(map(str, events)) + detail)


class NonFiniteGuard:
    """Watches one seed-batched model and its Adam optimiser; ``mode`` is ``TrainConfig.on_nonfinite``."""

    def __init__(self, params: Sequence[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                 seeds: Sequence[int], mode: str) -> None:
        self.params, self.optimizer, self.seeds, self.mode = list(params), optimizer, tuple(seeds), mode
        self.frozen = torch.zeros(len(self.seeds), dtype=torch.bool)  #: on the CPU: seeds kept fixed
        self.events: list[NonFiniteEvent] = []
        self._first: Tensor | None = None  # [3, S]: the first step of the update each quantity was non-finite
        self._step = 0
        self._good: list[tuple[Tensor, Tensor | None, Tensor | None]] = []

    def begin(self) -> None:
        """Before an update: remember the current (good) state and clear the per-step flags."""
        device = self.params[0].device
        self._first = torch.full((len(QUANTITIES), len(self.seeds)), _NEVER, dtype=torch.int64, device=device)
        self._step = 0
        self._good = []
        for p in self.params:
            state = self.optimizer.state.get(p, {})
            moments = [state[k].detach().clone() if k in state else None for k in ("exp_avg", "exp_avg_sq")]
            self._good.append((p.detach().clone(), *moments))

    def check_step(self, loss: Tensor, grad_norms: Sequence[Tensor]) -> None:
        """After a backward pass: flag the seeds whose loss ``[S]`` or gradient norms ``[S]`` are not finite
        (device-side, no host sync)."""
        self._flag(0, ~torch.isfinite(loss.detach()))
        if grad_norms:
            self._flag(1, ~torch.isfinite(torch.stack(list(grad_norms))).all(0))
        self._step += 1

    def _flag(self, quantity: int, bad: Tensor) -> None:
        first = self._first[quantity]
        first.masked_fill_(bad & (first == _NEVER), self._step)

    def end(self, update: int) -> dict[str, Tensor]:
        """After an update: check the parameters, put bad and frozen seeds back, and raise or freeze. Returns the
        history columns to log (``frozen`` per seed in "freeze_seed" mode, else nothing)."""
        finite = torch.stack([torch.isfinite(p.detach()).flatten(1).all(1) for p in self.params]).all(0)
        self._flag(2, ~finite)
        first = self._first.cpu()  # the one host sync per update
        bad = (first < _NEVER).any(0) & ~self.frozen
        if bad.any():
            # the quantity that went first (a tie goes to the loss, whose NaN makes the gradient NaN)
            new = [NonFiniteEvent(self.seeds[s], update, QUANTITIES[int(first[:, s].argmin())])
                   for s in bad.nonzero().flatten().tolist()]
            self.events.extend(new)
            if self.mode == "stop":
                self._restore(torch.ones_like(bad))  # the whole model as it was before this update
                raise NonFiniteError(new, detail=" (the model keeps its state from before that update; "
                                                 "TrainConfig(on_nonfinite='freeze_seed') lets the other seeds finish)")
            self.frozen |= bad
            if self.frozen.all():
                self._restore(self.frozen)
                raise NonFiniteError(self.events, detail=" (every seed is frozen: nothing left to train)")
        if self.frozen.any():
            self._restore(self.frozen)
        return {"frozen": self.frozen.double()} if self.mode == "freeze_seed" else {}

    def _restore(self, seeds: Tensor) -> None:
        """Put ``seeds`` (bool ``[S]``) back to the state `begin` saw: parameters and Adam's moments (a moment
        that did not exist yet goes back to zero). Adam's step count is shared by all seeds and keeps counting."""
        index = seeds.nonzero().flatten().to(self.params[0].device)
        with torch.no_grad():
            for p, (good_p, *good_moments) in zip(self.params, self._good, strict=True):
                p.index_copy_(0, index, good_p.index_select(0, index))
                state = self.optimizer.state.get(p, {})
                for key, good in zip(("exp_avg", "exp_avg_sq"), good_moments, strict=True):
                    if key not in state:
                        continue
                    if good is None:
                        state[key].index_fill_(0, index, 0.0)
                    else:
                        state[key].index_copy_(0, index, good.index_select(0, index))

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen.clone(), "events": [(e.seed, e.update, e.quantity) for e in self.events]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frozen = state["frozen"].clone().to(torch.bool)
        self.events = [NonFiniteEvent(int(s), int(u), str(q)) for s, u, q in state["events"]]
