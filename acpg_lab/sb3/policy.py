"""`ETFActorCriticPolicy`: SB3's actor-critic policy with its action layer replaced by a fixed `acpg_lab.ETFHead`."""

from __future__ import annotations

import inspect
import math
import numbers
import re
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import NatureCNN
from torch import nn

import acpg_lab.optimal_envs  # noqa: F401  (registers the acpg_lab/ ids with gymnasium, for make_vec_env)
from acpg_lab.checks import check_bool
from acpg_lab.etf import ETFHead

#: The largest ``head_seeds`` (a torch generator's seed range)
MAX_HEAD_SEED = 2**64 - 1


# ------------------------------------------------------------------------------------------- the ETF policy
def _etf_options() -> dict[str, Any]:
    """ETFHead's own options (everything after feature_dim and num_actions) and their defaults."""
    params = inspect.signature(ETFHead.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _etf_option_docs() -> str:
    """The ``Args:`` entries of ETFHead's docstring for its options, renamed ``head_<name>``."""
    doc = inspect.cleandoc(ETFHead.__doc__ or "")
    entries = re.findall(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", doc.split("Args:", 1)[1], flags=re.M | re.S)
    docs = "\n".join(f"head_{name}: " + text.rstrip().replace("\n        ", "\n    ")
                     for name, text in entries if name in _etf_options())
    return textwrap.indent(docs, "        ")


#: The head options of `ETFActorCriticPolicy` (``policy_kwargs``) and their defaults: `acpg_lab.ETFHead`'s own
#: options, each prefixed ``head_`` (``head_normalize`` is ETFHead's ``normalize``, and so on).
HEAD_OPTIONS: dict[str, Any] = {f"head_{name}": default for name, default in _etf_options().items()}


def _pi_path(policy: ActorCriticPolicy) -> list[nn.Module]:
    """The modules that produce the policy's latent features, in order (the extractor's when ``net_arch`` has
    no policy layers)."""
    return list(policy.mlp_extractor.policy_net) or list(policy.pi_features_extractor.modules())


def _last_activation(modules: list[nn.Module]) -> str | None:
    """"relu" or "tanh": the last such module on the path (None if there is none)."""
    for module in reversed(modules):
        if isinstance(module, nn.Tanh):
            return "tanh"
        if isinstance(module, nn.ReLU):
            return "relu"
    return None



class ETFActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy with a fixed simplex-ETF action layer (ACPG): ``action_net`` is an
    `acpg_lab.ETFHead` on the policy's latent features, so logits = scale * W h with W fixed.

    Everything else (features extractor, ``net_arch``, value network, optimiser) is SB3's `ActorCriticPolicy`,
    and it takes all of that class's arguments. The frame is a buffer (``action_net.weight``, ``[K, d]`` with d the
    last width of ``net_arch["pi"]``, or the features extractor's output when that list is empty): in the policy's
    ``state_dict``, so ``model.save`` / ``PPO.load`` keep it, and never in ``parameters()``, so the optimiser never
    changes it. Only ``head_bias=True`` adds parameters (a learnable per-action bias, initialised to 0).
    Discrete action spaces only: anything else raises ValueError.

    **Orientation.** The default ``head_seeds=None`` (ETFHead's default) is the canonical frame, which lies on the
    first K-1 of the d features: the head reads only those. With SB3's Tanh features that caps the logit gap (K = 2,
    scale 1: ``logits = (h_1, -h_1)``, so no action gets more than 1/(1 + e^-2) = 0.88), and the policy stays
    stochastic: measured in notebook 05 (PPO, rl-zoo settings), greedy returns are unaffected but sampled ones are
    lower than the learnable policy's, which ``head_seeds=<int>`` (a random orientation over all d features, as
    acpg_lab's own agents use) removes. With ReLU features (NatureCNN, ``activation_fn=nn.ReLU``), which are
    nonnegative, the canonical frame leaves some actions unreachable altogether; the policy warns when it sees this.

    The head options are those of `acpg_lab.ETFHead`, prefixed ``head_``, with the same defaults
    (`HEAD_OPTIONS`); ``head_seeds`` takes None or one int here (SB3 trains one seed per model). Their documentation,
    ETFHead's own:

    Args:
"""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                 lr_schedule: Callable[[float], float], *args: Any,
                 head_seeds: int | None = HEAD_OPTIONS["head_seeds"],
                 head_normalize: bool = HEAD_OPTIONS["head_normalize"],
                 head_scale: float = HEAD_OPTIONS["head_scale"],
                 head_bias: bool = HEAD_OPTIONS["head_bias"], **kwargs: Any) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(
                f"ETFActorCriticPolicy needs a Discrete action space (a simplex ETF has one vector per action), got "
                f"{action_space}; continuous or multi-discrete actions have no fixed-ETF head here: use SB3's "
                f"MlpPolicy for them")
        if head_seeds is not None and (isinstance(head_seeds, bool) or not isinstance(head_seeds, int | np.integer)
                                       or not 0 <= head_seeds <= MAX_HEAD_SEED):
            raise ValueError(f"head_seeds must be None (canonical orientation) or one int in [0, {MAX_HEAD_SEED}] (a "
                             f"random orientation); an SB3 model trains one seed, so it has one frame. Got "
                             f"{head_seeds!r}")
        # the head's options, checked as ETFHead checks them, before SB3 builds any network
        check_bool("head_normalize", head_normalize)
        check_bool("head_bias", head_bias)
        if isinstance(head_scale, bool) or not isinstance(head_scale, numbers.Real) or not math.isfinite(head_scale) \
                or head_scale <= 0:
            raise ValueError(f"head_scale must be > 0 and finite (a number, not a bool), got {head_scale!r}")
        self.head_options = dict(head_seeds=None if head_seeds is None else int(head_seeds),
                                 head_normalize=head_normalize, head_scale=head_scale, head_bias=head_bias)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Callable[[float], float]) -> None:
        super()._build(lr_schedule)  # SB3's networks, a linear action_net, and the optimiser over all of them
        self.action_net = ETFHead(self.mlp_extractor.latent_dim_pi, int(self.action_space.n),
                                  **{name.removeprefix("head_"): value for name, value in self.head_options.items()})
        # the optimiser again, now without the linear layer's parameters (and with the bias, if any)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        if self.head_options["head_seeds"] is None and _last_activation(_pi_path(self)) == "relu":
            warnings.warn(
                "ETFActorCriticPolicy: the policy's features end in a ReLU (nonnegative) and head_seeds=None puts the "
                "canonical ETF on the first K-1 feature axes only, where some actions can never get the highest logit "
                "(K = 2: one of the two; NatureCNN + K = 3: one of three, measured). Pass head_seeds=<int> for a "
                "random orientation that uses every feature, as acpg_lab's own agents do.", UserWarning, stacklevel=2)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.head_options}


ETFActorCriticPolicy.__doc__ = (ETFActorCriticPolicy.__doc__ or "") + _etf_option_docs() + "\n"


class ETFActorCriticCnnPolicy(ETFActorCriticPolicy):
    """`ETFActorCriticPolicy` with SB3's NatureCNN features extractor by default (image observations), like SB3's
    ``CnnPolicy``: the ETF sits on the CNN's 512 ReLU features (``net_arch`` defaults to none for NatureCNN), so
    pass ``head_seeds=<int>`` (see `ETFActorCriticPolicy`)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                 lr_schedule: Callable[[float], float], *args: Any,
                 features_extractor_class: type = NatureCNN, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, lr_schedule, *args,
                         features_extractor_class=features_extractor_class, **kwargs)
