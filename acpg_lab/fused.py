"""The seed-batched MLP as one autograd node: a hand-written forward and backward over batched matmuls.

`acpg_lab.networks.MLP` runs ``S`` independent fully connected networks as one batched matmul per layer. Run
through autograd, each layer is a ``baddbmm`` node and an activation node (the reference tanh alone is four
element-wise passes, `acpg_lab.networks.tanh`); at the sizes of small-MLP RL the element-wise passes and the
per-node overhead cost more than the matmuls. `seed_mlp` computes the same function in one
`torch.autograd.Function`, and for several networks of the same shapes reading the same input (an actor and a
critic backbone) it stacks them along the seed dimension, ``[N * S, ...]``, so each layer is one matmul for all
of them:

- forward, per layer: ``z = baddbmm(b, h, W)`` (the pre-activation, returned: PFO and the diagnostics read it),
  then the activation (`KERNELS`);
- backward, per layer: ``tanh_backward`` (or ``threshold_backward`` for ReLU), plus the gradient arriving at the
  returned pre-activation where there is one (PFO's loss); one ``bmm`` for the weight gradient, one sum for the
  bias, one ``bmm`` for the input gradient (skipped for the first layer when the input needs none).

These are the operations autograd runs on the reference path, on the same operands, so with the reference's
tanh kernel ("sigmoid") forward values and gradients are bitwise those of `acpg_lab.networks.MLP`, stacked or not
(`tests/test_fused.py` checks it on this CPU: a batched matmul computes each matrix of the batch the same way
whatever the batch holds, so stacking the critic under the actor changes no bit). The "tanh" kernel differs from
the reference by float32 rounding (about 1e-7 per activation), which is why `acpg_lab.config.TrainConfig.engine`
records the path a run took.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from acpg_lab.checks import check_choice

__all__ = ["KERNELS", "seed_mlp", "stacked_seed_mlp", "tanh_via_sigmoid"]



def tanh_via_sigmoid(x: Tensor) -> Tensor:
    """tanh as ``2 sigmoid(2x) - 1`` (a new tensor; the reference path's arithmetic, `acpg_lab.networks.tanh`)."""
    return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


#: How the fused path computes tanh: "tanh" is torch's own kernel (on the Intel AVX-512 machine of issue 25 about
#: 3x faster than the sigmoid form, on the earlier AMD machines 3.3x slower), "sigmoid" is the reference path's
#: ``2 sigmoid(2 z) - 1`` (`tanh_via_sigmoid`), bit for bit. ReLU has one kernel.
KERNELS = {"tanh": torch.tanh, "sigmoid": tanh_via_sigmoid}


def _activate(z: Tensor, activation: str, kernel: str) -> Tensor:
    return z.relu() if activation == "relu" else KERNELS[kernel](z)


class _SeedMLP(torch.autograd.Function):
    """Inputs ``(x, activation, kernel, nets, num_layers, *params)`` with ``params`` net by net, layer by layer
    ``(w, b)``; outputs net by net ``h_L``, then net by net ``(z_1, ..., z_L)``, each ``[S, B, width]``."""

    @staticmethod
    def forward(ctx, x: Tensor, activation: str, kernel: str, nets: int, num_layers: int,  # type: ignore[override]
                *params: Tensor) -> tuple[Tensor, ...]:
        per_net = [params[k * 2 * num_layers:(k + 1) * 2 * num_layers] for k in range(nets)]
        weights = [_stack([p[2 * i] for p in per_net]) for i in range(num_layers)]
        biases = [_stack([p[2 * i + 1] for p in per_net]) for i in range(num_layers)]
        hs, zs = [_stack([x] * nets)], []
        for w, b in zip(weights, biases, strict=True):
            zs.append(torch.baddbmm(b, hs[-1], w))
            hs.append(_activate(zs[-1], activation, kernel))
        ctx.activation, ctx.nets, ctx.num_layers = activation, nets, num_layers
        ctx.set_materialize_grads(False)  # outputs nobody differentiates arrive as None, not as zeros
        ctx.save_for_backward(*hs, *weights)
        return (*hs[-1].chunk(nets), *(z for net in range(nets) for z in (zi.chunk(nets)[net] for zi in zs)))

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        nets, num_layers = ctx.nets, ctx.num_layers
        saved = ctx.saved_tensors
        hs, weights = saved[:num_layers + 1], saved[num_layers + 1:]
        grad_h, grad_z = grads[:nets], grads[nets:]
        live = [grad_h[k] is not None or any(g is not None for g in grad_z[k * num_layers:(k + 1) * num_layers])
                for k in range(nets)]
        params: list[Tensor | None] = [None] * (2 * num_layers * nets)
        if not any(live):
            return (None, None, None, None, None, *params)
        g = _stack([gh if gh is not None else torch.zeros_like(hs[-1].chunk(nets)[k]) for k, gh in enumerate(grad_h)])
        needs = ctx.needs_input_grad
        grad_x = None
        for i in reversed(range(num_layers)):
            if ctx.activation == "relu":
                gz = torch.ops.aten.threshold_backward(g, hs[i + 1], 0)
            else:
                gz = torch.ops.aten.tanh_backward(g, hs[i + 1])
            for k, part in enumerate(gz.chunk(nets)):
                extra = grad_z[k * num_layers + i]
                if extra is not None:
                    part.add_(extra)  # autograd's sum of the two uses of z: the activation and the caller's
            weight_grads = torch.bmm(hs[i].transpose(1, 2), gz).chunk(nets)
            bias_grads = gz.sum(1, keepdim=True).chunk(nets)
            for k in range(nets):
                if live[k]:
                    params[(k * num_layers + i) * 2] = weight_grads[k]
                    params[(k * num_layers + i) * 2 + 1] = bias_grads[k]
            if i > 0 or needs[0]:
                g = torch.bmm(gz, weights[i].transpose(1, 2))
        if needs[0]:
            parts = g.chunk(nets)
            grad_x = parts[0]
            for part in parts[1:]:
                grad_x = grad_x + part
        return (grad_x, None, None, None, None, *params)


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))


def stacked_seed_mlp(x: Tensor, nets: Sequence[Sequence[tuple[Tensor, Tensor]]], *, activation: str = "tanh",
                     kernel: str = "tanh") -> list[tuple[Tensor, list[Tensor]]]:
    """Run ``x [S, B, in]`` through several seed-batched MLPs of the same shapes at once, as one autograd node.

    Args:
        x: inputs ``[S, B, in]``, the same for every network.
        nets: per network its layers, first to last, as ``(weight [S, in_i, out_i], bias [S, 1, out_i])``
            (`acpg_lab.networks.SeedLinear`'s parameters). Each network's parameters stay its own tensors: they are
            concatenated along the seed dimension inside the node (a copy of the weights per call, small next to
            the matmuls), so optimisers, gradient clipping and checkpoints see the usual layout.
        activation: "tanh" or "relu", after every layer.
        kernel: how tanh is computed (`KERNELS`): "tanh" is torch's kernel (differs from the reference by float32
            rounding), "sigmoid" the reference's arithmetic bit for bit.

    Returns:
        Per network, its last layer's activations ``[S, B, out]`` and its pre-activations (first layer first,
        differentiable: gradients arriving there are added where they enter).
    """
    check_choice("activation", activation, ("tanh", "relu"))
    check_choice("kernel", kernel, tuple(KERNELS))
    if not nets or not nets[0]:
        raise ValueError(f"need at least one network of at least one layer, got {len(nets)} networks")
    shapes = [[(tuple(w.shape), tuple(b.shape)) for w, b in net] for net in nets]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"stacked networks must have the same layer shapes, got {shapes}")
    if any(w.shape[-1] == 1 for w, _ in nets[0]):
        raise ValueError("the fused MLP does not take layers of width 1 (a batched matmul then takes a gemv path "
                         "whose result depends on the batch); use the reference path (SeedLinear)")
    num_layers = len(nets[0])
    params = [p for net in nets for layer in net for p in layer]
    out = _SeedMLP.apply(x, activation, kernel, len(nets), num_layers, *params)
    hs, zs = out[:len(nets)], out[len(nets):]
    return [(h, list(zs[k * num_layers:(k + 1) * num_layers])) for k, h in enumerate(hs)]


def seed_mlp(x: Tensor, layers: Sequence[tuple[Tensor, Tensor]], *, activation: str = "tanh",
             kernel: str = "tanh") -> tuple[Tensor, list[Tensor]]:
    """One seed-batched MLP as one autograd node: `stacked_seed_mlp` with a single network (no copy of weights).
    Returns the last layer's activations ``[S, B, out]`` and every layer's pre-activation."""
    return stacked_seed_mlp(x, [layers], activation=activation, kernel=kernel)[0]
