"""The Layer menu and its window-wide shortcuts, β problems shown in the layer's row (never
a dialog, never in the way of undo), the default layout, and small wording and sizing
details, through real widgets with the real engine on the synthetic demo models."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QDialog, QGroupBox, QLabel, QMenu, QMessageBox

from styleclip_desktop import paths
from styleclip_desktop.document import Document, GlobalDirectionParams, actions
from styleclip_desktop.ui.panels.editing import last_beta
from styleclip_desktop.ui.panels.layer_row import LayerRow, usable_beta
from styleclip_desktop.ui.panels.prompt_history import PromptHistory
from styleclip_desktop.ui.panels.prompt_panel import PROMPT_COLUMN, PromptPanel
from styleclip_desktop.ui.panels.properties_panel import PropertiesPanel
from styleclip_desktop.ui.state import EditorState

TIMEOUT = 60_000
CTRL = Qt.KeyboardModifier.ControlModifier


def settle(qtbot: Any, state: Any) -> None:
    """Wait until every render asked for so far has come back (or failed)."""
    worker = state.engine.worker
    qtbot.waitUntil(lambda: worker.pending() == 0 and worker.current is None and state.tasks.current() is None,
                    timeout=TIMEOUT)
    qtbot.wait(20)  # results queued for the UI thread


def open_document(qtbot: Any, window: Any, doc: Document) -> None:
    window.projects.replace_document(doc)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    settle(qtbot, window.state)


def visible_dialogs() -> list[Any]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog | QMessageBox) and w.isVisible()]


def add_layers(window: Any, doc: Document, targets: list[str], beta: float = 0.15) -> list[str]:
    ids = []
    for target in targets:
        command = actions.add_layer(doc, GlobalDirectionParams(target, beta=beta), alpha=3.0)
        window.state.push(command)
        ids.append(command.layer.id)
    window.state.set_current_layer(ids[-1])
    return ids


# -- β problems: in the row, never a dialog --------------------------------------------------


def test_beta_too_high_shows_in_the_row_and_undo_keys_all_take_effect(
        make_window: Any, engine: Any, seed_document: Document, dialogs_shown: list[str], qtbot: Any,
        ui_settings: QSettings) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    state, panel, prompt = w.state, w.panels["layersDock"], w.panels["promptDock"]
    target = "a face with grey hair"
    largest = engine.direction_info(target, "a face", 0.0).largest_beta
    too_high = round(min(1.0, largest + 0.1), 2)

    qtbot.keyClicks(prompt.prompt, target)
    qtbot.keyClick(prompt.prompt, Qt.Key.Key_Return)
    first = state.current_layer_id
    row: LayerRow = panel.rows[first]
    assert row.beta is not None
    row.beta.setValue(too_high)  # the user types a β that keeps no channel
    settle(qtbot, state)
    qtbot.waitUntil(row.has_problem, timeout=TIMEOUT)
    suggested = usable_beta(largest)
    assert suggested is not None and suggested <= largest
    assert row.hint.text() == f"β too high: the largest usable β here is {suggested:.2f}"
    assert not row.fix_beta.isHidden() and row.fix_beta.text() == f"Use β = {suggested:.2f}"
    assert dialogs_shown == [] and w.presenter.shown == [] and visible_dialogs() == []

    # new layers start at the β the user last chose
    for text in ("a smiling face", "an old face", "a robot", "a young face", "a tanned face"):
        qtbot.keyClicks(prompt.prompt, text)
        qtbot.keyClick(prompt.prompt, Qt.Key.Key_Return)
        settle(qtbot, state)
    doc = state.document
    assert doc is not None and len(doc.layers) == 6
    assert all(layer.params.beta == too_high for layer in doc.layers)  # type: ignore[attr-defined]

    # twelve undo/redo keystrokes on the window, each one taking effect, none of them
    # answered by a dialog
    w.canvas.setFocus()
    for key, modifiers, step in [(Qt.Key.Key_Z, CTRL, -1)] * 6 + [(Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier, +1)] * 6:
        before = state.undo_stack.index()
        qtbot.keyClick(w, key, modifiers)
        assert state.undo_stack.index() == before + step
        settle(qtbot, state)
        assert visible_dialogs() == []
    assert dialogs_shown == [] and w.presenter.shown == []

    # one click uses the β that works, and later layers start there
    row = panel.rows[first]
    qtbot.waitUntil(row.has_problem, timeout=TIMEOUT)
    row.fix_beta.click()
    assert doc.layers.get(first).params.beta == suggested  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: not panel.rows[first].has_problem(), timeout=TIMEOUT)
    assert last_beta(state) == suggested
    w.save_settings()
    assert float(ui_settings.value("layers/beta")) == suggested  # type: ignore[arg-type]
    settle(qtbot, state)
    assert dialogs_shown == []


def test_other_errors_still_reach_the_user(make_window: Any, engine: Any, dialogs_shown: list[str]) -> None:
    w = make_window(engine)
    w.state.error.emit("The photo could not be read.")
    assert dialogs_shown == ["The photo could not be read."]


def test_channel_count_wording(qtbot: Any, seed_document: Document) -> None:
    class Info(NamedTuple):
        channels: int
        largest_beta: float
        error: str | None = None

    doc = seed_document
    command = actions.add_layer(doc, GlobalDirectionParams("a face with grey hair"), alpha=3.0)
    command.do()
    row = LayerRow(doc.layers.get(command.layer.id))
    qtbot.addWidget(row)
    row.set_direction_info(Info(1, 0.3), 0.15)
    assert row.channels.text() == "1 channel changed"
    row.set_direction_info(Info(7, 0.3), 0.15)
    assert row.channels.text() == "7 channels changed"
    assert not row.has_problem()


# -- the Layer menu ---------------------------------------------------------------------------


def layer_menu(window: Any) -> QMenu:
    for action in window.menuBar().actions():
        if action.text().replace("&", "") == "Layer":
            menu = action.menu()
            assert isinstance(menu, QMenu)
            return menu
    raise AssertionError("no Layer menu")


def test_layer_menu_shortcuts_work_with_focus_on_the_canvas(make_window: Any, engine: Any,
                                                            seed_document: Document, qtbot: Any) -> None:
    w = make_window(engine)
    menu = layer_menu(w)
    items = {a.text(): a for a in menu.actions() if not a.isSeparator()}
    assert set(items) >= {"New Layer from Prompt…", "Duplicate Layer", "Delete Layer", "Move Layer Up",
                          "Move Layer Down", "Hide Layer"}
    assert items["Duplicate Layer"].shortcut().toString() == "Ctrl+J"
    assert items["Move Layer Up"].shortcut().toString() == "Ctrl+]"
    assert items["Move Layer Down"].shortcut().toString() == "Ctrl+["
    assert not items["Duplicate Layer"].isEnabled()  # no document, no layer

    open_document(qtbot, w, seed_document)
    doc = w.state.document
    assert doc is not None
    a, b = add_layers(w, doc, ["a face with grey hair", "a smiling face"])
    assert all(action.isEnabled() for action in items.values())
    w.canvas.setFocus()
    qtbot.waitUntil(w.canvas.hasFocus, timeout=5000)

    qtbot.keyClick(w.canvas, Qt.Key.Key_J, CTRL)
    assert len(doc.layers) == 3
    copy = w.state.current_layer_id
    assert copy not in (a, b) and doc.layers.index_of(copy) == 2

    qtbot.keyClick(w.canvas, Qt.Key.Key_BracketLeft, CTRL)  # down the stack
    assert doc.layers.index_of(copy) == 1
    qtbot.keyClick(w.canvas, Qt.Key.Key_BracketRight, CTRL)  # and up again
    assert doc.layers.index_of(copy) == 2

    qtbot.keyClick(w.canvas, Qt.Key.Key_Comma, CTRL)
    assert not doc.layers.get(copy).visible
    assert w.panels["layersDock"].visibility_action.text() == "Show Layer"
    qtbot.keyClick(w.canvas, Qt.Key.Key_Comma, CTRL)
    assert doc.layers.get(copy).visible

    qtbot.keyClick(w.canvas, Qt.Key.Key_Delete)
    assert doc.layers.ids() == [a, b]
    assert w.state.current_layer_id in (a, b)

    qtbot.keyClick(w.canvas, Qt.Key.Key_Insert)  # a new layer starts at the prompt field
    assert QApplication.focusWidget() is w.panels["layersDock"].prompt
    settle(qtbot, w.state)


def test_delete_key_in_the_timeline_deletes_the_keyframe_not_the_layer(
        make_window: Any, engine: Any, seed_document: Document, qtbot: Any) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    doc = w.state.document
    assert doc is not None
    (layer_id,) = add_layers(w, doc, ["a face with grey hair"])
    w.state.push(actions.set_keyframe(doc, layer_id, 0.0, 0.0))
    w.state.push(actions.set_keyframe(doc, layer_id, 1.0, 3.0))
    view = w.panels["timelineDock"].view
    view.selected = (layer_id, 1.0)
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=5000)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert [k.t for k in doc.timeline.keyframes(layer_id)] == [0.0]
    assert layer_id in doc.layers
    # nothing selected there: the key deletes the current layer
    view.selected = None
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert layer_id not in doc.layers
    settle(qtbot, w.state)


# -- names, title, layout -------------------------------------------------------------------


def test_prompt_history_and_undo_history_have_distinct_names(make_window: Any) -> None:
    w = make_window()
    prompt = w.panels["promptDock"]
    assert prompt.history_box.title() == "Recent Prompts"
    assert w.docks["historyDock"].windowTitle() == "History"
    titles = [box.title() for box in w.findChildren(QGroupBox)]
    assert "History" not in titles


def test_window_title_names_the_app_once(make_window: Any, demo_source: Any, seed_document: Document,
                                         qapp: QApplication) -> None:
    old = qapp.applicationDisplayName()
    qapp.setApplicationDisplayName(paths.APP_NAME)
    try:
        w = make_window(source=demo_source)
        for doc in (None, seed_document):
            if doc is not None:
                w.state.set_document(doc)
            title = w.windowTitle().replace("[*]", "")
            # What Windows and Linux show: Qt adds the display name unless the title ends with it.
            shown = title if title.endswith(paths.APP_NAME) else f"{title} — {paths.APP_NAME}"
            assert shown.count(paths.APP_NAME) == 1, shown
    finally:
        qapp.setApplicationDisplayName(old)


def test_default_window_shows_five_layers_and_three_tracks(make_window: Any, qtbot: Any, ui_settings: QSettings,
                                                           demo_source: Any, seed_document: Document) -> None:
    from styleclip_desktop.ui.main_window import MainWindow

    # (make_window: its dialogs never block; the window is built here, as the editor starts)

    w = MainWindow(ui_settings, demo_source)  # as the editor starts: 1400x900, no saved layout
    qtbot.addWidget(w)
    w.show()
    try:
        assert w.size().toTuple() == (1400, 900)
        w.state.set_document(seed_document)
        add_layers(w, seed_document, ["one", "two", "three", "four", "five"])
        qtbot.wait(50)
        panels: dict[str, Any] = w.panels
        layers = panels["layersDock"].list
        assert layers.count() == 5
        viewport = layers.viewport().rect()
        for i in range(5):
            assert viewport.contains(layers.visualItemRect(layers.item(i))), i
        assert layers.verticalScrollBar().maximum() == 0
        from styleclip_desktop.ui.panels.timeline_view import RULER_H, TRACK_H

        assert panels["timelineDock"].view.parentWidget().height() >= RULER_H + 3 * TRACK_H
    finally:
        w.state.undo_stack.blockSignals(True)
        w.close()


def test_model_manager_keeps_its_size_when_an_error_appears(make_window: Any, qtbot: Any) -> None:
    w = make_window()
    wizard = w.show_model_wizard()
    qtbot.wait(20)
    size = wizard.size()
    wizard._finished("The download failed: the server closed the connection before the file was complete, "
                     "so nothing was saved; check the network connection and try again in a few minutes.")
    qtbot.wait(20)
    QApplication.processEvents()
    assert wizard.size() == size
    assert wizard.progress_text.isVisible() and wizard.progress_text.width() <= wizard.width()


# -- properties and prompt history ----------------------------------------------------------------


class _BackendEngine:
    """Just what the Properties panel reads of an engine, and the backend switch."""

    resolution = 32

    def __init__(self) -> None:
        self.backend_label = "torch CPU"
        self.listeners: list[Callable[[str], None]] = []

    def on_backend_changed(self, callback: Callable[[str], None]) -> None:
        self.listeners.append(callback)

    def switch(self, label: str) -> None:
        self.backend_label = label
        for callback in self.listeners:
            callback(label)


def _engine_line(panel: PropertiesPanel) -> str:
    return next(text for label, text, _warn in panel.info_lines() if label == "Engine")


def test_properties_say_the_backend_in_use_and_do_not_clip(qtbot: Any, qapp: QApplication) -> None:
    state = EditorState()
    doc = Document(np.zeros((8, 512), np.float32), synthetic=True, seed=3)
    state.set_document(doc)
    engine = _BackendEngine()
    state.set_engine(engine)
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    panel.resize(240, 500)
    panel.show()
    shown = panel.doc_box.findChildren(QLabel)
    assert any("torch CPU" in label.text() for label in shown)

    # the switch to ONNX comes from the exporting thread
    switcher = threading.Thread(target=engine.switch, args=("ONNX Runtime CPU",))
    switcher.start()
    switcher.join()
    qtbot.waitUntil(lambda: any("ONNX Runtime CPU" in label.text()
                                for label in panel.doc_box.findChildren(QLabel)), timeout=5000)

    # in a narrow dock every label and value stays whole inside the panel
    qtbot.wait(20)
    for label in panel.doc_box.findChildren(QLabel):
        if label.isVisible() and label.text():
            assert label.width() >= min(label.minimumSizeHint().width(), label.sizeHint().width())
            right = label.mapTo(panel, label.rect().topRight()).x()
            assert right <= panel.scroller.viewport().width() + 1, label.text()
    state.undo_stack.blockSignals(True)


def test_recent_prompts_are_not_cut_short_when_they_fit(qtbot: Any, qapp: QApplication, tmp_path: Any) -> None:
    state = EditorState()
    history = PromptHistory(tmp_path / "history.json")
    text = "a face with purple hair and freckles"
    history.record(text, "a face", 3.0)
    panel = PromptPanel(state, history=history)
    qtbot.addWidget(panel)
    panel.resize(420, 600)
    panel.show()
    qtbot.wait(20)
    view = panel.history_view
    need = view.fontMetrics().horizontalAdvance(text)
    assert view.viewport().width() > need + 80  # room enough for the whole prompt
    assert view.columnWidth(PROMPT_COLUMN) >= need + 8
    state.undo_stack.blockSignals(True)


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLECLIP_DATA_DIR", str(tmp_path / "data"))
