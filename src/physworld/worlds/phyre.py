"""Mini-PHYRE: place a red ball so that, under gravity, the green ball ends up touching the blue one.

A small cousin of PHYRE's ball tier (Bakhtin et al. 2019). Every episode is one *question*: a
template (a family of scenes: a ledge, a ramp, a cup, ...) instantiated with seeded positions,
then one *attempt*: the red ball is placed (``reset(options={"placement": (x, y)})``, else a
uniformly random valid spot, which is what data collection uses) and the scene runs passively for
``max_steps`` steps. ``info["is_success"]`` turns true once the engine has reported a contact
between the green and the blue ball, and stays true.

Objects and state slots: ``[red, green, blue, bar0, bar1, bar2]``. The bars are the scene's static
geometry (platforms, ramps, cups, walls); they are read into the state like any body (zero
velocity, their angle), so a state model can see which scene it is in, and all bars have one
length (:data:`BAR_LENGTH`), so position and angle describe a bar completely: the state alone
determines the outcome, and a model can in principle carry over to templates it never saw.
Every template fills all three bar slots (unused ones are high distractor shelves, as PHYRE
scenes have clutter), so no slot is ever empty.

Differences from PHYRE, by design: one action per attempt is a position (the red ball's radius
is fixed, as the state holds no sizes); success is *any* contact within ``max_steps`` steps
(PHYRE asks for contact held 3 s), which keeps episodes short enough for CPU training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Unpack

import gymnasium as gym
import numpy as np
import pymunk

from physworld.worlds.base import Look, PhysWorld, WorldOptions, check_number, uniform
from physworld.worlds.render import object_color

RED, GREEN, BLUE = 0, 1, 2
N_BARS = 3
BAR_LENGTH = 3.0
BAR_THICKNESS = 0.2
RED_RADIUS, GREEN_RADIUS, BLUE_RADIUS = 0.7, 0.45, 0.45
FOCUS_SIZE = 4.0  # side of the square around the green ball that ``focus`` placements come from
PLACEMENT_GAP = 0.05  # the red ball keeps this clear of every other shape when placed
_GREEN_TYPE, _BLUE_TYPE = 1, 2  # pymunk collision types
COLORS = {RED: (230, 60, 60), GREEN: (60, 200, 90), BLUE: (70, 120, 240)}
BAR_COLOR = (150, 150, 150)

Bar = tuple[float, float, float]  # centre x, centre y, angle (rad)


class Scene(dict):
    """One question's layout: ``green``, ``blue`` (centres) and three ``bars``."""


def _platform(x: float, top: float, angle: float = 0.0) -> Bar:
    """A bar whose upper face passes through height ``top`` at its centre ``x``."""
    return (x, top - BAR_THICKNESS / 2 / math.cos(angle), angle)


def _on(bar: Bar, offset: float, radius: float) -> tuple[float, float]:
    """The centre of a ball of ``radius`` resting on a horizontal ``bar``, ``offset`` from its centre."""
    x, y, _ = bar
    return (x + offset, y + BAR_THICKNESS / 2 + radius)


def _shelf(rng: np.random.Generator, x: Sequence[float] = (1.8, 8.2), y: Sequence[float] = (7.0, 8.8)) -> Bar:
    """A distractor shelf high in the scene, slightly tilted."""
    return (uniform(rng, tuple(x)), uniform(rng, tuple(y)), uniform(rng, (-0.25, 0.25)))


def _roll(rng: np.random.Generator) -> Scene:
    """Green and blue on the floor: knock green along the floor into blue."""
    gx = uniform(rng, (1.5, 4.0))
    bx = gx + uniform(rng, (2.2, 4.5))
    return Scene(green=(gx, GREEN_RADIUS), blue=(bx, BLUE_RADIUS), bars=[_shelf(rng) for _ in range(N_BARS)])


def _ledge(rng: np.random.Generator) -> Scene:
    """Green on a platform, blue on the floor beyond its edge: knock green off the right side."""
    p = _platform(uniform(rng, (2.2, 3.6)), uniform(rng, (2.8, 4.8)))
    green = _on(p, uniform(rng, (-0.6, 0.9)), GREEN_RADIUS)
    bx = p[0] + BAR_LENGTH / 2 + uniform(rng, (0.6, 2.5))
    return Scene(green=green, blue=(bx, BLUE_RADIUS), bars=[p, _shelf(rng), _shelf(rng)])


def _ramp(rng: np.random.Generator) -> Scene:
    """Green on a platform at the top of a ramp that runs down toward blue."""
    angle = -uniform(rng, (0.3, 0.5))
    top = uniform(rng, (3.0, 4.2))
    p = _platform(uniform(rng, (1.8, 2.4)), top)
    half = BAR_LENGTH / 2
    # the ramp starts where the platform ends and runs down to the right
    rx = p[0] + half + half * math.cos(angle)
    ry = p[1] + half * math.sin(angle)
    ramp = (rx, ry, angle)
    green = _on(p, uniform(rng, (-0.4, 0.8)), GREEN_RADIUS)
    bx = rx + half * math.cos(angle) + uniform(rng, (1.0, 2.5))
    return Scene(green=green, blue=(bx, BLUE_RADIUS), bars=[p, ramp, _shelf(rng)])


def _cup(rng: np.random.Generator) -> Scene:
    """Blue sits in a V-shaped cup; green is on a platform to the left: get green into the cup."""
    cx = uniform(rng, (6.3, 7.8))
    tilt = uniform(rng, (0.6, 0.8))
    half = BAR_LENGTH / 2
    low = 0.5  # the bars' lower ends, above the floor
    cy = low + half * math.sin(tilt)
    left = (cx - half * math.cos(tilt) - 0.35, cy, -tilt)
    right = (cx + half * math.cos(tilt) + 0.35, cy, tilt)
    blue = (cx, low + 0.35 + BLUE_RADIUS)
    p = _platform(uniform(rng, (2.0, 3.0)), uniform(rng, (4.0, 5.5)))
    green = _on(p, uniform(rng, (-0.6, 0.9)), GREEN_RADIUS)
    return Scene(green=green, blue=blue, bars=[p, left, right])


def _step(rng: np.random.Generator) -> Scene:
    """Green on a high platform, blue on a lower one to the right."""
    hi = _platform(uniform(rng, (2.0, 3.2)), uniform(rng, (5.0, 6.5)))
    lo = _platform(hi[0] + uniform(rng, (2.8, 3.8)), uniform(rng, (2.0, 3.5)))
    green = _on(hi, uniform(rng, (-0.6, 0.9)), GREEN_RADIUS)
    blue = _on(lo, uniform(rng, (-0.9, 0.2)), BLUE_RADIUS)
    return Scene(green=green, blue=blue, bars=[hi, lo, _shelf(rng, y=(7.8, 9.0))])


def _drop(rng: np.random.Generator) -> Scene:
    """Green starts in the air above a ramp that sends it away (left) from blue (on the right)."""
    angle = uniform(rng, (0.3, 0.5))  # rising to the right: green lands and rolls left
    ramp = (uniform(rng, (4.0, 5.0)), uniform(rng, (2.5, 3.5)), angle)
    green = (ramp[0] + uniform(rng, (-0.3, 0.6)), uniform(rng, (6.5, 8.0)))
    bx = ramp[0] + BAR_LENGTH / 2 + uniform(rng, (1.2, 3.0))
    return Scene(green=green, blue=(bx, BLUE_RADIUS), bars=[ramp, _shelf(rng, x=(1.5, 3.0)), _shelf(rng, x=(1.5, 3.0), y=(4.5, 6.0))])


TEMPLATES: dict[int, tuple[str, Callable[[np.random.Generator], Scene]]] = {
    0: ("roll", _roll),
    1: ("ledge", _ledge),
    2: ("ramp", _ramp),
    3: ("cup", _cup),
    4: ("step", _step),
    5: ("drop", _drop),
}


class MiniPhyre(PhysWorld):
    """Passive: the only choice is where the red ball starts (``reset`` options), so the action
    space is the no-op ``Box(0, 0, (1,))`` (as Balls' passive mode).

    ``templates`` are the scene families drawn from (uniformly, per episode); each scene is
    mirrored left-right with probability 1/2. ``info["template"]``, ``info["is_success"]``.

    ``focus`` is the probability that an unrequested placement (data collection) comes from a
    square around the green ball rather than from the whole free space: uniform placements
    rarely touch anything, so a model trained on them alone sees few of the collisions that
    decide a question.

    ``**options``: :class:`~physworld.worlds.base.WorldOptions` (here ``max_steps`` defaults to 60).
    """

    def __init__(
        self,
        *,
        templates: Sequence[int] = tuple(TEMPLATES),
        focus: float = 0.0,
        gravity: float = 10.0,
        damping: float = 0.9,
        elasticity: float = 0.2,
        friction: float = 0.5,
        **options: Unpack[WorldOptions],
    ) -> None:
        options.setdefault("max_steps", 60)
        try:
            chosen = tuple(int(t) for t in templates)
        except (TypeError, ValueError):
            raise ValueError(f"templates must be a sequence of template numbers, got {templates!r}") from None
        if not chosen or any(t not in TEMPLATES for t in chosen):
            raise ValueError(f"templates must be a non-empty subset of {sorted(TEMPLATES)}, got {templates!r}")
        self.gravity = check_number("gravity", gravity, 0.0, 100.0)
        self.damping = check_number("damping", damping, 0.0, 1.0)
        self.elasticity = check_number("elasticity", elasticity, 0.0, 1.0)
        self.friction = check_number("friction", friction, 0.0, 10.0)
        self.focus = check_number("focus", focus, 0.0, 1.0)
        self.templates = chosen
        self.template = chosen[0]
        self.touched = False
        self._request: tuple[float, float] | None = None
        self._shapes: list[pymunk.Shape] = []
        self._bars: list[Bar] = []
        super().__init__(
            n_objects=3 + N_BARS,
            object_names=["red", "green", "blue", *(f"bar{i}" for i in range(N_BARS))],
            action_space=gym.spaces.Box(0.0, 0.0, (1,), np.float32),
            **options,
        )
        self.colors = [np.asarray(COLORS[i], np.float32) for i in (RED, GREEN, BLUE)] + [
            object_color(3 + i) for i in range(N_BARS)
        ]

    # ----- placing the red ball -----
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """``options={"placement": (x, y)}`` puts the red ball there (it must be a valid spot:
        :meth:`valid_placement`); without it the spot is drawn uniformly from the valid ones."""
        placement = (options or {}).get("placement")
        if placement is not None:
            try:
                x, y = (float(v) for v in placement)
            except (TypeError, ValueError):
                raise ValueError(f"placement must be an (x, y) pair, got {placement!r}") from None
            placement = (x, y)
        self._request = placement
        return super().reset(seed=seed, options=options)

    def valid_placement(self, x: float, y: float) -> bool:
        """Whether the red ball fits at ``(x, y)`` without touching any other shape (walls included)."""
        if self.space is None:
            raise RuntimeError("call reset() before asking about placements")
        return all(s.point_query((x, y)).distance > RED_RADIUS + PLACEMENT_GAP for s in self._shapes)

    def sample_placements(
        self, n: int, rng: np.random.Generator, near: tuple[float, float] | None = None
    ) -> np.ndarray:
        """``n`` valid spots ``[n, 2]`` for this episode's scene, uniform over the free space
        (or over the free part of the square of side :data:`FOCUS_SIZE` centred on ``near``)."""
        out: list[tuple[float, float]] = []
        lo, hi = np.zeros(2), np.full(2, self.arena_size)
        if near is not None:
            lo = np.maximum(lo, np.asarray(near) - FOCUS_SIZE / 2)
            hi = np.minimum(hi, np.asarray(near) + FOCUS_SIZE / 2)
        for _ in range(1000 * n):
            x, y = rng.uniform(lo, hi).tolist()
            if self.valid_placement(x, y):
                out.append((x, y))
                if len(out) == n:
                    return np.asarray(out, np.float32)
        raise RuntimeError("could not find free space for the red ball")

    # ----- the PhysWorld hooks -----
    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        self.template = self.templates[int(rng.integers(len(self.templates)))]
        scene = TEMPLATES[self.template][1](rng)
        mirror = bool(rng.random() < 0.5)
        a = self.arena_size

        def flip(x: float) -> float:
            return a - x if mirror else x

        green = (flip(scene["green"][0]), scene["green"][1])
        blue = (flip(scene["blue"][0]), scene["blue"][1])
        self._bars = [(flip(x), y, -angle if mirror else angle) for x, y, angle in scene["bars"]]

        self.space = self._new_space(gravity=self.gravity, damping=self.damping)
        self._shapes = list(self.space.shapes)  # the walls
        self.touched = False
        self.space.on_collision(_GREEN_TYPE, _BLUE_TYPE, begin=self._on_touch)
        # the red ball first (slot 0), placed once the rest of the scene is known
        red = self._ball(RED_RADIUS, (0.0, 0.0), None)
        self._shapes.pop()  # the red ball is no obstacle to its own placement
        self._ball(GREEN_RADIUS, green, _GREEN_TYPE)
        self._ball(BLUE_RADIUS, blue, _BLUE_TYPE)
        for x, y, angle in self._bars:
            body = pymunk.Body(body_type=pymunk.Body.STATIC)
            body.position, body.angle = (x, y), angle
            shape = pymunk.Poly.create_box(body, (BAR_LENGTH, BAR_THICKNESS))
            shape.elasticity, shape.friction = self.elasticity, self.friction
            self.space.add(body, shape)
            self.bodies.append(body)  # read into the state; drawn once, in the background
            self._shapes.append(shape)
        # always drawn (so a requested placement changes nothing else about the scene)
        near = rng.random() < self.focus
        drawn = self.sample_placements(1, rng, near=green if near else None)[0]
        if self._request is not None:
            if not self.valid_placement(*self._request):
                raise ValueError(
                    f"placement {self._request} overlaps the scene (the red ball has radius {RED_RADIUS}): "
                    "pick a spot from sample_placements() or check valid_placement()"
                )
            drawn = np.asarray(self._request, np.float32)
        red.position = tuple(float(v) for v in drawn)
        self.space.reindex_shapes_for_body(red)
        return {
            "template": self.template,
            "template_name": TEMPLATES[self.template][0],
            "mirrored": mirror,
            "placement": (float(drawn[0]), float(drawn[1])),
            "radius": (RED_RADIUS, GREEN_RADIUS, BLUE_RADIUS),
            "bars": tuple(self._bars),
            "gravity": self.gravity,
        }

    def _ball(self, radius: float, xy: tuple[float, float], kind: int | None) -> pymunk.Body:
        mass = math.pi * radius * radius
        body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0.0, radius))
        body.position = xy
        shape = pymunk.Circle(body, radius)
        if kind is not None:
            shape.collision_type = kind
        self._add_object(body, shape, Look("circle", radius), self.elasticity, self.friction)
        self._shapes.append(shape)
        return body

    def _on_touch(self, arbiter: pymunk.Arbiter, space: pymunk.Space, data: Any) -> None:
        self.touched = True

    def _task(self, state: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        return float(self.touched), False, {"is_success": self.touched, "template": self.template}

    def _draw_static(self, canvas: np.ndarray) -> None:
        for x, y, angle in self._bars:
            self.renderer.box(canvas, x, y, BAR_LENGTH / 2, BAR_THICKNESS / 2, angle, BAR_COLOR)
