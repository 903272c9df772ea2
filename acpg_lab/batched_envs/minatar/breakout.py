"""Breakout for ``N`` environments at once, minatar's ``environments/breakout.py`` as tensor ops.

The paddle sits on the bottom row (column ``pos``, starting at 4) and moves one column left or right. The ball
starts on row 3 in a corner column (0 or 9, ``randint(2)``: the only random draw of the game besides the sticky
coin), heading down and away from the wall, and travels along diagonals: directions 0..3 are up-left, up-right,
down-right, down-left. Each step it moves one cell diagonally and then, in this order:

* off a side wall: the column is clamped and the horizontal direction flips;
* off the top: the row becomes 0 and the vertical direction flips;
* else into a brick: unless the ball struck a brick on the previous step too (``strike``), the brick breaks
  (+1), the ball stays on its old row and the vertical direction flips; after two strikes in a row the ball
  passes into the brick's cell without breaking it;
* else onto the bottom row: if no bricks are left, rows 1-3 are refilled; if the ball came from the paddle's
  column it bounces straight back up, else if it lands on the paddle it bounces back up the way it came (both
  keep the old row); otherwise the episode terminates, the ball shown on the bottom row.

Observation channels: paddle, ball, trail (the ball's previous cell, so its direction), bricks.
"""

from __future__ import annotations

import torch

from acpg_lab.batched_envs.minatar.game import Game
from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["Breakout"]


class Breakout(Game):
    channels = 4
    minimal_actions = (0, 1, 3)  # n, l, r

    def __init__(self, *, num: int, streams: Streams, device: torch.device, ramping: bool = True) -> None:
        super().__init__(num=num, streams=streams, device=device, ramping=ramping)  # no difficulty ramp here
        zeros = torch.zeros(num, dtype=torch.int64, device=device)
        self.ball_x, self.ball_y, self.ball_dir = zeros.clone(), zeros.clone(), zeros.clone()
        self.last_x, self.last_y, self.pos = zeros.clone(), zeros.clone(), zeros.clone()
        self.strike = torch.zeros(num, dtype=torch.bool, device=device)
        self.bricks = torch.zeros(num, 10, 10, dtype=torch.bool, device=device)
        self._full_wall = torch.zeros(10, 10, dtype=torch.bool, device=device)
        self._full_wall[1:4] = True
        table = torch.tensor([[-1, 1, 1, -1],  # dx of directions 0..3
                              [-1, -1, 1, 1],  # dy
                              [1, 0, 3, 2],  # flip horizontally
                              [3, 2, 1, 0],  # flip vertically
                              [2, 3, 0, 1]], dtype=torch.int64, device=device)  # reverse (paddle edge)
        self._dx, self._dy, self._flip_x, self._flip_y, self._reverse = table

    def reset(self, mask: torch.Tensor) -> None:
        right = self.streams.randint(torch.full_like(self.ball_x, 2), mask) == 1
        m = mask
        self.ball_y = torch.where(m, 3, self.ball_y)
        self.ball_x = torch.where(m, torch.where(right, 9, 0), self.ball_x)
        self.ball_dir = torch.where(m, torch.where(right, 3, 2), self.ball_dir)
        self.pos = torch.where(m, 4, self.pos)
        self.bricks = torch.where(m[:, None, None], self._full_wall, self.bricks)
        self.strike = self.strike & ~m
        self.last_x = torch.where(m, self.ball_x, self.last_x)
        self.last_y = torch.where(m, self.ball_y, self.last_y)

    def act(self, action: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.where(action == 1, (self.pos - 1).clamp(min=0), self.pos)
        pos = torch.where(action == 3, (pos + 1).clamp(max=9), pos)
        d = self.ball_dir
        x, y = self.ball_x + self._dx[d], self.ball_y + self._dy[d]
        wall = (x < 0) | (x > 9)
        x = x.clamp(0, 9)
        d = torch.where(wall, self._flip_x[d], d)
        top = y < 0
        y = y.clamp(0, 9)
        d = torch.where(top, self._flip_y[d], d)
        hit = ~top & self.bricks.view(self.num, 100).gather(1, (y * 10 + x)[:, None])[:, 0]
        breaks = hit & ~self.strike
        self.bricks = self.bricks & ~(breaks[:, None, None] & self._cell(y, x))
        d = torch.where(breaks, self._flip_y[d], d)
        bottom = ~top & ~hit & (y == 9)
        refill = bottom & ~self.bricks.flatten(1).any(1)
        self.bricks = self.bricks | (refill[:, None, None] & self._full_wall)
        straight = bottom & (self.ball_x == pos)
        edge = bottom & ~straight & (x == pos)
        d = torch.where(straight, self._flip_y[d], torch.where(edge, self._reverse[d], d))
        y = torch.where(breaks | straight | edge, self.ball_y, y)
        self.last_x, self.last_y = self.ball_x, self.ball_y
        self.ball_x, self.ball_y, self.ball_dir, self.pos, self.strike = x, y, d, pos, hit
        return breaks.to(torch.int64), bottom & ~straight & ~edge

    def observe(self) -> torch.Tensor:
        paddle = self._cell(torch.full_like(self.pos, 9), self.pos)
        ball = self._cell(self.ball_y, self.ball_x)
        trail = self._cell(self.last_y, self.last_x)
        return torch.stack((paddle, ball, trail, self.bricks), dim=-1)
