"""See the agent: an episode of a trained policy as an inline animation, offline.

    from acpg_lab.animation import episode, animate
    learnable = episode(run_a, seed_index=0)            # frames of one greedy episode of seed 0's policy
    etf = episode(run_b, seed_index=0)
    animate({"learnable head": learnable, "fixed ETF head": etf})   # an HTML/JS player, side by side

Frames come from gymnasium's ``rgb_array`` rendering; the player is matplotlib's ``FuncAnimation.to_jshtml``, so
the notebook carries the frames and needs no network or video codec. The policy is a seed-batched actor (a `Run`,
or ``run.actor_at(step)`` for a snapshot), acting greedily by default on the episode's environment seed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation as mpl_animation
from torch import nn

from acpg_lab.figstyle import BOOK_WIDTH_IN, MAX_PANELS_PER_ROW

__all__ = ["Episode", "episode", "animate"]


@dataclass(frozen=True)
class Episode:
    """The frames of one episode (``[T, H, W, 3]`` uint8, every ``every``-th step) and what it scored."""

    frames: np.ndarray
    episode_return: float
    steps: int
    finished: bool


def _actor(policy) -> tuple[nn.Module, int]:
    """The actor module and its number of seeds, from a `Run` or an actor module."""
    from acpg_lab.run import Run

    if isinstance(policy, Run):
        return policy.model.actor.eval(), len(policy.seeds)
    if isinstance(policy, nn.Module) and hasattr(policy, "policy"):
        return policy.eval(), next(policy.parameters()).shape[0]  # seed-batched weights are [S, ...]
    raise TypeError(f"policy must be an acpg_lab Run or a seed-batched actor (run.actor_at(step)), got "
                    f"{type(policy).__name__}")


def _require_rgb_array(env_id: str) -> None:
    spec = gym.spec(env_id)
    modes = (spec.kwargs.get("render_modes") or getattr(gym.make(env_id), "metadata", {}).get("render_modes", []))
    if "rgb_array" not in modes:
        raise ValueError(f"environment {env_id!r} cannot be animated: it has no 'rgb_array' rendering "
                         f"(render modes: {list(modes)})")


@torch.no_grad()
def episode(policy, *, env_id: str | None = None, seed_index: int = 0, env_seed: int = 12_345,
            max_steps: int = 500, every: int = 2, greedy: bool = True) -> Episode:
    """Play one episode of seed ``seed_index``'s policy and keep every ``every``-th frame (at most ``max_steps``
    steps; fewer frames make a lighter notebook). ``env_id`` defaults to the run's environment. Greedy actions by
    default; ``greedy=False`` samples from the policy with a generator seeded by ``env_seed``."""
    from acpg_lab.run import Run

    if env_id is None:
        if not isinstance(policy, Run):
            raise ValueError("env_id is needed when the policy is an actor module rather than a Run")
        env_id = policy.config.env_id
    for name, value, low in (("max_steps", max_steps, 1), ("every", every, 1), ("seed_index", seed_index, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    actor, num_seeds = _actor(policy)
    _require_rgb_array(env_id)
    if seed_index >= num_seeds:
        raise ValueError(f"seed_index {seed_index} is out of range: the policy has {num_seeds} seeds")
    device = next(actor.parameters()).device
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no screen; SDL would complain of none
    env = gym.make(env_id, render_mode="rgb_array")
    gen = torch.Generator(device=device).manual_seed(env_seed)
    try:
        obs, _ = env.reset(seed=env_seed)
        frames, total, finished = [env.render()], 0.0, False
        for t in range(max_steps):
            x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)
            batch = x.reshape(1, 1, *x.shape).expand(num_seeds, 1, *x.shape)
            try:
                row = actor.policy(batch).logits[seed_index, 0]
            except RuntimeError as err:
                raise ValueError(f"the policy cannot act on {env_id!r}: its observations have shape "
                                 f"{tuple(x.shape)}, which this network does not take ({err})") from err
            action = int(row.argmax()) if greedy else int(torch.multinomial(row.softmax(-1), 1, generator=gen))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if (t + 1) % every == 0:
                frames.append(env.render())
            if terminated or truncated:
                finished = True
                frames.append(env.render())
                break
        return Episode(np.stack(frames), total, t + 1, finished)
    finally:
        env.close()


def animate(episodes: dict[str, Episode], *, fps: int = 25, width: float = 7.5) -> object:
    """An HTML/JS player (``IPython.display.HTML``) showing the episodes side by side (at most
    `figstyle.MAX_PANELS_PER_ROW`), each titled with its label and return; shorter episodes hold their last frame.
    ``width`` is in inches (at most `figstyle.BOOK_WIDTH_IN`)."""
    from IPython.display import HTML

    if not episodes:
        raise ValueError("animate needs at least one episode")
    if len(episodes) > MAX_PANELS_PER_ROW:
        raise ValueError(f"animate shows at most {MAX_PANELS_PER_ROW} episodes side by side, got {len(episodes)}")
    if not 0 < width <= BOOK_WIDTH_IN:
        raise ValueError(f"width must be in (0, {BOOK_WIDTH_IN}] inches, got {width!r}")
    bad = [k for k, v in episodes.items() if not isinstance(v, Episode)]
    if bad:
        raise TypeError(f"animate takes Episode values (from acpg_lab.animation.episode); not for {bad}")
    frame = next(iter(episodes.values())).frames[0]
    panel_w = width / len(episodes)
    fig, axes = plt.subplots(1, len(episodes), figsize=(width, panel_w * frame.shape[0] / frame.shape[1] + 0.5),
                             squeeze=False, layout="constrained")
    images = []
    for ax, (label, ep) in zip(axes[0], episodes.items(), strict=True):
        images.append(ax.imshow(ep.frames[0]))
        ax.set_title(f"{label}\nreturn {ep.episode_return:g} in {ep.steps} steps", fontsize=9)
        ax.axis("off")
    length = max(len(ep.frames) for ep in episodes.values())

    def draw(i: int):
        for image, ep in zip(images, episodes.values(), strict=True):
            image.set_data(ep.frames[min(i, len(ep.frames) - 1)])
        return images

    player = mpl_animation.FuncAnimation(fig, draw, frames=length, interval=1000 / fps, blit=True)
    html = _offline(player.to_jshtml(default_mode="once"))
    plt.close(fig)
    return HTML(html)


#: The player's button icons as characters: matplotlib's player takes them from a font on a CDN, which an offline
#: notebook or book cannot reach (the buttons would be blank). Arrows and geometric shapes every common font has
#: (the media-control symbols U+23EE.. are missing from many and show as boxes).
_ICONS = {"fa-fast-backward": "⇤", "fa-step-backward": "◁", "fa-play fa-flip-horizontal": "◀", "fa-pause": "‖",
          "fa-play": "▶", "fa-step-forward": "▷", "fa-fast-forward": "⇥", "fa-minus": "−", "fa-plus": "+"}


def _offline(html: str) -> str:
    """matplotlib's jshtml player without its one online resource (the icon font's stylesheet)."""
    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">', "", html)
    for icon, char in _ICONS.items():
        html = html.replace(f'<i class="fa {icon}"></i>', char)
    return html
