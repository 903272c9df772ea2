"""Diagnostics of a policy network: action collapse, representation quality, trust region, plasticity.

Every definition is the one written in ``docs/metrics.md``; the docstrings below only add what
that file leaves to the implementation (numerical tolerances, shapes, costs).

Batched convention. Each function accepts either one run or S runs stacked on a leading *seed* dimension:

- `action_collapse`: features ``[N, d]``, labels ``[N]``, weights ``[K, d]``, logits ``[N, K]`` for one run;
  features ``[S, N, d]`` (``features.dim() == 3`` is what makes a call batched), labels ``[S, N]``, weights
  ``[S, K, d]``, logits ``[S, N, K]`` for S runs. In a batched call, labels ``[N]`` and weights ``[K, d]`` are
  shared by every seed (a fixed ETF head, say).
- `representation`: features ``[N, d]`` or ``[S, N, d]``; pre-activations with the same leading dimensions.
- `trust_region`: log-probabilities ``[B]`` or ``[S, B]``; logits ``[B, A]`` or ``[S, B, A]``.
- `plasticity_probe`: whatever leading dimensions the actor's logits ``[..., B, K]`` carry.

An unbatched call returns a dict of python floats; a batched call a dict of float64 tensors of shape ``[S]``
(``plasticity_probe``: one value per leading index). Batched calls are vectorised: no Python loop over
samples, classes or seeds, and seeds with different sets of present classes are handled with masks. Reductions
run in float64 whatever the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["action_collapse", "representation", "trust_region", "plasticity_probe", "singular_values"]

# Between-class directions whose variance is below this fraction of the largest one are treated as absent in
# the pseudo-inverse of Σ_B (a standard deviation ratio of 1e-6, finer than float32 features can resolve).
_GRAM_RTOL = 1e-12
_DEAD_TANH_STD = 1e-3
_RANK_THRESHOLD = 0.99
_FEATURE_RANK_EPS = 0.01


# ----------------------------------------------------------------------------------------------- helpers
def _as_out(values: dict[str, Tensor], batched: bool) -> dict[str, float] | dict[str, Tensor]:
    """Strip the seed dimension of an unbatched call and turn its values into python floats."""
    if batched:
        return values
    return {key: float(val[0]) for key, val in values.items()}


def _check_float(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return x


def _categorical_kl(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p ‖ q) over the last dimension from log-probabilities (0 · log 0 = 0; p > 0 = q gives inf)."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1)


def singular_values(features: Tensor) -> Tensor:
    """Singular values of raw (not centred) ``[..., N, d]`` matrices, largest first: float64 ``[..., m]``.

    m = min(N, d). Computed as the square roots of the eigenvalues of the smaller Gram matrix (HᵀH, or HHᵀ
    when N < d), formed in float64. At N = 50,000, d = 512 it costs about as much as ``torch.linalg.svdvals``
    in float32 and less than in float64 (``scripts/bench_metrics.py`` prints all three), and it is as accurate
    as a float32 SVD: the Gram route resolves singular values down to about sqrt(m · eps64) ≈ 3e-7 (m = 512)
    of the largest one, so smaller ones (numerical zeros of a rank-deficient matrix, or values below the
    float32 resolution of the features) are returned as exactly 0, not as rounding noise that inflates the
    effective rank. A matrix with a NaN or infinite entry gets NaN singular values.
    """
    h = _check_float("features", features).to(torch.float64)
    if h.dim() < 2:
        raise ValueError(f"features must have shape [..., N, d], got {tuple(features.shape)}")
    return _gram_singular_values(_gram(h), *h.shape[-2:])


def _gram(h: Tensor) -> Tensor:
    """The smaller Gram matrix of float64 ``h [..., N, d]``: HᵀH (``[..., d, d]``) if N >= d, else HHᵀ."""
    n, d = h.shape[-2:]
    return h.transpose(-1, -2) @ h if n >= d else h @ h.transpose(-1, -2)


def _gram_singular_values(gram: Tensor, n: int, d: int) -> Tensor:
    """`singular_values` from the Gram matrix `_gram` of an ``[..., n, d]`` matrix."""
    finite = torch.isfinite(gram).all(-1).all(-1)[..., None]  # eigvalsh would raise on NaN / inf
    eig = torch.linalg.eigvalsh(torch.where(finite[..., None], gram, 0.0)).flip(-1)  # descending
    m = min(n, d)
    if m == 0:
        return eig
    tol = m * torch.finfo(torch.float64).eps * eig[..., :1].clamp_min(0.0)
    sigma = torch.where(eig > tol, eig, torch.zeros((), dtype=eig.dtype)).sqrt()
    return torch.where(finite, sigma, math.nan)


# --------------------------------------------------------------------------------------- action collapse
def _collapse_inputs(features: Tensor, labels: Tensor, weights: Tensor, logits: Tensor | None
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, bool]:
    """`action_collapse`'s inputs checked and brought to the batched layout: features float64 ``[S, N, d]``,
    labels ``[S, N]``, weights float64 ``[S, K, d]``, logits ``[S, N, K]`` (or None), and whether the call was
    batched."""
    feats = _check_float("features", features)
    batched = feats.dim() == 3
    if feats.dim() not in (2, 3):
        raise ValueError(f"features must have shape [N, d] or [S, N, d], got {tuple(features.shape)}")
    h = feats.to(torch.float64)
    if not batched:
        h = h[None]
    s, n, d = h.shape

    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {getattr(labels, 'dtype', type(labels))}")
    y = labels.to(device=h.device, dtype=torch.long)
    if y.dim() == 1 and batched:
        y = y.expand(s, -1)
    elif not batched and y.dim() == 1:
        y = y[None]
    if tuple(y.shape) != (s, n):
        expected = f"{(n,)} or {(s, n)}" if batched else f"{(n,)}"
        raise ValueError(f"labels must have shape {expected} to match features {tuple(features.shape)}, "
                         f"got {tuple(labels.shape)}")

    _check_float("weights", weights)
    w = weights.to(device=h.device, dtype=torch.float64)
    if w.dim() == 2:
        w = w[None].expand(s, -1, -1)
    if w.dim() != 3 or w.shape[0] != s or w.shape[2] != d:
        expected = f"[K, {d}] or [{s}, K, {d}]" if batched else f"[K, {d}]"
        raise ValueError(f"weights must have shape {expected} to match features {tuple(features.shape)}, "
                         f"got {tuple(weights.shape)}")
    k = w.shape[1]
    if y.numel() and int(y.max()) >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} (K = {k} rows of weights; negative = unlabelled), got "
                         f"values in {int(y.min())}..{int(y.max())}")
    lg = None
    if logits is not None:
        _check_float("logits", logits)
        lg = logits if batched else logits[None]
        if tuple(lg.shape) != (s, n, k):
            expected = (s, n, k) if batched else (n, k)
            raise ValueError(f"logits must have shape {expected}, got {tuple(logits.shape)}")
    return h, y, w, lg, batched


def _equinorm(rows: Tensor, present: Tensor, kp1: Tensor) -> Tensor:
    """Coefficient of variation of the norms of the present rows ``[S, K, d]`` (``present`` float ``[S, K]``)."""
    norms = rows.norm(dim=-1)
    mean = (norms * present).sum(-1) / kp1
    std = (((norms - mean[:, None]) ** 2 * present).sum(-1) / kp1).sqrt()
    return std / mean


def _angles(rows: Tensor, pair: Tensor, kp: Tensor) -> tuple[Tensor, Tensor]:
    """Std of the pairwise cosines of the present rows, and their mean distance from the ETF's -1/(K-1)."""
    npairs = (kp * (kp - 1)).clamp_min(1.0)
    norms = rows.norm(dim=-1)
    cos = (rows @ rows.transpose(1, 2)) / (norms[:, :, None] * norms[:, None, :])
    cos = torch.where(pair, cos, torch.zeros((), dtype=cos.dtype))  # keeps NaN of a present zero row
    mean = cos.sum((1, 2)) / npairs
    std = (torch.where(pair, (cos - mean[:, None, None]) ** 2, 0.0).sum((1, 2)) / npairs).sqrt()
    target = 1.0 / (kp - 1).clamp_min(1.0)
    max_angle = torch.where(pair, (cos + target[:, None, None]).abs(), 0.0).sum((1, 2)) / npairs
    return std, max_angle


class _ClassStats(NamedTuple):
    """Per-seed class statistics over the labelled samples (absent classes masked out)."""

    present: Tensor  # [S, K] bool: the class has at least one labelled sample
    pf: Tensor  # present as float64
    kp: Tensor  # [S] number of present classes
    kp1: Tensor  # kp clamped to >= 1 (a safe divisor)
    means: Tensor  # [S, K, d] class means, absent rows 0
    mu_g: Tensor  # [S, d] class-balanced global mean
    q: Tensor  # [S, K, d] centred class means (twice centred), absent rows 0


def _class_statistics(h: Tensor, y: Tensor, labelled: Tensor, k: int) -> _ClassStats:
    """Class counts, class means, the class-balanced global mean and the centred means ``q`` (the rows of Q in
    metrics.md), per seed, with one ``index_add`` over all seeds (seed s, class c -> row s*K + c)."""
    s, n, d = h.shape
    flat = (torch.arange(s, device=h.device)[:, None] * k + y).reshape(-1)
    counts = torch.bincount(flat, weights=labelled.reshape(-1), minlength=s * k).reshape(s, k).to(torch.float64)
    present = counts > 0
    pf = present.to(torch.float64)
    kp = pf.sum(-1)  # [S] number of present classes
    kp1 = kp.clamp_min(1.0)
    sums = torch.zeros(s * k, d, dtype=torch.float64, device=h.device)
    sums.index_add_(0, flat, (h * labelled[..., None]).reshape(s * n, d))
    means = sums.reshape(s, k, d) / counts.clamp_min(1.0)[..., None]  # [S, K, d], absent rows 0
    mu_g = (means * pf[..., None]).sum(1) / kp1[:, None]  # class-balanced global mean [S, d]
    q = (means - mu_g[:, None]) * pf[..., None]
    # Centre a second time: the rows then sum to zero to rounding of |m| (not of |μ|), so the Gram's
    # structural null direction (all-ones over present classes) stays far below the pseudo-inverse tolerance.
    q = (q - (q.sum(1) / kp1[:, None])[:, None]) * pf[..., None]
    return _ClassStats(present, pf, kp, kp1, means, mu_g, q)


def _nc1(h: Tensor, y: Tensor, w: Tensor, labelled: Tensor, stats: _ClassStats, with_head_logits: bool
         ) -> tuple[Tensor, Tensor, Tensor]:
    """NC1 = tr(Σ_W Σ_B⁺)/K through the K x K Gram of the centred means (see `action_collapse`).

    Returns ``(nc1 [S], finite [S], proj [S, N, K or 2K])``: ``finite`` is False for a seed whose Gram is not
    finite (NaN / inf features), and ``proj`` holds ``h_i · m_j`` in its first K columns and, when
    ``with_head_logits``, the head's logits ``W h_i`` in the next K (one pass over the features serves both)."""
    k = w.shape[1]
    q, means = stats.q, stats.means
    gram = q @ q.transpose(1, 2)  # [S, K, K]
    finite = torch.isfinite(gram).all(-1).all(-1)  # NaN / inf features reach every class mean, hence the Gram
    lam, vec = torch.linalg.eigh(torch.where(finite[:, None, None], gram, 0.0))
    keep = lam > _GRAM_RTOL * lam.amax(-1, keepdim=True).clamp_min(0.0)
    inv_lam2 = torch.where(keep, 1.0 / lam.pow(2), torch.zeros((), dtype=lam.dtype))
    # One pass over the features: [S, K or 2K, d] x [S, d, N], viewed as [S, N, K or 2K].
    proj = ((torch.cat([q, w], 1) if with_head_logits else q) @ h.transpose(1, 2)).transpose(1, 2)
    z = proj[..., :k]  # z[s, i, j] = h_i · m_j
    c = means @ q.transpose(1, 2)  # c[s, k, j] = μ_k · m_j
    resid = z - torch.gather(c, 1, y[..., None].expand(-1, -1, k))  # Q (h_i − μ_{y_i})
    a = resid @ vec
    num_labelled = labelled.sum(-1).clamp_min(1.0)
    nc1 = ((a.pow(2) * inv_lam2[:, None]).sum(-1) * labelled).sum(-1) / num_labelled
    return nc1, finite, proj


def _geometry(w: Tensor, stats: _ClassStats) -> dict[str, Tensor]:
    """Equinorm, equiangularity and maximal angle of the centred means and of the head rows, and self-duality
    (distance between the normalised head and the normalised centred means), over the present classes only."""
    k = w.shape[1]
    q, present, pf, kp, kp1 = stats.q, stats.present, stats.pf, stats.kp, stats.kp1
    pair = present[:, :, None] & present[:, None, :] & ~torch.eye(k, dtype=torch.bool, device=q.device)
    equiangular_f, max_angle_f = _angles(q, pair, kp)
    equiangular_w, max_angle_w = _angles(w, pair, kp)

    w_present = w * pf[..., None]
    diff = w_present / w_present.norm(dim=(1, 2))[:, None, None] - q / q.norm(dim=(1, 2))[:, None, None]
    self_duality = diff.pow(2).sum((1, 2))
    return {
        "equinorm_features": _equinorm(q, pf, kp1),
        "equinorm_weights": _equinorm(w, pf, kp1),
        "equiangular_features": equiangular_f,
        "equiangular_weights": equiangular_w,
        "max_angle_features": max_angle_f,
        "max_angle_weights": max_angle_w,
        "self_duality": self_duality,
    }


def _nearest_class_mean_mismatch(z: Tensor, policy_logits: Tensor, labelled: Tensor, stats: _ClassStats
                                 ) -> Tensor:
    """Fraction of labelled samples whose policy action (argmax of the logits, over all K actions) differs from
    the nearest present class mean: argmin_k ‖h − μ_k‖² = argmin_k ‖m_k‖² − 2 (h − μ_G)·m_k, computed from
    ``z[s, i, j] = h_i · m_j``."""
    q, mu_g, present = stats.q, stats.mu_g, stats.present
    score = q.pow(2).sum(-1)[:, None] - 2.0 * (z - (mu_g[:, None] * q).sum(-1)[:, None])
    score = torch.where(present[:, None], score, torch.full((), math.inf, dtype=score.dtype))
    ncc = score.argmin(-1)
    num_labelled = labelled.sum(-1).clamp_min(1.0)
    return ((policy_logits.argmax(-1) != ncc).to(torch.float64) * labelled).sum(-1) / num_labelled


def _label_alignment(h: Tensor, y: Tensor, w: Tensor, labelled: Tensor, mu_g: Tensor) -> Tensor:
    """Theorem 1 of ACPG: the mean cosine between each labelled feature (centred on the class-balanced global
    mean, as every statistic here) and the head row of its label."""
    centred = h - mu_g[:, None]
    # the label's head row w_y against each feature: one [S, N, K] product and gathers, not a [S, N, d] gather
    dots = torch.gather(centred @ w.transpose(1, 2), 2, y[..., None]).squeeze(-1)  # centred_i . w_{y_i}
    row_norms = torch.gather(w.norm(dim=-1), 1, y)  # |w_{y_i}|
    cos = dots / (centred.norm(dim=-1) * row_norms).clamp_min(1e-12)
    num_labelled = labelled.sum(-1).clamp_min(1.0)
    return (cos * labelled).sum(-1) / num_labelled


def action_collapse(
    features: Tensor, labels: Tensor, weights: Tensor, logits: Tensor | None = None
) -> dict[str, float] | dict[str, Tensor]:
    """Neural-collapse statistics of features grouped by their (optimal) action, exactly as in metrics.md.

    Returns ``nc1``, ``equinorm_features``, ``equinorm_weights``, ``equiangular_features``,
    ``equiangular_weights``, ``max_angle_features``, ``max_angle_weights``, ``self_duality``,
    ``ncc_mismatch`` and ``label_alignment`` (mean cosine between a centred feature and its label's head row:
    ACPG's Theorem 1, 1 when aligned; the only statistic here where collapse is 1, not 0). Only the classes
    present in ``labels`` take part, in the weight statistics too (per seed in a batched call); with fewer than
    two present, or with non-finite features (a diverged run), every value is NaN instead of an exception. All
    but ``label_alignment`` are 0 for a perfect collapse onto an ETF head.

    Args:
        features: ``[N, d]`` last-layer features, or ``[S, N, d]`` for S seeds (``dim() == 3`` means batched).
        labels: ``[N]`` (or ``[S, N]``) integer action labels in ``0..K-1``; ``[N]`` is shared by all seeds.
            A negative label marks a sample without a label (a terminal state, say): it takes no part.
        weights: ``[K, d]`` (or ``[S, K, d]``) action-selection weights; K is the number of actions.
        logits: optional ``[N, K]`` (or ``[S, N, K]``) policy logits for ``ncc_mismatch``; without them the
            policy action is argmax of W h (a head bias or feature normalisation is then ignored). The argmax
            runs over all K actions, the nearest class mean over the present classes only.

    ``nc1`` never forms a d x d matrix. With the centred means as the rows of Q ([K, d]), Σ_B = QᵀQ/K, and the
    eigendecomposition Q Qᵀ = V Λ Vᵀ of the K x K Gram gives Σ_B⁺ = K Qᵀ V Λ⁻² Vᵀ Q, so
    nc1 = tr(Σ_W Σ_B⁺)/K = (1/N) Σ_i ‖Λ⁻¹ Vᵀ Q (h_i − μ_{y_i})‖², with Λ⁻¹ restricted to the eigenvalues above
    1e-12 of the largest. The cost is two passes over the features (class sums, then one [N, d] x [d, 2K]
    product) plus a float64 copy of them; memory about 3x the features' float32 size.
    """
    h, y, w, lg, batched = _collapse_inputs(features, labels, weights, logits)
    k = w.shape[1]
    labelled = (y >= 0).to(torch.float64)  # [S, N]
    y = y.clamp_min(0)

    stats = _class_statistics(h, y, labelled, k)
    nc1, finite, proj = _nc1(h, y, w, labelled, stats, with_head_logits=logits is None)
    policy_logits = proj[..., k:] if logits is None else lg
    values = {
        "nc1": nc1,
        **_geometry(w, stats),
        "ncc_mismatch": _nearest_class_mean_mismatch(proj[..., :k], policy_logits, labelled, stats),
        "label_alignment": _label_alignment(h, y, w, labelled, stats.mu_g),
    }
    enough = (stats.kp >= 2) & finite
    nan = torch.full((), math.nan, dtype=torch.float64)
    values = {key: torch.where(enough, val.to(torch.float64), nan) for key, val in values.items()}
    return _as_out(values, batched)


# ---------------------------------------------------------------------------------------- representation
def representation(
    features: Tensor, preactivations: Tensor | None = None, activation: str = "relu"
) -> dict[str, float] | dict[str, Tensor]:
    """Rank, dead-unit and norm statistics of a feature matrix (PFO paper conventions, metrics.md).

    Returns ``effective_rank``, ``approx_rank``, ``srank``, ``feature_rank``, ``dead_neurons``,
    ``dead_fraction``, ``feature_norm`` and ``preactivation_norm`` (NaN without ``preactivations``); counts
    are returned as floats too, so that every value fits a float column. An all-zero matrix has every rank 0;
    non-finite features (a diverged run) give NaN ranks instead of an exception.

    Args:
        features: ``[N, d]`` post-activation features, or ``[S, N, d]`` for S seeds (``dim() == 3``: batched).
        preactivations: the same layer before its nonlinearity (or several layers' concatenated), with the
            same leading dimensions ``[N]`` / ``[S, N]``; only its mean row norm is used.
        activation: ``"relu"`` (a unit is dead when it is <= 0 on every sample) or ``"tanh"`` (dead when its
            standard deviation over the batch is < 1e-3).

    Ranks use `singular_values` (float64 Gram eigenvalues, about one float32 SVD's cost).
    """
    if activation not in ("relu", "tanh"):
        raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
    feats = _check_float("features", features)
    if feats.dim() not in (2, 3):
        raise ValueError(f"features must have shape [N, d] or [S, N, d], got {tuple(features.shape)}")
    batched = feats.dim() == 3
    h = feats.to(torch.float64)
    if not batched:
        h = h[None]
    n, d = h.shape[1:]
    if n == 0 or d == 0:
        raise ValueError(f"features need at least one sample and one unit, got shape {tuple(features.shape)}")

    gram = _gram(h)
    sigma = _gram_singular_values(gram, n, d)  # [S, m], descending (`singular_values`)
    total = sigma.sum(-1)
    nonzero = total > 0
    nan_ranks = torch.isnan(total)  # non-finite features
    p = sigma / total.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    entropy = -torch.special.xlogy(p, p).sum(-1)
    effective_rank = torch.where(nonzero, entropy.exp(), 0.0)

    def _smallest_k(values: Tensor) -> Tensor:
        cum = values.cumsum(-1)
        k = (cum < _RANK_THRESHOLD * cum[:, -1:]).sum(-1) + 1
        return torch.where(nonzero, k.to(torch.float64), 0.0)

    approx_rank = _smallest_k(sigma.pow(2))
    srank = _smallest_k(sigma)
    feature_rank = (sigma / math.sqrt(n) > _FEATURE_RANK_EPS).sum(-1).to(torch.float64)
    effective_rank, approx_rank, srank, feature_rank = (
        torch.where(nan_ranks, math.nan, r) for r in (effective_rank, approx_rank, srank, feature_rank)
    )

    if activation == "relu":
        dead = (h <= 0).all(dim=1)
    else:
        # the population standard deviation over the batch, from the Gram's diagonal (each unit's sum of squares)
        # where it is HᵀH: var = E[h²] - E[h]², accurate to ~1e-16 in float64 for |h| <= 1, far below the
        # threshold's square (1e-6); torch's Welford `std` cost 3x more
        squares = gram.diagonal(dim1=-2, dim2=-1) if n >= d else h.pow(2).sum(1)
        dead = (squares / n - h.mean(1).pow(2)).clamp_min(0.0).sqrt() < _DEAD_TANH_STD
    dead_neurons = dead.sum(-1).to(torch.float64)

    if preactivations is None:
        pre_norm = torch.full((h.shape[0],), math.nan, dtype=torch.float64)
    else:
        pre = _check_float("preactivations", preactivations)
        if pre.dim() != feats.dim() or pre.shape[:-1] != feats.shape[:-1]:
            raise ValueError(f"preactivations must have the leading shape {tuple(feats.shape[:-1])} of "
                             f"features, got {tuple(preactivations.shape)}")
        pre64 = pre.to(device=h.device, dtype=torch.float64)
        pre_norm = (pre64 if batched else pre64[None]).norm(dim=-1).mean(-1)

    values = {
        "effective_rank": effective_rank,
        "approx_rank": approx_rank,
        "srank": srank,
        "feature_rank": feature_rank,
        "dead_neurons": dead_neurons,
        "dead_fraction": dead_neurons / d,
        "feature_norm": h.norm(dim=-1).mean(-1),
        "preactivation_norm": pre_norm,
    }
    return _as_out(values, batched)


# ------------------------------------------------------------------------------------------ trust region
def _clip_ratios(new_logp: Tensor, old_logp: Tensor, clip: float) -> tuple[Tensor, float, bool]:
    """`trust_region`'s log-probabilities and clip checked: the probability ratios r = π_new/π_old in float64
    ``[S, B]``, the clip range ε and whether the call was batched."""
    _check_float("new_logp", new_logp)
    _check_float("old_logp", old_logp)
    if new_logp.dim() not in (1, 2):
        raise ValueError(f"new_logp must have shape [B] or [S, B], got {tuple(new_logp.shape)}")
    if old_logp.shape != new_logp.shape:
        raise ValueError(f"old_logp must have the shape of new_logp {tuple(new_logp.shape)}, "
                         f"got {tuple(old_logp.shape)}")
    if new_logp.shape[-1] == 0:
        raise ValueError("new_logp must hold at least one sample")
    try:
        eps = float(clip)
    except (TypeError, ValueError):
        eps = math.nan
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"clip must be a finite number > 0, got {clip!r}")
    batched = new_logp.dim() == 2
    new64 = new_logp.to(torch.float64)
    old64 = old_logp.to(device=new64.device, dtype=torch.float64)
    if not batched:
        new64, old64 = new64[None], old64[None]
    return (new64 - old64).exp(), eps, batched


def _kl_old_new(new_logp: Tensor, new_logits: Tensor | None, old_logits: Tensor | None, batched: bool,
                num_seeds: int) -> Tensor:
    """Per seed, the mean over states of the exact KL(π_old ‖ π_new) from both policies' logits; NaN ``[S]``
    when neither is given."""
    if (new_logits is None) != (old_logits is None):
        raise ValueError("give both new_logits and old_logits for kl_old_new, or neither")
    if new_logits is None or old_logits is None:
        return torch.full((num_seeds,), math.nan, dtype=torch.float64)
    _check_float("new_logits", new_logits)
    _check_float("old_logits", old_logits)
    if new_logits.shape != old_logits.shape or new_logits.shape[:-1] != new_logp.shape:
        raise ValueError(
            f"new_logits and old_logits must both have shape {tuple(new_logp.shape)} + [A], got "
            f"{tuple(new_logits.shape)} and {tuple(old_logits.shape)}"
        )
    device = new_logp.device
    ln = torch.log_softmax(new_logits.to(device=device, dtype=torch.float64), -1)
    lo = torch.log_softmax(old_logits.to(device=device, dtype=torch.float64), -1)
    kl = _categorical_kl(lo, ln).mean(-1)
    return kl if batched else kl[None]


def _escape_by_advantage_sign(ratio: Tensor, above: Tensor, below: Tensor, advantages: Tensor,
                              new_logp: Tensor, batched: bool) -> dict[str, Tensor]:
    """``ratio_above_mean``, ``ratio_below_mean`` and ``frac_outside`` over the samples with a positive
    advantage (suffix ``_adv_pos``) and with a negative one (``_adv_neg``); NaN where a group is empty, and a
    zero or NaN advantage in neither group."""
    _check_float("advantages", advantages)
    if advantages.shape != new_logp.shape:
        raise ValueError(f"advantages must have the shape of new_logp {tuple(new_logp.shape)}, "
                         f"got {tuple(advantages.shape)}")
    adv = advantages.to(device=new_logp.device, dtype=torch.float64)
    adv = adv if batched else adv[None]
    values = {}
    for suffix, group in (("adv_pos", adv > 0), ("adv_neg", adv < 0)):  # NaN is in neither
        up, down = above & group, below & group
        values[f"ratio_above_mean_{suffix}"] = torch.where(up, ratio, 0.0).sum(-1) / up.sum(-1)
        values[f"ratio_below_mean_{suffix}"] = torch.where(down, ratio, 0.0).sum(-1) / down.sum(-1)
        values[f"frac_outside_{suffix}"] = (up | down).sum(-1) / group.sum(-1).to(torch.float64)  # 0/0: NaN
    return values


def trust_region(
    new_logp: Tensor,
    old_logp: Tensor,
    clip: float,
    new_logits: Tensor | None = None,
    old_logits: Tensor | None = None,
    *,
    advantages: Tensor | None = None,
) -> dict[str, float] | dict[str, Tensor]:
    """How far the probability ratios of an update escaped the clip range (metrics.md, "Trust region").

    Returns ``ratio_above_mean`` (mean of r over r > 1+ε, NaN if none), ``ratio_below_mean`` (over r < 1−ε),
    ``ratio_max``, ``ratio_min``, ``frac_outside``, ``excess_ratio`` (above / below mean) and ``kl_old_new``
    (mean over states of the exact KL(π_old ‖ π_new); NaN unless both logits are given). Given ``advantages``,
    also ``ratio_above_mean``, ``ratio_below_mean`` and ``frac_outside`` over the samples with a positive
    advantage (suffix ``_adv_pos``) and with a negative one (``_adv_neg``), NaN where a group is empty.

    Args:
        new_logp: ``[B]`` (or ``[S, B]``) log π_new(a_i | s_i) of the rollout's own actions after the update.
        old_logp: the same under the policy that collected the rollout.
        clip: the clip range ε > 0 of the update.
        new_logits: ``[B, A]`` (or ``[S, B, A]``) logits of π_new on the rollout's states, for ``kl_old_new``.
        old_logits: the same for π_old.
        advantages: the advantages the update used, shaped like ``new_logp``; samples whose advantage is 0 or
            NaN (steps that did not train) fall in neither group. The clipped objective only stops a ratio from
            moving the way its advantage pushes it (up for A > 0, down for A < 0): a ratio outside the range on
            the other side, or far past the clip on its own side, escaped the trust region through the shared
            network, not through its own gradient.
    """
    ratio, eps, batched = _clip_ratios(new_logp, old_logp, clip)  # [S, B]
    above = ratio > 1.0 + eps
    below = ratio < 1.0 - eps
    above_mean = torch.where(above, ratio, 0.0).sum(-1) / above.sum(-1)  # 0/0 = NaN when none
    below_mean = torch.where(below, ratio, 0.0).sum(-1) / below.sum(-1)

    values = {
        "ratio_above_mean": above_mean,
        "ratio_below_mean": below_mean,
        "ratio_max": ratio.amax(-1),
        "ratio_min": ratio.amin(-1),
        "frac_outside": (above | below).to(torch.float64).mean(-1),
        "excess_ratio": above_mean / below_mean,
        "kl_old_new": _kl_old_new(new_logp, new_logits, old_logits, batched, ratio.shape[0]),
    }
    if advantages is not None:
        values.update(_escape_by_advantage_sign(ratio, above, below, advantages, new_logp, batched))
    return _as_out(values, batched)


# ------------------------------------------------------------------------------------- plasticity probe
def plasticity_probe(
    make_actor: Callable[[], nn.Module],
    state_dict: Mapping[str, Tensor],
    obs: Tensor,
    *,
    steps: int = 200,
    lr: float = 1e-3,
    seed: int = 0,
    make_target: Callable[[], nn.Module] | None = None,
) -> float | Tensor:
    """Lost plasticity of an actor snapshot: how well it can still fit a random policy (metrics.md).

    A fresh actor initialised under ``seed`` supplies target logits on ``obs``; a copy of the snapshot is
    trained with a fresh Adam for ``steps`` full-batch steps to minimise KL(target ‖ fitted) (mean over the B
    states, summed over leading dimensions so that seeds of a seed-batched actor train independently: Adam is
    element-wise). Returns the final KL averaged over B: a float, or a tensor of the logits' leading shape.
    Higher = less plastic. The global torch RNG state is left untouched (everything runs in ``fork_rng``).

    Args:
        make_actor: zero-argument callable returning a freshly initialised actor of the snapshot's
            architecture; ``actor(obs)`` must return logits ``[..., B, K]``. Only parameters with
            ``requires_grad`` are trained (buffers such as a fixed ETF head stay as loaded).
        state_dict: the snapshot's weights, loaded into a fresh actor.
        obs: a fixed batch of observations (the PFO paper collects it once with the initial policy), on the
            device the actor should run on.
        steps: Adam steps. Few steps measure how quickly the snapshot can still move (and are cheap); many
            steps approach its capacity to fit at all, and the gap between a fresh and a collapsed actor can
            shrink. 200 full-batch steps separate them clearly on small MLPs.
        lr: Adam learning rate: 1e-3 fits a fresh small MLP well within 200 steps; larger rates let even a
            degraded network catch up (or diverge), smaller ones need more steps.
        seed: initialisation seed of the target actor; keep it fixed to compare snapshots along training.
        make_target: builds the target actor instead of ``make_actor`` (a different architecture or head, so that
            runs with different heads are probed towards the same kind of target); drawn first, as by default.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        target = (make_target or make_actor)().to(obs.device)
        fitted = make_actor().to(obs.device)
        fitted.load_state_dict(state_dict)
        params = [p for p in fitted.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the actor built by make_actor has no trainable parameters (requires_grad=True)")
        with torch.no_grad():
            target_logp = torch.log_softmax(target(obs), -1)
        if target_logp.dim() < 2:
            raise ValueError(f"actor(obs) must return logits [..., B, K], got {tuple(target_logp.shape)}")
        optim = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                kl = _categorical_kl(target_logp, torch.log_softmax(fitted(obs), -1))
                loss = kl.mean(-1).sum()
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
        with torch.no_grad():
            final = _categorical_kl(
                target_logp.to(torch.float64), torch.log_softmax(fitted(obs).to(torch.float64), -1)
            ).mean(-1)
    return float(final) if final.dim() == 0 else final
