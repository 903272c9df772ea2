"""The known-optimal environments (`acpg_lab.optimal_envs`) as tensor ops on any device: `BatchedKnownOptimal`'s
tables (observations, optimal actions, transitions, the state distribution's CDF) copied to the device once, and
its step as gathers and ``searchsorted``, exact integer and table arithmetic, so given the same states the
observations, rewards, flags and labels are the numpy version's bits.

States are sampled as numpy's ``Generator.choice(p=probs)`` samples them (``cdf.searchsorted(u, side="right")``),
from the per-environment counter streams instead of gymnasium's generator: the bandit draws every environment's
next state each step, both draw a start state on reset. A non-stationary bandit's labels follow its schedule at
the environments' clock, which the host counts (every call steps every environment); when the phase changes the
new labels go to the device without blocking (through pinned memory on CUDA).
"""

from __future__ import annotations

import numpy as np
import torch

from acpg_lab.batched_envs.device import DeviceEnv
from acpg_lab.batched_envs.known_optimal import BatchedKnownOptimal

__all__ = ["TorchKnownOptimal"]


class TorchKnownOptimal(DeviceEnv):
    """``ActionBandit``, ``IdealGrid`` and ``ShiftingBandit`` vector envs, ``S x E`` of them on ``device``."""

    def __init__(self, *, host: BatchedKnownOptimal, device: torch.device | str) -> None:
        super().__init__(host=host, device=device)
        layout, self.bandit, self.schedule = host.layout, host.bandit, host.schedule
        self._observations = self._upload(layout.observations)
        self._cdf = self._upload(host.cdf)
        self._labels_table = self._upload(layout.optimal_actions, dtype=torch.int64)
        if not self.bandit:
            self._transitions = self._upload(layout.transitions, dtype=torch.int64)
            self._step_cost, self._goal = float(layout.step_cost), int(layout.goal)
        self.states = torch.zeros(self.num_seeds * self.num_envs, dtype=torch.int64, device=self.device)
        self.clock = 0  #: step calls since reset, counted on the host
        self._phase = self._phase_at(0)

    def _upload(self, table: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``table`` on the device, without making the host wait (pinned memory, non-blocking, on CUDA)."""
        host = torch.as_tensor(np.array(table), dtype=dtype)  # a copy: the layouts are read-only
        if self.device.type == "cpu":
            return host
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True)

    def _phase_at(self, clock: int) -> int | None:
        return None if self.schedule is None else self.schedule.phase(clock)

    def _follow_schedule(self) -> None:
        """Upload the labels of the schedule's phase at the current clock, if it changed (host-side check)."""
        phase = self._phase_at(self.clock)
        if phase != self._phase:
            self._phase = phase
            self._labels_table = self._upload(self.schedule.optimal_actions(self.clock), dtype=torch.int64)

    def _choice(self, u: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self._cdf, u, right=True)

    def reset(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.clock = 0
        self._follow_schedule()
        return super().reset()

    def _reset(self, mask: torch.Tensor) -> None:
        self.states = torch.where(mask, self._choice(self.streams.rand(mask)), self.states)

    def _step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bandit:
            reward = (action == self._labels_table[self.states]).to(torch.float64)
            self.states = self._choice(self.streams.rand(self._everyone))
            terminated = torch.zeros_like(self.prev_done)
        else:
            moved = self._transitions[self.states, action]
            self.states = torch.where(self.prev_done, self.states, moved)  # a reset step ignores its action
            # float32, as the numpy vector env's rewards (a step cost such as 0.01 is rounded to float32 there)
            reward = torch.full_like(self.states, -self._step_cost, dtype=torch.float32)
            terminated = self.states == self._goal
        self.clock += 1
        self._follow_schedule()
        return reward, terminated

    def observe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The states' observations and their optimal actions (``info["optimal_action"]``), ``[S, E, ...]``."""
        return self._shape(self._observations[self.states]), self._shape(self._labels_table[self.states])

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {"states": self.states}

    def get_state(self) -> dict:
        return {**super().get_state(), "clock": self.clock}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.clock = int(state["clock"])
        self._follow_schedule()
