"""Edit layers and the layer stack.

Stack semantics (what the renderer computes from a stack):

1. Start from the document's base latent W+ (rows x width, e.g. 18 x 512).
2. W-space layers (mapper, optimization), visible ones only, add their alpha-scaled W+
   deltas in stack order: index 0 is the bottom of the stack and applies first.
   A mapper's delta is computed from the latent as it stands after the layers below it.
3. W+ -> S through the generator's per-layer affine maps.
4. S-space layers (global directions), visible ones only, add alpha * ds in stack order,
   again from index 0 upwards.
5. Synthesis turns S into the image.

So W-space layers always apply before S-space layers whatever their place in the stack;
the stack order only orders layers within one space. Hidden layers contribute nothing;
alpha 0 likewise. Every layer has a stable `id` that the timeline, caches and the
project file refer to; the `name` is only for people.

Layers and the stack are evented (see `events`): the GUI connects to
`stack.events.inserted / removed / moved / changed` and never needs to be told by
whoever made the change.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from styleclip_desktop.document import validators as v
from styleclip_desktop.document.errors import LockedLayerError
from styleclip_desktop.document.events import EmitterGroup, Event, EventedModel
from styleclip_desktop.document.masks import LayerMask, mask_or_none
from styleclip_desktop.document.params import LayerParams

# Fields a lock protects. Visibility stays free (comparing with and without a locked
# edit is what locking is for), and the lock itself must be changeable.
LOCKED_FIELDS = frozenset({"name", "alpha", "params", "mask"})


def new_layer_id() -> str:
    """A fresh layer id, unique for all practical purposes."""
    return secrets.token_hex(8)


def _params(value: Any) -> LayerParams:
    if not isinstance(value, LayerParams):
        raise TypeError(f"layer parameters must be a LayerParams, got {type(value).__name__}")
    return value


def _layer_id(value: Any) -> str:
    out = v.non_empty_text(value)
    if len(out) > 200:
        raise ValueError("a layer id must be at most 200 characters")
    return out


class Layer(EventedModel):
    """One non-destructive edit: method parameters plus how strongly and whether it applies."""

    _validators: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "name": v.non_empty_text,
        "visible": v.strict_bool,
        "alpha": v.finite_float,
        "locked": v.strict_bool,
        "params": _params,
        "mask": mask_or_none,
    }

    id: str
    name: str
    visible: bool
    alpha: float
    locked: bool
    params: LayerParams
    mask: LayerMask | None

    def __init__(
        self,
        params: LayerParams,
        *,
        name: str | None = None,
        alpha: float | None = None,
        visible: bool = True,
        locked: bool = False,
        id: str | None = None,
        mask: LayerMask | None = None,
    ) -> None:
        params = _params(params)
        self._init_fields(
            params=params,
            name=params.default_name() if name is None else name,
            alpha=params.default_alpha if alpha is None else alpha,
            visible=visible,
            locked=locked,
            mask=mask,
        )
        object.__setattr__(self, "id", new_layer_id() if id is None else _layer_id(id))
        object.__setattr__(self, "_owner", None)

    @property
    def kind(self) -> str:
        return self.params.kind

    @property
    def space(self) -> str:
        return self.params.space

    def set(self, name: str, value: Any, *, force: bool = False) -> bool:
        if name == "params" and type(value) is not type(self.params):
            raise TypeError(f"a {self.params.label} layer cannot take {type(value).__name__} parameters")
        return super().set(name, value, force=force)

    def _check_change(self, name: str, value: Any) -> None:
        if self.locked and name in LOCKED_FIELDS:
            raise LockedLayerError(self.name, "renamed" if name == "name" else "changed")
        owner: LayerStack | None = self.__dict__["_owner"]
        if owner is not None and name == "params":
            owner._validate_params(self, value)

    def copy(self, *, id: str | None = None, name: str | None = None) -> Layer:
        """A new, unlocked layer with the same settings and mask (both immutable, so shared).

        Unlocked because a copy is made in order to vary it."""
        return Layer(
            self.params,
            name=f"{self.name} copy" if name is None else name,
            alpha=self.alpha,
            visible=self.visible,
            locked=False,
            id=id,
            mask=self.mask,
        )

    def __repr__(self) -> str:
        return (
            f"Layer(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, alpha={self.alpha}, "
            f"visible={self.visible}, locked={self.locked}, mask={self.mask!r})"
        )


ParamsValidator = Callable[[Layer, LayerParams], None]


class LayerStack:
    """The ordered, evented list of layers; index 0 is the bottom, applied first.

    Events: `inserted(index, layer)`, `removed(index, layer)`,
    `moved(old_index, new_index, layer)`, and `changed(layer, field, old, new)` for any
    field of any layer in the stack.
    """

    def __init__(self, layers: Iterable[Layer] = ()) -> None:
        self.events = EmitterGroup(self, "inserted", "removed", "moved", "changed")
        self._layers: list[Layer] = []
        self._params_validator: ParamsValidator | None = None
        for layer in layers:
            self.insert(len(self._layers), layer)

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(tuple(self._layers))

    def __getitem__(self, index: int) -> Layer:
        return self._layers[index]

    def __contains__(self, layer_id: object) -> bool:
        return any(layer.id == layer_id for layer in self._layers)

    def ids(self) -> list[str]:
        return [layer.id for layer in self._layers]

    def index_of(self, layer_id: str) -> int:
        for i, layer in enumerate(self._layers):
            if layer.id == layer_id:
                return i
        raise KeyError(f"no layer with id {layer_id!r}")

    def get(self, layer_id: str) -> Layer:
        return self._layers[self.index_of(layer_id)]

    def in_space(self, space: str) -> list[Layer]:
        """The visible layers of one space (W_SPACE or S_SPACE), in the order they apply."""
        return [layer for layer in self._layers if layer.visible and layer.space == space]

    # -- changing --------------------------------------------------------------------

    def set_params_validator(self, validator: ParamsValidator | None) -> None:
        """Install the owner's check of parameters against the document (e.g. delta shapes)."""
        self._params_validator = validator

    def _validate_params(self, layer: Layer, params: LayerParams) -> None:
        if self._params_validator is not None:
            self._params_validator(layer, params)

    def insert(self, index: int, layer: Layer) -> None:
        """Insert at `index` (clamped to the stack, as list.insert does)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"expected a Layer, got {type(layer).__name__}")
        if layer.id in self:
            raise ValueError(f"the stack already has a layer with id {layer.id!r}")
        if layer.__dict__["_owner"] is not None:
            raise ValueError(f"layer {layer.id!r} already belongs to a stack")
        self._validate_params(layer, layer.params)
        index = max(0, min(index, len(self._layers))) if index >= 0 else max(0, len(self._layers) + index)
        self._layers.insert(index, layer)
        object.__setattr__(layer, "_owner", self)
        layer.events.changed.connect(self._forward_change)
        self.events.inserted.emit(index=index, layer=layer)

    def append(self, layer: Layer) -> None:
        self.insert(len(self._layers), layer)

    def remove(self, layer_id: str, *, force: bool = False) -> tuple[int, Layer]:
        """Take a layer out; returns where it was and the layer, for undo."""
        index = self.index_of(layer_id)
        layer = self._layers[index]
        if layer.locked and not force:
            raise LockedLayerError(layer.name, "deleted")
        del self._layers[index]
        layer.events.changed.disconnect(self._forward_change)
        object.__setattr__(layer, "_owner", None)
        self.events.removed.emit(index=index, layer=layer)
        return index, layer

    def move(self, layer_id: str, index: int) -> int:
        """Move a layer so it ends at `index` (clamped); returns its old index.

        Locked layers may move: a lock keeps an edit as it is, and where it sits in the
        stack is the user's arrangement, not part of the edit."""
        old = self.index_of(layer_id)
        new = max(0, min(index, len(self._layers) - 1))
        if new != old:
            layer = self._layers.pop(old)
            self._layers.insert(new, layer)
            self.events.moved.emit(old_index=old, new_index=new, layer=layer)
        return old

    def _forward_change(self, event: Event) -> None:
        self.events.changed.emit(layer=event.source, field=event.field, old=event.old, new=event.new)
