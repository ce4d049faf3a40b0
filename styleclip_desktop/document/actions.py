"""The editing vocabulary: one function per user action, each returning the command
to push onto an undo stack (`UndoStack.push` or, in the GUI, a QUndoStack).

Nothing changes until the command is pushed (executed). For example::

    stack.push(add_layer(doc, GlobalDirectionParams("a face with grey hair"), alpha=3.0))
    stack.push(set_alpha(doc, layer_id, 2.5, merge_key=drag_id))
"""

from __future__ import annotations

from typing import Any

from styleclip_desktop.document.commands import (
    AddLayer,
    MacroCommand,
    MoveLayer,
    RemoveLayer,
    SetDocumentAttr,
    SetLayerAttr,
    SetTimelineAttr,
    SetTrack,
)
from styleclip_desktop.document.document import Document
from styleclip_desktop.document.layers import Layer
from styleclip_desktop.document.masks import LayerMask
from styleclip_desktop.document.params import LayerParams
from styleclip_desktop.document.timeline import LINEAR, Keyframe, with_keyframe, without_keyframe


def _name(doc: Document, layer_id: str) -> str:
    return doc.layers.get(layer_id).name


def add_layer(doc: Document, layer: Layer | LayerParams, index: int | None = None, **layer_fields: Any) -> AddLayer:
    """Add a layer (or a new layer made from parameters) at `index`; None = on top."""
    if isinstance(layer, LayerParams):
        layer = Layer(layer, **layer_fields)
    elif layer_fields:
        raise TypeError("layer fields can only be given with parameters, not with a Layer")
    return AddLayer(doc, layer, index, f'Add "{layer.name}"')


def remove_layer(doc: Document, layer_id: str) -> RemoveLayer:
    return RemoveLayer(doc, layer_id, f'Delete "{_name(doc, layer_id)}"')


def move_layer(doc: Document, layer_id: str, index: int) -> MoveLayer:
    """Move a layer so it ends at `index` (0 = bottom, applied first)."""
    return MoveLayer(doc, layer_id, index, f'Move "{_name(doc, layer_id)}"')


def duplicate_layer(doc: Document, layer_id: str) -> AddLayer:
    """A copy (unlocked, with the same keyframes) just above the original."""
    layer = doc.layers.get(layer_id)
    copy = layer.copy()
    index = doc.layers.index_of(layer_id) + 1
    return AddLayer(doc, copy, index, f'Duplicate "{layer.name}"', keys=doc.timeline.keyframes(layer_id))


def rename_layer(doc: Document, layer_id: str, name: str) -> SetLayerAttr:
    return SetLayerAttr(doc, layer_id, "name", name, f'Rename "{_name(doc, layer_id)}" to "{name}"')


def set_alpha(doc: Document, layer_id: str, alpha: float, merge_key: object = None) -> SetLayerAttr:
    """Set a layer's static alpha; pass the same `merge_key` for every step of one drag."""
    return SetLayerAttr(doc, layer_id, "alpha", alpha, f'Strength of "{_name(doc, layer_id)}"', merge_key)


def set_visible(doc: Document, layer_id: str, visible: bool) -> SetLayerAttr:
    verb = "Show" if visible else "Hide"
    return SetLayerAttr(doc, layer_id, "visible", visible, f'{verb} "{_name(doc, layer_id)}"')


def toggle_visibility(doc: Document, layer_id: str) -> SetLayerAttr:
    return set_visible(doc, layer_id, not doc.layers.get(layer_id).visible)


def set_locked(doc: Document, layer_id: str, locked: bool) -> SetLayerAttr:
    verb = "Lock" if locked else "Unlock"
    return SetLayerAttr(doc, layer_id, "locked", locked, f'{verb} "{_name(doc, layer_id)}"')


def set_params(doc: Document, layer_id: str, merge_key: object = None, **changes: Any) -> SetLayerAttr:
    """Change some of a layer's method parameters (e.g. beta=0.2)."""
    layer = doc.layers.get(layer_id)
    params = layer.params.with_changes(**changes)
    what = ", ".join(sorted(changes)) or "parameters"
    return SetLayerAttr(doc, layer_id, "params", params, f'Change {what} of "{layer.name}"', merge_key)


def set_mask(doc: Document, layer_id: str, mask: LayerMask | None, text: str | None = None,
             merge_key: object = None) -> SetLayerAttr:
    """Give a layer a mask, change it or (None) take it away; pass the same `merge_key`
    for every dab of one brush stroke so the stroke undoes as one step."""
    name = _name(doc, layer_id)
    if text is None:
        text = f'Remove the mask of "{name}"' if mask is None else f'Mask of "{name}"'
    return SetLayerAttr(doc, layer_id, "mask", mask, text, merge_key)


def set_document_attr(doc: Document, attr: str, value: Any, text: str | None = None) -> SetDocumentAttr:
    """Change a document field (latent, alignment, source, models, ...)."""
    return SetDocumentAttr(doc, attr, value, text or f"Change {attr.replace('_', ' ')}")


def set_duration(doc: Document, seconds: float, merge_key: object = None) -> SetTimelineAttr:
    return SetTimelineAttr(doc, "duration", seconds, "Animation length", merge_key)


def set_fps(doc: Document, fps: float) -> SetTimelineAttr:
    return SetTimelineAttr(doc, "fps", fps, "Frame rate")


def set_keyframe(doc: Document, layer_id: str, t: float, alpha: float, easing: str = LINEAR,
                 merge_key: object = None) -> SetTrack:
    """Key a layer's alpha at time t (replacing a key at the same time)."""
    keys = with_keyframe(doc.timeline.keyframes(layer_id), Keyframe(t, alpha, easing))
    return SetTrack(doc, layer_id, keys, f'Keyframe on "{_name(doc, layer_id)}"', merge_key)


def remove_keyframe(doc: Document, layer_id: str, t: float) -> SetTrack:
    keys = without_keyframe(doc.timeline.keyframes(layer_id), t)
    return SetTrack(doc, layer_id, keys, f'Delete keyframe on "{_name(doc, layer_id)}"')


def clear_keyframes(doc: Document, layer_id: str) -> SetTrack:
    return SetTrack(doc, layer_id, (), f'Clear keyframes of "{_name(doc, layer_id)}"')


def morph(doc: Document) -> MacroCommand:
    """One click: every visible, unlocked layer sweeps from 0 at t = 0 to its alpha at the end."""
    steps = [SetTrack(doc, layer_id, keys, "Morph") for layer_id, keys in doc.morph_tracks().items()]
    return MacroCommand("Morph", steps)
