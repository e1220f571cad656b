"""Platformer: a character runs and jumps over platforms under gravity and pushes boxes around.

Made for learning actions from video (Genie): the character's four moves have distinct, visible
effects, and everything else (layout, colours, box sizes and masses) changes with the seed.

**Actions.** ``Box(0, 1, (4,))``: one score per move ``noop, left, right, jump``
(:data:`ACTION_NAMES`); the highest score is the move made (ties go to the first). A one-hot
(:meth:`Platformer.one_hot`) is the natural input; any Box sample is also a valid move, so
``physworld collect --policy random`` picks the four moves uniformly. Data sets store the
scores (the data module keeps float actions); :func:`action_index` reads the moves back.
A Box rather than ``Discrete(4)`` because the episode store, the training windows and every
model take float action vectors.

**Moves.** left/right set the horizontal speed to ``run_speed`` (on the ground and in the air);
noop and jump set it to zero; jump launches at ``jump_speed`` only when the character stands on
something (floor, platform or box) -- in the air it does nothing beyond stopping. The speed is
set when the step starts and held by a force, so walls and boxes still push back.

**Exploration.** There is no task (reward 0, no termination); :meth:`Platformer.expert_action`
is a scripted *explorer* (``collect --policy expert``): random moves that never jump in the air
nor run into an arena wall, so nearly every recorded move has a visible effect.

**State.** Objects ``[character, box0, box1, ...]``; slots of absent boxes are zero.

**Which moves can be told apart?** :func:`move_ceiling` replays episodes and tries every move
from each state: moves whose next frames are the same (a jump in the air is a noop) cannot be
named by anything that sees frames -- the action probe's ceiling.
"""

from __future__ import annotations

import colorsys
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
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

ACTION_NAMES = ("noop", "left", "right", "jump")
NOOP, LEFT, RIGHT, JUMP = range(4)
CHARACTER = 0
PLATFORM_THICKNESS = 0.35
LEVEL_HEIGHT = 2.3  # vertical spacing of platform levels (a default jump rises 2.7)
MAX_BOXES = 6


def action_index(actions) -> np.ndarray:
    """Move index (0..3) of Platformer action vectors ``[..., 4]`` (argmax; ties -> first)."""
    return np.asarray(actions).argmax(-1)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (255.0 * r, 255.0 * g, 255.0 * b)


class Platformer(PhysWorld):
    """A side view with gravity: ``[character, boxes...]`` on a floor and 2-3 platforms.

    Per seed: platform positions and widths, where the character and the boxes start (boxes
    rest on the floor or on a platform), box sizes and masses, and every colour (background,
    platforms, character, boxes). ``info["grounded"]`` says whether a jump would launch now.

    ``**options``: :class:`~physworld.worlds.base.WorldOptions` (here ``max_steps`` defaults to 200).
    """

    ACTION_NAMES = ACTION_NAMES

    def __init__(
        self,
        *,
        n_boxes: int | tuple[int, int] = 2,
        n_platforms: int | tuple[int, int] = (2, 3),
        box_size_range: Range = (0.7, 1.1),
        box_mass_range: Range = (0.5, 2.0),
        gravity_range: Range = (50.0, 50.0),
        run_speed: float = 7.5,
        jump_speed: float = 16.5,
        character_radius: float = 0.5,
        **options: Unpack[WorldOptions],
    ) -> None:
        options.setdefault("max_steps", 200)
        max_speed = options.get("max_speed", self.DEFAULT_MAX_SPEED)
        self.n_boxes_range = check_range("n_boxes", n_boxes, 0, MAX_BOXES, integer=True)
        self.n_platforms_range = check_range("n_platforms", n_platforms, 0, 3, integer=True)
        self.box_size_range = check_range("box_size_range", box_size_range, 0.3, 1.5)
        self.box_mass_range = check_range("box_mass_range", box_mass_range, 1e-2, 1e2)
        self.gravity_range = check_range("gravity_range", gravity_range, 1.0, 100.0)
        self.run_speed = check_number("run_speed", run_speed, 0.1, max_speed)
        self.jump_speed = check_number("jump_speed", jump_speed, 0.1, max_speed)
        self.character_radius = check_number("character_radius", character_radius, 0.2, 0.8)
        self.platforms: list[tuple[float, float, float]] = []  # (centre x, top y, half width)
        self.platform_color = (90.0, 90.0, 90.0)
        self.background_color = (22.0, 24.0, 30.0)
        self._explore_rng = np.random.default_rng(0)
        self._substep = 0
        self._feet = pymunk.ShapeFilter(group=1)  # the character's group: queries skip it
        n_max = self.n_boxes_range[1]
        super().__init__(
            n_objects=1 + n_max,
            object_names=["character"] + [f"box{i}" for i in range(n_max)],
            action_space=gym.spaces.Box(0.0, 1.0, (len(ACTION_NAMES),), np.float32),
            **options,
        )

    @staticmethod
    def one_hot(move: int) -> np.ndarray:
        """The action vector that makes ``move`` (0 noop, 1 left, 2 right, 3 jump)."""
        if not 0 <= int(move) < len(ACTION_NAMES):
            raise ValueError(f"move must be 0..{len(ACTION_NAMES) - 1}, got {move!r}")
        action = np.zeros(len(ACTION_NAMES), np.float32)
        action[int(move)] = 1.0
        return action

    # ----- the scene -----
    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        a = self.arena_size
        n_platforms = int(rng.integers(self.n_platforms_range[0], self.n_platforms_range[1] + 1))
        n_boxes = int(rng.integers(self.n_boxes_range[0], self.n_boxes_range[1] + 1))
        gravity = uniform(rng, self.gravity_range)
        self.platforms = []
        for level in range(1, n_platforms + 1):  # one platform per level, so none overlap
            half = float(rng.uniform(1.1, 1.8))
            x = float(rng.uniform(half + 0.3, a - half - 0.3))
            top = level * LEVEL_HEIGHT + float(rng.uniform(-0.2, 0.2))
            self.platforms.append((x, top, half))
        sizes = [uniform(rng, self.box_size_range) for _ in range(n_boxes)]
        masses = [uniform(rng, self.box_mass_range) for _ in range(n_boxes)]
        surfaces = [(0.0, 0.0, a)] + [(top, x - h, x + h) for x, top, h in self.platforms]
        r = self.character_radius
        spots = self._place(rng, surfaces, [r] + [s / 2 for s in sizes], floor_first=1)

        # Colours: a dark background, muted platforms, a bright character, mid-tone boxes.
        hue = float(rng.uniform())
        self.background_color = _hsv(hue, 0.4, float(rng.uniform(0.08, 0.2)))
        self.platform_color = _hsv(
            hue + float(rng.uniform(0.3, 0.7)), 0.35, float(rng.uniform(0.45, 0.6))
        )
        character_hue = float(rng.uniform())
        self.colors = [np.asarray(_hsv(character_hue, 0.9, 1.0), np.float32)]
        for i in range(self.n_objects - 1):
            box_hue = character_hue + 0.25 + 0.5 * float(rng.uniform())  # away from the character's
            self.colors.append(np.asarray(_hsv(box_hue + 0.1 * i, 0.6, 0.75), np.float32))

        self.space = self._new_space(gravity=gravity)
        for x, top, half in self.platforms:
            y0, y1 = top - PLATFORM_THICKNESS, top
            slab = pymunk.Poly(
                self.space.static_body,
                [(x - half, y0), (x + half, y0), (x + half, y1), (x - half, y1)],
            )
            slab.elasticity, slab.friction = 0.0, 1.0
            self.space.add(slab)
        character = pymunk.Body(1.0, math.inf)  # never rotates
        character.position = spots[0]
        shape = pymunk.Circle(character, r)
        shape.filter = self._feet
        # frictionless, so it cannot stick to a wall it runs into while falling
        self._add_object(character, shape, Look("circle", r), 0.0, 0.0)
        for size, mass, spot in zip(sizes, masses, spots[1:], strict=True):
            box = pymunk.Body(mass, pymunk.moment_for_box(mass, (size, size)))
            box.position = spot
            self._add_object(
                box, pymunk.Poly.create_box(box, (size, size)), Look("box", size / 2), 0.0, 0.7
            )

        self._explore_rng = np.random.default_rng(int(rng.integers(2**63)))
        return {
            "n_boxes": n_boxes,
            "n_platforms": n_platforms,
            "platforms": tuple(self.platforms),
            "box_size": tuple(sizes),
            "box_mass": tuple(masses),
            "gravity": gravity,
            "run_speed": self.run_speed,
            "jump_speed": self.jump_speed,
            "character_radius": r,
        }

    @staticmethod
    def _place(
        rng: np.random.Generator,
        surfaces: list[tuple[float, float, float]],
        halves: list[float],
        floor_first: int,
    ) -> list[tuple[float, float]]:
        """Rest each item (half-extent ``halves[i]``) on a surface without overlapping another.

        The first ``floor_first`` items start on the floor; the rest pick any surface wide enough.
        """
        placed: list[tuple[int, float, float]] = []  # (surface, x, half)
        spots = []
        for i, half in enumerate(halves):
            for _ in range(1000):
                options = (
                    [0]
                    if i < floor_first
                    else [k for k, (_, lo, hi) in enumerate(surfaces) if hi - lo > 2.5 * half]
                )
                k = options[int(rng.integers(len(options)))]
                top, lo, hi = surfaces[k]
                x = float(rng.uniform(lo + half + 0.05, hi - half - 0.05))
                if all(k != pk or abs(x - px) > half + ph + 0.1 for pk, px, ph in placed):
                    break
            else:
                raise RuntimeError("could not place the boxes; lower n_boxes or box_size_range")
            placed.append((k, x, half))
            spots.append((x, top + half + 1e-3))
        return spots

    def _draw_static(self, canvas: np.ndarray) -> None:
        half = self.arena_size / 2
        self.renderer.box(canvas, half, half, half, half, 0.0, self.background_color)
        t = PLATFORM_THICKNESS / 2
        for x, top, w in self.platforms:
            self.renderer.box(canvas, x, top - t, w, t, 0.0, self.platform_color)

    # ----- moving -----
    def grounded(self) -> bool:
        """Whether the character stands on something (so a jump would launch).

        A thin probe just under its feet (a geometric query: no dependence on the last
        contacts, so it is right straight after a reset); the character itself is filtered out.
        """
        character = self.bodies[CHARACTER]
        (x, y), r = character.position, self.character_radius
        below = y - r - 0.05
        hit = self.space.segment_query_first(
            (x - 0.6 * r, below), (x + 0.6 * r, below), 0.04, self._feet
        )
        return hit is not None and character.velocity.y < 1.0

    def step(self, action):
        self._substep = 0
        return super().step(action)

    def _control(self, action: np.ndarray) -> None:
        """Set the horizontal speed at the step's start (so a move's effect does not depend on
        the last one), then hold it with a force, which contacts can still overcome."""
        move = int(action_index(action))
        character = self.bodies[CHARACTER]
        target = {LEFT: -self.run_speed, RIGHT: self.run_speed}.get(move, 0.0)
        if self._substep == 0:
            vy = self.jump_speed if move == JUMP and self.grounded() else character.velocity.y
            character.velocity = (target, vy)
        self._substep += 1
        character.force = (character.mass / self.dt * (target - character.velocity.x), 0.0)

    def _task(self, state: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        return 0.0, False, {"grounded": self.grounded()}

    def expert_action(self) -> np.ndarray:
        """The scripted explorer: a fresh random move every step, each with a visible effect.

        Jump is drawn only on the ground, and left/right never push into an arena wall, so the
        recorded move is the one seen. Moves are not held: a move that could be guessed from
        the previous frames would teach a latent action model nothing.
        """
        character = self.bodies[CHARACTER]
        moves, weights = [NOOP, LEFT, RIGHT, JUMP], [0.2, 0.3, 0.3, 0.2]
        if not self.grounded():
            moves, weights = moves[:3], weights[:3]
        move = int(self._explore_rng.choice(moves, p=np.asarray(weights) / sum(weights)))
        x, margin = character.position.x, self.character_radius + 0.3
        if move == LEFT and x < margin:
            move = RIGHT
        elif move == RIGHT and x > self.arena_size - margin:
            move = LEFT
        return self.one_hot(move)

    def next_frames(self, shadow: Platformer) -> np.ndarray:
        """The next observation of every move, ``[4, ...]``, from this world's current state.

        The moves are stepped in ``shadow`` (the same layout: a Platformer built with the same
        options and reset with the same seed), so this world's own course is left untouched.
        Only the bodies' state is copied over, not pymunk's contact cache, so a frame can differ
        from the one this world would draw by a few antialiasing levels: compare with a tolerance.
        """
        frames = []
        for move in range(len(ACTION_NAMES)):
            for copy, body in zip(shadow.bodies, self.bodies, strict=True):
                copy.position, copy.velocity = body.position, body.velocity
                copy.angle, copy.angular_velocity = body.angle, body.angular_velocity
            shadow._steps = self._steps
            frames.append(shadow.step(self.one_hot(move))[0])
        return np.stack(frames)


def move_ceiling(
    episodes: Iterable[tuple[int, np.ndarray]], tolerance: int = 8, **world_kwargs: Any
) -> dict[str, float]:
    """The best accuracy any classifier of a frame transition can reach in naming the move.

    Replays each ``(seed, actions)`` episode in a pixel Platformer (``world_kwargs``: the data
    set's world options) and, at every step, steps every move from the same state
    (:meth:`Platformer.next_frames`). Moves whose next frames differ from the true move's by at
    most ``tolerance`` uint8 levels at every pixel are indistinguishable there. The best any
    classifier can do is then to name, for each set of indistinguishable moves, the move the
    data makes most often within it: the ``ceiling``. ``ambiguous`` is the fraction of
    transitions where another move gives the same frame (most are resolved by the data's
    habits: the explorer never jumps in the air, so a frame a jump would also give is a noop).
    """
    world_kwargs = {**world_kwargs, "obs": "pixels"}
    seen: defaultdict[frozenset[int], Counter[int]] = defaultdict(Counter)
    for seed, actions in episodes:
        env, shadow = Platformer(**world_kwargs), Platformer(**world_kwargs)
        env.reset(seed=int(seed))
        shadow.reset(seed=int(seed))
        for action in actions:
            move = int(action_index(action))
            frames = env.next_frames(shadow).astype(np.int16)
            alike = np.abs(frames - frames[move]).reshape(len(frames), -1).max(1) <= tolerance
            seen[frozenset(np.flatnonzero(alike).tolist())][move] += 1
            env.step(action)
    total = sum(sum(c.values()) for c in seen.values())
    if not total:
        raise ValueError("move_ceiling needs at least one transition")
    ambiguous = sum(sum(c.values()) for moves, c in seen.items() if len(moves) > 1)
    best = sum(max(c.values()) for c in seen.values())
    return {"ceiling": best / total, "ambiguous": ambiguous / total, "transitions": float(total)}
