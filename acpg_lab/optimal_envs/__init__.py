"""Environments whose optimal action is known in every state, for watching action collapse happen (or not).

Action collapse (arXiv 2509.02737) was seen without a fixed ETF head only under three conditions: (1) a
discrete, fully explored state space, (2) balanced optimal-action groups (each action optimal in equally many
states) and (3) uniform state visitation. The environments here meet all three by default, and each
registered variant breaks exactly one of them:

======================================== ==================================================================
id                                       setting
======================================== ==================================================================
``acpg_lab/ActionBandit-v0``             all three conditions hold (exactly uniform visitation)
``acpg_lab/ActionBandit-imbalanced-v0``  (2) broken: action k is optimal in about exp(-k) of the states
``acpg_lab/ActionBandit-zipf-v0``        (3) broken: states shown with Zipf frequencies inside each group
``acpg_lab/ActionBandit-dense-v0``       all three hold, but the 32 states are shown as fixed random
                                         16-D vectors instead of one-hot: see below
``acpg_lab/IdealGrid-v0``                sequential version of the ideal setting, with exploring starts
``acpg_lab/IdealGrid-fixedstart-v0``     (1) broken: one fixed start, so an agent sees only its own path
``acpg_lab/ShiftingBandit-v0``           non-stationary: 256 states in 32-D whose optimal actions are re-drawn
                                         every 2048 steps of the environment's clock (plasticity stress)
======================================== ==================================================================

Why a dense variant: with one-hot observations every state enters the network along its own direction, so even
an *untrained* network's features of N states are nearly orthogonal, and their within-class deviations fall
almost entirely outside the (K-1)-dimensional span of the class means. The collapse statistics (``nc1``,
equinorm, equiangularity) then read as "collapsed" before any training (``nc1`` about 0.008 on the one-hot
bandit at initialisation). ``ActionBandit-dense-v0`` shows the 32 states as fixed Gaussian vectors in 16 dimensions
(fewer than the 64 features, more states than features), so states share input directions and an untrained
network's classes overlap: collapse has to be learned. Every collapse statement is measured against the
untrained network on the same states (``TrainConfig.diagnostics_null``); the one-hot bandit stays as the
documented contrast.

Every environment returns ``info["optimal_action"]`` for the observation it has just returned (from
``reset`` and from every ``step``; an int for a single environment, an int64 array ``[num_envs]`` for a
vector one), and ``info["state"]``, the index of that state. The one observation without an optimal action
is IdealGrid's goal (the terminal observation, on which no action is ever taken): its label is -1.

Each environment has a native numpy vector version (``...VectorEnv``) with gymnasium 1.x NEXT_STEP
autoreset: the step after an episode ends is a reset step that ignores the action (it is not even
validated), returns the reset observation, reward 0 and terminated = truncated = False.
``reset(seed=...)`` seeds one ``np.random.Generator`` that drives all sub-environments.

Importing this module registers the ids (`register_envs`), so ``gymnasium.make(id, **kwargs)`` and
``gymnasium.make_vec(id, num_envs, vectorization_mode="vector_entry_point", **kwargs)`` both work and pass
their keyword arguments to the constructors. Episode lengths are the environments' own (``horizon``,
``max_steps``), not a registered time limit, so changing them through kwargs is safe. What is known about the
optimum lives in ``env.unwrapped.layout`` (`BanditLayout`, `GridLayout`): the optimal action and the
observation of every state, the visitation distribution, the optimal return.

``ShiftingBandit`` (``nonstationary.py``) keeps every condition within a phase but changes the optimum over time:
the labels are a function of the environment's own step count (see that module), so each training seed's
environments shift on their own clock and the batched path reproduces them; ``layout`` is the current phase's.

Files: ``_base.py`` (checks and the vector-env bookkeeping both share), ``bandit.py``, ``grid.py``,
``nonstationary.py``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from acpg_lab.optimal_envs.bandit import ActionBandit, ActionBanditVectorEnv, BanditLayout, bandit_layout
from acpg_lab.optimal_envs.grid import ACTION_NAMES, GridLayout, IdealGrid, IdealGridVectorEnv, grid_layout
from acpg_lab.optimal_envs.nonstationary import ShiftingBandit, ShiftingBanditVectorEnv, ShiftSchedule

__all__ = [
    "ENV_IDS",
    "ACTION_NAMES",
    "BanditLayout",
    "GridLayout",
    "bandit_layout",
    "grid_layout",
    "ActionBandit",
    "ActionBanditVectorEnv",
    "IdealGrid",
    "IdealGridVectorEnv",
    "ShiftingBandit",
    "ShiftingBanditVectorEnv",
    "ShiftSchedule",
    "register_envs",
]

#: Registered ids -> (class name, constructor kwargs); one id per broken condition.
ENV_IDS: dict[str, tuple[str, dict[str, Any]]] = {
    "acpg_lab/ActionBandit-v0": ("ActionBandit", {}),
    "acpg_lab/ActionBandit-imbalanced-v0": ("ActionBandit", {"imbalance": 1.0}),
    "acpg_lab/ActionBandit-zipf-v0": ("ActionBandit", {"visitation": "zipf", "zipf_exponent": 1.0}),
    "acpg_lab/ActionBandit-dense-v0": ("ActionBandit", {"obs": "embedding", "embedding_dim": 16,
                                                       "states_per_action": 8}),
    "acpg_lab/IdealGrid-v0": ("IdealGrid", {}),
    "acpg_lab/IdealGrid-fixedstart-v0": ("IdealGrid", {"start": "fixed"}),
    "acpg_lab/ShiftingBandit-v0": ("ShiftingBandit", {}),
}



def register_envs() -> None:
    """Register the ids of `ENV_IDS` with gymnasium (idempotent: ids already registered are left alone).

    Each id has an ``entry_point`` (the single environment) and a ``vector_entry_point`` (the numpy vector
    environment) and no registered time limit: episode lengths are the constructors' own parameters.
    """
    for env_id, (name, kwargs) in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=f"{__name__}:{name}",
                     vector_entry_point=f"{__name__}:{name}VectorEnv", kwargs=dict(kwargs))


register_envs()
