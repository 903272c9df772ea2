"""acpg_lab.sb3: the fixed-ETF policy for Stable-Baselines3 and the diagnostics callback.

Budgets measured on CI-like 2-core machines with one torch thread (SB3 2.9.2, rl-zoo hyperparameters):
SB3 PPO with the ETF policy on CartPole-v1 takes about 40 s per seed for 100k steps.
"""

import inspect
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO  # the dev group installs the sb3 group: a missing SB3 fails here, not skips
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import acpg_lab as al
from acpg_lab import metrics
from acpg_lab.sb3 import (
    HEAD_OPTIONS,
    DiagnosticsCallback,
    ETFActorCriticCnnPolicy,
    ETFActorCriticPolicy,
    evaluate,
    train_and_evaluate,
)


def _envs(env_id="CartPole-v1", n=4, seed=0):
    return make_vec_env(env_id, n_envs=n, seed=seed, env_kwargs=dict(render_mode=None))


# ------------------------------------------------------------------------------------------ the policy
def test_importing_acpg_lab_does_not_need_stable_baselines3():
    code = "import sys, acpg_lab; assert 'stable_baselines3' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_head_options_are_etfheads_with_its_defaults_and_docs():
    etf = {p.name: p.default for p in inspect.signature(al.ETFHead.__init__).parameters.values()
           if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert HEAD_OPTIONS == {f"head_{name}": value for name, value in etf.items()}
    policy = inspect.signature(ETFActorCriticPolicy.__init__).parameters
    assert {name: policy[name].default for name in HEAD_OPTIONS} == HEAD_OPTIONS
    doc = " ".join(inspect.getdoc(ETFActorCriticPolicy).split())
    etf_doc = " ".join(inspect.getdoc(al.ETFHead).split())
    for name in etf:  # ETFHead's own text for every option, under the head_ name
        text = etf_doc.split(f"{name}: ", 1)[1][:120]
        assert f"head_{name}: {text}" in doc, name


def test_the_action_layer_is_a_fixed_etf_buffer_outside_the_optimiser():
    model = PPO(ETFActorCriticPolicy, _envs(), seed=0, device="cpu")
    head = model.policy.action_net
    assert isinstance(head, al.ETFHead)
    assert torch.equal(head.weight, al.simplex_etf(2, 64))  # default: canonical orientation, d = net_arch pi[-1]
    assert "action_net.weight" in model.policy.state_dict()
    optimised = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert id(head.weight) not in optimised and not any(n.startswith("action_net") for n, _ in
                                                        model.policy.named_parameters())
    assert optimised == {id(p) for p in model.policy.parameters()}

    options = dict(head_seeds=7, head_normalize=True, head_scale=3.0, head_bias=True, net_arch=dict(pi=[32], vf=[64]))
    acrobot = PPO(ETFActorCriticPolicy, _envs("Acrobot-v1"), policy_kwargs=options, seed=0, device="cpu")
    head = acrobot.policy.action_net
    assert torch.equal(head.weight, al.simplex_etf(3, 32, seed=7)) and head.normalize and head.scale == 3.0
    optimised = {id(p) for group in acrobot.policy.optimizer.param_groups for p in group["params"]}
    assert id(head.bias) in optimised


@pytest.mark.parametrize("space", [spaces.Box(-1, 1, (1,)), spaces.MultiDiscrete([2, 3])])
def test_other_action_spaces_are_refused_with_a_clear_message(space):
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        ETFActorCriticPolicy(spaces.Box(-1, 1, (3,)), space, lambda _: 1e-3)
    if isinstance(space, spaces.Box):
        with pytest.raises(ValueError, match="needs a Discrete action space"):
            PPO(ETFActorCriticPolicy, "Pendulum-v1", device="cpu")


def test_bad_head_options_and_callback_arguments_are_refused():
    with pytest.raises(ValueError, match="head_seeds must be None .* or one int"):
        PPO(ETFActorCriticPolicy, _envs(), policy_kwargs=dict(head_seeds=[0, 1]), device="cpu")
    with pytest.raises(ValueError, match="scale must be > 0"):
        PPO(ETFActorCriticPolicy, _envs(), policy_kwargs=dict(head_scale=0.0), device="cpu")
    with pytest.raises(ValueError, match="feature_dim must be"):  # K = 4 needs d >= 3
        PPO(ETFActorCriticPolicy, _envs("acpg_lab/ActionBandit-v0"), policy_kwargs=dict(net_arch=[2]), device="cpu")
    with pytest.raises(ValueError, match="every must be"):
        DiagnosticsCallback(every=0)
    with pytest.raises(ValueError, match="label_source must be"):
        DiagnosticsCallback(label_source="expert")
    with pytest.raises(ValueError, match="needs an environment that publishes"):
        model = PPO(ETFActorCriticPolicy, _envs(), n_steps=8, batch_size=32, device="cpu")
        model.learn(32, callback=DiagnosticsCallback(label_source="optimal"))


# ---------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_ppo_with_the_etf_policy_solves_cartpole_and_keeps_its_frame(tmp_path):
    """>= 3 of 4 seeds reach a greedy return of 475 within 100k steps (stops once the verdict is known)."""
    frame = al.simplex_etf(2, 64)
    solved, failed = [], []
    for seed in range(4):
        model, summary, _ = train_and_evaluate("CartPole-v1", policy="etf", seed=seed, total_steps=100_000,
                                               directory=tmp_path / str(seed))
        print(f"seed {seed}: train {summary['wall_s']:.1f}s, greedy {summary['greedy_return']:.1f}, "
              f"sampled {summary['sampled_return']:.1f}")
        assert torch.equal(model.policy.action_net.weight, frame), "training changed the ETF"
        (solved if summary["greedy_return"] >= 475 else failed).append(seed)
        if len(solved) >= 3 or len(failed) >= 2:
            break
    assert len(solved) >= 3, f"solved {solved}, failed {failed}"
    loaded = PPO.load(tmp_path / "0" / "model.zip", device="cpu")
    assert isinstance(loaded.policy, ETFActorCriticPolicy) and torch.equal(loaded.policy.action_net.weight, frame)
    assert evaluate(loaded, "CartPole-v1", episodes=3).mean() >= 475


def test_the_frame_and_head_options_survive_save_and_load(tmp_path):
    options = dict(head_seeds=3, head_normalize=True, head_scale=2.0, head_bias=True)
    model = PPO(ETFActorCriticPolicy, _envs(), n_steps=32, batch_size=64, policy_kwargs=options, seed=1,
                device="cpu")
    frame = model.policy.action_net.weight.clone()
    bias = model.policy.action_net.bias.detach().clone()
    model.learn(256)
    assert torch.equal(model.policy.action_net.weight, frame)
    assert not torch.equal(model.policy.action_net.bias, bias)  # the optional bias is trained
    # a frame that differs from what the options would build shows that load reads it from the file
    with torch.no_grad():
        model.policy.action_net.weight.mul_(-1.0)
    model.save(tmp_path / "model.zip")
    loaded = PPO.load(tmp_path / "model.zip", device="cpu")
    head = loaded.policy.action_net
    assert torch.equal(head.weight, -frame) and torch.equal(head.bias, model.policy.action_net.bias)
    assert {k: loaded.policy.head_options[k] for k in options} == options
    obs = torch.randn(16, 4)
    assert torch.equal(loaded.policy.get_distribution(obs).distribution.logits,
                       model.policy.get_distribution(obs).distribution.logits)
    model.policy.save(tmp_path / "policy.pt")  # SB3's policy-only save uses the constructor parameters
    alone = ETFActorCriticPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert alone.head_options == loaded.policy.head_options and torch.equal(alone.action_net.weight, -frame)


@pytest.mark.slow
def test_a2c_learns_with_the_etf_policy():
    model, summary, history = train_and_evaluate("CartPole-v1", policy="etf", algo="a2c", seed=0,
                                                 total_steps=30_000, diagnostics_every=50)
    print(summary)
    assert torch.equal(model.policy.action_net.weight, al.simplex_etf(2, 64))
    assert summary["greedy_return"] >= 150, summary  # random play: about 22
    assert (history.frac_outside.dropna() >= 0).all() and len(history) >= 2


class LitColumn(gym.Env):
    """A 36 x 36 grey image with one lit column band out of 3; reward 1 for the action naming it (8 steps)."""

    observation_space = spaces.Box(0, 255, (1, 36, 36), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def _draw(self):
        self._lit = int(self.np_random.integers(3))
        image = np.zeros((1, 36, 36), np.uint8)
        image[:, :, 12 * self._lit:12 * self._lit + 12] = 255
        return image

    def step(self, action):
        reward = float(action == self._lit)
        self._t += 1
        return self._draw(), reward, False, self._t >= 8, {}


@pytest.mark.slow
def test_a_cnn_features_extractor_works_with_the_etf_and_the_callback():
    envs = make_vec_env(LitColumn, n_envs=4, seed=0)
    with pytest.warns(UserWarning, match="some actions can never get the highest logit"):
        PPO(ETFActorCriticCnnPolicy, envs, device="cpu")  # canonical frame on nonnegative features
    model = PPO(ETFActorCriticCnnPolicy, envs, n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-3, seed=0,
                policy_kwargs=dict(head_seeds=0), device="cpu")
    assert model.policy.action_net.weight.shape == (3, 512)  # on the NatureCNN's 512 features
    callback = DiagnosticsCallback(every=4)
    model.learn(6_000, callback=callback)
    assert torch.equal(model.policy.action_net.weight, al.simplex_etf(3, 512, seed=0))
    obs = np.stack([LitColumn().reset(seed=i)[0] for i in range(64)])
    lit = obs[:, 0, 0, :].argmax(-1) // 12
    accuracy = (model.predict(obs, deterministic=True)[0] == lit).mean()
    assert accuracy >= 0.9, accuracy  # chance: 1/3
    history = callback.history
    assert history.actor_preactivation_norm.isna().all()  # the features come straight from the extractor
    assert history.actor_dead_fraction.notna().all() and history.kl_old_new.notna().all()


# ------------------------------------------------------------------------------------------- callback
class _Recorder(BaseCallback):
    """At each rollout's end (before the diagnostics callback runs): the policy's weights and the rollout."""

    def __init__(self):
        super().__init__()
        self.states, self.batches = [], []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        buffer = self.model.rollout_buffer
        self.states.append({k: v.clone() for k, v in self.model.policy.state_dict().items()})
        self.batches.append(dict(obs=buffer.observations.copy(), actions=buffer.actions.copy(),
                                 logp=buffer.log_probs.copy()))

    def _on_training_end(self):
        self.states.append({k: v.clone() for k, v in self.model.policy.state_dict().items()})


def _direct(policy, state, batch):
    """Features, pre-activations and logits through SB3's own calls, with the weights of ``state``."""
    policy.load_state_dict(state)
    obs = torch.as_tensor(batch["obs"].reshape(-1, *batch["obs"].shape[2:]))
    with torch.no_grad():
        features = policy.extract_features(obs)
        pre = policy.mlp_extractor.policy_net[:-1](features)
        latent = policy.mlp_extractor.forward_actor(features)
        logits = policy.get_distribution(obs).distribution.logits
    return latent, pre, logits


TRUST_REGION_KEYS = set(metrics.trust_region(torch.zeros(1), torch.zeros(1), 0.2))


@pytest.mark.parametrize(("policy_class", "label_source"),
                         [(ETFActorCriticPolicy, "optimal"), ("MlpPolicy", "greedy"), (ETFActorCriticPolicy, "expert")])
def test_callback_logs_the_package_metrics_of_the_same_batch(tmp_path, policy_class, label_source):
    env_id = "acpg_lab/ActionBandit-v0" if label_source == "optimal" else "CartPole-v1"
    model = PPO(policy_class, _envs(env_id), n_steps=32, batch_size=64, n_epochs=4, clip_range=0.3, seed=0,
                device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    expert = PPO("MlpPolicy", _envs(env_id), seed=5, device="cpu") if label_source == "expert" else None
    recorder = _Recorder()
    diagnostics = DiagnosticsCallback(every=2, label_source=expert if label_source == "expert" else label_source)
    model.learn(4 * 32 * 5, callback=CallbackList([recorder, diagnostics]))  # 5 rollouts: 1, 3, 5 diagnosed
    history = diagnostics.history
    assert history.rollout.tolist() == [1, 3, 5] and history.step.tolist() == [128, 384, 640]
    # SB3 dumps the logger after every rollout (steps 128, 256, ..., 640) and the callback once more at the end:
    # a rollout's statistics are in the row of its step, the trust region of its update in the next row.
    logged = pd.read_csv(tmp_path / "progress.csv")
    assert len(logged) == 6 and logged["time/total_timesteps"].tolist()[:5] == [128, 256, 384, 512, 640]
    fresh = PPO(policy_class, _envs(env_id), seed=1, device="cpu").policy
    for row, rollout, at in zip(history.itertuples(), [0, 2, 4], [0, 2, 4], strict=True):
        batch = recorder.batches[rollout]
        features, pre, logits = _direct(fresh, recorder.states[rollout], batch)
        if label_source == "optimal":  # one-hot observations: the state is the hot coordinate
            states = batch["obs"].reshape(-1, batch["obs"].shape[-1]).argmax(-1)
            labels = torch.as_tensor(gym.make(env_id).unwrapped.layout.optimal_actions[states])
        elif label_source == "expert":  # an SB3 model's deterministic actions
            labels = torch.as_tensor(expert.predict(batch["obs"].reshape(-1, 4), deterministic=True)[0])
            assert (labels != logits.argmax(-1)).any()  # not the greedy labels
        else:
            labels = logits.argmax(-1)
        expected = {f"actor_{k}": v for k, v in metrics.representation(features, pre, "tanh").items()}
        expected.update(metrics.action_collapse(features, labels, fresh.action_net.weight.detach(), logits=logits))
        _, _, new_logits = _direct(fresh, recorder.states[rollout + 1], batch)
        actions = torch.as_tensor(batch["actions"].reshape(-1)).long()
        new_logp = new_logits.log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)
        expected.update(metrics.trust_region(new_logp, torch.as_tensor(batch["logp"].reshape(-1)), 0.3, new_logits,
                                             logits))
        assert expected["kl_old_new"] > 0 and expected["ncc_mismatch"] == expected["ncc_mismatch"]
        for key, value in expected.items():
            assert getattr(row, key) == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), key  # float32 logits
            in_logger = logged[f"diagnostics/{key}"].iloc[at + 1 if key in TRUST_REGION_KEYS else at]
            assert in_logger == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), f"logged {key}"


def test_stable_baselines3_is_pinned_once_for_sb3_dev_and_binder():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    groups = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = groups["sb3"]
    import stable_baselines3

    assert pin == f"stable-baselines3=={stable_baselines3.__version__}" and pin in groups["dev"]
    binder = (root / "binder/requirements.txt").read_text().splitlines()
    assert pin in [line.split("#")[0].strip() for line in binder]


def test_an_update_with_clip_range_zero_logs_no_clip_relative_statistics():
    """rl-zoo's linearly decayed clip range reaches 0 at the last update: no range to be outside of."""
    from stable_baselines3.common.utils import LinearSchedule

    model = PPO(ETFActorCriticPolicy, _envs(), n_steps=32, batch_size=64, n_epochs=2,
                clip_range=LinearSchedule(0.2, 0.0, 1.0), seed=0, device="cpu")
    callback = DiagnosticsCallback(every=1)
    model.learn(3 * 128, callback=callback)
    history = callback.history
    assert history.frac_outside.iloc[:-1].notna().all() and np.isnan(history.frac_outside.iloc[-1])
    assert np.isnan(history.excess_ratio.iloc[-1]) and history.kl_old_new.notna().all()


def test_the_callback_leaves_training_unchanged():
    """It draws no random numbers and changes no state: the same seed trains to bitwise the same weights."""
    weights = []
    for callback in (None, DiagnosticsCallback(every=1)):
        model = PPO(ETFActorCriticPolicy, _envs(), n_steps=32, batch_size=64, n_epochs=2, seed=3, device="cpu")
        model.learn(4 * 128, callback=callback)
        weights.append(model.policy.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
