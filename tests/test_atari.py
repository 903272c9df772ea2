"""The ALE path (the `full` profile of notebooks 03/04): presets, the seed-batched Nature CNN, unclipped logged
rewards with clipped training rewards. Plumbing only: learning on Atari needs a GPU-scale budget."""

import numpy as np
import pytest
import torch
from _crash import crash_after_update

import acpg_lab as al
from acpg_lab.envs import SeedEnvs, probe_spaces
from acpg_lab.networks import ActorCritic, NatureCNN


def test_ale_ids_resolve_to_the_atari_preset_and_the_vector_envs_spaces():
    obs_space, act_space, _ = probe_spaces("ALE/Phoenix-v5")
    assert obs_space.shape == (4, 84, 84) and act_space.n == 8  # what training sees, not the raw 210x160 frame
    cfg = al.TrainConfig(env_id="ALE/Phoenix-v5", epochs=8).resolve()
    assert (cfg.hidden_sizes, cfg.activation, cfg.clip_coef, cfg.reward_clip, cfg.epochs) == ((512,), "relu", 0.1,
                                                                                             True, 8)
    assert al.TrainConfig(env_id="CartPole-v1").resolve().reward_clip is False
    with pytest.raises(ValueError, match="network='nature' needs frame stacks"):
        al.TrainConfig(env_id="CartPole-v1", network="nature").resolve()
    with pytest.raises(ValueError, match="ALE/Phoenix-v5"):
        al.TrainConfig(env_id="ALE/Phoenixx-v5").resolve()


def test_nature_cnn_is_seed_independent_and_rejects_small_frames():
    obs = torch.randint(0, 256, (1, 6, 4, 84, 84)).float()
    alone = ActorCritic((4, 84, 84), 6, (3,), network="nature", hidden_sizes=(32,), activation="relu")
    batch = ActorCritic((4, 84, 84), 6, (1, 3), network="nature", hidden_sizes=(32,), activation="relu")
    out = batch.policy(torch.cat([torch.zeros_like(obs), obs]))
    assert torch.equal(out.logits[1:], alone.policy(obs).logits)  # bitwise: a seed never sees another's frames
    assert [p.shape[0] for p in batch.actor_parameters()] == [2] * len(batch.actor_parameters())  # seed dim first
    assert len(out.preacts) == 4 and out.preacts[-1].shape == (2, 6, 32)
    with pytest.raises(ValueError, match="at least 36x36"):
        NatureCNN((4, 20, 20), (32,), "relu", [torch.Generator()])


def test_logged_rewards_are_game_scores():
    # a seed beyond ALE's C int range
    envs = SeedEnvs("ALE/Phoenix-v5", num_envs=2, env_seeds=[2**32 - 5], device=torch.device("cpu"))
    envs.reset()
    rng = np.random.default_rng(0)
    rewards = [envs.step(torch.as_tensor(rng.integers(0, 8, (1, 2)))).reward for _ in range(400)]
    envs.close()
    assert torch.stack(rewards).max() > 1  # Phoenix scores 20+ per kill; training clips to sign(r) itself


def test_ppo_with_pfo_and_diagnostics_runs_on_ale(tmp_path):
    cfg = al.TrainConfig(env_id="ALE/Phoenix-v5", seeds=(0,), total_steps=1024, epochs=1, pfo_coef=1.0,
                         diagnostics_every=1, snapshot_every=1)
    run = al.train(cfg, progress=False)
    row = run.history.iloc[-1]
    assert row.loss_pfo >= 0 and 0 < row.actor_srank <= 512 and np.isfinite(row.kl_old_new)
    loaded = al.Run.load(run.save(tmp_path / "run"))
    assert torch.load(tmp_path / "run" / "probe_obs.pt", weights_only=True).dtype == torch.uint8  # frames, compact
    assert torch.equal(loaded.probe_obs, run.probe_obs) and sorted(loaded.snapshots) == [0, 1024]


def test_ale_runs_checkpoint_and_resume_with_reseeded_environments(tmp_path, monkeypatch):
    """The emulator's state cannot be read, so "exact" checkpoints are refused before training; "reseed" ones
    resume: weights, Adam and the history up to the checkpoint continue, the environments restart."""
    cfg = al.TrainConfig(env_id="ALE/Phoenix-v5", seeds=(0,), num_envs=2, rollout_steps=16, minibatch_size=32,
                         total_steps=32 * 3, epochs=1, checkpoint_every=2, device="cpu")
    with pytest.raises(ValueError, match="resume_envs='reseed'"):
        al.train(cfg, progress=False, run_dir=tmp_path / "exact")
    cfg = al.TrainConfig(**{**cfg.to_dict(), "resume_envs": "reseed"})
    with crash_after_update(monkeypatch, 2):
        al.train(cfg, progress=False, run_dir=tmp_path / "reseed")
    assert (tmp_path / "reseed" / "checkpoint.pt").exists()
    run = al.train(cfg, progress=False, run_dir=tmp_path / "reseed", resume=True)
    assert run.resumed_from == 2 and run.history["update"].tolist() == [0, 1, 2]
