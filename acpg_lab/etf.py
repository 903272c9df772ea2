"""Simplex equiangular tight frames and the two action-selection heads built on them.

A simplex ETF for K actions in R^d is a set of K unit vectors with pairwise inner product -1/(K-1) that sum to
zero: the most separated configuration K directions can take. ACPG (arXiv 2509.02737) fixes the policy's last
layer to such a frame and trains only the backbone; `ETFHead` is that layer, `LinearHead` the learnable baseline
with the same interface.

Both heads accept an optional leading seed dimension: built with ``seeds=(0, 1, 2)`` their weight has shape
``[3, K, d]`` and they map features ``[3, ..., d]`` to logits ``[3, ..., K]``, one independent head per seed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .checks import check_bool, check_int

__all__ = ["simplex_etf", "etf_error", "ETFHead", "RandomHead", "LinearHead"]


def _check_sizes(num_actions: int, feature_dim: int) -> None:
    """Refuse sizes that are not integers (booleans included: ``True`` is not a size) before any tensor is built."""
    if isinstance(num_actions, bool) or not isinstance(num_actions, int) or num_actions < 2:
        raise ValueError(f"num_actions must be an integer >= 2, got {num_actions!r}")
    if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < num_actions - 1:
        raise ValueError(
            f"feature_dim must be an integer >= num_actions - 1 = {num_actions - 1} (a simplex ETF of "
            f"{num_actions} vectors needs {num_actions - 1} dimensions), got {feature_dim!r}"
        )


def simplex_etf(
    num_actions: int, feature_dim: int, *, seed: int | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Return a simplex ETF as a ``[num_actions, feature_dim]`` matrix of unit rows.

    Rows have pairwise inner product -1/(K-1) and sum to zero. Any ``feature_dim >= num_actions - 1`` works,
    including the minimal d = K-1. The frame is ``sqrt(K/(K-1)) * B @ Q`` with B an orthonormal basis of the
    sum-zero subspace of R^K (K x (K-1)) and Q a (K-1) x d matrix with orthonormal rows: ``seed=None`` gives the
    canonical orientation (Q = the first K-1 coordinate axes), an integer seed a uniformly random one.
    Computed in float64, returned in ``dtype``.
    """
    _check_sizes(num_actions, feature_dim)
    if seed is not None:
        seed = check_int("seed", seed, 0)
    k, d = num_actions, feature_dim
    # Orthonormal basis of {x : sum(x) = 0}: QR of [1 | I] gives 1/sqrt(K) first, the rest spans its complement.
    ones_and_eye = torch.cat([torch.ones(k, 1, dtype=torch.float64), torch.eye(k, dtype=torch.float64)], 1)
    basis = torch.linalg.qr(ones_and_eye)[0][:, 1:k]  # [K, K-1]
    if seed is None:
        orient = torch.eye(k - 1, d, dtype=torch.float64)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        gauss = torch.randn(d, k - 1, generator=gen, dtype=torch.float64)
        q, r = torch.linalg.qr(gauss)  # q: [d, K-1] orthonormal columns
        orient = (q * torch.sign(torch.diagonal(r))).T  # sign fix makes Q Haar-distributed
    frame = math.sqrt(k / (k - 1)) * basis @ orient
    return frame.to(dtype)


def etf_error(weights: Tensor) -> Tensor:
    """Distance of the rows of ``weights [..., K, d]`` from a simplex ETF (0 for an exact one, any scale).

    ``|| W̄ W̄ᵀ - K/(K-1) (I - 11ᵀ/K) ||_F`` with W̄ = W / mean row norm; leading dimensions give one value each.
    """
    w = weights.to(torch.float64)
    k = w.shape[-2]
    if k < 2:
        raise ValueError(f"etf_error needs at least 2 rows, got weights of shape {tuple(weights.shape)}")
    w = w / w.norm(dim=-1).mean(-1)[..., None, None]
    target = (k / (k - 1)) * (torch.eye(k, dtype=torch.float64) - 1.0 / k)
    return torch.linalg.matrix_norm(w @ w.transpose(-1, -2) - target)


def _seed_list(seeds: int | Sequence[int] | None) -> tuple[list[int | None], bool]:
    """Normalise the ``seeds`` argument: a sequence means a leading seed dimension."""
    if seeds is None:
        return [None], False
    if isinstance(seeds, bool | int):
        return [check_int("seeds", seeds, 0)], False
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    return [check_int("seeds", s, 0) for s in seeds], True


def check_head_options(*, normalize: object, scale: object, bias: object, init_gain: object = 1.0) -> None:
    """The options every head takes (and `LinearHead`'s ``init_gain``), checked as the heads check them, for a
    caller that builds other tensors first (`acpg_lab.networks.ActorCritic`)."""
    _check_positive_finite("scale", scale)
    check_bool("normalize", normalize)
    check_bool("bias", bias)
    _check_positive_finite("init_gain", init_gain)


def _check_positive_finite(name: str, value: float) -> None:
    """Refuse a non-number, a boolean, NaN, an infinity or a value <= 0, naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ValueError(f"{name} must be > 0 and finite (a number, not a bool), got {value!r}")


class _Head(nn.Module):
    """Shared logic of both heads: optional L2 feature normalisation, a logit scale, an optional bias."""

    weight: Tensor

    def __init__(self, feature_dim: int, num_actions: int, normalize: bool, scale: float, bias: bool,
                 num_seeds: int, batched: bool) -> None:
        super().__init__()
        _check_sizes(num_actions, feature_dim)
        _check_positive_finite("scale", scale)
        check_bool("normalize", normalize)
        check_bool("bias", bias)
        self.feature_dim, self.num_actions = feature_dim, num_actions
        self.normalize, self.scale = normalize, float(scale)
        self.batched = batched
        shape = (num_seeds, num_actions) if batched else (num_actions,)
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else None

    def forward(self, features: Tensor) -> Tensor:
        """Logits ``[..., K]`` from features ``[..., d]`` (with a seed dimension: ``[S, B, d] -> [S, B, K]``)."""
        h = nn.functional.normalize(features, dim=-1) if self.normalize else features
        logits = torch.matmul(h, self.weight.transpose(-1, -2))
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.bias is None:
            return logits
        if self.batched:  # [S, K] -> [S, 1, ..., 1, K]
            return logits + self.bias.view(self.bias.shape[0], *([1] * (logits.dim() - 2)), -1)
        return logits + self.bias

    def extra_repr(self) -> str:
        return (f"feature_dim={self.feature_dim}, num_actions={self.num_actions}, normalize={self.normalize}, "
                f"scale={self.scale}, bias={self.bias is not None}")


class ETFHead(_Head):
    """A fixed simplex-ETF action-selection layer (ACPG): logits = scale * W h, W never trained.

    The weights are a buffer, so they are saved in ``state_dict`` and moved by ``.to()``, but no optimiser sees
    them. Choices the ACPG paper leaves open are explicit:

    Args:
        feature_dim: width d of the features; must be >= num_actions - 1.
        num_actions: K, the number of discrete actions.
        seeds: ``None`` for the canonical orientation, an int for a random one, a sequence of ints for one
            frame per seed (weight ``[S, K, d]``, for seed-batched models). The canonical frame lies on the
            first K-1 coordinates, so the head reads only K-1 of the d features: with bounded (tanh) features
            that caps the logit gap, with nonnegative (ReLU) ones some actions can never win. A random
            orientation reads all d (measured with SB3 in notebook 05).
        normalize: L2-normalise features before the head, so logits are scale * cosines. Bounds the logits
            (a policy can never become fully greedy unless scale is large) and removes the feature norm as a
            free "temperature". Default False: features enter as they are, the backbone controls the norm
            (measured on PPO CartPole, 4 seeds x 100k steps: see the package README).
        scale: fixed logit scale (inverse temperature). With ``normalize=True`` it caps the logit gap at
            scale * K/(K-1); too small and the policy cannot become deterministic, too large and early
            updates saturate the softmax.
        bias: add a learnable per-action bias (off in ACPG; a bias lets the head prefer actions regardless of
            the state, which the ETF geometry is meant to rule out).
    """

    def __init__(self, feature_dim: int, num_actions: int, *, seeds: int | Sequence[int] | None = None,
                 normalize: bool = False, scale: float = 1.0, bias: bool = False) -> None:
        seed_list, batched = _seed_list(seeds)
        super().__init__(feature_dim, num_actions, normalize, scale, bias, len(seed_list), batched)
        frames = [simplex_etf(num_actions, feature_dim, seed=s) for s in seed_list]
        self.register_buffer("weight", torch.stack(frames) if batched else frames[0])


class RandomHead(_Head):
    """The control arm for `ETFHead`: a fixed head whose rows are random unit vectors instead of a simplex ETF.

    Everything else is as the ETF head's (rows of norm 1, a buffer no optimiser sees, the same ``normalize``,
    ``scale`` and ``bias`` options), so an ETF-vs-random comparison isolates the equiangular geometry from
    "the last layer is fixed" and from the initial logit scale. Rows are i.i.d. uniform on the unit sphere of
    R^d, drawn from ``seeds`` (one frame per seed as in `ETFHead`; ``None`` draws from seed 0): their pairwise
    cosines scatter around 0 with spread about 1/sqrt(d), while the ETF's are all -1/(K-1).
    """

    def __init__(self, feature_dim: int, num_actions: int, *, seeds: int | Sequence[int] | None = None,
                 normalize: bool = False, scale: float = 1.0, bias: bool = False) -> None:
        seed_list, batched = _seed_list(seeds)
        super().__init__(feature_dim, num_actions, normalize, scale, bias, len(seed_list), batched)
        rows = []
        for s in seed_list:
            gen = torch.Generator().manual_seed(0 if s is None else int(s))
            w = torch.randn(num_actions, feature_dim, generator=gen, dtype=torch.float64)
            rows.append((w / w.norm(dim=1, keepdim=True)).float())
        self.register_buffer("weight", torch.stack(rows) if batched else rows[0])


class LinearHead(_Head):
    """The learnable baseline: logits = scale * W h (+ b), W initialised orthogonally with gain ``init_gain``.

    Same interface and options as `ETFHead`; the defaults (no normalisation, scale 1, bias on, gain 0.01 as in
    CleanRL/SB3 policy heads, which starts the policy near uniform) are the usual learnable policy layer.
    ``init_gain=1`` gives rows of norm 1 (orthogonal when K <= d), the initial logit scale of `ETFHead`: the
    control that separates "the ETF is fixed" from "the ETF starts with 100x larger logits".
    """

    def __init__(self, feature_dim: int, num_actions: int, *, seeds: int | Sequence[int] | None = None,
                 normalize: bool = False, scale: float = 1.0, bias: bool = True, init_gain: float = 0.01) -> None:
        _check_positive_finite("init_gain", init_gain)
        seed_list, batched = _seed_list(seeds)
        super().__init__(feature_dim, num_actions, normalize, scale, bias, len(seed_list), batched)
        weights = []
        for s in seed_list:
            w = torch.empty(num_actions, feature_dim)
            gen = None if s is None else torch.Generator().manual_seed(int(s))
            nn.init.orthogonal_(w, gain=init_gain, generator=gen)
            weights.append(w)
        self.weight = nn.Parameter(torch.stack(weights) if batched else weights[0])
