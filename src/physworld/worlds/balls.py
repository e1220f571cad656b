"""Balls: N discs of varied size and mass bouncing and colliding in a walled box.

The default scene is the textbook elastic one (elasticity 1, no friction, no damping, no
gravity), so kinetic energy is conserved and every change of velocity is a collision a model
must explain. Every physical parameter is drawn per episode from a ``(low, high)`` range, so
out-of-distribution splits are a matter of passing other ranges.
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import gymnasium as gym
import numpy as np
import pymunk

from physworld.worlds.base import Look, PhysWorld, Range, WorldOptions, check_range, uniform

MAX_BALLS = 50
PACKING_LIMIT = 0.35  # fraction of the arena the largest possible balls may cover


class Balls(PhysWorld):
    """N balls in a box; passive by default.

    Masses are ``density * pi * radius²`` (draw ``density_range`` to vary mass apart from size).
    ``elasticity_range`` and ``friction_range`` set each ball's shape coefficients (pymunk
    multiplies the two shapes' values in a contact; the walls contribute 1). ``gravity_range`` is
    the downward acceleration. ``n_balls`` may be a ``(low, high)`` range: the state keeps
    ``high`` slots and ``info["n_objects"]`` says how many are in play.

    With ``controllable=True`` the action (in ``[-1, 1]²``) is a force on ball 0 of up to
    ``control_force`` (mass × units/s²), held during the whole env step; otherwise the action
    space is the no-op ``Box(0, 0, (1,))``.
    """

    def __init__(
        self,
        *,
        n_balls: int | tuple[int, int] = 3,
        radius_range: Range = (0.4, 0.9),
        density_range: Range = (1.0, 1.0),
        speed_range: Range = (1.0, 5.0),
        elasticity_range: Range = (1.0, 1.0),
        friction_range: Range = (0.0, 0.0),
        gravity_range: Range = (0.0, 0.0),
        controllable: bool = False,
        control_force: float = 10.0,
        **options: Unpack[WorldOptions],
    ) -> None:
        max_speed = options.get("max_speed", self.DEFAULT_MAX_SPEED)
        self.n_balls_range = check_range("n_balls", n_balls, 1, MAX_BALLS, integer=True)
        self.radius_range = check_range("radius_range", radius_range, 0.05, self.arena_size / 4)
        self.density_range = check_range("density_range", density_range, 1e-3, 1e3)
        self.speed_range = check_range("speed_range", speed_range, 0.0, max_speed)
        self.elasticity_range = check_range("elasticity_range", elasticity_range, 0.0, 1.0)
        self.friction_range = check_range("friction_range", friction_range, 0.0, 10.0)
        self.gravity_range = check_range("gravity_range", gravity_range, -100.0, 100.0)
        n_max = self.n_balls_range[1]
        covered = n_max * math.pi * self.radius_range[1] ** 2 / self.arena_size**2
        if covered > PACKING_LIMIT:
            raise ValueError(
                f"{n_max} balls of radius up to {self.radius_range[1]} would cover {covered:.0%} "
                f"of the arena (limit {PACKING_LIMIT:.0%}); lower radius_range or n_balls"
            )
        self.controllable = bool(controllable)
        self.control_force = float(control_force)
        if self.controllable:
            action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        else:
            action_space = gym.spaces.Box(0.0, 0.0, (1,), np.float32)
        super().__init__(
            n_objects=n_max,
            object_names=[f"ball{i}" for i in range(n_max)],
            action_space=action_space,
            **options,
        )

    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        low, high = self.n_balls_range
        n = int(rng.integers(low, high + 1))
        radii = [uniform(rng, self.radius_range) for _ in range(n)]
        densities = [uniform(rng, self.density_range) for _ in range(n)]
        speeds = [uniform(rng, self.speed_range) for _ in range(n)]
        headings = [float(rng.uniform(0.0, math.tau)) for _ in range(n)]
        elasticity = uniform(rng, self.elasticity_range)
        friction = uniform(rng, self.friction_range)
        gravity = uniform(rng, self.gravity_range)
        centres = self._place(rng, radii)

        self.space = self._new_space(gravity=gravity)
        masses = []
        for r, rho, (x, y), s, h in zip(radii, densities, centres, speeds, headings, strict=True):
            mass = rho * math.pi * r * r
            body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0.0, r))
            body.position = (x, y)
            body.velocity = (s * math.cos(h), s * math.sin(h))
            self._add_object(body, pymunk.Circle(body, r), Look("circle", r), elasticity, friction)
            masses.append(mass)
        return {
            "n_balls": n,
            "radius": tuple(radii),
            "mass": tuple(masses),
            "speed": tuple(speeds),
            "elasticity": elasticity,
            "friction": friction,
            "gravity": gravity,
        }

    def _place(self, rng: np.random.Generator, radii: list[float]) -> list[tuple[float, float]]:
        """Rejection-sample non-overlapping centres, largest ball first."""
        gap = 0.01 * self.arena_size
        centres: list[tuple[float, float] | None] = [None] * len(radii)
        placed: list[tuple[float, float, float]] = []
        for i in sorted(range(len(radii)), key=lambda j: -radii[j]):
            r = radii[i]
            for _ in range(10_000):
                x, y = rng.uniform(r + gap, self.arena_size - r - gap, size=2).tolist()
                if all(
                    (x - px) ** 2 + (y - py) ** 2 > (r + pr + gap) ** 2 for px, py, pr in placed
                ):
                    break
            else:
                raise RuntimeError("could not place the balls without overlap; lower radius_range")
            placed.append((x, y, r))
            centres[i] = (x, y)
        return centres  # type: ignore[return-value]

    def _control(self, action: np.ndarray) -> None:
        if self.controllable:
            fx, fy = action.tolist()
            self.bodies[0].force = (fx * self.control_force, fy * self.control_force)
