"""Adam over one flat buffer: the training loop's optimiser, a handful of tensor operations per step.

torch's Adam on the CPU runs its single-tensor loop: about eight small operations per parameter tensor and step,
so a seed-batched actor-critic of twelve tensors costs ~100 operations (0.45 ms of a 4.4 ms minibatch step at rl-zoo
CartPole shapes, 16 seeds, one thread). Adam is element-wise, so it does not care how the parameters are laid out:
`FlatAdam` moves every parameter (``p.data``) and its gradient (``p.grad``) into views of one contiguous buffer
each, and runs each of Adam's operations once over the whole buffer. The arithmetic is torch's (the same
operations, in the same order, with the same scalars), so the result equals `torch.optim.Adam` with
``foreach=False`` to the bit (`tests/test_flat_adam.py`). A step bumps every parameter's version counter, as an
in-place write to it would, so autograd's checks and the caches keyed on ``_version`` see the change.

What the rest of the package sees is unchanged: the parameters are the same `nn.Parameter` objects; the state is
torch's (``state[p]`` holds ``step``, ``exp_avg`` and ``exp_avg_sq``, the last two views of the flat moments, so
in-place edits such as `acpg_lab.nonfinite.NonFiniteGuard`'s restore reach them); ``state_dict`` is torch Adam's
format, and ``load_state_dict`` copies a loaded state into the flat buffers. Gradients stay allocated: ``zero_grad``
zeroes the flat gradient in one call, and autograd adds into the views. One difference: torch's Adam skips a
parameter whose gradient is None, while here a parameter that got no gradient in a step steps with a zero one (its
moments decay). In training every optimised parameter gets a gradient at every step, and runs of every algorithm
are bitwise those of torch's Adam (checked on PPO, A2C, REINFORCE and GRPO runs, with PFO and diagnostics).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import increment_version

__all__ = ["FlatAdam"]


class FlatAdam(torch.optim.Optimizer):
    """Adam (Kingma and Ba; torch's arithmetic, no weight decay, no amsgrad) with every parameter in one buffer.

    Args:
        params: the parameters (one group; dense, on one device, one dtype). Their ``data`` and ``grad`` become
            views of the optimiser's buffers: build the optimiser after moving the model to its device.
        lr: learning rate (``param_groups[0]["lr"]`` may be changed between steps, as for torch's Adam).
        betas: decay rates of the first and second moments.
        eps: added to the denominator's square root.
    """

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(list(params), dict(lr=lr, betas=betas, eps=eps))
        if len(self.param_groups) != 1:
            raise ValueError(f"FlatAdam takes one parameter group, got {len(self.param_groups)}")
        params = self.param_groups[0]["params"]  # torch refuses an empty list
        kinds = {(p.device, p.dtype, p.layout) for p in params}
        if len(kinds) != 1:
            raise ValueError(f"FlatAdam needs every parameter on one device, of one dtype and dense, got {kinds}")
        first = params[0]
        total = sum(p.numel() for p in params)
        self._flat = first.new_empty(total)
        self._grad, self._m, self._v = (first.new_zeros(total) for _ in range(3))
        self._step = torch.zeros((), dtype=torch.float32)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                view = self._flat[offset:offset + n].view_as(p)
                view.copy_(p)
                p.data = view
                p.grad = self._grad[offset:offset + n].view_as(p)
                self.state[p] = dict(step=self._step, exp_avg=self._m[offset:offset + n].view_as(p),
                                     exp_avg_sq=self._v[offset:offset + n].view_as(p))
                offset += n

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every gradient in one call (``set_to_none`` is ignored: the gradients are views of the buffer)."""
        self._grad.zero_()

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One Adam step over the whole buffer (torch's ``_single_tensor_adam``, operation for operation)."""
        if closure is not None:
            raise ValueError("FlatAdam.step takes no closure")
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self._step += 1
        step = self._step.item()
        self._m.lerp_(self._grad, 1 - beta1)
        self._v.mul_(beta2).addcmul_(self._grad, self._grad, value=1 - beta2)
        step_size = group["lr"] / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = (self._v.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        self._flat.addcdiv_(self._m, denom, value=-step_size)
        # a Parameter whose data was set to a view keeps its own version counter: tell autograd (and the joint
        # critic-feature cache of `acpg_lab.networks.ActorCritic`) that every parameter changed in place
        increment_version(self.param_groups[0]["params"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loading, then the loaded moments and step copied into the flat buffers (so that the views stay
        the state); a state saved before the first step (no moments) loads as zeros."""
        super().load_state_dict(state_dict)
        params = self.param_groups[0]["params"]
        offset, step = 0, None
        for p in params:
            n, loaded = p.numel(), self.state.get(p, {})
            for key, buffer in (("exp_avg", self._m), ("exp_avg_sq", self._v)):
                view = buffer[offset:offset + n].view_as(p)
                view.copy_(loaded[key]) if key in loaded else view.zero_()
            if "step" in loaded:
                step = loaded["step"]
            self.state[p] = dict(step=self._step, exp_avg=self._m[offset:offset + n].view_as(p),
                                 exp_avg_sq=self._v[offset:offset + n].view_as(p))
            offset += n
        self._step.fill_(0.0 if step is None else float(step))
