"""The guard against non-finite training: a seed whose loss, gradient or parameters stop being finite never trains
on them.

Seeds are independent in the seed-batched model (per-seed losses summed, gradients and Adam state in per-seed
slices), so one seed's NaN never reaches another's numbers, and a seed can be put back on its own. `NonFiniteGuard`
copies the parameters and Adam's moments aside at the start of each update (the last good state), keeps each step's
per-seed loss and gradient norms (references only: no work in the hot loop), and after the update checks them and
the parameters in a few batched operations and one host sync. A bad seed is put back to
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

    def __init__(self, events: Sequence[NonFiniteEvent], detail: str = "") -> None:
        self.events, self.detail, self.run = list(events), detail, None
        super().__init__("training stopped: " + "; ".join(map(str, events)) + detail)

    def __reduce__(self) -> tuple:  # pickled (to a sweep's driver, say) without the run
        return type(self), (self.events, self.detail)


class NonFiniteGuard:
    """Watches one seed-batched model and its Adam optimiser; ``mode`` is ``TrainConfig.on_nonfinite``."""

    def __init__(self, params: Sequence[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                 seeds: Sequence[int], mode: str) -> None:
        self.params, self.optimizer, self.seeds, self.mode = list(params), optimizer, tuple(seeds), mode
        self.frozen = torch.zeros(len(self.seeds), dtype=torch.bool)  #: on the CPU: seeds kept fixed
        self.events: list[NonFiniteEvent] = []
        self._losses: list[Tensor] = []  # this update's per-step losses [S] and gradient norms [S]
        self._norms: list[Tensor] = []
        self._good: list[list[Tensor | None]] = [[None, None, None] for _ in self.params]  # param, exp_avg, sq

    def begin(self) -> None:
        """Before an update: copy the current (good) parameters and Adam moments aside (a moment Adam has not
        created yet is recorded as None: zero)."""
        self._losses, self._norms = [], []
        for p, good in zip(self.params, self._good, strict=True):
            state = self.optimizer.state.get(p, {})
            for j, tensor in enumerate((p, state.get("exp_avg"), state.get("exp_avg_sq"))):
                if tensor is None:
                    good[j] = None
                    continue
                if good[j] is None:
                    good[j] = torch.empty_like(tensor)
                good[j].copy_(tensor.detach())

    def check_step(self, loss: Tensor, grad_norms: Sequence[Tensor]) -> None:
        """After a backward pass: keep the step's per-seed loss ``[S]`` and gradient norms ``[S]`` for `end` (no
        computation, no host sync here)."""
        self._losses.append(loss.detach())
        self._norms.extend(grad_norms)

    def end(self, update: int) -> dict[str, Tensor]:
        """After an update: find the seeds whose loss, gradient norm or parameters were not finite, put them (and
        frozen seeds) back, and raise or freeze. Returns the history columns to log (``frozen`` per seed in
        "freeze_seed" mode, else nothing)."""
        steps = len(self._losses)
        bad_params = ~torch.stack([torch.isfinite(p.detach()).flatten(1).all(1) for p in self.params]).all(0)
        bad_steps = [~torch.isfinite(torch.stack(self._losses))]  # [steps, S]
        if self._norms:
            bad_steps.append(~torch.isfinite(torch.stack(self._norms)).view(steps, -1, len(self.seeds)).all(1))
        first = [torch.where(b.any(0), b.int().argmax(0), _NEVER) for b in bad_steps]  # first bad step per seed
        if len(first) == 1:
            first.append(torch.full_like(first[0], _NEVER))
        first.append(torch.where(bad_params, steps, _NEVER))  # after the last step
        first = torch.stack(first).cpu()  # [3, S]: the one host sync per update
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
