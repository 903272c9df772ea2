"""ACPG in Stable-Baselines3: a fixed simplex-ETF action layer for SB3's actor-critic policies, and the package's
diagnostics as an SB3 callback.

    from stable_baselines3 import PPO
    from acpg_lab.sb3 import ETFActorCriticPolicy, DiagnosticsCallback

    model = PPO(ETFActorCriticPolicy, "CartPole-v1", policy_kwargs=dict(head_scale=1.0))
    model.learn(100_000, callback=DiagnosticsCallback(every=10))   # diagnostics/* in SB3's logger

`ETFActorCriticPolicy` is SB3's `ActorCriticPolicy` (PPO, A2C; any features extractor: MLP, NatureCNN, your own)
with its action layer ``action_net`` replaced by an `acpg_lab.ETFHead` on the policy's latent features. The frame
is a buffer: saved by ``model.save`` and restored by ``PPO.load``, never seen by the optimiser. Only discrete
action spaces are supported (an ETF has one vector per action).

`DiagnosticsCallback` logs `acpg_lab.metrics.representation`, `trust_region` and `action_collapse` of the policy
on its own rollouts into SB3's logger (stdout, CSV, TensorBoard: whatever the logger writes) and keeps them in a
``history`` DataFrame that the `acpg_lab.experiments` helpers accept.

`train_and_evaluate` trains one SB3 agent (rl-zoo hyperparameters from `HYPERPARAMS`) and evaluates it greedily
and by sampling on environment seeds never used in training; notebook 05 and the tests use it.

This module needs the optional dependency group ``sb3`` (``pip install 'acpg-lab[sb3]'``); ``import acpg_lab``
does not import it.
"""

from __future__ import annotations

from acpg_lab.entry import require_extra

require_extra("stable_baselines3", "sb3", needed_by="acpg_lab.sb3")  # missing: names the group to install

from acpg_lab.sb3.callback import DiagnosticsCallback, policy_features  # noqa: E402
from acpg_lab.sb3.policy import HEAD_OPTIONS, ETFActorCriticCnnPolicy, ETFActorCriticPolicy  # noqa: E402
from acpg_lab.sb3.runs import HYPERPARAMS, evaluate, train_and_evaluate  # noqa: E402

__all__ = ["ETFActorCriticPolicy", "ETFActorCriticCnnPolicy", "DiagnosticsCallback", "HEAD_OPTIONS",
           "HYPERPARAMS", "policy_features", "evaluate", "train_and_evaluate"]
