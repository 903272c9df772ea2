"""Asterix for ``N`` environments at once, minatar's ``environments/asterix.py`` as tensor ops.

The player starts at row 5, column 5 and moves one cell in the four directions (rows 1-8, columns 0-9). Rows 1-8
are 8 lanes; each holds at most one object, an enemy or gold, that enters at the left or right edge and crosses.
Each step, in this order:

* if the spawn timer is 0, a new object is drawn: ``rand() < 1/2`` enters from the left (moving right), ``rand()
  < 1/3`` makes it gold, and ``randint(k)`` picks one of the ``k`` free lanes (no draw when ``k == 1``; with no
  free lane the two coins are still drawn and nothing spawns); the timer restarts at the spawn interval;
* the player moves;
* an object on the player's cell: gold is collected (+1, removed), an enemy ends the episode (the step goes on);
* if the move timer is 0 (it restarts at the move interval), every object moves one column (leaving the screen
  removes it), and the same collision check is made;
* both timers count down. With difficulty ramping, while the spawn interval (from 10) or the move interval (from
  5) is above 1, a ramp timer counts down from 100; on the step after it has gone below 0 the spawn interval
  drops by one (to at least 1), every second time the move interval too, and the ramp timer restarts at 100.

Observation channels: player, enemy, trail (the cell an object came from), gold. The lanes are a loop-free
``[N, 8]`` set of tensors (alive, column, moving right, gold).
"""

from __future__ import annotations

import torch

from acpg_lab.batched_envs.minatar.game import Game
from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["Asterix"]

RAMP_INTERVAL, INIT_SPAWN_SPEED, INIT_MOVE_INTERVAL = 100, 10, 5


class Asterix(Game):
    channels = 4
    minimal_actions = (0, 1, 2, 3, 4)  # n, l, u, r, d

    def __init__(self, *, num: int, streams: Streams, device: torch.device, ramping: bool = True) -> None:
        super().__init__(num=num, streams=streams, device=device, ramping=ramping)
        zeros = torch.zeros(num, dtype=torch.int64, device=device)
        self.player_x, self.player_y = zeros.clone(), zeros.clone()
        self.spawn_speed, self.spawn_timer, self.move_speed, self.move_timer = (zeros.clone() for _ in range(4))
        self.ramp_timer, self.ramp_index = zeros.clone(), zeros.clone()
        lanes = torch.zeros(num, 8, dtype=torch.bool, device=device)
        self.alive, self.right, self.gold = lanes.clone(), lanes.clone(), lanes.clone()
        self.x = torch.zeros(num, 8, dtype=torch.int64, device=device)
        self._lane_y = torch.arange(1, 9, device=device)

    def reset(self, mask: torch.Tensor) -> None:
        m = mask
        self.player_x = torch.where(m, 5, self.player_x)
        self.player_y = torch.where(m, 5, self.player_y)
        self.alive = self.alive & ~m[:, None]
        self.spawn_speed = torch.where(m, INIT_SPAWN_SPEED, self.spawn_speed)
        self.spawn_timer = torch.where(m, INIT_SPAWN_SPEED, self.spawn_timer)
        self.move_speed = torch.where(m, INIT_MOVE_INTERVAL, self.move_speed)
        self.move_timer = torch.where(m, INIT_MOVE_INTERVAL, self.move_timer)
        self.ramp_timer = torch.where(m, RAMP_INTERVAL, self.ramp_timer)
        self.ramp_index = torch.where(m, 0, self.ramp_index)

    def _spawn(self, live: torch.Tensor) -> None:
        spawn = self.spawn_timer == 0
        draw = live & spawn
        right = self.streams.rand(draw) < 1 / 2
        gold = self.streams.rand(draw) < 1 / 3
        free = ~self.alive
        k = free.sum(1)
        can = spawn & (k > 0)
        pick = self.streams.randint(k.clamp(min=1), draw & can)
        lane = free & (free.cumsum(1) - 1 == pick[:, None]) & can[:, None]
        self.alive = self.alive | lane
        self.x = torch.where(lane, torch.where(right, 0, 9)[:, None], self.x)
        self.right = torch.where(lane, right[:, None], self.right)
        self.gold = torch.where(lane, gold[:, None], self.gold)
        self.spawn_timer = torch.where(spawn, self.spawn_speed, self.spawn_timer)

    def _collide(self, among: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objects of ``among`` on the player's cell: gold is collected (removed), enemies end the episode."""
        hit = among & (self.x == self.player_x[:, None]) & (self._lane_y == self.player_y[:, None])
        collected = hit & self.gold
        self.alive = self.alive & ~collected
        return collected.sum(1), (hit & ~self.gold).any(1)

    def act(self, action: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._maybe(self.spawn_timer == 0):
            self._spawn(live)
        self.player_x = torch.where(action == 1, (self.player_x - 1).clamp(min=0), self.player_x)
        self.player_x = torch.where(action == 3, (self.player_x + 1).clamp(max=9), self.player_x)
        self.player_y = torch.where(action == 2, (self.player_y - 1).clamp(min=1), self.player_y)
        self.player_y = torch.where(action == 4, (self.player_y + 1).clamp(max=8), self.player_y)
        reward, terminal = self._collide(self.alive)
        move = self.move_timer == 0
        self.move_timer = torch.where(move, self.move_speed, self.move_timer)
        moving = self.alive & move[:, None]
        self.x = torch.where(moving, self.x + torch.where(self.right, 1, -1), self.x)
        self.alive = self.alive & ~(moving & ((self.x < 0) | (self.x > 9)))
        more, caught = self._collide(self.alive & moving)
        self.spawn_timer = self.spawn_timer - 1
        self.move_timer = self.move_timer - 1
        if self.ramping:
            self._ramp()
        return reward + more, terminal | caught

    def _ramp(self) -> None:
        on = (self.spawn_speed > 1) | (self.move_speed > 1)
        wait = on & (self.ramp_timer >= 0)
        bump = on & ~wait
        self.ramp_timer = torch.where(wait, self.ramp_timer - 1, torch.where(bump, RAMP_INTERVAL, self.ramp_timer))
        faster = bump & (self.move_speed > 1) & (self.ramp_index % 2 == 1)
        self.move_speed = torch.where(faster, self.move_speed - 1, self.move_speed)
        self.spawn_speed = torch.where(bump & (self.spawn_speed > 1), self.spawn_speed - 1, self.spawn_speed)
        self.ramp_index = torch.where(bump, self.ramp_index + 1, self.ramp_index)

    def observe(self) -> torch.Tensor:
        obs = torch.zeros(self.num, 10, 10, 4, dtype=torch.bool, device=self.device)
        obs[..., 0] = self._cell(self.player_y, self.player_x)
        cols = self.rows
        at = self.alive[..., None] & (cols == self.x[..., None])  # [N, 8, 10]: the object's cell in its lane
        back = torch.where(self.right, self.x - 1, self.x + 1)
        obs[:, 1:9, :, 1] = at & ~self.gold[..., None]
        obs[:, 1:9, :, 2] = self.alive[..., None] & (cols == back[..., None])
        obs[:, 1:9, :, 3] = at & self.gold[..., None]
        return obs
