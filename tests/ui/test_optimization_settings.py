"""The optimization settings in the editor: CLIP input and result choices, the published
defaults shown, and an empty result reported rather than passed off as an edit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication, QComboBox, QLabel

from styleclip_desktop.document import Document, OptimizationParams, actions
from styleclip_desktop.ui.panels import PropertiesPanel
from styleclip_desktop.ui.panels.optimization_run import OptimizationRunner
from styleclip_desktop.ui.state import EditorState

LATENT_SHAPE = (8, 512)
_states: list[EditorState] = []


@pytest.fixture(autouse=True)
def _quiet_teardown(qapp: QApplication) -> Iterator[None]:
    yield
    # A state's undo stack announces its own destruction; nobody is listening by then.
    while _states:
        _states.pop().undo_stack.blockSignals(True)


def _state_with_layer() -> tuple[EditorState, str]:
    state = EditorState()
    _states.append(state)
    state.set_document(Document(np.zeros(LATENT_SHAPE, np.float32), models={"generator": "a" * 64}))
    assert state.document is not None
    command = actions.add_layer(state.document, OptimizationParams("a face with a beard"), alpha=1.0)
    state.push(command)
    state.set_current_layer(command.layer.id)
    return state, command.layer.id


def test_clip_input_and_result_are_layer_settings_with_the_defaults_shown(qtbot: Any, qapp: QApplication) -> None:
    state, layer_id = _state_with_layer()
    panel = PropertiesPanel(state)
    qtbot.addWidget(panel)
    clip_input, result = panel.fields["clip_input"], panel.fields["result"]
    assert isinstance(clip_input, QComboBox) and isinstance(result, QComboBox)
    assert (clip_input.currentText(), result.currentText()) == ("published", "last")
    texts = " ".join(w.text() for w in panel.findChildren(QLabel))
    assert "300 steps, lr 0.1, λ L2 0.008, λ ID 0" in texts and "λ ID 0.005" in texts
    clip_input.setCurrentText("exact")
    clip_input.activated.emit(clip_input.currentIndex())
    result.setCurrentText("best")
    result.activated.emit(result.currentIndex())
    assert state.document is not None
    params = state.document.layers.get(layer_id).params
    assert isinstance(params, OptimizationParams) and (params.clip_input, params.result) == ("exact", "best")
    state.undo_stack.undo()
    assert panel.fields["result"].currentText() == "last"  # type: ignore[attr-defined]
    # One gesture sets a published mode's steps and weights, as one undo step.
    assert panel.presets is not None
    panel.presets.activated.emit(2)  # "Edit, keeping identity (ArcFace)"
    params = state.document.layers.get(layer_id).params
    assert isinstance(params, OptimizationParams)
    assert (params.steps, params.lambda_l2, params.lambda_id) == (40, 0.008, 0.005)
    assert panel.fields["steps"].value() == 40  # type: ignore[attr-defined]
    state.undo_stack.undo()
    params = state.document.layers.get(layer_id).params
    assert (params.steps, params.lambda_id) == (300, 0.0)  # type: ignore[attr-defined]


def test_an_empty_result_is_reported(qtbot: Any, qapp: QApplication) -> None:
    state, layer_id = _state_with_layer()
    runner = OptimizationRunner(state)
    errors: list[str] = []
    ended: list[tuple[str, str]] = []
    state.error.connect(errors.append)
    runner.finished.connect(lambda i, m: ended.append((i, m)))

    class Result:
        cancelled = False
        delta = np.zeros(LATENT_SHAPE, np.float32)
        notice = "The optimization left the face unchanged: every step left the latent where it was."

    runner._jobs[layer_id] = object()
    runner._done(layer_id, Result())
    assert errors == [Result.notice] and ended == [(layer_id, "unchanged")]
    assert state.document is not None
    assert state.document.layers.get(layer_id).params.delta is not None  # type: ignore[attr-defined]
