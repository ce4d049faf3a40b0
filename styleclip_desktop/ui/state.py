"""The editor's shared state: the open document, its undo stack and the render engine.

Panels observe this object (Qt signals) and change the document only by pushing
document commands through `push`, so every change is undoable and the history panel,
the canvas and the layer list stay in step. Nothing here blocks the UI thread: renders
run on the engine's worker and come back through `render_ready`.

The state also carries what every view shares about the open project: the last rendered
picture and the "original" (the same document with every layer at alpha 0, for the
before/after compare), whether the paste-back composite or the aligned crop is shown,
the project's dirty flag and path, and the long tasks the status bar shows.

One rule keeps the canvas and the controls honest: the canvas always shows the document
at the timeline's playhead. The state holds the playhead, so every render it is asked
for (a panel's, undo's, a model reload's) takes the animated layers' alphas at the
playhead and no caller can forget them; sliders show `shown_alpha`, the value on the
canvas; and a strength change on an animated layer keys the playhead instead of
changing a static value nothing shows.

While a slider moves, a preview request first asks the engine's alpha sweep for a
stand-in (`_show_stand_in`): the exact frame from the cache, or a blend of the two nearest
swept frames, shown at once; the exact preview then replaces the blend when it arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from styleclip_desktop.document import Document, actions
from styleclip_desktop.document.commands import Command, SetLayerAttr
from styleclip_desktop.document.timeline import LINEAR
from styleclip_desktop.errors import UserError
from styleclip_desktop.ui.jobs import TaskList, call_in_ui, watch

PREVIEW_KEY = "preview"
RENDER_KEY = "render"  # the keys the panels' render requests use too, so they supersede each other
ORIGINAL_KEY = "original"

log = logging.getLogger(__name__)


class CommandAdapter(QUndoCommand):
    """A document command inside QUndoStack; merging is delegated to the command."""

    def __init__(self, command: Command, done: bool = False) -> None:
        super().__init__(command.text)
        self.command = command
        # QUndoStack.push calls redo() at once; a command already done in Python (so that a
        # refusal raised there reaches the caller) must not be done twice.
        self._skip_redo = done

    def redo(self) -> None:
        if self._skip_redo:
            self._skip_redo = False
            return
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
    original_ready = Signal(object)  # HxWx3 uint8: the document with every layer at alpha 0
    paste_back_changed = Signal(bool)  # True: the edit pasted into the photo; False: the aligned crop
    dirty_changed = Signal(bool)
    file_path_changed = Signal(object)  # Path or None
    playhead_changed = Signal(int)  # the timeline frame the canvas shows

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.document: Document | None = None
        self.engine: Any | None = None  # styleclip_desktop.render.engine.Engine once models are loaded
        self.current_layer_id: str = ""
        self.tasks = TaskList(self)
        self.paste_back = True
        self.image: np.ndarray | None = None  # the picture last delivered by render_ready
        self.showing_stand_in = False  # that picture is a blend of swept frames, not the exact one
        self._preview_job: Any = None
        self.original: np.ndarray | None = None
        self._render_seq = 0
        self._shown_seq = 0
        self._original_seq = 0
        self.playhead = 0  # frame index into the document's timeline
        self._doc_hooks: list[tuple[Any, Callable[..., None]]] = []
        self.undo_stack.indexChanged.connect(lambda _i: self.document_changed.emit())

    def set_document(self, doc: Document | None) -> None:
        for emitter, callback in self._doc_hooks:
            emitter.disconnect(callback)
        self._doc_hooks = []
        self.undo_stack.clear()
        self.document = doc
        self.image = self.original = None
        self.playhead = 0  # a new document opens at its first frame; renders below take it
        if doc is not None:
            for emitter, callback in ((doc.events.dirty_changed, lambda e: self.dirty_changed.emit(bool(e.dirty))),
                                      (doc.events.file_path_changed, lambda e: self.file_path_changed.emit(e.path))):
                emitter.connect(callback)
                self._doc_hooks.append((emitter, callback))
        self.current_layer_id = doc.layers[len(doc.layers) - 1].id if doc is not None and len(doc.layers) else ""
        self.document_replaced.emit(doc)
        self.current_layer_changed.emit(self.current_layer_id)
        self.dirty_changed.emit(self.dirty)
        self.file_path_changed.emit(doc.file_path if doc is not None else None)

    def set_engine(self, engine: Any | None) -> None:
        self.engine = engine
        self.engine_changed.emit(engine)

    # -- project -----------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self.document is not None and self.document.dirty

    @property
    def title(self) -> str:
        return self.document.title if self.document is not None else ""

    # -- rendering ---------------------------------------------------------------------

    def set_paste_back(self, on: bool) -> None:
        if on != self.paste_back:
            self.paste_back = on
            self.paste_back_changed.emit(on)
            self.request_original()
            self.request_render()

    def _snapshot(self) -> Any:
        """What the worker may read while the UI thread goes on editing the document."""
        take = getattr(self.engine, "snapshot", None)
        if take is None:
            from styleclip_desktop.render.state import snapshot

            return snapshot(self.document)  # type: ignore[arg-type]
        return take(self.document)

    # -- the playhead ------------------------------------------------------------------

    def set_playhead(self, frame: int) -> None:
        """Move the playhead (clamped to the timeline); the caller asks for the frame's render."""
        doc = self.document
        frame = 0 if doc is None else max(0, min(int(frame), doc.timeline.frame_count - 1))
        if frame != self.playhead:
            self.playhead = frame
            self.playhead_changed.emit(frame)

    @property
    def playhead_frame(self) -> int:
        """The playhead, within the timeline as it is now (a shorter timeline clamps it)."""
        doc = self.document
        return 0 if doc is None else max(0, min(self.playhead, doc.timeline.frame_count - 1))

    @property
    def playhead_time(self) -> float:
        doc = self.document
        return 0.0 if doc is None else doc.timeline.frame_time(self.playhead_frame)

    def playhead_alphas(self) -> dict[str, float] | None:
        """Every layer's alpha at the playhead when the document has keyframes (what the
        canvas must show), None when nothing is animated (the static alphas are the truth)."""
        doc = self.document
        if doc is None or not doc.timeline.tracks:
            return None
        return dict(doc.frame_alphas(self.playhead_frame))

    def is_animated(self, layer_id: str) -> bool:
        doc = self.document
        return doc is not None and doc.timeline.has_keyframes(layer_id)

    def shown_alpha(self, layer_id: str) -> float:
        """The layer's alpha as the canvas shows it: its keyframes' value at the playhead,
        else its static alpha."""
        doc = self.document
        if doc is None:
            raise KeyError(layer_id)
        return float(doc.alpha_at(layer_id, self.playhead_time))

    def animated_alpha(self, layer_id: str) -> float | None:
        """`shown_alpha` for a layer with keyframes, None for one without (its static alpha
        is what the canvas shows)."""
        return self.shown_alpha(layer_id) if self.is_animated(layer_id) else None

    def supersede_renders(self) -> None:
        """Another view (the timeline's frame renderer) has put a newer picture of the
        playhead on the canvas: renders asked for earlier are dropped when they arrive, and
        nobody needs to ask for one on its behalf."""
        self._render_seq += 1
        self._shown_seq = self._render_seq

    def _keyed(self, command: Command) -> Command:
        """A strength change on an animated layer keys the playhead (its keyframes, not its
        static alpha, are what the canvas shows), as animation editors do once a property
        has keyframes."""
        doc = self.document
        if (doc is None or not isinstance(command, SetLayerAttr) or command.attr != "alpha"
                or command.doc is not doc or not self.is_animated(command.layer_id)):
            return command
        t = self.playhead_time
        here = next((k for k in doc.timeline.keyframes(command.layer_id) if k.t == t), None)
        easing = here.easing if here is not None else LINEAR
        return actions.set_keyframe(doc, command.layer_id, t, float(command.new), easing,
                                    merge_key=command.merge_key)

    # -- renders -----------------------------------------------------------------------

    def request_render(self, preview: bool = False) -> Any:
        """Render the document at the playhead on the engine's worker; the picture arrives
        through `render_ready` on the UI thread. A result older than one already shown is
        dropped, so a slow full render never replaces a newer preview. Returns the job."""
        if self.engine is None or self.document is None:
            return None
        self._render_seq += 1
        seq = self._render_seq
        snap, alphas = self._snapshot(), self.playhead_alphas()
        if preview and self._show_stand_in(seq, snap, alphas):
            if self._preview_job is not None:
                self._preview_job.cancel()  # a preview still waiting would show an older position
            return None  # the exact frame was in the cache: nothing is left to render
        try:
            job = self.engine.submit_render(snap, alphas, preview=preview,
                                            paste_back=self.paste_back, key=PREVIEW_KEY if preview else RENDER_KEY)
        except UserError as exc:
            self.error.emit(str(exc))
            return None
        if preview:
            self._preview_job = job
        paste_back = self.paste_back
        cancelled = [False]

        def cancel() -> None:
            cancelled[0] = True  # a render that has started runs to its end: drop its picture
            job.cancel()

        # A task, so a slow render (full size on a CPU) shows progress and Cancel.
        task = self.tasks.begin("Rendering the preview…" if preview else "Rendering…", cancel=cancel)

        def shown(result: Any) -> None:
            self.tasks.end(task)
            if seq < self._shown_seq or paste_back != self.paste_back or cancelled[0]:
                return
            self._shown_seq = seq
            self.image = np.asarray(getattr(result, "image", result))
            self.showing_stand_in = False
            self.render_ready.emit(self.image, preview)

        def failed(exc: BaseException) -> None:
            self.tasks.end(task)
            self._render_failed(exc)

        watch(job, shown, failed, lambda: self.tasks.end(task), owner=self)
        return job

    def _show_stand_in(self, seq: int, snap: Any, alphas: Mapping[str, float] | None) -> bool:
        """While a slider moves, show at once what the engine's alpha sweep has for the
        current layer here: the exact frame (True: nothing is left to render) or a blend of
        the two nearest swept frames (False), a stand-in the exact render then replaces."""
        find = getattr(getattr(self.engine, "sweeps", None), "stand_in", None)
        if find is None or not self.current_layer_id:
            return False
        try:
            found = find(snap, alphas, self.current_layer_id, paste_back=self.paste_back)
        except Exception:  # a stand-in is a courtesy: the exact render reports real problems
            log.debug("no stand-in frame", exc_info=True)
            return False
        if found is None:
            return False
        self._shown_seq = seq
        self.image = np.asarray(found.image)
        self.showing_stand_in = bool(found.blended)
        self.render_ready.emit(self.image, True)
        return not found.blended

    def request_original(self) -> Any:
        """Render the document with every layer switched off (the "before" of a compare)."""
        doc = self.document
        if self.engine is None or doc is None:
            return None
        self._original_seq += 1
        seq = self._original_seq
        off: Mapping[str, float] = {layer.id: 0.0 for layer in doc.layers}
        try:
            job = self.engine.submit_render(self._snapshot(), off, preview=False, paste_back=self.paste_back,
                                            key=ORIGINAL_KEY)
        except UserError as exc:
            self.error.emit(str(exc))
            return None

        def shown(result: Any) -> None:
            if seq == self._original_seq:
                self.original = np.asarray(getattr(result, "image", result))
                self.original_ready.emit(self.original)

        watch(job, shown, self._render_failed, owner=self)
        return job

    def _render_failed(self, exc: BaseException) -> None:
        if isinstance(exc, UserError):
            self.error.emit(str(exc))
        else:
            log.error("render failed", exc_info=exc)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.error.emit(f"Rendering failed: {first}")

    def run_job(self, fn: Callable[[Any], Any], message: str, *, on_result: Callable[[Any], None],
                on_error: Callable[[BaseException], None] | None = None,
                on_cancel: Callable[[], None] | None = None, key: str | None = None) -> Any:
        """Run `fn(ctx)` on the engine's worker as a task the status bar shows with progress
        (ctx.progress(done, total, message)) and a Cancel button. Once cancel is asked,
        `on_cancel` is called, never `on_result`, even when `fn` runs to its end."""
        if self.engine is None:
            raise UserError("the models are still loading; try again in a moment")
        from styleclip_desktop.errors import Cancelled
        from styleclip_desktop.render.worker import Priority

        def guarded(ctx: Any) -> Any:
            result = fn(ctx)
            if ctx.cancelled():
                raise Cancelled()  # asked to stop, it ran to its end anyway: still a cancel, not a result
            return result

        holder: list[Any] = []
        task = self.tasks.begin(message, cancel=lambda: holder[0].cancel() if holder else None)
        job = self.engine.worker.submit(guarded, Priority.INTERACTIVE, key=key,
                                        on_progress=lambda d, t, m: self.tasks.update(task, d, t, m))
        holder.append(job)

        def finish(callback: Callable[..., None] | None, *args: Any) -> None:
            self.tasks.end(task)
            if callback is not None:
                callback(*args)

        watch(job, lambda v: finish(on_result, v),
              lambda e: finish(on_error or self._render_failed, e),
              lambda: finish(on_cancel), owner=self)
        return job

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        call_in_ui(fn)

    def set_current_layer(self, layer_id: str) -> None:
        if layer_id != self.current_layer_id:
            self.current_layer_id = layer_id
            self.current_layer_changed.emit(layer_id)

    def push(self, command: Command) -> None:
        """Do `command` and record it for undo (merging a slider drag into one step).

        A strength change on an animated layer becomes a keyframe at the playhead."""
        command = self._keyed(command)
        index = self.undo_stack.index()
        # Exceptions raised inside a Python redo() called from QUndoStack never reach this
        # frame, so the command is done here first: a refusal leaves no undo step behind.
        try:
            command.do()
        except Exception as exc:  # a refused change (locked layer, bad value) is a message, not a crash
            log.info("change refused: %s", exc)
            self.error.emit(str(exc))
            return
        self.undo_stack.push(CommandAdapter(command, done=True))
        if self.undo_stack.index() == index:
            # Merged into the previous step (a slider drag): the stack's index did not move,
            # so indexChanged stayed silent, but the document did change.
            self.document_changed.emit()
