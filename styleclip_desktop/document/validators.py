"""Value checks shared by the document's models.

Each returns the normalised value or raises TypeError/ValueError. Arrays come back as
read-only copies: the renderer caches by content, so an array changed in place behind the
document's back would show stale pixels and escape undo.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def strict_bool(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected True or False, got {value!r}")
    return bool(value)


def finite_float(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a number, got {value!r}")
    try:
        out = float(value)
    except OverflowError:
        raise ValueError(f"expected a finite number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"expected a finite number, got {value!r}")
    return out


def non_negative_float(value: Any) -> float:
    out = finite_float(value)
    if out < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return out


def positive_float(value: Any) -> float:
    out = finite_float(value)
    if out <= 0:
        raise ValueError(f"expected a number > 0, got {value!r}")
    return out


def strict_int(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"expected a whole number, got {value!r}")
    return int(value)


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def non_empty_text(value: Any) -> str:
    out = text(value)
    if not out.strip():
        raise ValueError("expected non-empty text")
    return out


def frozen_float32(value: Any, *, ndim: int | None = None, what: str = "array") -> np.ndarray:
    """A read-only, C-contiguous float32 copy of a finite, non-empty array."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(value).__name__}")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise TypeError(f"{what} must hold numbers, got dtype {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {value.shape}")
    if value.size == 0:
        raise ValueError(f"{what} must not be empty, got shape {value.shape}")
    out = np.array(value, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    out.setflags(write=False)
    return out


def latent_array(value: Any) -> np.ndarray:
    """A W+ latent: (rows, width), e.g. 18 x 512 for a 1024px generator."""
    return frozen_float32(value, ndim=2, what="the latent")


def optional_latent_array(value: Any) -> np.ndarray | None:
    return None if value is None else frozen_float32(value, ndim=2, what="the latent delta")


# A flat style vector (S,) has 9088 channels for a 1024 px StyleGAN2; far more means a
# damaged or hostile file, not a generator.
MAX_STYLE_CHANNELS = 1 << 20


def optional_style_array(value: Any) -> np.ndarray | None:
    """A flat style-space vector (S,), e.g. a resolved global direction, or None."""
    if value is None:
        return None
    out = frozen_float32(value, ndim=1, what="the style direction")
    if out.shape[0] > MAX_STYLE_CHANNELS:
        raise ValueError(f"the style direction has {out.shape[0]} channels, more than the "
                         f"{MAX_STYLE_CHANNELS} any generator has")
    return out
