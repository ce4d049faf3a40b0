"""Before/after compare on the canvas: a draggable wipe, or side by side.

The "before" is the document with every layer switched off (the inverted photo as it
came in), so the compare isolates what the text edits did. Both halves of the side-by-
side view share one zoom and pan, so they stay registered while the user inspects.
"""

from __future__ import annotations

import enum

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen

HANDLE_RADIUS = 11.0


class CompareMode(enum.Enum):
    OFF = "off"
    WIPE = "wipe"
    SIDE_BY_SIDE = "side"


def draw_image(p: QPainter, image: QImage | None, target: QRectF, scale: float) -> None:
    if image is None:
        return
    # Nearest-neighbour at 100% and above: pixel-peeping shows real pixels, not a blur.
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
    p.drawImage(target, image, QRectF(image.rect()))


def paint_wipe(p: QPainter, before: QImage | None, after: QImage | None, target: QRectF, split: float,
               scale: float, widget_height: float) -> None:
    """`before` left of the split (a fraction of the image width), `after` right of it."""
    x = target.left() + split * target.width()
    draw_image(p, after, target, scale)
    p.save()
    p.setClipRect(QRectF(target.left(), target.top(), max(0.0, x - target.left()), target.height()))
    draw_image(p, before if before is not None else after, target, scale)
    p.restore()
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(QPen(QColor(255, 255, 255, 230), 1.5))
    p.drawLine(QPointF(x, 0), QPointF(x, widget_height))
    y = min(max(target.center().y(), HANDLE_RADIUS + 4), widget_height - HANDLE_RADIUS - 4)
    p.setBrush(QColor(30, 30, 30, 220))
    p.drawEllipse(QPointF(x, y), HANDLE_RADIUS, HANDLE_RADIUS)
    arrows = QPainterPath()
    for sign in (-1, 1):
        arrows.moveTo(x + sign * 3, y - 4)
        arrows.lineTo(x + sign * 7, y)
        arrows.lineTo(x + sign * 3, y + 4)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawPath(arrows)
    label(p, "Before", QPointF(x - 8, 8), right_aligned=True)
    label(p, "After", QPointF(x + 8, 8))


def label(p: QPainter, text: str, at: QPointF, right_aligned: bool = False) -> None:
    font = QFont(p.font())
    font.setPointSizeF(max(8.0, font.pointSizeF()))
    p.setFont(font)
    metrics = p.fontMetrics()
    w, h = metrics.horizontalAdvance(text) + 12, metrics.height() + 4
    box = QRectF(at.x() - w if right_aligned else at.x(), at.y(), w, h)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(0, 0, 0, 150))
    p.drawRoundedRect(box, 4, 4)
    p.setPen(QColor(240, 240, 240))
    p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
