"""Menus, actions and shortcuts, following platform habits (QKeySequence standard keys
wherever Qt has one, so macOS gets Cmd and Linux/Windows get Ctrl)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from styleclip_desktop.ui.compare import CompareMode

if TYPE_CHECKING:
    from styleclip_desktop.ui.main_window import MainWindow

Std = QKeySequence.StandardKey


@dataclass
class Actions:
    new: QAction
    new_from_prompt: QAction
    open: QAction
    save: QAction
    save_as: QAction
    export_image: QAction
    export_animation: QAction
    batch_apply: QAction
    quit: QAction
    undo: QAction
    redo: QAction
    zoom_in: QAction
    zoom_out: QAction
    fit: QAction
    actual_size: QAction
    show_composite: QAction
    show_crop: QAction
    model_manager: QAction
    recent_menu: QMenu
    compare: dict[CompareMode, QAction] = field(default_factory=dict)


def _keys(*keys: QKeySequence.StandardKey | str) -> list[QKeySequence]:
    out: list[QKeySequence] = []
    for k in keys:
        for seq in (QKeySequence.keyBindings(k) if isinstance(k, QKeySequence.StandardKey) else [QKeySequence(k)]):
            if not seq.isEmpty() and seq not in out:
                out.append(seq)
    return out


def build_menus(w: MainWindow) -> Actions:
    bar = w.menuBar()

    def act(menu: QMenu, text: str, slot: Callable[[], object], *keys: QKeySequence.StandardKey | str,
            tip: str = "") -> QAction:
        a = QAction(text, w)
        if keys:
            a.setShortcuts(_keys(*keys))
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(lambda _checked=False: slot())
        menu.addAction(a)
        return a

    f = bar.addMenu("&File")
    new = act(f, "&New", w.new_document, Std.New, tip="A new document with a random face")
    new_prompt = act(f, "New from &Prompt…", w.new_from_prompt, "Ctrl+Shift+N", tip="Generate a face from text")
    open_ = act(f, "&Open…", w.open_dialog, Std.Open, tip="Open a photo or a project")
    recent = f.addMenu("Open &Recent")
    f.addSeparator()
    save = act(f, "&Save", w.projects.save, Std.Save)
    save_as = act(f, "Save &As…", w.projects.save_as, Std.SaveAs, "Ctrl+Shift+S")
    f.addSeparator()
    export = act(f, "&Export Image…", w.export_image, "Ctrl+E", tip="Write the edited picture as PNG, JPEG or WebP")
    export_anim = act(f, "Export Ani&mation…", w.export_animation, "Ctrl+Shift+E",
                      tip="Render the timeline as an MP4 video, a GIF or an animated WebP")
    batch = act(f, "&Batch Apply…", w.batch_apply, "Ctrl+Shift+B",
                tip="Apply this document's layers to many photos, writing the results into a folder")
    f.addSeparator()
    quit_ = act(f, "&Quit", w.close, Std.Quit, "Ctrl+Q")
    quit_.setMenuRole(QAction.MenuRole.QuitRole)

    e = bar.addMenu("&Edit")
    undo = w.state.undo_stack.createUndoAction(w, "&Undo")
    undo.setShortcuts(_keys(Std.Undo, "Ctrl+Z"))
    redo = w.state.undo_stack.createRedoAction(w, "&Redo")
    redo.setShortcuts(_keys(Std.Redo, "Ctrl+Shift+Z", "Ctrl+Y"))
    e.addAction(undo)
    e.addAction(redo)

    # The Layers panel owns the layer commands; its shortcuts become window-wide here.
    fill_layer_menu = getattr(w.panels.get("layersDock"), "fill_layer_menu", None)
    if fill_layer_menu is not None:
        layer_menu = bar.addMenu("&Layer")
        fill_layer_menu(layer_menu, w)
        w.domain_actions.fill_menu(layer_menu)
    fill_mask_menu = getattr(w.panels.get("maskDock"), "fill_mask_menu", None)
    if fill_mask_menu is not None:
        fill_mask_menu(bar.addMenu("M&ask"), w)

    v = bar.addMenu("&View")
    zin = act(v, "Zoom &In", w.canvas.zoom_in, Std.ZoomIn, "Ctrl+=", "Ctrl++")
    zout = act(v, "Zoom &Out", w.canvas.zoom_out, Std.ZoomOut, "Ctrl+-")
    fit = act(v, "&Fit in Window", w.canvas.fit, "Ctrl+0")
    actual = act(v, "&Actual Size (100%)", w.canvas.actual_size, "Ctrl+1")
    v.addSeparator()
    cmp_menu = v.addMenu("&Compare Before/After")
    group = QActionGroup(w)
    compare: dict[CompareMode, QAction] = {}
    for mode, text, key in ((CompareMode.OFF, "&Off", "Ctrl+Alt+0"), (CompareMode.WIPE, "&Wipe", "Ctrl+Alt+1"),
                            (CompareMode.SIDE_BY_SIDE, "&Side by Side", "Ctrl+Alt+2")):
        a = act(cmp_menu, text, lambda m=mode: w.set_compare(m), key)  # type: ignore[misc]
        a.setCheckable(True)
        a.setChecked(mode is CompareMode.OFF)
        group.addAction(a)
        compare[mode] = a
    hold = QAction("Hold \\ to Show the Original", w)
    hold.setEnabled(False)
    cmp_menu.addSeparator()
    cmp_menu.addAction(hold)
    v.addSeparator()
    shown = QActionGroup(w)
    comp = act(v, "Show Edit in &Photo (Composite)", lambda: w.state.set_paste_back(True), "Ctrl+Alt+P")
    crop = act(v, "Show &Aligned Crop Only", lambda: w.state.set_paste_back(False), "Ctrl+Alt+A")
    for a in (comp, crop):
        a.setCheckable(True)
        shown.addAction(a)
    comp.setChecked(w.state.paste_back)
    crop.setChecked(not w.state.paste_back)
    v.addSeparator()
    panels = v.addMenu("&Panels")
    for dock in w.docks.values():
        panels.addAction(dock.toggleViewAction())
    panels.addSeparator()
    act(panels, "&Reset Layout", w.reset_layout)

    m = bar.addMenu("&Models")
    manager = act(m, "&Model Manager…", w.show_model_wizard)
    act(m, "&Reload Models", w.reload_models)

    h = bar.addMenu("&Help")
    about = act(h, "&About StyleCLIP Desktop", w.about)
    about.setMenuRole(QAction.MenuRole.AboutRole)

    return Actions(new, new_prompt, open_, save, save_as, export, export_anim, batch, quit_, undo, redo, zin, zout, fit, actual,
                   comp, crop, manager, recent, compare)


def fill_recent(w: MainWindow, menu: QMenu, files: list[str]) -> None:
    menu.clear()
    for i, path in enumerate(files):
        a = menu.addAction(f"&{i + 1} {Path(path).name}" if i < 9 else Path(path).name)
        a.setToolTip(path)
        a.setStatusTip(path)
        a.triggered.connect(lambda _c=False, p=path: w.open_path(Path(p)))
    if files:
        menu.addSeparator()
        menu.addAction("Clear Recent", w.projects.clear_recent)
    menu.setEnabled(bool(files))
