"""acpg_lab: action collapse, fixed simplex-ETF heads (ACPG), PPO representation collapse and PFO."""

from acpg_lab.config import TrainConfig
from acpg_lab.etf import ETFHead, LinearHead, etf_error, simplex_etf
from acpg_lab.networks import ActorCritic
from acpg_lab.training import Run, train

__version__ = "0.1.0"
__all__ = ["ActorCritic", "ETFHead", "LinearHead", "Run", "TrainConfig", "etf_error", "simplex_etf", "train",
           "__version__"]
