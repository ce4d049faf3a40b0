"""An immutable snapshot of what rendering reads from a document.

The UI thread keeps mutating the document while the worker renders. Taking a snapshot on
the UI thread, before the job is queued, means the worker only ever reads values that no
one can change under it: the latent is copied, and everything else the snapshot holds
(layer parameters, generator delta arrays, the photo's bytes, the alignment) is already
immutable in the document model, so a reference is as good as a copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from styleclip_desktop.document.masks import LayerMask
from styleclip_desktop.document.params import LayerParams

if TYPE_CHECKING:
    from styleclip_desktop.document import Alignment, Document, SourcePhoto


@dataclass(frozen=True, eq=False)
class LayerState:
    """One layer as the renderer sees it (the name and lock are not part of the picture)."""

    id: str
    visible: bool
    alpha: float
    params: LayerParams
    mask: LayerMask | None = None

    @property
    def kind(self) -> str:
        return self.params.kind

    @property
    def space(self) -> str:
        return self.params.space


@dataclass(frozen=True, eq=False)
class RenderState:
    """Everything a render needs; duck-compatible with `Document` for the renderer."""

    latent: np.ndarray
    layers: tuple[LayerState, ...]
    generator_delta: Mapping[str, np.ndarray] | None = None
    source: SourcePhoto | None = None
    alignment: Alignment | None = None
    revision: int | None = None

    @cached_property
    def generator_key(self) -> str:
        """Content hash of the generator delta ("" for the plain generator)."""
        return delta_key(self.generator_delta)

    def frame_alphas(self, alphas: Mapping[str, float] | None) -> dict[str, float]:
        """Every layer's effective alpha with `alphas` overriding the static ones."""
        return {layer.id: float(alphas.get(layer.id, layer.alpha)) if alphas is not None else float(layer.alpha)
                for layer in self.layers}


def delta_key(delta: Mapping[str, np.ndarray] | None) -> str:
    if not delta:
        return ""
    h = hashlib.blake2b(digest_size=16)
    for name, arr in sorted(delta.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr, np.float32).tobytes())
    return h.hexdigest()


def _frozen_copy(a: Any) -> np.ndarray:
    out = np.array(a, dtype=np.float32, order="C", copy=True)
    out.setflags(write=False)
    return out


def snapshot(doc: Document | RenderState) -> RenderState:
    """A `RenderState` of `doc` as it is now (a state is returned unchanged)."""
    if isinstance(doc, RenderState):
        return doc
    layers = tuple(LayerState(layer.id, bool(layer.visible), float(layer.alpha), layer.params, layer.mask)
                   for layer in doc.layers)
    delta = doc.generator_delta
    return RenderState(
        latent=_frozen_copy(doc.latent),
        layers=layers,
        generator_delta=MappingProxyType(dict(delta)) if delta else None,
        source=doc.source,
        alignment=doc.alignment,
        revision=getattr(doc, "revision", None),
    )
