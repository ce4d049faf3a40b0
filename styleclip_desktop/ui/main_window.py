"""The editor's main window: the canvas in the middle, the panels docked around it.

The window wires the pieces together and owns the user's habits: dock layout, window
geometry and recent files persist in QSettings. Heavy work never runs here: models load
on a thread (`loader`), photos import and renders run on the engine's worker.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeyEvent
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QUndoView, QWidget

from styleclip_desktop import __version__, paths
from styleclip_desktop.document import PROJECT_SUFFIX
from styleclip_desktop.errors import UserError
from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.canvas import Canvas
from styleclip_desktop.ui.compare import CompareMode
from styleclip_desktop.ui.engines import clip_of, is_synthetic
from styleclip_desktop.ui.error_report import ErrorPresenter
from styleclip_desktop.ui.exporting import export_image, open_animation_dialog, stills_module
from styleclip_desktop.ui.import_flow import PhotoImporter
from styleclip_desktop.ui.loader import ModelLoader
from styleclip_desktop.ui.menus import build_menus, fill_recent
from styleclip_desktop.ui.model_source import DEMO_LABEL, ModelSource
from styleclip_desktop.ui.panels.domain_actions import DomainActions
from styleclip_desktop.ui.panels.editing import restore_beta, save_beta
from styleclip_desktop.ui.projects import ProjectController
from styleclip_desktop.ui.state import EditorState
from styleclip_desktop.ui.status import StatusBar

log = logging.getLogger(__name__)
APP_TITLE = "StyleCLIP Desktop"
LAYOUT_VERSION = 1

# (object name, title, module, class, area)
PANELS = (
    ("promptDock", "Prompt", "prompt_panel", "PromptPanel", Qt.DockWidgetArea.LeftDockWidgetArea),
    ("slidersDock", "Sliders", "sliders_panel", "SlidersPanel", Qt.DockWidgetArea.LeftDockWidgetArea),
    ("maskDock", "Mask", "mask_panel", "MaskPanel", Qt.DockWidgetArea.LeftDockWidgetArea),
    ("layersDock", "Layers", "layers_panel", "LayersPanel", Qt.DockWidgetArea.RightDockWidgetArea),
    ("propertiesDock", "Properties", "properties_panel", "PropertiesPanel", Qt.DockWidgetArea.RightDockWidgetArea),
    ("timelineDock", "Timeline", "timeline_panel", "TimelinePanel", Qt.DockWidgetArea.BottomDockWidgetArea),
)


def make_panel(module: str, cls: str, state: EditorState, title: str) -> QWidget:
    """The panel, or a placeholder saying why it is missing: one broken panel must not keep
    the editor from starting."""
    try:
        panel = getattr(importlib.import_module(f"styleclip_desktop.ui.panels.{module}"), cls)(state)
    except Exception as exc:
        log.exception("the %s panel could not be created", title)
        placeholder = QLabel(f"The {title} panel is not available ({type(exc).__name__}).")
        placeholder.setWordWrap(True)
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        return placeholder
    return panel  # type: ignore[no-any-return]


def display_name(doc: Any) -> str:
    """The project's name; an unsaved photo goes by the photo's name until it is saved."""
    if doc.file_path is None and doc.source is not None:
        return Path(doc.source.path.replace("\\", "/")).name
    return str(doc.title)


class AutoRender:
    """Renders after changes nobody asked a render for (undo, redo, the history panel):
    the panels request their own renders, so a change followed by a request is skipped."""

    def __init__(self, state: EditorState) -> None:
        self.state = state
        self._seq_at_change = 0
        self._timer = QTimer(state)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._fire)
        state.undo_stack.indexChanged.connect(self._changed)
        state.document_replaced.connect(lambda _doc: self.refresh_all())
        state.engine_changed.connect(lambda _engine: self.refresh_all())

    def _changed(self, _index: int) -> None:
        if not self._timer.isActive():
            self._seq_at_change = self.state._render_seq
            self._timer.start()

    def _fire(self) -> None:
        if self.state._render_seq == self._seq_at_change:
            self.state.request_render(preview=False)

    def refresh_all(self) -> None:
        self.state.request_original()
        self.state.request_render(preview=False)


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings, source: ModelSource, *, state: EditorState | None = None,
                 presenter: ErrorPresenter | None = None, engine_options: dict[str, Any] | None = None,
                 models_dir: Path | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.source = source
        # The user's models folder, where the model manager downloads and imports to (the
        # demo set lives elsewhere).
        self.models_dir = models_dir or (paths.models_dir() if source.demo else source.models_dir)
        self.state = state or EditorState(self)
        self.presenter = presenter or ErrorPresenter(lambda: self)
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.canvas = Canvas(self.state, self)
        self.setCentralWidget(self.canvas)
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}
        self._build_docks()
        bind_canvas = getattr(self.panels.get("maskDock"), "bind_canvas", None)
        if bind_canvas is not None:  # the Mask panel drives the canvas's mask tool
            bind_canvas(self.canvas)
        self.status = StatusBar(self.state, self)
        self.setStatusBar(self.status)
        self.projects = ProjectController(self.state, settings, self.presenter, self)
        self.importer = PhotoImporter(self.state, self.canvas, self.projects, source, self)
        self.loader = ModelLoader(self.state, self, engine_options)
        self.auto_render = AutoRender(self.state)
        self.wizard: Any = None
        self._own_engine: Any = None
        self.demo_resolution: int | None = None  # None: the size `models synthesize` writes
        self.domain_actions = DomainActions(self.state, settings, self)
        self.actions_ = build_menus(self)
        self.actions_.export_image.setEnabled(False)
        self.actions_.export_animation.setEnabled(False)
        self.actions_.batch_apply.setEnabled(False)
        self._default_layout = self.saveState(LAYOUT_VERSION)
        fill_recent(self, self.actions_.recent_menu, self.projects.recent_files())
        self.projects.recent_changed.connect(lambda files: fill_recent(self, self.actions_.recent_menu, files))
        self.state.error.connect(self.presenter.show)
        self.presenter.add_claim(getattr(self.panels.get("layersDock"), "claim_error", None))
        for signal in (self.state.dirty_changed, self.state.file_path_changed, self.state.document_replaced,
                       self.state.engine_changed):
            signal.connect(self._update_title)
        self.state.document_replaced.connect(self._update_enabled)
        self.state.document_changed.connect(self._update_batch_enabled)
        self.state.engine_changed.connect(self._update_enabled)
        self.canvas.zoom_changed.connect(self.status.set_zoom)
        self.importer.missing_models.connect(lambda _feature, message: self.show_model_wizard(message))
        self.importer.status.connect(lambda text: self.status.showMessage(text, 5000))
        self.importer.notice.connect(lambda text: self.status.showMessage(text, 15000))
        self.presenter.add_action("Open Model Manager", lambda message: "Models > Model Manager" in message,
                                  self.show_model_wizard)
        self.projects.notice.connect(lambda text: self.status.showMessage(text, 15000))
        self.loader.finished.connect(self._models_loaded)
        self.loader.failed.connect(self._models_failed)
        self.loader.cancelled.connect(lambda: self.status.set_models_text("Models not loaded (cancelled)", True))
        self._restore_settings()
        self._update_title()
        self._update_enabled()

    # -- layout ----------------------------------------------------------------------

    def _build_docks(self) -> None:
        for name, title, module, cls, area in PANELS:
            self._add_dock(name, title, make_panel(module, cls, self.state, title), area)
        history = QUndoView(self.state.undo_stack)
        history.setEmptyLabel("Opened")
        self._add_dock("historyDock", "History", history, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.docks["propertiesDock"], self.docks["historyDock"])
        self.docks["propertiesDock"].raise_()
        self.tabifyDockWidget(self.docks["promptDock"], self.docks["slidersDock"])
        self.tabifyDockWidget(self.docks["slidersDock"], self.docks["maskDock"])
        self.docks["promptDock"].raise_()
        d = self.docks
        self.resizeDocks([d["promptDock"], d["layersDock"]], [300, 380], Qt.Orientation.Horizontal)
        # At the default 1400x900: five layers in the list and three timeline tracks, unscrolled.
        self.resizeDocks([d["layersDock"], d["propertiesDock"]], [400, 320], Qt.Orientation.Vertical)
        self.resizeDocks([d["timelineDock"]], [215], Qt.Orientation.Vertical)

    def _add_dock(self, name: str, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[name] = dock
        self.panels[name] = widget

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        layout = self.settings.value("window/state")
        if layout is not None:
            self.restoreState(layout, LAYOUT_VERSION)
        restore_beta(self.state, self.settings)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        save_beta(self.state, self.settings)
        self.settings.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_layout, LAYOUT_VERSION)

    def _update_title(self, *_: Any) -> None:
        doc = self.state.document
        parts = [f"{display_name(doc)}[*]"] if doc is not None else []
        if self.source.demo or (doc is not None and doc.synthetic):
            parts.append(DEMO_LABEL)
        # The application's name comes last, once: Qt appends the display name on Windows
        # and Linux unless the title already ends with it.
        self.setWindowTitle(" — ".join([*parts, APP_TITLE]))
        self.setWindowModified(self.state.dirty)

    def _update_enabled(self, *_: Any) -> None:
        has_doc, has_engine = self.state.document is not None, self.state.engine is not None
        a = self.actions_
        for action in (a.save, a.save_as):
            action.setEnabled(has_doc)
        a.export_image.setEnabled(has_doc and has_engine and stills_module() is not None)
        a.export_animation.setEnabled(has_doc and has_engine)
        for action in (a.new, a.new_from_prompt):
            action.setEnabled(has_engine)
        self._update_batch_enabled()

    def _update_batch_enabled(self) -> None:
        doc = self.state.document
        self.actions_.batch_apply.setEnabled(doc is not None and len(doc.layers) > 0)

    # -- models ------------------------------------------------------------------------

    def start(self) -> None:
        """After the window is shown: offer crash recovery, then load the models (or ask for them)."""
        self.projects.offer_recovery()
        if self.source.demo or self.source.has_generator():
            self.load_models(self.source)
        else:
            self.status.set_models_text("No generator installed", True)
            self.status.set_engine(None)
            self.show_model_wizard("No StyleGAN2 generator is installed yet: download one, import a file you "
                                   "have, or try the synthetic demo models.")

    def load_models(self, source: ModelSource) -> None:
        self.source = source
        self.importer.set_source(source)
        self.status.set_models_text(DEMO_LABEL if source.demo else "", source.demo)
        self._update_title()
        if self.wizard is not None:
            self.wizard.set_demo_in_use(source.demo)
        self.loader.start(source)

    def reload_models(self) -> None:
        self.load_models(self.source)

    def _models_loaded(self, engine: Any, notices: list[str]) -> None:
        self._own_engine = engine
        text = DEMO_LABEL if self.source.demo else ("synthetic models" if is_synthetic(engine) else "")
        if clip_of(engine) is None:
            text = "; ".join(t for t in (text, "text edits unavailable (Models > Model Manager…)") if t)
        self.status.set_models_text(text, bool(text))
        for notice in notices:
            self.status.showMessage(notice, 15000)
            log.info("%s", notice)

    def _models_failed(self, message: str) -> None:
        self.status.set_models_text("Models not loaded", True)
        self.show_model_wizard(message)

    def show_model_wizard(self, reason: str = "", focus: str | None = None) -> Any:
        """The model manager; `focus` (or a catalog id named in `reason`) is the model selected."""
        from styleclip_desktop.ui.model_wizard import ModelWizard, model_mentioned

        focus = focus or (model_mentioned(reason) if reason else None)
        if self.wizard is not None and self.wizard.isVisible():
            if focus:
                self.wizard.select_model(focus)
            self.wizard.raise_()
            return self.wizard
        self.wizard = ModelWizard(self.models_dir, self, reason, demo_resolution=self.demo_resolution,
                                  demo_in_use=self.source.demo, focus=focus)
        self.wizard.models_changed.connect(self._models_installed)
        self.wizard.demo_chosen.connect(self.use_demo)
        self.wizard.real_chosen.connect(self.use_own_models)
        self.wizard.setModal(False)
        self.wizard.show()
        return self.wizard

    def _models_installed(self) -> None:
        """A model arrived: switch from nothing (or the demo set) to the user's own models."""
        real = ModelSource(self.models_dir, device=self.source.device)
        if real.has_generator() and (self.state.engine is None or self.source.demo):
            self.settings.setValue("models/use_demo", False)
            self.load_models(real)
        elif not self.source.demo:
            self.importer.set_source(self.source)

    def use_own_models(self) -> None:
        """From the demo set back to the models folder (the model manager's Use My Models)."""
        real = ModelSource(self.models_dir, device=self.source.device)
        if real.has_generator():
            self.settings.setValue("models/use_demo", False)
            self.load_models(real)

    def use_demo(self, source: ModelSource) -> None:
        self.settings.setValue("models/use_demo", True)
        self.load_models(source.with_device(self.source.device))

    # -- documents ---------------------------------------------------------------------

    def new_document(self) -> None:
        if self.state.engine is None:
            raise UserError("The models are still loading; try again in a moment.")
        self.projects.new_from_seed()

    def new_from_prompt(self) -> None:
        from styleclip_desktop.ui.generate_dialog import GenerateDialog

        if self.state.engine is None:
            raise UserError("The models are still loading; try again in a moment.")
        GenerateDialog(self.state, self.projects, self).open()

    def open_dialog(self) -> None:
        path = dialogs.open_path(self, self.settings, start=dialogs.start_folder(self.state, self.settings, kind="open"))
        if path is not None:
            self.open_path(path)

    def open_path(self, path: Path) -> None:
        if not path.exists():
            raise UserError(f"{path} does not exist (moved or deleted?)")
        if path.suffix.lower() == PROJECT_SUFFIX:
            self.projects.open_project(path)
        else:
            self.importer.open_photo(path)

    def export_image(self) -> Any:
        return export_image(self.state, self.settings, self)

    def export_animation(self) -> Any:
        """File > Export Animation…: the timeline as MP4, GIF or WebP (the dialog, returned)."""
        return open_animation_dialog(self.state, self.settings, self)

    def batch_apply(self) -> Any:
        """File > Batch Apply…: this document's layers over many photos (the dialog, returned)."""
        from styleclip_desktop.batch.recipe import BatchOutputs, recipe_from_document
        from styleclip_desktop.ui.batch_dialog import open_batch_dialog

        doc = self.state.document
        if doc is None:
            raise UserError("open a document with layers first: the batch applies its layers to each photo")
        return open_batch_dialog(self, recipe_from_document(doc, BatchOutputs(), display_name(doc)))

    def set_compare(self, mode: CompareMode) -> None:
        self.canvas.set_compare(mode)
        self.actions_.compare[mode].setChecked(True)

    def about(self) -> None:
        QMessageBox.about(self, APP_TITLE, f"<b>{APP_TITLE}</b> {__version__}<br>Edit portraits with text: "
                                           "StyleGAN2 + CLIP, running on this computer.")

    # -- Qt events ---------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        # Holding backslash shows the original wherever the focus is, unless a text field took the key.
        if event.key() == Qt.Key.Key_Backslash:
            self.canvas.keyPressEvent(event)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() == Qt.Key.Key_Backslash:
            self.canvas.keyReleaseEvent(event)
        else:
            super().keyReleaseEvent(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt's name)
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt's name)
        files = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_path(files[0])

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        if not self.projects.maybe_close():
            event.ignore()
            return
        self.save_settings()
        from styleclip_desktop.ui.batch_dialog import BatchDialog

        batch = self.findChild(BatchDialog)
        if batch is not None:  # a batch stops with the editor; what it finished stays recorded
            batch.abandon()
        self.projects.close_document()
        self.projects.shutdown()
        if self.loader.running:
            self.loader.cancel()
        engine = self.state.engine
        self.state.set_engine(None)
        if engine is not None and engine is self._own_engine:  # one handed in belongs to the caller
            engine.shutdown()
        event.accept()
