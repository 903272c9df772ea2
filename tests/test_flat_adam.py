"""`acpg_lab.flat_adam.FlatAdam` against torch's Adam: the same arithmetic over one buffer, so the same bits."""

import io

import pytest
import torch

from acpg_lab.flat_adam import FlatAdam

SHAPES = [(5, 4, 64), (5, 1, 64), (5, 64, 64), (5, 2, 64), (5, 2), (5, 64, 1), (5, 1, 1)]


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]


def _grads(steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen) * (t + 1) for s in SHAPES] for t in range(steps)]


def _step(optimizer, params, grads, lr):
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(params, grads, strict=True):
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.add_(g)  # what autograd does with an allocated gradient
    optimizer.param_groups[0]["lr"] = lr
    optimizer.step()


def test_flat_adam_is_torch_adam_bitwise():
    torch_params, flat_params = _params(), _params()
    reference = torch.optim.Adam(torch_params, lr=1e-3, eps=1e-5)
    flat = FlatAdam(flat_params, lr=1e-3, eps=1e-5)
    for t, grads in enumerate(_grads(40)):
        _step(reference, torch_params, grads, 1e-3 * (1 - t / 40))  # an annealed learning rate
        _step(flat, flat_params, grads, 1e-3 * (1 - t / 40))
    for p, q in zip(torch_params, flat_params, strict=True):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(reference.state[p][key], flat.state[q][key])
        assert q.data.data_ptr() != p.data.data_ptr() and q.grad is not None


@pytest.mark.parametrize("source", ["torch", "flat"])
def test_state_dict_round_trip_continues_bitwise(source):
    torch_params, flat_params = _params(), _params()
    reference = torch.optim.Adam(torch_params, lr=1e-3, eps=1e-5)
    flat = FlatAdam(flat_params, lr=1e-3, eps=1e-5)
    grads = _grads(8)
    for g in grads[:5]:
        _step(reference, torch_params, g, 1e-3)
        _step(flat, flat_params, g, 1e-3)
    buffer = io.BytesIO()
    torch.save((reference if source == "torch" else flat).state_dict(), buffer)
    buffer.seek(0)
    restored_params = [torch.nn.Parameter(p.detach().clone()) for p in torch_params]
    restored = FlatAdam(restored_params, lr=1e-3, eps=1e-5)
    restored.load_state_dict(torch.load(buffer))
    for g in grads[5:]:
        _step(reference, torch_params, g, 1e-3)
        _step(restored, restored_params, g, 1e-3)
    assert all(torch.equal(p, q) for p, q in zip(torch_params, restored_params, strict=True))
    # the state stays views of the flat moments: an in-place edit of the state reaches the next step
    restored.state[restored_params[0]]["exp_avg"].zero_()
    assert restored._m[:restored_params[0].numel()].abs().sum() == 0


def test_fresh_state_dict_loads_as_zero_moments():
    params = _params()
    flat = FlatAdam(params, lr=1e-3)
    empty = torch.optim.Adam(_params(), lr=1e-3).state_dict()  # torch's, before any step: no moments
    flat.load_state_dict(empty)
    assert flat._m.abs().sum() == 0 and flat._v.abs().sum() == 0 and flat._step.item() == 0


def test_bad_input_refused():
    with pytest.raises(ValueError, match="empty parameter list"):
        FlatAdam([], lr=1e-3)
    with pytest.raises(ValueError, match="one device, of one dtype"):
        FlatAdam([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))],
                 lr=1e-3)
    with pytest.raises(ValueError, match="one parameter group"):
        FlatAdam([{"params": _params()[:2]}, {"params": _params()[2:]}], lr=1e-3)
    with pytest.raises(ValueError, match="no closure"):
        FlatAdam(_params(), lr=1e-3).step(lambda: 0.0)


def test_step_bumps_every_parameter_version():
    """Autograd refuses a backward through parameters changed since the forward, as with torch's Adam."""
    params = _params()
    flat = FlatAdam(params, lr=1e-3)
    before = [p._version for p in params]
    _step(flat, params, _grads(1)[0], 1e-3)
    assert all(p._version > v for p, v in zip(params, before, strict=True))
    loss = (params[0] ** 2).sum()  # saves the parameter for its backward
    _step(flat, params, _grads(1)[0], 1e-3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
