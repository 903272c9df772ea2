"""Seed-batched policy and value networks.

Every parameter carries a leading seed dimension S, so S independent networks run as one model: a linear layer
is one batched matmul ``[S, B, i] @ [S, i, o]``, and an element-wise optimiser over the stacked parameters is S
independent optimisers. Inputs are ``[S, B, *obs_shape]``; outputs ``[S, B, ...]``.

Backbones return their last hidden layer's features *and* the pre-activations of every hidden layer: both are
computed anyway, so exposing them costs nothing on the hot path; the metrics and PFO read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from acpg_lab.checks import check_bool, check_choice, check_int
from acpg_lab.etf import ETFHead, LinearHead, RandomHead, check_head_options
from acpg_lab.fused import KERNELS, run_nets, tanh_via_sigmoid
from acpg_lab.seeds import SEED_SCHEMES, model_seeds

#: The largest ``init_offset`` (the plasticity probe draws its other initialisations below 2**30).
MAX_INIT_OFFSET = 2**32 - 1
#: The largest training seed, per seed scheme: a seed is stored in int64 columns (the history's ``seed``), and the
#: legacy scheme's ``seed * 7919 + 2 + 2 * init_offset`` seeds a torch generator as an int64.
MAX_SEED = {"derived": 2**63 - 1, "legacy": (2**63 - 3 - 2 * MAX_INIT_OFFSET) // 7919}


def check_seeds(name: str, seeds: object, scheme: str = "derived") -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct integers in ``[0, MAX_SEED[scheme]]`` (not booleans), else ValueError
    naming ``name``."""
    if isinstance(seeds, int | str | bytes) or not hasattr(seeds, "__len__") or len(seeds) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of integers, got {seeds!r}")
    out = tuple(check_int(f"{name} (each of {tuple(seeds)!r})", s, 0) for s in seeds)
    limit = MAX_SEED.get(scheme, MAX_SEED["derived"])
    too_big = [s for s in out if s > limit]
    if too_big:
        raise ValueError(f"{name} must be <= {limit} under the {scheme!r} seed scheme (they are stored as int64), "
                         f"got {too_big[0]}")
    if len(set(out)) != len(out):
        dup = sorted({s for s in out if out.count(s) > 1})
        raise ValueError(f"{name} must be distinct, {dup} appear more than once in {out!r}")
    return out

__all__ = ["tanh", "SeedLinear", "dense_layers", "dense_forward", "MLP", "MinAtarCNN", "NatureCNN", "Actor",
           "ActorCritic", "PolicyOutput", "ENGINES"]

#: How the backbones compute (`ActorCritic.use_engine`, `acpg_lab.config.TrainConfig.engine`): "reference" runs
#: every layer through autograd (a baddbmm node and a tanh node per layer, tanh as ``2 sigmoid(2x) - 1``); "fused"
#: runs each MLP backbone as one hand-written autograd node (`acpg_lab.fused`), actor and critic together in one node
#: when the trunk is not shared, MinAtar CNNs with torch's tanh kernel, and the loss as one node
#: (`acpg_lab.fused_loss`).
ENGINES = ("reference", "fused")


class _Tanh(torch.autograd.Function):
    """tanh as ``2 sigmoid(2x) - 1``, with tanh's own backward ``g (1 - y^2)``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = tanh_via_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: Tensor) -> Tensor:
    """The hyperbolic tangent, computed as ``2 sigmoid(2x) - 1``.

    Same function, different kernel: torch's CPU ``tanh`` costs about 3 ns per element on our 2-core machines
    (3.3x its ``sigmoid``, and as much as a ``[S, 256, 64] x [64, 64]`` matmul), which made it the largest single
    cost of a PPO update. This form is within 2e-7 (absolute; about 1.5 float32 ulp near +-1) of tanh in float64,
    element-wise (so seeds stay independent and runs deterministic), and keeps tanh's cheap backward
    ``grad * (1 - y^2)``. ``benchmarks/README.md`` has the measurement.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _Tanh.apply(x)
    return tanh_via_sigmoid(x)


ACTIVATIONS = {"tanh": tanh, "relu": torch.relu}


def _init_orthogonal(shape: tuple[int, int], gain: float, generator: torch.Generator) -> Tensor:
    """An orthogonally initialised ``[in, out]`` matrix (the CleanRL/SB3 policy-gradient convention)."""
    w = torch.empty(shape[1], shape[0])
    nn.init.orthogonal_(w, gain=gain, generator=generator)
    return w.T.contiguous()


class SeedLinear(nn.Module):
    """S independent linear layers: ``[S, B, in] -> [S, B, out]``; seed s is initialised from ``generators[s]``."""

    def __init__(self, in_features: int, out_features: int, generators: Sequence[torch.Generator],
                 gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.stack([_init_orthogonal((in_features, out_features), gain, g)
                                                for g in generators]))
        self.bias = nn.Parameter(torch.zeros(len(generators), 1, out_features))

    def forward(self, x: Tensor) -> Tensor:
        if self.out_features == 1:  # bmm takes a batch-size-dependent gemv path here; keep seeds independent
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"seeds={self.weight.shape[0]}, in_features={self.in_features}, out_features={self.out_features}"


def dense_layers(sizes: Sequence[int], generators: Sequence[torch.Generator]) -> nn.ModuleList:
    """Seed-batched linear layers ``sizes[0] -> sizes[1] -> ...``, initialised in order from ``generators``."""
    return nn.ModuleList(SeedLinear(i, o, generators) for i, o in zip(sizes[:-1], sizes[1:], strict=True))


def dense_forward(layers: nn.ModuleList, act, h: Tensor, preacts: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Run ``h [S, B, in]`` through ``layers`` with activation ``act``, appending each pre-activation to
    ``preacts``: the dense stack every backbone here ends with."""
    for layer in layers:
        z = layer(h)
        preacts.append(z)
        h = act(z)
    return h, preacts


class MLP(nn.Module):
    """Fully connected backbone for vector observations (flattened): hidden sizes and tanh or ReLU.

    ``fused_kernel`` None (the default) runs the reference path; a kernel name (`acpg_lab.fused.KERNELS`) runs the
    layers as one fused autograd node with that tanh (`ActorCritic.use_engine` sets it).
    """

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], activation: str,
                 generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.layers = dense_layers([obs_dim, *hidden_sizes], generators)
        self.act, self.activation = ACTIVATIONS[activation], activation
        self.feature_dim = hidden_sizes[-1]
        self.fused_kernel: str | None = None

    def dense_params(self) -> list[Tensor]:
        """Every layer's weight and bias, first layer first (what `acpg_lab.fused.run_nets` takes)."""
        return [p for layer in self.layers for p in (layer.weight, layer.bias)]

    def forward(self, obs: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Features of the last hidden layer ``[S, B, d]`` and every hidden layer's pre-activations."""
        x = obs.reshape(obs.shape[0], obs.shape[1], -1)
        if self.fused_kernel is not None:  # widths checked by ActorCritic.use_engine
            return run_nets(x, self.dense_params(), nets=1, num_layers=len(self.layers), activation=self.activation,
                            kernel=self.fused_kernel)[0]
        return dense_forward(self.layers, self.act, x, [])


#: The last `conv_patches` call: (its input, the input's version counter, the patches). The actor's and the
#: critic's CNNs read the same observations, so the second call of a pass reuses the first's patches.
_LAST_PATCHES: list[tuple[Tensor, int, Tensor]] = []


def conv_patches(obs: Tensor) -> Tensor:
    """The 3x3 patches (stride 1, no padding) of channels-last images ``[S, B, H, W, C]`` as ``[S, B*P, C*9]``,
    P = (H-2)(W-2) positions in row-major order and each patch's entries channel-major (``c*9 + 3 ki + kj``):
    ``F.unfold``'s layout, value for value (a transposed view of a ``[S, C*9, B*P]`` array), built by nine slice
    copies instead of ``F.unfold`` and a transposing copy: ~5x faster on the CPU at MinAtar's shapes, and the
    convolution's batched matmul reads the transposed layout faster too (bitwise the same products on the Intel
    AVX-512 machine where it was measured).

    The patch array is ~9x the images' size and the biggest cost of the MinAtar CNN's forward, so the last one is
    kept: a call with the very same tensor, unchanged since (same ``_version``), gets it back. Inputs that need a
    gradient are never kept. (A write that bypasses torch's version counter, through a numpy array sharing the
    tensor's memory or through ``.data``, is not seen: pass a new tensor after such a write.)"""
    if _LAST_PATCHES and not obs.requires_grad:
        kept, version, patches = _LAST_PATCHES[0]
        if kept is obs and version == obs._version:
            return patches
    patches = _patches(obs)
    _LAST_PATCHES[:] = [] if obs.requires_grad else [(obs, obs._version, patches)]
    return patches


def _patches(obs: Tensor) -> Tensor:
    """`conv_patches` without the memo: a ``[S, C*9, B*P]`` array (each patch entry's row holds every position of
    every sample of the seed, filled by nine copies with contiguous runs, one per kernel offset), returned
    transposed: a batched matmul reads either layout, and this one is faster to fill and to multiply."""
    s, b, height, width, channels = obs.shape
    x = obs.permute(0, 4, 1, 2, 3).contiguous()  # [S, C, B, H, W]
    out = obs.new_empty(s, channels, 3, 3, b, height - 2, width - 2)
    for ki in range(3):
        for kj in range(3):
            out[:, :, ki, kj] = x[:, :, :, ki:ki + height - 2, kj:kj + width - 2]
    return out.view(s, channels * 9, b * (height - 2) * (width - 2)).transpose(1, 2)


class MinAtarCNN(nn.Module):
    """The MinAtar baseline network, seed-batched: 3x3 conv (16 channels, no padding) then a dense layer.

    Observations are ``[S, B, 10, 10, C]`` (MinAtar's layout). The convolution is the patch array
    (`conv_patches`) followed by a batched matmul, so each seed's filters only ever see that seed's inputs.
    """

    def __init__(self, obs_shape: Sequence[int], hidden_sizes: Sequence[int], activation: str,
                 generators: Sequence[torch.Generator], channels: int = 16) -> None:
        super().__init__()
        height, width, in_ch = obs_shape
        self.out_hw = (height - 2) * (width - 2)
        self.conv = SeedLinear(in_ch * 9, channels, generators)
        self.dense = dense_layers([channels * self.out_hw, *hidden_sizes], generators)
        self.act, self.activation = ACTIVATIONS[activation], activation
        self.feature_dim = hidden_sizes[-1]
        #: None: the reference path; a kernel of `acpg_lab.fused.KERNELS` (set by `ActorCritic.use_engine` on the
        #: fused engine): "tanh" computes tanh with torch's own kernel, "sigmoid" as the reference does
        self.fused_kernel: str | None = None

    def forward(self, obs: Tensor) -> tuple[Tensor, list[Tensor]]:
        s, b = obs.shape[:2]
        act = torch.tanh if self.fused_kernel == "tanh" and self.activation == "tanh" else self.act
        z = self.conv(conv_patches(obs))  # [S, B*P, channels]
        return dense_forward(self.dense, act, act(z).reshape(s, b, -1), [z.reshape(s, b, -1)])


class NatureCNN(nn.Module):
    """The Nature DQN / CleanRL Atari torso, seed-batched: 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, then dense
    layers (``hidden_sizes``, 512 in the PFO paper).

    Observations are ``[S, B, C, H, W]`` uint8 frames (ale-py's layout), scaled to [0, 1]. The convolutions run
    once per seed (each seed's filters on that seed's frames; convolution compute dwarfs the loop's overhead, and
    it measured 1.25-1.4x faster on a CPU than one grouped convolution over all seeds: ``scripts/bench_nature_cnn.py``),
    the dense layers as one batched matmul.
    """

    SPECS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  #: (channels, kernel, stride) per convolution

    def __init__(self, obs_shape: Sequence[int], hidden_sizes: Sequence[int], activation: str,
                 generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        in_ch, height, width = obs_shape
        self.num_seeds = len(generators)
        self.convs = nn.ModuleList()
        for out_ch, kernel, stride in self.SPECS:
            # a [C*k*k, out] orthogonal init per seed (as SeedLinear), laid out as grouped-conv filters
            # [S, out, C, k, k]: a leading seed dimension, as every parameter here
            weight = torch.stack([_init_orthogonal((in_ch * kernel * kernel, out_ch), math.sqrt(2), g).T
                                  for g in generators]).reshape(len(generators), out_ch, in_ch, kernel, kernel)
            self.convs.append(nn.ParameterDict(dict(weight=nn.Parameter(weight),
                                                    bias=nn.Parameter(torch.zeros(len(generators), out_ch)))))
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
            in_ch = out_ch
        if height < 1 or width < 1:
            raise ValueError(f"NatureCNN needs frames of at least 36x36, got observation shape {tuple(obs_shape)}")
        self.dense = dense_layers([in_ch * height * width, *hidden_sizes], generators)
        self.act = ACTIVATIONS[activation]
        self.feature_dim = hidden_sizes[-1]

    def forward(self, obs: Tensor) -> tuple[Tensor, list[Tensor]]:
        s, b = obs.shape[:2]
        x = [frames / 255.0 for frames in obs.unbind(0)]  # per seed [B, C, H, W]
        preacts = []
        for conv, (_, _, stride) in zip(self.convs, self.SPECS, strict=True):
            z = [F.conv2d(xi, w, bias, stride=stride)
                 for xi, w, bias in zip(x, conv["weight"].unbind(0), conv["bias"].unbind(0), strict=True)]
            preacts.append(torch.stack(z).reshape(s, b, -1))
            x = [self.act(zi) for zi in z]
        return dense_forward(self.dense, self.act, torch.stack(x).reshape(s, b, -1), preacts)  # [S, B, C*H*W] in


class PolicyOutput(NamedTuple):
    """What the actor computes in one pass."""

    logits: Tensor  #: [S, B, K]
    features: Tensor  #: [S, B, d] last hidden layer (input of the action-selection head)
    preacts: list[Tensor]  #: pre-activations of every hidden layer, last one last


class Actor(nn.Module):
    """Backbone + action-selection head. ``actor(obs)`` gives logits; ``actor.policy(obs)`` also the features."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def policy(self, obs: Tensor) -> PolicyOutput:
        h, preacts = self.backbone(obs)
        return PolicyOutput(self.head(h), h, preacts)

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.backbone(obs)[0])


def check_engine(engine: object, *, network: str, hidden_sizes: Sequence[int], tanh_kernel: object = "tanh") -> str:
    """``engine`` if it is one of `ENGINES` and can run ``network`` with ``hidden_sizes``, else ValueError naming
    it: the fused engine runs MLP and MinAtar CNN backbones, and refuses hidden layers of width 1 (a batched matmul
    with one output column takes a gemv path whose rounding depends on the batch, so seeds would stop being
    independent)."""
    check_choice("engine", engine, ENGINES)
    check_choice("tanh_kernel", tanh_kernel, KERNELS)
    if engine == "fused" and network not in ("mlp", "cnn"):
        raise ValueError(f"engine='fused' runs MLP and MinAtar CNN backbones only, got network={network!r}; use "
                         "engine='reference'")
    if engine == "fused" and 1 in tuple(hidden_sizes):
        raise ValueError(f"engine='fused' does not take hidden layers of width 1, got hidden_sizes="
                         f"{tuple(hidden_sizes)!r}; use engine='reference'")
    return str(engine)


def _check_actor_critic(obs_shape: object, num_actions: object, seeds: object, *, network: object,
                        hidden_sizes: object, activation: object, head: object, shared_trunk: object,
                        init_offset: object, seed_scheme: object, engine: object,
                        head_options: dict[str, object]) -> None:
    """`ActorCritic`'s arguments, each refused naming it before any tensor is built (the heads' own checks, with
    the heads' messages, for their options; the heads check ``num_actions`` against the feature dimension)."""
    if isinstance(obs_shape, int | str | bytes) or not hasattr(obs_shape, "__len__") or len(obs_shape) == 0:
        raise ValueError(f"obs_shape must be a non-empty sequence of positive integers, got {obs_shape!r}")
    for size in obs_shape:
        check_int(f"obs_shape (each of {tuple(obs_shape)!r})", size, 1)
    check_int("num_actions", num_actions, 2)
    check_choice("seed_scheme", seed_scheme, SEED_SCHEMES)
    check_seeds("seeds", seeds, str(seed_scheme))
    check_choice("network", network, ("mlp", "cnn", "nature"))
    if isinstance(hidden_sizes, int | str | bytes) or not hasattr(hidden_sizes, "__len__") or not hidden_sizes:
        raise ValueError(f"hidden_sizes must be a non-empty sequence of positive integers, got {hidden_sizes!r}")
    for size in hidden_sizes:
        check_int(f"hidden_sizes (each of {tuple(hidden_sizes)!r})", size, 1)
    check_choice("activation", activation, tuple(ACTIVATIONS))
    check_choice("head", head, ("linear", "etf", "random"))
    check_bool("shared_trunk", shared_trunk)
    if check_int("init_offset", init_offset, 0) > MAX_INIT_OFFSET:
        raise ValueError(f"init_offset must be <= {MAX_INIT_OFFSET}, got {init_offset!r}")
    check_head_options(normalize=head_options["head_normalize"], scale=head_options["head_scale"],
                       bias=head_options["head_bias"], init_gain=head_options["head_init_gain"])
    check_engine(engine, network=str(network), hidden_sizes=hidden_sizes)


class _CriticFeatures(NamedTuple):
    """What a joint (actor and critic) `ActorCritic.policy` pass leaves for the `ActorCritic.value` after it."""

    obs: Tensor
    actor_features: Tensor
    features: Tensor
    grad: bool
    versions: int


class ActorCritic(nn.Module):
    """Actor (backbone + action-selection head) and critic (backbone + linear value), seed-batched.

    Args:
        obs_shape: observation shape of one environment.
        num_actions: K.
        seeds: one integer per seed; each seed's weights (and its ETF orientation) depend on its integer only.
        network: "mlp" (flattens observations), "cnn" (MinAtar-style ``[10, 10, C]`` images) or "nature" (Atari
            ``[C, 84, 84]`` frame stacks, `NatureCNN`).
        hidden_sizes: widths of the hidden layers (after the convolution for "cnn"); the last is the feature
            dimension d the head sees.
        activation: "tanh" or "relu".
        head: "linear" (learnable), "etf" (fixed simplex ETF, ACPG) or "random" (fixed random unit rows, the
            ETF's control arm: `RandomHead`).
        head_normalize, head_scale, head_bias: options of the head (see `ETFHead`).
        head_init_gain: initial row norm of the linear head (0.01 by default; 1 matches the fixed heads').
        shared_trunk: critic reads the actor's features instead of having its own backbone (fewer parameters; the
            value loss then shapes the policy's representation too).
        init_offset: shifts every seed's initialisation stream; 0 is the training initialisation, another value
            gives a differently initialised network of the same architecture (the plasticity probe's target).
        seed_scheme: "derived" (new runs) or "legacy" (the streams of runs stored before `TrainConfig.seed_scheme`
            existed); see `acpg_lab.seeds`.
        engine: how the backbones compute, `ENGINES` (see `use_engine`): "reference" or "fused". The parameters,
            and so state dicts, optimisers and checkpoints, are the same under both.
    """

    def __init__(self, obs_shape: Sequence[int], num_actions: int, seeds: Sequence[int], *, network: str = "mlp",
                 hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", head: str = "linear",
                 head_normalize: bool = False, head_scale: float = 1.0, head_bias: bool | None = None,
                 head_init_gain: float = 0.01,
                 shared_trunk: bool = False, init_offset: int = 0, seed_scheme: str = "derived",
                 engine: str = "reference") -> None:
        _check_actor_critic(obs_shape, num_actions, seeds, network=network, hidden_sizes=hidden_sizes,
                            activation=activation, head=head, shared_trunk=shared_trunk, init_offset=init_offset,
                            seed_scheme=seed_scheme, engine=engine, head_options=dict(
                                head_normalize=head_normalize, head_scale=head_scale, head_init_gain=head_init_gain,
                                head_bias=False if head_bias is None else head_bias))
        super().__init__()
        # One init stream and one head seed per seed, a function of the seed alone (`acpg_lab.seeds`); the init
        # stream is consumed in a fixed order below.
        streams = [model_seeds(s, init_offset, seed_scheme) for s in seeds]
        init_generators = [torch.Generator().manual_seed(init) for init, _ in streams]

        def backbone() -> nn.Module:
            if network == "cnn":
                return MinAtarCNN(obs_shape, hidden_sizes, activation, init_generators)
            if network == "nature":
                return NatureCNN(obs_shape, hidden_sizes, activation, init_generators)
            return MLP(math.prod(obs_shape), hidden_sizes, activation, init_generators)

        actor_backbone = backbone()
        self.critic_backbone = None if shared_trunk else backbone()
        d = actor_backbone.feature_dim
        head_seeds = [head for _, head in streams]
        if head in ("etf", "random"):
            fixed = ETFHead if head == "etf" else RandomHead
            actor_head: nn.Module = fixed(d, num_actions, seeds=head_seeds, normalize=head_normalize,
                                          scale=head_scale, bias=bool(head_bias))
        else:
            actor_head = LinearHead(d, num_actions, seeds=head_seeds, normalize=head_normalize, scale=head_scale,
                                    bias=True if head_bias is None else head_bias, init_gain=head_init_gain)
        self.actor = Actor(actor_backbone, actor_head)
        self.critic_head = SeedLinear(d, 1, init_generators, gain=1.0)
        self.num_seeds, self.num_actions, self.feature_dim = len(seeds), num_actions, d
        self.network, self.hidden_sizes = network, tuple(hidden_sizes)
        self.use_engine(engine)

    def use_engine(self, engine: str, *, tanh_kernel: str = "tanh", fused_loss: bool = True) -> ActorCritic:
        """Switch how the backbones compute (the parameters stay as they are); returns the model.

        Args:
            engine: "reference": every layer through autograd, bitwise the path every stored result was made with.
                "fused": each MLP backbone is one hand-written autograd node (`acpg_lab.fused`), and actor and
                critic backbones run in the same node (computed in `policy`, kept for `value`) when the trunk is not
                shared: no per-layer autograd nodes, fewer element-wise passes, a block of seeds at a time through
                every layer while it is in cache; the same function, to float32 rounding. Still deterministic, and a
                seed's results do not depend on the other seeds of the batch (`tests/test_fused.py`).
            tanh_kernel: the fused path's tanh (`acpg_lab.fused.KERNELS`): "tanh" (torch's kernel: about 3x faster
                than the sigmoid form on the AVX-512 Intel CPU where it was measured, 3.3x slower on the earlier
                AMD ones; results differ from the reference by float32 rounding; what ``TrainConfig.engine="fused"``
                uses) or "sigmoid" (the reference's own arithmetic: bitwise the reference path, fused and joint).
            fused_loss: on the fused engine, compute the training loss as one hand-differentiated node
                (`acpg_lab.fused_loss`, where it `supports` the config: equal to the autograd loss to float32
                rounding, about 12% faster updates at rl-zoo CartPole shapes); False keeps the loss on autograd (with
                ``tanh_kernel="sigmoid"``: bitwise the reference path).
        """
        check_engine(engine, network=self.network, hidden_sizes=self.hidden_sizes, tanh_kernel=tanh_kernel)
        kernel = tanh_kernel if engine == "fused" else None
        for backbone in (self.actor.backbone, self.critic_backbone):
            if isinstance(backbone, MLP | MinAtarCNN):
                backbone.fused_kernel = kernel
        self.engine, self.fused_loss = engine, bool(fused_loss) and engine == "fused"
        self._joint = kernel is not None and isinstance(self.critic_backbone, MLP)
        self._critic_features: _CriticFeatures | None = None
        return self

    def policy(self, obs: Tensor) -> PolicyOutput:
        """The actor's pass (`Actor.policy`). On the joint fused path the critic's features of ``obs`` are
        computed in the same pass and kept for the `value` call that follows with the same ``obs`` and features."""
        if not self._joint:
            return self.actor.policy(obs)
        h, preacts, h_critic, _ = self.backbone_features(obs)
        self._critic_features = _CriticFeatures(obs, h, h_critic, torch.is_grad_enabled(), self._versions(obs))
        return PolicyOutput(self.actor.head(h), h, preacts)

    def fused_backbones(self) -> bool:
        """Whether the backbones run on the fused engine (`use_engine`): one joint pass of actor and critic MLPs, or
        every backbone (MLP or MinAtar CNN, the critic's own or the shared trunk) with a fused kernel."""
        backbones = [b for b in (self.actor.backbone, self.critic_backbone) if b is not None]
        return self._joint or all(getattr(b, "fused_kernel", None) is not None for b in backbones)

    def backbone_features(self, obs: Tensor) -> tuple[Tensor, list[Tensor], Tensor, list[Tensor]]:
        """``(actor features, actor pre-activations, critic features, critic pre-activations)`` of ``obs`` on the
        fused path (`fused_backbones`), in one pass and without the heads: what `acpg_lab.fused_loss` and the
        diagnostics start from (a shared trunk: the critic's are the actor's)."""
        if not self._joint:
            h, preacts = self.actor.backbone(obs)
            if self.critic_backbone is None:
                return h, preacts, h, preacts
            return h, preacts, *self.critic_backbone(obs)
        x = obs.reshape(obs.shape[0], obs.shape[1], -1)
        actor, critic = self.actor.backbone, self.critic_backbone
        (h, preacts), (h_critic, critic_preacts) = run_nets(
            x, actor.dense_params() + critic.dense_params(), nets=2, num_layers=len(actor.layers),
            activation=actor.activation, kernel=actor.fused_kernel)
        return h, preacts, h_critic, critic_preacts

    def value(self, obs: Tensor, actor_features: Tensor | None = None) -> Tensor:
        """State values ``[S, B]``; pass the actor's features of the same ``obs`` (from `policy`): with a shared
        trunk they are the critic's input, on the joint fused path they identify the pass that already
        computed the critic's features."""
        if self.critic_backbone is None:
            h = actor_features if actor_features is not None else self.actor.backbone(obs)[0]
        else:
            h = self._joint_critic_features(obs, actor_features)
            if h is None:
                h = self.critic_backbone(obs)[0]
        return self.critic_head(h).squeeze(-1)

    def _versions(self, obs: Tensor) -> int:
        """Changes so far to ``obs`` and to the critic backbone's parameters (in-place writes bump ``_version``)."""
        return obs._version + sum(p._version for p in self.critic_backbone.dense_params())  # its parameters

    def _joint_critic_features(self, obs: Tensor, actor_features: Tensor | None) -> Tensor | None:
        """The critic's features from the last joint `policy` pass if that pass saw this very ``obs`` (same
        tensor, unchanged), returned these ``actor_features``, ran in the same grad mode and the critic's
        parameters have not changed since; else None. Used once."""
        kept, self._critic_features = self._critic_features, None
        if (kept is None or actor_features is None or kept.obs is not obs or kept.actor_features is not actor_features
                or kept.grad != torch.is_grad_enabled() or kept.versions != self._versions(obs)):
            return None
        return kept.features

    def actor_parameters(self) -> list[nn.Parameter]:
        return list(self.actor.parameters())

    def critic_parameters(self) -> list[nn.Parameter]:
        backbone = [] if self.critic_backbone is None else list(self.critic_backbone.parameters())
        return [*backbone, *self.critic_head.parameters()]
