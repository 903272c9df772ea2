"""What the evidence trains: every experiment's conditions (the config without seeds, the held-out seeds, how
they are split into pieces), defined once here and nowhere else.

Seeds: the settings (budgets, learning rates, the dense bandit's dimension) were chosen on seeds 0-9 in earlier
runs and in tuning; every experiment here uses held-out seeds (100+ for collapse, 200+ for heads; 16-31 for pfo,
whose setting seeds 0-15 chose in notebooks 03/04 and the logged searches).

Seed scheme: every condition trains with ``seed_scheme="legacy"`` (`EVIDENCE_SEED_SCHEME`, see `acpg_lab.seeds`),
the init and head streams its stored pieces were trained with, so that they stay the pieces of these conditions;
a condition may set another scheme in its config (its pieces must then be trained again).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from acpg_lab.metric_registry import require

__all__ = ["Condition", "EXPERIMENTS", "HEAD_ARMS", "HEAD_TASKS", "PFO_BASE", "SHIFTING_BASE", "PFO_SETTINGS",
           "PFO_BETAS", "PFO_EPOCHS", "PFO_COLUMNS",
           "CRITIC_COLUMNS", "REPLICATION_SEEDS", "RL_ZOO_LUNARLANDER", "HEAD_TASKS_TUNED", "EXPLORATION_EPSILONS",
           "EVIDENCE_SEED_SCHEME",
           "exploration_condition"]

#: the seed scheme of every condition that does not set one: that of the stored pieces (module docstring)
EVIDENCE_SEED_SCHEME = "legacy"


@dataclasses.dataclass(frozen=True)
class Condition:
    """One arm of an experiment: the config (without seeds) and the seeds it runs, in groups of ``group``."""

    config: dict
    seeds: tuple[int, ...]
    group: int = 10
    checkpoint_every: int = 0  #: updates between checkpoints of a piece in progress (long pieces: resume, not redo)
    keep: tuple[str, ...] | None = None  #: the history columns stored (None: all); dense diagnostics need fewer

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", {"seed_scheme": EVIDENCE_SEED_SCHEME, **self.config})

    def stored(self, history: pd.DataFrame) -> pd.DataFrame:
        return history if self.keep is None else history[[c for c in history.columns if c in self.keep]]

    def groups(self) -> list[tuple[int, ...]]:
        return [self.seeds[i:i + self.group] for i in range(0, len(self.seeds), self.group)]


COLLAPSE_SEEDS = tuple(range(100, 110))
HEAD_SEEDS = tuple(range(200, 210))
#: the four short tasks (minutes per arm) take 10 more held-out seeds, 20 in all: their differences are small
HEAD_SEEDS_SHORT = tuple(range(200, 220))
_DENSE = dict(obs="embedding", embedding_dim=16)
_COLLAPSE = dict(algo="ppo", head="linear", label_source="optimal", diagnostics_every=10, diagnostics_null=True,
                 lr=1e-3, total_steps=200_000)


def _collapse(env_id: str, **kw) -> Condition:
    return Condition(dict(_COLLAPSE, env_id=env_id, **kw), COLLAPSE_SEEDS)


#: The four head arms of the ETF comparison, all without a bias (ACPG's head has none): the learnable head as
#: usually initialised (gain 0.01), the learnable head with the fixed heads' initial logit scale, a fixed random
#: head (fixed, not equiangular) and the fixed ETF.
HEAD_ARMS = {"linear": dict(head="linear", head_bias=False),
             "linear_scaled": dict(head="linear", head_bias=False, head_init_gain=1.0),
             "random": dict(head="random"),
             "etf": dict(head="etf")}

#: (task name) -> (config shared by the arms, threshold of "solved" for steps-to-threshold). The last three take
#: CPU hours (LunarLander through gymnasium's Box2D, MinAtar's CNN): they run in pieces of 5 seeds, MinAtar's with
#: checkpoints, and the tables include a task once all its pieces are stored.
HEAD_TASKS = {
    "reinforce_cartpole": (dict(env_id="CartPole-v1", algo="reinforce", total_steps=300_000), 475.0),
    "a2c_cartpole": (dict(env_id="CartPole-v1", algo="a2c", total_steps=500_000), 475.0),
    "ppo_cartpole": (dict(env_id="CartPole-v1", algo="ppo", total_steps=150_000), 475.0),
    "ppo_acrobot": (dict(env_id="Acrobot-v1", algo="ppo", total_steps=500_000), -100.0),
    "ppo_lunarlander": (dict(env_id="LunarLander-v3", algo="ppo", total_steps=1_000_000), 100.0),
    "ppo_minatar_breakout": (dict(env_id="MinAtar/Breakout-v1", algo="ppo", total_steps=1_000_000), 10.0),
    "ppo_minatar_asterix": (dict(env_id="MinAtar/Asterix-v1", algo="ppo", total_steps=1_000_000), 5.0),
}
_LONG = {"ppo_lunarlander": 0, "ppo_minatar_breakout": 50, "ppo_minatar_asterix": 50}  # task -> checkpoint_every


def _heads() -> dict[str, Condition]:
    out = {}
    for task, (shared, _) in HEAD_TASKS.items():
        for arm, head in HEAD_ARMS.items():
            config = dict(shared, **head, diagnostics_every=25, diagnostics_null=True)
            out[f"{task}/{arm}"] = Condition(config, HEAD_SEEDS if task in _LONG else HEAD_SEEDS_SHORT,
                                             group=5 if task in _LONG else 10, checkpoint_every=_LONG.get(task, 0))
    return out


#: rl-baselines3-zoo's tuned PPO hyperparameters for LunarLander (hyperparameters/ppo.yml, ``LunarLander-v2``:
#: n_envs 16, n_steps 1024, batch_size 64, n_epochs 4, gamma 0.999, gae_lambda 0.98, ent_coef 0.01; the rest SB3's
#: PPO defaults: learning rate 3e-4 constant, clip 0.2, vf_coef 0.5, max_grad_norm 0.5, advantage normalisation,
#: separate [64, 64] tanh actor and critic). Its benchmark (benchmark.md): 242.1 +- 31.8 (deterministic policy,
#: one run) at 1M steps, our reference for the learnable-head baseline (results/evidence/plan.toml).
RL_ZOO_LUNARLANDER = dict(num_envs=16, rollout_steps=1024, minibatch_size=64, epochs=4, gamma=0.999,
                          gae_lambda=0.98, ent_coef=0.01, lr=3e-4, anneal_lr=False, clip_coef=0.2, vf_coef=0.5,
                          max_grad_norm=0.5, norm_adv=True, hidden_sizes=(64, 64), activation="tanh")
#: the tuned LunarLander comparison's task (config shared by the arms, threshold of "solved"), and fresh seeds
HEAD_TASKS_TUNED = {"ppo_lunarlander_zoo": (dict(env_id="LunarLander-v3", algo="ppo", total_steps=1_000_000,
                                                 **RL_ZOO_LUNARLANDER), 200.0)}
HEAD_SEEDS_TUNED = tuple(range(600, 623))


def _heads_tuned() -> dict[str, Condition]:
    """The four head arms on LunarLander with rl-baselines3-zoo's tuned hyperparameters (issue 24 item 5),
    23 fresh seeds each (results/evidence/plan.toml) in pieces of 8, diagnosed as the heads experiment."""
    return {f"{task}/{arm}": Condition(dict(shared, **head, diagnostics_every=25, diagnostics_null=True),
                                       HEAD_SEEDS_TUNED, group=8)
            for task, (shared, _) in HEAD_TASKS_TUNED.items() for arm, head in HEAD_ARMS.items()}


PFO_SEEDS = tuple(range(16, 32))
PFO_EPOCHS = (10, 20, 40, 80)
PFO_BETAS = (0.0, 0.1, 1.0, 10.0)
#: The stressed PPO setting of notebooks 03/04 (CartPole, ReLU, constant lr 1e-3, no entropy bonus), diagnosed
#: every 2nd update (the lead-lag tests need dense series) with the untrained null, snapshots for the probe.
PFO_BASE = dict(env_id="CartPole-v1", algo="ppo", head="linear", activation="relu", lr=1e-3, anneal_lr=False,
                ent_coef=0.0, clip_coef=0.2, total_steps=150_000, diagnostics_every=2, diagnostics_null=True,
                snapshot_every=100)
#: The non-stationary bandit where the uncentred rank fell below the null in the logged search
#: (results/rank_collapse_search: ReLU, 10 epochs, 12 phases).
SHIFTING_BASE = dict(env_id="acpg_lab/ShiftingBandit-v0", algo="ppo", head="linear", activation="relu", lr=1e-3,
                     anneal_lr=False, ent_coef=0.0, total_steps=196_608, diagnostics_every=2,
                     diagnostics_null=True, snapshot_every=16)


#: what a pfo piece stores of the history (diagnosed every 2nd update, so everything would be ~1.2 MB per cell):
#: the return, the losses, the actor's representation and its untrained null, the trust region
PFO_METRICS = require(("episode_return", "policy_entropy", "preact_change", "ratio_below_mean", "ratio_above_mean",
                       "frac_outside", "excess_ratio", "kl_old_new", "ratio_below_mean_adv_pos",
                       "ratio_below_mean_adv_neg", "frac_outside_adv_pos", "frac_outside_adv_neg"))
PFO_NULL_METRICS = require(("actor_effective_rank", "actor_approx_rank", "actor_srank", "actor_dead_neurons",
                            "actor_preactivation_norm", "actor_feature_norm"), null=True)
PFO_COLUMNS = ("seed", "update", "step", "episode_length", "episodes", "approx_kl", "clip_frac", "loss_value",
               "loss_policy", "entropy", "grad_norm_actor", "grad_norm_critic", *PFO_METRICS, *PFO_NULL_METRICS,
               *(f"null_{m}" for m in PFO_NULL_METRICS))


def _pfo() -> dict[str, Condition]:
    """Dose-response of issue 13 on held-out seeds 16-31 (seeds 0-15 chose the settings), one piece of 16 seeds
    per cell. Ordered so that the cells most claims rest on run first."""
    def cell(base: dict, **kw) -> Condition:
        return Condition(dict(base, **kw), PFO_SEEDS, group=16, keep=PFO_COLUMNS)

    out = {f"cartpole/e{e}_b0": cell(PFO_BASE, epochs=e) for e in PFO_EPOCHS}
    out |= {f"cartpole/e{e}_b1": cell(PFO_BASE, epochs=e, pfo_coef=1.0) for e in PFO_EPOCHS}
    out |= {f"shifting/e{e}_b{b:g}": cell(SHIFTING_BASE, epochs=e, pfo_coef=b) for e in (10, 40) for b in (0, 1)}
    out |= {f"cartpole/e40_{arm}_b{b:g}": cell(PFO_BASE, epochs=40, pfo_coef=b, **HEAD_ARMS[arm])
            for arm in ("linear", "etf") for b in (0, 1)}  # ETF x PFO: both arms without a bias
    out["cartpole/e40_shared_b0"] = cell(PFO_BASE, epochs=40, shared_trunk=True)
    out |= {f"cartpole/e{e}_b{b:g}": cell(PFO_BASE, epochs=e, pfo_coef=b) for b in (0.1, 10.0) for e in PFO_EPOCHS}
    out |= {f"cartpole/e{e}_all10": cell(PFO_BASE, epochs=e, pfo_coef=10.0, pfo_layers="all") for e in PFO_EPOCHS}
    out |= {f"shifting/e{e}_b10": cell(SHIFTING_BASE, epochs=e, pfo_coef=10.0) for e in (10, 40)}
    return out


#: the critic's representation statistics a replication cell keeps besides PFO_COLUMNS (the actor-vs-critic claim)
CRITIC_COLUMNS = tuple(f"critic_{m[len('actor_'):]}" for m in PFO_NULL_METRICS)  # diagnose logs critic_<statistic>
#: fresh seeds of the planned confirmatory replications (results/evidence/plan.toml, committed before they train)
REPLICATION_SEEDS = {"etf_pfo": tuple(range(300, 380)), "pfo_return": tuple(range(400, 448)),
                     "actor_critic": tuple(range(500, 547))}


def _replication() -> dict[str, Condition]:
    """The confirmatory replications of `results/evidence/plan.toml`, on fresh seeds, in pieces of 16: notebook
    04's 2 x 2 (head x PFO at 40 epochs), PFO's return at 80 epochs, and the epoch dose without PFO keeping the
    critic's statistics (actor vs critic). Same configs as the pfo cells they replicate; ordered as planned."""
    def cell(name: str, base: dict, keep: tuple[str, ...] = PFO_COLUMNS, **kw) -> Condition:
        return Condition(dict(base, **kw), REPLICATION_SEEDS[name], group=16, keep=keep)

    out = {f"etf_pfo/e40_{arm}_b{b:g}": cell("etf_pfo", PFO_BASE, epochs=40, pfo_coef=b, **HEAD_ARMS[arm])
           for arm in ("linear", "etf") for b in (0, 1)}
    out |= {f"actor_critic/e{e}_b0": cell("actor_critic", PFO_BASE, (*PFO_COLUMNS, *CRITIC_COLUMNS), epochs=e)
            for e in PFO_EPOCHS}
    out |= {f"pfo_return/e80_b{b:g}": cell("pfo_return", PFO_BASE, epochs=80, pfo_coef=b) for b in (0, 1)}
    return out


#: the pfo experiment's settings by environment (the tables group cells by setting: factors from stored configs)
PFO_SETTINGS = {PFO_BASE["env_id"]: "cartpole", SHIFTING_BASE["env_id"]: "shifting"}
#: the exploration ablation's epsilons; 0 is the heads experiment's Breakout run (same seeds and config)
EXPLORATION_EPSILONS = (0.0, 0.01, 0.1)


#: experiment -> condition -> `Condition`
EXPERIMENTS: dict[str, dict[str, Condition]] = {
    "collapse": {
        "onehot/balanced": _collapse("acpg_lab/ActionBandit-v0"),
        "onehot/imbalanced": _collapse("acpg_lab/ActionBandit-imbalanced-v0"),
        "onehot/zipf": _collapse("acpg_lab/ActionBandit-zipf-v0"),
        "dense/balanced": _collapse("acpg_lab/ActionBandit-dense-v0"),
        "dense/imbalanced": _collapse("acpg_lab/ActionBandit-v0", env_kwargs=dict(_DENSE, imbalance=1.0)),
        "dense/zipf": _collapse("acpg_lab/ActionBandit-v0", env_kwargs=dict(_DENSE, visitation="zipf")),
        "dense/balanced_etf": _collapse("acpg_lab/ActionBandit-dense-v0", head="etf"),
        "grid/exploring_starts": _collapse("acpg_lab/IdealGrid-v0"),
    },
    "heads": _heads(),
    "pfo": _pfo(),
    "replication": _replication(),
    "heads_tuned": _heads_tuned(),
    # the paper's exploration ablation on one MinAtar game: epsilon-greedy on top of the policy; epsilon = 0 is
    # heads/ppo_minatar_breakout (same seeds and config), so only 0.01 and 0.1 are trained here
    "exploration": {f"eps{eps}/{arm}": Condition(dict(HEAD_TASKS["ppo_minatar_breakout"][0], **HEAD_ARMS[arm],
                                                      explore_epsilon=eps, diagnostics_every=25,
                                                      diagnostics_null=True),
                                                 HEAD_SEEDS, group=5, checkpoint_every=50)
                    for eps in EXPLORATION_EPSILONS[1:] for arm in ("linear", "etf")},
}


def exploration_condition(eps: float, arm: str) -> tuple[str, str]:
    """(experiment, condition) of one arm of the exploration ablation."""
    return ("heads", f"ppo_minatar_breakout/{arm}") if eps == 0 else ("exploration", f"eps{eps}/{arm}")
