"""`TrainConfig`: every knob of a training run, per-environment presets, and validation of bad input.

Fields left at ``None`` take the value of the preset for (environment, algorithm) if there is one, else the
generic default of the algorithm (its `AlgoSpec.defaults` in `acpg_lab.algorithms.ALGORITHMS`); a value you set
always wins. ``resolve()`` returns the config with every field filled in, and that resolved config is what a run
records. Every check goes through `acpg_lab.checks`, so a bad value is refused with its field's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from acpg_lab.algorithms import ALGORITHMS, algo_spec
from acpg_lab.checks import check_bool, check_choice, check_int, check_number
from acpg_lab.envs import is_atari, probe_spaces, resolve_env_id
from acpg_lab.networks import ENGINES, check_engine, check_seeds
from acpg_lab.seeds import SEED_SCHEMES

ALGOS = tuple(ALGORITHMS)  #: the ``algo`` choices: the names of `acpg_lab.algorithms.ALGORITHMS`
HEADS = ("linear", "etf", "random")
ACTIVATIONS = ("tanh", "relu")
NETWORKS = ("auto", "mlp", "cnn", "nature")
PFO_LAYERS = ("last", "all")
LABEL_SOURCES = ("greedy", "expert", "optimal")
ON_NONFINITE = ("stop", "freeze_seed")
RESUME_ENVS = ("exact", "reseed")

NETWORK_DEFAULTS: dict[str, Any] = dict(hidden_sizes=(64, 64), activation="tanh")

#: Tuned values per (environment, algorithm); keys absent here fall back to the algorithm's `AlgoSpec.defaults`.
PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # rl-baselines3-zoo's CartPole PPO with an entropy bonus of 0.01 instead of 0: measured here, greedy 500 on
    # 16/16 seeds per head within 100k steps (without the bonus, 7/8 seeds: one stalled at 266).
    ("CartPole-v1", "ppo"): dict(num_envs=8, rollout_steps=32, epochs=20, minibatch_size=256, lr=1e-3,
                                 gamma=0.98, gae_lambda=0.8, ent_coef=0.01),
    # Measured here: greedy 500 on 4/4 seeds after 200k steps (4 envs x 512-step rollouts, lr 3e-3).
    ("CartPole-v1", "reinforce"): dict(num_envs=4, rollout_steps=512, lr=3e-3),
}

#: Tuned values for every ALE id (``ALE/...``), per algorithm: CleanRL's ppo_atari with the PFO paper's network
#: (Nature CNN, 512-unit ReLU feature layer) and clipped rewards.
ATARI_PRESETS: dict[str, dict[str, Any]] = {
    "ppo": dict(num_envs=8, rollout_steps=128, epochs=4, minibatch_size=256, lr=2.5e-4, clip_coef=0.1,
                ent_coef=0.01, hidden_sizes=(512,), activation="relu"),
}


def resolve_network(network: str, env_id: str, obs_shape: Sequence[int]) -> str:
    """``network`` with "auto" resolved: "nature" for ALE ids, "cnn" for other image observations ``[H, W, C]``,
    else "mlp" (what `acpg_lab.run.build_model` builds)."""
    if network != "auto":
        return network
    return "nature" if is_atari(env_id) else "cnn" if len(obs_shape) == 3 else "mlp"


@dataclass
class TrainConfig:
    """One training run: S seeds of one algorithm on one environment, trained as one seed-batched model.

    Fields are grouped: what to train, where, how experience is collected, how the algorithm learns from it
    (the fields where REINFORCE, A2C and PPO differ), the network, PFO, and what is recorded along the way.
    """

    # ---------------------------------------------------------------- what to train
    env_id: str = "CartPole-v1"
    """gymnasium id with a discrete action space; MinAtar ("MinAtar/Breakout-v1") and acpg_lab/ ids need no set-up."""
    algo: str = "ppo"
    """"reinforce" (Monte-Carlo returns), "a2c" (n-step actor-critic), "ppo" (clipped surrogate, GAE) or "grpo"
    (PPO's surrogate on critic-free advantages that compare the episodes of a rollout): `acpg_lab.algorithms`
    tables what each one does."""
    head: str = "linear"
    """Action-selection layer: "linear" (learnable), "etf" (fixed simplex ETF, ACPG) or "random" (fixed random unit
    rows: the control that is fixed like the ETF but not equiangular)."""
    seeds: tuple[int, ...] = (0,)
    """Independent seeds, trained in one batch; a seed's history does not depend on the others."""
    total_steps: int = 100_000
    """Environment steps per seed (all its parallel environments together)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to the environment constructor."""

    # ---------------------------------------------------------------- where
    device: str = "auto"
    """"cpu", "cuda", or "auto" (cuda if available). Small MLPs are usually fastest on the CPU."""
    num_threads: int | None = 1
    """torch CPU threads while training (restored after). Small networks are fastest on one, and on a busy machine
    several threads can be many times slower; None keeps torch's own setting."""
    engine: str = "reference"
    """How the backbones and the loss compute (`acpg_lab.networks.ActorCritic.use_engine`). "reference": every
    layer through autograd, bitwise the path every stored result was made with. "fused": MLP actor and critic
    backbones as one hand-written autograd node (`acpg_lab.fused`), a block of seeds at a time, and MinAtar CNNs as
    the reference's layers; both with torch's own tanh kernel and the loss as one hand-differentiated node where it
    applies (`acpg_lab.fused_loss`): a faster update at small widths, the same function to float32 rounding, so runs
    of the two engines agree only to rounding (each is deterministic, and a seed's run does not depend on the other
    seeds). MLP and MinAtar CNN networks (not the Atari "nature" CNN); a stored config without this field ran
    "reference". Fused runs made before 2026-12-04 (commit 35ee035) computed the loss through autograd: they differ
    from today's by rounding."""

    # ---------------------------------------------------------------- collecting experience
    num_envs: int | None = None
    """Parallel environments per seed: more gives less correlated batches but fewer updates per step."""
    rollout_steps: int | None = None
    """Steps per environment between updates (REINFORCE: long enough to finish episodes)."""
    gamma: float | None = None
    """Discount factor."""
    gae_lambda: float | None = None
    """GAE lambda (PPO, A2C): lower trades variance for bias."""
    reward_clip: bool | None = None
    """Train on sign(reward), the Atari convention (logged returns stay game scores); default: True for ALE ids."""
    explore_epsilon: float = 0.0
    """With this probability an action is uniformly random instead of sampled from the policy (epsilon-greedy on
    top of the policy, the ACPG paper's exploration ablation); PPO's ratio then divides by this mixture's
    probability. 0 = off; more explores more states at the cost of acting worse while training."""

    # ---------------------------------------------------------------- learning: where the algorithms differ
    epochs: int | None = None
    """Passes over each rollout (PPO 4, A2C and REINFORCE 1): more reuses data harder (and is the PFO paper's
    collapse stressor)."""
    minibatch_size: int | None = None
    """Samples per seed in one gradient step (PPO 256; A2C and REINFORCE: the whole rollout, one step per epoch).
    Smaller gives more, noisier steps per rollout; samples beyond the last full minibatch are left out."""
    shuffle: bool | None = None
    """Draw a fresh random order of the rollout each epoch before cutting it into minibatches (PPO True, A2C and
    REINFORCE False: with one minibatch of the whole rollout the order does not matter)."""
    norm_adv: bool | None = None
    """Normalise advantages to zero mean and unit std per seed and minibatch (PPO and REINFORCE True, A2C False
    as in SB3): a step size independent of the reward scale, at the price of a biased gradient on tiny batches."""
    reinforce_baseline: bool = True
    """REINFORCE subtracts a learned state-value baseline (lower variance, same expected gradient)."""
    lr: float | None = None
    """Adam learning rate (eps 1e-5)."""
    anneal_lr: bool | None = None
    """Decay the learning rate linearly to 0 over the run."""
    clip_coef: float | None = None
    """Clip range epsilon of the probability ratio (PPO, GRPO; unused by A2C and REINFORCE)."""
    ent_coef: float | None = None
    """Entropy bonus coefficient."""
    vf_coef: float | None = None
    """Value-loss coefficient."""
    max_grad_norm: float | None = None
    """Gradient-norm clip, per network (actor, critic) and per seed; 0 = no clipping."""

    # ---------------------------------------------------------------- the network
    hidden_sizes: tuple[int, ...] | None = None
    """Hidden layer widths of actor and critic; the last is the feature dimension the head sees."""
    activation: str | None = None
    """"tanh" or "relu"."""
    network: str = "auto"
    """"mlp", "cnn" (MinAtar images), "nature" (Atari frame stacks) or "auto" (nature for ALE ids, cnn for other
    3-D observations, else mlp)."""
    shared_trunk: bool = False
    """Actor and critic share the backbone (the critic's loss then shapes the policy's features too)."""
    head_normalize: bool | None = None
    """L2-normalise features before the head (default: False for both heads)."""
    head_scale: float | None = None
    """Fixed logit scale (inverse temperature) applied after the head (default 1)."""
    head_bias: bool | None = None
    """Learnable per-action bias (default: True for linear, False for the fixed heads)."""
    head_init_gain: float = 0.01
    """Initial row norm of the linear head: 0.01 (CleanRL/SB3; starts near the uniform policy) or 1 (the fixed
    heads' row norm, so early logits, and the backbone's early gradients, are as large as the ETF arm's)."""
    seed_scheme: str = "derived"
    """Where the network's init and head seeds come from (`acpg_lab.seeds`): "derived" (the training seed's
    SeedSequence, like every other stream) or "legacy" (``seed * 7919 + ...``, the streams of runs stored before
    this field existed; a stored config without it reads as "legacy", so those stay valid)."""

    # ---------------------------------------------------------------- PFO
    pfo_coef: float = 0.0
    """PFO beta (PPO and GRPO, the algorithms that reuse a rollout for several epochs): penalty on the change of
    the actor's pre-activations from collection time; 0 = off."""
    pfo_layers: str = "last"
    """PFO on the "last" hidden layer's pre-activations or on "all" hidden layers' (concatenated)."""

    # ---------------------------------------------------------------- what is recorded
    diagnostics_every: int = 0
    """Every so many updates, log representation, trust-region and action-collapse metrics (0 = never)."""
    diagnostics_null: bool = False
    """With diagnostics, also log the representation and action-collapse metrics of the untrained actor (the
    initial weights, kept frozen) on the same states and labels, as ``null_<metric>`` columns: the null every
    collapse statement is measured against. About doubles the diagnostics' cost."""
    trust_region_clip: float | None = None
    """The clip range epsilon the trust-region diagnostics measure ratios against: PPO's ``clip_coef`` by default,
    0.2 for A2C and REINFORCE (which clip nothing, so the statistics say how far PPO's range would be left)."""
    label_source: str = "greedy"
    """Action-collapse labels: "greedy" (agent's argmax), "expert" (``expert_run``'s argmax), "optimal" (env info)."""
    expert_run: str | None = None
    """Directory of a saved run (`Run.save`) whose seed-0 greedy policy labels states when label_source="expert"."""
    snapshot_every: int = 0
    """Keep the actor's weights before training and every so many updates (0 = never), for the plasticity probe."""
    snapshot_dir: str | None = None
    """Write snapshots there with torch.save instead of keeping them in memory."""

    # ---------------------------------------------------------------- checkpointing and safety
    checkpoint_every: int = 0
    """Every so many updates, write the complete training state to the run directory (``train(cfg,
    run_dir=...)``), so a killed run resumes exactly where it was (0 = never). Shorter loses less work to a crash
    and costs more writes (about a millisecond per MB of state); it never changes what is trained."""
    resume_envs: str = "exact"
    """How a checkpoint carries the environments: "exact" stores their complete internal state, so a resumed run
    is bitwise the uninterrupted one (refused when training starts for environments whose state cannot be read:
    the ALE ids, Box2D ids such as LunarLander); "reseed" stores none, and on resume restarts every environment
    with fresh episodes seeded from its seed and the update (the episodes running at the checkpoint are lost and
    the run is no longer bitwise the uninterrupted one; weights, Adam, every random stream of the agent and the
    history still continue exactly; resuming twice from one checkpoint gives the same run)."""
    on_nonfinite: str = "stop"
    """What a non-finite loss, gradient or parameter of one seed does: "stop" raises `NonFiniteError` naming the
    seed, update and quantity (the model keeps its last good state); "freeze_seed" restores that seed's last good
    state, keeps it fixed from then on (history column ``frozen``) and lets the other seeds finish."""

    # ---------------------------------------------------------------- resolution and validation
    def resolve(self) -> TrainConfig:
        """Validate, then return a copy with every ``None`` replaced by the preset or generic default.

        Raises ValueError naming the bad field. Only a throw-away environment is created (to read the
        observation and action spaces), after every check that needs none.
        """
        resolve_env_id(self.env_id)  # registry lookup only
        self._check_choices()
        cfg = self.filled()
        cfg._check_values()
        cfg._check_env()
        return cfg

    def filled(self) -> TrainConfig:
        """A copy with every ``None`` replaced by the preset or generic default, without any validation (`resolve`
        validates too; `Run.load` uses this to fill in fields added after a run was saved)."""
        algo_defaults = algo_spec(self.algo).defaults
        family = ATARI_PRESETS.get(self.algo, {}) if is_atari(self.env_id) else {}
        preset = PRESETS.get((self.env_id, self.algo), family)
        filled = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                if f.name in preset:
                    value = preset[f.name]
                elif f.name in algo_defaults:
                    value = algo_defaults[f.name]
                elif f.name in NETWORK_DEFAULTS:
                    value = NETWORK_DEFAULTS[f.name]
                elif f.name == "reward_clip":
                    value = is_atari(self.env_id)
                elif f.name == "head_normalize":
                    value = False
                elif f.name == "head_scale":
                    value = 1.0
                elif f.name == "head_bias":
                    value = self.head == "linear"
            filled[f.name] = value
        filled["seeds"] = tuple(int(s) for s in self.seeds)
        filled["hidden_sizes"] = tuple(filled["hidden_sizes"])
        if filled["minibatch_size"] is None:  # A2C, REINFORCE: one step on the whole rollout
            filled["minibatch_size"] = filled["num_envs"] * filled["rollout_steps"]
        if filled["trust_region_clip"] is None:
            filled["trust_region_clip"] = filled["clip_coef"]
        return TrainConfig(**filled)

    def _check_choices(self) -> None:
        algo_spec(self.algo)  # an unknown algorithm: "did you mean"
        for name, allowed in (("head", HEADS), ("network", NETWORKS)):
            check_choice(name, getattr(self, name), allowed)
        if self.activation is not None:
            check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        check_choice("engine", self.engine, ENGINES)
        check_choice("seed_scheme", self.seed_scheme, SEED_SCHEMES)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no GPU here; use device='cpu' or 'auto'")
        check_seeds("seeds", self.seeds, self.seed_scheme)  # integers in the range the scheme's streams accept
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a dict, got {self.env_kwargs!r}")
        check_choice("pfo_layers", self.pfo_layers, PFO_LAYERS)
        check_choice("label_source", self.label_source, LABEL_SOURCES)
        if self.label_source == "expert":
            from pathlib import Path

            if self.expert_run is None or not (Path(self.expert_run) / "model.pt").is_file():
                raise ValueError(f"label_source='expert' needs expert_run = a directory written by Run.save, got "
                                 f"{self.expert_run!r}")
        check_choice("on_nonfinite", self.on_nonfinite, ON_NONFINITE)
        check_choice("resume_envs", self.resume_envs, RESUME_ENVS)

    def _check_values(self) -> None:
        """Check every number and flag of the filled config, through `acpg_lab.checks` (so booleans are refused
        where a number belongs), and store it as a plain int, float or bool."""
        def number(name: str, minimum: float, *, strict: bool, maximum: float | None = None,
                   strict_maximum: bool = False) -> None:
            setattr(self, name, check_number(name, getattr(self, name), minimum=minimum, strict=strict,
                                             maximum=maximum, strict_maximum=strict_maximum))

        for name in ("total_steps", "num_envs", "rollout_steps", "epochs", "minibatch_size"):
            setattr(self, name, check_int(name, getattr(self, name), 1))
        for name in ("diagnostics_every", "snapshot_every", "checkpoint_every"):
            setattr(self, name, check_int(name, getattr(self, name), 0))  # 0 = off
        if self.num_threads is not None:
            self.num_threads = check_int("num_threads (or None)", self.num_threads, 1)
        for name in ("lr", "head_scale", "head_init_gain"):
            number(name, 0.0, strict=True)
        for name in ("ent_coef", "vf_coef", "clip_coef", "max_grad_norm", "pfo_coef"):
            number(name, 0.0, strict=False)
        for name in ("gamma", "gae_lambda"):
            number(name, 0.0, strict=False, maximum=1.0)
        number("explore_epsilon", 0.0, strict=False, maximum=1.0, strict_maximum=True)
        for name in ("shuffle", "norm_adv", "anneal_lr", "reward_clip", "reinforce_baseline", "shared_trunk",
                     "head_normalize", "head_bias", "diagnostics_null"):
            setattr(self, name, check_bool(name, getattr(self, name)))
        if not self.hidden_sizes:
            raise ValueError(f"hidden_sizes must be a non-empty tuple of positive integers, got {self.hidden_sizes!r}")
        self.hidden_sizes = tuple(check_int(f"hidden_sizes (each of {self.hidden_sizes!r})", h, 1)
                                  for h in self.hidden_sizes)
        self._check_algorithm()
        number("trust_region_clip", 0.0, strict=True)  # after the algorithm's clip_coef, its default
        batch = self.num_envs * self.rollout_steps
        if self.minibatch_size > batch:
            raise ValueError(f"minibatch_size={self.minibatch_size} exceeds the rollout of num_envs * "
                             f"rollout_steps = {batch} steps per seed")
        if self.total_steps < batch:
            raise ValueError(f"total_steps={self.total_steps} is below one rollout (num_envs * rollout_steps = "
                             f"{batch}); nothing would be trained")

    def _check_algorithm(self) -> None:
        """What the algorithm's `AlgoSpec` allows: PFO only where it applies, a positive clip where it clips."""
        spec = algo_spec(self.algo)
        if self.pfo_coef > 0 and not spec.pfo:
            with_pfo = tuple(name for name, other in ALGORITHMS.items() if other.pfo)
            raise ValueError(f"pfo_coef > 0 needs an algorithm that reuses a rollout for several epochs, one of "
                             f"{with_pfo} (PFO regularises those epochs), got algo={self.algo!r}")
        if spec.clip and not self.clip_coef > 0:
            raise ValueError(f"clip_coef must be > 0 for algo={self.algo!r} (it clips the probability ratio), got "
                             f"{self.clip_coef!r}")

    def _check_env(self) -> None:
        obs_space, act_space, info = probe_spaces(self.env_id, self.env_kwargs, reset=self.label_source == "optimal")
        if self.label_source == "optimal" and "optimal_action" not in info:
            raise ValueError(f"label_source='optimal' needs an environment that publishes info['optimal_action'] "
                             f"(such as the acpg_lab/ ids); env_id={self.env_id!r} does not")
        if not hasattr(act_space, "n"):
            raise ValueError(f"env_id={self.env_id!r} has a {type(act_space).__name__} action space; acpg_lab "
                             "trains discrete (Discrete) action spaces only")
        k = int(act_space.n)
        check_engine(self.engine, network=resolve_network(self.network, self.env_id, obs_space.shape),
                     hidden_sizes=self.hidden_sizes)
        if self.network == "cnn" and len(obs_space.shape) != 3:
            raise ValueError(f"network='cnn' needs image observations [H, W, C]; env_id={self.env_id!r} "
                             f"observes shape {obs_space.shape}")
        if self.network == "nature" and (len(obs_space.shape) != 3 or min(obs_space.shape[1:]) < 36):
            raise ValueError(f"network='nature' needs frame stacks [C, H, W] of at least 36x36; "
                             f"env_id={self.env_id!r} observes shape {obs_space.shape}")
        if self.head == "etf" and self.hidden_sizes[-1] < k - 1:
            raise ValueError(f"hidden_sizes[-1]={self.hidden_sizes[-1]} is the ETF dimension and must be >= "
                             f"K - 1 = {k - 1} for the {k} actions of {self.env_id!r}")

    # ---------------------------------------------------------------- derived quantities
    @property
    def batch_size(self) -> int:
        """Steps per seed in one rollout."""
        return self.num_envs * self.rollout_steps

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
