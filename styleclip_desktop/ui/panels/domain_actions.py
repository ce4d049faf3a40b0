"""The Layer menu's domain entries: add a domain layer from a file (a `.domain` the app
wrote, or a published StyleGAN-NADA generator) and train one from text.

Reading a file runs on the engine's worker (a full-size generator checkpoint takes a few
seconds); the layer arrives as one undoable step, on top of the stack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from styleclip_desktop.document import DomainParams, actions
from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.engines import generator_of, identities_of
from styleclip_desktop.ui.panels.engine_link import EngineLink, user_message
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)

DOMAIN_SUFFIX = ".domain"
DOMAIN_FILTER = ("Domains (*.domain *.pt);;StyleCLIP domains (*.domain);;"
                 "StyleGAN-NADA generators (*.pt);;All files (*)")


def base_identity(engine: Any) -> str:
    """The sha256 of the engine's generator ("" when unknown)."""
    return identities_of(engine).get("generator", "")


def read_domain(path: Path, engine: Any) -> DomainParams:
    """A domain layer's parameters from `path`, checked against the engine's generator."""
    from styleclip_desktop.methods import domain_file

    return domain_file.load_domain_layer(path, generator_of(engine), base_identity(engine))


def add_domain_layer(state: EditorState, params: DomainParams) -> str | None:
    """Put `params` on top of the stack as one undo step and select it; its id."""
    doc = state.document
    if doc is None:
        state.error.emit("Open a photo or a project before adding a domain layer.")
        return None
    before = set(doc.layers.ids())
    state.push(actions.add_layer(doc, params))
    added = [i for i in doc.layers.ids() if i not in before]
    if not added:
        return None
    state.set_current_layer(added[0])
    EngineLink.of(state).request_render(preview=False)
    return added[0]


class DomainActions(QObject):
    """"Add Domain Layer from File…" and "Train Domain…", for the window's Layer menu."""

    added = Signal(str)  # the new layer's id

    def __init__(self, state: EditorState, settings: QSettings, window: QWidget) -> None:
        super().__init__(window)
        self.state = state
        self.settings = settings
        self.window = window
        self.link = EngineLink.of(state)
        self.dialog: Any = None
        self.from_file = QAction("Add Domain Layer from &File…", window)
        self.from_file.setStatusTip("A domain saved from this app (.domain) or a StyleGAN-NADA generator (.pt)")
        self.from_file.triggered.connect(lambda _checked=False: self.add_from_file())
        self.train = QAction("&Train Domain…", window)
        self.train.setStatusTip("Move the whole generator to a new look described by text (StyleGAN-NADA)")
        self.train.triggered.connect(lambda _checked=False: self.open_trainer())
        state.document_replaced.connect(lambda _doc: self.update())
        state.engine_changed.connect(lambda _engine: self.update())
        self.update()

    def fill_menu(self, menu: QMenu) -> None:
        menu.addSeparator()
        menu.addAction(self.from_file)
        menu.addAction(self.train)

    def update(self) -> None:
        ready = self.state.document is not None and self.state.engine is not None
        self.from_file.setEnabled(ready)
        self.train.setEnabled(ready)

    def _ready(self) -> bool:
        if self.state.document is None:
            self.state.error.emit("Open a photo or a project before adding a domain layer.")
            return False
        if self.state.engine is None:
            self.state.error.emit("The models are still loading; try again in a moment.")
            return False
        return True

    def add_from_file(self, path: Path | None = None) -> None:
        if not self._ready():
            return
        if path is None:
            path = dialogs.open_path(self.window, self.settings, "Add Domain Layer", DOMAIN_FILTER, kind="domain")
            if path is None:
                return
        engine, doc = self.state.engine, self.state.document

        def done(params: Any) -> None:
            if self.state.document is not doc:  # another document was opened meanwhile
                return
            layer_id = add_domain_layer(self.state, params)
            if layer_id:
                self.added.emit(layer_id)

        def failed(exc: BaseException) -> None:
            log.info("domain file %s refused: %s", path, exc)
            self.state.error.emit(user_message(exc, f"Reading {path.name}"))

        self.link.run_in_worker(lambda: read_domain(path, engine), done, key=f"domain-file:{path}",
                                on_error=failed)

    def open_trainer(self) -> Any:
        """The Train Domain dialog (one at a time; returned)."""
        if not self._ready():
            return None
        from styleclip_desktop.ui.domain_dialog import DomainDialog

        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.raise_()
            return self.dialog
        self.dialog = DomainDialog(self.state, self.settings, self.window)
        self.dialog.layer_added.connect(self.added.emit)
        self.dialog.show()
        return self.dialog
