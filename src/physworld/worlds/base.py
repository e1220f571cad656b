"""What every pymunk world shares: spaces, walls, the state vector, stepping, seeding, drawing.

A world subclasses :class:`PhysWorld` and fills four hooks:

- ``_build(rng)`` makes ``self.space`` (:meth:`_new_space`), adds this episode's bodies
  (:meth:`_add_object`) and returns the episode's physical parameters as a dict of Python
  numbers and tuples (immutable, so every step can hand them out);
- ``_control(action)`` applies the action before each physics substep (default: nothing);
- ``_task(state)`` returns ``(reward, terminated, extra_info)`` (default: ``0, False, {}``);
- ``_draw_static(canvas)`` paints what does not move, e.g. a goal (default: nothing).

A world's constructor takes its own parameters plus ``**options: Unpack[WorldOptions]`` (the
observation mode, image size, timing and limits) and passes the options on to
``PhysWorld.__init__``; :func:`check_number` and :func:`check_range` validate its parameters.

Everything else (observation modes, truncation, determinism, ``render_state``) lives here once.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, TypedDict

import gymnasium as gym
import numpy as np
import pymunk

from physworld.worlds.render import Renderer, object_color

Range = tuple[float, float]
ObsMode = Literal["pixels", "state"]


def check_range(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    integer: bool = False,
) -> tuple[float, float]:
    """Validate a ``(low, high)`` parameter range; a bare number means ``(x, x)``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = (value, value)
    try:
        lo, hi = value
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if lo > hi:
        raise ValueError(f"{name}: low must not exceed high, got {value!r}")
    if lo < low or hi > high:
        raise ValueError(f"{name} must lie within [{low}, {high}], got {value!r}")
    if integer and (lo != int(lo) or hi != int(hi)):
        raise ValueError(f"{name} must be whole numbers, got {value!r}")
    return (int(lo), int(hi)) if integer else (lo, hi)


def check_number(name: str, value: Any, low: float, high: float) -> float:
    """Validate one number in ``[low, high]`` (not a bool) and return it as a float."""
    if not (isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


class WorldOptions(TypedDict, total=False):
    """The options every world passes through to :class:`PhysWorld` (``**options``).

    Defaults are :meth:`PhysWorld.__init__`'s unless a world's docstring says otherwise:
    ``obs="pixels"``, ``image_size=64``, ``render_mode=None``, ``dt=1/60``, ``frame_skip=4``,
    ``max_steps=100``, ``max_speed=PhysWorld.DEFAULT_MAX_SPEED`` (20), ``antialias=True``.
    """

    obs: ObsMode  # "pixels" (uint8 frames) or "state" (the float32 state vector)
    image_size: int  # frame side in pixels, >= 16
    render_mode: str | None  # None or "rgb_array"
    dt: float  # seconds per physics step, in (0, 0.1]
    frame_skip: int  # physics steps per env step, >= 1
    max_steps: int  # env steps before truncation, >= 1
    max_speed: float  # speed cap (units/s), also the state bound
    antialias: bool  # anti-aliased drawing


def uniform(rng: np.random.Generator, bounds: Range) -> float:
    """One draw from ``bounds`` as a Python float (always consumes the generator, for determinism)."""
    return float(rng.uniform(bounds[0], bounds[1]))


def object_positions(state, n_objects: int):
    """``[..., n_objects * 6]`` states -> ``[..., n_objects, 2]`` positions (numpy or torch)."""
    return state.reshape(*state.shape[:-1], n_objects, 6)[..., :2]


class Look(NamedTuple):
    """How one object is drawn: a ``circle`` of radius ``size`` or a ``box`` of half-side ``size``."""

    kind: Literal["circle", "box"]
    size: float


class PhysWorld(gym.Env):
    """Base class of the physworld environments (pymunk 2-D, arena ``[0, arena_size]²``, y up).

    Observations are the float32 state vector ``[n_objects * 6]`` (object-major, fields
    :attr:`STATE_FIELDS`) or a uint8 ``[image_size, image_size, 3]`` frame. One env step runs
    ``frame_skip`` physics steps of ``dt`` seconds. ``info["state"]`` and ``info["params"]`` are
    always present; ``info["n_objects"]`` is the active object count (slots beyond it are zero).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}
    STATE_FIELDS = ("x", "y", "vx", "vy", "angle", "angvel")
    arena_size: float = 10.0
    MAX_ANGULAR_SPEED = 100.0  # rad/s; spins are capped like speeds so the state is bounded
    DEFAULT_MAX_SPEED = 20.0  # units/s; worlds that bound a speed by max_speed read it from here

    def __init__(
        self,
        *,
        n_objects: int,
        object_names: list[str],
        action_space: gym.spaces.Box,
        obs: ObsMode = "pixels",
        image_size: int = 64,
        render_mode: str | None = None,
        dt: float = 1 / 60,
        frame_skip: int = 4,
        max_steps: int = 100,
        max_speed: float = DEFAULT_MAX_SPEED,
        antialias: bool = True,
    ) -> None:
        if obs not in ("pixels", "state"):
            raise ValueError(f"obs must be 'pixels' or 'state', got {obs!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not isinstance(image_size, int | np.integer) or image_size < 16:
            raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}")
        if not (isinstance(dt, int | float) and 0 < dt <= 0.1):
            raise ValueError(f"dt must be in (0, 0.1] seconds, got {dt!r}")
        if not isinstance(frame_skip, int | np.integer) or frame_skip < 1:
            raise ValueError(f"frame_skip must be an integer >= 1, got {frame_skip!r}")
        if not isinstance(max_steps, int | np.integer) or max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
        if not (isinstance(max_speed, int | float) and max_speed > 0):
            raise ValueError(f"max_speed must be positive, got {max_speed!r}")
        self.n_objects = n_objects
        self.object_names = list(object_names)
        self.obs_mode = obs
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.dt = float(dt)
        self.frame_skip = int(frame_skip)
        self.max_steps = int(max_steps)
        self.max_speed = float(max_speed)
        self.action_space = action_space
        if obs == "state":
            a, v, w = self.arena_size, self.max_speed, self.MAX_ANGULAR_SPEED
            low = np.tile(np.array([0, 0, -v, -v, -np.pi, -w], np.float32), n_objects)
            high = np.tile(np.array([a, a, v, v, np.pi, w], np.float32), n_objects)
            self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        else:
            shape = (self.image_size, self.image_size, 3)
            self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.renderer = Renderer(self.image_size, self.arena_size, antialias)
        self.colors = [object_color(i) for i in range(n_objects)]  # fixed per object index
        self.space: pymunk.Space | None = None
        self.bodies: list[pymunk.Body] = []
        self.looks: list[Look] = []
        self.params: dict[str, Any] = {}
        self._state = np.zeros(n_objects * len(self.STATE_FIELDS), np.float32)
        self._background = self.renderer.canvas()
        self._frame: np.ndarray | None = None
        self._steps = 0

    # ----- hooks for subclasses -----
    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def _control(self, action: np.ndarray) -> None:
        """Apply ``action`` (clipped to the action space) before each physics substep.

        pymunk clears forces after every substep, so a force must be set again each time.
        """

    def _task(self, state: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        return 0.0, False, {}

    def _draw_static(self, canvas: np.ndarray) -> None:
        """Paint the episode's fixed scenery (e.g. a goal) beneath the objects."""

    # ----- helpers for subclasses -----
    def _new_space(self, gravity: float = 0.0, damping: float = 1.0) -> pymunk.Space:
        """An empty space with four thick static walls whose inner faces are the arena's edges.

        The walls are segments of radius ``arena_size``, so nothing that moves less than an
        arena per substep can tunnel through them.
        """
        space = pymunk.Space()
        space.gravity = (0.0, -gravity)
        space.damping = damping
        space.collision_slop = 0.002 * self.arena_size  # pymunk's default 0.1 is for pixel units
        a, t = self.arena_size, self.arena_size  # t: wall half-thickness
        corners = [(-t, -t), (a + t, -t), (a + t, a + t), (-t, a + t)]
        for p, q in zip(corners, corners[1:] + corners[:1], strict=True):
            wall = pymunk.Segment(space.static_body, p, q, t)
            wall.elasticity, wall.friction = 1.0, 1.0  # combined multiplicatively with objects
            space.add(wall)
        return space

    def _add_object(
        self,
        body: pymunk.Body,
        shape: pymunk.Shape,
        look: Look,
        elasticity: float,
        friction: float,
    ) -> None:
        """Add one moving object; its index (and so its state slot and colour) is its order."""
        shape.elasticity, shape.friction = elasticity, friction
        assert self.space is not None
        self.space.add(body, shape)
        self.bodies.append(body)
        self.looks.append(look)

    # ----- the Gymnasium API -----
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.bodies, self.looks = [], []
        self.params = self._build(self.np_random)
        self._background = self.renderer.canvas()
        self._draw_static(self._background)
        self._steps = 0
        state = self._read_state()
        _, _, extra = self._task(state)
        return self._observe(state), self._info(state, extra)

    def step(self, action):
        if self.space is None:
            raise RuntimeError("call reset() before step()")
        space = self.action_space
        action = np.clip(np.asarray(action, np.float32), space.low, space.high)
        for _ in range(self.frame_skip):
            self._control(action)
            self.space.step(self.dt)
        self._steps += 1
        state = self._read_state()
        reward, terminated, extra = self._task(state)
        truncated = self._steps >= self.max_steps
        return (
            self._observe(state),
            float(reward),
            bool(terminated),
            truncated,
            self._info(state, extra),
        )

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called with render_mode=None; pass render_mode='rgb_array'"
            )
            return None
        if self._frame is None:
            self._frame = self.render_state(self._state)
        return self._frame.copy()

    def render_state(self, state) -> np.ndarray:
        """Draw any state vector ``[n_objects * 6]`` with this episode's sizes, colours and goal.

        Objects beyond this episode's active count and non-finite positions are not drawn.
        """
        state = np.asarray(state, np.float32)
        size = self.n_objects * len(self.STATE_FIELDS)
        if state.shape != (size,):
            raise ValueError(f"render_state needs a state of shape ({size},), got {state.shape}")
        state = state.reshape(self.n_objects, len(self.STATE_FIELDS))
        canvas = self._background.copy()
        rows = state.tolist()
        for look, (x, y, _, _, angle, _), color in zip(self.looks, rows, self.colors, strict=False):
            if look.kind == "circle":
                self.renderer.circle(canvas, x, y, look.size, color)
            else:
                self.renderer.box(canvas, x, y, look.size, look.size, angle, color)
        return self.renderer.to_uint8(canvas)

    # ----- internals -----
    def _read_state(self) -> np.ndarray:
        """Read the bodies into the state vector, capping speeds and spins on the way.

        The caps (``max_speed``, ``MAX_ANGULAR_SPEED``) keep every body from outrunning the
        collision checks, and the state bounded; the state reports the capped values.
        """
        rows = []
        for b in self.bodies:
            (x, y), (vx, vy), w = b.position, b.velocity, b.angular_velocity
            speed = math.hypot(vx, vy)
            if speed > self.max_speed:
                vx, vy = vx * self.max_speed / speed, vy * self.max_speed / speed
                b.velocity = (vx, vy)
            if abs(w) > self.MAX_ANGULAR_SPEED:
                w = math.copysign(self.MAX_ANGULAR_SPEED, w)
                b.angular_velocity = w
            rows.append((x, y, vx, vy, math.remainder(b.angle, math.tau), w))  # angle in [-pi, pi]
        state = np.zeros((self.n_objects, len(self.STATE_FIELDS)), np.float32)
        state[: len(rows)] = rows
        self._state = state.reshape(-1)
        self._frame = None
        return self._state.copy()

    def _observe(self, state: np.ndarray) -> np.ndarray:
        if self.obs_mode == "state":
            return state
        self._frame = self.render_state(state)
        return self._frame.copy()

    def _info(self, state: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
        # params holds only floats and tuples, so a shallow copy is enough to hand out every step
        params = dict(self.params)
        return {"state": state.copy(), "params": params, "n_objects": len(self.bodies), **extra}
