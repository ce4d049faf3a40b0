"""Small widgets the panels share: the alpha slider, the rename-in-place label, badges."""

from __future__ import annotations

import itertools
from typing import Any

import shiboken6
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QKeyEvent, QMouseEvent, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QWidget,
)

from styleclip_desktop.document import Document, LayerParams

BADGES = {"global_direction": "GD", "mapper": "Mapper", "optimization": "Opt"}

# Slider reach per method, in alpha units. Global directions move sigma units and the
# usual GUI range is -15..25; W-space layers scale a delta where 1 is the full edit.
# A slider's alpha is a distance in W along a unit direction (W vectors are some 20 long).
ALPHA_RANGES = {"global_direction": (-15.0, 25.0), "slider": (-10.0, 10.0)}
DEFAULT_ALPHA_RANGE = (-3.0, 3.0)
ALPHA_SPIN_LIMIT = 100.0
SLIDER_STEPS_PER_UNIT = 20

_drag_ids = itertools.count(1)


def is_alive(obj: object) -> bool:
    """Whether a Qt object still exists on the C++ side (its window may have closed)."""
    return bool(shiboken6.isValid(obj))


def badge_text(params: LayerParams) -> str:
    return BADGES.get(params.kind, params.label or params.kind)


def alpha_range(kind: str) -> tuple[float, float]:
    return ALPHA_RANGES.get(kind, DEFAULT_ALPHA_RANGE)


def new_drag_key(what: str) -> tuple[str, int]:
    """A merge key for one continuous gesture: all its steps become one undo step."""
    return (what, next(_drag_ids))


def _painted(draw: str, on: bool, size: int = 16) -> QPixmap:
    # Drawn rather than taken from a font: emoji and symbol glyphs are missing on many
    # Linux desktops, and a toggle whose state cannot be seen is worse than none.
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = QColor("#333333") if on else QColor("#9a9a9a")
    p.setPen(QPen(color, 1.5))
    if draw == "eye":
        p.drawEllipse(QRectF(1.5, 4.5, size - 3, size - 9))
        if on:
            p.setBrush(color)
            p.drawEllipse(QPointF(size / 2, size / 2), 2.2, 2.2)
        else:
            p.drawLine(QPointF(2, size - 2), QPointF(size - 2, 2))
    else:  # padlock
        p.drawRect(QRectF(3.5, 7.5, size - 7, size - 9.5))
        shackle = QRectF(5, 2, size - 10, 10)
        if on:
            p.drawArc(shackle, 0, 180 * 16)
        else:  # swung open
            p.drawArc(shackle.translated(3, -1), 30 * 16, 150 * 16)
    p.end()
    return pix


def toggle_icon(draw: str) -> QIcon:
    """A two-state icon ("eye" or "lock") for a checkable button."""
    icon = QIcon()
    icon.addPixmap(_painted(draw, True), QIcon.Mode.Normal, QIcon.State.On)
    icon.addPixmap(_painted(draw, False), QIcon.Mode.Normal, QIcon.State.Off)
    return icon


def badge(text: str, tooltip: str = "") -> QLabel:
    label = QLabel(text)
    label.setObjectName("methodBadge")
    label.setToolTip(tooltip)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
    label.setStyleSheet("QLabel#methodBadge { border: 1px solid palette(mid); border-radius: 3px;"
                        " padding: 0 4px; font-size: 9pt; }")
    return label


class AlphaControl(QWidget):
    """A slider and a spin box for one strength value.

    A slider drag is announced step by step with one merge key (`dragged`) and then once
    more when the button comes up (`released`), so the caller can make the whole drag one
    undo step with cheap previews and a single full render at the end. Any other change
    (typing, arrows, wheel, keyboard) is one `edited` step.
    """

    dragged = Signal(float, object)
    released = Signal(float, object)
    edited = Signal(float)

    def __init__(self, kind: str = "global_direction", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(-ALPHA_SPIN_LIMIT, ALPHA_SPIN_LIMIT)
        self.spin.setDecimals(2)
        self.spin.setSingleStep(0.1)
        self.spin.setKeyboardTracking(False)  # one step per committed number, not per keystroke
        self.spin.setToolTip("Strength (alpha). Negative values push away from the prompt.")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("α"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self._drag_key: object = None
        self.set_kind(kind)
        self.slider.sliderPressed.connect(self._on_pressed)
        self.slider.sliderReleased.connect(self._on_released)
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)

    def set_kind(self, kind: str) -> None:
        lo, hi = alpha_range(kind)
        self.slider.blockSignals(True)
        self.slider.setRange(round(lo * SLIDER_STEPS_PER_UNIT), round(hi * SLIDER_STEPS_PER_UNIT))
        self.slider.setPageStep(SLIDER_STEPS_PER_UNIT)
        self.slider.blockSignals(False)

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, value: float) -> None:
        """Show a value without announcing it (the document changed, not the user)."""
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        if not self.slider.isSliderDown():
            self.slider.setValue(round(value * SLIDER_STEPS_PER_UNIT))
        self.spin.setValue(value)
        for w in (self.slider, self.spin):
            w.blockSignals(False)

    def dragging(self) -> bool:
        return self._drag_key is not None

    def _slider_value(self) -> float:
        return self.slider.value() / SLIDER_STEPS_PER_UNIT

    def _on_pressed(self) -> None:
        self._drag_key = new_drag_key("alpha")

    def _on_slider(self, _raw: int) -> None:
        value = self._slider_value()
        self.spin.blockSignals(True)
        self.spin.setValue(value)
        self.spin.blockSignals(False)
        if self._drag_key is not None:
            self.dragged.emit(value, self._drag_key)
        else:
            self.edited.emit(value)

    def _on_released(self) -> None:
        key, self._drag_key = self._drag_key, None
        if key is not None:
            self.released.emit(self._slider_value(), key)

    def _on_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * SLIDER_STEPS_PER_UNIT))
        self.slider.blockSignals(False)
        self.edited.emit(float(value))


class _NameLabel(QLabel):
    double_clicked = Signal()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        self.double_clicked.emit()
        event.accept()


class _NameEdit(QLineEdit):
    cancelled = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class EditableName(QStackedWidget):
    """A name shown as a label that turns into a text field on double-click."""

    renamed = Signal(str)

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = _NameLabel(text)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.label.setToolTip("Double-click to rename")
        self.edit = _NameEdit(text)
        self.addWidget(self.label)
        self.addWidget(self.edit)
        self.label.double_clicked.connect(self.start_editing)
        self.edit.editingFinished.connect(self._finish)
        self.edit.cancelled.connect(self._cancel)

    def text(self) -> str:
        return self.label.text()

    def set_text(self, text: str) -> None:
        self.label.setText(text)
        if not self.editing():
            self.edit.setText(text)

    def editing(self) -> bool:
        return self.currentWidget() is self.edit

    def start_editing(self) -> None:
        self.edit.setText(self.label.text())
        self.setCurrentWidget(self.edit)
        self.edit.setFocus(Qt.FocusReason.MouseFocusReason)
        self.edit.selectAll()

    def _finish(self) -> None:
        if not self.editing():
            return
        self.setCurrentWidget(self.label)
        text = self.edit.text().strip()
        if text and text != self.label.text():
            self.renamed.emit(text)

    def _cancel(self) -> None:
        self.edit.setText(self.label.text())
        self.setCurrentWidget(self.label)


class DocumentFollower:
    """Mixin for panels that redraw whenever the open document changes.

    `follow(doc)` moves the listener from the old document to the new one; a panel closed
    while its document lives on stops listening at the next change."""

    _doc: Document | None = None

    def sync(self) -> None:
        raise NotImplementedError

    def follow(self, doc: Document | None) -> None:
        self._unhook()
        self._doc = doc
        if doc is not None:
            doc.events.modified.connect(self._on_modified)
        self.sync()

    def _on_modified(self, _event: Any) -> None:
        if not is_alive(self):
            self._unhook()
            return
        self.sync()

    def _unhook(self) -> None:
        if self._doc is not None:
            self._doc.events.modified.disconnect(self._on_modified)
            self._doc = None
