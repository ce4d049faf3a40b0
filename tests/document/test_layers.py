"""Layers, the evented stack, parameters, the kind registry and model identities."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from styleclip_desktop.document import (
    LAYER_KINDS,
    S_SPACE,
    W_SPACE,
    DirectionSource,
    Document,
    Event,
    GlobalDirectionParams,
    Layer,
    LayerParams,
    LayerStack,
    LockedLayerError,
    MapperParams,
    OptimizationParams,
    SourcePhoto,
    UndoStack,
    add_layer,
    compare_models,
    load_project_bytes,
    register_layer_kind,
    set_alpha,
    set_params,
)


def test_defaults() -> None:
    g = GlobalDirectionParams("grey hair")
    assert (g.neutral, g.beta) == ("a face", 0.15)
    o = OptimizationParams("smile")
    assert (o.lambda_l2, o.lambda_id, o.steps, o.delta) == (0.008, 0.0, 300, None)  # the published free edit
    m = MapperParams("afro")
    assert (m.coarse, m.medium, m.fine) == (True, True, True)
    layer = Layer(g)
    assert layer.name == "grey hair" and layer.alpha == 3.0 and layer.visible and not layer.locked
    assert layer.kind == "global_direction" and layer.space == S_SPACE
    assert Layer(o).space == W_SPACE and Layer(m).space == W_SPACE
    assert Layer(g).id != Layer(g).id


def test_validation() -> None:
    with pytest.raises(ValueError):
        GlobalDirectionParams("x", beta=1.5)
    with pytest.raises(ValueError):
        GlobalDirectionParams("   ")
    with pytest.raises(TypeError):
        MapperParams("x", fine=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Layer(GlobalDirectionParams("x"), alpha=float("inf"))
    layer = Layer(GlobalDirectionParams("x"))
    with pytest.raises(TypeError):
        layer.params = MapperParams("m")  # a layer keeps its kind
    with pytest.raises(TypeError, match="no parameter"):
        layer.params.with_changes(prompt="y")
    delta = np.zeros((2, 2), np.float32)
    params = OptimizationParams("x", delta=delta)
    delta[0, 0] = 1.0  # the caller's array is copied, not shared
    assert params.delta is not None and params.delta[0, 0] == 0.0 and not params.delta.flags.writeable


def test_stack_events_and_order() -> None:
    stack = LayerStack()
    seen: list[str] = []
    stack.events.connect(lambda e: seen.append(e.event.type))
    a, b = Layer(MapperParams("a"), id="a"), Layer(GlobalDirectionParams("b"), id="b")
    stack.append(a)
    stack.insert(0, b)
    assert stack.ids() == ["b", "a"]
    stack.move("b", 5)
    assert stack.ids() == ["a", "b"]
    a.alpha = 0.5
    b.visible = False
    assert stack.in_space(W_SPACE) == [a] and stack.in_space(S_SPACE) == []
    stack.remove("a")
    a.alpha = 0.7  # no longer in the stack: no event from it
    assert seen == ["inserted", "inserted", "moved", "changed", "changed", "removed"]
    with pytest.raises(ValueError, match="already has"):
        stack.append(Layer(MapperParams("x"), id="b"))


def test_change_events_carry_old_and_new() -> None:
    doc = Document(np.zeros((1, 1), np.float32), layers=[Layer(GlobalDirectionParams("x"), id="x")])
    events: list[Event] = []
    doc.layers.events.changed.connect(events.append)
    modified: list[Event] = []
    doc.events.modified.connect(modified.append)
    doc.layers.get("x").name = "renamed"
    assert (events[0].field, events[0].old, events[0].new) == ("name", "x", "renamed")
    assert len(modified) == 1
    doc.layers.get("x").name = "renamed"  # unchanged: silent
    assert len(events) == 1


def test_a_failing_observer_does_not_break_the_edit(caplog: pytest.LogCaptureFixture) -> None:
    doc = Document(np.zeros((1, 1), np.float32), layers=[Layer(GlobalDirectionParams("x"), id="x")])

    def broken(event: Event) -> None:
        raise RuntimeError("view crashed")

    doc.layers.events.changed.connect(broken)
    stack = UndoStack()
    with caplog.at_level(logging.ERROR):
        stack.push(set_alpha(doc, "x", 1.0))
    assert doc.layers.get("x").alpha == 1.0 and stack.count == 1
    assert "view crashed" in caplog.text


def test_locks_guard_direct_assignment_too() -> None:
    layer = Layer(GlobalDirectionParams("x"), locked=True)
    with pytest.raises(LockedLayerError, match="unlock it first"):
        layer.alpha = 2.0
    layer.visible = False
    layer.locked = False
    layer.alpha = 2.0


def test_deltas_must_match_the_latent() -> None:
    doc = Document(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        doc.layers.append(Layer(OptimizationParams("x", delta=np.zeros((3, 5), np.float32))))
    doc.layers.append(Layer(OptimizationParams("x", delta=np.zeros((3, 4), np.float32))))
    with pytest.raises(ValueError, match="shape"):
        doc.latent = np.zeros((2, 4), np.float32)


def _resolved(target: str = "grey hair", beta: float = 0.15) -> GlobalDirectionParams:
    return GlobalDirectionParams(target, beta=beta, ds=np.arange(7, dtype=np.float32),
                                 ds_source=DirectionSource(target, "a face", beta, {"generator": "ab" * 32}))


def test_a_stored_direction_is_dropped_when_its_inputs_change() -> None:
    doc = Document(np.zeros((3, 4), np.float32))  # a style vector need not look like the latent
    stack = UndoStack()
    stack.push(add_layer(doc, _resolved(), alpha=3.0))
    layer = doc.layers[0]
    first = layer.params
    assert isinstance(first, GlobalDirectionParams) and first.stored_direction() is not None
    for change in ({"beta": 0.2}, {"target": "a smile"}, {"neutral": "a person"}):
        stack.push(set_params(doc, layer.id, **change))
        changed = layer.params
        assert isinstance(changed, GlobalDirectionParams)
        assert changed.ds is None and changed.ds_source is None and changed.stored_direction() is None
        stack.undo()  # undo puts back the parameters together with the direction made for them
        assert layer.params is first
    # A change that is no change keeps it, and a new ds given with new inputs is kept.
    assert first.with_changes(beta=0.15).ds is not None
    fresh = first.with_changes(beta=0.2, ds=np.ones(7, np.float32),
                               ds_source=DirectionSource("grey hair", "a face", 0.2, {"generator": "cd" * 32}))
    assert fresh.stored_direction() is not None and fresh.ds is not None and fresh.ds[0] == 1.0


def test_a_stored_direction_for_other_inputs_is_never_offered() -> None:
    # A hand-edited file can pair a ds with other text: it stays in the file but is not used.
    params = GlobalDirectionParams("a smile", ds=np.ones(7, np.float32),
                                   ds_source=DirectionSource("grey hair", "a face", 0.15, {"generator": "ab"}))
    assert params.stored_direction() is None
    with pytest.raises(ValueError, match="go together"):
        GlobalDirectionParams("x", ds=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="flat style vector|dimensions"):
        GlobalDirectionParams("x", ds=np.ones((3, 2), np.float32),
                              ds_source=DirectionSource("x", "a face", 0.15, {"generator": "ab"}))
    with pytest.raises(ValueError, match="record the generator"):
        DirectionSource("x", "a face", 0.15, {"fs3": "ab"})


def test_export_records_leave_the_stored_direction_out() -> None:
    params = _resolved()
    assert params.settings_json() == {"target": "grey hair", "neutral": "a face", "beta": 0.15}
    assert params.to_json()["ds_source"]["models"] == {"generator": "ab" * 32}


def test_source_photo() -> None:
    photo = SourcePhoto.from_bytes("C:\\Users\\me\\Face.JPEG", b"bytes")
    assert photo.suffix == ".jpeg" and len(photo.sha256) == 64
    with pytest.raises(ValueError, match="do not match"):
        SourcePhoto(photo.path, "0" * 64, b"bytes")
    assert SourcePhoto.from_bytes("noext", b"").suffix == ""


def test_model_mismatch_messages() -> None:
    used = {"generator": "abc123" + "0" * 58, "clip": "c" * 64, "mapper": "m" * 64}
    loaded = {"generator": "def456" + "1" * 58, "clip": "c" * 64}
    assert compare_models(used, loaded) == [
        "this project was made with a different generator (abc123… vs def456…)",
        "this project was made with a mapper (mmmmmm…) that is not loaded now",
    ]
    doc = Document(np.zeros((1, 1), np.float32), models=used)
    assert doc.model_mismatches(used) == []


@dataclass(frozen=True, eq=False)
class _Sharpen(LayerParams):
    kind: ClassVar[str] = "test_sharpen"
    space: ClassVar[str] = S_SPACE
    label: ClassVar[str] = "Sharpen"
    amount: float = 1.0


@pytest.fixture
def sharpen_kind() -> Iterator[type[_Sharpen]]:
    register_layer_kind(_Sharpen)
    yield _Sharpen
    del LAYER_KINDS["test_sharpen"]


def test_new_kinds_plug_in_through_the_registry(sharpen_kind: Any, tmp_path: Any) -> None:
    from styleclip_desktop.document import canonical_state, write_project

    doc = Document(np.zeros((1, 1), np.float32))
    UndoStack().push(add_layer(doc, sharpen_kind(amount=2.0)))
    path = tmp_path / "k.scproj"
    write_project(doc, path)
    assert canonical_state(load_project_bytes(path.read_bytes())) == canonical_state(doc)
