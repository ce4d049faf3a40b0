"""The leak meter beside a layer: small bars for what it changes besides its target.

Measured off the UI thread at the lowest priority after each exact render (never while a
slider is dragged), for the layer shown in Properties; see `render.leak_meter`.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QFormLayout, QLabel, QProgressBar, QWidget

from styleclip_desktop.methods.leak import LeakReport
from styleclip_desktop.ui.panels.engine_link import EngineLink, is_cancellation, user_message

log = logging.getLogger(__name__)
SCALE = 1000  # bar steps per unit of the largest change shown
NEGATIVE_STYLE = "QProgressBar::chunk { background-color: #d35400; }"


class LeakBars(QWidget):
    """One bar per attribute (and the target), scaled to the largest change, signed value as text."""

    def __init__(self, link: EngineLink, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.link = link
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("Measured after the next full render.")
        self.status.setWordWrap(True)
        self.form.addRow(self.status)
        self.bars: dict[str, QProgressBar] = {}
        self.report: LeakReport | None = None

    def measure(self, doc: Any, layer_id: str, alphas: dict[str, float] | None) -> None:
        """Start a measurement (replacing a waiting one) for `layer_id` as shown."""
        from styleclip_desktop.render.leak_meter import measure

        engine = self.link.engine
        if engine is None or getattr(getattr(engine, "models", None), "clip", None) is None:
            self.status.setText("The leak meter needs CLIP.")
            return
        state = engine.snapshot(doc)  # taken here: the worker never reads a changing document
        self.link.run_in_worker(lambda: measure(engine, state, layer_id, alphas), self.show_report,
                                key="leak-meter", on_error=self._failed, background=True)

    def _failed(self, exc: BaseException) -> None:
        if is_cancellation(exc):
            return
        log.info("leak meter: %s", exc)
        self.status.setText(f"Not measured: {user_message(exc, 'the leak meter')}")

    def show_report(self, report: LeakReport) -> None:
        self.report = report
        rows: list[tuple[str, float]] = []
        if report.target is not None and report.target_change is not None:
            rows.append((f"→ {report.target}", report.target_change))
        rows += list(report.attributes.items())
        top = max((abs(v) for _, v in rows), default=0.0) or 1.0
        while self.form.rowCount() > 1:
            self.form.removeRow(1)
        self.bars = {}
        for name, value in rows:
            bar = QProgressBar()
            bar.setRange(0, SCALE)
            bar.setValue(round(SCALE * abs(value) / top))
            bar.setFormat(f"{value:+.3f}")
            bar.setMaximumHeight(14)
            bar.setToolTip(f"{name}: CLIP change {value:+.4f} along its direction")
            if value < 0:  # away from the attribute: told apart by colour as well as by sign
                bar.setStyleSheet(NEGATIVE_STYLE)
            self.bars[name] = bar
            self.form.addRow(name.replace("_", " "), bar)
        self.status.setText(f"Identity {report.identity:.3f} ({report.identity_by} cosine; 1.0 = unchanged)")
