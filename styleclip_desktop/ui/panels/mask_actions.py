"""The mask commands on the current layer, and their actions: the Mask panel's buttons
and the window's Mask menu share them, so a shortcut does the same wherever it is pressed.

Every change is one undoable step through `actions.set_mask`. Automatic regions are
computed on the engine's worker (progress and Cancel in the status bar) and arrive as one
step too; a layer that is locked, gone or no longer current by then is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QWidget

from styleclip_desktop.document import actions, mask_ops
from styleclip_desktop.document.masks import START_RESOLUTIONS, LayerMask
from styleclip_desktop.ui.panels.engine_link import user_message

if TYPE_CHECKING:
    from styleclip_desktop.document import Document, Layer
    from styleclip_desktop.ui.mask_tools import MaskTool
    from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)


def region_names() -> list[tuple[str, str]]:
    """(name, label) of every automatic region, [] when they are not available."""
    try:
        from styleclip_desktop.methods import regions
    except Exception:  # the editor works without them
        log.debug("automatic regions unavailable", exc_info=True)
        return []
    labels = getattr(regions, "REGION_LABELS", {})
    return [(name, str(labels.get(name, name))) for name in getattr(regions, "REGION_NAMES", ())]


def start_resolutions(engine: Any) -> list[int]:
    """The mask start resolutions the generator has (all of them without an engine)."""
    top = getattr(engine, "resolution", None)
    return [r for r in START_RESOLUTIONS if top is None or r <= int(top)]


class MaskCommands:
    """The mask edits on the current layer, each one undoable step."""

    def __init__(self, state: EditorState, window: Callable[[], QWidget | None]) -> None:
        self.state = state
        self._window = window
        self.region_job: Any = None

    def notice(self, text: str) -> None:
        window = self._window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(text, 8000)
        else:
            self.state.error.emit(text)

    def layer(self) -> Layer | None:
        doc, layer_id = self.state.document, self.state.current_layer_id
        if doc is None or not layer_id or layer_id not in doc.layers:
            return None
        return doc.layers.get(layer_id)

    def _editable(self, need_mask: bool = True) -> tuple[Document, Layer] | None:
        from styleclip_desktop.ui.mask_tools import editable_layer

        found = editable_layer(self.state, self.layer(), self.notice, "change its mask")
        if found is None:
            return None
        doc, layer = found
        if need_mask and layer.mask is None:
            self.notice(f'"{layer.name}" has no mask: add one first (Mask > Add Mask).')
            return None
        return doc, layer

    def _set(self, doc: Document, layer: Layer, mask: LayerMask | None, text: str,
             merge_key: object = None) -> None:
        self.state.push(actions.set_mask(doc, layer.id, mask, text=text, merge_key=merge_key))
        self.state.request_render(preview=False)

    def _change(self, what: str, change: Callable[[LayerMask], LayerMask], merge_key: object = None) -> None:
        found = self._editable()
        if found is not None:
            doc, layer = found
            assert layer.mask is not None
            self._set(doc, layer, change(layer.mask), f'{what} of "{layer.name}"', merge_key)

    def add(self) -> None:
        found = self._editable(need_mask=False)
        if found is None:
            return
        doc, layer = found
        if layer.mask is not None:
            self.notice(f'"{layer.name}" has a mask already.')
            return
        self._set(doc, layer, LayerMask.filled(255), f'Add a mask to "{layer.name}"')

    def fill(self) -> None:
        self._change("Fill the mask", mask_ops.fill)

    def clear(self) -> None:
        self._change("Clear the mask", mask_ops.clear)

    def invert(self) -> None:
        self._change("Invert the mask", mask_ops.invert)

    def set_feather(self, feather: float) -> None:
        self._change("Feather the mask", lambda m: m.with_changes(feather=float(feather)))

    def set_start_res(self, res: int) -> None:
        self._change("Change where the mask starts", lambda m: m.with_changes(start_res=int(res)))

    def set_enabled(self, on: bool) -> None:
        self._change("Enable the mask" if on else "Disable the mask", lambda m: m.with_changes(enabled=bool(on)))

    def toggle_enabled(self) -> None:
        layer = self.layer()
        if layer is not None and layer.mask is not None:
            self.set_enabled(not layer.mask.enabled)
        else:
            self._editable()  # says why nothing happens

    def remove(self) -> None:
        found = self._editable()
        if found is not None:
            doc, layer = found
            self._set(doc, layer, None, f'Remove the mask of "{layer.name}"')

    def region(self, name: str, label: str | None = None) -> Any:
        """The mask of an automatic region (`regions.region_mask`), computed off the UI
        thread; the layer's feather and start resolution are kept."""
        found = self._editable(need_mask=False)
        if found is None:
            return None
        doc, layer = found
        engine = self.state.engine
        if engine is None:
            self.notice("The models are still loading; try again in a moment.")
            return None
        label = label or name
        old = layer.mask
        settings = {} if old is None else {"feather": old.feather, "start_res": old.start_res, "enabled": old.enabled}
        snapshot = getattr(engine, "snapshot", None)
        if snapshot is not None:
            doc_state: Any = snapshot(doc)
        else:
            from styleclip_desktop.render.state import snapshot as take

            doc_state = take(doc)
        layer_id = layer.id

        def compute(_ctx: Any) -> LayerMask:
            from styleclip_desktop.methods import regions

            return regions.region_mask(getattr(engine, "renderer", engine), doc_state, name, **settings)

        def done(mask: Any) -> None:
            self.region_job = None
            current = self.state.document
            if current is not doc or layer_id not in doc.layers:
                return  # the document or the layer went while the region was being found
            target = doc.layers.get(layer_id)
            if not isinstance(mask, LayerMask):
                self.notice(f"The {label.lower()} region could not be found.")
                return
            self._set(doc, target, mask, f'Mask "{target.name}" to {label.lower()}')
            self.notice(f'"{target.name}" now acts on: {label.lower()}.')

        def failed(exc: BaseException) -> None:
            self.region_job = None
            log.info("automatic region failed", exc_info=exc)
            self.notice(user_message(exc, f"Finding the {label.lower()} region"))

        try:
            self.region_job = self.state.run_job(compute, f"Finding the {label.lower()} region…",
                                                 on_result=done, on_error=failed, key="mask region")
        except Exception as exc:
            failed(exc)
        return self.region_job


class MaskActions(QObject):
    """The Mask menu's actions over the canvas's mask tool and the mask commands."""

    def __init__(self, commands: MaskCommands, tool: MaskTool, parent: QWidget) -> None:
        super().__init__(parent)
        self.commands = commands
        self.tool = tool
        self._owner = parent

        def act(text: str, slot: Callable[[], object], key: str = "", tip: str = "",
                checkable: bool = False) -> QAction:
            a = QAction(text, parent)
            if key:
                a.setShortcut(QKeySequence(key))
                a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            if tip:
                a.setStatusTip(tip)
            a.setCheckable(checkable)
            a.triggered.connect(lambda _checked=False: slot())
            parent.addAction(a)
            return a

        self.add = act("&Add Mask (Reveal All)", commands.add, tip="The layer acts everywhere until you paint")
        self.paint = act("&Paint Mask", lambda: tool.set_painting(not tool.painting), "Q",
                         "Drag on the picture to paint where this layer acts", checkable=True)
        self.brush = act("&Brush", lambda: tool.use(erase=False), "B", "Paint: the layer acts where you paint")
        self.eraser = act("&Eraser", lambda: tool.use(erase=True), "E", "Erase: the layer stops acting there")
        self.swap = act("S&wap Brush and Eraser", tool.swap, "X")
        self.smaller = act("S&maller Brush", lambda: tool.grow(-1), "[")
        self.larger = act("&Larger Brush", lambda: tool.grow(+1), "]")
        self.invert = act("&Invert Mask", commands.invert, "Ctrl+I")
        self.fill = act("&Fill Mask", commands.fill, tip="The layer acts everywhere")
        self.clear = act("&Clear Mask", commands.clear, tip="The layer acts nowhere")
        self.disable = act("&Disable Mask", commands.toggle_enabled,
                           tip="Ignore the mask without losing it (the layer acts everywhere)", checkable=True)
        self.overlay = act("Show Mask &Overlay", lambda: tool.set_overlay(not tool.show_overlay),
                           tip="Red where the layer does not act", checkable=True)
        self.remove = act("&Remove Mask", commands.remove)
        self.regions = QMenu("Add Mask from &Region", parent)
        # Listed once the models are there (or the menu opens): finding regions needs torch,
        # which the window must not wait for.
        self._regions_listed = False
        self.regions.aboutToShow.connect(self.list_regions)
        commands.state.engine_changed.connect(lambda engine: self.list_regions() if engine is not None else None)
        if commands.state.engine is not None:
            self.list_regions()
        tool.changed.connect(self.update)

    def list_regions(self) -> None:
        if self._regions_listed:
            return
        self._regions_listed = True
        for name, label in region_names():
            a = self.regions.addAction(label)
            a.triggered.connect(lambda _c=False, n=name, t=label: self.commands.region(n, t))
        if self.regions.isEmpty():
            self.regions.addAction("Automatic regions are not available").setEnabled(False)

    def fill_menu(self, menu: QMenu) -> None:
        """The window's Mask menu; the shortcuts work wherever the focus is in the window."""
        for item in (self.add, self.regions, None, self.paint, self.brush, self.eraser, self.swap, self.smaller,
                     self.larger, None, self.fill, self.clear, self.invert, None, self.disable, self.overlay,
                     None, self.remove):
            if item is None:
                menu.addSeparator()
            elif isinstance(item, QMenu):
                menu.addMenu(item)
            else:
                menu.addAction(item)
                item.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.update()

    def update(self) -> None:
        """Enable what applies to the current layer and tool."""
        layer = self.commands.layer()
        has_layer = layer is not None
        mask = layer.mask if layer is not None else None
        editable = has_layer and not (layer is not None and layer.locked)
        self.add.setEnabled(editable and mask is None)
        self.regions.setEnabled(editable)
        for a in (self.fill, self.clear, self.remove, self.disable):
            a.setEnabled(editable and mask is not None)
        self.invert.setEnabled(editable and mask is not None and self.tool.painting)
        for a in (self.swap, self.smaller, self.larger):
            a.setEnabled(self.tool.painting)
        for a, on in ((self.paint, self.tool.painting), (self.overlay, self.tool.show_overlay),
                      (self.disable, mask is not None and not mask.enabled)):
            a.blockSignals(True)
            a.setChecked(on)
            a.blockSignals(False)
