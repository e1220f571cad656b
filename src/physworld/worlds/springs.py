"""Springs: particles joined by hidden springs, pushed one at a time (causal discovery).

The interaction graph is fixed by ``graph_seed`` (not drawn per episode), so a model trained on
one configuration holds one graph, and the physbench causal task can read that graph back out
of the model's imagined responses to pushes. The springs are hidden: they are not drawn and not
in the state, only their effects are. Particles pass through each other (one collision group),
so two particles interact if and only if a spring joins them: the ground truth is exact.

Every spring has the same ``rest_length`` and ``stiffness``, so the dynamics are Markov in the
state (a per-episode rest length would be unobservable). Episodes start from random positions,
so the springs start stretched and the system rings down under ``damping``.

The action is a force on every particle (``[n_particles * 2]`` in ``[-1, 1]``, times
``push_force``), held for one env step. :meth:`expert_action` is not an expert (there is no
goal): it is the sparse exploration policy the causal task trains on, a push on one random
particle every few steps, because a do-intervention query is exactly such a push.
"""

from __future__ import annotations

import itertools
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

MAX_PARTICLES = 10
PARTICLE_GROUP = 1  # shapes of one non-zero pymunk group never collide with each other


def spring_graph(n_particles: int, n_springs: int, graph_seed: int) -> list[tuple[int, int]]:
    """The hidden springs of a configuration: ``n_springs`` distinct pairs drawn from the seed."""
    pairs = list(itertools.combinations(range(n_particles), 2))
    rng = np.random.default_rng(graph_seed)
    chosen = rng.choice(len(pairs), size=n_springs, replace=False)
    return sorted(pairs[int(k)] for k in chosen)


def directed_adjacency(n_particles: int, springs: list[tuple[int, int]]) -> np.ndarray:
    """``[n, n]`` bool: ``[i, j]`` when pushing ``i`` moves ``j`` directly (both ends of a spring)."""
    adj = np.zeros((n_particles, n_particles), bool)
    for i, j in springs:
        adj[i, j] = adj[j, i] = True
    return adj


class Springs(PhysWorld):
    """``n_particles`` equal discs, ``n_springs`` hidden springs chosen by ``graph_seed``.

    :attr:`springs` lists the spring pairs and :attr:`adjacency` the true directed graph (the
    answer key of the causal task). ``info["params"]["springs"]`` repeats it.
    """

    def __init__(
        self,
        *,
        n_particles: int = 5,
        n_springs: int = 5,
        graph_seed: int = 0,
        stiffness: float = 20.0,
        rest_length: float = 2.5,
        spring_damping: float = 0.5,
        damping: float = 0.5,
        radius: float = 0.3,
        push_force: float = 40.0,
        push_probability: float = 0.3,
        speed_range: Range = (0.0, 1.0),
        **options: Unpack[WorldOptions],
    ) -> None:
        max_speed = options.get("max_speed", self.DEFAULT_MAX_SPEED)
        if not (isinstance(n_particles, int | np.integer) and 2 <= n_particles <= MAX_PARTICLES):
            raise ValueError(f"n_particles must be an integer in [2, {MAX_PARTICLES}], got {n_particles!r}")
        pairs = n_particles * (n_particles - 1) // 2
        if not (isinstance(n_springs, int | np.integer) and 0 <= n_springs <= pairs):
            raise ValueError(
                f"n_springs must be an integer in [0, {pairs}] for {n_particles} particles, got {n_springs!r}"
            )
        if not (isinstance(graph_seed, int | np.integer) and graph_seed >= 0):
            raise ValueError(f"graph_seed must be a non-negative integer, got {graph_seed!r}")
        self.stiffness = check_number("stiffness", stiffness, 0.0, 1e3)
        self.rest_length = check_number("rest_length", rest_length, 0.0, self.arena_size / 2)
        self.spring_damping = check_number("spring_damping", spring_damping, 0.0, 1e2)
        self.damping = check_number("damping", damping, 0.0, 1.0)
        self.radius = check_number("radius", radius, 0.05, 1.0)
        self.push_force = check_number("push_force", push_force, 0.0, 1e3)
        self.push_probability = check_number("push_probability", push_probability, 0.0, 1.0)
        self.speed_range = check_range("speed_range", speed_range, 0.0, max_speed)
        self.springs = spring_graph(int(n_particles), int(n_springs), int(graph_seed))
        self.adjacency = directed_adjacency(int(n_particles), self.springs)
        super().__init__(
            n_objects=int(n_particles),
            object_names=[f"particle{i}" for i in range(n_particles)],
            action_space=gym.spaces.Box(-1.0, 1.0, (2 * int(n_particles),), np.float32),
            **options,
        )

    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        r, a = self.radius, self.arena_size
        positions = rng.uniform(r + 0.5, a - r - 0.5, size=(self.n_objects, 2))
        speeds = [uniform(rng, self.speed_range) for _ in range(self.n_objects)]
        headings = rng.uniform(0.0, math.tau, size=self.n_objects)
        self.space = self._new_space(damping=self.damping)
        for (x, y), s, h in zip(positions.tolist(), speeds, headings.tolist(), strict=True):
            body = pymunk.Body(1.0, math.inf)  # a disc that never spins: angle stays 0
            body.position = (x, y)
            body.velocity = (s * math.cos(h), s * math.sin(h))
            shape = pymunk.Circle(body, r)
            shape.filter = pymunk.ShapeFilter(group=PARTICLE_GROUP)  # particles pass through each other
            self._add_object(body, shape, Look("circle", r), 1.0, 0.0)
        for i, j in self.springs:
            spring = pymunk.DampedSpring(
                self.bodies[i], self.bodies[j], (0, 0), (0, 0),
                self.rest_length, self.stiffness, self.spring_damping,
            )
            self.space.add(spring)
        return {
            "springs": tuple(self.springs),
            "stiffness": self.stiffness,
            "rest_length": self.rest_length,
            "damping": self.damping,
            "push_force": self.push_force,
        }

    def _control(self, action: np.ndarray) -> None:
        for body, (fx, fy) in zip(self.bodies, action.reshape(-1, 2).tolist(), strict=True):
            body.force = (fx * self.push_force, fy * self.push_force)

    def expert_action(self) -> np.ndarray:
        """Sparse exploration: with ``push_probability``, one random particle gets a push of
        random direction and strength in [0.5, 1]; otherwise nothing (the springs ring on)."""
        action = np.zeros(self.action_space.shape, np.float32)
        rng = self.np_random
        if rng.random() < self.push_probability:
            i, angle, size = int(rng.integers(self.n_objects)), rng.uniform(0, math.tau), rng.uniform(0.5, 1.0)
            action[2 * i : 2 * i + 2] = size * math.cos(angle), size * math.sin(angle)
        return action
