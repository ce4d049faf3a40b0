"""The layer list's widgets: one row per layer (visibility, lock, name, method badge,
strength, and for global directions beta with the live count of channels it moves), and
the list itself, whose drag-and-drop asks for an undoable move."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QDropEvent, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import DomainParams, GlobalDirectionParams, Layer, OptimizationParams
from styleclip_desktop.ui.panels import domain_properties
from styleclip_desktop.ui.panels.widgets import AlphaControl, EditableName, badge, badge_text, toggle_icon

THUMB = 48
MASK_THUMB = 16
ROLE_LAYER_ID = Qt.ItemDataRole.UserRole


def usable_beta(largest: float | None) -> float | None:
    """The largest β the two-decimal β field can hold that still keeps a channel: a
    channel passes when its relevance is at least β, and none is above `largest`."""
    if largest is None or largest <= 0.0:
        return None
    beta = math.floor(round(float(largest) * 100, 6)) / 100
    if beta > largest:
        beta -= 0.01
    return max(0.0, round(beta, 2))


def too_high_hint(info: Any, beta: float) -> str:
    """The β warning for a direction query result ("" when β is fine)."""
    if info is None:
        return ""
    if int(getattr(info, "channels", 1) or 0) > 0:
        return ""
    usable = usable_beta(getattr(info, "largest_beta", None))
    if usable is not None:
        return f"β too high: the largest usable β here is {usable:.2f}"
    error = getattr(info, "error", None)
    return str(error) if error else f"β too high: no channel passes β = {beta:.2f}"


def channels_text(channels: int) -> str:
    return f"{channels} channel changed" if channels == 1 else f"{channels} channels changed"


def to_pixmap(image: Any, size: int = THUMB) -> QPixmap:
    """An HxWx3 uint8 picture as a small pixmap."""
    arr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[..., :3])
    h, w = arr.shape[:2]
    qimage = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimage).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation)


class LayerRow(QFrame):
    """Widgets for one layer; announces user gestures with the layer id, never edits."""

    visibility_toggled = Signal(str, bool)
    lock_toggled = Signal(str, bool)
    renamed = Signal(str, str)
    alpha_dragged = Signal(str, float, object)
    alpha_released = Signal(str, float, object)
    alpha_edited = Signal(str, float)
    beta_edited = Signal(str, float)
    run_requested = Signal(str)
    cancel_requested = Signal(str)
    height_changed = Signal(str)  # a hint or a live frame appeared or went: the list must make room

    def __init__(self, layer: Layer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer_id = layer.id
        self.kind = layer.kind
        self.direction_key: tuple[str, str, float] | None = None  # what the channel count describes
        self.setFrameShape(QFrame.Shape.NoFrame)

        self.eye = QToolButton()
        self.eye.setCheckable(True)
        self.eye.setIcon(toggle_icon("eye"))
        self.eye.setToolTip("Show or hide this edit")
        self.lock = QToolButton()
        self.lock.setCheckable(True)
        self.lock.setIcon(toggle_icon("lock"))
        self.lock.setToolTip("Lock this edit against changes")
        self.name = EditableName(layer.name)
        domain = layer.params.kind == DomainParams.kind
        self.badge = badge(domain_properties.BADGE if domain else badge_text(layer.params), layer.params.label)
        self.alpha = AlphaControl(layer.kind)
        if domain:
            domain_properties.domain_alpha(self.alpha)
        self.mask_badge = QLabel()  # the layer's mask, small: white where the layer acts
        self.mask_badge.setFixedSize(MASK_THUMB + 2, MASK_THUMB + 2)
        self.mask_badge.hide()
        self._mask_key: object = None

        # Two lines per layer (name and count; strengths), so a stack of five fits the dock.
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(4)
        for w in (self.eye, self.lock, self.badge, self.mask_badge):
            top.addWidget(w)
        top.addWidget(self.name, 1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 2, 4, 2)
        outer.setSpacing(1)
        outer.addLayout(top)
        strengths = QHBoxLayout()
        strengths.setContentsMargins(0, 0, 0, 0)
        strengths.addWidget(self.alpha, 1)
        # Keyframed strength: the slider shows the value at the playhead (what the canvas shows).
        self.animated = QLabel("◆")
        self.animated.setToolTip("Animated: the strength at the playhead. Changing it sets a keyframe there.")
        self.animated.hide()
        strengths.insertWidget(0, self.animated)
        outer.addLayout(strengths)

        self.beta: QDoubleSpinBox | None = None
        self.channels = QLabel()
        self.channels.setObjectName("channelCount")
        self.channels.setStyleSheet("QLabel#channelCount { color: palette(mid); }")
        # The β problem, shown where it is: what is wrong and the one click that fixes it.
        self.problem = QWidget()
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #c0392b;")
        self.hint.hide()
        self.fix_beta = QPushButton()
        self.fix_beta.setToolTip("Set β to the largest value that still changes the picture")
        self.fix_beta.hide()
        self.suggested_beta: float | None = None
        problem = QHBoxLayout(self.problem)
        problem.setContentsMargins(0, 0, 0, 0)
        problem.addWidget(self.hint, 1)
        problem.addWidget(self.fix_beta)
        self.problem.hide()
        if isinstance(layer.params, GlobalDirectionParams):
            self.beta = QDoubleSpinBox()
            self.beta.setRange(0.0, 1.0)
            self.beta.setDecimals(2)
            self.beta.setSingleStep(0.01)
            self.beta.setKeyboardTracking(False)
            self.beta.setToolTip("β: channels less relevant to the prompt than this are left alone. "
                                 "Higher β = a more targeted edit; too high and nothing changes.")
            top.addWidget(self.channels)
            strengths.addWidget(QLabel("β"))
            strengths.addWidget(self.beta)
            outer.addWidget(self.problem)
            self.beta.valueChanged.connect(lambda v: self.beta_edited.emit(self.layer_id, float(v)))
            self.fix_beta.clicked.connect(self._use_suggested_beta)

        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.hide()
        self.status = QLabel()
        self.run = QPushButton("Run")
        self.cancel = QPushButton("Cancel")
        self.cancel.hide()
        self.running = False
        if isinstance(layer.params, OptimizationParams):
            line = QHBoxLayout()
            line.setContentsMargins(0, 0, 0, 0)
            line.addWidget(self.thumb)
            line.addWidget(self.status, 1)
            line.addWidget(self.run)
            line.addWidget(self.cancel)
            outer.addLayout(line)
            self.run.clicked.connect(lambda: self.run_requested.emit(self.layer_id))
            self.cancel.clicked.connect(lambda: self.cancel_requested.emit(self.layer_id))

        self.eye.toggled.connect(lambda on: self.visibility_toggled.emit(self.layer_id, on))
        self.lock.toggled.connect(lambda on: self.lock_toggled.emit(self.layer_id, on))
        self.name.renamed.connect(lambda text: self.renamed.emit(self.layer_id, text))
        self.alpha.dragged.connect(lambda v, k: self.alpha_dragged.emit(self.layer_id, v, k))
        self.alpha.released.connect(lambda v, k: self.alpha_released.emit(self.layer_id, v, k))
        self.alpha.edited.connect(lambda v: self.alpha_edited.emit(self.layer_id, v))
        self.update_from(layer)

    def update_from(self, layer: Layer, shown_alpha: float | None = None) -> None:
        """Show the layer as the document has it, without announcing anything."""
        for button, on in ((self.eye, layer.visible), (self.lock, layer.locked)):
            button.blockSignals(True)
            button.setChecked(on)
            button.blockSignals(False)
        self.name.set_text(layer.name)
        # `shown_alpha`: the keyframed value at the playhead, None for a layer without keyframes.
        self.alpha.set_value(layer.alpha if shown_alpha is None else shown_alpha)
        self.animated.setVisible(shown_alpha is not None)
        self._show_mask(layer.mask)
        for w in (self.alpha, self.name, self.beta):
            if w is not None:
                w.setEnabled(not layer.locked)
        params = layer.params
        if self.beta is not None and isinstance(params, GlobalDirectionParams):
            self.beta.blockSignals(True)
            self.beta.setValue(params.beta)
            self.beta.blockSignals(False)
            self.setToolTip(f"{params.target}  (neutral: {params.neutral})")
        if isinstance(params, OptimizationParams) and not self.running:
            self.status.setText("optimized" if params.delta is not None else "not optimized yet")
            self.run.setText("Run again" if params.delta is not None else "Run")

    def _show_mask(self, mask: Any) -> None:
        key = None if mask is None else (mask.key, mask.enabled)
        if key == self._mask_key:
            return
        self._mask_key = key
        self.mask_badge.setVisible(mask is not None)
        if mask is None:
            return
        # From the painted pixels (block means), not the feathered coverage: this runs on
        # every dab of a stroke, and a wide feather is a costly blur.
        n = mask.pixels.shape[0] // MASK_THUMB
        cover = mask.pixels.reshape(MASK_THUMB, n, MASK_THUMB, n).mean(axis=(1, 3))
        thumb = np.ascontiguousarray(np.rint(255 - cover if mask.inverted else cover).astype(np.uint8))
        if not mask.enabled:
            thumb = (thumb // 3 + 60).astype(np.uint8)  # greyed out, as a disabled mask is
        image = QImage(thumb.data, MASK_THUMB, MASK_THUMB, MASK_THUMB, QImage.Format.Format_Grayscale8).copy()
        self.mask_badge.setPixmap(QPixmap.fromImage(image))
        self.mask_badge.setStyleSheet("border: 1px solid palette(mid);")
        self.mask_badge.setToolTip("Masked: this edit acts only where its mask is white" if mask.enabled
                                   else "Mask disabled: this edit acts everywhere")

    def set_direction_info(self, info: Any, beta: float) -> None:
        if info is None:
            self.channels.setText("")
            self._show_problem("", None)
            return
        channels = getattr(info, "channels", None)
        self.channels.setText("" if channels is None else channels_text(int(channels)))
        hint = too_high_hint(info, beta)
        self._show_problem(hint, usable_beta(getattr(info, "largest_beta", None)) if hint else None)

    def _show_problem(self, hint: str, suggested: float | None) -> None:
        self.hint.setText(hint)
        self.suggested_beta = suggested
        self.fix_beta.setText("" if suggested is None else f"Use β = {suggested:.2f}")
        self.fix_beta.setHidden(suggested is None)
        self.hint.setHidden(not hint)
        if self.problem.isHidden() == bool(hint):
            self.problem.setHidden(not hint)
            self.height_changed.emit(self.layer_id)

    def has_problem(self) -> bool:
        return not self.problem.isHidden()

    def _use_suggested_beta(self) -> None:
        if self.suggested_beta is not None:
            self.beta_edited.emit(self.layer_id, self.suggested_beta)

    def set_running(self, running: bool, status: str = "") -> None:
        self.running = running
        self.run.setHidden(running)
        self.cancel.setHidden(not running)
        if status:
            self.status.setText(status)

    def show_frame(self, image: Any) -> None:
        self.thumb.setPixmap(to_pixmap(image))
        if self.thumb.isHidden():
            self.thumb.show()
            self.height_changed.emit(self.layer_id)


class LayerList(QListWidget):
    """A list whose drag-and-drop asks for a move instead of moving items itself, so the
    document stays the only owner of the order (and the move is undoable)."""

    move_requested = Signal(str, int)  # layer id, display row it should end at

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)

    def drop_row(self, pos: QPoint) -> int:
        """The display row a dragged layer lands on when dropped at `pos`."""
        item = self.itemAt(pos)
        if item is None:
            return self.count() - 1
        row = self.row(item)
        source = self.currentRow()
        lower_half = pos.y() > self.visualItemRect(item).center().y()
        # Dropping on the lower half of a row means "below it".
        target = row + 1 if lower_half else row
        return target - 1 if source < target else target

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt's name)
        item = self.currentItem()
        if item is not None and event.source() in (self, None):
            self.move_requested.emit(item.data(ROLE_LAYER_ID), self.drop_row(event.position().toPoint()))
        event.setDropAction(Qt.DropAction.IgnoreAction)
        event.accept()
