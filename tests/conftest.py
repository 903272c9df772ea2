"""Shared test settings.

Small-MLP training is bound by Python overhead: one torch thread per pytest-xdist worker is the fastest and most
repeatable setting on CI's two cores (and the histories compared in determinism tests use it too).
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Tests that draw from torch's global RNG see the same numbers whatever ran before them (xdist order)."""
    torch.manual_seed(0)
    yield
