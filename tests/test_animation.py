"""See the agent: an episode of a seed-batched policy as frames, and those frames as an offline HTML/JS player;
bad input is refused with a message naming it before anything is played."""

import numpy as np
import pytest

import acpg_lab as al
from acpg_lab.animation import Episode, animate, episode


@pytest.fixture(scope="module")
def run():
    return al.train(al.TrainConfig(env_id="CartPole-v1", algo="ppo", seeds=(0, 1), total_steps=1024,
                                   snapshot_every=512))


def test_an_episode_keeps_every_kth_frame_and_its_return(run):
    ep = episode(run, seed_index=1, max_steps=40, every=4)
    assert ep.frames.dtype == np.uint8 and ep.frames.shape[1:] == (400, 600, 3)
    assert 1 <= ep.steps <= 40 and ep.episode_return == ep.steps  # CartPole pays 1 per step
    assert len(ep.frames) == 1 + ep.steps // 4 + int(ep.finished)
    again = episode(run, seed_index=1, max_steps=40, every=4)
    assert again.steps == ep.steps and np.array_equal(again.frames, ep.frames)  # greedy: deterministic
    step = sorted(run.snapshots)[0]
    snap = episode(run.actor_at(step), env_id="CartPole-v1", seed_index=0, max_steps=10)
    assert isinstance(snap, Episode) and snap.steps <= 10


def test_the_player_is_offline_html_with_every_frame(run):
    ep = episode(run, max_steps=12, every=3)
    html = animate({"learnable head": ep, "the same agent": ep}).data
    assert "<script" in html and "data:image/png;base64" in html and "http" not in html.split("<script")[0]
    assert html.count("data:image/png;base64") >= len(ep.frames)


def test_bad_input_is_refused_with_its_name(run):
    with pytest.raises(ValueError, match=r"'acpg_lab/ActionBandit-v0' cannot be animated: it has no 'rgb_array'"):
        episode(run, env_id="acpg_lab/ActionBandit-v0")
    with pytest.raises(ValueError, match="seed_index 2 is out of range: the policy has 2 seeds"):
        episode(run, seed_index=2)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        episode(run, every=0)
    with pytest.raises(ValueError, match="the policy cannot act on 'Acrobot-v1'"):
        episode(run, env_id="Acrobot-v1", max_steps=2)
    with pytest.raises(TypeError, match="policy must be an acpg_lab Run"):
        episode("not a policy", env_id="CartPole-v1")
    with pytest.raises(ValueError, match="env_id is needed"):
        episode(run.actor_at(sorted(run.snapshots)[0]))
    ep = episode(run, max_steps=3)
    with pytest.raises(ValueError, match="at most 3 episodes"):
        animate({str(i): ep for i in range(4)})
    with pytest.raises(TypeError, match="takes Episode values"):
        animate({"frames": ep.frames})


def test_the_player_needs_no_network(run):
    html = animate({"agent": episode(run, max_steps=3)}).data
    assert "http://" not in html and "https://" not in html and 'class="fa ' not in html
    assert "▶" in html and "‖" in html
