"""Push: a disc agent pushes a square block (which slides and rotates) onto a goal.

A top-down table: no gravity; ``damping`` (the fraction of velocity a body keeps after one
second, as in ``pymunk.Space.damping``) stands in for the table's friction, so a pushed block
comes to rest. The action is the agent's velocity in ``[-1, 1]²``, scaled to ``agent_speed``
and imposed before every physics substep; contacts still slow the agent down within a substep,
so a heavier block is pushed more slowly. The goal is a position (the block's orientation is
free) drawn as a dim disc of radius ``goal_tolerance``: the episode succeeds, and terminates,
when the block's centre is inside it.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pymunk

from physworld.worlds.base import Look, ObsMode, PhysWorld, Range, check_range, uniform
from physworld.worlds.render import BACKGROUND, object_color

AGENT, BLOCK = 0, 1


class Push(PhysWorld):
    """Objects: ``[agent, block]``. Reward: minus the block→goal distance over ``arena_size``.

    ``info["goal"]`` is the goal position, ``info["is_success"]`` whether the block is within
    ``goal_tolerance`` of it. :meth:`expert_action` is a scripted pusher for data collection.
    """

    def __init__(
        self,
        *,
        block_size_range: Range = (1.5, 1.5),
        block_mass_range: Range = (1.0, 1.0),
        friction_range: Range = (0.5, 0.5),
        damping_range: Range = (0.02, 0.02),
        agent_radius: float = 0.5,
        agent_mass: float = 1.0,
        agent_speed: float = 5.0,
        goal_tolerance: float = 0.5,
        obs: ObsMode = "pixels",
        image_size: int = 64,
        render_mode: str | None = None,
        dt: float = 1 / 60,
        frame_skip: int = 4,
        max_steps: int = 100,
        max_speed: float = 20.0,
        antialias: bool = True,
    ) -> None:
        self.block_size_range = check_range("block_size_range", block_size_range, 0.2, 3.0)
        self.block_mass_range = check_range("block_mass_range", block_mass_range, 1e-3, 1e3)
        self.friction_range = check_range("friction_range", friction_range, 0.0, 10.0)
        self.damping_range = check_range("damping_range", damping_range, 0.0, 1.0)
        for name, value, low, high in [
            ("agent_radius", agent_radius, 0.1, 1.5),
            ("agent_mass", agent_mass, 1e-3, 1e3),
            ("agent_speed", agent_speed, 0.1, max_speed),
            ("goal_tolerance", goal_tolerance, 0.01, 3.0),
        ]:
            if not (isinstance(value, int | float) and low <= value <= high):
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        self.agent_radius = float(agent_radius)
        self.agent_mass = float(agent_mass)
        self.agent_speed = float(agent_speed)
        self.goal_tolerance = float(goal_tolerance)
        self.goal = np.zeros(2, np.float32)
        self._keep = 1.0
        super().__init__(
            n_objects=2,
            object_names=["agent", "block"],
            action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            obs=obs,
            image_size=image_size,
            render_mode=render_mode,
            dt=dt,
            frame_skip=frame_skip,
            max_steps=max_steps,
            max_speed=max_speed,
            antialias=antialias,
        )

    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        side = uniform(rng, self.block_size_range)
        block_mass = uniform(rng, self.block_mass_range)
        friction = uniform(rng, self.friction_range)
        damping = uniform(rng, self.damping_range)
        # Block and goal keep clear of the walls, so the agent always fits behind the block.
        inner = side / math.sqrt(2) + 2 * self.agent_radius + 0.5
        lo, hi = inner, self.arena_size - inner
        block_xy = rng.uniform(lo, hi, size=2)
        while True:
            goal = rng.uniform(lo, hi, size=2)
            if np.linalg.norm(goal - block_xy) > 2.0 * self.goal_tolerance + side / 2:
                break
        block_angle = float(rng.uniform(-math.pi / 4, math.pi / 4))
        r = self.agent_radius
        while True:
            agent_xy = rng.uniform(r, self.arena_size - r, size=2)
            if np.linalg.norm(agent_xy - block_xy) > side / math.sqrt(2) + r + 0.1:
                break
        self.goal = goal.astype(np.float32)

        self.space = self._new_space(damping=damping)
        self._keep = damping**self.dt  # velocity fraction pymunk's damping keeps per substep
        agent = pymunk.Body(self.agent_mass, math.inf)  # a disc that never spins
        agent.position = agent_xy.tolist()
        self._add_object(agent, pymunk.Circle(agent, r), Look("circle", r), 0.0, friction)
        block = pymunk.Body(block_mass, pymunk.moment_for_box(block_mass, (side, side)))
        block.position, block.angle = block_xy.tolist(), block_angle
        shape = pymunk.Poly.create_box(block, (side, side))
        self._add_object(block, shape, Look("box", side / 2), 0.0, friction)
        return {
            "block_size": side,
            "block_mass": block_mass,
            "friction": friction,
            "damping": damping,
            "agent_radius": r,
            "agent_mass": self.agent_mass,
            "agent_speed": self.agent_speed,
            "goal": tuple(self.goal.tolist()),
            "goal_tolerance": self.goal_tolerance,
        }

    def _control(self, action: np.ndarray) -> None:
        """Reach the commanded velocity within one substep, through a force.

        A force (unlike writing ``body.velocity``) is integrated before pymunk solves the
        contacts, so walls and the block still get the last word: the agent cannot be driven
        into a wall, and pushing a heavier block slows it down.
        """
        ax, ay = action.tolist()
        agent = self.bodies[AGENT]
        (vx, vy), keep = agent.velocity, self._keep
        k = agent.mass / self.dt
        agent.force = (
            k * (ax * self.agent_speed - keep * vx),
            k * (ay * self.agent_speed - keep * vy),
        )

    def _task(self, state: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        distance = float(np.hypot(*(state[6:8] - self.goal)))
        success = distance <= self.goal_tolerance
        return (
            -distance / self.arena_size,
            success,
            {"is_success": success, "goal": self.goal.copy()},
        )

    def _draw_static(self, canvas: np.ndarray) -> None:
        color = 0.45 * object_color(BLOCK) + 0.55 * np.asarray(BACKGROUND, np.float32)
        x, y = self.goal.tolist()
        self.renderer.circle(canvas, x, y, self.goal_tolerance, color)

    def expert_action(self) -> np.ndarray:
        """A scripted pusher: get behind the block on the goal line, then push along it.

        Away from that line the agent circles the block in 45° hops at a safe radius (so it
        never shoves the block while repositioning); once behind, it pushes toward the goal
        while steering back onto the line, slowing near the goal so the block does not overshoot.
        """
        state = self._state.reshape(self.n_objects, 6)
        agent, block = state[AGENT, :2].astype(np.float64), state[BLOCK, :2].astype(np.float64)
        to_goal = self.goal - block
        distance = float(np.linalg.norm(to_goal))
        if distance < 1e-6:
            return np.zeros(2, np.float32)
        u = to_goal / distance  # push direction
        n = np.array([-u[1], u[0]])  # its left normal
        half_side = self.params["block_size"] / 2
        contact = half_side + self.agent_radius  # centre distance when touching a face
        orbit = 1.4 * (half_side * math.sqrt(2) + self.agent_radius)

        rel = agent - block
        behind, lateral = -float(rel @ u), float(rel @ n)  # agent's coordinates on the goal line
        bearing = math.atan2(lateral, behind)  # 0 when exactly behind the block
        aligned = abs(bearing) < math.radians(20)
        if aligned and behind < contact + 0.6:
            # Push along u, steering sideways drift back onto the line; slow down near the goal.
            direction = u - 1.5 * lateral * n
            speed = min(1.0, 0.25 + distance / 3.0)
        else:
            if aligned:  # behind already: close in along the line
                target = block - u * (contact + 0.2)
            else:  # circle round toward the behind side, at most 45° per waypoint
                hop = bearing - math.copysign(min(abs(bearing), math.radians(45)), bearing)
                radius = max(orbit, 0.8 * float(np.linalg.norm(rel)))
                target = block + radius * (-u * math.cos(hop) + n * math.sin(hop))
            direction = target - agent
            reach = self.agent_speed * self.dt * self.frame_skip  # distance one step covers
            speed = min(1.0, float(np.linalg.norm(direction)) / reach)  # arrive, don't overshoot
        norm = float(np.linalg.norm(direction))
        if norm < 1e-9:
            return np.zeros(2, np.float32)
        return (direction / norm * speed).astype(np.float32)
