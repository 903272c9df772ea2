"""Seaquest for ``N`` environments at once, minatar's ``environments/seaquest.py`` as tensor ops.

The player's submarine (front cell and, behind it, back cell) starts on the surface (row 0, column 5, facing
left), moves in four directions (rows 0-8) or fires (cool-down 5) a bullet from its front. Enemy fish and
submarines enter rows 1-8 from either edge; divers too. Each step, in this order:

* spawns: when the enemy timer is 0, ``rand() < 1/2`` (enter left), ``rand() < 1/3`` (a sub), ``randint(1, 9)``
  (row), and no spawn if an enemy in that row heads the other way; when the diver timer is 0 (every 30 steps),
  ``rand() < 1/2``, ``randint(1, 9)``;
* the player acts; friendly bullets fly one column (leaving the screen removes them) and destroy the first fish,
  else the first sub, on their cell (+1);
* divers (moving every 6th step) on the player's cell, before or after their move, are picked up while fewer than
  6 are aboard (the last spawned first);
* enemy subs, then enemy bullets, then fish: one touching the player, before or after its move, ends the episode;
  subs and fish move every ``move speed + 1`` steps (5 at first), and after a move one on a friendly bullet's
  cell is destroyed with it (+1; the last spawned first); every 11th step a sub fires a bullet from its cell
  (even the step it is destroyed); enemy bullets fly one column a step;
* oxygen (200) drops by one a step below the surface and ends the episode at 0. Arriving at the surface with no
  diver ends it too; with divers, oxygen is refilled and one diver leaves, or with 6 all leave and each tenth of
  oxygen left scores +1 (minatar then counts -1 divers, and so does this); each arrival ramps the difficulty
  (spawn interval down to 1, move speed, every second time, down to 2).

Lists become fixed slot arrays ``[N, K]`` (alive, column, row, heading right, timers) with a spawn stamp that
stands for the list order where it matters (several enemies on one cell, several divers to pick up). The slots
are large enough for any game seen (``overflow`` would record an environment that ran out).
Observation channels: sub front, sub back, friendly bullet, trail, enemy bullet, fish, enemy sub, oxygen gauge,
diver gauge, diver.
"""

from __future__ import annotations

import torch

from acpg_lab.batched_envs.minatar.game import Game
from acpg_lab.batched_envs.minatar.streams import Streams

__all__ = ["Seaquest"]

MAX_OXYGEN, INIT_SPAWN_SPEED, DIVER_SPAWN_SPEED, INIT_MOVE_INTERVAL = 200, 20, 30, 5
SHOT_COOL_DOWN, ENEMY_SHOT_INTERVAL, DIVER_MOVE_INTERVAL = 5, 10, 5
#: slots per list: friendly bullets, divers, enemy subs, fish, enemy bullets
CAPACITY = {"fb": 4, "diver": 8, "esub": 32, "fish": 32, "eb": 32}
_FIELDS = {"fb": ("alive", "x", "y", "right"), "eb": ("alive", "x", "y", "right"),
           "diver": ("alive", "x", "y", "right", "timer", "stamp"),
           "fish": ("alive", "x", "y", "right", "timer", "stamp"),
           "esub": ("alive", "x", "y", "right", "timer", "stamp", "shot")}


class Seaquest(Game):
    channels = 10
    minimal_actions = (0, 1, 2, 3, 4, 5)

    def __init__(self, *, num: int, streams: Streams, device: torch.device, ramping: bool = True) -> None:
        super().__init__(num=num, streams=streams, device=device, ramping=ramping)
        zeros = torch.zeros(num, dtype=torch.int64, device=device)
        for name in ("oxygen", "divers", "sub_x", "sub_y", "e_spawn_speed", "e_spawn_timer", "d_spawn_timer",
                     "move_speed", "ramp_index", "shot_timer", "counter"):
            setattr(self, name, zeros.clone())
        self.sub_or = torch.zeros(num, dtype=torch.bool, device=device)
        self.surface, self.overflow = self.sub_or.clone(), self.sub_or.clone()
        for kind, fields in _FIELDS.items():
            for field in fields:
                dtype = torch.bool if field in ("alive", "right") else torch.int64
                setattr(self, f"{kind}_{field}", torch.zeros(num, CAPACITY[kind], dtype=dtype, device=device))

    def reset(self, mask: torch.Tensor) -> None:
        m = mask
        for name, value in (("oxygen", MAX_OXYGEN), ("divers", 0), ("sub_x", 5), ("sub_y", 0),
                            ("e_spawn_speed", INIT_SPAWN_SPEED), ("e_spawn_timer", INIT_SPAWN_SPEED),
                            ("d_spawn_timer", DIVER_SPAWN_SPEED), ("move_speed", INIT_MOVE_INTERVAL),
                            ("ramp_index", 0), ("shot_timer", 0)):
            setattr(self, name, torch.where(m, value, getattr(self, name)))
        self.sub_or = self.sub_or & ~m
        self.surface = self.surface | m
        for kind in _FIELDS:
            setattr(self, f"{kind}_alive", getattr(self, f"{kind}_alive") & ~m[:, None])

    # -- lists ---------------------------------------------------------------------------------------------------
    def _append(self, kind: str, mask: torch.Tensor, **values: torch.Tensor) -> None:
        """Append one object to list ``kind`` where ``mask`` (into its first free slot)."""
        alive = getattr(self, f"{kind}_alive")
        free = ~alive
        slot = free & (free.cumsum(1) == 1) & mask[:, None]
        self.overflow = self.overflow | (mask & ~free.any(1))
        if "stamp" in _FIELDS[kind]:
            self.counter = self.counter + mask.to(torch.int64)
            values["stamp"] = self.counter
        setattr(self, f"{kind}_alive", alive | slot)
        for field, value in values.items():
            current = getattr(self, f"{kind}_{field}")
            setattr(self, f"{kind}_{field}", torch.where(slot, value[:, None], current))

    def _at_player(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x == self.sub_x[:, None]) & (y == self.sub_y[:, None])

    @staticmethod
    def _step_x(x: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return x + torch.where(right, 1, -1)

    def _hits(self, objects: torch.Tensor, x: torch.Tensor, y: torch.Tensor, stamp: torch.Tensor,
              bullets: torch.Tensor, *, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Objects ``[N, K]`` meeting friendly bullets ``[N, B]`` (alive masks) on a cell: per bullet the one with
        the largest (``last``) or smallest stamp is destroyed. Bullets never share a cell, so an object meets at
        most one. Returns (objects destroyed ``[N, K]``, bullets used ``[N, B]``)."""
        meet = (objects[:, :, None] & bullets[:, None, :] & (x[:, :, None] == self.fb_x[:, None, :])
                & (y[:, :, None] == self.fb_y[:, None, :]))  # [N, K, B]
        if last:
            best = torch.where(meet, stamp[:, :, None], -1).amax(1, keepdim=True)
        else:
            best = torch.where(meet, stamp[:, :, None], 2**62).amin(1, keepdim=True)
        chosen = meet & (stamp[:, :, None] == best)
        return chosen.any(2), meet.any(1)

    # -- the step ------------------------------------------------------------------------------------------------
    def _spawn(self, live: torch.Tensor) -> None:
        spawn = self.e_spawn_timer == 0
        if self._maybe(spawn):
            self._spawn_enemy(live, spawn)
        spawn = self.d_spawn_timer == 0
        if self._maybe(spawn):
            self._spawn_diver(live, spawn)

    def _spawn_enemy(self, live: torch.Tensor, spawn: torch.Tensor) -> None:
        draw = live & spawn
        right = self.streams.rand(draw) < 1 / 2
        is_sub = self.streams.rand(draw) < 1 / 3
        row = self.streams.randint(torch.full_like(self.sub_x, 8), draw) + 1
        x = torch.where(right, 0, 9)
        clash = ((self.esub_alive & (self.esub_y == row[:, None]) & (self.esub_right != right[:, None])).any(1)
                 | (self.fish_alive & (self.fish_y == row[:, None]) & (self.fish_right != right[:, None])).any(1))
        put = draw & ~clash
        timer = self.move_speed
        self._append("esub", put & is_sub, x=x, y=row, right=right, timer=timer,
                     shot=torch.full_like(x, ENEMY_SHOT_INTERVAL))
        self._append("fish", put & ~is_sub, x=x, y=row, right=right, timer=timer)
        self.e_spawn_timer = torch.where(spawn, self.e_spawn_speed, self.e_spawn_timer)

    def _spawn_diver(self, live: torch.Tensor, spawn: torch.Tensor) -> None:
        draw = live & spawn
        right = self.streams.rand(draw) < 1 / 2
        row = self.streams.randint(torch.full_like(self.sub_x, 8), draw) + 1
        self._append("diver", draw, x=torch.where(right, 0, 9), y=row, right=right,
                     timer=torch.full_like(row, DIVER_MOVE_INTERVAL))
        self.d_spawn_timer = torch.where(spawn, DIVER_SPAWN_SPEED, self.d_spawn_timer)

    def _player(self, action: torch.Tensor) -> None:
        fire = (action == 5) & (self.shot_timer == 0)
        self._append("fb", fire, x=self.sub_x, y=self.sub_y, right=self.sub_or)
        self.shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        left, right = (action == 1), (action == 3)
        self.sub_x = torch.where(left, (self.sub_x - 1).clamp(min=0), torch.where(right, (self.sub_x + 1).clamp(max=9),
                                                                               self.sub_x))
        self.sub_or = torch.where(left, False, torch.where(right, True, self.sub_or))
        self.sub_y = torch.where(action == 2, (self.sub_y - 1).clamp(min=0), self.sub_y)
        self.sub_y = torch.where(action == 4, (self.sub_y + 1).clamp(max=8), self.sub_y)

    def _friendly_bullets(self) -> torch.Tensor:
        alive = self.fb_alive
        self.fb_x = torch.where(alive, self._step_x(self.fb_x, self.fb_right), self.fb_x)
        alive = alive & (self.fb_x >= 0) & (self.fb_x <= 9)
        fish, by_fish = self._hits(self.fish_alive, self.fish_x, self.fish_y, self.fish_stamp, alive, last=False)
        alive = alive & ~by_fish  # the first fish on the bullet's cell, else the first sub
        sub, by_sub = self._hits(self.esub_alive, self.esub_x, self.esub_y, self.esub_stamp, alive, last=False)
        self.fish_alive, self.esub_alive = self.fish_alive & ~fish, self.esub_alive & ~sub
        self.fb_alive = alive & ~by_sub
        return (by_fish | by_sub).sum(1)

    def _divers(self) -> None:
        alive = self.diver_alive
        before = alive & self._at_player(self.diver_x, self.diver_y)
        tick = self.diver_timer == 0
        x = torch.where(tick, self._step_x(self.diver_x, self.diver_right), self.diver_x)
        off = tick & ((x < 0) | (x > 9))
        after = alive & ~before & ~off & tick & self._at_player(x, self.diver_y)
        candidate = before | after
        later = candidate[:, None, :] & (self.diver_stamp[:, None, :] > self.diver_stamp[:, :, None])
        picked = candidate & (later.sum(2) < (6 - self.divers)[:, None])  # the last spawned first
        self.divers = self.divers + picked.sum(1)
        moving = alive & ~picked
        self.diver_x = torch.where(moving, x, self.diver_x)
        self.diver_timer = torch.where(moving, torch.where(tick, DIVER_MOVE_INTERVAL, self.diver_timer - 1),
                                       self.diver_timer)
        self.diver_alive = moving & ~off

    def _enemies(self, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subs or fish: touch, move, leave, and be destroyed by a friendly bullet (the last spawned first).
        Returns (reward, terminal, destroyed-or-alive-and-on-screen mask of the objects at the start)."""
        alive, right = getattr(self, f"{kind}_alive"), getattr(self, f"{kind}_right")
        x0, y, timer, stamp = (getattr(self, f"{kind}_{f}") for f in ("x", "y", "timer", "stamp"))
        terminal = (alive & self._at_player(x0, y)).any(1)
        tick = timer == 0
        x = torch.where(alive & tick, self._step_x(x0, right), x0)
        off = alive & tick & ((x < 0) | (x > 9))
        timer = torch.where(alive, torch.where(tick, self.move_speed[:, None], timer - 1), timer)
        touch = alive & tick & ~off & self._at_player(x, y)
        terminal = terminal | touch.any(1)
        check = alive & tick & ~off & ~touch
        shot, used = self._hits(check, x, y, stamp, self.fb_alive, last=True)
        alive = alive & ~shot
        self.fb_alive = self.fb_alive & ~used
        reward = used.sum(1)
        on_screen = getattr(self, f"{kind}_alive") & ~off
        setattr(self, f"{kind}_alive", alive & ~off)
        setattr(self, f"{kind}_x", x)
        setattr(self, f"{kind}_timer", timer)
        return reward, terminal, on_screen

    def _sub_shots(self, on_screen: torch.Tensor) -> None:
        """Every sub that was alive this step fires when its shot timer is 0 (one that left the screen would fire
        off the screen: that bullet vanishes at once, so it is not made)."""
        fire = on_screen & (self.esub_shot == 0)
        self.esub_shot = torch.where(on_screen, torch.where(fire, ENEMY_SHOT_INTERVAL, self.esub_shot - 1),
                                    self.esub_shot)
        free = ~self.eb_alive
        self.overflow = self.overflow | (fire.sum(1) > free.sum(1))
        shooters = torch.sort(fire.to(torch.uint8), dim=1, descending=True, stable=True).indices  # firing first
        slots = torch.sort(free.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :shooters.shape[1]]
        new = fire.gather(1, shooters) & free.gather(1, slots)  # the k-th shot goes into the k-th free slot
        for field in ("x", "y", "right"):
            current = getattr(self, f"eb_{field}")
            value = torch.where(new, getattr(self, f"esub_{field}").gather(1, shooters), current.gather(1, slots))
            setattr(self, f"eb_{field}", current.scatter(1, slots, value))
        self.eb_alive = self.eb_alive.scatter(1, slots, new | self.eb_alive.gather(1, slots))

    def _enemy_bullets(self) -> torch.Tensor:
        alive = self.eb_alive
        terminal = (alive & self._at_player(self.eb_x, self.eb_y)).any(1)
        self.eb_x = torch.where(alive, self._step_x(self.eb_x, self.eb_right), self.eb_x)
        alive = alive & (self.eb_x >= 0) & (self.eb_x <= 9)
        self.eb_alive = alive
        return terminal | (alive & self._at_player(self.eb_x, self.eb_y)).any(1)

    def _oxygen(self, reward: torch.Tensor, terminal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        terminal = terminal | (self.oxygen <= 0)
        below = self.sub_y > 0
        arriving = ~below & ~self.surface
        self.oxygen = torch.where(below, self.oxygen - 1, self.oxygen)
        self.surface = self.surface & ~below
        terminal = terminal | (arriving & (self.divers == 0))
        up = arriving & (self.divers != 0)
        full = up & (self.divers == 6)
        reward = reward + torch.where(full, torch.div(self.oxygen * 10, MAX_OXYGEN, rounding_mode="floor"), 0)
        self.divers = torch.where(full, 0, self.divers) - up.to(torch.int64)
        self.oxygen = torch.where(up, MAX_OXYGEN, self.oxygen)
        self.surface = self.surface | up
        if self.ramping:
            ramp = up & ((self.e_spawn_speed > 1) | (self.move_speed > 2))
            faster = ramp & (self.move_speed > 2) & (self.ramp_index % 2 == 1)
            self.move_speed = self.move_speed - faster.to(torch.int64)
            self.e_spawn_speed = self.e_spawn_speed - (ramp & (self.e_spawn_speed > 1)).to(torch.int64)
            self.ramp_index = self.ramp_index + ramp.to(torch.int64)
        return reward, terminal

    def act(self, action: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._spawn(live)
        self._player(action)
        reward = self._friendly_bullets()
        self._divers()
        sub_reward, terminal, on_screen = self._enemies("esub")
        self._sub_shots(on_screen)
        terminal = terminal | self._enemy_bullets()
        fish_reward, fish_terminal, _ = self._enemies("fish")
        reward, terminal = reward + sub_reward + fish_reward, terminal | fish_terminal
        for name in ("e_spawn_timer", "d_spawn_timer", "shot_timer"):
            value = getattr(self, name)
            setattr(self, name, value - (value > 0).to(torch.int64))
        return self._oxygen(reward, terminal)

    def _grid(self, alive: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """bool ``[N, 10, 10]``: the cells of the alive objects (out-of-range cells dropped), one scatter."""
        keep = alive & (x >= 0) & (x <= 9)
        flat = torch.zeros(self.num, 101, dtype=torch.bool, device=self.device)
        flat.scatter_(1, torch.where(keep, y * 10 + x, 100), True)
        return flat[:, :100].view(self.num, 10, 10)

    def observe(self) -> torch.Tensor:
        obs = torch.zeros(self.num, 10, 10, self.channels, dtype=torch.bool, device=self.device)
        obs[..., 0] = self._cell(self.sub_y, self.sub_x)
        obs[..., 1] = self._cell(self.sub_y, torch.where(self.sub_or, self.sub_x - 1, self.sub_x + 1) % 10)
        obs[..., 2] = self._grid(self.fb_alive, self.fb_y, self.fb_x)
        obs[..., 4] = self._grid(self.eb_alive, self.eb_y, self.eb_x)
        trail = torch.zeros_like(obs[..., 0])
        for kind, channel in (("fish", 5), ("esub", 6), ("diver", 9)):
            alive, x, y, right = (getattr(self, f"{kind}_{f}") for f in ("alive", "x", "y", "right"))
            obs[..., channel] = self._grid(alive, y, x)
            trail = trail | self._grid(alive, y, torch.where(right, x - 1, x + 1))
        obs[..., 3] = trail
        oxygen = torch.div(self.oxygen.clamp(min=0) * 10, MAX_OXYGEN, rounding_mode="floor")
        obs[:, 9, :, 7] = self.rows < oxygen[:, None]
        obs[:, 9, :, 8] = (self.rows >= 9 - self.divers[:, None]) & (self.rows < 9)
        return obs
