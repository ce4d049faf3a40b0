"""Sliders never wait: adding a layer sweeps its alpha axis ahead, a drag shows a blend of
the swept neighbours at once, the exact frame replaces it, and a change mid-sweep never
lets a frame of the old document onto the canvas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from styleclip_desktop.document import Document, actions
from styleclip_desktop.ui.canvas import Canvas
from styleclip_desktop.ui.images import from_qimage
from styleclip_desktop.ui.panels.editing import add_prompt_layer
from styleclip_desktop.ui.panels.layers_panel import LayersPanel
from styleclip_desktop.ui.panels.widgets import SLIDER_STEPS_PER_UNIT, alpha_range
from styleclip_desktop.ui.state import EditorState

TIMEOUT = 60_000


@pytest.fixture
def editor(qtbot: Any, engine: Any, seed_document: Document) -> Iterator[tuple[EditorState, LayersPanel, Canvas]]:
    state = EditorState()
    state.set_document(seed_document)
    state.set_engine(engine)
    panel, canvas = LayersPanel(state), Canvas(state)
    qtbot.addWidget(panel)
    qtbot.addWidget(canvas)
    yield state, panel, canvas
    engine.sweeps.cancel()
    state.undo_stack.blockSignals(True)


def _swept(engine: Any, layer_id: str) -> bool:
    status = engine.sweeps.status()
    return bool(status and status["layer_id"] == layer_id and status["finished"]
                and status["done"] == status["planned"])


def _idle(qtbot: Any, state: EditorState) -> None:
    worker = state.engine.worker  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: worker.pending() == 0 and worker.current is None, timeout=TIMEOUT)
    qtbot.wait(20)  # results queued for the UI thread


def _numpy_blend(engine: Any, doc: Document, layer_id: str, alpha: float) -> np.ndarray:
    """The blend of the swept frames either side of `alpha`, recomputed from the frames."""
    positions = engine.sweeps.status()["positions"]
    a0, a1 = max(a for a in positions if a < alpha), min(a for a in positions if a > alpha)
    w = (alpha - a0) / (a1 - a0)
    lower = engine.render(doc, {layer_id: a0}, preview=True).astype(np.float64)
    upper = engine.render(doc, {layer_id: a1}, preview=True).astype(np.float64)
    return np.rint((1.0 - w) * lower + w * upper).astype(int)


def test_adding_a_layer_sweeps_its_alpha_axis_over_the_sliders_range(qtbot: Any, editor: Any) -> None:
    state, panel, _canvas = editor
    layer_id = add_prompt_layer(state, "a face with grey hair", beta=0.02)
    assert layer_id is not None
    qtbot.waitUntil(lambda: _swept(state.engine, layer_id), timeout=TIMEOUT)
    positions = state.engine.sweeps.status()["positions"]
    lo, hi = alpha_range(state.document.layers.get(layer_id).kind)
    assert (min(positions), max(positions)) == (lo, hi) and len(positions) == 65
    slider = panel.rows[layer_id].alpha.slider
    assert (slider.minimum(), slider.maximum()) == (lo * SLIDER_STEPS_PER_UNIT, hi * SLIDER_STEPS_PER_UNIT)
    for a in positions:
        assert state.engine.is_cached(state.document, {layer_id: a}, preview=True)


def test_a_drag_shows_a_blend_at_once_and_the_exact_frame_replaces_it(qtbot: Any, editor: Any) -> None:
    state, panel, canvas = editor
    engine = state.engine
    layer_id = add_prompt_layer(state, "a face with grey hair", beta=0.02)
    assert layer_id is not None
    qtbot.waitUntil(lambda: _swept(engine, layer_id), timeout=TIMEOUT)
    _idle(qtbot, state)
    shown: list[tuple[np.ndarray, bool]] = []
    state.render_ready.connect(lambda image, preview: shown.append((np.array(image), preview)))
    slider = panel.rows[layer_id].alpha.slider
    slider.setSliderDown(True)
    slider.setValue(61)  # alpha 3.05, between two swept positions
    # Before the event loop turns: a blend of the two neighbours is on the canvas.
    assert shown and shown[-1][1] and state.showing_stand_in
    doc = state.document
    diff = np.abs(shown[-1][0].astype(int) - _numpy_blend(engine, doc, layer_id, 3.05))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95  # ties at .5 may round either way
    assert np.array_equal(from_qimage(canvas._image), shown[-1][0])
    # The exact preview renders meanwhile and replaces the blend.
    qtbot.waitUntil(lambda: not state.showing_stand_in, timeout=TIMEOUT)
    exact = engine.render(doc, {layer_id: 3.05}, preview=True)
    assert np.array_equal(shown[-1][0], exact) and shown[-1][1]
    assert np.array_equal(from_qimage(canvas._image), exact)
    # Back at a position rendered before: the exact frame at once, nothing left to render,
    # and the preview still waiting for the worker (of the position before) never renders.
    gate = threading.Event()
    engine.worker.submit(lambda _ctx: gate.wait(20))  # the worker is busy
    try:
        slider.setValue(60)
        assert state.showing_stand_in
        waiting = state._preview_job
        slider.setValue(61)
        assert np.array_equal(shown[-1][0], exact) and not state.showing_stand_in
        assert waiting is not None and waiting.future.cancelled()
    finally:
        gate.set()
    slider.setSliderDown(False)


class _Gated:
    """A backend whose first synthesis at `res` waits for `gate` (a sweep frame in flight)."""

    def __init__(self, inner: Any, res: int) -> None:
        self.inner, self.res = inner, res
        self.label, self.kind, self.on_cuda = inner.label, inner.kind, inner.on_cuda
        self.gate, self.started = threading.Event(), threading.Event()

    def synthesize(self, s_flat: torch.Tensor, out_res: int) -> np.ndarray:
        if out_res == self.res and not self.started.is_set():
            self.started.set()
            self.gate.wait(20)
        return self.inner.synthesize(s_flat, out_res)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_change_mid_sweep_supersedes_it_and_its_frames_never_reach_the_canvas(
        qtbot: Any, editor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    state, panel, _canvas = editor
    engine = state.engine
    gated = _Gated(engine.renderer.backend, engine.preview_resolution)
    monkeypatch.setattr(engine.renderer, "backend", gated)
    try:
        # A prompt no other test sweeps: none of its frames are cached yet.
        layer_id = add_prompt_layer(state, "a face with a beard", beta=0.02)
        assert layer_id is not None
        qtbot.waitUntil(gated.started.is_set, timeout=TIMEOUT)  # the sweep's first frame is rendering
        old = panel.link.sweep_current()  # the sweep under way (nothing it depends on changed)
        assert old is not None and not old.future.done()
        state.push(actions.set_params(state.document, layer_id, beta=0.03))
        qtbot.waitUntil(old._cancel.is_set, timeout=TIMEOUT)  # superseded by the sweep for the new β
        shown: list[np.ndarray] = []
        state.render_ready.connect(lambda image, _preview: shown.append(np.array(image)))
        slider = panel.rows[layer_id].alpha.slider
        slider.setSliderDown(True)
        slider.setValue(61)
        assert not shown and not state.showing_stand_in  # nothing swept for this document yet
    finally:
        gated.gate.set()
    qtbot.waitUntil(lambda: _swept(engine, layer_id), timeout=TIMEOUT)
    assert old.future.done() and old.future.exception() is not None  # it stopped, cancelled
    _idle(qtbot, state)
    slider.setValue(81)  # alpha 4.05: now a blend of frames of the document as it is
    assert shown and state.showing_stand_in
    assert np.abs(shown[-1].astype(int) - _numpy_blend(engine, state.document, layer_id, 4.05)).max() <= 1
    slider.setSliderDown(False)
