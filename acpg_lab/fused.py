"""The seed-batched MLP as one autograd node: a hand-written forward and backward over batched matmuls.

`acpg_lab.networks.MLP` runs ``S`` independent fully connected networks as one batched matmul per layer. Run
through autograd, each layer is a ``baddbmm`` node and an activation node (the reference tanh alone is four
element-wise passes, `acpg_lab.networks.tanh`); at the sizes of small-MLP RL the element-wise passes, the memory
traffic between them and the per-node overhead cost as much as the matmuls. `stacked_seed_mlp` computes the same
function as one `torch.autograd.Function` for several networks of the same shapes that read the same input (an
actor and a critic backbone), and `seed_mlp` for one:

- forward, per layer: ``z = baddbmm(b, h, W)`` (the pre-activation, returned: PFO and the diagnostics read it),
  then the activation (`KERNELS`), written into tensors allocated once per call;
- backward, per layer: ``tanh_backward`` (or ``threshold_backward`` for ReLU), plus the gradient arriving at the
  returned pre-activation where there is one (PFO's loss); one ``bmm`` for the weight gradient, one sum for the
  bias, one ``bmm`` for the input gradient (skipped for the first layer when the input needs none);
- both run every layer for a block of seeds before the next block (blocks of `BLOCK_ELEMENTS` activations: 8
  seeds at PPO's 256-sample minibatches and 64 units, every seed at once when collecting 8 environments), so a
  block's activations and gradients are still in the core's cache when the next layer reads them.

Blocks of seeds, not one ``[2S, ...]`` stack: stacking actor and critic along the seed dimension (one matmul per
layer for both) was the first design and measured slower on the Intel AVX-512 machine of issue 25: a batched
matmul or tanh over ``[2S, 256, 64]`` costs 2.2x the ``[S, 256, 64]`` one at S = 16 (the 2 MB operands leave the
L2 cache), and the weights must be copied into the stack every call. Per seed the cost is flat up to 8 seeds and
25% higher from 32 on, which is what blocks of 8 seeds avoid; they also need no copy of the weights. In PPO
updates at rl-zoo CartPole shapes (16 seeds, one thread) the update phase took 0.88x the reference's time with
blocks of 8 seeds, 0.94x with the ``[2S]`` stack (interleaved A/B on a loaded machine: indicative).

These are the operations autograd runs on the reference path, on the same operands, and a batched matmul
computes each matrix of its batch the same way whatever else the batch holds (checked on this CPU by
`tests/test_fused.py`), so with the reference's tanh ("sigmoid" kernel) forward values and gradients are
bitwise those of `acpg_lab.networks.MLP`, whatever the block size. The "tanh" kernel differs from the reference
by float32 rounding (about 1e-7 per activation), which is why `acpg_lab.config.TrainConfig.engine` records the
path a run took.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from acpg_lab.checks import check_choice, check_int

__all__ = ["BLOCK_ELEMENTS", "KERNELS", "block_seeds", "run_nets", "seed_mlp", "stacked_seed_mlp", "tanh_via_sigmoid"]

#: How the fused path computes tanh: "tanh" is torch's own kernel (on the Intel AVX-512 machine of issue 25 about
#: 3x faster than the sigmoid form, on the earlier AMD machines 3.3x slower), "sigmoid" is the reference path's
#: ``2 sigmoid(2 z) - 1`` (`tanh_via_sigmoid`), bit for bit. ReLU has one kernel.
KERNELS = ("tanh", "sigmoid")
#: Activations per block of seeds (see the module docstring): ``[8, 256, 64]``, 0.5 MB, small enough to stay in a
#: core's L2 cache, large enough that the per-call overhead of a block stays small.
BLOCK_ELEMENTS = 8 * 256 * 64


def block_seeds(batch: int, width: int) -> int:
    """Seeds per block for ``batch`` samples per seed through layers at most ``width`` wide (`BLOCK_ELEMENTS`)."""
    return max(1, BLOCK_ELEMENTS // (batch * width))


def tanh_via_sigmoid(x: Tensor) -> Tensor:
    """tanh as ``2 sigmoid(2x) - 1`` (a new tensor; the reference path's arithmetic, `acpg_lab.networks.tanh`)."""
    return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _activate_into(z: Tensor, out: Tensor, activation: str, kernel: str) -> None:
    """``out[...] = activation(z)``, the same element-wise operations as the reference's (ReLU is ``clamp_min``)."""
    if activation == "relu":
        torch.clamp_min(z, 0.0, out=out)
    elif kernel == "tanh":
        torch.tanh(z, out=out)
    else:
        torch.mul(z, 2.0, out=out).sigmoid_().mul_(2.0).sub_(1.0)  # tanh_via_sigmoid, in place


def _rows(block: int, seeds: int):
    """The blocks of seeds: slices, or None for one block of every seed (then no views are cut)."""
    return [None] if block >= seeds else [slice(lo, lo + block) for lo in range(0, seeds, block)]


def _forward(x: Tensor, params: Sequence[Tensor], activation: str, kernel: str, nets: int, num_layers: int,
             block: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """``(hs, zs, weights)``: every layer's activations and pre-activations, net ``k``'s layer ``i`` at
    ``k * num_layers + i``, and the weights in the same order."""
    seeds, batch = x.shape[:2]
    weights, biases = params[0::2], params[1::2]
    zs = [x.new_empty(seeds, batch, w.shape[-1]) for w in weights]
    hs = [x.new_empty(seeds, batch, w.shape[-1]) for w in weights]
    for k in range(nets):
        for rows in _rows(block, seeds):  # every layer of a block of seeds while its activations are in cache
            h = x if rows is None else x[rows]
            for j in range(k * num_layers, (k + 1) * num_layers):
                z, out = (zs[j], hs[j]) if rows is None else (zs[j][rows], hs[j][rows])
                w, b = (weights[j], biases[j]) if rows is None else (weights[j][rows], biases[j][rows])
                torch.baddbmm(b, h, w, out=z)
                _activate_into(z, out, activation, kernel)
                h = out
    return hs, zs, list(weights)


def _outputs(hs: list[Tensor], zs: list[Tensor], nets: int, num_layers: int) -> tuple[Tensor, ...]:
    """Net by net ``h_L``, then net by net ``(z_1, ..., z_L)``."""
    return (*(hs[(k + 1) * num_layers - 1] for k in range(nets)), *zs)


class _SeedMLP(torch.autograd.Function):
    """Inputs ``(x, activation, kernel, nets, num_layers, block, *params)``, ``params`` net by net, layer by layer
    ``(w, b)``; outputs `_outputs`, each ``[S, B, width]``."""

    @staticmethod
    def forward(ctx, x: Tensor, activation: str, kernel: str, nets: int, num_layers: int,  # type: ignore[override]
                block: int, *params: Tensor) -> tuple[Tensor, ...]:
        hs, zs, weights = _forward(x, params, activation, kernel, nets, num_layers, block)
        ctx.activation, ctx.nets, ctx.num_layers, ctx.block = activation, nets, num_layers, block
        ctx.set_materialize_grads(False)  # outputs nobody differentiates arrive as None, not as zeros
        ctx.save_for_backward(x, *hs, *weights)
        return _outputs(hs, zs, nets, num_layers)

    @staticmethod
    @once_differentiable  # a double backward through this node is refused, not silently wrong
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        nets, num_layers, block = ctx.nets, ctx.num_layers, ctx.block
        x, *saved = ctx.saved_tensors
        hs, weights = saved[:nets * num_layers], saved[nets * num_layers:]
        grad_h, grad_z = grads[:nets], grads[nets:]
        params: list[Tensor | None] = [None] * (2 * nets * num_layers)
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        for k in range(nets):
            first, last = k * num_layers, (k + 1) * num_layers - 1
            if grad_h[k] is None and all(g is None for g in grad_z[first:last + 1]):
                continue  # nothing of this network was differentiated: its parameters get no gradient
            for j in range(first, last + 1):
                params[2 * j] = torch.empty_like(weights[j])
                params[2 * j + 1] = weights[j].new_empty(weights[j].shape[0], 1, weights[j].shape[-1])
            for rows in _rows(block, x.shape[0]):
                def cut(t: Tensor, rows: slice | None = rows) -> Tensor:
                    return t if rows is None else t[rows]

                g = cut(grad_h[k]) if grad_h[k] is not None else torch.zeros_like(cut(hs[last]))
                for j in range(last, first - 1, -1):
                    if ctx.activation == "relu":
                        gz = torch.ops.aten.threshold_backward(g, cut(hs[j]), 0)
                    else:
                        gz = torch.ops.aten.tanh_backward(g, cut(hs[j]))
                    if grad_z[j] is not None:
                        gz.add_(cut(grad_z[j]))  # autograd's sum of z's two uses: the activation and the caller's
                    below = cut(hs[j - 1]) if j > first else cut(x)
                    torch.bmm(below.transpose(1, 2), gz, out=cut(params[2 * j]))
                    torch.sum(gz, 1, keepdim=True, out=cut(params[2 * j + 1]))
                    if j > first:
                        g = torch.bmm(gz, cut(weights[j]).transpose(1, 2))
                    elif grad_x is not None:
                        cut(grad_x).add_(torch.bmm(gz, cut(weights[j]).transpose(1, 2)))
        return (grad_x, None, None, None, None, None, *params)


def stacked_seed_mlp(x: Tensor, nets: Sequence[Sequence[tuple[Tensor, Tensor]]], *, activation: str = "tanh",
                     kernel: str = "tanh", block: int | None = None) -> list[tuple[Tensor, list[Tensor]]]:
    """Run ``x [S, B, in]`` through several seed-batched MLPs of the same shapes, as one autograd node.

    Args:
        x: inputs ``[S, B, in]``, the same for every network.
        nets: per network its layers, first to last, as ``(weight [S, in_i, out_i], bias [S, 1, out_i])``
            (`acpg_lab.networks.SeedLinear`'s parameters, used as they are: optimisers, gradient clipping and
            checkpoints see the usual layout).
        activation: "tanh" or "relu", after every layer.
        kernel: how tanh is computed (`KERNELS`): "tanh" is torch's kernel (differs from the reference by float32
            rounding), "sigmoid" the reference's arithmetic bit for bit.
        block: seeds per block (None: `block_seeds`); results do not depend on it, speed does.

    Returns:
        Per network, its last layer's activations ``[S, B, out]`` and its pre-activations (first layer first,
        differentiable: gradients arriving there are added where they enter).
    """
    check_choice("activation", activation, ("tanh", "relu"))
    check_choice("kernel", kernel, KERNELS)
    if not nets or not nets[0]:
        raise ValueError(f"need at least one network of at least one layer, got {len(nets)} networks")
    shapes = [[(tuple(w.shape), tuple(b.shape)) for w, b in net] for net in nets]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"stacked networks must have the same layer shapes, got {shapes}")
    if any(w.shape[-1] == 1 for w, _ in nets[0]):
        raise ValueError("the fused MLP does not take layers of width 1 (a batched matmul then takes a gemv path "
                         "whose result depends on the batch); use the reference path (SeedLinear)")
    if block is not None:
        check_int("block", block, 1)
    return run_nets(x, [p for net in nets for layer in net for p in layer], nets=len(nets), num_layers=len(nets[0]),
                    activation=activation, kernel=kernel, block=block)


def run_nets(x: Tensor, params: Sequence[Tensor], *, nets: int, num_layers: int, activation: str, kernel: str,
             block: int | None = None) -> list[tuple[Tensor, list[Tensor]]]:
    """`stacked_seed_mlp` without its checks, for callers that made them once (`acpg_lab.networks.ActorCritic`):
    ``params`` flat, net by net, layer by layer ``(w, b)``. Where nothing needs a gradient (collecting a rollout)
    it runs the same forward without building an autograd node."""
    if block is None:
        block = block_seeds(x.shape[1], max(w.shape[-1] for w in params[0::2]))
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        out = _SeedMLP.apply(x, activation, kernel, nets, num_layers, block, *params)
    else:
        out = _outputs(*_forward(x, params, activation, kernel, nets, num_layers, block)[:2], nets, num_layers)
    hs, zs = out[:nets], out[nets:]
    return [(h, list(zs[k * num_layers:(k + 1) * num_layers])) for k, h in enumerate(hs)]


def seed_mlp(x: Tensor, layers: Sequence[tuple[Tensor, Tensor]], *, activation: str = "tanh",
             kernel: str = "tanh", block: int | None = None) -> tuple[Tensor, list[Tensor]]:
    """One seed-batched MLP as one autograd node (`stacked_seed_mlp` with one network): the last layer's
    activations ``[S, B, out]`` and every layer's pre-activation."""
    return stacked_seed_mlp(x, [layers], activation=activation, kernel=kernel, block=block)[0]
