"""The editor's shared state: the open document, its undo stack and the render engine.

Panels observe this object (Qt signals) and change the document only by pushing
document commands through `push`, so every change is undoable and the history panel,
the canvas and the layer list stay in step. Nothing here blocks the UI thread: renders
run on the engine's worker and come back through `render_ready`.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from styleclip_desktop.document import Document
from styleclip_desktop.document.commands import Command

log = logging.getLogger(__name__)


class CommandAdapter(QUndoCommand):
    """A document command inside QUndoStack; merging is delegated to the command."""

    def __init__(self, command: Command) -> None:
        super().__init__(command.text)
        self.command = command
        self._first = True

    def redo(self) -> None:
        self.command.do()

    def undo(self) -> None:
        self.command.undo()

    def id(self) -> int:
        return int(self.command.id())

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 (Qt's name)
        if not isinstance(other, CommandAdapter):
            return False
        merged = bool(self.command.merge_with(other.command))
        if merged:
            self.setText(self.command.text)
            self.setObsolete(bool(self.command.is_obsolete()))
        return merged


class EditorState(QObject):
    document_replaced = Signal(object)  # the new Document, or None
    document_changed = Signal()  # any change to the open document (layers, alphas, timeline, ...)
    current_layer_changed = Signal(str)  # layer id, "" for none
    render_ready = Signal(object, bool)  # (HxWx3 uint8 image, is_preview)
    busy = Signal(str, int, int)  # (message, done, total); total 0 = indeterminate, done == total = finished
    error = Signal(str)  # a one-line message for the user (never a traceback)
    engine_changed = Signal(object)  # the new engine, or None

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.document: Document | None = None
        self.engine: Any | None = None  # styleclip_desktop.render.engine.Engine once models are loaded
        self.current_layer_id: str = ""
        self.undo_stack.indexChanged.connect(lambda _i: self.document_changed.emit())

    def set_document(self, doc: Document | None) -> None:
        self.undo_stack.clear()
        self.document = doc
        self.current_layer_id = doc.layers[len(doc.layers) - 1].id if doc is not None and len(doc.layers) else ""
        self.document_replaced.emit(doc)
        self.current_layer_changed.emit(self.current_layer_id)

    def set_engine(self, engine: Any | None) -> None:
        self.engine = engine
        self.engine_changed.emit(engine)

    def set_current_layer(self, layer_id: str) -> None:
        if layer_id != self.current_layer_id:
            self.current_layer_id = layer_id
            self.current_layer_changed.emit(layer_id)

    def push(self, command: Command) -> None:
        """Do `command` and record it for undo (merging a slider drag into one step)."""
        try:
            self.undo_stack.push(CommandAdapter(command))
        except Exception as exc:  # a refused change (locked layer, bad value) is a message, not a crash
            log.info("change refused: %s", exc)
            self.error.emit(str(exc))
