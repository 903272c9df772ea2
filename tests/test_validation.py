"""Bad input fails with a ValueError that names the field, before any training environment is created."""

import pytest
import torch

import acpg_lab as al
import acpg_lab.training


@pytest.fixture(autouse=True)
def _no_training_envs(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a training environment was created before validation finished")

    monkeypatch.setattr(acpg_lab.training, "SeedEnvs", forbidden)


CASES = [
    (dict(env_id="CartPol-v1"), "env_id.*CartPole-v1"),
    (dict(env_id="Pendulum-v1"), "env_id.*Box.*discrete"),
    (dict(env_id="MountainCarContinuous-v0"), "env_id.*discrete"),
    (dict(algo="dqn"), "algo"),
    (dict(algo="PPO"), "algo.*did you mean 'ppo'"),
    (dict(head="fixed"), "head"),
    (dict(seeds=()), "seeds"),
    (dict(seeds=(1, 2, 1)), r"seeds.*\[1\]"),
    (dict(seeds=3), "seeds"),
    (dict(seeds=(0, -1)), "seeds"),
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=100), "total_steps"),
    (dict(num_envs=0), "num_envs"),
    (dict(num_envs=2.5), "num_envs"),
    (dict(rollout_steps=-1), "rollout_steps"),
    (dict(epochs=0), "epochs"),
    (dict(minibatch_size=0), "minibatch_size"),
    (dict(minibatch_size=10_000), "minibatch_size"),
    (dict(lr=0.0), "lr"),
    (dict(gamma=1.5), "gamma"),
    (dict(clip_coef=0.0), "clip_coef"),
    (dict(hidden_sizes=()), "hidden_sizes"),
    (dict(hidden_sizes=(64, 0)), "hidden_sizes"),
    (dict(activation="gelu"), "activation"),
    (dict(network="transformer"), "network"),
    (dict(network="cnn"), "network='cnn'"),
    (dict(head="etf", env_id="MinAtar/Seaquest-v1", hidden_sizes=(4,)), r"hidden_sizes\[-1\]=4.*K - 1 = 5"),
    (dict(head="etf", env_id="acpg_lab/ActionBandit-v0", env_kwargs=dict(num_actions=18), hidden_sizes=(8,)),
     r"hidden_sizes\[-1\]=8.*K - 1 = 17"),
    (dict(env_id="acpg_lab/ActionBandit-v0", env_kwargs=dict(colour="red")), "env_kwargs"),
    (dict(head_scale=-1.0), "head_scale"),
    (dict(device="tpu"), "device"),
    (dict(env_kwargs=[1]), "env_kwargs"),
    (dict(num_threads=0), "num_threads"),
    # booleans are not numbers: refused wherever a number belongs, naming the field
    (dict(lr=True), "lr.*got True"),
    (dict(gamma=True), "gamma.*got True"),
    (dict(gae_lambda=False), "gae_lambda.*got False"),
    (dict(ent_coef=True), "ent_coef.*got True"),
    (dict(max_grad_norm=False), "max_grad_norm.*got False"),
    (dict(explore_epsilon=True), "explore_epsilon.*got True"),
    (dict(pfo_coef=True), "pfo_coef.*got True"),
    (dict(trust_region_clip=True), "trust_region_clip.*got True"),
    (dict(epochs=True), "epochs.*got True"),
    (dict(diagnostics_every=True), "diagnostics_every.*got True"),
    (dict(hidden_sizes=(64, True)), "hidden_sizes.*got True"),
    (dict(shuffle=1), "shuffle must be True or False, got 1"),
    (dict(head_bias="yes"), "head_bias must be True or False"),
    (dict(algo="a2c", pfo_coef=0.5), "pfo_coef > 0 needs .*algo='a2c'"),
]


@pytest.mark.parametrize(("kwargs", "message"), CASES, ids=[str(c[0]) for c in CASES])
def test_bad_config_is_rejected_before_training(kwargs, message):
    with pytest.raises(ValueError, match=message):
        al.train(al.TrainConfig(**kwargs), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_rejected():
    with pytest.raises(ValueError, match="device='cuda'"):
        al.train(al.TrainConfig(device="cuda"), progress=False)


def test_etf_dimension_k_minus_one_is_allowed():
    cfg = al.TrainConfig(env_id="MinAtar/Breakout-v1", head="etf", hidden_sizes=(2,)).resolve()  # K = 3
    assert cfg.hidden_sizes == (2,)


def test_minatar_and_lunar_lander_resolve_without_registration():
    assert al.TrainConfig(env_id="MinAtar/Breakout-v1").resolve().network == "auto"
    assert al.TrainConfig(env_id="LunarLander-v3").resolve().num_envs == 8
