"""The layers, prompt and properties panels through pytest-qt, offscreen.

A small fake engine (a real job worker, pictures made from the alphas) stands in for
the render engine; the end of the file repeats the key gestures with the real engine on
synthetic models when that engine is available.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from styleclip_desktop.document import (
    Document,
    GlobalDirectionParams,
    MapperParams,
    OptimizationParams,
    actions,
)
from styleclip_desktop.render.worker import Priority, Worker
from styleclip_desktop.ui.panels import LayersPanel, PromptPanel, PropertiesPanel, TimelinePanel
from styleclip_desktop.ui.panels.prompt_history import PRESETS, PromptHistory
from styleclip_desktop.ui.panels.properties_panel import kept_from_text
from styleclip_desktop.ui.state import EditorState

LATENT_SHAPE = (8, 512)


class DirectionInfo(NamedTuple):
    channels: int
    largest_beta: float
    error: str | None = None


class FakeEngine:
    """The engine API the panels use; the picture's grey level encodes the alphas."""

    backend_label = "fake"
    resolution = 16
    preview_resolution = 8

    def __init__(self) -> None:
        self.worker = Worker("fake-engine")
        self.renders: list[dict[str, Any]] = []
        self.precomputes: list[list[dict[str, float]]] = []
        self.identities = {"generator": "b" * 64}
        self.gate: threading.Event | None = None  # when set, renders wait for it

    def submit_render(self, doc: Document, alphas: dict[str, float] | None = None, *, preview: bool = False,
                      paste_back: bool = False, key: str = "preview") -> Any:
        used = {layer.id: (alphas or {}).get(layer.id, layer.alpha) for layer in doc.layers if layer.visible}
        self.renders.append({"alphas": alphas, "preview": preview, "key": key, "used": used})
        size = self.preview_resolution if preview else self.resolution
        level = int(sum(used.values()) * 10) % 256
        gate = self.gate

        def work(_ctx: Any) -> np.ndarray:
            if gate is not None:
                gate.wait(5)
            return np.full((size, size, 3), level, np.uint8)

        return self.worker.submit(work, key=key)

    def precompute(self, doc: Document, alphas_list: list[dict[str, float]], paste_back: bool = False) -> Any:
        self.precomputes.append(alphas_list)
        return self.worker.submit(lambda _ctx: len(alphas_list), Priority.PRECOMPUTE)

    def direction_info(self, target: str, neutral: str, beta: float) -> DirectionInfo:
        return DirectionInfo(channels=max(0, round((0.3 - beta) * 100)), largest_beta=0.29)


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("STYLECLIP_DATA_DIR", str(data))
    return data


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    e = FakeEngine()
    yield e
    e.worker.shutdown()


_states: list[EditorState] = []


def new_state(cls: type[EditorState] = EditorState) -> EditorState:
    s = cls()
    _states.append(s)
    return s


@pytest.fixture(autouse=True)
def _quiet_teardown(qapp: QApplication) -> Iterator[None]:
    yield
    # A state's undo stack announces its own destruction; nobody is listening by then.
    while _states:
        _states.pop().undo_stack.blockSignals(True)


@pytest.fixture
def state(qapp: QApplication, engine: FakeEngine) -> EditorState:
    s = new_state()
    s.set_document(Document(np.zeros(LATENT_SHAPE, np.float32), models={"generator": "a" * 64}))
    s.set_engine(engine)
    return s


def _doc(state: EditorState) -> Document:
    assert state.document is not None
    return state.document


def _add(state: EditorState, target: str, alpha: float = 3.0, **kw: Any) -> str:
    doc = _doc(state)
    command = actions.add_layer(doc, GlobalDirectionParams(target, **kw), alpha=alpha)
    state.push(command)
    return command.layer.id


def _drag(slider: Any, values: list[int]) -> None:
    """A mouse drag as the slider sees it: pressed, moved through values, released."""
    slider.setSliderDown(True)
    for v in values:
        slider.setValue(v)
    slider.setSliderDown(False)


# -- prompt panel -> layers ---------------------------------------------------------------


def test_prompt_panel_adds_layers_on_enter(qtbot: Any, state: EditorState) -> None:
    prompt, layers = PromptPanel(state), LayersPanel(state)
    qtbot.addWidget(prompt)
    qtbot.addWidget(layers)
    qtbot.keyClicks(prompt.prompt, "a face with grey hair")
    qtbot.keyClick(prompt.prompt, Qt.Key.Key_Return)
    qtbot.keyClicks(prompt.prompt, "a smiling face")
    qtbot.keyClicks(prompt.neutral, "a serious face")
    qtbot.keyClick(prompt.prompt, Qt.Key.Key_Return)
    doc = _doc(state)
    assert [layer.name for layer in doc.layers] == ["a face with grey hair", "a smiling face"]
    first, second = (layer.params for layer in doc.layers)
    assert isinstance(first, GlobalDirectionParams) and isinstance(second, GlobalDirectionParams)
    assert (first.neutral, first.beta) == ("a face", 0.15)
    assert second.neutral == "a serious face"
    assert [layer.alpha for layer in doc.layers] == [3.0, 3.0]
    assert prompt.prompt.text() == ""
    # top of the list is the top of the stack, and the new layer is current
    assert layers.layer_ids_top_down() == [doc.layers[1].id, doc.layers[0].id]
    assert layers.list.item(0).data(Qt.ItemDataRole.UserRole) == doc.layers[1].id
    assert state.current_layer_id == doc.layers[1].id
    assert layers.rows[doc.layers[1].id].badge.text() == "GD"


def test_add_menu_makes_mapper_and_optimization_layers(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    panel.prompt.setText("purple_hair")
    panel.add_from_prompt("mapper")
    state.set_engine(None)  # no engine: the optimization layer waits for a Run
    panel.prompt.setText("a face with a beard")
    panel.add_from_prompt("optimization")
    kinds = [type(layer.params) for layer in _doc(state).layers]
    assert kinds == [MapperParams, OptimizationParams]
    badges = [panel.rows[i].badge.text() for i in panel.layer_ids_top_down()]
    assert badges == ["Opt", "Mapper"]


# -- alpha drag, undo, previews -------------------------------------------------------------


def test_alpha_drag_is_one_undo_step_with_previews(qtbot: Any, state: EditorState, engine: FakeEngine) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a face with grey hair")
    steps_before = state.undo_stack.count()
    shown: list[tuple[Any, bool]] = []
    state.render_ready.connect(lambda image, preview: shown.append((image, preview)))
    row = panel.rows[layer_id]
    _drag(row.alpha.slider, [70, 90, 110, 130])  # 3.5 .. 6.5 in alpha units
    layer = _doc(state).layers.get(layer_id)
    assert layer.alpha == pytest.approx(6.5)
    assert state.undo_stack.count() == steps_before + 1
    previews = [r for r in engine.renders if r["preview"]]
    assert previews and all(r["key"] == "preview" for r in previews)
    assert not engine.renders[-1]["preview"]  # released: one full render
    qtbot.waitUntil(lambda: any(not preview for _, preview in shown), timeout=3000)
    assert shown[-1][1] is False and shown[-1][0].shape == (16, 16, 3)
    state.undo_stack.undo()
    assert layer.alpha == 3.0
    assert row.alpha.spin.value() == 3.0
    # a second drag is a second undo step
    _drag(row.alpha.slider, [20])
    state.undo_stack.undo()
    assert layer.alpha == 3.0


def test_drag_uses_the_editors_render_request_when_it_has_one(qtbot: Any, qapp: QApplication) -> None:
    class RecordingState(EditorState):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[bool] = []

        def request_render(self, preview: bool = False) -> None:
            self.requests.append(preview)

    state = RecordingState()
    _states.append(state)
    state.set_document(Document(np.zeros(LATENT_SHAPE, np.float32)))
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "an old face")
    _drag(panel.rows[layer_id].alpha.slider, [10, 20, 30])
    assert state.requests == [True, True, True, False]


def test_spin_box_edit_is_its_own_step(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a face with red hair")
    panel.rows[layer_id].alpha.spin.setValue(-4.0)
    assert _doc(state).layers.get(layer_id).alpha == -4.0
    assert state.undo_stack.undoText().startswith("Strength")


# -- visibility, lock, rename, order ---------------------------------------------------------


def test_toggle_visibility_and_undo(qtbot: Any, state: EditorState, engine: FakeEngine) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a surprised face")
    eye = panel.rows[layer_id].eye
    assert eye.isChecked()
    qtbot.mouseClick(eye, Qt.MouseButton.LeftButton)
    assert _doc(state).layers.get(layer_id).visible is False
    assert engine.renders and not engine.renders[-1]["preview"]
    state.undo_stack.undo()
    assert _doc(state).layers.get(layer_id).visible is True
    assert panel.rows[layer_id].eye.isChecked()


def test_lock_refuses_edits_and_delete(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a robot", alpha=-4.0)
    errors: list[str] = []
    state.error.connect(errors.append)
    panel.rows[layer_id].lock.click()
    assert _doc(state).layers.get(layer_id).locked
    assert not panel.rows[layer_id].alpha.isEnabled()
    state.set_current_layer(layer_id)
    panel.delete_current()
    assert layer_id in _doc(state).layers and errors


def test_rename_by_double_click(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    layer_id = _add(state, "a face with blond hair")
    name = panel.rows[layer_id].name
    qtbot.mouseDClick(name.label, Qt.MouseButton.LeftButton)
    assert name.editing()
    name.edit.setText("Blond")
    qtbot.keyClick(name.edit, Qt.Key.Key_Return)
    assert _doc(state).layers.get(layer_id).name == "Blond"
    assert panel.rows[layer_id].name.text() == "Blond"


def test_reorder_by_drop_and_by_move_actions(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    panel.resize(360, 600)
    panel.show()
    a, b, c = (_add(state, t) for t in ("grey", "smile", "old"))
    assert panel.layer_ids_top_down() == [c, b, a]
    # drag the top row onto the lower half of the bottom row
    lst = panel.list
    lst.setCurrentRow(0)
    rect = lst.visualItemRect(lst.item(2))
    drop = QDropEvent(QPointF(rect.center().x(), rect.bottom() - 2), Qt.DropAction.MoveAction, QMimeData(),
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    lst.dropEvent(drop)
    assert panel.layer_ids_top_down() == [b, a, c]
    assert _doc(state).layers.ids() == [c, a, b]
    state.undo_stack.undo()
    assert panel.layer_ids_top_down() == [c, b, a]
    state.set_current_layer(a)
    panel.up_action.trigger()
    assert panel.layer_ids_top_down() == [c, a, b]
    panel.move_to_row(c, 2)
    assert panel.layer_ids_top_down() == [a, b, c]


def test_delete_and_ctrl_j_shortcuts(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel, timeout=2000)
    a = _add(state, "a smiling face")
    b = _add(state, "an angry face")
    state.set_current_layer(b)
    panel.list.setFocus()
    qtbot.keyClick(panel.list, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    doc = _doc(state)
    assert len(doc.layers) == 3 and doc.layers[2].name == "an angry face copy"
    assert state.current_layer_id == doc.layers[2].id
    qtbot.keyClick(panel.list, Qt.Key.Key_Delete)
    assert doc.layers.ids() == [a, b]
    assert state.current_layer_id == b  # the neighbour becomes current
    state.undo_stack.undo()
    assert len(doc.layers) == 3


# -- beta and channel counts ------------------------------------------------------------------


def test_beta_shows_channel_count_and_too_high_hint(qtbot: Any, state: EditorState) -> None:
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a face with purple hair")
    row = panel.rows[layer_id]
    qtbot.waitUntil(lambda: row.channels.text() == "15 channels changed", timeout=3000)
    assert row.hint.isHidden()
    assert row.beta is not None
    row.beta.setValue(0.5)
    params = _doc(state).layers.get(layer_id).params
    assert isinstance(params, GlobalDirectionParams) and params.beta == 0.5
    qtbot.waitUntil(lambda: not row.hint.isHidden(), timeout=3000)
    assert "β too high" in row.hint.text() and "largest usable β here is 0.29" in row.hint.text()
    state.undo_stack.undo()
    qtbot.waitUntil(lambda: row.hint.isHidden(), timeout=3000)


def test_engine_error_message_is_the_hint(qtbot: Any, state: EditorState, engine: FakeEngine) -> None:
    engine.direction_info = lambda *a: DirectionInfo(0, 0.21, "β too high: 0 channels; largest usable β here is 0.21")  # type: ignore[method-assign]
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "x", beta=0.9)
    row = panel.rows[layer_id]
    qtbot.waitUntil(lambda: "0.21" in row.hint.text(), timeout=3000)


# -- optimization layers ---------------------------------------------------------------------


def test_optimization_layer_live_frames_cancel_and_result(qtbot: Any, state: EditorState,
                                                          engine: FakeEngine) -> None:
    release = threading.Event()

    def submit_optimization(doc: Document, layer_id: str, on_frame: Any) -> Any:
        cancel_after_frame = not release.is_set()

        def work(ctx: Any) -> Any:
            on_frame(np.full((8, 8, 3), 99, np.uint8))
            while cancel_after_frame and not ctx.cancelled():
                ctx.cancel_event.wait(0.01)
            ctx.check()

            class Result:
                cancelled = False
                delta = np.full(LATENT_SHAPE, 0.5, np.float32)

            return Result()

        return engine.worker.submit(work, Priority.EXPORT)

    engine.submit_optimization = submit_optimization  # type: ignore[attr-defined]
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    frames: list[Any] = []
    state.render_ready.connect(lambda image, preview: frames.append(image))
    panel.prompt.setText("a face with a beard")
    layer_id = panel.add_from_prompt("optimization")
    assert layer_id is not None
    row = panel.rows[layer_id]
    qtbot.waitUntil(lambda: row.thumb.pixmap() is not None and not row.thumb.pixmap().isNull(), timeout=3000)
    assert any(getattr(f, "shape", None) == (8, 8, 3) and f[0, 0, 0] == 99 for f in frames)
    assert panel.runner.running(layer_id) and not row.cancel.isHidden()
    row.cancel.click()
    qtbot.waitUntil(lambda: not panel.runner.running(layer_id), timeout=3000)
    params = _doc(state).layers.get(layer_id).params
    assert isinstance(params, OptimizationParams) and params.delta is None
    release.set()
    row.run.click()
    qtbot.waitUntil(lambda: not panel.runner.running(layer_id), timeout=3000)
    params = _doc(state).layers.get(layer_id).params
    assert isinstance(params, OptimizationParams) and params.delta is not None
    assert float(params.delta[0, 0]) == 0.5 and row.cancel.isHidden()


# -- prompt history and presets --------------------------------------------------------------


def test_history_persists_and_is_searchable(qtbot: Any, state: EditorState, _own_data_dir: Path) -> None:
    first = PromptPanel(state)
    qtbot.addWidget(first)
    for text in ("a face with grey hair", "a smiling face", "a face with red hair"):
        first.prompt.setText(text)
        first.submit()
    assert (_own_data_dir / "prompt_history.json").is_file()
    second = PromptPanel(new_state())
    qtbot.addWidget(second)
    assert {e.target for e in second.shown_entries()} == {"a face with grey hair", "a smiling face",
                                                          "a face with red hair"}
    second.search.setText("hair")
    assert {e.target for e in second.shown_entries()} == {"a face with grey hair", "a face with red hair"}
    # the star column toggles a favourite; favourites come first, in every panel
    item = second.history_view.topLevelItem(1)
    assert item is not None
    starred = item.data(1, Qt.ItemDataRole.UserRole).target
    second._on_history_clicked(item, 0)
    qtbot.waitUntil(lambda: second.shown_entries()[0].favourite, timeout=2000)
    assert second.shown_entries()[0].target == starred
    third = PromptPanel(new_state())
    qtbot.addWidget(third)
    assert third.shown_entries()[0].target == starred and third.shown_entries()[0].favourite
    # one click on a prompt adds it again
    layers_before = len(_doc(state).layers)
    first.search.setText("smiling")
    smiling = first.history_view.topLevelItem(0)
    assert smiling is not None
    first._on_history_clicked(smiling, 1)
    assert len(_doc(state).layers) == layers_before + 1
    assert _doc(state).layers[layers_before].name == "a smiling face"


def test_corrupt_history_is_set_aside(qtbot: Any, state: EditorState, _own_data_dir: Path) -> None:
    _own_data_dir.mkdir(parents=True)
    path = _own_data_dir / "prompt_history.json"
    path.write_text("{ not json", encoding="utf-8")
    panel = PromptPanel(state)
    qtbot.addWidget(panel)
    assert panel.shown_entries() == []
    assert (_own_data_dir / "prompt_history.json.corrupt").read_text(encoding="utf-8") == "{ not json"
    panel.prompt.setText("an old face")
    assert panel.submit() is not None
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [e["target"] for e in data["entries"]] == ["an old face"]
    # wrong shapes and bad entries are tolerated too
    path.write_text(json.dumps({"entries": [{"target": 5}, {"target": "ok", "alpha": "x"},
                                            {"target": "fine", "alpha": -2}]}), encoding="utf-8")
    assert [e.target for e in PromptHistory(path).entries] == ["fine"]


def test_presets_carry_the_alpha_sign(qtbot: Any, state: EditorState) -> None:
    labels = {p.label for p in PRESETS}
    for expected in ("grey hair", "blond hair", "red hair", "purple hair", "smiling", "surprised", "angry",
                     "young", "old"):
        assert expected in labels
    robot = next(p for p in PRESETS if p.target == "a robot")
    assert robot.alpha == -4.0 and robot.group == "Antiprompts"
    panel = PromptPanel(state)
    qtbot.addWidget(panel)
    # labelled with what the user gets, "a robot" at −4, as an antiprompt (no double negative)
    button = next(b for b in panel.preset_buttons if b.text().startswith("a robot"))
    assert "−4" in button.text() and "not" not in button.text()
    assert button.toolTip().startswith("Antiprompt") and "away from" in button.toolTip()
    button.click()
    layer = _doc(state).layers[len(_doc(state).layers) - 1]
    assert layer.alpha == -4.0 and isinstance(layer.params, GlobalDirectionParams)
    assert layer.params.target == "a robot"


def test_without_a_document_adding_explains_itself(qtbot: Any, qapp: QApplication) -> None:
    state = new_state()
    errors: list[str] = []
    state.error.connect(errors.append)
    panel = PromptPanel(state)
    qtbot.addWidget(panel)
    panel.prompt.setText("a face with grey hair")
    assert panel.submit() is None and errors


# -- properties --------------------------------------------------------------------------------


def test_properties_edit_parameters_through_undo(qtbot: Any, state: EditorState) -> None:
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    gd = _add(state, "a face with grey hair")
    state.set_current_layer(gd)
    assert set(panel.fields) == {"target", "neutral", "beta", "keep"}
    panel.fields["beta"].setValue(0.2)  # type: ignore[attr-defined]
    params = _doc(state).layers.get(gd).params
    assert isinstance(params, GlobalDirectionParams) and params.beta == 0.2
    target = panel.fields["target"]
    target.setText("a face with white hair")  # type: ignore[attr-defined]
    target.editingFinished.emit()  # type: ignore[attr-defined]
    assert _doc(state).layers.get(gd).name == "a face with grey hair"  # the name is the user's
    assert _doc(state).layers.get(gd).params.target == "a face with white hair"  # type: ignore[attr-defined]
    state.undo_stack.undo()
    state.undo_stack.undo()
    assert _doc(state).layers.get(gd).params == GlobalDirectionParams("a face with grey hair")
    assert panel.fields["beta"].value() == 0.15  # type: ignore[attr-defined]

    state.push(actions.add_layer(_doc(state), MapperParams("purple_hair"), alpha=1.0))
    state.set_current_layer(_doc(state).layers[1].id)
    assert {"checkpoint", "coarse", "medium", "fine"} <= set(panel.fields)
    panel.fields["fine"].setChecked(False)  # type: ignore[attr-defined]
    assert _doc(state).layers[1].params.fine is False  # type: ignore[attr-defined]

    state.push(actions.add_layer(_doc(state), OptimizationParams("a face with a beard"), alpha=1.0))
    state.set_current_layer(_doc(state).layers[2].id)
    assert {"prompt", "lambda_l2", "lambda_id", "steps", "seed"} <= set(panel.fields)
    panel.fields["steps"].setValue(40)  # type: ignore[attr-defined]
    panel.fields["lambda_id"].setValue(0.0)  # type: ignore[attr-defined]
    opt = _doc(state).layers[2].params
    assert isinstance(opt, OptimizationParams) and (opt.steps, opt.lambda_id) == (40, 0.0)


def test_kept_attributes_are_typed_stored_shown_and_undone(qtbot: Any, state: EditorState) -> None:
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    layer = _add(state, "a face with grey hair")
    state.set_current_layer(layer)
    keep = panel.fields["keep"]
    assert keep.text() == ""  # type: ignore[attr-defined]
    keep.setText(" age,glasses , ,a face with a hat")  # type: ignore[attr-defined]
    keep.editingFinished.emit()  # type: ignore[attr-defined]
    params = _doc(state).layers.get(layer).params
    assert isinstance(params, GlobalDirectionParams) and params.keep == ("age", "glasses", "a face with a hat")
    panel.sync()
    assert keep.text() == "age, glasses, a face with a hat"  # type: ignore[attr-defined]
    keep.editingFinished.emit()  # the same list again is no new undo step
    state.undo_stack.undo()
    assert _doc(state).layers.get(layer).params.keep == ()  # type: ignore[attr-defined]
    assert keep.text() == ""  # type: ignore[attr-defined]
    state.undo_stack.redo()
    state.push(actions.set_params(_doc(state), layer, keep=()))
    assert keep.text() == ""  # type: ignore[attr-defined]


def test_the_keep_text_splits_on_commas() -> None:
    assert kept_from_text("") == ()
    assert kept_from_text("age") == ("age",)
    assert kept_from_text(" age , , gender,") == ("age", "gender")


def test_properties_alpha_drag_is_one_step(qtbot: Any, state: EditorState, engine: FakeEngine) -> None:
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    gd = _add(state, "a young face")
    state.set_current_layer(gd)
    count = state.undo_stack.count()
    assert panel.alpha is not None
    _drag(panel.alpha.slider, [0, -20, -40])
    assert _doc(state).layers.get(gd).alpha == -2.0
    assert state.undo_stack.count() == count + 1
    assert [r["preview"] for r in engine.renders][-4:] == [True, True, True, False]


def test_document_info_shows_models_and_mismatches(qtbot: Any, state: EditorState) -> None:
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    lines = dict((label, text) for label, text, _ in panel.info_lines())
    assert "generator" in lines["Models"] and lines["Engine"].startswith("fake")
    mismatch = [text for label, text, warn in panel.info_lines() if label == "Model mismatch"]
    assert mismatch and warn_lines(panel)
    state.set_document(Document(np.zeros(LATENT_SHAPE, np.float32), synthetic=True, seed=7))
    labels = [label for label, _, _ in panel.info_lines()]
    assert "Synthetic" in labels and "Model mismatch" not in labels
    assert any("seed 7" in text for _, text, _ in panel.info_lines())


def warn_lines(panel: PropertiesPanel) -> list[str]:
    return [text for _, text, warn in panel.info_lines() if warn]


def test_closed_panels_stop_listening_to_the_document(qtbot: Any, state: EditorState,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    layer_id = _add(state, "a face with grey hair")
    panels = [LayersPanel(state), PropertiesPanel(state), TimelinePanel(state)]
    for panel in panels:
        panel.deleteLater()
    qtbot.wait(20)
    state.push(actions.set_alpha(_doc(state), layer_id, 5.0))
    state.push(actions.set_keyframe(_doc(state), layer_id, 1.0, 2.0))
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    listeners = [getattr(cb, "__self__", None) for cb in _doc(state).events.modified.callbacks]
    assert not any(owner is panel for owner in listeners for panel in panels)


# -- the real engine on synthetic models ------------------------------------------------------


@pytest.fixture(scope="module")
def real_engine() -> Iterator[Any]:
    """The render engine on a tiny synthetic generator and CLIP, built in memory, with a
    random unit fs3 in place of the hours-long precompute."""
    engine_module = pytest.importorskip("styleclip_desktop.render.engine")
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.clip import ClipModel, build_clip, tiny_clip_state_dict
    from styleclip_desktop.render.pipeline import ModelSet
    from styleclip_desktop.weights.synthetic import tiny_generator

    G = tiny_generator(32, seed=0)
    fs3 = np.random.default_rng(0).normal(size=(len(gd.conv_channel_index(G)), 512)).astype(np.float32)
    models = ModelSet(G=G, clip=ClipModel(build_clip(tiny_clip_state_dict(0)), "synthetic-clip"),
                      fs3=fs3 / np.linalg.norm(fs3, axis=1, keepdims=True),
                      stats=gd.compute_style_stats(G, samples=500), synthetic=True)
    engine = engine_module.Engine(models, "cpu", "torch")  # torch: no ONNX export in tests
    yield engine
    engine.shutdown()


def _real_state(engine: Any) -> EditorState:
    state = new_state()
    G = engine.models.G
    state.set_document(Document(np.asarray(G.w_avg, np.float32)[None].repeat(G.num_ws, 0), synthetic=True))
    state.set_engine(engine)
    return state


def test_drag_changes_the_canvas_with_the_real_engine(qtbot: Any, real_engine: Any) -> None:
    state = _real_state(real_engine)
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    images: list[tuple[np.ndarray, bool]] = []
    state.render_ready.connect(lambda image, preview: images.append((np.asarray(image), preview)))
    layer_id = _add(state, "a face with grey hair", alpha=0.0, beta=0.01)
    row = panel.rows[layer_id]
    # the channel count comes from the engine's own direction
    qtbot.waitUntil(lambda: row.channels.text().endswith("channels changed"), timeout=20000)
    assert int(row.channels.text().split()[0]) > 0
    panel.link.request_render(preview=False)
    qtbot.waitUntil(lambda: any(not p for _, p in images), timeout=20000)
    before = [img for img, p in images if not p][-1]
    images.clear()
    _drag(row.alpha.slider, [100, 200])  # alpha 5, then 10
    qtbot.waitUntil(lambda: any(not p for _, p in images), timeout=20000)
    after = [img for img, p in images if not p][-1]
    assert after.shape == before.shape and np.abs(after.astype(int) - before.astype(int)).max() > 0
    state.undo_stack.undo()
    assert _doc(state).layers.get(layer_id).alpha == 0.0


def test_beta_too_high_with_the_real_engine(qtbot: Any, real_engine: Any) -> None:
    state = _real_state(real_engine)
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a face with grey hair", beta=0.99)
    row = panel.rows[layer_id]
    qtbot.waitUntil(lambda: not row.hint.isHidden(), timeout=20000)
    assert "β" in row.hint.text()


def test_scrubbing_hits_the_precomputed_frames_with_the_real_engine(qtbot: Any, real_engine: Any) -> None:
    state = _real_state(real_engine)
    layer_id = _add(state, "a face with grey hair", alpha=6.0, beta=0.01)
    doc = _doc(state)
    state.push(actions.set_duration(doc, 3.5))
    state.push(actions.set_fps(doc, 2.0))  # 7 frames over 3.5 s
    state.push(actions.morph(doc))
    panel = TimelinePanel(state)
    qtbot.addWidget(panel)
    job = panel.precompute()
    assert job is not None
    qtbot.waitUntil(job.future.done, timeout=20000)
    shown: list[tuple[np.ndarray, bool]] = []
    state.render_ready.connect(lambda image, preview: shown.append((np.asarray(image), preview)))
    panel.scrub_to(3)
    # cached: shown at once (no event loop turn) at full resolution, no job in flight
    assert shown and shown[-1][1] is False and shown[-1][0].shape == (32, 32, 3)
    assert panel.pump.inflight is None
    assert doc.frame_alphas(3)[layer_id] == pytest.approx(3.0)


def test_optimization_layer_runs_on_the_real_engine(qtbot: Any, real_engine: Any) -> None:
    state = _real_state(real_engine)
    panel = LayersPanel(state)
    qtbot.addWidget(panel)
    command = actions.add_layer(_doc(state), OptimizationParams("a face with a beard", steps=4), alpha=1.0)
    state.push(command)
    layer_id = command.layer.id
    frames: list[np.ndarray] = []
    panel.runner.frame.connect(lambda _id, image: frames.append(np.asarray(image)))
    assert panel.runner.start(layer_id)
    qtbot.waitUntil(lambda: not panel.runner.running(layer_id), timeout=30000)
    params = _doc(state).layers.get(layer_id).params
    assert isinstance(params, OptimizationParams) and params.delta is not None
    assert params.delta.shape == _doc(state).latent.shape  # the best latent found (a random CLIP may keep the start)
    assert frames and frames[-1].shape == (32, 32, 3)
    state.undo_stack.undo()  # the result is one undoable step
    assert _doc(state).layers.get(layer_id).params.delta is None  # type: ignore[attr-defined]


def test_properties_show_the_leak_meter_after_exact_renders(qtbot: Any, real_engine: Any) -> None:
    from styleclip_desktop.render.leak_meter import measure

    state = _real_state(real_engine)
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    layer_id = _add(state, "a face with grey hair", alpha=3.0, beta=0.01)
    state.set_current_layer(layer_id)
    assert panel.leak is not None
    qtbot.waitUntil(lambda: panel.leak.report is not None, timeout=30000)  # type: ignore[union-attr]
    want = measure(real_engine, _doc(state), layer_id)
    got = panel.leak.report  # type: ignore[union-attr]
    assert got is not None and got.attributes == pytest.approx(want.attributes, abs=1e-6)
    bars = panel.leak.bars  # type: ignore[union-attr]
    assert set(bars) == {"→ a face with grey hair", *want.attributes}
    assert bars["age"].format() == f"{want.attributes['age']:+.3f}"
    assert "identity" in panel.leak.status.text().lower()  # type: ignore[union-attr]
    # A preview (a drag) never starts a measurement; the next exact render does.
    panel.leak.report = None  # type: ignore[union-attr]
    state.render_ready.emit(np.zeros((8, 8, 3), np.uint8), True)
    qtbot.wait(300)
    assert panel.leak.report is None  # type: ignore[union-attr]
    state.render_ready.emit(np.zeros((8, 8, 3), np.uint8), False)
    qtbot.waitUntil(lambda: panel.leak.report is not None, timeout=30000)  # type: ignore[union-attr]


def test_optimization_layers_keep_attributes_from_properties(qtbot: Any, state: EditorState) -> None:
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    state.push(actions.add_layer(_doc(state), OptimizationParams("a face with a beard"), alpha=1.0))
    layer_id = _doc(state).layers[0].id
    state.set_current_layer(layer_id)
    assert {"keep", "lambda_keep"} <= set(panel.fields)
    panel.fields["keep"].setText("age, glasses")  # type: ignore[attr-defined]
    panel.fields["keep"].editingFinished.emit()  # type: ignore[attr-defined]
    panel.fields["lambda_keep"].setValue(0.5)  # type: ignore[attr-defined]
    p = _doc(state).layers.get(layer_id).params
    assert isinstance(p, OptimizationParams) and (p.keep, p.lambda_keep) == (("age", "glasses"), 0.5)
    state.undo_stack.undo()
    state.undo_stack.undo()
    assert _doc(state).layers.get(layer_id).params == OptimizationParams("a face with a beard")
