"""Freeway for ``N`` environments at once, minatar's ``environments/freeway.py`` as tensor ops.

The chicken stands in column 4 and starts on the bottom row (9); it can move up or down one row, but only once
every 3 steps (a move restarts a timer at 3 that counts down each step). Reaching row 0 scores +1, sends the
chicken back to row 9 and re-draws every car's speed. Rows 1-8 each carry one car that starts in column 0; a car
of speed ``v`` (1 fastest .. 5 slowest, signed by its direction) moves one column every ``|v| + 1`` steps (a per-car
timer) and wraps around the screen edges. Each step, after the chicken's move, the cars are visited top to bottom:
a car on the chicken's cell, before or after its own move, sends the chicken back to row 9 (no penalty). The
episode terminates (no time-limit truncation: it is the game's own end) after 2500 steps, on the 2501st.

Random draws: at reset and at each score, ``randint(1, 6, 8)`` speeds (each with masked rejection) then
``rand(8)`` directions, ``sign(u - 0.5)``. Observation channels: chicken, car, and five trail channels, one per
speed, marking the cell a car came from.
"""

from __future__ import annotations

import torch

from acpg_lab.batched_envs.minatar.game import Game
from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["Freeway"]

PLAYER_SPEED, TIME_LIMIT = 3, 2500


class Freeway(Game):
    channels = 7
    minimal_actions = (0, 2, 4)  # n, u, d

    def __init__(self, *, num: int, streams: Streams, device: torch.device, ramping: bool = True) -> None:
        super().__init__(num=num, streams=streams, device=device, ramping=ramping)  # no difficulty ramp here
        zeros = torch.zeros(num, dtype=torch.int64, device=device)
        self.pos, self.move_timer, self.terminate_timer = zeros.clone(), zeros.clone(), zeros.clone()
        cars = torch.zeros(num, 8, dtype=torch.int64, device=device)
        self.car_x, self.car_timer, self.car_speed = cars.clone(), cars.clone(), cars.clone()

    def _randomize_cars(self, mask: torch.Tensor, *, initialize: bool) -> None:
        speeds = self.streams.randint_n(5, 8, mask) + 1
        speeds = speeds * torch.sign(self.streams.rand_n(8, mask) - 0.5).to(torch.int64)
        m = mask[:, None]
        self.car_timer = torch.where(m, speeds.abs(), self.car_timer)
        self.car_speed = torch.where(m, speeds, self.car_speed)
        if initialize:
            self.car_x = torch.where(m, 0, self.car_x)

    def reset(self, mask: torch.Tensor) -> None:
        self._randomize_cars(mask, initialize=True)
        self.pos = torch.where(mask, 9, self.pos)
        self.move_timer = torch.where(mask, PLAYER_SPEED, self.move_timer)
        self.terminate_timer = torch.where(mask, TIME_LIMIT, self.terminate_timer)

    def act(self, action: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ready = self.move_timer == 0
        up, down = (action == 2) & ready, (action == 4) & ready
        self.move_timer = torch.where(up | down, PLAYER_SPEED, self.move_timer)
        pos = torch.where(up, (self.pos - 1).clamp(min=0), self.pos)
        pos = torch.where(down, (pos + 1).clamp(max=9), pos)
        win = pos == 0
        if self._maybe(win):
            self._randomize_cars(live & win, initialize=False)
        pos = torch.where(win, 9, pos)
        car_x, car_timer = self.car_x.clone(), self.car_timer.clone()
        for i in range(8):  # in order: an earlier car's hit moves the chicken before later cars are checked
            lane = i + 1
            pos = torch.where((car_x[:, i] == 4) & (pos == lane), 9, pos)
            tick = car_timer[:, i] == 0
            x = car_x[:, i] + torch.where(self.car_speed[:, i] > 0, 1, -1)
            x = torch.where(x < 0, 9, torch.where(x > 9, 0, x))
            car_x[:, i] = torch.where(tick, x, car_x[:, i])
            car_timer[:, i] = torch.where(tick, self.car_speed[:, i].abs(), car_timer[:, i] - 1)
            pos = torch.where(tick & (car_x[:, i] == 4) & (pos == lane), 9, pos)
        self.pos, self.car_x, self.car_timer = pos, car_x, car_timer
        self.move_timer = self.move_timer - (self.move_timer > 0).to(torch.int64)
        self.terminate_timer = self.terminate_timer - 1
        return win.to(torch.int64), self.terminate_timer < 0

    def observe(self) -> torch.Tensor:
        obs = torch.zeros(self.num, 10, 10, self.channels, dtype=torch.bool, device=self.device)
        obs[..., 0] = self._cell(self.pos, torch.full_like(self.pos, 4))
        cols = self.rows
        obs[:, 1:9, :, 1] = cols == self.car_x[..., None]
        back = torch.where(self.car_speed > 0, self.car_x - 1, self.car_x + 1)
        back = torch.where(back < 0, 9, torch.where(back > 9, 0, back))
        trail = cols == back[..., None]  # [N, 8, 10]
        speed = self.car_speed.abs()
        for v in range(1, 6):
            obs[:, 1:9, :, 1 + v] = trail & (speed == v)[..., None]
        return obs
