"""Edits more than one panel offers: adding a layer from a prompt, keyframe moves."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings

from styleclip_desktop.document import (
    GlobalDirectionParams,
    Keyframe,
    LayerParams,
    MapperParams,
    OptimizationParams,
    actions,
)
from styleclip_desktop.document.commands import SetTrack
from styleclip_desktop.document.errors import LockedLayerError
from styleclip_desktop.ui.panels.engine_link import EngineLink
from styleclip_desktop.ui.panels.prompt_history import DEFAULT_NEUTRAL, PromptHistory
from styleclip_desktop.ui.state import EditorState

GLOBAL_DIRECTION = GlobalDirectionParams.kind
MAPPER = MapperParams.kind
OPTIMIZATION = OptimizationParams.kind
DEFAULT_ALPHA = 3.0
DEFAULT_BETA = 0.15
NO_DOCUMENT = "Open a photo or generate a face before adding edits."
BETA_SETTING = "layers/beta"  # the β the user last chose, which new layers start at


def last_beta(state: EditorState) -> float:
    """The β new global-direction layers start at: the one the user last chose."""
    value = getattr(state, "_last_beta", None)
    return float(value) if isinstance(value, int | float) else DEFAULT_BETA


def remember_beta(state: EditorState, beta: float) -> None:
    state._last_beta = float(beta)  # type: ignore[attr-defined]


def restore_beta(state: EditorState, settings: QSettings) -> None:
    try:
        beta = float(settings.value(BETA_SETTING, DEFAULT_BETA))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        beta = DEFAULT_BETA
    if 0.0 <= beta <= 1.0:
        remember_beta(state, beta)


def save_beta(state: EditorState, settings: QSettings) -> None:
    settings.setValue(BETA_SETTING, last_beta(state))


def params_for(kind: str, text: str, neutral: str | None = None, beta: float = DEFAULT_BETA) -> LayerParams:
    if kind == GLOBAL_DIRECTION:
        return GlobalDirectionParams(text, (neutral or "").strip() or DEFAULT_NEUTRAL, beta)
    if kind == MAPPER:
        return MapperParams(text)
    if kind == OPTIMIZATION:
        return OptimizationParams(text)
    raise ValueError(f"unknown layer kind {kind!r}")


def add_prompt_layer(state: EditorState, text: str, *, kind: str = GLOBAL_DIRECTION,
                     neutral: str | None = None, alpha: float | None = None, beta: float | None = None,
                     history: PromptHistory | None = None) -> str | None:
    """Add a layer on top of the stack from a prompt, make it current, remember the
    prompt and show the result. Returns the new layer's id (None when nothing was added).
    Without `beta`, a global direction starts at the β the user last chose."""
    doc = state.document
    text = text.strip()
    if not text:
        return None
    if doc is None:
        state.error.emit(NO_DOCUMENT)
        return None
    try:
        params = params_for(kind, text, neutral, last_beta(state) if beta is None else beta)
    except (TypeError, ValueError) as exc:
        state.error.emit(str(exc))
        return None
    if alpha is None:
        alpha = DEFAULT_ALPHA if kind == GLOBAL_DIRECTION else params.default_alpha
    command = actions.add_layer(doc, params, alpha=alpha)
    state.push(command)
    layer_id = command.layer.id
    if layer_id not in doc.layers:
        return None
    state.set_current_layer(layer_id)
    (history or PromptHistory()).record(text, getattr(params, "neutral", DEFAULT_NEUTRAL), alpha, kind)
    EngineLink.of(state).request_render(preview=False)
    return layer_id


def refused_by_lock(state: EditorState, layer_id: str, verb: str = "changed") -> bool:
    """True (and the user told why) when a locked layer would refuse this change.

    Checked before pushing so a refused change never reaches the undo stack."""
    doc = state.document
    if doc is None or layer_id not in doc.layers:
        return True
    layer = doc.layers.get(layer_id)
    if layer.locked:
        state.error.emit(str(LockedLayerError(layer.name, verb)))
        return True
    return False


def move_keyframe(state: EditorState, layer_id: str, old_t: float, new_t: float,
                  merge_key: object = None) -> bool:
    """Move a keyframe in time, keeping its alpha and easing; refuses to land on another
    keyframe. Steps with the same `merge_key` (one drag) are one undo step."""
    doc = state.document
    if doc is None or old_t == new_t or refused_by_lock(state, layer_id, "animated"):
        return False
    keys = doc.timeline.keyframes(layer_id)
    key = next((k for k in keys if k.t == old_t), None)
    if key is None or any(k.t == new_t for k in keys):
        return False
    builder: Any = getattr(actions, "move_keyframe", None)
    if builder is not None:
        command = builder(doc, layer_id, old_t, new_t, merge_key=merge_key)
    else:
        moved = [k for k in keys if k.t != old_t] + [Keyframe(new_t, key.alpha, key.easing)]
        name = doc.layers.get(layer_id).name
        command = SetTrack(doc, layer_id, moved, f'Move keyframe on "{name}"', merge_key)
    state.push(command)
    return any(k.t == new_t for k in doc.timeline.keyframes(layer_id))


def keyframe_at(state: EditorState, layer_id: str, t: float) -> Keyframe | None:
    doc = state.document
    if doc is None:
        return None
    return next((k for k in doc.timeline.keyframes(layer_id) if k.t == t), None)
