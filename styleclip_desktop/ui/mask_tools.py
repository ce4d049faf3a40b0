"""The canvas's mask tool: brush and eraser on the current layer's mask, and the overlay.

Masks live in the aligned-face square (`MASK_SIZE` px). The canvas shows either that
square (the aligned crop, at the generator's resolution) or the photo with the face
pasted back; pointer positions are mapped through the document's alignment in the second
case, so the brush lands where the user sees it.

A stroke, from press to release, is one undo step: every dab is pushed with the stroke's
merge key. Each dab only recomputes the pixels in its bounding box. The overlay is
Photoshop's quick mask: translucent red where the layer is hidden (coverage 0), drawn
over the "after" picture only, and hidden while the original is shown.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen, QRegion, QTransform
from PySide6.QtWidgets import QMainWindow

from styleclip_desktop.document import actions
from styleclip_desktop.document.mask_ops import MAX_SIZE, MIN_SIZE, Box, Brush, Stroke, base_pixels
from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.ui.compare import HANDLE_RADIUS, CompareMode

if TYPE_CHECKING:
    from styleclip_desktop.document import Document, Layer
    from styleclip_desktop.ui.canvas import Canvas
    from styleclip_desktop.ui.state import EditorState

OVERLAY_RGB = (255, 0, 0)
OVERLAY_OPACITY = 0.5
SIZE_STEP = 1.25  # [ and ] scale the brush by this much
_strokes = itertools.count(1)


def shows_photo(state: EditorState) -> bool:
    """Whether the canvas shows the face pasted back into the photo (else the aligned crop)."""
    doc = state.document
    return bool(state.paste_back and doc is not None and doc.alignment is not None
                and doc.source is not None and doc.source.data is not None)


def image_to_mask(state: EditorState, width: float) -> np.ndarray:
    """3x3: canvas image coordinates (pixel edges, at the shown picture's full size, which
    is `width` px wide) to mask coordinates (pixel edges)."""
    doc = state.document
    if shows_photo(state) and doc is not None and doc.alignment is not None:
        half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
        k = MASK_SIZE / float(doc.alignment.crop_size)
        to_mask = np.diag([k, k, 1.0])
        # edges -> photo pixel centres -> crop pixel centres -> crop edges -> mask edges
        return to_mask @ half @ np.asarray(doc.alignment.matrix, np.float64) @ np.linalg.inv(half)
    k = MASK_SIZE / max(float(width), 1.0)
    return np.diag([k, k, 1.0])


def _qtransform(m: np.ndarray) -> QTransform:
    return QTransform(float(m[0, 0]), float(m[1, 0]), float(m[0, 1]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]))


def editable_layer(state: EditorState, layer: Layer | None, notice: Callable[[str], None],
                   to: str) -> tuple[Document, Layer] | None:
    """The document and the current layer when its mask may change; else None, after a
    status-bar notice saying why (`to`: what the user was about to do)."""
    doc = state.document
    if doc is None or layer is None:
        notice(f"Choose a layer in Layers to {to}.")
        return None
    if layer.locked:
        notice(f'"{layer.name}" is locked: unlock it to {to}.')
        return None
    return doc, layer


class MaskTool(QObject):
    """The brush settings, the stroke in progress and the overlay, for one canvas."""

    changed = Signal()  # a setting changed (the panel and the menu follow)

    def __init__(self, state: EditorState, canvas: Canvas) -> None:
        super().__init__(canvas)
        self.state = state
        self.canvas = canvas
        self.painting = False
        self.show_overlay = False
        self.brush = Brush()
        self._stroke: Stroke | None = None
        self._stroke_layer = ""
        self._stroke_settings: dict[str, Any] = {}
        self._stroke_key: object = None
        self._pointer: QPointF | None = None
        self._overlay: np.ndarray | None = None  # (MASK_SIZE, MASK_SIZE, 4) RGBA
        self._overlay_key: object = None
        for signal in (state.document_changed, state.current_layer_changed, state.document_replaced):
            signal.connect(lambda *_: canvas.update())
        canvas.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Leave and self._pointer is not None:
            self._pointer = None  # no brush outline left behind where the pointer went out
            self.canvas.update()
        return False

    # -- settings ----------------------------------------------------------------------

    def set_painting(self, on: bool) -> None:
        """Paint mode: left-drags on the canvas paint the current layer's mask. Entering it
        shows the overlay and leaving it hides it again, as a quick mask does."""
        if on != self.painting:
            self.painting = on
            self.show_overlay = on
            self._set_cursor()
            self._changed()

    def set_overlay(self, on: bool) -> None:
        if on != self.show_overlay:
            self.show_overlay = on
            self._changed()

    def set_brush(self, **changes: Any) -> None:
        values = {"size": self.brush.size, "hardness": self.brush.hardness, "opacity": self.brush.opacity,
                  "erase": self.brush.erase, **changes}
        values["size"] = min(max(float(values["size"]), MIN_SIZE), MAX_SIZE)
        brush = Brush(**values)
        if brush != self.brush:
            self.brush = brush
            self._changed()

    def use(self, erase: bool) -> None:
        """Brush (False) or eraser (True), in paint mode."""
        self.set_brush(erase=erase)
        self.set_painting(True)

    def swap(self) -> None:
        self.set_brush(erase=not self.brush.erase)

    def grow(self, steps: int) -> None:
        """[ and ]: a smaller or larger brush, by a step proportional to its size."""
        size = self.brush.size
        new = float(round(size * SIZE_STEP ** steps))
        if new == size and steps:
            new = size + (1 if steps > 0 else -1)
        self.set_brush(size=new)

    def _changed(self) -> None:
        self.changed.emit()
        self.canvas.update()

    # -- the layer ---------------------------------------------------------------------

    def layer(self) -> Layer | None:
        doc, layer_id = self.state.document, self.state.current_layer_id
        if doc is None or not layer_id:
            return None
        try:
            return doc.layers.get(layer_id)
        except KeyError:
            return None

    def notice(self, text: str) -> None:
        """A one-line message in the window's status bar."""
        window = self.canvas.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(text, 8000)
        else:
            self.state.error.emit(text)

    # -- geometry ----------------------------------------------------------------------

    def _image_to_mask(self) -> np.ndarray | None:
        c = self.canvas
        rect = c.image_rect()
        if rect.width() <= 0 or c.scale <= 0:
            return None
        return image_to_mask(self.state, rect.width() / c.scale)

    def to_mask(self, pos: QPointF) -> tuple[float, float] | None:
        """A widget position as mask pixel-centre coordinates (None: nothing is shown)."""
        m = self._image_to_mask()
        if m is None:
            return None
        img = self.canvas.widget_to_image(pos)
        x, y, _ = m @ np.array([img.x(), img.y(), 1.0])
        return float(x) - 0.5, float(y) - 0.5

    def widget_from_mask(self, x0: float = 0.0) -> QTransform | None:
        """Mask edge coordinates to widget coordinates, for a picture laid out from `x0`."""
        m = self._image_to_mask()
        if m is None:
            return None
        c = self.canvas
        view = np.array([[c.scale, 0.0, c.offset.x() + x0], [0.0, c.scale, c.offset.y()], [0.0, 0.0, 1.0]])
        return _qtransform(view @ np.linalg.inv(m))

    # -- pointer -----------------------------------------------------------------------

    def _on_wipe_handle(self, pos: QPointF) -> bool:
        c = self.canvas
        if c.compare is not CompareMode.WIPE:
            return False
        rect = c.image_rect()
        return abs(pos.x() - (rect.left() + c.split * rect.width())) <= HANDLE_RADIUS

    def _set_cursor(self) -> None:
        self.canvas.setCursor(Qt.CursorShape.CrossCursor if self.painting else Qt.CursorShape.ArrowCursor)

    def press(self, pos: QPointF) -> bool:
        """A left press on the canvas: True when the mask tool took it."""
        if not self.painting or not self.canvas.has_image() or self._on_wipe_handle(pos):
            return False
        found = editable_layer(self.state, self.layer(), self.notice, "paint its mask")
        if found is None:
            return True
        doc, layer = found
        where = self.to_mask(pos)
        if where is None:
            return True
        mask = layer.mask
        self._stroke = Stroke(base_pixels(mask, self.brush.erase), self.brush)
        self._stroke_layer = layer.id
        self._stroke_settings = {} if mask is None else mask.settings_json()
        self._stroke_key = ("mask stroke", next(_strokes))
        start = mask if mask is not None else LayerMask(self._stroke.pixels)
        self._overlay = self._rgba(start.coverage(MASK_SIZE))
        self._overlay_key = start.key
        self._dab(where)
        return True

    def move(self, pos: QPointF) -> bool:
        """Pointer moved: True when the mask tool took it (it paints, or shows the brush)."""
        if not self.painting:
            return False
        self._pointer = QPointF(pos)
        if self._stroke is not None:
            where = self.to_mask(pos)
            if where is not None:
                self._dab(where)
        else:
            shape = Qt.CursorShape.SplitHCursor if self._on_wipe_handle(pos) else Qt.CursorShape.CrossCursor
            self.canvas.setCursor(shape)
        self.canvas.update()
        return True

    def release(self) -> bool:
        if self._stroke is None:
            return False
        self._stroke = None
        self._overlay_key = None  # the feathered overlay again
        self.state.request_render(preview=False)
        self.canvas.update()
        return True

    def _dab(self, where: tuple[float, float]) -> None:
        stroke, doc = self._stroke, self.state.document
        if stroke is None or doc is None:
            return
        box = stroke.to(*where)
        if box is None:
            return  # off the mask: nothing changes
        try:
            name = doc.layers.get(self._stroke_layer).name
        except KeyError:
            self._stroke = None
            return
        mask = LayerMask(stroke.pixels, **self._stroke_settings)
        if doc.layers.get(self._stroke_layer).mask == mask:
            return  # over pixels already painted: nothing to record
        verb = "Erase" if stroke.brush.erase else "Paint"
        self.state.push(actions.set_mask(doc, self._stroke_layer, mask, text=f'{verb} the mask of "{name}"',
                                         merge_key=self._stroke_key))
        if doc.layers.get(self._stroke_layer).mask != mask:
            self._stroke = None  # refused (the message is out): stop, rather than repeat it per dab
            return
        self._update_overlay(mask, box)
        self.state.request_render(preview=True)

    # -- overlay -----------------------------------------------------------------------

    def _rgba(self, coverage: np.ndarray) -> np.ndarray:
        out = np.empty(coverage.shape + (4,), np.uint8)
        out[..., 0], out[..., 1], out[..., 2] = OVERLAY_RGB
        out[..., 3] = np.rint((1.0 - coverage) * (255 * OVERLAY_OPACITY)).astype(np.uint8)
        return out

    def _update_overlay(self, mask: LayerMask, box: Box) -> None:
        """During a stroke: only the dab's box, from the painted (unfeathered) pixels."""
        if self._overlay is None:
            return  # built whole at the next paint
        y0, y1, x0, x1 = box
        c = mask.pixels[y0:y1, x0:x1].astype(np.float32) / 255.0
        self._overlay[y0:y1, x0:x1] = self._rgba(1.0 - c if mask.inverted else c)
        # Unfeathered pixels are the mask's exact coverage only without feathering.
        self._overlay_key = mask.key if mask.feather == 0 else ("stroke", mask.key)

    def overlay_image(self, mask: LayerMask) -> QImage:
        if self._overlay is None or (self._overlay_key != mask.key and self._stroke is None):
            self._overlay = self._rgba(mask.coverage(MASK_SIZE))
            self._overlay_key = mask.key
        o = self._overlay
        return QImage(o.data, MASK_SIZE, MASK_SIZE, 4 * MASK_SIZE, QImage.Format.Format_RGBA8888)

    def overlay_shown(self) -> bool:
        """Whether the canvas draws the overlay now."""
        layer = self.layer()
        c = self.canvas
        return bool(self.show_overlay and layer is not None and layer.mask is not None and c.has_image()
                    and c.landmarks is None and c.chooser is None and not c.holding_original)

    def _overlay_clip(self, p: QPainter) -> QRegion:
        """The "after" picture, less the compare's handle and "After" label drawn over it."""
        c = self.canvas
        rect = c.image_rect()
        x0 = c.width() / 2 if c.compare is CompareMode.SIDE_BY_SIDE else 0.0
        area = rect.translated(x0, 0).intersected(QRectF(x0, 0, c.width() - x0, c.height()))
        label_at = QPointF(x0 + 8, 8)
        holes = QRegion()
        if c.compare is CompareMode.WIPE:
            split = rect.left() + c.split * rect.width()
            area = area.intersected(QRectF(split, 0, max(0.0, rect.right() - split), c.height()))
            y = min(max(rect.center().y(), HANDLE_RADIUS + 4), c.height() - HANDLE_RADIUS - 4)
            r = HANDLE_RADIUS + 1
            holes = QRegion(QRectF(split - r, y - r, 2 * r, 2 * r).toAlignedRect(), QRegion.RegionType.Ellipse)
            holes = holes.united(QRectF(split - 1, 0, 2, c.height()).toAlignedRect())
            label_at = QPointF(split + 8, 8)
        if c.compare is not CompareMode.OFF:
            # As `compare.label` lays the label out.
            font = QFont(p.font())
            font.setPointSizeF(max(8.0, font.pointSizeF()))
            metrics = QFontMetrics(font)
            box = QRectF(label_at.x(), label_at.y(), metrics.horizontalAdvance("After") + 12, metrics.height() + 4)
            holes = holes.united(box.adjusted(-1, -1, 1, 1).toAlignedRect())
        return QRegion(area.toAlignedRect()).subtracted(holes)

    def paint(self, p: QPainter) -> None:
        """Draw the overlay and the brush outline over the canvas's picture."""
        c = self.canvas
        if c.landmarks is not None or c.chooser is not None or c.holding_original or not c.has_image():
            return
        layer = self.layer()
        side = c.compare is CompareMode.SIDE_BY_SIDE
        x0 = c.width() / 2 if side else 0.0
        transform = self.widget_from_mask(x0)
        if transform is None:
            return
        if self.overlay_shown() and layer is not None and layer.mask is not None:
            p.save()
            p.setClipRegion(self._overlay_clip(p))
            p.setTransform(transform, True)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            image = self.overlay_image(layer.mask)
            p.drawImage(QRectF(0, 0, MASK_SIZE, MASK_SIZE), image)
            p.restore()
        if self.painting and self._pointer is not None:
            where = self.to_mask(self._pointer)
            if where is None:
                return
            # The outline where the pointer is (either half when side by side).
            dx = x0 if not side or self._pointer.x() >= c.width() / 2 else 0.0
            t = self.widget_from_mask(dx)
            if t is None:
                return
            p.save()
            p.setTransform(t, True)
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setBrush(Qt.BrushStyle.NoBrush)
            centre = QPointF(where[0] + 0.5, where[1] + 0.5)
            r = self.brush.radius
            for colour, width in ((QColor(0, 0, 0, 200), 3.0), (QColor(255, 255, 255, 230), 1.0)):
                pen = QPen(colour, width)
                pen.setCosmetic(True)
                p.setPen(pen)
                p.drawEllipse(centre, r, r)
            p.restore()
