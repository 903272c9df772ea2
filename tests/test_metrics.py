"""Tests of acpg_lab.metrics: ground truths, hand-made cases and agreement with plain reference code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from acpg_lab.etf import ETFHead, simplex_etf
from acpg_lab.metrics import (
    action_collapse,
    plasticity_probe,
    representation,
    singular_values,
    trust_region,
)

AC_KEYS = ("nc1", "equinorm_features", "equinorm_weights", "equiangular_features", "equiangular_weights",
           "max_angle_features", "max_angle_weights", "self_duality", "ncc_mismatch")
ALL_AC_KEYS = (*AC_KEYS, "label_alignment")  # label_alignment is 1, not 0, when collapsed
REP_KEYS = ("effective_rank", "approx_rank", "srank", "feature_rank", "dead_neurons", "dead_fraction",
            "feature_norm", "preactivation_norm")
TR_KEYS = ("ratio_above_mean", "ratio_below_mean", "ratio_max", "ratio_min", "frac_outside", "excess_ratio",
           "kl_old_new")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids contention on a busy 2-core machine (200x slower there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- reference implementations
def ref_action_collapse(h, y, w, logits=None) -> dict[str, float]:
    """Straight from metrics.md: numpy, loops, dense d x d matrices and a dense pseudo-inverse."""
    h, y, w = np.asarray(h, np.float64), np.asarray(y), np.asarray(w, np.float64)
    classes = sorted(set(y.tolist()))
    k = len(classes)
    if k < 2:
        return dict.fromkeys(ALL_AC_KEYS, math.nan)
    n, d = h.shape
    mus = np.stack([h[y == c].mean(0) for c in classes])
    m = mus - mus.mean(0)
    sw = np.zeros((d, d))
    for c, mu in zip(classes, mus, strict=True):
        r = h[y == c] - mu
        sw += r.T @ r
    sw /= n
    sb = m.T @ m / k
    nc1 = np.trace(sw @ np.linalg.pinv(sb, rcond=1e-8, hermitian=True)) / k
    wt = w[classes]

    def equinorm(rows):
        norms = np.linalg.norm(rows, axis=1)
        return norms.std() / norms.mean()

    def angles(rows):
        cos = [rows[a] @ rows[b] / np.linalg.norm(rows[a]) / np.linalg.norm(rows[b])
               for a in range(k) for b in range(k) if a != b]
        return np.std(cos), np.mean([abs(c + 1 / (k - 1)) for c in cos])

    eqa_f, max_f = angles(m)
    eqa_w, max_w = angles(wt)
    sd = np.sum((wt / np.linalg.norm(wt) - m / np.linalg.norm(m)) ** 2)
    mismatch = 0
    for i in range(n):
        policy = np.argmax(logits[i] if logits is not None else w @ h[i])
        nearest = classes[int(np.argmin([np.linalg.norm(h[i] - mu) for mu in mus]))]
        mismatch += int(policy != nearest)
    mu_g = mus.mean(0)
    alignment = np.mean([(h[i] - mu_g) @ w[y[i]] / np.linalg.norm(h[i] - mu_g) / np.linalg.norm(w[y[i]])
                         for i in range(n)])
    return {"label_alignment": alignment, "nc1": nc1, "equinorm_features": equinorm(m),
            "equinorm_weights": equinorm(wt),
            "equiangular_features": eqa_f, "equiangular_weights": eqa_w, "max_angle_features": max_f,
            "max_angle_weights": max_w, "self_duality": sd, "ncc_mismatch": mismatch / n}


def ref_ranks(h) -> dict[str, float]:
    h = np.asarray(h, np.float64)
    sigma = np.linalg.svd(h, compute_uv=False)
    if sigma.sum() == 0:
        return {"effective_rank": 0.0, "approx_rank": 0.0, "srank": 0.0, "feature_rank": 0.0}
    p = sigma / sigma.sum()
    p = p[p > 0]

    def smallest_k(v):
        return next(i + 1 for i in range(len(v)) if v[: i + 1].sum() >= 0.99 * v.sum())

    return {"effective_rank": float(np.exp(-(p * np.log(p)).sum())), "approx_rank": smallest_k(sigma**2),
            "srank": smallest_k(sigma), "feature_rank": int((sigma / np.sqrt(h.shape[0]) > 0.01).sum())}


def assert_dicts_close(got: dict, want: dict, keys=None, rtol=1e-7, atol=1e-9) -> None:
    for key in keys or want:
        g, e = float(got[key]), float(want[key])
        if math.isnan(e):
            assert math.isnan(g), f"{key}: {g} != nan"
        else:
            assert g == pytest.approx(e, rel=rtol, abs=atol), f"{key}: {g} != {e}"


def clustered(n_per_class, d, *, seed, spread=0.5, offset=3.0, dtype=torch.float32):
    """Features with class structure: class centres + Gaussian noise + a common offset."""
    gen = torch.Generator().manual_seed(seed)
    k = len(n_per_class)
    centres = torch.randn(k, d, generator=gen, dtype=torch.float64) + offset
    y = torch.cat([torch.full((c,), i) for i, c in enumerate(n_per_class)])
    y = y[torch.randperm(len(y), generator=gen)]
    h = centres[y] + spread * torch.randn(len(y), d, generator=gen, dtype=torch.float64)
    return h.to(dtype), y


# -------------------------------------------------------------------------------------- action collapse
def test_perfect_collapse_on_etf_gives_zero_with_imbalanced_classes_and_offset():
    k, d = 5, 16
    w = simplex_etf(k, d, seed=0)
    counts = [3, 10, 1, 7, 20]
    y = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    # An offset orthogonal to the frame: the class-balanced global mean is exactly it, whatever the counts.
    offset = torch.randn(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w64 = w.double()
    offset = offset - w64.T @ torch.linalg.lstsq(w64.T, offset).solution
    h = (2.5 * w64[y] + offset).float()
    for logits in (None, h @ w.T):
        out = action_collapse(h, y, w, logits=logits)
        assert set(out) == set(ALL_AC_KEYS)
        for key in AC_KEYS:
            assert isinstance(out[key], float)
            assert abs(out[key]) < 1e-6, (key, out[key])
        assert out["label_alignment"] == pytest.approx(1.0, abs=1e-6)


def test_perfect_collapse_with_minimal_dimension_and_fixed_head():
    k = 4
    head = ETFHead(k - 1, k)  # d = K - 1
    y = torch.arange(k).repeat(7)
    out = action_collapse(0.3 * head.weight[y], y, head.weight)
    assert max(abs(out[key]) for key in AC_KEYS) < 1e-6 and out["label_alignment"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("counts", "d"), [([5, 12, 9, 20, 14], 8), ([1, 2, 3, 6], 40), ([4, 0, 9, 6, 0, 11], 7)]  # d > N; absent
)
def test_action_collapse_matches_dense_reference(counts, d):
    h, y = clustered(counts, d, seed=sum(counts) + d)
    w = torch.randn(len(counts), d, generator=torch.Generator().manual_seed(d))
    want = ref_action_collapse(h.numpy(), y.numpy(), w.numpy())
    assert_dicts_close(action_collapse(h, y, w), want, rtol=1e-6)
    logits = torch.randn(len(y), len(counts), generator=torch.Generator().manual_seed(5))
    want = ref_action_collapse(h.numpy(), y.numpy(), w.numpy(), logits.numpy())
    assert_dicts_close(action_collapse(h, y, w, logits=logits), want, rtol=1e-6)


def test_nc1_is_exact_in_float64_with_large_offset():
    """The double centring keeps the K x K route exact when the features sit far from the origin."""
    h, y = clustered([30, 40, 50], 6, seed=3, offset=1e3, dtype=torch.float64)
    w = torch.randn(3, 6, dtype=torch.float64)
    want = ref_action_collapse(h.numpy(), y.numpy(), w.numpy())
    assert action_collapse(h, y, w)["nc1"] == pytest.approx(want["nc1"], rel=1e-6)


def test_fewer_than_two_classes_gives_nan_without_error():
    w = torch.randn(3, 4)
    for y in (torch.full((6,), 2), torch.zeros(0, dtype=torch.long)):
        out = action_collapse(torch.randn(len(y), 4), y, w)
        assert all(math.isnan(v) for v in out.values())


def test_action_collapse_batched_equals_per_seed():
    k, d, n = 4, 6, 50
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(3, n, d, generator=gen) + torch.randn(3, 1, d, generator=gen)
    y = torch.randint(0, k, (3, n), generator=gen)
    y[1][y[1] == 2] = 0  # seed 1: class 2 absent
    y[2] = 1  # seed 2: one class only -> NaN
    w = torch.randn(3, k, d, generator=gen)
    logits = torch.randn(3, n, k, generator=gen)
    for lg in (None, logits):
        out = action_collapse(h, y, w, logits=lg)
        for key in AC_KEYS:
            assert out[key].shape == (3,) and out[key].dtype == torch.float64
        for s in range(3):
            single = action_collapse(h[s], y[s], w[s], logits=None if lg is None else lg[s])
            assert_dicts_close({key: out[key][s] for key in ALL_AC_KEYS}, single, rtol=1e-10, atol=1e-12)
        assert all(math.isnan(float(out[key][2])) for key in ALL_AC_KEYS)
    shared = action_collapse(h, y, w[0])  # weights [K, d] shared by every seed
    assert torch.allclose(shared["nc1"], action_collapse(h, y, w[0].expand(3, -1, -1))["nc1"], equal_nan=True)


def test_non_finite_features_give_nan_without_error():
    h = torch.randn(2, 20, 4)
    h[1, 3, 1] = math.nan
    y = torch.arange(20) % 3  # shared by both seeds
    out = action_collapse(h, y, torch.randn(3, 4))
    for key in AC_KEYS:
        assert not math.isnan(float(out[key][0])) and math.isnan(float(out[key][1])), key
    h[0, 2, 2] = math.inf
    rep = representation(h)
    for key in ("effective_rank", "approx_rank", "srank", "feature_rank"):
        assert math.isnan(float(rep[key][0])) and math.isnan(float(rep[key][1])), key


def test_action_collapse_rejects_bad_inputs():
    h, w = torch.randn(10, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="labels"):
        action_collapse(h, torch.full((10,), 3), w)
    with pytest.raises(ValueError, match="labels"):
        action_collapse(h, torch.zeros(10), w)
    with pytest.raises(ValueError, match="weights"):
        action_collapse(h, torch.zeros(10, dtype=torch.long), torch.randn(3, 5))
    with pytest.raises(ValueError, match="logits"):
        action_collapse(h, torch.zeros(10, dtype=torch.long), w, logits=torch.randn(10, 2))


# --------------------------------------------------------------------------------------- representation
def spectrum_matrix(n: int, d: int, sigma: list[float], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, len(sigma), generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(d, len(sigma), generator=gen, dtype=torch.float64))[0]
    return u @ torch.diag(torch.tensor(sigma, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize(
    ("n", "d", "sigma", "approx", "srank", "feature"),
    [
        (200, 20, [10, 5, 2, 1, 0.5, 0.1], 3, 5, 5),
        (200, 20, [3, 3, 3, 3], 4, 4, 4),
        (10, 30, [4, 2, 0.05], 2, 2, 3),  # d > N
    ],
)
def test_known_spectrum(n, d, sigma, approx, srank, feature):
    h = spectrum_matrix(n, d, sigma)
    p = np.array(sigma) / sum(sigma)
    out = representation(h)
    assert out["effective_rank"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)
    assert (out["approx_rank"], out["srank"], out["feature_rank"]) == (approx, srank, feature)
    assert singular_values(h)[: len(sigma)].tolist() == pytest.approx(sigma, rel=1e-9)
    assert singular_values(h)[len(sigma):].abs().max() == 0  # numerical zeros are exact zeros
    for key in REP_KEYS:
        assert isinstance(out[key], float)


def test_representation_matches_numpy_reference_and_batching():
    gen = torch.Generator().manual_seed(0)
    h = (torch.randn(3, 40, 12, generator=gen) @ torch.randn(3, 12, 12, generator=gen)).relu()
    pre = torch.randn(3, 40, 12, generator=gen)
    out = representation(h, pre)
    for s in range(3):
        assert_dicts_close({key: out[key][s] for key in out}, ref_ranks(h[s].numpy()), rtol=1e-6)
        assert_dicts_close({key: out[key][s] for key in out}, representation(h[s], pre[s]), rtol=1e-10)
    assert out["preactivation_norm"][1] == pytest.approx(float(pre[1].norm(dim=1).mean()), rel=1e-6)
    assert out["feature_norm"][2] == pytest.approx(float(h[2].norm(dim=1).mean()), rel=1e-6)


def test_all_zero_features():
    out = representation(torch.zeros(8, 5))
    assert [out[k] for k in ("effective_rank", "approx_rank", "srank", "feature_rank")] == [0, 0, 0, 0]
    assert out["dead_neurons"] == 5 and out["dead_fraction"] == 1 and out["feature_norm"] == 0
    assert math.isnan(out["preactivation_norm"])


def test_dead_units_relu_and_tanh():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(30, 6, generator=gen).relu()
    h[:, 0] = 0.0  # dead
    h[:, 1] = -1.0  # <= 0 everywhere: dead
    h[:, 2] = 0.0
    h[7, 2] = 0.1  # active on one sample: alive
    out = representation(h, activation="relu")
    assert out["dead_neurons"] == 2 and out["dead_fraction"] == pytest.approx(2 / 6)

    t = torch.tanh(torch.randn(30, 5, generator=gen))
    t[:, 0] = 0.5  # constant: dead
    t[:, 1] = 0.2 + 1e-4 * torch.randn(30, generator=gen)  # std 1e-4 < 1e-3: dead
    t[:, 2] = 0.2 + 1e-2 * torch.randn(30, generator=gen)  # std 1e-2: alive
    out = representation(t, activation="tanh")
    assert out["dead_neurons"] == 2 and out["dead_fraction"] == pytest.approx(2 / 5)
    # near saturation, where E[h^2] - E[h]^2 cancels most: std 2e-3 alive, 5e-4 dead; and with fewer samples than
    # units (the variance then comes from the samples, not from the Gram's diagonal)
    t[:, 3] = 0.99 + 2e-3 * torch.randn(30, generator=gen).sign()
    t[:, 4] = -0.999 + 5e-4 * torch.randn(30, generator=gen).sign()
    assert representation(t, activation="tanh")["dead_neurons"] == 3
    assert representation(t[:4], activation="tanh")["dead_neurons"] == 3


def test_representation_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        representation(torch.randn(4, 3), activation="gelu")


# ----------------------------------------------------------------------------------------- trust region
def test_trust_region_hand_made_ratios():
    ratios = torch.tensor([1.5, 1.3, 1.0, 0.95, 0.7, 0.5, 1.19], dtype=torch.float64)
    old = torch.randn(7, dtype=torch.float64)
    out = trust_region(old + ratios.log(), old, 0.2)
    want = {"ratio_above_mean": 1.4, "ratio_below_mean": 0.6, "ratio_max": 1.5, "ratio_min": 0.5,
            "frac_outside": 4 / 7, "excess_ratio": 1.4 / 0.6, "kl_old_new": math.nan}
    assert_dicts_close(out, want, rtol=1e-12)
    none_outside = trust_region(torch.zeros(4), torch.zeros(4), 0.1)
    assert math.isnan(none_outside["ratio_above_mean"]) and math.isnan(none_outside["excess_ratio"])
    assert none_outside["frac_outside"] == 0 and none_outside["ratio_max"] == 1


def test_trust_region_kl_and_batching():
    gen = torch.Generator().manual_seed(0)
    old_logits, new_logits = torch.randn(2, 3, 9, 4, generator=gen)
    old_logits[0, 0, 2] = -math.inf  # an action of probability 0 under π_old
    actions = torch.randint(0, 4, (3, 9), generator=gen)
    old_logp = old_logits.log_softmax(-1).gather(-1, actions[..., None])[..., 0]
    new_logp = new_logits.log_softmax(-1).gather(-1, actions[..., None])[..., 0]
    out = trust_region(new_logp, old_logp, 0.1, new_logits, old_logits)
    for s in range(3):
        po, pn = old_logits[s].double().softmax(-1).numpy(), new_logits[s].double().softmax(-1).numpy()
        kl = np.mean([sum(a * np.log(a / b) for a, b in zip(po[i], pn[i], strict=True) if a > 0)
                      for i in range(9)])
        assert float(out["kl_old_new"][s]) == pytest.approx(kl, rel=1e-10)
        single = trust_region(new_logp[s], old_logp[s], 0.1, new_logits[s], old_logits[s])
        assert_dicts_close({key: out[key][s] for key in TR_KEYS}, single, rtol=1e-12)
    assert trust_region(new_logp[0], new_logp[0], 0.1, new_logits[0], new_logits[0])["kl_old_new"] == 0
    with pytest.raises(ValueError, match="clip"):
        trust_region(new_logp, old_logp, 0.0)
    with pytest.raises(ValueError, match="logits"):
        trust_region(new_logp, old_logp, 0.1, new_logits=new_logits)


def test_trust_region_split_by_the_sign_of_the_advantage():
    ratios = torch.tensor([[1.5, 1.3, 0.7, 1.0, 0.5, 1.4, 0.6, 0.9], [1.0] * 8], dtype=torch.float64)
    adv = torch.tensor([[1.0, 2.0, 0.5, 1.0, -1.0, -0.1, -3.0, math.nan], [1.0] * 8], dtype=torch.float64)
    old = torch.zeros(2, 8, dtype=torch.float64)
    out = trust_region(old + ratios.log(), old, 0.2, advantages=adv)
    # seed 0, A > 0: ratios 1.5, 1.3, 0.7, 1.0 (one escaped downwards, against its advantage); A < 0: 0.5, 1.4, 0.6;
    # the NaN-advantage sample (a step that did not train) is in neither group
    want = {"ratio_above_mean_adv_pos": 1.4, "ratio_below_mean_adv_pos": 0.7, "frac_outside_adv_pos": 3 / 4,
            "ratio_above_mean_adv_neg": 1.4, "ratio_below_mean_adv_neg": 0.55, "frac_outside_adv_neg": 1.0}
    assert_dicts_close({k: out[k][0] for k in want}, want, rtol=1e-12)
    assert out["frac_outside_adv_pos"][1] == 0 and math.isnan(out["frac_outside_adv_neg"][1])  # no A < 0 sample
    assert math.isnan(out["ratio_below_mean_adv_pos"][1])
    plain = trust_region(old + ratios.log(), old, 0.2)
    assert not any(k.endswith(("_adv_pos", "_adv_neg")) for k in plain)
    assert all(torch.equal(out[k], plain[k]) or (out[k].isnan() == plain[k].isnan()).all() for k in plain)
    single = trust_region(old[0] + ratios[0].log(), old[0], 0.2, advantages=adv[0])
    assert single["frac_outside_adv_pos"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="advantages"):
        trust_region(old + ratios.log(), old, 0.2, advantages=adv[:, :3])


# ------------------------------------------------------------------------------------- plasticity probe
class TinyActor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.head = ETFHead(16, 3)  # a buffer: loaded, never trained

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))


class SeedBatchedActor(nn.Module):
    """One tanh layer per seed (weight [S, 4, 16]) and a per-seed fixed ETF head."""

    def __init__(self, seeds: int = 2) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(seeds, 4, 16) / 2)
        self.bias = nn.Parameter(torch.zeros(seeds, 1, 16))
        self.head = ETFHead(16, 3, seeds=tuple(range(seeds)), scale=4.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(torch.baddbmm(self.bias, obs, self.weight)))


def saturated(state: dict[str, torch.Tensor], factor: float = 30.0) -> dict[str, torch.Tensor]:
    return {k: v * factor if k.startswith(("body", "weight")) else v for k, v in state.items()}


def test_plasticity_probe_saturated_actor_is_less_plastic_and_rng_untouched():
    obs = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    fresh = TinyActor().state_dict()
    before = torch.get_rng_state()
    kl_fresh = plasticity_probe(TinyActor, fresh, obs, steps=40, lr=1e-2)
    kl_sat = plasticity_probe(TinyActor, saturated(fresh), obs, steps=40, lr=1e-2)
    assert torch.equal(before, torch.get_rng_state())
    assert isinstance(kl_fresh, float) and kl_fresh >= 0
    assert kl_sat > 3 * kl_fresh, (kl_fresh, kl_sat)
    assert plasticity_probe(TinyActor, fresh, obs, steps=40, lr=1e-2) == kl_fresh  # deterministic in `seed`


def test_plasticity_probe_seed_batched_actor_trains_seeds_independently():
    obs = torch.randn(2, 32, 4, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    fresh = SeedBatchedActor().state_dict()
    mixed = dict(fresh, weight=fresh["weight"] * torch.tensor([1.0, 30.0])[:, None, None])
    a = plasticity_probe(SeedBatchedActor, fresh, obs, steps=30, lr=1e-2)
    b = plasticity_probe(SeedBatchedActor, mixed, obs, steps=30, lr=1e-2)
    assert a.shape == (2,) and a.dtype == torch.float64
    assert float(b[0]) == pytest.approx(float(a[0]), rel=1e-6)  # seed 0 unaffected by seed 1
    assert float(b[1]) > 3 * float(a[1])


def test_negative_labels_are_left_out():
    gen = torch.Generator().manual_seed(3)
    feats, labels = torch.randn(2, 60, 8, generator=gen), torch.randint(0, 3, (2, 60), generator=gen)
    weights = torch.randn(2, 3, 8, generator=gen)
    marked = labels.clone()
    marked[:, :10] = -1
    got = action_collapse(feats, marked, weights)
    want = action_collapse(feats[:, 10:], labels[:, 10:], weights)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-9, atol=1e-12)
