"""The status bar: where the work runs (device, backend), what the models are, and the
progress of anything long, with Cancel.

Progress only appears once a task has run for a second: flashing a bar for every quick
preview would be noise.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QMainWindow, QProgressBar, QPushButton, QStatusBar

from styleclip_desktop.ui.jobs import call_in_ui
from styleclip_desktop.ui.state import EditorState

SHOW_AFTER_S = 1.0


class StatusBar(QStatusBar):
    def __init__(self, state: EditorState, window: QMainWindow | None = None) -> None:
        super().__init__(window)
        self.state = state
        self.models_label = QLabel("")
        self.models_label.setObjectName("modelsLabel")
        self.device_label = QLabel("Models: loading…")
        self.backend_label = QLabel("")
        self.zoom_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running task")
        self.cancel_button.clicked.connect(state.tasks.cancel_current)
        self.busy_text = QLabel("")
        for w in (self.busy_text, self.progress, self.cancel_button):
            self.addWidget(w)
            w.hide()
        self.addWidget(self.models_label)
        for w in (self.zoom_label, self.device_label, self.backend_label):
            self.addPermanentWidget(w)
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.refresh)
        self._loose: tuple[str, int, int, float] | None = None  # progress sent through `busy` alone
        state.tasks.changed.connect(self.refresh)
        state.busy.connect(self._on_busy)
        state.engine_changed.connect(self.set_engine)

    def set_engine(self, engine: Any) -> None:
        if engine is None:
            self.device_label.setText("Models: not loaded")
            self.backend_label.setText("")
            return
        device = getattr(engine, "device_label", "") or str(getattr(engine, "device", ""))
        self.device_label.setText(f"Device: {device}")
        self.backend_label.setText(f"Backend: {getattr(engine, 'backend_label', '?')}")
        listen = getattr(engine, "on_backend_changed", None)
        if callable(listen):
            # Called on the exporting thread when the ONNX graphs are ready.
            listen(lambda label: call_in_ui(lambda: self._backend_changed(engine, label)))

    def _backend_changed(self, engine: Any, label: str) -> None:
        if engine is self.state.engine:
            self.backend_label.setText(f"Backend: {label}")

    def set_models_text(self, text: str, warning: bool = False) -> None:
        self.models_label.setText(text)
        self.models_label.setStyleSheet("color: #e0a040; font-weight: bold;" if warning else "")

    def set_zoom(self, scale: float) -> None:
        self.zoom_label.setText(f"{scale * 100:.0f}%")

    def _on_busy(self, message: str, done: int, total: int) -> None:
        if total > 0 and done >= total:
            self._loose = None
        elif self._loose is None:
            self._loose = (message, done, total, time.monotonic())
        else:
            self._loose = (message, done, total, self._loose[3])
        self.refresh()

    def refresh(self) -> None:
        task = self.state.tasks.current()
        now = time.monotonic()
        if task is not None:
            message, done, total, started, can_cancel = (task.message, task.done, task.total, task.started,
                                                         task.cancel is not None)
        elif self._loose is not None:
            message, done, total, started = self._loose
            can_cancel = False
        else:
            self._timer.stop()
            for w in (self.busy_text, self.progress, self.cancel_button):
                w.hide()
            return
        if not self._timer.isActive():
            self._timer.start()
        if now - started < SHOW_AFTER_S:
            return
        self.busy_text.setText(message)
        self.progress.setRange(0, max(total, 0))
        if total > 0:
            self.progress.setValue(min(done, total))
        self.busy_text.show()
        self.progress.show()
        self.cancel_button.setVisible(can_cancel)

    def showing_progress(self) -> bool:
        return not self.progress.isHidden()
