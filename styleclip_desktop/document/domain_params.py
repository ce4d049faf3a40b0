"""Domain layers: the generator itself moved to a new domain by text (StyleGAN-NADA).

A domain layer holds a weight delta for the layers its training changed (float16, by
canonical parameter name) and applies it with its alpha: weights = base + alpha * delta,
so alpha 0 is the base generator, 1 the adapted one, and above 1 an extrapolation the
editor flags. Every other layer stacks on it: W-space layers apply first, and the style
space keeps its layout, so global directions apply to the adapted generator.

A domain changes the whole crop's look, so a domain layer is not pasted back into the
photo unless `paste_back` is set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from styleclip_desktop.document import validators as v
from styleclip_desktop.document.params import G_SPACE, LayerParams, register_layer_kind

MAX_EXTRAPOLATION = 1.0  # alphas above this are flagged in the editor
MAX_DELTA_TENSORS = 4096


def _delta(value: Any) -> Mapping[str, np.ndarray]:
    if not isinstance(value, Mapping):
        raise TypeError("a domain's weight delta must map parameter names to arrays")
    if not value:
        raise ValueError("a domain layer needs a weight delta (it changes no weights)")
    if len(value) > MAX_DELTA_TENSORS:
        raise ValueError(f"a domain's weight delta holds at most {MAX_DELTA_TENSORS} tensors")
    out = {}
    for name, array in value.items():
        v.non_empty_text(name)
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"the domain weight {name!r} must be a float array")
        a = np.array(array, dtype=np.float16, order="C", copy=True)
        if not np.isfinite(a).all():
            raise ValueError(f"the domain weight {name!r} holds NaN or infinite values")
        a.setflags(write=False)
        out[str(name)] = a
    return MappingProxyType(out)


def _rows(value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError("the trained rows must be a list of whole numbers")
    rows = tuple(sorted({v.strict_int(r) for r in value}))
    if any(r < 0 or r > 64 for r in rows):
        raise ValueError("a trained W+ row must be between 0 and 64")
    return rows


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    if len(value) > 500:
        raise ValueError("a domain's text is at most 500 characters")
    return value


def _count(value: Any) -> int:
    n = v.strict_int(value)
    if n < 0:
        raise ValueError("a step count cannot be negative")
    return n


@register_layer_kind
@dataclass(frozen=True, eq=False)
class DomainParams(LayerParams):
    """A generator weight delta learned from a source text to a target text, or computed
    from a published adapted generator (`origin` names it)."""

    kind: ClassVar[str] = "domain"
    space: ClassVar[str] = G_SPACE
    label: ClassVar[str] = "Domain"
    default_alpha: ClassVar[float] = 1.0
    _checks: ClassVar[dict[str, Any]] = {
        "target": _text, "source": _text, "delta": _delta, "rows": _rows, "base": _text, "origin": _text,
        "steps": _count, "paste_back": v.strict_bool,
    }
    _weight_fields: ClassVar[tuple[str, ...]] = ("delta",)

    target: str
    delta: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "photo"
    rows: tuple[int, ...] = ()
    base: str = ""  # sha256 of the generator it was adapted from ("" when unknown)
    origin: str = ""  # "" when trained here, else the file or published model it came from
    steps: int = 0
    paste_back: bool = False

    def default_name(self) -> str:
        return f"Domain: {self.target}" if self.target else "Domain"

    @cached_property
    def delta_key(self) -> str:
        """A content hash of the delta (the renderer caches adapted generators by it)."""
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(self.delta):
            a = self.delta[name]
            h.update(name.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def size_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.delta.values()))
