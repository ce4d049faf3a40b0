"""Layer masks: where in the aligned face a layer may act.

A mask is immutable, like layer parameters: painting makes a new one (see `mask_ops`), so
the old object is the undo state and the renderer can cache by content. Its pixels live
in the aligned-face square at `MASK_SIZE` px whatever the generator's resolution, as
uint8 coverage (255: the layer acts fully, 0: not at all). What the renderer uses is
`coverage(size)`: the pixels feathered (a Gaussian of `feather` mask pixels), inverted
if asked, resized to `size`, as float32 in [0, 1].

`start_res` is the generator resolution from which the layer's contribution is mixed into
the picture by the mask; below it the layer's coarse styles act in their own branch (see
`Generator.synthesize_masked`). A disabled mask is kept with the layer but ignored, like
Photoshop's shift-click on a layer mask.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Self

import numpy as np

MASK_SIZE = 512
MAX_FEATHER = 128.0
START_RESOLUTIONS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_START_RES = 32


def _pixels(value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"mask pixels must be an array, got {type(value).__name__}")
    if value.shape != (MASK_SIZE, MASK_SIZE):
        raise ValueError(f"a mask must be {MASK_SIZE}x{MASK_SIZE} pixels, got shape {value.shape}")
    if value.dtype != np.uint8:
        if not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
            raise ValueError("mask pixels must be finite numbers")
        value = np.clip(np.rint(value), 0, 255)
    out = np.array(value, dtype=np.uint8, order="C", copy=True)
    out.setflags(write=False)
    return out


def _feather(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"the feather must be a number, got {type(value).__name__}")
    f = float(value)
    if not 0.0 <= f <= MAX_FEATHER:
        raise ValueError(f"the feather must be between 0 and {MAX_FEATHER:g} px, got {f:g}")
    return f


def _start(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in START_RESOLUTIONS:
        raise ValueError(f"the mask's start resolution must be one of {', '.join(map(str, START_RESOLUTIONS))}, "
                         f"got {value!r}")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class LayerMask:
    """A layer's mask; compare with `==` (by content)."""

    pixels: np.ndarray
    feather: float = 0.0
    inverted: bool = False
    enabled: bool = True
    start_res: int = DEFAULT_START_RES

    def __post_init__(self) -> None:
        object.__setattr__(self, "pixels", _pixels(self.pixels))
        object.__setattr__(self, "feather", _feather(self.feather))
        object.__setattr__(self, "inverted", _flag(self.inverted))
        object.__setattr__(self, "enabled", _flag(self.enabled))
        object.__setattr__(self, "start_res", _start(self.start_res))

    @classmethod
    def filled(cls, value: int = 255, **settings: Any) -> LayerMask:
        """A mask of one value everywhere (255: reveal all, 0: hide all)."""
        return cls(np.full((MASK_SIZE, MASK_SIZE), int(value), np.uint8), **settings)

    @classmethod
    def from_coverage(cls, coverage: np.ndarray, **settings: Any) -> LayerMask:
        """A mask from float coverage in [0, 1] of any square size (resized to MASK_SIZE)."""
        c = np.asarray(coverage, np.float32)
        if c.ndim != 2 or not np.isfinite(c).all():
            raise ValueError("coverage must be a finite 2-D array")
        if c.shape != (MASK_SIZE, MASK_SIZE):
            import cv2

            interp = cv2.INTER_AREA if c.shape[0] > MASK_SIZE else cv2.INTER_LINEAR
            c = np.asarray(cv2.resize(c, (MASK_SIZE, MASK_SIZE), interpolation=interp), np.float32)
        return cls(np.clip(c, 0.0, 1.0) * 255.0, **settings)

    def with_changes(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def settings_json(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-ready."""
        return {"feather": self.feather, "inverted": self.inverted, "enabled": self.enabled,
                "start_res": self.start_res}

    @cached_property
    def key(self) -> str:
        """A content hash of what the mask does to a render."""
        h = hashlib.blake2b(self.pixels.tobytes(), digest_size=16)
        h.update(repr((self.feather, self.inverted, self.enabled, self.start_res)).encode())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerMask) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @cached_property
    def _coverage_full(self) -> np.ndarray:
        c = self.pixels.astype(np.float32) / 255.0
        if self.feather > 0:
            import cv2

            c = np.asarray(cv2.GaussianBlur(c, (0, 0), sigmaX=self.feather, sigmaY=self.feather,
                                            borderType=cv2.BORDER_REPLICATE), np.float32)
            c = np.clip(c, 0.0, 1.0)
            # Blurring leaves float dust of about 1e-8 where the mask was 0 or 1; exact
            # values keep what lies far outside (or inside) the mask exactly as it was.
            c[c < 1e-6] = 0.0
            c[c > 1.0 - 1e-6] = 1.0
        if self.inverted:
            c = 1.0 - c
        c.setflags(write=False)
        return c

    def coverage(self, size: int = MASK_SIZE) -> np.ndarray:
        """Effective coverage (feathered, inverted) as float32 (size, size) in [0, 1]."""
        c = self._coverage_full
        if size == MASK_SIZE:
            return c
        import cv2

        interp = cv2.INTER_AREA if size < MASK_SIZE else cv2.INTER_LINEAR
        return np.clip(cv2.resize(c, (size, size), interpolation=interp), 0.0, 1.0)

    @cached_property
    def extent(self) -> str:
        """"none", "all" or "some": whether the effective mask hides, reveals or confines."""
        c = self._coverage_full
        if not c.any():
            return "none"
        if bool((c == 1.0).all()):
            return "all"
        return "some"

    def active(self) -> bool:
        """Whether this mask changes what its layer does (enabled and not all-revealing)."""
        return self.enabled and self.extent != "all"

    def __repr__(self) -> str:
        return (f"LayerMask(extent={self.extent!r}, feather={self.feather:g}, inverted={self.inverted}, "
                f"enabled={self.enabled}, start_res={self.start_res})")


def mask_or_none(value: Any) -> LayerMask | None:
    """Validator for a layer's `mask` field."""
    if value is not None and not isinstance(value, LayerMask):
        raise TypeError(f"a layer mask must be a LayerMask or None, got {type(value).__name__}")
    return value
