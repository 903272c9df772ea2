"""acpg_lab: action collapse, fixed simplex-ETF heads (ACPG), PPO representation collapse and PFO.

    import acpg_lab as al
    run = al.train(al.TrainConfig(env_id="CartPole-v1", algo="ppo", head="etf", seeds=(0, 1, 2, 3)))
    run.history            # a row per (seed, update)
    run.evaluate(10)       # greedy returns per seed on unseen environment seeds
"""

from importlib.metadata import version

from acpg_lab import metrics, optimal_envs, profiles  # optimal_envs registers the acpg_lab/ environment ids
from acpg_lab.config import TrainConfig
from acpg_lab.etf import ETFHead, LinearHead, RandomHead, etf_error, simplex_etf
from acpg_lab.metrics import action_collapse, plasticity_probe, representation, trust_region
from acpg_lab.networks import Actor, ActorCritic
from acpg_lab.run import Run
from acpg_lab.training import train

__version__ = version("acpg-lab")
__all__ = ["Actor", "ActorCritic", "ETFHead", "LinearHead", "RandomHead", "Run", "TrainConfig", "action_collapse",
           "etf_error", "metrics", "optimal_envs", "plasticity_probe", "profiles", "representation", "simplex_etf",
           "train", "trust_region", "__version__"]
