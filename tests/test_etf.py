import pytest
import torch

import acpg_lab as al


@pytest.mark.parametrize("k", range(2, 19))
@pytest.mark.parametrize("extra", ["K-1", "K", 64, 512])
def test_simplex_etf_is_exact(k, extra):
    d = {"K-1": k - 1, "K": k}.get(extra, extra)
    w = al.simplex_etf(k, d, seed=k).double()
    assert w.shape == (k, d)
    assert torch.allclose(w.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    gram = w @ w.T
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1.0 / (k - 1)), atol=1e-6)
    assert w.sum(0).abs().max() < 1e-5
    assert al.etf_error(w) < 1e-5
    # float64 construction is exact to rounding
    assert al.etf_error(al.simplex_etf(k, d, seed=1, dtype=torch.float64)) < 1e-12


def test_orientation_depends_on_seed_only():
    a, b, c = al.simplex_etf(5, 32, seed=1), al.simplex_etf(5, 32, seed=1), al.simplex_etf(5, 32, seed=2)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    canonical = al.simplex_etf(5, 32)
    assert torch.equal(canonical[:, 4:], torch.zeros(5, 28))  # seed=None: the first K-1 coordinate axes


def test_etf_error_detects_non_etf():
    assert al.etf_error(torch.randn(4, 8)) > 0.1
    assert al.etf_error(3.0 * al.simplex_etf(4, 8, seed=0)) < 1e-5  # scale-free


@pytest.mark.parametrize(("k", "d"), [(1, 4), (4, 2), (10, 8)])
def test_bad_sizes_are_rejected(k, d):
    with pytest.raises(ValueError, match="num_actions|feature_dim"):
        al.simplex_etf(k, d)
    with pytest.raises(ValueError):
        al.ETFHead(d, k)


def test_etf_head_is_a_fixed_buffer():
    head = al.ETFHead(16, 4, seeds=3)
    assert list(head.parameters()) == []
    assert torch.equal(head.state_dict()["weight"], al.simplex_etf(4, 16, seed=3))
    h = torch.randn(10, 16)
    assert torch.allclose(head(h), h @ al.simplex_etf(4, 16, seed=3).T)
    scaled = al.ETFHead(16, 4, seeds=3, normalize=True, scale=5.0)
    assert torch.allclose(scaled(h), 5.0 * torch.nn.functional.normalize(h, dim=-1) @ head.weight.T, atol=1e-6)
    assert [n for n, _ in al.ETFHead(16, 4, bias=True).named_parameters()] == ["bias"]


def test_seed_batched_heads_match_per_seed_heads():
    seeds = (4, 9)
    h = torch.randn(2, 7, 12, generator=torch.Generator().manual_seed(0))
    etf = al.ETFHead(12, 3, seeds=seeds)
    lin = al.LinearHead(12, 3, seeds=seeds)
    assert etf.weight.shape == lin.weight.shape == (2, 3, 12)
    for i, s in enumerate(seeds):
        # batched and single matmuls may round differently: compare to float32 precision
        torch.testing.assert_close(etf(h)[i], al.ETFHead(12, 3, seeds=s)(h[i]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lin(h)[i], al.LinearHead(12, 3, seeds=s)(h[i]), rtol=1e-5, atol=1e-6)
    assert lin.weight.requires_grad and lin.bias is not None


def test_etf_head_weights_bitwise_unchanged_by_training():
    cfg = al.TrainConfig(env_id="CartPole-v1", head="etf", seeds=(0, 1), total_steps=2048, device="cpu")
    run = al.train(cfg, progress=False)
    fresh = al.ActorCritic((4,), 2, cfg.seeds, head="etf")
    trained = run.model.actor.head.weight
    assert torch.equal(trained, fresh.actor.head.weight)
    assert al.etf_error(trained).max() < 1e-5
    # the backbone did train
    assert not torch.equal(run.model.actor.backbone.layers[0].weight, fresh.actor.backbone.layers[0].weight)


def test_random_head_is_fixed_unit_rows_but_not_an_etf():
    head = al.RandomHead(16, 4, seeds=(3, 5))
    assert list(head.parameters()) == [] and head.weight.shape == (2, 4, 16)
    torch.testing.assert_close(head.weight.norm(dim=-1), torch.ones(2, 4))
    assert (al.etf_error(head.weight) > 0.3).all()  # random angles, not -1/(K-1)
    assert torch.equal(head.weight[0], al.RandomHead(16, 4, seeds=3).weight)
    assert not torch.equal(head.weight[0], head.weight[1])


def test_head_control_arms_share_the_fixed_heads_row_norm():
    lin = al.LinearHead(16, 4, seeds=(0, 1), init_gain=1.0)
    torch.testing.assert_close(lin.weight.norm(dim=-1), torch.ones(2, 4))
    assert al.LinearHead(16, 4, seeds=0).weight.norm(dim=-1).max() < 0.011
    model = al.ActorCritic((4,), 3, (0, 1), head="random")
    assert isinstance(model.actor.head, al.RandomHead) and model.actor.head.bias is None
    with pytest.raises(ValueError, match="head must be one of"):
        al.TrainConfig(env_id="CartPole-v1", head="nope").resolve()
