"""The timeline panel through pytest-qt, offscreen: keyframes by mouse and menu, morph,
scrubbing renders with per-frame alphas, and playback driven by a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication

from styleclip_desktop.document import EASE_IN_OUT, HOLD, Document, GlobalDirectionParams, Keyframe, actions
from styleclip_desktop.render.worker import Priority, Worker
from styleclip_desktop.ui.panels import TimelinePanel
from styleclip_desktop.ui.panels.frames import cache_frames
from styleclip_desktop.ui.panels.playback import advance
from styleclip_desktop.ui.panels.timeline_view import RULER_H, TRACK_H
from styleclip_desktop.ui.state import EditorState


class FakeEngine:
    def __init__(self) -> None:
        self.worker = Worker("fake-timeline-engine")
        self.renders: list[dict[str, Any]] = []
        self.precomputes: list[list[dict[str, float]]] = []
        self.gate: threading.Event | None = None

    def submit_render(self, doc: Document, alphas: dict[str, float] | None = None, *, preview: bool = False,
                      paste_back: bool = False, key: str = "preview") -> Any:
        self.renders.append({"alphas": alphas, "preview": preview, "key": key})
        gate = self.gate

        def work(_ctx: Any) -> np.ndarray:
            if gate is not None:
                gate.wait(5)
            return np.zeros((8, 8, 3), np.uint8)

        return self.worker.submit(work, key=key)

    def precompute(self, doc: Document, alphas_list: list[dict[str, float]], paste_back: bool = False) -> Any:
        self.precomputes.append(alphas_list)
        return self.worker.submit(lambda _ctx: None, Priority.PRECOMPUTE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


_states: list[EditorState] = []


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    e = FakeEngine()
    yield e
    if e.gate is not None:
        e.gate.set()
    e.worker.shutdown()


@pytest.fixture
def state(qapp: QApplication, engine: FakeEngine) -> Iterator[EditorState]:
    s = EditorState()
    doc = Document(np.zeros((8, 512), np.float32))
    s.set_document(doc)
    for target, alpha in (("a face with grey hair", 3.0), ("a smiling face", 2.0)):
        s.push(actions.add_layer(doc, GlobalDirectionParams(target), alpha=alpha))
    s.push(actions.set_duration(doc, 1.0))
    s.push(actions.set_fps(doc, 11.0))  # 11 frames, 0.1 s apart
    s.set_engine(engine)
    _states.append(s)
    yield s
    s.undo_stack.blockSignals(True)  # it announces its own destruction; nobody listens by then


@pytest.fixture
def panel(qtbot: Any, state: EditorState) -> TimelinePanel:
    p = TimelinePanel(state)
    qtbot.addWidget(p)
    p.resize(700, 240)
    p.show()
    qtbot.waitExposed(p)
    return p


def _doc(state: EditorState) -> Document:
    assert state.document is not None
    return state.document


def _track_y(panel: TimelinePanel, layer_id: str) -> int:
    return int(panel.view.track_rect(layer_id).center().y())


def _x(panel: TimelinePanel, t: float) -> int:
    return round(panel.view.x_of(t))


# -- keyframes ---------------------------------------------------------------------------------


def test_add_move_delete_keyframe_with_the_mouse(qtbot: Any, panel: TimelinePanel, state: EditorState) -> None:
    doc = _doc(state)
    top = doc.layers[1].id  # the top track is the top of the stack
    assert panel.view.track_at(RULER_H + TRACK_H // 2) == top
    y = _track_y(panel, top)
    qtbot.mouseDClick(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 0.31), y))
    assert doc.timeline.keyframes(top) == (Keyframe(0.3, 2.0),)  # snapped to a frame, at the static alpha
    assert panel.selected == (top, 0.3)
    steps = state.undo_stack.count()
    qtbot.mousePress(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 0.3), y))
    for t in (0.4, 0.5, 0.6):
        qtbot.mouseMove(panel.view, pos=QPoint(_x(panel, t), y))
    qtbot.mouseRelease(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 0.6), y))
    assert doc.timeline.keyframes(top) == (Keyframe(0.6, 2.0),)
    assert state.undo_stack.count() == steps + 1  # the whole drag is one undo step
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_Delete)
    assert doc.timeline.keyframes(top) == ()
    state.undo_stack.undo()
    state.undo_stack.undo()
    assert doc.timeline.keyframes(top) == (Keyframe(0.3, 2.0),)


def test_move_refuses_to_land_on_another_keyframe(panel: TimelinePanel, state: EditorState) -> None:
    doc = _doc(state)
    layer = doc.layers[0].id
    panel.add_keyframe(layer, 0.0)
    panel.add_keyframe(layer, 0.5)
    assert not panel.move_keyframe(layer, 0.0, 0.5)
    assert panel.move_keyframe(layer, 0.0, 0.2)
    assert [k.t for k in doc.timeline.keyframes(layer)] == [0.2, 0.5]


def test_easing_from_the_context_menu_and_the_key_controls(panel: TimelinePanel, state: EditorState) -> None:
    doc = _doc(state)
    layer = doc.layers[0].id
    panel.add_keyframe(layer, 0.0)
    panel.add_keyframe(layer, 1.0)
    menu = panel.view.context_menu(QPointF(panel.view.x_of(0.0), _track_y(panel, layer)))
    assert menu is not None
    labels = [a.text() for a in menu.actions() if a.text()]
    assert labels[:3] == ["Linear", "Ease in-out", "Hold"] and "Delete keyframe" in labels
    next(a for a in menu.actions() if a.text() == "Hold").trigger()
    assert doc.timeline.keyframes(layer)[0].easing == HOLD
    assert doc.alpha_at(layer, 0.5) == 3.0  # hold keeps the first value
    panel.key_easing.setCurrentIndex(panel.key_easing.findData(EASE_IN_OUT))
    panel.key_easing.activated.emit(panel.key_easing.currentIndex())
    assert doc.timeline.keyframes(layer)[0].easing == EASE_IN_OUT
    panel.key_alpha.setValue(-1.0)
    assert doc.timeline.keyframes(layer)[0] == Keyframe(0.0, -1.0, EASE_IN_OUT)
    next(a for a in menu.actions() if a.text() == "Delete keyframe").trigger()
    assert [k.t for k in doc.timeline.keyframes(layer)] == [1.0]
    empty = panel.view.context_menu(QPointF(panel.view.x_of(0.5), _track_y(panel, layer)))
    assert empty is not None
    next(a for a in empty.actions() if a.text() == "Add keyframe here").trigger()
    assert [k.t for k in doc.timeline.keyframes(layer)] == [0.5, 1.0]


def test_locked_layers_refuse_keyframes(panel: TimelinePanel, state: EditorState) -> None:
    doc = _doc(state)
    layer = doc.layers[0].id
    state.push(actions.set_locked(doc, layer, True))
    errors: list[str] = []
    state.error.connect(errors.append)
    steps = state.undo_stack.count()
    panel.add_keyframe(layer, 0.5)
    assert doc.timeline.keyframes(layer) == () and errors and state.undo_stack.count() == steps


def test_morph_builds_zero_to_alpha_tracks(panel: TimelinePanel, state: EditorState, engine: FakeEngine) -> None:
    doc = _doc(state)
    state.push(actions.add_layer(doc, GlobalDirectionParams("a robot"), alpha=-4.0, visible=False))
    panel.morph_button.click()
    grey, smile, robot = doc.layers
    assert doc.timeline.keyframes(grey.id) == (Keyframe(0.0, 0.0), Keyframe(1.0, 3.0))
    assert doc.timeline.keyframes(smile.id) == (Keyframe(0.0, 0.0), Keyframe(1.0, 2.0))
    assert doc.timeline.keyframes(robot.id) == ()  # hidden layers are left alone
    assert engine.precomputes  # the sweep is precomputed for scrubbing
    state.undo_stack.undo()
    assert doc.timeline.tracks == {}


# -- scrubbing and frames ------------------------------------------------------------------------


def test_scrubbing_renders_per_frame_alphas(qtbot: Any, panel: TimelinePanel, state: EditorState,
                                            engine: FakeEngine) -> None:
    doc = _doc(state)
    state.push(actions.morph(doc))
    y = RULER_H // 2
    qtbot.mousePress(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 0.2), y))
    assert panel.frame == 2
    assert engine.precomputes and len(engine.precomputes[-1]) == doc.timeline.frame_count
    assert engine.precomputes[-1][5] == doc.frame_alphas(5)
    qtbot.waitUntil(lambda: panel.pump.inflight is None, timeout=3000)
    qtbot.mouseMove(panel.view, pos=QPoint(_x(panel, 0.7), y))
    qtbot.waitUntil(lambda: panel.pump.inflight is None, timeout=3000)
    qtbot.mouseRelease(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 0.7), y))
    qtbot.waitUntil(lambda: panel.pump.inflight is None and not engine.renders[-1]["preview"], timeout=3000)
    seen = [(r["alphas"], r["preview"]) for r in engine.renders]
    assert (doc.frame_alphas(2), True) in seen
    assert (doc.frame_alphas(7), True) in seen
    assert seen[-1] == (doc.frame_alphas(7), False)  # let go: one full render of that frame
    grey = doc.layers[0].id
    assert doc.frame_alphas(7)[grey] == pytest.approx(0.7 * 3.0)
    assert panel.frame_label.text().startswith("frame 7 / 10")


def test_cache_frames_skip_identical_frames(state: EditorState) -> None:
    doc = _doc(state)
    assert cache_frames(doc) == [0]  # nothing animates: one picture serves every frame
    state.push(actions.set_keyframe(doc, doc.layers[0].id, 0.5, 1.0))
    state.push(actions.set_keyframe(doc, doc.layers[0].id, 0.7, 2.0))
    assert cache_frames(doc) == [0, 6, 7]  # before the first key and after the last, alphas hold
    state.push(actions.set_duration(doc, 60.0))
    frames = cache_frames(doc)
    assert len(frames) <= 122 and 0 in frames


def test_slow_renders_drop_frames_instead_of_queueing(qtbot: Any, panel: TimelinePanel, state: EditorState,
                                                      engine: FakeEngine) -> None:
    state.push(actions.morph(_doc(state)))
    engine.gate = threading.Event()
    for frame in range(1, 8):
        panel.scrub_to(frame)
    assert len(engine.renders) == 1  # one in flight; the rest wait as "latest wanted"
    engine.gate.set()
    qtbot.waitUntil(lambda: panel.pump.inflight is None and len(engine.renders) == 2, timeout=3000)
    assert engine.renders[-1]["alphas"] == _doc(state).frame_alphas(7)


# -- playback ------------------------------------------------------------------------------------


def test_play_pause_and_play_once(qtbot: Any, panel: TimelinePanel, state: EditorState,
                                  engine: FakeEngine) -> None:
    clock = FakeClock()
    panel.clock = clock
    panel.play_button.click()
    assert panel.playing() and panel.play_button.isChecked()
    clock.now += 0.1
    panel.tick()
    assert panel.frame == 1
    clock.now += 0.35  # a slow tick: frames are skipped, not queued
    panel.tick()
    assert panel.frame == 4
    panel.tick()  # no time passed: nothing moves
    assert panel.frame == 4
    panel.toggle_play()
    assert not panel.playing()
    qtbot.waitUntil(lambda: not engine.renders[-1]["preview"], timeout=3000)  # paused: full render
    clock.now += 1.0
    panel.tick()
    assert panel.frame == 4
    panel.play()
    clock.now += 2.0
    panel.tick()
    assert panel.frame == 10 and not panel.playing()  # played once to the end, then stopped
    panel.play()  # from the end, play starts over
    assert panel.frame == 0


def test_loop_and_ping_pong(panel: TimelinePanel, state: EditorState) -> None:
    clock = FakeClock()
    panel.clock = clock
    panel.loop.setChecked(True)
    panel.play()
    clock.now += 13 / 11  # 13 frames through an 11-frame loop
    panel.tick()
    assert panel.frame == 2 and panel.playing()
    panel.pause()
    panel.ping_pong.setChecked(True)
    panel.scrub_to(8)
    panel.play()
    frames = []
    for _ in range(6):
        clock.now += 0.1
        panel.tick()
        frames.append(panel.frame)
    assert frames == [9, 10, 9, 8, 7, 6]
    panel.pause()
    panel.loop.setChecked(False)
    panel.scrub_to(9)
    panel.direction = 1
    panel.play()
    clock.now += 5.0
    panel.tick()
    assert panel.frame == 0 and not panel.playing()  # ping-pong once: there and back, then stop


def test_space_toggles_play_when_focused(qtbot: Any, panel: TimelinePanel) -> None:
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel, timeout=2000)
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_Space)
    assert panel.playing()
    qtbot.keyClick(panel.view, Qt.Key.Key_Space)
    assert not panel.playing()


def test_duration_and_fps_controls(panel: TimelinePanel, state: EditorState) -> None:
    doc = _doc(state)
    panel.duration.setValue(2.5)
    panel.fps.setValue(24.0)
    assert (doc.timeline.duration, doc.timeline.fps) == (2.5, 24.0)
    state.undo_stack.undo()
    assert doc.timeline.fps == 11.0 and panel.fps.value() == 11.0


def test_frames_follow_fps_times_seconds_and_match_export(qtbot: Any, panel: TimelinePanel, state: EditorState,
                                                          engine: FakeEngine) -> None:
    from styleclip_desktop.export.animation import plan_frames

    doc = _doc(state)
    panel.fps.setValue(12.0)  # 1 s at 12 fps: 12 frames, not 13
    state.push(actions.morph(doc))
    assert doc.timeline.frame_count == 12
    panel.show_frame(0, preview=True)
    assert panel.frame_label.text().startswith("frame 0 / 11")
    panel.precompute()
    assert len(engine.precomputes[-1]) == 12  # the morph makes every frame different
    # The playhead's frames are the ones an export renders, alphas and all.
    plan = plan_frames(doc)
    assert plan.count == 12 and [plan.alphas(i) for i in range(12)] == [doc.frame_alphas(i) for i in range(12)]
    end = {layer.id: layer.alpha for layer in doc.layers}
    assert doc.frame_alphas(11) == end and doc.frame_alphas(0) == dict.fromkeys(end, 0.0)
    y = RULER_H // 2
    qtbot.mousePress(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 1.0), y))
    qtbot.mouseRelease(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(_x(panel, 1.0), y))
    assert panel.frame == 11
    qtbot.waitUntil(lambda: panel.pump.inflight is None and not engine.renders[-1]["preview"], timeout=3000)
    assert engine.renders[-1]["alphas"] == end  # the far right of the ruler is the full edit
    clock = FakeClock()
    panel.clock = clock
    panel.play()
    assert panel.frame == 0
    clock.now += 11 / 12
    panel.tick()
    assert panel.frame == 11 and not panel.playing()  # one play is 12 frames shown 1/12 s each
    panel.fps.setValue(1.0)  # 1 s at 1 fps: a single frame, which shows the end
    assert doc.timeline.frame_count == 1 and doc.frame_alphas(0) == end
    panel.play()
    clock.now += 5.0
    panel.tick()
    assert panel.frame == 0 and not panel.playing()


def test_advance_arithmetic() -> None:
    assert advance(3, 1, 2, 5, loop=False, ping_pong=False).frame == 4
    assert advance(3, 1, 2, 5, loop=False, ping_pong=False).stopped
    assert advance(3, 1, 3, 5, loop=True, ping_pong=False).frame == 1
    step = advance(3, 1, 2, 5, loop=True, ping_pong=True)
    assert (step.frame, step.direction) == (3, -1)
    step = advance(1, -1, 1, 5, loop=True, ping_pong=True)
    assert (step.frame, step.direction) == (0, 1)
    assert advance(1, -1, 1, 5, loop=False, ping_pong=True).stopped
    assert advance(2, 1, 0, 5, loop=False, ping_pong=False) == advance(2, 1, 0, 5, loop=True, ping_pong=True)


def test_cached_frames_are_shown_without_the_worker(qtbot: Any, panel: TimelinePanel, state: EditorState,
                                                   engine: FakeEngine) -> None:
    doc = _doc(state)
    state.push(actions.morph(doc))
    cached = [doc.frame_alphas(4)]
    engine.is_cached = lambda d, alphas, preview=False: dict(alphas) in cached  # type: ignore[attr-defined]
    engine.render = lambda d, alphas, preview=False, paste_back=False: np.ones((8, 8, 3), np.uint8)  # type: ignore[attr-defined]
    shown: list[bool] = []
    state.render_ready.connect(lambda image, preview: shown.append(preview))
    panel.scrub_to(4)
    assert shown == [False] and engine.renders == []
    panel.scrub_to(5)  # not cached: a preview through the worker
    assert engine.renders[-1]["alphas"] == doc.frame_alphas(5) and engine.renders[-1]["preview"]
