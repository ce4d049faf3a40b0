"""Keep constraints: a global direction that moves what it asks and, to first order, not what is kept.

A layer may name attributes to hold ("keep age", "keep glasses", or any text). Each kept
attribute has its own style direction, from the same fs3 relevance with every channel
counted (β = 0): to first order, moving the styles by δ (in σ units) changes the CLIP
similarity to that attribute by its relevance · δ. So the layer's ds is made orthogonal
to each kept direction in σ units — the per-channel weighting ds already carries — and,
for several, projected onto the orthogonal complement of their span (Gram-Schmidt in the
order given, so the same list always gives the same ds), within the channels the layer's
β lets it move. Keeping nothing returns ds as it was, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from styleclip_desktop.errors import UserError

# A kept direction this much shorter than it started (after removing the ones before it)
# adds nothing new to the span (float32 directions carry ~1e-7 of rounding): it is dropped
# rather than amplified into noise.
DEPENDENT = 1e-5
MAX_KEPT = 16


def keep_basis(kept: Sequence[np.ndarray], std: np.ndarray) -> list[np.ndarray]:
    """Orthonormal basis (σ units, float64) of the kept directions' span, in their order."""
    sigma = std.astype(np.float64)
    basis: list[np.ndarray] = []
    for k in kept:
        v = np.asarray(k, np.float64) / sigma
        start = float(np.linalg.norm(v))
        for b in basis:
            v = v - (v @ b) * b
        n = float(np.linalg.norm(v))
        if start > 0 and n > DEPENDENT * start:
            basis.append(v / n)
    return basis


def orthogonalize(ds: np.ndarray, kept: Sequence[np.ndarray], std: np.ndarray) -> np.ndarray:
    """ds with no component along any kept direction, measured in σ units.

    Only the channels ds already moves are changed (the kept directions are taken on
    them alone): orthogonality to those restrictions is orthogonality to the whole kept
    directions, and the channels β dropped stay untouched."""
    if not kept:
        return ds
    sigma = std.astype(np.float64)
    moved = np.asarray(ds) != 0
    u = np.asarray(ds, np.float64) / sigma
    for b in keep_basis([np.where(moved, k, 0.0) for k in kept], std):
        u = u - (u @ b) * b
    return (u * sigma).astype(ds.dtype)


def sigma_dot(a: np.ndarray, b: np.ndarray, std: np.ndarray) -> float:
    """The σ-weighted inner product the projection works in."""
    s = std.astype(np.float64)
    return float((np.asarray(a, np.float64) / s) @ (np.asarray(b, np.float64) / s))


def kept_prompts(items: Sequence[str], shorthands: Mapping[str, str]) -> list[str]:
    """The prompts for a layer's kept attributes: a shorthand ("age", "glasses") names the
    slider vocabulary's prompt for it; any other text is a prompt of its own."""
    out: list[str] = []
    for item in items:
        key = item.strip().lower().replace(" ", "_")
        if key == "identity":
            raise UserError("cannot keep identity as an attribute: it has no text direction (optimization "
                            "layers keep it with λ ID and ArcFace); keep a visible attribute instead "
                            "(age, gender, glasses, or any text)")
        out.append(shorthands.get(key, item.strip()))
    return out


@functools.lru_cache(maxsize=1)
def shorthands() -> dict[str, str]:
    """Shorthand -> prompt, from the slider vocabulary ("age" -> "the face of an old person")."""
    from styleclip_desktop.methods.sefa import load_vocabulary

    return dict(load_vocabulary().prompts)
