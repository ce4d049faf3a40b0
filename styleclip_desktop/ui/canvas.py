"""The image view in the middle of the window.

Navigation follows the habits of GIMP and Photoshop: Ctrl+wheel zooms about the pointer,
the wheel scrolls, Space-drag and middle-drag pan, Ctrl+0 fits, Ctrl+1 is 100%. Before/
after: a wipe whose split follows a left-drag, side by side with one shared zoom and pan,
and holding backslash shows the original. While a photo is being opened the canvas shows
the photo itself with the landmark handles or the face boxes over it. In paint mode
left-drags paint the current layer's mask instead (`mask_tools.MaskTool`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QCursor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from styleclip_desktop.ui.compare import CompareMode, draw_image, label, paint_wipe
from styleclip_desktop.ui.images import to_qimage
from styleclip_desktop.ui.landmarks import FaceChooser, LandmarkEditor
from styleclip_desktop.ui.mask_tools import MaskTool
from styleclip_desktop.ui.state import EditorState

MIN_SCALE, MAX_SCALE = 1 / 32, 32.0
ZOOM_STEP = 2 ** 0.25
BACKGROUND = QColor(38, 38, 40)


class Banner(QWidget):
    """A message with buttons along the top of the canvas (landmarks, face choice)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setAutoFillBackground(True)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # so the style sheet paints it
        self.setStyleSheet("Banner { background: rgba(20, 20, 22, 225); } QLabel { color: #eee; }")
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.ok = QPushButton("Use these points", self)
        self.cancel = QPushButton("Cancel", self)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.ok)
        lay.addWidget(self.cancel)
        self.hide()


class Canvas(QWidget):
    zoom_changed = Signal(float)
    split_changed = Signal(float)
    landmarks_accepted = Signal(object)  # (4, 2) float array in photo pixels
    face_chosen = Signal(int)
    pick_cancelled = Signal()

    def __init__(self, state: EditorState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(200, 150)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self._image: QImage | None = None
        self._original: QImage | None = None
        self._photo: QImage | None = None
        self._logical = QSize()  # the full-resolution size; previews are drawn stretched to it
        self.scale = 1.0
        self.offset = QPointF(0, 0)
        self._fit = True
        self.compare = CompareMode.OFF
        self.split = 0.5
        self.holding_original = False
        self._space = False
        self._pan_from: QPointF | None = None
        self._wiping = False
        self.landmarks: LandmarkEditor | None = None
        self.chooser: FaceChooser | None = None
        self.banner = Banner(self)
        self.mask_tool = MaskTool(state, self)  # paints the current layer's mask in paint mode
        self.banner.ok.clicked.connect(self._accept_landmarks)
        self.banner.cancel.clicked.connect(self.end_pick)
        self.banner.cancel.clicked.connect(self.pick_cancelled.emit)
        state.render_ready.connect(self._on_render)
        state.original_ready.connect(self._on_original)
        state.document_replaced.connect(self._on_document)

    # -- pictures ----------------------------------------------------------------------

    def _on_render(self, image: object, preview: bool) -> None:
        arr = np.asarray(image)
        size = QSize(arr.shape[1], arr.shape[0])
        if not preview or self._logical.isEmpty():
            if size != self._logical:
                self._logical = size
                if self._fit:
                    self.fit()
        self._image = to_qimage(arr)
        self.update()

    def _on_original(self, image: object) -> None:
        self._original = to_qimage(np.asarray(image))
        self.update()

    def _on_document(self, _doc: object) -> None:
        self._image = self._original = None
        self._logical = QSize()
        self._fit = True
        self.update()

    def image_array(self) -> np.ndarray | None:
        """The picture shown as "after" (the latest render)."""
        return None if self.state.image is None else np.asarray(self.state.image)

    def has_image(self) -> bool:
        return self._image is not None or self._photo is not None

    def _content_size(self) -> QSize:
        if self._photo is not None:
            return self._photo.size()
        return self._logical

    # -- geometry ----------------------------------------------------------------------

    def _viewport(self) -> QRectF:
        """The area one picture is laid out in (half the widget when side by side)."""
        w = self.width() / 2 if self._side_by_side() else self.width()
        return QRectF(0, 0, w, self.height())

    def _side_by_side(self) -> bool:
        return self.compare is CompareMode.SIDE_BY_SIDE and self._photo is None

    def image_rect(self) -> QRectF:
        size = self._content_size()
        return QRectF(self.offset.x(), self.offset.y(), size.width() * self.scale, size.height() * self.scale)

    def image_to_widget(self, pt: QPointF) -> QPointF:
        return QPointF(self.offset.x() + pt.x() * self.scale, self.offset.y() + pt.y() * self.scale)

    def widget_to_image(self, pt: QPointF) -> QPointF:
        x = pt.x()
        if self._side_by_side() and x >= self.width() / 2:
            x -= self.width() / 2
        return QPointF((x - self.offset.x()) / self.scale, (pt.y() - self.offset.y()) / self.scale)

    def fit(self) -> None:
        size, view = self._content_size(), self._viewport()
        self._fit = True
        if size.isEmpty():
            return
        s = min((view.width() - 16) / size.width(), (view.height() - 16) / size.height())
        self._set_scale(max(MIN_SCALE, min(s, MAX_SCALE)), centre=True)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, scale: float) -> None:
        """Zoom to `scale` (1.0 = 100%) about the centre of the picture."""
        self._fit = False
        self._set_scale(max(MIN_SCALE, min(float(scale), MAX_SCALE)), centre=True)

    def zoom_in(self) -> None:
        self.zoom_by(ZOOM_STEP)

    def zoom_out(self) -> None:
        self.zoom_by(1 / ZOOM_STEP)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        view = self._viewport()
        anchor = anchor if anchor is not None else view.center()
        if self._side_by_side() and anchor.x() >= view.width():
            anchor = QPointF(anchor.x() - view.width(), anchor.y())
        self._fit = False
        old = self.scale
        new = max(MIN_SCALE, min(self.scale * factor, MAX_SCALE))
        # Keep the image point under the anchor where it is.
        self.offset = anchor - (anchor - self.offset) * (new / old)
        self.scale = new
        self.zoom_changed.emit(new)
        self.update()

    def _set_scale(self, scale: float, centre: bool) -> None:
        self.scale = scale
        if centre:
            view, size = self._viewport(), self._content_size()
            self.offset = QPointF((view.width() - size.width() * scale) / 2, (view.height() - size.height() * scale) / 2)
        self.zoom_changed.emit(scale)
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._place_banner()
        if self._fit:
            self.fit()

    # -- compare -----------------------------------------------------------------------

    def set_compare(self, mode: CompareMode) -> None:
        if mode != self.compare:
            self.compare = mode
            if self._fit:
                self.fit()
            self.update()

    def set_split(self, fraction: float) -> None:
        self.split = min(max(float(fraction), 0.0), 1.0)
        self.split_changed.emit(self.split)
        self.update()

    def set_holding_original(self, on: bool) -> None:
        self.holding_original = on
        self.update()

    # -- photo picking -----------------------------------------------------------------

    def show_photo(self, pixels: np.ndarray) -> None:
        self._photo = to_qimage(pixels)
        self.fit()

    def edit_landmarks(self, pixels: np.ndarray, points: np.ndarray, message: str) -> None:
        self.chooser = None
        self.landmarks = LandmarkEditor(points)
        self._show_banner(message, ok=True)
        self.show_photo(pixels)

    def choose_face(self, pixels: np.ndarray, faces: list[np.ndarray], message: str,
                    notes: list[str] | None = None) -> None:
        self.landmarks = None
        self.chooser = FaceChooser(faces, notes)
        self._show_banner(message, ok=False)
        self.show_photo(pixels)

    def _show_banner(self, message: str, ok: bool) -> None:
        self.banner.text.setText(message)
        self.banner.ok.setVisible(ok)
        self._place_banner()
        self.banner.show()
        self.banner.raise_()

    def _place_banner(self) -> None:
        """Across the top, as tall as its wrapped text needs at this width (never clipped)."""
        width = self.width()
        height = max(self.banner.heightForWidth(width), self.banner.minimumSizeHint().height())
        self.banner.setGeometry(0, 0, width, height)

    def end_pick(self) -> None:
        self.landmarks = self.chooser = None
        self._photo = None
        self.banner.hide()
        self.fit()

    def _accept_landmarks(self) -> None:
        if self.landmarks is not None:
            points = self.landmarks.points.copy()
            self.end_pick()
            self.landmarks_accepted.emit(points)

    # -- painting ----------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        target = self.image_rect()
        if self._photo is not None:
            draw_image(p, self._photo, target, self.scale)
            overlay = self.landmarks or self.chooser
            if overlay is not None:
                overlay.paint(p, self.image_to_widget)
        elif self._image is None:
            p.setPen(QColor(150, 150, 150))
            text = "Open a photo (Ctrl+O), drop one here, or start from a prompt (File > New from Prompt…)"
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
        elif self.holding_original:
            draw_image(p, self._original or self._image, target, self.scale)
            label(p, "Original", QPointF(8, 8))
        elif self.compare is CompareMode.WIPE:
            paint_wipe(p, self._original, self._image, target, self.split, self.scale, self.height())
        elif self.compare is CompareMode.SIDE_BY_SIDE:
            half = self.width() / 2
            for x0, img, name in ((0.0, self._original, "Before"), (half, self._image, "After")):
                p.save()
                p.setClipRect(QRectF(x0, 0, half, self.height()))
                draw_image(p, img, target.translated(x0, 0), self.scale)
                label(p, name, QPointF(x0 + 8, 8))
                p.restore()
            p.setPen(QColor(90, 90, 90))
            p.drawLine(QPointF(half, 0), QPointF(half, self.height()))
        else:
            draw_image(p, self._image, target, self.scale)
        if self._photo is None and self._image is not None:
            self.mask_tool.paint(p)
        p.end()

    # -- input -------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt's name)
        delta = event.angleDelta()
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = delta.y() / 120.0
            self.zoom_by(ZOOM_STEP ** steps, event.position())
        else:
            dx, dy = delta.x(), delta.y()
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                dx, dy = dy, dx
            self._fit = False
            self.offset += QPointF(dx / 2.0, dy / 2.0)
            self.update()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        pos = event.position()
        button = event.button()
        self.setFocus()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space):
            self._pan_from = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if button != Qt.MouseButton.LeftButton:
            return
        if self.landmarks is not None:
            self.landmarks.press(pos, self.image_to_widget)
        elif self.chooser is not None:
            index = self.chooser.face_at(self.widget_to_image(pos))
            if index is not None:
                self.end_pick()
                self.face_chosen.emit(index)
        elif self.mask_tool.press(pos):
            return
        elif self.compare is CompareMode.WIPE and self._image is not None:
            self._wiping = True
            self._wipe_to(pos)

    def _wipe_to(self, pos: QPointF) -> None:
        rect = self.image_rect()
        if rect.width() > 0:
            self.set_split((pos.x() - rect.left()) / rect.width())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        pos = event.position()
        if self._pan_from is not None:
            self.offset += pos - self._pan_from
            self._pan_from = pos
            self._fit = False
            self.update()
        elif self._wiping:
            self._wipe_to(pos)
        elif self.landmarks is not None:
            if self.landmarks.move(self.widget_to_image(pos)):
                self.update()
            else:
                over = self.landmarks.handle_at(pos, self.image_to_widget) is not None
                self.setCursor(Qt.CursorShape.SizeAllCursor if over else Qt.CursorShape.ArrowCursor)
        elif self.chooser is not None:
            hover = self.chooser.face_at(self.widget_to_image(pos))
            if hover != self.chooser.hover:
                self.chooser.hover = hover
                self.setCursor(Qt.CursorShape.PointingHandCursor if hover is not None else Qt.CursorShape.ArrowCursor)
                self.update()
        elif self.mask_tool.move(pos):
            return
        elif self.compare is CompareMode.WIPE and self._image is not None:
            self.setCursor(Qt.CursorShape.SplitHCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        self.mask_tool.release()
        if self._pan_from is not None:
            self._pan_from = None
            self.setCursor(Qt.CursorShape.OpenHandCursor if self._space else Qt.CursorShape.ArrowCursor)
        self._wiping = False
        if self.landmarks is not None:
            self.landmarks.release()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.isAutoRepeat():
            event.accept()
            return
        if event.key() == Qt.Key.Key_Space:
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif event.key() == Qt.Key.Key_Backslash:
            self.set_holding_original(True)
        elif event.key() == Qt.Key.Key_Escape and (self.landmarks or self.chooser):
            self.end_pick()
            self.pick_cancelled.emit()
        elif event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.landmarks is not None:
            self._accept_landmarks()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.isAutoRepeat():
            event.accept()
            return
        if event.key() == Qt.Key.Key_Space:
            self._space = False
            self.setCursor(QCursor(Qt.CursorShape.ArrowCursor))
        elif event.key() == Qt.Key.Key_Backslash:
            self.set_holding_original(False)
        else:
            super().keyReleaseEvent(event)
