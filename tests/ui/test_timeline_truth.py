"""One truth on the canvas: once a layer has keyframes, every render the editor makes
(Morph, keyframe edits, undo, a model reload) shows the document at the playhead, the
layer sliders show the value on the canvas, and keyframes are easy to hit with the mouse.

Through real widgets on the synthetic demo engine, offscreen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication

from styleclip_desktop.document import HOLD, Document, GlobalDirectionParams, Keyframe, actions
from styleclip_desktop.ui.panels import TimelinePanel
from styleclip_desktop.ui.panels.layers_panel import LayersPanel
from styleclip_desktop.ui.panels.timeline_view import KEY_RADIUS
from styleclip_desktop.ui.state import EditorState

# β = 0 lets every channel move, so even the demo models' tiny CLIP changes the face.
EDITS = (("a face with grey hair", 6.0), ("a smiling face", -5.0))


def _window(make_window: Callable[..., Any], engine: Any, doc: Document) -> Any:
    w = make_window(engine)
    w.state.set_document(doc)
    for target, alpha in EDITS:
        w.state.push(actions.add_layer(doc, GlobalDirectionParams(target, "a face", 0.0), alpha=alpha))
    w.state.push(actions.set_duration(doc, 1.0))
    w.state.push(actions.set_fps(doc, 11.0))  # 11 frames, 0.1 s apart
    return w


def _timeline(w: Any) -> TimelinePanel:
    panel = w.panels["timelineDock"]
    assert isinstance(panel, TimelinePanel)
    return panel


def _settle(qtbot: Any, w: Any) -> None:
    """Wait until nothing the editor asked for is still on its way to the canvas."""
    panel = _timeline(w)

    def idle() -> bool:
        QApplication.processEvents()
        return (not w.auto_render._timer.isActive() and len(w.state.tasks) == 0
                and panel.pump.inflight is None)

    qtbot.waitUntil(idle, timeout=20000)
    QApplication.processEvents()
    qtbot.waitUntil(idle, timeout=20000)


def _expected(engine: Any, state: EditorState, frame: int | None) -> np.ndarray:
    doc = state.document
    assert doc is not None
    alphas = None if frame is None else doc.frame_alphas(frame)
    return np.asarray(engine.render(doc, alphas, preview=False, paste_back=state.paste_back))


def _on_canvas(state: EditorState) -> np.ndarray:
    assert state.image is not None
    return np.asarray(state.image)


@pytest.fixture
def window(qtbot: Any, make_window: Callable[..., Any], engine: Any, seed_document: Document) -> Any:
    w = _window(make_window, engine, seed_document)
    _settle(qtbot, w)
    return w


def test_morph_shows_frame_zero_not_the_full_edit(qtbot: Any, window: Any, engine: Any) -> None:
    state, panel = window.state, _timeline(window)
    full_edit = _on_canvas(state).copy()
    assert np.array_equal(full_edit, _expected(engine, state, None))
    qtbot.mouseClick(panel.morph_button, Qt.MouseButton.LeftButton)
    _settle(qtbot, window)
    assert panel.frame == 0
    frame0 = _expected(engine, state, 0)
    assert not np.array_equal(frame0, full_edit)  # the sweep starts on the unedited face
    assert np.array_equal(_on_canvas(state), frame0)
    # Undo and redo render the playhead too.
    state.undo_stack.undo()
    _settle(qtbot, window)
    assert np.array_equal(_on_canvas(state), full_edit)
    state.undo_stack.redo()
    _settle(qtbot, window)
    assert np.array_equal(_on_canvas(state), frame0)


def test_key_alpha_and_easing_edits_redraw_the_playhead(qtbot: Any, window: Any, engine: Any) -> None:
    state, panel = window.state, _timeline(window)
    doc = state.document
    qtbot.mouseClick(panel.morph_button, Qt.MouseButton.LeftButton)
    _settle(qtbot, window)
    grey = doc.layers[0].id
    panel.view.selected = (grey, 0.0)
    panel.view.selection_changed.emit()
    assert panel.key_alpha.isEnabled()
    before = _on_canvas(state).copy()
    panel.key_alpha.setValue(4.0)  # the key α field of the selected key at the playhead's frame
    assert doc.timeline.keyframes(grey)[0] == Keyframe(0.0, 4.0)
    _settle(qtbot, window)
    assert doc.frame_alphas(0)[grey] == 4.0
    assert not np.array_equal(_on_canvas(state), before)
    assert np.array_equal(_on_canvas(state), _expected(engine, state, 0))

    panel.scrub_to(5, preview=False)
    _settle(qtbot, window)
    linear = _on_canvas(state).copy()
    assert np.array_equal(linear, _expected(engine, state, 5))
    panel.key_easing.setCurrentIndex(panel.key_easing.findData(HOLD))
    panel.key_easing.activated.emit(panel.key_easing.currentIndex())
    assert doc.timeline.keyframes(grey)[0].easing == HOLD
    _settle(qtbot, window)
    assert doc.frame_alphas(5)[grey] == 4.0  # held until the next key
    assert not np.array_equal(_on_canvas(state), linear)
    assert np.array_equal(_on_canvas(state), _expected(engine, state, 5))


def test_reload_keeps_the_playhead_values(qtbot: Any, window: Any, engine: Any) -> None:
    state, panel = window.state, _timeline(window)
    qtbot.mouseClick(panel.morph_button, Qt.MouseButton.LeftButton)
    panel.scrub_to(3, preview=False)
    _settle(qtbot, window)
    frame3 = _expected(engine, state, 3)
    assert np.array_equal(_on_canvas(state), frame3)
    state.set_engine(engine)  # what Models > Reload does once the models are loaded again
    _settle(qtbot, window)
    assert panel.frame == 3
    assert np.array_equal(_on_canvas(state), frame3)
    assert not np.array_equal(frame3, _expected(engine, state, None))


def test_export_image_writes_the_picture_at_the_playhead(qtbot: Any, window: Any, engine: Any,
                                                         tmp_path: Any) -> None:
    """A still exported from an animated document is the frame on the canvas, not the static alphas."""
    from PIL import Image

    from styleclip_desktop.ui.exporting import export_image

    state, panel = window.state, _timeline(window)
    qtbot.mouseClick(panel.morph_button, Qt.MouseButton.LeftButton)
    panel.scrub_to(3, preview=False)
    _settle(qtbot, window)
    out = tmp_path / "frame3.png"
    job = export_image(state, window.settings, None, out)
    qtbot.waitUntil(lambda: job.future.done(), timeout=20000)
    written = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(written, _on_canvas(state))
    assert not np.array_equal(written, _expected(engine, state, None))


def test_layer_sliders_show_the_value_at_the_playhead(qtbot: Any, window: Any) -> None:
    state, panel = window.state, _timeline(window)
    layers = window.panels["layersDock"]
    assert isinstance(layers, LayersPanel)
    doc = state.document
    grey, smile = (layer.id for layer in doc.layers)
    row = layers.rows[grey]
    assert row.alpha.value() == 6.0 and row.animated.isHidden()
    qtbot.mouseClick(panel.morph_button, Qt.MouseButton.LeftButton)
    assert row.alpha.value() == 0.0 and not row.animated.isHidden()  # frame 0 of the sweep
    panel.scrub_to(4, preview=False)
    assert row.alpha.value() == pytest.approx(doc.alpha_at(grey, 0.4)) == pytest.approx(2.4)
    assert layers.rows[smile].alpha.value() == pytest.approx(-2.0)
    state.set_current_layer(grey)
    properties = window.panels["propertiesDock"]
    assert properties.alpha is not None and properties.alpha.value() == pytest.approx(2.4)
    # Changing an animated strength keys the playhead, as the timeline's Key button does.
    steps = state.undo_stack.count()
    row.alpha.spin.setValue(1.5)
    assert doc.timeline.keyframes(grey) == (Keyframe(0.0, 0.0), Keyframe(0.4, 1.5), Keyframe(1.0, 6.0))
    assert doc.layers.get(grey).alpha == 6.0 and state.undo_stack.count() == steps + 1
    assert row.alpha.value() == 1.5 and properties.alpha.value() == 1.5
    _settle(qtbot, window)
    assert np.array_equal(_on_canvas(state), _expected(window.state.engine, state, 4))
    state.undo_stack.undo()
    assert row.alpha.value() == pytest.approx(2.4)
    # A slider drag keys the playhead too, as one undo step.
    steps = state.undo_stack.index()
    slider = row.alpha.slider
    slider.setSliderDown(True)
    for value in (2.0, 2.5):
        slider.setValue(round(value * 20))
    slider.setSliderDown(False)
    assert doc.timeline.keyframes(grey)[1] == Keyframe(0.4, 2.5)
    assert state.undo_stack.index() == steps + 1 and row.alpha.value() == 2.5


# -- hitting keyframes with the mouse ------------------------------------------------------------


@pytest.fixture
def lone_panel(qtbot: Any, qapp: QApplication) -> Iterator[TimelinePanel]:
    state = EditorState()
    doc = Document(np.zeros((8, 512), np.float32))
    state.set_document(doc)
    state.push(actions.add_layer(doc, GlobalDirectionParams("a face with grey hair"), alpha=3.0))
    state.push(actions.set_duration(doc, 1.0))
    state.push(actions.set_fps(doc, 11.0))
    panel = TimelinePanel(state)
    qtbot.addWidget(panel)
    panel.resize(700, 240)
    panel.show()
    qtbot.waitExposed(panel)
    yield panel
    state.undo_stack.blockSignals(True)  # it announces its own destruction; nobody listens by then


def _right_click(view: Any, pos: QPoint) -> list[str]:
    """A real context-menu event at `pos`; returns the entries of the menu it opened."""
    seen: list[str] = []

    def read_and_close() -> None:
        menu = QApplication.activePopupWidget()
        if menu is not None:
            seen.extend(a.text() for a in menu.actions() if a.text())
            menu.close()

    QTimer.singleShot(0, read_and_close)
    QApplication.sendEvent(view, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, view.mapToGlobal(pos)))
    return seen


def test_right_click_a_few_pixels_off_a_key_opens_its_menu(qtbot: Any, lone_panel: TimelinePanel) -> None:
    panel, doc = lone_panel, lone_panel.state.document
    layer = doc.layers[0].id
    panel.add_keyframe(layer, 0.5)
    x, y = round(panel.view.x_of(0.5)), round(panel.view.track_rect(layer).center().y())
    off = round(KEY_RADIUS) + 3  # 3 px outside the drawn diamond
    for dx, dy in ((off, 0), (-off, 0), (off, 3)):
        entries = _right_click(panel.view, QPoint(x + dx, y + dy))
        assert "Delete keyframe" in entries and "Add keyframe here" not in entries, (dx, dy)
    assert panel.selected == (layer, 0.5)
    far = _right_click(panel.view, QPoint(x + 40, y))
    assert far == ["Add keyframe here"]
    # The same reach for a click and a drag.
    panel.view.selected = None
    qtbot.mousePress(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(x + off, y))
    assert panel.selected == (layer, 0.5)
    qtbot.mouseMove(panel.view, pos=QPoint(round(panel.view.x_of(0.7)), y))
    qtbot.mouseRelease(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(round(panel.view.x_of(0.7)), y))
    assert [k.t for k in doc.timeline.keyframes(layer)] == [0.7]
    # A double-click just beside a key does not add a second one next to it.
    x = round(panel.view.x_of(0.7))
    qtbot.mouseDClick(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(x - off, y))
    assert [k.t for k in doc.timeline.keyframes(layer)] == [0.7]
    assert panel.view.key_at(QPointF(x - off, y)) == (layer, 0.7)
