"""Push: a disc agent pushes a square block (which slides and rotates) onto a goal.

A top-down table: no gravity; ``damping`` (the fraction of velocity a body keeps after one
second, as in ``pymunk.Space.damping``) stands in for the table's friction, so a pushed block
comes to rest. The action is the agent's velocity in ``[-1, 1]²``, scaled to ``agent_speed``
and imposed before every physics substep; contacts still slow the agent down within a substep,
so a heavier block is pushed more slowly. The goal is a position (the block's orientation is
free) drawn as a dim disc of radius ``goal_tolerance``: the episode succeeds, and terminates,
when the block's centre is inside it.

With ``n_blocks > 1`` (multi-step manipulation) there are as many blocks and goals, to be done in
order: the *stage* is the first block (in order) not on its goal, the expert and a planner work
on that block, and the episode succeeds when every block is on its goal at once. Knocking a
placed block off its goal sends the stage back to it, so the stage is a function of the state.
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
from physworld.worlds.render import BACKGROUND, object_color

AGENT, BLOCK = 0, 1
MAX_BLOCKS = 3


class Push(PhysWorld):
    """Objects: ``[agent, block]``. Reward: minus the block→goal distance over ``arena_size``.

    ``info["goal"]`` is the goal position, ``info["is_success"]`` whether the block is within
    ``goal_tolerance`` of it. :meth:`expert_action` is a scripted pusher for data collection.
    """

    def __init__(
        self,
        *,
        n_blocks: int = 1,
        block_size_range: Range = (1.5, 1.5),
        block_mass_range: Range = (1.0, 1.0),
        friction_range: Range = (0.5, 0.5),
        damping_range: Range = (0.02, 0.02),
        agent_radius: float = 0.5,
        agent_mass: float = 1.0,
        agent_speed: float = 5.0,
        goal_tolerance: float = 0.5,
        **options: Unpack[WorldOptions],
    ) -> None:
        max_speed = options.get("max_speed", self.DEFAULT_MAX_SPEED)
        self.block_size_range = check_range("block_size_range", block_size_range, 0.2, 3.0)
        self.block_mass_range = check_range("block_mass_range", block_mass_range, 1e-3, 1e3)
        self.friction_range = check_range("friction_range", friction_range, 0.0, 10.0)
        self.damping_range = check_range("damping_range", damping_range, 0.0, 1.0)
        if not isinstance(n_blocks, int | np.integer) or not 1 <= n_blocks <= MAX_BLOCKS:
            raise ValueError(f"n_blocks must be an integer in [1, {MAX_BLOCKS}], got {n_blocks!r}")
        self.n_blocks = int(n_blocks)
        self.agent_radius = check_number("agent_radius", agent_radius, 0.1, 1.5)
        self.agent_mass = check_number("agent_mass", agent_mass, 1e-3, 1e3)
        self.agent_speed = check_number("agent_speed", agent_speed, 0.1, max_speed)
        self.goal_tolerance = check_number("goal_tolerance", goal_tolerance, 0.01, 3.0)
        self.goal = np.zeros(2, np.float32)  # the first block's goal
        self.goals = np.zeros((self.n_blocks, 2), np.float32)
        self.stage = 0
        self._solved = 0
        self._keep = 1.0
        names = ["block"] + [f"block{i + 1}" for i in range(1, self.n_blocks)]
        super().__init__(
            n_objects=1 + self.n_blocks,
            object_names=["agent", *names],
            action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            **options,
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
        blocks, goals, angles = [block_xy], [goal], [block_angle]
        for _ in range(1, self.n_blocks):  # (draws nothing for one block: its scenes stay as they were)
            b, g = self._another_block(rng, lo, hi, side, blocks + goals)
            blocks.append(b)
            goals.append(g)
            angles.append(float(rng.uniform(-math.pi / 4, math.pi / 4)))
        blocks[: self._solved] = goals[: self._solved]
        r = self.agent_radius
        while True:
            agent_xy = rng.uniform(r, self.arena_size - r, size=2)
            if all(np.linalg.norm(agent_xy - b) > side / math.sqrt(2) + r + 0.1 for b in blocks):
                break
        self.goal = goal.astype(np.float32)
        self.goals = np.stack(goals).astype(np.float32)

        self.space = self._new_space(damping=damping)
        self._keep = damping**self.dt  # velocity fraction pymunk's damping keeps per substep
        agent = pymunk.Body(self.agent_mass, math.inf)  # a disc that never spins
        agent.position = agent_xy.tolist()
        self._add_object(agent, pymunk.Circle(agent, r), Look("circle", r), 0.0, friction)
        for xy, angle in zip(blocks, angles, strict=True):
            block = pymunk.Body(block_mass, pymunk.moment_for_box(block_mass, (side, side)))
            block.position, block.angle = xy.tolist(), angle
            shape = pymunk.Poly.create_box(block, (side, side))
            self._add_object(block, shape, Look("box", side / 2), 0.0, friction)
        extra = {"goals": tuple(map(tuple, self.goals.tolist()))} if self.n_blocks > 1 else {}
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
            **extra,
        }

    def _another_block(
        self, rng: np.random.Generator, lo: float, hi: float, side: float, taken: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A further block and its goal, each clear of every block and goal drawn so far (so no
        block starts on another's goal, and the agent can pass between any two)."""
        gap = side * math.sqrt(2) + 0.2
        for _ in range(10_000):
            b, g = rng.uniform(lo, hi, size=2), rng.uniform(lo, hi, size=2)
            if (
                min(np.linalg.norm(b - o) for o in taken) > gap
                and min(np.linalg.norm(g - o) for o in taken) > gap
                and np.linalg.norm(g - b) > 2.0 * self.goal_tolerance + side / 2
            ):
                return b, g
        raise RuntimeError(f"no room for {self.n_blocks} blocks of side {side}: lower n_blocks or block_size_range")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """``options={"solved": k}`` starts the first ``k`` blocks on their goals (the same scene
        otherwise): with two blocks and ``k = 1``, the single push of the last block."""
        solved = (options or {}).get("solved", 0)
        if not isinstance(solved, int | np.integer) or not 0 <= solved < self.n_blocks:
            raise ValueError(f"options['solved'] must be an integer in [0, {self.n_blocks - 1}], got {solved!r}")
        self._solved = int(solved)
        return super().reset(seed=seed, options=options)

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
        if self.n_blocks > 1:
            return self._staged_task(state)
        distance = float(np.hypot(*(state[6:8] - self.goal)))
        success = distance <= self.goal_tolerance
        self.stage = int(success)
        return (
            -distance / self.arena_size,
            success,
            {"is_success": success, "goal": self.goal.copy()},
        )

    def _staged_task(self, state: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        """Several blocks: minus the summed block-goal distances; success when all are on."""
        distances = np.linalg.norm(state.reshape(self.n_objects, 6)[BLOCK:, :2] - self.goals, axis=1)
        on = distances <= self.goal_tolerance
        success = bool(on.all())
        self.stage = self.n_blocks if success else int(np.argmin(on))  # the first block not on its goal
        return (
            -float(distances.sum()) / self.arena_size,
            success,
            {"is_success": success, "goal": self.goals.reshape(-1).copy(), "stage": self.stage},
        )

    def _draw_static(self, canvas: np.ndarray) -> None:
        for i, (x, y) in enumerate(self.goals.tolist()):
            color = 0.45 * object_color(BLOCK + i) + 0.55 * np.asarray(BACKGROUND, np.float32)
            self.renderer.circle(canvas, x, y, self.goal_tolerance, color)

    def expert_action(self) -> np.ndarray:
        """A scripted pusher: get behind the block on the goal line, then push along it.

        Away from that line the agent circles the block in 45° hops at a safe radius (so it
        never shoves the block while repositioning); once behind, it pushes toward the goal
        while steering back onto the line, slowing near the goal so the block does not overshoot.
        """
        state = self._state.reshape(self.n_objects, 6)
        k = min(self.stage, self.n_blocks - 1)  # the block being worked on (several blocks: in order)
        agent, block = state[AGENT, :2].astype(np.float64), state[BLOCK + k, :2].astype(np.float64)
        to_goal = self.goals[k] - block
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
