"""The fused engine (`acpg_lab.fused`, ``TrainConfig.engine="fused"``) against the reference path.

Tolerances, and why:
- With the reference's tanh arithmetic (kernel "sigmoid") the fused node runs the same operations on the same
  operands as autograd does on the reference path, so forward values, pre-activations and gradients are compared
  bitwise (``torch.equal``), for every block size, and a whole PFO + diagnostics training run is bitwise the
  reference run.
- With torch's tanh kernel (kernel "tanh", what ``engine="fused"`` uses) the gradients are bitwise those of
  autograd through the same operations (``baddbmm`` then ``torch.tanh``); against the reference (tanh as
  ``2 sigmoid(2x) - 1``) activations differ by float32 rounding: at most 1e-6 absolute (|tanh| <= 1; about 6e-7
  measured), and gradients by at most 1e-5 relative to each tensor's largest entry (about 5e-7 measured).
- ``gradcheck`` runs in float64 with its default tolerances (eps 1e-6, atol 1e-5, rtol 1e-3).
- Training runs of the two engines over a few updates agree to rtol 1e-3 / atol 1e-4 per history column (the
  rounding differences compound through Adam; measured at most 3e-5 relative after 4 updates, on loss_policy,
  a value near zero).
"""

import json

import pandas as pd
import pytest
import torch

import acpg_lab as al
from acpg_lab import networks
from acpg_lab.flat_adam import FlatAdam
from acpg_lab.fused import seed_mlp, stacked_seed_mlp
from acpg_lab.networks import ActorCritic

OBS = (4,)


def _model(engine="reference", kernel="tanh", seeds=(0, 1, 2), activation="tanh", hidden=(64, 64)):
    model = ActorCritic(OBS, 2, seeds, activation=activation, hidden_sizes=hidden)
    return model.use_engine(engine, tanh_kernel=kernel)


def _pass(model, obs):
    """Every output of a training pass (logits, values, the actor's pre-activations) and every gradient of a
    per-seed loss that reads all of them (PFO-like terms on both layers' pre-activations)."""
    out = model.policy(obs)
    values = model.value(obs, out.features)
    loss = (out.logits.log_softmax(-1)[..., 0].mean(-1) + values.pow(2).mean(-1)
            + out.preacts[-1].pow(2).mean((-1, -2)) + out.preacts[0].sin().mean((-1, -2)))
    loss.sum().backward()
    return [out.logits, values, *out.preacts], [p.grad for p in model.parameters()]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("block", [1, 2, 8, 64])
def test_fused_mlp_is_bitwise_the_reference_with_its_tanh(activation, block):
    ref = _model(activation=activation).actor.backbone
    x = torch.randn(3, 50, 4)
    h_ref, pre_ref = ref(x)
    layers = [(layer.weight, layer.bias) for layer in ref.layers]
    h, pre = seed_mlp(x, layers, activation=activation, kernel="sigmoid", block=block)
    assert torch.equal(h, h_ref)
    assert all(torch.equal(a, b) for a, b in zip(pre, pre_ref, strict=True))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_actor_critic_fused_gradients_equal_the_reference(activation):
    obs = torch.randn(3, 64, 4)
    ref_out, ref_grads = _pass(_model(activation=activation), obs)
    out, grads = _pass(_model("fused", "sigmoid", activation=activation), obs)
    assert all(torch.equal(a, b) for a, b in zip(out, ref_out, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))
    # torch's tanh: within float32 rounding of the reference (ReLU has one kernel: still bitwise)
    out, grads = _pass(_model("fused", "tanh", activation=activation), obs)
    for a, b in zip(out, ref_out, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(grads, ref_grads, strict=True):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    if activation == "relu":
        assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))


def test_fused_gradients_equal_autograd_through_the_same_operations():
    """kernel "tanh" against autograd through ``baddbmm`` and ``torch.tanh``: bitwise, weights, biases, input
    and gradients arriving at the pre-activations."""
    torch.manual_seed(1)
    layers = [(torch.randn(3, 4, 16) * 0.5, torch.randn(3, 1, 16)),
              (torch.randn(3, 16, 16) * 0.3, torch.randn(3, 1, 16))]
    leaves = [t.requires_grad_() for layer in layers for t in layer]
    x = torch.randn(3, 20, 4, requires_grad=True)
    weight_out, weight_pre = torch.randn(3, 20, 16), torch.randn(3, 20, 16)

    def loss(h, pre):
        return (h * weight_out).sum() + (pre[-1] * weight_pre).sum() + pre[0].pow(2).sum()

    h, pre = x, []
    for w, b in layers:
        z = torch.baddbmm(b, h, w)
        pre.append(z)
        h = torch.tanh(z)
    expected = torch.autograd.grad(loss(h, pre), [x, *leaves])
    got = torch.autograd.grad(loss(*seed_mlp(x, layers, kernel="tanh", block=2)), [x, *leaves])
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(("activation", "kernel"), [("tanh", "tanh"), ("tanh", "sigmoid"), ("relu", "tanh")])
def test_gradcheck_float64(activation, kernel):
    torch.manual_seed(0)

    def layer(i, o):
        return (torch.randn(3, i, o, dtype=torch.float64, requires_grad=True),
                torch.randn(3, 1, o, dtype=torch.float64, requires_grad=True))

    actor, critic = [layer(4, 5), layer(5, 5)], [layer(4, 5), layer(5, 5)]
    x = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    flat = [t for net in (actor, critic) for pair in net for t in pair]

    def fn(x, *params):
        nets = [[(params[0], params[1]), (params[2], params[3])], [(params[4], params[5]), (params[6], params[7])]]
        (h_a, pre_a), (h_c, pre_c) = stacked_seed_mlp(x, nets, activation=activation, kernel=kernel, block=2)
        return h_a, h_c, *pre_a, pre_c[0]

    assert torch.autograd.gradcheck(fn, (x, *flat))


def test_joint_actor_critic_equals_separate_networks():
    """The critic computed in the actor's node (policy then value on the same obs) equals the critic computed
    alone, on the fused path with torch's tanh: bitwise, values and gradients."""
    obs = torch.randn(3, 40, 4)
    joint = _model("fused")
    out = joint.policy(obs)
    v_joint = joint.value(obs, out.features)
    separate = _model("fused")
    v_alone = separate.value(obs)  # no actor features: the critic's own node
    assert torch.equal(v_joint, v_alone)
    v_joint.sum().backward()
    v_alone.sum().backward()
    for a, b in zip(joint.critic_parameters(), separate.critic_parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)
    assert all(p.grad is None for p in joint.actor.backbone.parameters())  # only the critic was differentiated


def test_joint_critic_features_are_never_stale():
    """The critic's features kept from `policy` are used only for the same obs and features, unchanged weights."""
    model, obs = _model("fused"), torch.randn(3, 10, 4)
    out = model.policy(obs)
    with torch.no_grad():
        model.critic_backbone.layers[0].weight.mul_(2.0)  # an optimiser step between policy and value
    fresh = _model("fused")
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(model.value(obs, out.features), fresh.value(obs))
    out = model.policy(obs)
    other = torch.randn(3, 10, 4)
    assert torch.equal(model.value(other, out.features), fresh.value(other))
    # the fused engine's optimiser writes the parameters through one flat buffer: still seen
    optimizer = FlatAdam(model.parameters(), lr=0.1)
    out = model.policy(obs)
    for p in model.parameters():
        p.grad.fill_(1.0)
    optimizer.step()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(model.value(obs, out.features), fresh.value(obs))


def _history(seeds, engine="fused", total_steps=2048, **kw):
    cfg = al.TrainConfig(env_id="CartPole-v1", algo="ppo", seeds=seeds, total_steps=total_steps, device="cpu",
                         engine=engine, **kw)
    return al.train(cfg, progress=False).history.drop(columns="time")


def test_fused_training_is_deterministic_and_seed_batch_independent():
    batch = tuple(range(10, 20))  # 10 seeds: two blocks of 8 and 2; seed 19 sits alone at offset 1 of the second
    batched = _history(batch)
    for seed in (12, 19):
        alone = _history((seed,))
        pd.testing.assert_frame_equal(alone, batched[batched.seed == seed].reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(alone, _history((19,)), check_exact=True)


def _sigmoid_kernel(monkeypatch):
    """Make every model built for training take the fused path with the reference's tanh arithmetic and the
    autograd loss (the fused loss differs from it by float32 rounding: `tests/test_fused_loss.py`)."""
    use_engine = ActorCritic.use_engine
    monkeypatch.setattr(ActorCritic, "use_engine",
                        lambda self, engine, tanh_kernel="tanh", fused_loss=True:
                        use_engine(self, engine, tanh_kernel="sigmoid", fused_loss=False))


PFO_DIAGNOSTICS = dict(pfo_coef=1.0, pfo_layers="all", diagnostics_every=1, total_steps=1024)


def test_pfo_and_diagnostics_run_bitwise_the_reference_with_its_tanh(monkeypatch):
    reference = _history((3, 4), engine="reference", **PFO_DIAGNOSTICS)
    _sigmoid_kernel(monkeypatch)
    fused = _history((3, 4), **PFO_DIAGNOSTICS)
    pd.testing.assert_frame_equal(fused, reference, check_exact=True)


def test_pfo_and_diagnostics_run_on_the_fused_engine_match_the_reference():
    reference = _history((3, 4), engine="reference", **PFO_DIAGNOSTICS)
    fused = _history((3, 4), **PFO_DIAGNOSTICS)
    assert len(fused) == len(reference) == 8 and fused.loss_pfo.notna().all()
    assert {"actor_approx_rank", "preact_change"} <= set(fused.columns)
    pd.testing.assert_frame_equal(fused, reference, check_exact=False, rtol=1e-3, atol=1e-4)


def test_engine_recorded_in_config_json_and_absent_reads_reference(tmp_path):
    cfg = al.TrainConfig(env_id="CartPole-v1", seeds=(0,), total_steps=256, num_envs=2, rollout_steps=128,
                         minibatch_size=64, device="cpu", engine="fused")
    al.train(cfg, progress=False, run_dir=tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert stored["engine"] == "fused"
    loaded = al.Run.load(tmp_path / "run")
    assert loaded.config.engine == "fused"
    assert loaded.model.actor.backbone.fused_kernel is not None  # evaluated on the engine it was trained with
    old = {k: v for k, v in stored.items() if k != "engine"}  # a config stored before the field existed
    assert al.TrainConfig(**old).filled().engine == "reference"


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(engine="fast"), "engine must be one of ('reference', 'fused'), got 'fast'"),
    (dict(engine="fused", hidden_sizes=(64, 1)), "engine='fused' does not take hidden layers of width 1"),
    (dict(engine="fused", env_id="ALE/Phoenix-v5"),
     "engine='fused' runs MLP and MinAtar CNN backbones only, got network='nature'"),
])
def test_bad_engine_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        al.TrainConfig(**{"env_id": "CartPole-v1", **kwargs}).resolve()


def test_actor_critic_refuses_bad_engine():
    with pytest.raises(ValueError, match="engine must be one of"):
        ActorCritic(OBS, 2, (0,), engine="turbo")
    with pytest.raises(ValueError, match="tanh_kernel must be one of"):
        _model().use_engine("fused", tanh_kernel="fast")
    with pytest.raises(ValueError, match="network='nature'"):
        ActorCritic((4, 84, 84), 3, (0,), network="nature", engine="fused")
    assert networks.ENGINES == ("reference", "fused")


@pytest.mark.slow
def test_fused_ppo_learns_cartpole():
    """rl-zoo preset, 4 seeds, 50k steps: every seed's training return over the last 5 updates is at least 200 and
    at least 5x its first 5 updates' (untrained policies score 10-40)."""
    history = _history((0, 1, 2, 3), total_steps=50_000)
    for seed, rows in history.groupby("seed"):
        first, last = rows.episode_return.head(5).mean(), rows.episode_return.tail(5).mean()
        print(f"seed {seed}: training return {first:.0f} -> {last:.0f}")
        assert last >= 200 and last >= 5 * first, (seed, first, last)


def test_minatar_cnn_on_the_fused_engine():
    """MinAtar's CNN on the fused engine: torch's tanh kernel (float32 rounding from the reference), the fused
    loss; with the reference's kernel ("sigmoid") and the autograd loss it is bitwise the reference engine; a seed
    alone trains bitwise as inside a batch."""
    kw = dict(env_id="MinAtar/Breakout-v1", total_steps=2048, device="cpu")
    reference = al.train(al.TrainConfig(seeds=(3, 4), **kw), progress=False).history.drop(columns="time")
    fused = al.train(al.TrainConfig(seeds=(3, 4), engine="fused", **kw), progress=False)
    assert fused.model.fused_backbones() and fused.model.actor.backbone.fused_kernel == "tanh"
    history = fused.history.drop(columns="time")
    pd.testing.assert_frame_equal(history, reference, check_exact=False, rtol=1e-3, atol=1e-4)
    alone = al.train(al.TrainConfig(seeds=(4,), engine="fused", **kw), progress=False).history.drop(columns="time")
    pd.testing.assert_frame_equal(alone, history[history.seed == 4].reset_index(drop=True), check_exact=True)
    model = ActorCritic((10, 10, 4), 3, (3, 4), network="cnn").use_engine("fused", tanh_kernel="sigmoid")
    obs = (torch.rand(2, 16, 10, 10, 4, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    twin = ActorCritic((10, 10, 4), 3, (3, 4), network="cnn")
    assert torch.equal(model.backbone_features(obs)[2], twin.critic_backbone(obs)[0])
    assert torch.equal(model.policy(obs).logits, twin.policy(obs).logits)
