"""Occluder: a ball rolls behind a screen, sometimes toward a wall (object permanence).

Passive (the no-op action space of Balls). Every ball rolls rightward at the same ``speed``, so
one frame says where the ball will be: the JEPA contract predicts from a single latent
(``predict(z0, actions)``), and a per-episode speed would be invisible in it. What varies per
episode is the ball's start and height, the screen's position, and whether a thin wall stands
to the right (``wall_probability``), off which the ball bounces elastically.

The screen is drawn over the ball (:meth:`render_state`), and rises higher than any ball's
top, so a ball behind it is fully hidden; a wall rises above the screen, so a wall behind it
still shows. The physbench permanence task edits these clips into impossible twins: the ball
vanishes (a non-finite position is not drawn), teleports, changes shape (``look``), or passes
through the wall (``reset(options={"ghost_wall": True})``: drawn, but not solid).
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import gymnasium as gym
import numpy as np
import pymunk

from physworld.worlds.base import (
    Look,
    PhysWorld,
    Range,
    WorldOptions,
    check_number,
    check_range,
    uniform,
)

SCREEN = (150.0, 150.0, 160.0)
WALL_COLOR = (200.0, 170.0, 120.0)
WALL_HALF_WIDTH = 0.15


class Occluder(PhysWorld):
    """One ball (object 0). ``info["params"]`` holds the screen's centre and half-width, its top,
    the wall's x (NaN when absent) and whether the wall is a ghost.

    ``**options``: :class:`~physworld.worlds.base.WorldOptions` (here ``max_steps`` defaults to 40).
    """

    def __init__(
        self,
        *,
        radius: float = 0.8,
        speed: float = 4.0,
        start_x_range: Range = (1.0, 2.0),
        height_range: Range = (1.5, 4.5),
        screen_x_range: Range = (4.0, 5.5),
        screen_half_width: float = 1.8,
        screen_top: float = 6.0,
        wall_probability: float = 0.5,
        wall_x_range: Range = (5.5, 9.2),
        **options: Unpack[WorldOptions],
    ) -> None:
        options.setdefault("max_steps", 40)
        max_speed = options.get("max_speed", self.DEFAULT_MAX_SPEED)
        self.radius = check_number("radius", radius, 0.1, 2.0)
        self.speed = check_number("speed", speed, 0.0, max_speed)
        self.screen_half_width = check_number("screen_half_width", screen_half_width, 0.2, 4.0)
        self.screen_top = check_number("screen_top", screen_top, 0.5, self.arena_size)
        self.wall_probability = check_number("wall_probability", wall_probability, 0.0, 1.0)
        a = self.arena_size
        self.start_x_range = check_range("start_x_range", start_x_range, radius, a - radius)
        self.height_range = check_range("height_range", height_range, radius, a - radius)
        self.screen_x_range = check_range("screen_x_range", screen_x_range, 0.0, a)
        self.wall_x_range = check_range("wall_x_range", wall_x_range, 0.0, a)
        if self.height_range[1] + radius > screen_top:
            raise ValueError(
                f"a ball at height {self.height_range[1]} with radius {radius} would show above the "
                f"screen (top {screen_top}): lower height_range or raise screen_top"
            )
        if self.wall_x_range[0] - WALL_HALF_WIDTH - radius <= self.start_x_range[1]:
            raise ValueError("wall_x_range must start right of start_x_range plus the ball's radius")
        self.screen_x = 0.0
        self.wall_x = math.nan
        self.ghost_wall = False
        super().__init__(
            n_objects=1,
            object_names=["ball"],
            action_space=gym.spaces.Box(0.0, 0.0, (1,), np.float32),
            **options,
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """``options={"ghost_wall": True}``: the same episode, with a wall the ball passes through."""
        self.ghost_wall = bool((options or {}).get("ghost_wall", False))
        return super().reset(seed=seed, options=options)

    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        x, y = uniform(rng, self.start_x_range), uniform(rng, self.height_range)
        self.screen_x = uniform(rng, self.screen_x_range)
        wall = rng.random() < self.wall_probability
        wall_x = uniform(rng, self.wall_x_range)  # drawn either way, for determinism
        self.wall_x = wall_x if wall else math.nan
        self.space = self._new_space()
        body = pymunk.Body(1.0, math.inf)
        body.position, body.velocity = (x, y), (self.speed, 0.0)
        self._add_object(body, pymunk.Circle(body, self.radius), Look("circle", self.radius), 1.0, 0.0)
        if wall and not self.ghost_wall:
            a = self.arena_size
            segment = pymunk.Segment(self.space.static_body, (wall_x, 0.0), (wall_x, a), WALL_HALF_WIDTH)
            segment.elasticity, segment.friction = 1.0, 0.0
            self.space.add(segment)
        return {
            "screen_x": self.screen_x,
            "screen_half_width": self.screen_half_width,
            "screen_top": self.screen_top,
            "wall_x": self.wall_x,
            "ghost_wall": self.ghost_wall,
            "speed": self.speed,
        }

    def _draw_static(self, canvas: np.ndarray) -> None:
        if math.isfinite(self.wall_x):
            half = self.arena_size / 2
            self.renderer.box(canvas, self.wall_x, half, WALL_HALF_WIDTH, half, 0.0, WALL_COLOR)

    def render_state(self, state, look: Look | None = None) -> np.ndarray:
        """Draw ``state`` with the screen in front; ``look`` replaces the ball's shape (an
        impossible shape change)."""
        saved = self.looks
        if look is not None:
            self.looks = [look]
        try:
            frame = super().render_state(state)
        finally:
            self.looks = saved
        canvas = frame.astype(np.float32)
        half_h = self.screen_top / 2
        self.renderer.box(canvas, self.screen_x, half_h, self.screen_half_width, half_h, 0.0, SCREEN)
        return self.renderer.to_uint8(canvas)

    def hidden(self, x: float, margin: float = 0.3) -> bool:
        """Whether a ball centred at ``x`` is entirely behind the screen, by ``margin`` (units;
        the screen's anti-aliased edge blends in what is under it)."""
        return abs(x - self.screen_x) < self.screen_half_width - self.radius - margin

    def in_view(self, x: float, margin: float = 0.3) -> bool:
        """Whether a ball centred at ``x`` is entirely clear of the screen (by ``margin``)."""
        return abs(x - self.screen_x) > self.screen_half_width + self.radius + margin
