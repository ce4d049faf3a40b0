"""Painting on layer masks: brush dabs, strokes, fill, clear and invert.

Plain numpy on a mask's uint8 pixels (`MASK_SIZE` square, aligned-face space); positions
are in mask pixel-centre coordinates (pixel column j has its centre at x = j).

A brush dab is a round footprint of `size` px diameter. `hardness` 1 gives a hard disc
(antialiased over one pixel at the rim), lower values a soft rim, and 0 a bell-shaped
falloff from the centre to the rim. A stroke follows Photoshop's opacity: within one
stroke coverage builds up to `opacity` and never beyond, however often the brush passes
over a pixel, so a half-opacity stroke can be painted back and forth evenly. Between two
pointer positions the brush is swept continuously (the union of dabs at every point of
the segment), so however fast the pointer moves the stroke has no gaps. Each step only
touches the pixels in the bounding box of what it swept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.errors import UserError

MIN_SIZE, MAX_SIZE = 1.0, float(MASK_SIZE)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


@dataclass(frozen=True)
class Brush:
    size: float = 48.0  # diameter in mask pixels
    hardness: float = 0.5  # 0 soft .. 1 hard
    opacity: float = 1.0  # the most coverage one stroke changes
    erase: bool = False  # erase lowers coverage (the layer acts less), paint raises it

    def __post_init__(self) -> None:
        for name, lo, hi in (("size", MIN_SIZE, MAX_SIZE), ("hardness", 0.0, 1.0), ("opacity", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"the brush {name} must be a number")
            if not lo <= float(value) <= hi:
                raise ValueError(f"the brush {name} must be between {lo:g} and {hi:g}, got {float(value):g}")
            object.__setattr__(self, name, float(value))

    @property
    def radius(self) -> float:
        return self.size / 2.0


def falloff(distance: np.ndarray, radius: float, hardness: float) -> np.ndarray:
    """The brush's footprint (float32 in [0, 1]) at `distance` px from its centre."""
    d = np.asarray(distance, np.float32)
    # The rim: a one-pixel antialiased edge at the radius, whatever the hardness.
    rim = np.clip(radius - d + 0.5, 0.0, 1.0)
    if hardness >= 1.0:
        return rim
    core = hardness * radius
    t = np.clip((d - core) / max(radius - core, 1e-6), 0.0, 1.0)
    soft = (1.0 - t * t) ** 2  # bell-shaped: flat in the middle, zero slope at the rim
    return (soft * rim).astype(np.float32)


def segment_box(p0: tuple[float, float], p1: tuple[float, float], radius: float,
                size: int = MASK_SIZE) -> Box | None:
    """The pixels a brush of `radius` swept from p0 to p1 can touch (None: none in the mask)."""
    reach = radius + 1.0
    x0 = max(0, int(np.floor(min(p0[0], p1[0]) - reach)))
    x1 = min(size, int(np.ceil(max(p0[0], p1[0]) + reach)) + 1)
    y0 = max(0, int(np.floor(min(p0[1], p1[1]) - reach)))
    y1 = min(size, int(np.ceil(max(p0[1], p1[1]) + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def swept(p0: tuple[float, float], p1: tuple[float, float], brush: Brush,
          size: int = MASK_SIZE) -> tuple[Box, np.ndarray] | None:
    """The brush swept along p0 -> p1 (a single dab when they coincide): its bounding box
    and the footprint over that box (float32, before opacity)."""
    box = segment_box(p0, p1, brush.radius, size)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ax, ay = float(p0[0]), float(p0[1])
    dx, dy = float(p1[0]) - ax, float(p1[1]) - ay
    length2 = dx * dx + dy * dy
    if length2 > 1e-12:
        # Distance to the segment: the union of dabs at every point between p0 and p1.
        t = np.clip(((xx - ax) * dx + (yy - ay) * dy) / length2, 0.0, 1.0)
        px, py = ax + t * dx, ay + t * dy
    else:
        px, py = np.float32(ax), np.float32(ay)
    distance = np.hypot(xx - px, yy - py)
    return box, falloff(distance, brush.radius, brush.hardness)


class Stroke:
    """One brush stroke on a mask's pixels, from press to release.

    `pixels` (uint8, writable, the stroke's own copy) is the mask as painted so far; each
    `to` returns the box it changed, or None."""

    def __init__(self, base: np.ndarray, brush: Brush) -> None:
        base = np.asarray(base)
        if base.shape != (MASK_SIZE, MASK_SIZE) or base.dtype != np.uint8:
            raise ValueError(f"a stroke paints on {MASK_SIZE}x{MASK_SIZE} uint8 pixels")
        self.brush = brush
        self.base = base.astype(np.float32)
        self.pixels = np.array(base, dtype=np.uint8, copy=True)
        self.alpha = np.zeros((MASK_SIZE, MASK_SIZE), np.float32)  # this stroke's coverage so far
        self.last: tuple[float, float] | None = None

    def to(self, x: float, y: float) -> Box | None:
        """Sweep the brush from the last position to (x, y) (a dab at the first one)."""
        point = (float(x), float(y))
        start = self.last if self.last is not None else point
        self.last = point
        found = swept(start, point, self.brush)
        if found is None:
            return None
        (y0, y1, x0, x1), footprint = found
        alpha = self.alpha[y0:y1, x0:x1]
        np.maximum(alpha, footprint * np.float32(self.brush.opacity), out=alpha)
        base = self.base[y0:y1, x0:x1]
        target = 0.0 if self.brush.erase else 255.0
        self.pixels[y0:y1, x0:x1] = np.clip(np.rint(base + (target - base) * alpha), 0, 255).astype(np.uint8)
        return y0, y1, x0, x1


def base_pixels(mask: LayerMask | None, erase: bool) -> np.ndarray:
    """What a stroke starts from: the mask's pixels, or for a layer without a mask an empty
    one when painting (the layer acts only where painted) and a full one when erasing."""
    if mask is not None:
        return mask.pixels
    return np.full((MASK_SIZE, MASK_SIZE), 255 if erase else 0, np.uint8)


def fill(mask: LayerMask, value: int = 255) -> LayerMask:
    """Every pixel set to `value` (255: the layer acts everywhere), the settings kept."""
    return mask.with_changes(pixels=np.full((MASK_SIZE, MASK_SIZE), int(value), np.uint8))


def clear(mask: LayerMask) -> LayerMask:
    """Every pixel 0: the layer acts nowhere (until painted)."""
    return fill(mask, 0)


def invert(mask: LayerMask) -> LayerMask:
    """The pixels inverted (what was hidden is revealed and the other way round)."""
    return mask.with_changes(pixels=255 - mask.pixels)


def read_mask_image(path: Path) -> np.ndarray:
    """A mask image of the aligned face as coverage in [0, 1]: its luminance, or its alpha
    channel where it has one that is not fully opaque (white or opaque: the edit acts)."""
    from PIL import Image

    from styleclip_desktop.faces.imaging import load_image

    loaded = load_image(path)
    pixels = loaded.pixels
    if pixels.shape[0] != pixels.shape[1]:
        raise UserError(f"the mask {path.name} is {pixels.shape[1]}x{pixels.shape[0]}; a mask covers the aligned "
                        "face, so it must be square")
    try:
        with Image.open(path) as img:
            alpha = np.asarray(img.getchannel("A"), np.float32) if "A" in img.getbands() else None
    except (OSError, ValueError):
        alpha = None
    if alpha is not None and alpha.shape == pixels.shape[:2] and alpha.min() < 255:
        return alpha / 255.0
    return (pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
