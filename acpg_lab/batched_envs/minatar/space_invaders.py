"""Space Invaders for ``N`` environments at once, minatar's ``environments/space_invaders.py`` as tensor ops.

The cannon sits on the bottom row (column ``pos``, starting at 5), moves left or right, or fires (when its
cool-down, 5 steps, is over) a bullet into its own cell. A block of aliens (rows 0-3, columns 2-7) marches
sideways, starting leftwards. Each step, in this order:

* the cannon acts; friendly bullets rise one row and enemy bullets fall one (leaving the screen removes them);
  an enemy bullet or an alien on the cannon's cell ends the episode (the step goes on);
* when the alien move timer is 0 it restarts at ``min(aliens left, move interval)`` (interval 12) and the block
  moves: at the edge it is heading to, it reverses and steps down a row instead (ending the episode if it was
  already on the bottom row; numpy's roll wraps that row to the top); an alien on the cannon ends the episode;
* every 10 steps the alien nearest the cannon's column (closest column, the left one on a tie; its lowest alien)
  fires a bullet into its own cell;
* an alien and a friendly bullet on the same cell both vanish, +1 each;
* timers count down; when no alien is left a new block appears, and with difficulty ramping the move interval
  drops by one (while above 6).

The game itself draws no random numbers (only the sticky-action coin does). Observation channels: cannon, alien,
alien moving left, alien moving right, friendly bullet, enemy bullet.
"""

from __future__ import annotations

import torch

from acpg_lab.batched_envs.minatar.game import Game
from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["SpaceInvaders"]

SHOT_COOL_DOWN, ENEMY_MOVE_INTERVAL, ENEMY_SHOT_INTERVAL = 5, 12, 10


class SpaceInvaders(Game):
    channels = 6
    minimal_actions = (0, 1, 3, 5)  # n, l, r, f

    def __init__(self, *, num: int, streams: Streams, device: torch.device, ramping: bool = True) -> None:
        super().__init__(num=num, streams=streams, device=device, ramping=ramping)
        zeros = torch.zeros(num, dtype=torch.int64, device=device)
        self.pos, self.alien_dir, self.move_interval = zeros.clone(), zeros.clone(), zeros.clone()
        self.alien_move_timer, self.alien_shot_timer, self.shot_timer = zeros.clone(), zeros.clone(), zeros.clone()
        self.ramp_index = zeros.clone()
        maps = torch.zeros(num, 10, 10, dtype=torch.bool, device=device)
        self.aliens, self.f_bullets, self.e_bullets = maps.clone(), maps.clone(), maps.clone()
        self._block = torch.zeros(10, 10, dtype=torch.bool, device=device)
        self._block[0:4, 2:8] = True

    def reset(self, mask: torch.Tensor) -> None:
        m, m3 = mask, mask[:, None, None]
        self.pos = torch.where(m, 5, self.pos)
        self.f_bullets = self.f_bullets & ~m3
        self.e_bullets = self.e_bullets & ~m3
        self.aliens = torch.where(m3, self._block, self.aliens)
        self.alien_dir = torch.where(m, -1, self.alien_dir)
        self.move_interval = torch.where(m, ENEMY_MOVE_INTERVAL, self.move_interval)
        self.alien_move_timer = torch.where(m, ENEMY_MOVE_INTERVAL, self.alien_move_timer)
        self.alien_shot_timer = torch.where(m, ENEMY_SHOT_INTERVAL, self.alien_shot_timer)
        self.ramp_index = torch.where(m, 0, self.ramp_index)
        self.shot_timer = torch.where(m, 0, self.shot_timer)

    def _on_cannon(self, grid: torch.Tensor) -> torch.Tensor:
        return grid[:, 9].gather(1, self.pos[:, None])[:, 0]

    def act(self, action: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fire = (action == 5) & (self.shot_timer == 0)
        f_bullets = self.f_bullets | (fire[:, None, None] & self._cell(torch.full_like(self.pos, 9), self.pos))
        self.shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        self.pos = torch.where(action == 1, (self.pos - 1).clamp(min=0), self.pos)
        self.pos = torch.where(action == 3, (self.pos + 1).clamp(max=9), self.pos)
        f_bullets = torch.cat((f_bullets[:, 1:], torch.zeros_like(f_bullets[:, :1])), 1)
        self.e_bullets = torch.cat((torch.zeros_like(self.e_bullets[:, :1]), self.e_bullets[:, :9]), 1)
        terminal = self._on_cannon(self.e_bullets) | self._on_cannon(self.aliens)
        move = self.alien_move_timer == 0
        count = self.aliens.flatten(1).sum(1)
        self.alien_move_timer = torch.where(move, torch.minimum(count, self.move_interval), self.alien_move_timer)
        turn = move & ((self.aliens[:, :, 0].any(1) & (self.alien_dir < 0))
                       | (self.aliens[:, :, 9].any(1) & (self.alien_dir > 0)))
        terminal = terminal | (turn & self.aliens[:, 9].any(1))
        self.alien_dir = torch.where(turn, -self.alien_dir, self.alien_dir)
        down = self.aliens.roll(1, 1)
        sideways = torch.where((self.alien_dir < 0)[:, None, None], self.aliens.roll(-1, 2), self.aliens.roll(1, 2))
        self.aliens = torch.where(turn[:, None, None], down, torch.where(move[:, None, None], sideways, self.aliens))
        terminal = terminal | (move & self._on_cannon(self.aliens))
        self._alien_shot()
        kills = self.aliens & f_bullets
        self.aliens, self.f_bullets = self.aliens & ~kills, f_bullets & ~kills
        self.shot_timer = self.shot_timer - (self.shot_timer > 0).to(torch.int64)
        self.alien_move_timer = self.alien_move_timer - 1
        self.alien_shot_timer = self.alien_shot_timer - 1
        cleared = ~self.aliens.flatten(1).any(1)
        faster = cleared & (self.move_interval > 6) & self.ramping
        self.move_interval = self.move_interval - faster.to(torch.int64)
        self.ramp_index = self.ramp_index + faster.to(torch.int64)
        self.aliens = self.aliens | (cleared[:, None, None] & self._block)
        return kills.flatten(1).sum(1), terminal

    def _alien_shot(self) -> None:
        """Every ``ENEMY_SHOT_INTERVAL`` steps the alien nearest the cannon fires from its own cell."""
        shoot = self.alien_shot_timer == 0
        self.alien_shot_timer = torch.where(shoot, ENEMY_SHOT_INTERVAL, self.alien_shot_timer)
        occupied = self.aliens.any(1)  # [N, 10] columns holding aliens
        order = (self.rows - self.pos[:, None]).abs() * 10 + self.rows  # nearest column first, left on a tie
        column = torch.where(occupied, order, 1000).argmin(1)
        in_column = self.aliens.gather(2, column[:, None, None].expand(-1, 10, 1))[..., 0]  # [N, 10] rows
        row = torch.where(in_column, self.rows, -1).amax(1)
        shot = (shoot & occupied.any(1))[:, None, None] & self._cell(row, column)
        self.e_bullets = self.e_bullets | shot

    def observe(self) -> torch.Tensor:
        cannon = self._cell(torch.full_like(self.pos, 9), self.pos)
        left = (self.alien_dir < 0)[:, None, None]
        return torch.stack((cannon, self.aliens, self.aliens & left, self.aliens & ~left, self.f_bullets,
                            self.e_bullets), dim=-1)
