"""Painting layer masks on the canvas, the Mask panel and menu, on the demo models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from styleclip_desktop.document import Document, GlobalDirectionParams, actions
from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.ui.compare import CompareMode
from styleclip_desktop.ui.images import from_qimage

from .photos import pasted_into

TIMEOUT = 60_000


def settle(qtbot: Any, state: Any, action: Callable[[], object] = lambda: None) -> None:
    """Do `action` and wait until every render it led to has arrived."""
    action()
    worker = state.engine.worker
    qtbot.waitUntil(lambda: state._shown_seq == state._render_seq and worker.pending() == 0
                    and worker.current is None, timeout=TIMEOUT)
    qtbot.wait(20)


def open_with_layer(qtbot: Any, w: Any, engine: Any, doc: Document) -> str:
    """`doc` open in `w` with one global-direction layer, current, and its render shown."""
    info = engine.direction_info("a face with grey hair", "a face", 0.01)
    with qtbot.waitSignal(w.state.original_ready, timeout=TIMEOUT):
        w.projects.replace_document(doc)
    params = GlobalDirectionParams("a face with grey hair", beta=round(info.largest_beta / 2, 4))
    command = actions.add_layer(doc, params, alpha=3.0)
    settle(qtbot, w.state, lambda: w.state.push(command))
    w.state.set_current_layer(command.layer.id)
    qtbot.waitUntil(lambda: w.canvas.has_image(), timeout=TIMEOUT)
    return command.layer.id


def panel_of(w: Any) -> Any:
    from styleclip_desktop.ui.panels.mask_panel import MaskPanel

    panel = w.docks["maskDock"].widget()
    assert isinstance(panel, MaskPanel), panel
    return panel


def widget_at(canvas: Any, x: float, y: float) -> Any:
    """The canvas widget point over image point (x, y) (pixel-edge coordinates)."""
    return canvas.image_to_widget(QPointF(x, y)).toPoint()


def drag(canvas: Any, points: list[tuple[float, float]]) -> None:
    """A left-button drag through image points, with QTest's mouse events."""
    first = widget_at(canvas, *points[0])
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, first)
    for p in points[1:]:
        QTest.mouseMove(canvas, widget_at(canvas, *p))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       widget_at(canvas, *points[-1]))


def mask_of(w: Any, layer_id: str) -> LayerMask | None:
    mask = w.state.document.layers.get(layer_id).mask
    assert mask is None or isinstance(mask, LayerMask)
    return mask


def test_a_drag_paints_one_stroke_that_undoes_and_redoes_in_one_step(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document) -> None:
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    canvas, stack = w.canvas, w.state.undo_stack
    panel = panel_of(w)
    panel.mask_actions.brush.trigger()  # B: the brush, in paint mode
    tool = canvas.mask_tool
    assert tool.painting and not tool.brush.erase and tool.show_overlay
    tool.set_brush(size=64.0, hardness=1.0, opacity=1.0)
    before = stack.index()
    # The demo shows the 32 px aligned crop: mask px = image px * 16.
    drag(canvas, [(4.0, 16.0), (10.0, 16.0), (28.0, 16.0)])  # the last move jumps 288 mask px
    assert stack.index() == before + 1
    mask = mask_of(w, layer_id)
    assert mask is not None
    row = mask.pixels[256]
    assert (row[80:430] == 255).all()  # painted end to end, no gaps between far pointer events
    assert mask.pixels[100, 256] == 0 and mask.pixels[256, 20] == 0  # a layer without a mask starts empty
    assert "Paint the mask" in stack.text(stack.index() - 1)
    settle(qtbot, w.state, stack.undo)
    assert mask_of(w, layer_id) is None
    settle(qtbot, w.state, stack.redo)
    assert mask_of(w, layer_id) == mask
    # A stroke that starts over what is painted already (no change) goes on painting after it.
    drag(canvas, [(16.0, 16.0), (16.0, 16.5), (16.0, 28.0)])
    again = mask_of(w, layer_id)
    assert again is not None and again.pixels[440, 256] == 255 and stack.index() == before + 2


def test_the_eraser_lowers_coverage_and_x_brackets_and_q_drive_the_tool(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document) -> None:
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    panel = panel_of(w)
    panel.add_button.click()
    assert mask_of(w, layer_id) == LayerMask.filled(255)
    tool = w.canvas.mask_tool
    a = panel.mask_actions
    assert [x.shortcut().toString() for x in (a.paint, a.brush, a.eraser, a.swap, a.smaller, a.larger, a.invert)] \
        == ["Q", "B", "E", "X", "[", "]", "Ctrl+I"]
    w.activateWindow()
    w.canvas.setFocus()
    qtbot.waitUntil(lambda: w.isActiveWindow(), timeout=5000)
    QTest.keyClick(w.canvas, Qt.Key.Key_E)
    assert tool.painting and tool.brush.erase and panel.eraser_radio.isChecked()
    QTest.keyClick(w.canvas, Qt.Key.Key_X)
    assert not tool.brush.erase
    QTest.keyClick(w.canvas, Qt.Key.Key_X)
    size = tool.brush.size
    QTest.keyClick(w.canvas, Qt.Key.Key_BracketRight)
    assert tool.brush.size > size and panel.size_box.value() == round(tool.brush.size)
    QTest.keyClick(w.canvas, Qt.Key.Key_BracketLeft)
    assert tool.brush.size == size
    tool.set_brush(size=40.0, hardness=1.0, opacity=0.5)
    drag(w.canvas, [(16.0, 16.0), (16.5, 16.0)])
    mask = mask_of(w, layer_id)
    assert mask is not None and mask.pixels[256, 256] in (127, 128) and mask.pixels[20, 20] == 255
    QTest.keyClick(w.canvas, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)  # invert, while painting
    inverted = mask_of(w, layer_id)
    assert inverted is not None and inverted.pixels[20, 20] == 0
    QTest.keyClick(w.canvas, Qt.Key.Key_Q)
    assert not tool.painting and not tool.show_overlay


def test_fill_clear_invert_feather_start_and_enabled_are_undoable(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document) -> None:
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    panel, stack = panel_of(w), w.state.undo_stack
    assert not panel.fill_button.isEnabled()  # nothing to fill before there is a mask
    panel.add_button.click()
    assert [panel.start_res.itemData(i) for i in range(panel.start_res.count())] == [4, 8, 16, 32]
    assert panel.start_res.currentData() == 32

    def step(do: Callable[[], object], check: Callable[[LayerMask], bool]) -> None:
        before, old = stack.index(), mask_of(w, layer_id)
        do()
        new = mask_of(w, layer_id)
        assert new is not None and check(new) and stack.index() == before + 1
        stack.undo()
        assert mask_of(w, layer_id) == old
        stack.redo()
        assert mask_of(w, layer_id) == new

    step(panel.clear_button.click, lambda m: not m.pixels.any())
    step(panel.invert_button.click, lambda m: bool((m.pixels == 255).all()))
    step(panel.clear_button.click, lambda m: not m.pixels.any())
    step(panel.fill_button.click, lambda m: bool((m.pixels == 255).all()))
    step(lambda: panel.feather.setValue(6.5), lambda m: m.feather == 6.5)
    step(lambda: panel.start_res.activated.emit(panel.start_res.findData(8)), lambda m: m.start_res == 8)
    step(lambda: panel.enabled.setChecked(False), lambda m: not m.enabled)
    assert panel.mask_actions.disable.isChecked() and "disabled" in panel.target.text()
    step(panel.mask_actions.disable.trigger, lambda m: m.enabled)
    row = w.panels["layersDock"].rows[layer_id]
    assert row.mask_badge.isVisibleTo(row)
    panel.remove_button.click()
    assert mask_of(w, layer_id) is None and not row.mask_badge.isVisibleTo(row)
    stack.undo()
    assert mask_of(w, layer_id) is not None and row.mask_badge.isVisibleTo(row)
    settle(qtbot, w.state)


def _grab(canvas: Any) -> np.ndarray:
    return from_qimage(canvas.grab().toImage()).astype(int)


def test_the_overlay_is_red_where_the_layer_is_hidden_and_only_when_shown(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document) -> None:
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    canvas, tool = w.canvas, w.canvas.mask_tool
    left = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
    left[:, :256] = 255  # the layer acts on the left half only
    w.state.push(actions.set_mask(w.state.document, layer_id, LayerMask(left)))
    settle(qtbot, w.state)
    hidden, shown = widget_at(canvas, 24.0, 16.0), widget_at(canvas, 8.0, 16.0)
    plain = _grab(canvas)
    tool.set_overlay(True)
    red = _grab(canvas)
    d_hidden = red[hidden.y(), hidden.x()] - plain[hidden.y(), hidden.x()]
    assert d_hidden[0] >= 0 and (d_hidden[1] < -20 or d_hidden[2] < -20)  # towards red
    assert np.abs(red[shown.y(), shown.x()] - plain[shown.y(), shown.x()]).max() <= 1
    canvas.set_holding_original(True)  # \ shows the original: no overlay over it
    original = _grab(canvas)
    canvas.set_holding_original(False)
    assert np.abs(original[hidden.y(), hidden.x()] - from_qimage(canvas._original).astype(int)[16, 24]).max() <= 3
    canvas.set_compare(CompareMode.WIPE)
    canvas.set_split(0.9)  # the hidden point is left of the split: the "before", never tinted
    wipe = _grab(canvas)
    canvas.set_split(0.5)
    after = _grab(canvas)
    assert np.abs(wipe[hidden.y(), hidden.x()] - original[hidden.y(), hidden.x()]).max() <= 3
    assert np.abs(after[hidden.y(), hidden.x()] - red[hidden.y(), hidden.x()]).max() <= 3
    canvas.set_compare(CompareMode.SIDE_BY_SIDE)  # only the "after" half is tinted
    tool.set_overlay(False)
    side_plain = _grab(canvas)
    tool.set_overlay(True)
    side = _grab(canvas)
    before_pt, after_pt = widget_at(canvas, 24.0, 16.0), widget_at(canvas, 24.0, 16.0)
    after_pt.setX(after_pt.x() + canvas.width() // 2)
    assert np.abs(side[before_pt.y(), before_pt.x()] - side_plain[before_pt.y(), before_pt.x()]).max() <= 1
    tinted = side[after_pt.y(), after_pt.x()] - side_plain[after_pt.y(), after_pt.x()]
    assert tinted[0] >= 0 and (tinted[1] < -20 or tinted[2] < -20)
    canvas.set_compare(CompareMode.WIPE)
    # The wipe's handle stays on top of the overlay, and dragging it still moves the split.
    rect = canvas.image_rect()
    handle = QPointF(rect.left() + 0.5 * rect.width() + 4, rect.center().y())
    tool.set_overlay(False)
    untinted = _grab(canvas)
    tool.set_overlay(True)
    assert np.abs(_grab(canvas)[int(handle.y()), int(handle.x())] - untinted[int(handle.y()), int(handle.x())]).max() <= 1
    tool.use(erase=False)
    painted = mask_of(w, layer_id)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, handle.toPoint())
    QTest.mouseMove(canvas, QPointF(rect.left() + 0.7 * rect.width(), handle.y()).toPoint())
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPointF(rect.left() + 0.7 * rect.width(), handle.y()).toPoint())
    assert canvas.split == pytest.approx(0.7, abs=0.02) and mask_of(w, layer_id) == painted
    canvas.set_compare(CompareMode.OFF)
    tool.set_painting(False)
    assert not tool.show_overlay
    assert np.abs(_grab(canvas) - plain).max() <= 1


def test_masks_survive_save_reopen_and_duplication(qtbot: Any, make_window: Any, engine: Any,
                                                   seed_document: Document, tmp_path: Path) -> None:
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    w.canvas.mask_tool.use(erase=False)
    w.canvas.mask_tool.set_brush(size=100.0, hardness=0.3)
    drag(w.canvas, [(10.0, 10.0), (20.0, 22.0)])
    mask = mask_of(w, layer_id)
    assert mask is not None and mask.extent == "some"
    layers = w.panels["layersDock"]
    layers.duplicate_current()
    copy_id = w.state.current_layer_id
    assert copy_id != layer_id and mask_of(w, copy_id) == mask
    settle(qtbot, w.state)
    path = tmp_path / "masked.scproj"
    assert w.projects._save_to(path)
    w.projects.close_document()
    settle(qtbot, w.state, lambda: w.projects.open_project(path, ask=False))
    doc = w.state.document
    assert doc is not None and [layer.mask for layer in doc.layers] == [mask, mask]


def test_painting_a_locked_layer_says_so_and_changes_nothing(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document) -> None:
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    w.state.push(actions.set_locked(seed_document, layer_id, True))
    index = w.state.undo_stack.index()
    w.canvas.mask_tool.use(erase=False)
    drag(w.canvas, [(10.0, 10.0), (20.0, 20.0)])
    assert mask_of(w, layer_id) is None and w.state.undo_stack.index() == index
    assert "locked" in w.statusBar().currentMessage()
    panel = panel_of(w)
    assert not panel.add_button.isEnabled()
    panel.commands.add()
    assert mask_of(w, layer_id) is None and "locked" in w.statusBar().currentMessage()


def test_the_brush_lands_where_the_pointer_is_in_the_photo_and_in_the_crop(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document, gradient_photo: Path) -> None:
    w = make_window(engine)
    doc = pasted_into(seed_document, gradient_photo)
    layer_id = open_with_layer(qtbot, w, engine, doc)
    canvas, tool = w.canvas, w.canvas.mask_tool
    assert w.state.paste_back and canvas.image_rect().width() == pytest.approx(81 * canvas.scale)
    # The 32 px face sits at (24, 14) in the photo: photo point (40, 30) is the mask's centre.
    x, y = tool.to_mask(canvas.image_to_widget(QPointF(40.0, 30.0)))
    assert (x, y) == (pytest.approx(255.5), pytest.approx(255.5))
    tool.use(erase=False)
    tool.set_brush(size=32.0, hardness=1.0)
    drag(canvas, [(28.0, 18.0), (28.25, 18.0)])  # photo (28, 18) = crop (4, 4) = mask (64, 64)
    mask = mask_of(w, layer_id)
    assert mask is not None and mask.pixels[64, 64] == 255 and mask.pixels[64, 100] == 0
    settle(qtbot, w.state, lambda: w.state.set_paste_back(False))
    assert tool.to_mask(canvas.image_to_widget(QPointF(16.0, 16.0))) == (pytest.approx(255.5), pytest.approx(255.5))


def test_automatic_regions_run_off_the_ui_thread_and_undo_in_one_step(
        qtbot: Any, make_window: Any, engine: Any, seed_document: Document, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from styleclip_desktop.methods import regions

    top = np.zeros((MASK_SIZE, MASK_SIZE), np.float32)
    top[:128] = 1.0
    threads: list[str] = []

    def fake(renderer: Any, doc: Any, name: str, **settings: Any) -> LayerMask:
        threads.append(threading.current_thread().name)
        if name == "lips":
            raise RuntimeError("no lips here\nTraceback (most recent call last): ...")
        return LayerMask.from_coverage(top, **settings)

    monkeypatch.setattr(regions, "region_mask", fake)
    w = make_window(engine)
    layer_id = open_with_layer(qtbot, w, engine, seed_document)
    panel = panel_of(w)
    entries = {a.text(): a for a in panel.mask_actions.regions.actions()}
    assert "Hair" in entries and "Everything but the face" in entries
    index = w.state.undo_stack.index()
    entries["Hair"].trigger()
    qtbot.waitUntil(lambda: mask_of(w, layer_id) is not None, timeout=TIMEOUT)
    assert threads and threads[-1] != threading.current_thread().name
    mask = mask_of(w, layer_id)
    assert mask is not None and mask.pixels[10, 10] == 255 and mask.pixels[300, 10] == 0
    assert w.state.undo_stack.index() == index + 1
    entries["Lips"].trigger()
    qtbot.waitUntil(lambda: "lips" in w.statusBar().currentMessage().lower(), timeout=TIMEOUT)
    message = w.statusBar().currentMessage()
    assert "Traceback" not in message and "\n" not in message and mask_of(w, layer_id) == mask
    settle(qtbot, w.state, w.state.undo_stack.undo)
    assert mask_of(w, layer_id) is None
