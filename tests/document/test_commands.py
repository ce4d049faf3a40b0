"""Undo: every mutation is a command; undoing everything restores the document exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from styleclip_desktop.document import (
    Command,
    Document,
    GlobalDirectionParams,
    Keyframe,
    Layer,
    LockedLayerError,
    MapperParams,
    OptimizationParams,
    UndoStack,
    add_layer,
    canonical_state,
    clear_keyframes,
    duplicate_layer,
    morph,
    move_layer,
    remove_keyframe,
    remove_layer,
    rename_layer,
    set_alpha,
    set_document_attr,
    set_duration,
    set_fps,
    set_keyframe,
    set_locked,
    set_params,
    set_visible,
    toggle_visibility,
)

from .strategies import DOC_SETTINGS, documents, fast, operations


def _new_params(seed: int, shape: tuple[int, ...]) -> Any:
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:
        return GlobalDirectionParams(f"text {seed}", beta=float(rng.uniform(0, 1)))
    if kind == 1:
        return MapperParams(f"mapper{seed}", fine=bool(seed & 8))
    delta = rng.standard_normal(shape).astype(np.float32) if seed & 16 else None
    return OptimizationParams(f"prompt {seed}", steps=int(seed % 50) + 1, delta=delta)


def _command(doc: Document, stack: UndoStack, op: tuple[Any, ...]) -> Command | None:
    """Build the command for one generated operation against the current document."""
    name = op[0]
    layers = list(doc.layers)
    layer_id = layers[op[1] % len(layers)].id if len(op) > 1 and layers and isinstance(op[1], int) else None
    if name == "add":
        _, seed, index, locked, alpha = op
        return add_layer(doc, _new_params(seed, doc.latent.shape), None if index < 0 else index,
                         alpha=alpha, locked=locked)
    if name in ("duration", "fps", "morph", "latent", "doc"):
        if name == "duration":
            return set_duration(doc, op[1], merge_key=op[2])
        if name == "fps":
            return set_fps(doc, op[1])
        if name == "morph":
            return morph(doc)
        if name == "latent":
            latent = np.random.default_rng(op[1]).standard_normal(doc.latent.shape).astype(np.float32)
            return set_document_attr(doc, "latent", latent, "Invert again")
        return set_document_attr(doc, "synthetic" if op[2] else "description", op[2] or op[1])
    if layer_id is None:
        return None
    if name == "remove":
        return remove_layer(doc, layer_id)
    if name == "move":
        return move_layer(doc, layer_id, op[2])
    if name == "duplicate":
        return duplicate_layer(doc, layer_id)
    if name == "rename":
        return rename_layer(doc, layer_id, op[2])
    if name == "alpha":
        return set_alpha(doc, layer_id, op[2], merge_key=op[3])
    if name == "visible":
        return toggle_visibility(doc, layer_id)
    if name == "lock":
        return set_locked(doc, layer_id, op[2])
    if name == "params":
        kind = doc.layers.get(layer_id).kind
        changes: dict[str, Any] = {
            "global_direction": {"beta": op[2]},
            "mapper": {"fine": op[3]},
            "optimization": {"lambda_id": op[2]} if op[3] else {"delta": None},
        }[kind]
        return set_params(doc, layer_id, merge_key=op[4], **changes)
    if name == "key":
        return set_keyframe(doc, layer_id, op[2], op[3], op[4], merge_key=op[5])
    if name == "unkey":
        keys = doc.timeline.keyframes(layer_id)
        return remove_keyframe(doc, layer_id, keys[op[2] % len(keys)].t) if keys else None
    if name == "clear":
        return clear_keyframes(doc, layer_id)
    raise AssertionError(op)


def _run(doc: Document, stack: UndoStack, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        if op[0] == "undo":
            stack.undo()
            continue
        if op[0] == "redo":
            stack.redo()
            continue
        before = canonical_state(doc)
        try:
            command = _command(doc, stack, op)
            if command is not None:
                stack.push(command)
        except LockedLayerError:
            # A refused command must leave no trace.
            assert canonical_state(doc) == before


@DOC_SETTINGS
@given(documents(max_layers=3), st.lists(operations, max_size=25))
def test_undo_all_restores_the_initial_document(doc: Document, ops: list[tuple[Any, ...]]) -> None:
    initial = canonical_state(doc)
    stack = UndoStack()
    _run(doc, stack, ops)
    final, index = canonical_state(doc), stack.index
    stack.undo_all()
    assert canonical_state(doc) == initial
    for _ in range(index):
        stack.redo()
    assert canonical_state(doc) == final


@fast(40)
@given(documents(max_layers=3), st.lists(operations, max_size=15))
def test_dirty_follows_the_saved_state(doc: Document, ops: list[tuple[Any, ...]]) -> None:
    stack = UndoStack()
    doc.mark_saved()
    stack.set_clean()
    _run(doc, stack, ops)
    assert doc.dirty == (not stack.is_clean())
    stack.undo_all()
    # Back at the saved state: clean, whatever happened in between.
    assert not doc.dirty


def _doc_with_layers(n: int = 2) -> Document:
    doc = Document(np.zeros((4, 8), np.float32))
    for i in range(n):
        doc.layers.append(Layer(GlobalDirectionParams(f"edit {i}"), id=f"L{i}"))
    return doc


def test_a_drag_of_fifty_alpha_changes_is_one_step() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    for i in range(50):
        stack.push(set_alpha(doc, "L0", 3.0 + i / 10, merge_key="drag-1"))
    assert stack.count == 1
    assert doc.layers.get("L0").alpha == pytest.approx(7.9)
    stack.undo()
    assert doc.layers.get("L0").alpha == 3.0
    stack.redo()
    assert doc.layers.get("L0").alpha == pytest.approx(7.9)


def test_changes_on_another_layer_or_drag_are_separate_steps() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    stack.push(set_alpha(doc, "L0", 1.0, merge_key="drag-1"))
    stack.push(set_alpha(doc, "L1", 1.0, merge_key="drag-1"))  # another layer
    stack.push(set_alpha(doc, "L1", 2.0, merge_key="drag-2"))  # another drag
    stack.push(set_alpha(doc, "L1", 2.5))  # no drag at all: never merges
    stack.push(set_alpha(doc, "L1", 2.6))
    assert stack.count == 5


def test_merging_stops_at_the_saved_state_and_a_drag_back_to_start_vanishes() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    stack.push(set_alpha(doc, "L0", 1.0, merge_key="d"))
    doc.mark_saved()
    stack.set_clean()
    stack.push(set_alpha(doc, "L0", 2.0, merge_key="d"))
    assert stack.count == 2 and doc.dirty and not stack.is_clean()
    stack.push(set_alpha(doc, "L0", 1.0, merge_key="d"))  # back where the drag began
    assert stack.count == 1 and stack.is_clean() and not doc.dirty


def test_no_op_commands_are_not_recorded() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    stack.push(set_alpha(doc, "L0", doc.layers.get("L0").alpha))
    stack.push(move_layer(doc, "L0", 0))
    assert stack.count == 0


def test_undo_to_the_saved_state_makes_the_document_clean() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    states = []
    doc.events.dirty_changed.connect(lambda e: states.append(e.dirty))
    doc.mark_saved()
    stack.push(rename_layer(doc, "L0", "new name"))
    assert doc.dirty
    stack.undo()
    assert not doc.dirty
    stack.redo()
    assert doc.dirty
    assert states == [False, True, False, True]


def test_locked_layers_refuse_changes_but_undo_still_works() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    stack.push(set_alpha(doc, "L0", 5.0))
    stack.push(set_locked(doc, "L0", True))
    for make in (
        lambda: rename_layer(doc, "L0", "x"),
        lambda: set_alpha(doc, "L0", 1.0),
        lambda: set_params(doc, "L0", beta=0.2),
        lambda: remove_layer(doc, "L0"),
        lambda: set_keyframe(doc, "L0", 0.0, 1.0),
    ):
        with pytest.raises(LockedLayerError, match='"edit 0" is locked'):
            stack.push(make())
    assert stack.count == 2
    stack.push(set_visible(doc, "L0", False))  # visibility and order stay free
    stack.push(move_layer(doc, "L0", 1))
    stack.undo_all()
    assert doc.layers.get("L0").alpha == 3.0 and not doc.layers.get("L0").locked


def test_duplicate_copies_keyframes_above_the_original() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    stack.push(set_keyframe(doc, "L0", 1.0, 2.0))
    stack.push(duplicate_layer(doc, "L0"))
    copy = doc.layers[1]
    assert copy.name == "edit 0 copy" and copy.id != "L0"
    assert doc.timeline.keyframes(copy.id) == (Keyframe(1.0, 2.0),)
    stack.undo()
    assert len(doc.layers) == 2 and not doc.timeline.has_keyframes(copy.id)


def test_remove_takes_the_layers_keyframes_and_undo_brings_them_back() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    stack.push(set_keyframe(doc, "L1", 0.5, 1.0))
    stack.push(remove_layer(doc, "L1"))
    assert "L1" not in doc.layers and doc.timeline.tracks == {}
    stack.undo()
    assert doc.layers.index_of("L1") == 1 and doc.timeline.keyframes("L1") == (Keyframe(0.5, 1.0),)


def test_optimization_delta_is_dropped_when_its_inputs_change() -> None:
    doc = Document(np.zeros((2, 3), np.float32))
    delta = np.ones((2, 3), np.float32)
    stack = UndoStack()
    stack.push(add_layer(doc, OptimizationParams("smile", delta=delta), id="opt"))
    stack.push(set_params(doc, "opt", steps=10))
    params = doc.layers.get("opt").params
    assert isinstance(params, OptimizationParams) and params.delta is None
    stack.undo()
    params = doc.layers.get("opt").params
    assert isinstance(params, OptimizationParams) and params.delta is not None
    assert np.array_equal(params.delta, delta)
    with pytest.raises(ValueError, match="shape"):
        stack.push(set_params(doc, "opt", delta=np.ones((3, 3), np.float32)))


def test_macro_groups_steps_and_a_failing_macro_leaves_nothing() -> None:
    doc = _doc_with_layers()
    stack = UndoStack()
    with stack.macro("Two edits"):
        stack.push(set_alpha(doc, "L0", 1.0))
        stack.push(set_alpha(doc, "L1", 1.0))
    assert stack.texts() == ["Two edits"]
    before = canonical_state(doc)
    with pytest.raises(LockedLayerError), stack.macro("Broken"):
        stack.push(set_alpha(doc, "L0", 9.0))
        stack.push(set_locked(doc, "L1", True))
        stack.push(set_alpha(doc, "L1", 9.0))
    assert canonical_state(doc) == before and stack.count == 1
    stack.undo()
    assert doc.layers.get("L0").alpha == 3.0


def test_undo_limit_forgets_the_oldest_steps() -> None:
    doc = _doc_with_layers()
    stack = UndoStack(limit=3)
    for i in range(5):
        stack.push(set_alpha(doc, "L0", float(i)))
    assert stack.count == 3 and stack.clean_index is None
    stack.undo_all()
    assert doc.layers.get("L0").alpha == 1.0
