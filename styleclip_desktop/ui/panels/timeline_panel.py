"""The animation timeline: alpha keyframes per layer, a playhead, play/loop/ping-pong.

Frames shown here are rendered with the per-frame alphas of the document
(`doc.frame_alphas`), so what plays is what export writes. The playhead lives in the
editor state (`EditorState.playhead`): every other render the editor makes shows the same
frame, so the canvas always shows the document at the playhead. Only one frame render is in
flight at a time and the newest wanted frame wins: when rendering is slower than the
frame rate, frames are dropped instead of piling up behind each other. Before scrubbing
or playing, the frames are precomputed at low priority so that scrubbing mostly hits
the engine's frame cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import EASINGS, Document, actions
from styleclip_desktop.ui.panels.editing import keyframe_at, move_keyframe, refused_by_lock
from styleclip_desktop.ui.panels.engine_link import EngineLink
from styleclip_desktop.ui.panels.frames import FramePump
from styleclip_desktop.ui.panels.playback import advance, frames_due
from styleclip_desktop.ui.panels.timeline_view import EASING_LABELS, TrackView
from styleclip_desktop.ui.panels.widgets import DocumentFollower
from styleclip_desktop.ui.state import EditorState


class TimelinePanel(DocumentFollower, QWidget):
    frame_changed = Signal(int)

    def __init__(self, state: EditorState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.link = EngineLink.of(state)
        self.setWindowTitle("Timeline")
        self._doc: Document | None = None
        self.direction = 1
        self.clock: Callable[[], float] = time.monotonic
        self._t0 = 0.0
        self._advanced = 0
        self.pump = FramePump(self.link)

        self.play_button = QToolButton()
        self.play_button.setCheckable(True)
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play / pause (Space)")
        self.loop = QCheckBox("Loop")
        self.ping_pong = QCheckBox("Ping-pong")
        self.ping_pong.setToolTip("Play forwards, then backwards")
        self.frame_label = QLabel()
        self.duration = QDoubleSpinBox()
        self.duration.setRange(0.1, 3600.0)
        self.duration.setDecimals(2)
        self.duration.setSingleStep(0.5)
        self.duration.setSuffix(" s")
        self.duration.setKeyboardTracking(False)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1.0, 240.0)
        self.fps.setDecimals(2)
        self.fps.setSuffix(" fps")
        self.fps.setKeyboardTracking(False)
        self.morph_button = QPushButton("Morph")
        self.morph_button.setToolTip("Every visible layer sweeps from 0 to its strength over the animation")
        self.key_button = QPushButton("Key")
        self.key_button.setToolTip("Add a keyframe for the current layer at the playhead")
        self.key_alpha = QDoubleSpinBox()
        self.key_alpha.setRange(-100.0, 100.0)
        self.key_alpha.setDecimals(2)
        self.key_alpha.setKeyboardTracking(False)
        self.key_alpha.setToolTip("Alpha of the selected keyframe")
        self.key_easing = QComboBox()
        for easing in EASINGS:
            self.key_easing.addItem(EASING_LABELS.get(easing, easing), easing)
        self.key_easing.setToolTip("How the selected keyframe travels to the next one")

        bar = QHBoxLayout()
        left: list[QWidget] = [self.play_button, self.loop, self.ping_pong, self.frame_label]
        right: list[QWidget] = [self.key_button, QLabel("key α"), self.key_alpha, self.key_easing,
                                self.morph_button, self.duration, self.fps]
        for w in left:
            bar.addWidget(w)
        bar.addStretch(1)
        for w in right:
            bar.addWidget(w)
        self.view = TrackView()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(scroll, 1)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.tick)
        space = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        space.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        space.activated.connect(self.toggle_play)

        self.play_button.toggled.connect(lambda on: self.play() if on else self.pause())
        self.loop.toggled.connect(lambda _on: self._restart_clock())
        self.ping_pong.toggled.connect(lambda _on: self._restart_clock())
        self.duration.valueChanged.connect(self._on_duration)
        self.fps.valueChanged.connect(self._on_fps)
        self.morph_button.clicked.connect(self.morph)
        self.key_button.clicked.connect(self.key_at_playhead)
        self.key_alpha.valueChanged.connect(self._on_key_alpha)
        self.key_easing.activated.connect(self._on_key_easing)
        v = self.view
        v.scrub_started.connect(self.precompute)
        v.scrubbed.connect(lambda f: self.scrub_to(f, preview=True))
        v.scrub_finished.connect(lambda: self.scrub_to(self.frame, preview=False))
        v.layer_clicked.connect(self.state.set_current_layer)
        v.selection_changed.connect(self._show_selection)
        v.add_requested.connect(self.add_keyframe)
        v.move_requested.connect(self.move_keyframe)
        v.drag_finished.connect(lambda: self.show_frame(self.frame, preview=False))
        v.delete_requested.connect(self.delete_keyframe)
        v.easing_requested.connect(self.set_easing)
        state.document_replaced.connect(self._bind)
        state.current_layer_changed.connect(self._on_current_layer)
        state.playhead_changed.connect(self._on_playhead)
        self._bind(state.document)

    @property
    def frame(self) -> int:
        """The playhead: the editor state's, shared with every render the editor makes."""
        return self.state.playhead_frame

    @frame.setter
    def frame(self, frame: int) -> None:
        self.state.set_playhead(frame)

    # -- document ----------------------------------------------------------------------

    def _bind(self, doc: Document | None) -> None:
        self.pause(render=False)
        self.view.doc = self.pump.doc = doc
        self.frame, self.direction = 0, 1
        self.view.selected = None
        self.follow(doc)

    def _on_playhead(self, frame: int) -> None:
        self.view.frame = frame
        self.view.update()
        self._update_label()
        self.frame_changed.emit(frame)

    def _on_current_layer(self, layer_id: str) -> None:
        self.view.current_layer = layer_id
        self.view.update()

    @property
    def selected(self) -> tuple[str, float] | None:
        return self.view.selected

    def sync(self) -> None:
        doc = self._doc
        for w in (self.play_button, self.morph_button, self.key_button, self.duration, self.fps):
            w.setEnabled(doc is not None)
        if doc is not None:
            tl = doc.timeline
            self.frame = min(self.frame, tl.frame_count - 1)
            for spin, value in ((self.duration, tl.duration), (self.fps, tl.fps)):
                spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(False)
            if self.timer.isActive():
                self.timer.setInterval(max(1, round(1000 / tl.fps)))
        self.view.current_layer = self.state.current_layer_id
        self.view.frame = self.frame
        self.view.refresh()
        self._show_selection()
        self._update_label()

    def _update_label(self) -> None:
        doc = self._doc
        if doc is None:
            self.frame_label.setText("")
            return
        tl = doc.timeline
        self.frame_label.setText(f"frame {self.frame} / {tl.frame_count - 1} · {tl.frame_time(self.frame):.2f} s")

    def _show_selection(self) -> None:
        key = keyframe_at(self.state, *self.selected) if self.selected is not None else None
        for w in (self.key_alpha, self.key_easing):
            w.setEnabled(key is not None)
            w.blockSignals(True)
        if key is not None:
            self.key_alpha.setValue(key.alpha)
            self.key_easing.setCurrentIndex(max(0, self.key_easing.findData(key.easing)))
        for w in (self.key_alpha, self.key_easing):
            w.blockSignals(False)

    # -- keyframe edits ----------------------------------------------------------------

    def add_keyframe(self, layer_id: str, t: float) -> None:
        doc = self._doc
        if doc is None or keyframe_at(self.state, layer_id, t) is not None:
            return
        if refused_by_lock(self.state, layer_id, "animated"):
            return
        self.state.push(actions.set_keyframe(doc, layer_id, t, doc.alpha_at(layer_id, t)))
        if keyframe_at(self.state, layer_id, t) is not None:
            self.view.selected = (layer_id, t)
        self.sync()
        self.show_frame(self.frame, preview=False)

    def key_at_playhead(self) -> None:
        doc, layer_id = self._doc, self.state.current_layer_id
        if doc is not None and layer_id in doc.layers:
            self.add_keyframe(layer_id, doc.timeline.frame_time(self.frame))

    def move_keyframe(self, layer_id: str, old_t: float, new_t: float, merge_key: object = None) -> bool:
        moved = move_keyframe(self.state, layer_id, old_t, new_t, merge_key)
        if moved:
            if self.view.selected == (layer_id, old_t):
                self.view.selected = (layer_id, new_t)
            self.show_frame(self.frame, preview=True)
        return moved

    def delete_keyframe(self, layer_id: str, t: float) -> None:
        doc = self._doc
        if doc is None or keyframe_at(self.state, layer_id, t) is None:
            return
        if not refused_by_lock(self.state, layer_id, "animated"):
            self.state.push(actions.remove_keyframe(doc, layer_id, t))
            self.show_frame(self.frame, preview=False)

    def set_easing(self, layer_id: str, t: float, easing: str) -> None:
        doc, key = self._doc, keyframe_at(self.state, layer_id, t)
        if doc is None or key is None or key.easing == easing:
            return
        if not refused_by_lock(self.state, layer_id, "animated"):
            self.state.push(actions.set_keyframe(doc, layer_id, t, key.alpha, easing))
            self.show_frame(self.frame, preview=False)

    def _on_key_alpha(self, alpha: float) -> None:
        doc = self._doc
        key = keyframe_at(self.state, *self.selected) if self.selected is not None else None
        if doc is None or key is None or self.selected is None or key.alpha == alpha:
            return
        if not refused_by_lock(self.state, self.selected[0], "animated"):
            self.state.push(actions.set_keyframe(doc, self.selected[0], key.t, float(alpha), key.easing))
            self.show_frame(self.frame, preview=False)

    def _on_key_easing(self, index: int) -> None:
        if self.selected is not None:
            self.set_easing(*self.selected, self.key_easing.itemData(index))

    def morph(self) -> None:
        doc = self._doc
        if doc is None:
            return
        if not doc.morph_tracks():
            self.state.error.emit("Morph animates the visible, unlocked layers; there are none.")
            return
        if doc is not None:
            self.state.push(actions.morph(doc))
            self.precompute()
            self.show_frame(self.frame, preview=False)

    def _on_duration(self, seconds: float) -> None:
        if self._doc is not None:
            self.state.push(actions.set_duration(self._doc, float(seconds)))

    def _on_fps(self, fps: float) -> None:
        if self._doc is not None:
            self.state.push(actions.set_fps(self._doc, float(fps)))
            self._restart_clock()

    # -- frames ------------------------------------------------------------------------

    def precompute(self) -> Any:
        return self.pump.precompute()

    def scrub_to(self, frame: int, preview: bool = True) -> None:
        """Move the playhead by hand: playback stops, the frame is shown."""
        if self.timer.isActive():
            self.pause(render=False)
        self.show_frame(frame, preview)

    def show_frame(self, frame: int, preview: bool) -> None:
        doc = self._doc
        if doc is None:
            return
        frame = max(0, min(frame, doc.timeline.frame_count - 1))
        self.frame = frame  # announces the move (playhead_changed, then frame_changed)
        self.view.frame = frame
        self.view.update()
        self._update_label()
        self.pump.want(frame, preview)

    # -- playback ----------------------------------------------------------------------

    def playing(self) -> bool:
        return self.timer.isActive()

    def toggle_play(self) -> None:
        if self.playing():
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        doc = self._doc
        if doc is None or self.playing():
            self._sync_button()
            return
        last = doc.timeline.frame_count - 1
        if self.frame >= last and not self.loop.isChecked() and not self.ping_pong.isChecked():
            self.frame = 0  # play again from the start, as players do
        self.precompute()
        self._restart_clock()
        self.timer.start(max(1, round(1000 / doc.timeline.fps)))
        self._sync_button()
        self.show_frame(self.frame, preview=True)

    def pause(self, render: bool = True) -> None:
        was = self.timer.isActive()
        self.timer.stop()
        self._sync_button()
        if was and render:
            self.show_frame(self.frame, preview=False)

    def _sync_button(self) -> None:
        self.play_button.blockSignals(True)
        self.play_button.setChecked(self.timer.isActive())
        self.play_button.setText("⏸" if self.timer.isActive() else "▶")
        self.play_button.blockSignals(False)

    def _restart_clock(self) -> None:
        self._t0 = self.clock()
        self._advanced = 0

    def tick(self) -> None:
        """Advance the playhead by the frames that wall-clock time says are due."""
        doc = self._doc
        if doc is None or not self.timer.isActive():
            return
        due = frames_due(self.clock() - self._t0, doc.timeline.fps)
        steps, self._advanced = due - self._advanced, max(due, self._advanced)
        if steps <= 0:
            return
        step = advance(self.frame, self.direction, steps, doc.timeline.frame_count,
                       loop=self.loop.isChecked(), ping_pong=self.ping_pong.isChecked())
        self.direction = step.direction
        self.show_frame(step.frame, preview=True)
        if step.stopped:
            self.pause()
