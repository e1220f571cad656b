"""A small vectorised numpy rasteriser: filled circles and rotated boxes on a walled arena.

No pygame and no window, so it runs headless, in subprocess vector envs and in tests. Each
shape is painted only inside its pixel bounding box, from coordinate axes precomputed once per
image size, so the cost per object is a few small array operations whatever the image size.
Anti-aliasing is a one-pixel linear ramp on the shape's (signed) distance, which keeps frames
deterministic: the same state always gives the same bytes.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

BACKGROUND = (22.0, 24.0, 30.0)
WALL = (120.0, 122.0, 132.0)

# Distinct saturated colours for the first objects; later ones step round the hue circle.
_PALETTE = [
    (235, 64, 52),  # red
    (52, 152, 235),  # blue
    (80, 205, 90),  # green
    (245, 205, 40),  # yellow
    (205, 80, 225),  # magenta
    (250, 140, 35),  # orange
    (50, 225, 215),  # cyan
    (160, 120, 250),  # violet
    (170, 230, 60),  # lime
    (245, 120, 170),  # pink
]


def object_color(index: int) -> np.ndarray:
    """The fixed RGB colour (float32, 0..255) of object ``index`` in every world."""
    if index < len(_PALETTE):
        return np.asarray(_PALETTE[index], np.float32)
    hue = (0.13 + index * 0.618034) % 1.0  # golden-ratio steps keep neighbours apart
    value = 0.95 if index % 2 else 0.8
    return np.asarray(colorsys.hsv_to_rgb(hue, 0.8, value), np.float32) * 255.0


class Renderer:
    """Draws world-unit shapes into ``[H, W, 3]`` float32 canvases of one size.

    The view is the arena ``[0, arena_size]²`` plus a wall border of ``arena_size / 32`` on each
    side, y up. Canvases are float32 in 0..255 while painting (for blending) and converted once
    with :meth:`to_uint8`.
    """

    def __init__(self, image_size: int, arena_size: float, antialias: bool = True) -> None:
        self.size = int(image_size)
        self.arena = float(arena_size)
        self.antialias = antialias
        self.margin = self.arena / 32.0
        self.scale = self.size / (self.arena + 2.0 * self.margin)  # pixels per world unit
        centres = (np.arange(self.size, dtype=np.float32) + 0.5) / self.scale
        self.xs = centres - self.margin  # world x of each pixel column centre
        self.ys = self.arena + self.margin - centres  # world y of each pixel row centre
        self.base = np.empty((self.size, self.size, 3), np.float32)
        self.base[:] = WALL
        half = self.arena / 2.0
        self.box(self.base, half, half, half, half, 0.0, BACKGROUND)

    def canvas(self) -> np.ndarray:
        """A fresh canvas holding the empty walled arena."""
        return self.base.copy()

    def _window(self, x: float, y: float, extent: float) -> tuple[int, int, int, int] | None:
        """Pixel rows/columns that a shape centred at (x, y) with this extent can touch."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return None  # e.g. a diverged model prediction: draw nothing rather than fail
        pad = extent + 1.5 / self.scale
        c0 = max(math.floor((x - pad + self.margin) * self.scale), 0)
        c1 = min(math.ceil((x + pad + self.margin) * self.scale), self.size)
        r0 = max(math.floor((self.arena + self.margin - y - pad) * self.scale), 0)
        r1 = min(math.ceil((self.arena + self.margin - y + pad) * self.scale), self.size)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def _paint(self, canvas: np.ndarray, win, sdf: np.ndarray, color: np.ndarray) -> None:
        """Blend ``color`` where the signed distance (world units, < 0 inside) says so."""
        r0, r1, c0, c1 = win
        if self.antialias:  # coverage ramps from 1 to 0 across the pixel on the edge
            alpha = np.minimum(np.maximum(0.5 - sdf * self.scale, 0.0), 1.0)
        else:
            alpha = (sdf <= 0.0).astype(np.float32)
        patch = canvas[r0:r1, c0:c1]
        patch += alpha[..., None] * (color - patch)

    def circle(self, canvas: np.ndarray, x: float, y: float, radius: float, color) -> None:
        """Paint a filled disc of ``radius`` world units centred at (x, y)."""
        win = self._window(x, y, radius)
        if win is None:
            return
        r0, r1, c0, c1 = win
        sdf = np.hypot(self.xs[None, c0:c1] - x, self.ys[r0:r1, None] - y) - radius
        self._paint(canvas, win, sdf, np.asarray(color, np.float32))

    def box(
        self,
        canvas: np.ndarray,
        x: float,
        y: float,
        half_w: float,
        half_h: float,
        angle: float,
        color,
    ) -> None:
        """Paint a filled rectangle with half-extents (half_w, half_h), rotated by ``angle``."""
        win = self._window(x, y, math.hypot(half_w, half_h)) if math.isfinite(angle) else None
        if win is None:
            return
        r0, r1, c0, c1 = win
        dx = self.xs[None, c0:c1] - x
        dy = self.ys[r0:r1, None] - y
        cos, sin = math.cos(angle), math.sin(angle)
        u = np.abs(cos * dx + sin * dy) - half_w  # distances in the box's own frame
        v = np.abs(cos * dy - sin * dx) - half_h
        self._paint(canvas, win, np.maximum(u, v), np.asarray(color, np.float32))

    @staticmethod
    def to_uint8(canvas: np.ndarray) -> np.ndarray:
        return (canvas + 0.5).astype(np.uint8)
