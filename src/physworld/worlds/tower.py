"""Tower: a stack of 2-6 blocks on the floor, with random horizontal offsets, under gravity.

The physbench *stability* world (``physworld bench --tasks stability``): will the tower fall
within 2 s? Each episode is one tower, built at rest, and the engine lets it stand or fall for
4 s (30 env steps of 16 x 1/120 s; the question is about the first 15). Nothing is controlled: the action space is the no-op ``Box(0, 0, (1,))``, as in passive Balls.

**Blocks.** Identical by default (``block_width_range`` x ``block_height_range``, both a single
value), so the state vector alone fixes the configuration: a model reading states needs no size
it cannot see. Block ``k`` rests on block ``k-1`` (block 0 on the floor), shifted sideways by
``f * width`` with ``f`` drawn from ``[-wobble, wobble]`` and ``wobble`` itself drawn per tower
from ``wobble_range``.

**Both classes common.** With ``stable_fraction`` set (default one half), each tower is first
given a class, statically stable or not, and its offsets are redrawn until the textbook
centre-of-mass rule (:func:`static_margin`) agrees; towers of every height are then stable and
unstable about equally often, so counting blocks says nothing about the answer. The label the
benchmark scores is the engine's (the rule only balances the draw; a tower whose centre of mass
is just past an edge may still be standing after 2 s). ``stable_fraction=None`` keeps the raw draw.

**State.** Six object slots (:data:`MAX_BLOCKS`), bottom block first; a tower of ``n`` blocks
fills the first ``n`` and leaves the rest zero (``info["n_objects"]`` is ``n``).
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import gymnasium as gym
import numpy as np
import pymunk

from physworld.worlds.base import Look, PhysWorld, Range, WorldOptions, check_range, uniform

MAX_BLOCKS = 6  # object slots in the state vector, whatever the range of n_blocks
EDGE = 0.3  # the tower keeps this far from the side walls (world units)


def static_margin(xs: list[float] | np.ndarray, widths: list[float] | np.ndarray, masses=None) -> float:
    """How far the tower is from tipping by the centre-of-mass rule (world units; < 0: it tips).

    At every interface between block ``k`` and block ``k+1`` (bottom first), the centre of mass
    of the blocks above must lie over the contact, the overlap of the two blocks' tops and
    bottoms. The margin is the smallest distance, over the interfaces, from that centre of mass
    to the nearer end of its contact (negative when outside, or when two blocks do not touch).
    A single block (or none) has an infinite margin: the floor holds it.
    """
    xs = np.asarray(xs, np.float64)
    widths = np.asarray(widths, np.float64)
    masses = np.ones_like(xs) if masses is None else np.asarray(masses, np.float64)
    margin = math.inf
    for k in range(len(xs) - 1):
        lo = max(xs[k] - widths[k] / 2, xs[k + 1] - widths[k + 1] / 2)
        hi = min(xs[k] + widths[k] / 2, xs[k + 1] + widths[k + 1] / 2)
        com = float(np.dot(masses[k + 1 :], xs[k + 1 :]) / masses[k + 1 :].sum())
        margin = min(margin, com - lo, hi - com)  # <= (hi - lo) / 2 < 0 if they do not touch
    return float(margin)


class Tower(PhysWorld):
    """A block tower on the floor; passive. Objects ``[block0 (bottom), block1, ...]``.

    ``info["params"]`` holds the block count, sizes, offsets (``x[k] - x[k-1]`` as a fraction of
    the block width), ``static_margin`` (:func:`static_margin`) and ``statically_stable``.

    ``**options``: :class:`~physworld.worlds.base.WorldOptions`; here ``dt`` defaults to 1/120 s
    (a 1/60 s step lets tall stacks jitter over under this gravity), ``frame_skip`` to 16 (an env
    step is 2/15 s, so 2 s is 15 steps) and ``max_steps`` to 30 (an episode is 4 s).
    """

    def __init__(
        self,
        *,
        n_blocks: int | tuple[int, int] = (2, 6),
        block_width_range: Range = (2.0, 2.0),
        block_height_range: Range = (0.8, 0.8),
        density_range: Range = (1.0, 1.0),
        wobble_range: Range = (0.1, 0.9),
        base_x_range: Range = (4.5, 5.5),
        stable_fraction: float | None = 0.5,
        friction_range: Range = (0.8, 0.8),
        gravity_range: Range = (50.0, 50.0),
        solver_iterations: int = 30,
        **options: Unpack[WorldOptions],
    ) -> None:
        options.setdefault("dt", 1 / 120)
        options.setdefault("frame_skip", 16)
        options.setdefault("max_steps", 30)
        self.n_blocks_range = check_range("n_blocks", n_blocks, 1, MAX_BLOCKS, integer=True)
        self.block_width_range = check_range("block_width_range", block_width_range, 0.3, 3.0)
        self.block_height_range = check_range("block_height_range", block_height_range, 0.2, 1.5)
        self.density_range = check_range("density_range", density_range, 1e-3, 1e3)
        self.wobble_range = check_range("wobble_range", wobble_range, 0.0, 0.99)
        self.base_x_range = check_range("base_x_range", base_x_range, EDGE, self.arena_size - EDGE)
        self.friction_range = check_range("friction_range", friction_range, 0.0, 10.0)
        self.gravity_range = check_range("gravity_range", gravity_range, 0.1, 100.0)
        if stable_fraction is not None and not (
            isinstance(stable_fraction, int | float) and 0.0 <= stable_fraction <= 1.0
        ):
            raise ValueError(f"stable_fraction must be None or in [0, 1], got {stable_fraction!r}")
        if not isinstance(solver_iterations, int) or not 1 <= solver_iterations <= 1000:
            raise ValueError(f"solver_iterations must be an integer in [1, 1000], got {solver_iterations!r}")
        tallest = self.n_blocks_range[1] * self.block_height_range[1]
        if tallest > 0.8 * self.arena_size:
            raise ValueError(f"a tower of {tallest:.3g} units would not fit the arena; lower block_height_range")
        self.stable_fraction = None if stable_fraction is None else float(stable_fraction)
        self.solver_iterations = solver_iterations
        self.sizes: list[tuple[float, float]] = []  # (width, height) of each block this episode
        super().__init__(
            n_objects=MAX_BLOCKS,
            object_names=[f"block{i}" for i in range(MAX_BLOCKS)],
            action_space=gym.spaces.Box(0.0, 0.0, (1,), np.float32),
            **options,
        )

    def _build(self, rng: np.random.Generator) -> dict[str, Any]:
        n = int(rng.integers(self.n_blocks_range[0], self.n_blocks_range[1] + 1))
        widths = [uniform(rng, self.block_width_range) for _ in range(n)]
        heights = [uniform(rng, self.block_height_range) for _ in range(n)]
        densities = [uniform(rng, self.density_range) for _ in range(n)]
        masses = [d * w * h for d, w, h in zip(densities, widths, heights, strict=True)]
        friction = uniform(rng, self.friction_range)
        gravity = uniform(rng, self.gravity_range)
        want = None if self.stable_fraction is None or n < 2 else bool(rng.random() < self.stable_fraction)
        xs, fractions, wobble, margin = self._offsets(rng, widths, masses, want)

        self.space = self._new_space(gravity=gravity)
        self.space.iterations = self.solver_iterations
        self.sizes = list(zip(widths, heights, strict=True))
        y = 0.0
        for x, w, h, m in zip(xs, widths, heights, masses, strict=True):
            body = pymunk.Body(m, pymunk.moment_for_box(m, (w, h)))
            body.position = (x, y + h / 2)
            y += h
            self._add_object(body, pymunk.Poly.create_box(body, (w, h)), Look("box", w / 2), 0.0, friction)
        return {
            "n_blocks": n,
            "block_width": tuple(widths),
            "block_height": tuple(heights),
            "block_mass": tuple(masses),
            "offsets": tuple(fractions),
            "wobble": wobble,
            "static_margin": margin,
            "statically_stable": margin > 0,
            "friction": friction,
            "gravity": gravity,
        }

    def _offsets(self, rng: np.random.Generator, widths, masses, want: bool | None):
        """Block centres (x), offsets as width fractions, the wobble and the static margin.

        Redrawn until the static class is ``want`` (when given) and the tower fits the arena.
        """
        n = len(widths)
        for _ in range(10_000):
            wobble = uniform(rng, self.wobble_range)
            fractions = [float(rng.uniform(-wobble, wobble)) for _ in range(n - 1)]
            xs = [0.0]
            for k, f in enumerate(fractions, start=1):
                xs.append(xs[-1] + f * (widths[k - 1] + widths[k]) / 2)
            base = uniform(rng, self.base_x_range)
            xs = [x + base for x in xs]
            lo = min(x - w / 2 for x, w in zip(xs, widths, strict=True))
            hi = max(x + w / 2 for x, w in zip(xs, widths, strict=True))
            if lo < EDGE or hi > self.arena_size - EDGE:
                continue
            margin = static_margin(xs, widths, masses)
            if want is None or (margin > 0) == want:
                return xs, fractions, wobble, margin
        raise RuntimeError(
            "could not draw a tower of the wanted class that fits the arena; "
            "widen wobble_range or narrow block_width_range"
        )

    def render_state(self, state) -> np.ndarray:
        """Draw the blocks as rectangles of this episode's sizes (empty slots are not drawn)."""
        state = np.asarray(state, np.float32)
        size = self.n_objects * len(self.STATE_FIELDS)
        if state.shape != (size,):
            raise ValueError(f"render_state needs a state of shape ({size},), got {state.shape}")
        canvas = self._background.copy()
        rows = state.reshape(self.n_objects, len(self.STATE_FIELDS)).tolist()
        for (w, h), (x, y, _, _, angle, _), color in zip(self.sizes, rows, self.colors, strict=False):
            self.renderer.box(canvas, x, y, w / 2, h / 2, angle, color)
        return self.renderer.to_uint8(canvas)
