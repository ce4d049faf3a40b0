"""Canvas overlays for opening a photo: four draggable landmarks when no face was found,
and click-to-choose when several were.

Both work in photo pixel coordinates; the canvas maps them to the screen. The four
points are the ones the aligner needs (two eyes, two mouth corners), in its order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from styleclip_desktop.ui.compare import label

POINT_NAMES = ("Eye", "Eye", "Mouth", "Mouth")
GRAB_RADIUS = 12.0
ToScreen = Callable[[QPointF], QPointF]


def default_landmarks(width: int, height: int) -> np.ndarray:
    """A frontal face's four points in the middle of a photo, as a starting guess."""
    s = 0.22 * min(width, height)
    cx, cy = width / 2.0, height / 2.0
    return np.array([[cx - s / 2, cy - s / 3], [cx + s / 2, cy - s / 3],
                     [cx - s / 2.6, cy + s / 1.5], [cx + s / 2.6, cy + s / 1.5]], np.float64)


class LandmarkEditor:
    """Four handles the user drags onto the eyes and mouth corners."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = np.array(points, np.float64).reshape(4, 2)
        self._dragging: int | None = None

    def handle_at(self, pos: QPointF, to_screen: ToScreen) -> int | None:
        best, best_d = None, GRAB_RADIUS
        for i, (x, y) in enumerate(self.points):
            s = to_screen(QPointF(x, y))
            d = float(np.hypot(s.x() - pos.x(), s.y() - pos.y()))
            if d <= best_d:
                best, best_d = i, d
        return best

    def press(self, pos: QPointF, to_screen: ToScreen) -> bool:
        self._dragging = self.handle_at(pos, to_screen)
        return self._dragging is not None

    def move(self, image_pos: QPointF) -> bool:
        if self._dragging is None:
            return False
        self.points[self._dragging] = (image_pos.x(), image_pos.y())
        return True

    def release(self) -> None:
        self._dragging = None

    def paint(self, p: QPainter, to_screen: ToScreen) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        screen = [to_screen(QPointF(x, y)) for x, y in self.points]
        p.setPen(QPen(QColor(255, 255, 255, 160), 1, Qt.PenStyle.DashLine))
        p.drawLine(screen[0], screen[1])
        p.drawLine(screen[2], screen[3])
        for i, s in enumerate(screen):
            color = QColor(80, 200, 255) if i < 2 else QColor(255, 140, 90)
            p.setPen(QPen(QColor(0, 0, 0), 3))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(s, 7, 7)
            p.setPen(QPen(color, 2))
            p.drawEllipse(s, 7, 7)
            p.drawLine(QPointF(s.x() - 3, s.y()), QPointF(s.x() + 3, s.y()))
            p.drawLine(QPointF(s.x(), s.y() - 3), QPointF(s.x(), s.y() + 3))
            label(p, POINT_NAMES[i], QPointF(s.x() + 10, s.y() - 10))


def face_box(landmarks: np.ndarray) -> QRectF:
    """A box around a face from its landmarks, padded to roughly the head."""
    pts = np.asarray(landmarks, np.float64).reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    size = max(float((hi - lo).max()), 1.0) * 2.2
    cx, cy = (lo + hi) / 2
    return QRectF(cx - size / 2, cy - size / 2.2, size, size * 1.15)


class FaceChooser:
    """Boxes around the faces found; the one clicked is the one to edit. `notes` marks a
    face's label, e.g. "?" for a detection the detector was unsure of (drawn dashed)."""

    def __init__(self, faces: list[np.ndarray], notes: list[str] | None = None) -> None:
        self.boxes = [face_box(f) for f in faces]
        self.notes = list(notes or [])
        self.hover: int | None = None

    def label_of(self, index: int) -> str:
        note = self.notes[index] if index < len(self.notes) else ""
        return f"Face {index + 1} {note}".strip()

    def face_at(self, image_pos: QPointF) -> int | None:
        hits = [i for i, b in enumerate(self.boxes) if b.contains(image_pos)]
        # Nested boxes: the smallest one is the face under the pointer.
        return min(hits, key=lambda i: self.boxes[i].width()) if hits else None

    def paint(self, p: QPainter, to_screen: ToScreen) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for i, b in enumerate(self.boxes):
            rect = QRectF(to_screen(b.topLeft()), to_screen(b.bottomRight()))
            on = i == self.hover
            p.setBrush(QColor(80, 200, 255, 50) if on else Qt.BrushStyle.NoBrush)
            pen = QPen(QColor(80, 200, 255) if on else QColor(255, 255, 255, 200), 3 if on else 2)
            if i < len(self.notes) and self.notes[i]:
                pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.drawRoundedRect(rect, 6, 6)
            label(p, self.label_of(i), QPointF(rect.left(), rect.top() - 24))
