"""The one seed scheme: every integer seed a training seed's run draws from (`derived_seeds`), and the network's
initialisation and head seeds (`model_seeds`) under the current scheme or the legacy one that stored results
were trained with.

Seed schemes (`TrainConfig.seed_scheme`):

- ``"derived"`` (new runs): the init and head streams come from ``np.random.SeedSequence(seed)``, like the
  environment, action and evaluation streams (`derived_seeds`); another ``init_offset`` (the plasticity probe's
  differently initialised target) uses the SeedSequence of ``seed`` with ``spawn_key=(init_offset,)``.
- ``"legacy"`` (compatibility): ``seed * 7919 + 1 + 2 * init_offset`` for the init stream and
  ``seed * 7919 + 2 + 2 * init_offset`` for the head, the streams of every run stored before the field existed. A
  stored config without ``seed_scheme`` reads as ``"legacy"`` (`STORED_DEFAULTS`), so stored runs, checkpoints and
  evidence pieces stay loadable and comparable without retraining.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEED_SCHEMES", "STORED_DEFAULTS", "derived_seeds", "model_seeds"]

SEED_SCHEMES = ("derived", "legacy")

#: what a stored config that lacks a field meant when it was written (fields added with a new default that
#: changes results): applied before a stored config is loaded or compared with a current one
STORED_DEFAULTS: dict[str, object] = {"seed_scheme": "legacy"}


def derived_seeds(seed: int) -> dict[str, int]:
    """Independent integer seeds for one training seed's environments (``env``), action sampling (``act``),
    evaluation (``eval``), network initialisation (``init``) and head (``head``), a function of the training seed
    alone (``init`` and ``head`` are used by the ``"derived"`` seed scheme)."""
    env, act, evaluation, init, head = np.random.SeedSequence(int(seed)).generate_state(5)
    return dict(env=int(env), act=int(act), eval=int(evaluation), init=int(init), head=int(head))


def model_seeds(seed: int, init_offset: int = 0, scheme: str = "derived") -> tuple[int, int]:
    """``(init, head)``: the seeds of one training seed's initialisation stream and of its head under
    ``scheme`` (see the module docstring); ``init_offset`` selects another, independent initialisation."""
    s, offset = int(seed), int(init_offset)
    if scheme == "legacy":
        return s * 7919 + 1 + 2 * offset, s * 7919 + 2 + 2 * offset
    if scheme != "derived":
        raise ValueError(f"seed_scheme must be one of {SEED_SCHEMES}, got {scheme!r}")
    if offset == 0:
        seeds = derived_seeds(s)
        return seeds["init"], seeds["head"]
    init, head = np.random.SeedSequence(s, spawn_key=(offset,)).generate_state(2)
    return int(init), int(head)
