"""The painted part of the timeline: a time ruler, one track per layer with its alpha
keyframes and curve, and the playhead.

The view only reads the document; it announces gestures (scrub, add, move, delete, easing)
and the timeline panel turns them into undoable commands. Keyframes snap to frame times
so that every key lands on a frame that export will actually render.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from styleclip_desktop.document import EASE_IN_OUT, EASINGS, HOLD, Document, Keyframe
from styleclip_desktop.ui.panels.widgets import new_drag_key

HEADER_W = 120
RULER_H = 22
TRACK_H = 28
MARGIN = 12
KEY_RADIUS = 5.0
# How far outside a keyframe's drawn shape a click, right-click or drag still takes it
# (logical pixels, so the same reach on every screen density): a hand on a mouse or a
# touchpad lands a few pixels off a 10 px diamond.
HIT_SLOP = 5.0
HIT = KEY_RADIUS + HIT_SLOP
CURVE_SAMPLES = 64
EASING_LABELS = {"linear": "Linear", EASE_IN_OUT: "Ease in-out", HOLD: "Hold"}


class TrackView(QWidget):
    scrub_started = Signal()
    scrubbed = Signal(int)
    scrub_finished = Signal()
    layer_clicked = Signal(str)
    selection_changed = Signal()
    add_requested = Signal(str, float)
    move_requested = Signal(str, float, float, object)  # layer, from t, to t, merge key
    delete_requested = Signal(str, float)
    easing_requested = Signal(str, float, str)
    drag_finished = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc: Document | None = None
        self.frame = 0
        self.current_layer = ""
        self.selected: tuple[str, float] | None = None
        self._scrubbing = False
        self._drag: tuple[str, float, object] | None = None  # layer, key's time now, merge key
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(False)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumHeight(RULER_H + TRACK_H)

    # -- geometry ----------------------------------------------------------------------

    def track_ids(self) -> list[str]:
        return [] if self.doc is None else list(reversed(self.doc.layers.ids()))

    def refresh(self) -> None:
        self.setMinimumHeight(RULER_H + TRACK_H * max(1, len(self.track_ids())))
        if self.selected is not None and self.key(*self.selected) is None:
            self.selected = None
        self.update()

    def _span(self) -> float:
        return max(1.0, self.width() - HEADER_W - MARGIN)

    def x_of(self, t: float) -> float:
        duration = self.doc.timeline.duration if self.doc is not None else 1.0
        return HEADER_W + t / duration * self._span()

    def t_of(self, x: float) -> float:
        duration = self.doc.timeline.duration if self.doc is not None else 1.0
        return max(0.0, min(duration, (x - HEADER_W) / self._span() * duration))

    def frame_of(self, t: float) -> int:
        if self.doc is None:
            return 0
        return self.doc.timeline.frame_at(t)

    def snap(self, t: float) -> float:
        return 0.0 if self.doc is None else self.doc.timeline.frame_time(self.frame_of(t))

    def track_at(self, y: float) -> str | None:
        ids = self.track_ids()
        row = int((y - RULER_H) // TRACK_H)
        return ids[row] if y >= RULER_H and 0 <= row < len(ids) else None

    def track_rect(self, layer_id: str) -> QRectF:
        row = self.track_ids().index(layer_id)
        return QRectF(0, RULER_H + row * TRACK_H, self.width(), TRACK_H)

    def key_pos(self, layer_id: str, t: float) -> QPointF:
        return QPointF(self.x_of(t), self.track_rect(layer_id).center().y())

    def key(self, layer_id: str, t: float) -> Keyframe | None:
        if self.doc is None or layer_id not in self.doc.layers:
            return None
        return next((k for k in self.doc.timeline.keyframes(layer_id) if k.t == t), None)

    def key_at(self, pos: QPointF) -> tuple[str, float] | None:
        """The keyframe nearest to `pos` on the track under it, when `pos` is within HIT
        pixels of its centre; one hit test for clicks, drags and the context menu."""
        layer_id = self.track_at(pos.y())
        if layer_id is None or self.doc is None:
            return None
        best = min(self.doc.timeline.keyframes(layer_id), key=lambda k: abs(self.x_of(k.t) - pos.x()), default=None)
        if best is None or abs(self.x_of(best.t) - pos.x()) > HIT:
            return None
        return (layer_id, best.t)

    # -- mouse and keys ----------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        pos = event.position()
        if event.button() != Qt.MouseButton.LeftButton or self.doc is None:
            return super().mousePressEvent(event)
        if pos.y() < RULER_H and pos.x() >= HEADER_W:
            self._scrubbing = True
            self.scrub_started.emit()
            self.scrubbed.emit(self.frame_of(self.t_of(pos.x())))
            return
        layer_id = self.track_at(pos.y())
        if layer_id is not None:
            self.layer_clicked.emit(layer_id)
        hit = self.key_at(pos)
        self._select(hit)
        if hit is not None:
            self._drag = (hit[0], hit[1], new_drag_key("keyframe"))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        x = event.position().x()
        if self._scrubbing:
            self.scrubbed.emit(self.frame_of(self.t_of(x)))
        elif self._drag is not None:
            layer_id, t, merge_key = self._drag
            new_t = self.snap(self.t_of(x))
            if new_t != t and self.key(layer_id, new_t) is None:
                self.move_requested.emit(layer_id, t, new_t, merge_key)
                if self.key(layer_id, new_t) is not None:
                    self._drag = (layer_id, new_t, merge_key)
                    self._select((layer_id, new_t))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        if self._scrubbing:
            self._scrubbing = False
            self.scrub_finished.emit()
        if self._drag is not None:
            self._drag = None
            self.drag_finished.emit()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        pos = event.position()
        layer_id = self.track_at(pos.y())
        if layer_id is None or pos.x() < HEADER_W or self.key_at(pos) is not None:
            return
        t = self.snap(self.t_of(pos.x()))
        self.add_requested.emit(layer_id, t)
        if self.key(layer_id, t) is not None:
            self._select((layer_id, t))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected is not None:
            self.delete_requested.emit(*self.selected)
            event.accept()
            return
        super().keyPressEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 (Qt's name)
        menu = self.context_menu(QPointF(event.pos()))
        if menu is not None:
            menu.exec(event.globalPos())

    def context_menu(self, pos: QPointF) -> QMenu | None:
        """The menu for a keyframe (easing, delete) or an empty spot (add a keyframe)."""
        hit = self.key_at(pos)
        menu = QMenu(self)
        if hit is not None:
            self._select(hit)
            key = self.key(*hit)
            for easing in EASINGS:
                action = menu.addAction(EASING_LABELS.get(easing, easing))
                action.setCheckable(True)
                action.setChecked(key is not None and key.easing == easing)
                action.triggered.connect(lambda _c=False, e=easing: self.easing_requested.emit(*hit, e))
            menu.addSeparator()
            menu.addAction("Delete keyframe", lambda: self.delete_requested.emit(*hit))
            return menu
        layer_id = self.track_at(pos.y())
        if layer_id is None or pos.x() < HEADER_W:
            return None
        t = self.snap(self.t_of(pos.x()))
        menu.addAction("Add keyframe here", lambda: self.add_requested.emit(layer_id, t))
        return menu

    def _select(self, hit: tuple[str, float] | None) -> None:
        if hit != self.selected:
            self.selected = hit
            self.selection_changed.emit()
        self.update()

    # -- painting ----------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        doc = self.doc
        if doc is None:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No document")
            return
        self._paint_ruler(p, doc)
        for row, layer_id in enumerate(self.track_ids()):
            self._paint_track(p, doc, row, layer_id)
        x = self.x_of(doc.timeline.frame_time(min(self.frame, doc.timeline.frame_count - 1)))
        p.setPen(QPen(QColor("#e74c3c"), 2))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))

    def _paint_ruler(self, p: QPainter, doc: Document) -> None:
        pal = self.palette()
        p.fillRect(QRectF(0, 0, self.width(), RULER_H), pal.alternateBase())
        p.setPen(pal.text().color())
        duration = doc.timeline.duration
        step = next((s for s in (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 600)
                     if self._span() * s / duration >= 40), duration)
        n = int(duration / step + 1e-9)
        for i in range(n + 1):
            x = self.x_of(i * step)
            p.drawLine(QPointF(x, RULER_H - 6), QPointF(x, RULER_H))
            p.drawText(QPointF(x + 2, RULER_H - 8), f"{i * step:g}s")

    def _paint_track(self, p: QPainter, doc: Document, row: int, layer_id: str) -> None:
        pal = self.palette()
        layer = doc.layers.get(layer_id)
        rect = QRectF(0, RULER_H + row * TRACK_H, self.width(), TRACK_H)
        if layer_id == self.current_layer:
            p.fillRect(rect, pal.highlight().color().lighter(170))
        elif row % 2:
            p.fillRect(rect, pal.alternateBase())
        p.setPen(pal.text().color() if layer.visible else pal.placeholderText().color())
        name = p.fontMetrics().elidedText(layer.name, Qt.TextElideMode.ElideRight, HEADER_W - 8)
        p.drawText(QRectF(4, rect.top(), HEADER_W - 8, TRACK_H),
                   Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, name)
        keys = doc.timeline.keyframes(layer_id)
        self._paint_curve(p, doc, layer_id, rect, keys)
        for k in keys:
            self._paint_key(p, QPointF(self.x_of(k.t), rect.center().y()), k,
                            self.selected == (layer_id, k.t))

    def _paint_curve(self, p: QPainter, doc: Document, layer_id: str, rect: QRectF,
                     keys: tuple[Keyframe, ...]) -> None:
        if not keys:
            return
        duration = doc.timeline.duration
        values = [doc.alpha_at(layer_id, duration * i / CURVE_SAMPLES) for i in range(CURVE_SAMPLES + 1)]
        scale = max(1e-6, max(abs(v) for v in values))
        half = TRACK_H / 2 - 4
        path = QPainterPath()
        for i, v in enumerate(values):
            point = QPointF(self.x_of(duration * i / CURVE_SAMPLES), rect.center().y() - v / scale * half)
            if i:
                path.lineTo(point)
            else:
                path.moveTo(point)
        p.setPen(QPen(self.palette().mid().color(), 1))
        p.drawPath(path)

    def _paint_key(self, p: QPainter, c: QPointF, key: Keyframe, selected: bool) -> None:
        r = KEY_RADIUS
        pal = self.palette()
        p.setPen(QPen(pal.text().color(), 1))
        p.setBrush(pal.highlight() if selected else pal.button())
        if key.easing == EASE_IN_OUT:
            p.drawEllipse(c, r, r)
        elif key.easing == HOLD:
            p.drawRect(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r))
        else:
            p.drawPolygon(QPolygonF([QPointF(c.x(), c.y() - r), QPointF(c.x() + r, c.y()),
                                     QPointF(c.x(), c.y() + r), QPointF(c.x() - r, c.y())]))
        p.setBrush(Qt.BrushStyle.NoBrush)
