"""Projects: New, Open, Save, Save As, recent files, unsaved-changes prompts, autosave and
crash recovery.

Every action that would drop the open document asks first when it has unsaved changes.
While a document is dirty it is autosaved (`document.Autosaver`, polled by a timer); the
autosave is deleted when the document is saved or closed on purpose, so one found at the
next start means the app did not exit cleanly, and the user is offered to recover it.

Discarding the changes deletes the autosave at once and writes none until the document
changes again (if what was to replace it is cancelled, the user may go on editing). The
autosaver of a document that is replaced or closed is closed before the document goes, so
nothing the editor does while switching can write it again. At start, every document a
crash left with unsaved work is offered (untitled ones and saved projects alike); a "No"
deletes what was declined, so it is never offered twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSettings, QTimer, Signal
from PySide6.QtWidgets import QWidget

from styleclip_desktop import paths
from styleclip_desktop.document import (
    Autosaver,
    Document,
    ProjectFileError,
    RecoverableProject,
    autosave_for_project,
    clear_stale_temporaries,
    find_recoverable,
    forget_autosave,
    load_project,
    recover,
    save_project,
)
from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.engines import generator_of, identities_of
from styleclip_desktop.ui.error_report import ErrorPresenter, user_message
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)
MAX_RECENT = 10
AUTOSAVE_POLL_MS = 5000
THUMBNAIL_SIZE = 256


def autosave_dir() -> Path:
    return paths.data_dir() / "autosave"


def png_thumbnail(image: np.ndarray | None) -> bytes | None:
    if image is None:
        return None
    import io

    from PIL import Image

    thumb = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    out = io.BytesIO()
    thumb.save(out, format="PNG")
    return out.getvalue()


class ProjectController(QObject):
    recent_changed = Signal(list)
    notice = Signal(str)  # something worth a line in the status bar

    def __init__(self, state: EditorState, settings: QSettings, presenter: ErrorPresenter,
                 parent_widget: QWidget | None = None) -> None:
        super().__init__(parent_widget)
        self.state = state
        self.settings = settings
        self.presenter = presenter
        self.window = parent_widget
        self.autosaver: Autosaver | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(AUTOSAVE_POLL_MS)
        self._timer.timeout.connect(self.autosave_now_if_due)
        self._timer.start()
        state.document_replaced.connect(self._on_document)
        state.document_changed.connect(self.autosave_now_if_due)

    # -- recent files ------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent/files", [])
        items = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
        return [str(v) for v in items if v]

    def add_recent(self, path: Path) -> None:
        items = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        self.settings.setValue("recent/files", items[:MAX_RECENT])
        self.recent_changed.emit(items[:MAX_RECENT])

    def clear_recent(self) -> None:
        self.settings.setValue("recent/files", [])
        self.recent_changed.emit([])

    # -- closing -----------------------------------------------------------------------

    def maybe_close(self) -> bool:
        """True when the open document may be dropped (saved, discarded, or clean)."""
        doc = self.state.document
        if doc is None or not doc.dirty:
            return True
        answer = dialogs.ask_save_changes(self.window, doc.title)
        if answer == dialogs.SAVE:
            return self.save()
        if answer != dialogs.DISCARD:
            return False
        if self.autosaver is not None and self.autosaver.doc is doc:
            self.autosaver.discard_changes()
        return True

    def _close_autosaver(self) -> None:
        """Before the document goes: its autosave is no longer a crash leftover, and no
        signal sent while the next one arrives may write it again."""
        if self.autosaver is not None:
            self.autosaver.close()
            self.autosaver = None

    def close_document(self) -> None:
        """Drop the document on purpose: its autosave is no longer a crash leftover."""
        self._close_autosaver()
        self.state.set_document(None)

    def replace_document(self, doc: Document) -> None:
        self._close_autosaver()
        self.state.set_document(doc)
        mismatches = doc.model_mismatches(identities_of(self.state.engine)) if doc.models else []
        if mismatches and self.state.engine is not None:
            # A warning, not an error: the project opens and renders with the models at hand.
            self.notice.emit("; ".join(mismatches).capitalize() + ": the picture may differ from when it was saved.")

    # -- new -------------------------------------------------------------------------

    def new_from_seed(self, seed: int | None = None, psi: float = 0.7) -> Any:
        """File > New: a random face from the generator (the seed is kept in the project)."""
        if not self.maybe_close():
            return None
        seed = int(np.random.default_rng().integers(0, 2**31)) if seed is None else int(seed)
        engine = self.state.engine

        def make(_ctx: Any) -> np.ndarray:
            G = generator_of(engine)
            ws = G.broadcast_w(G.sample_w(1, seed, psi, device=G.const.device))
            return np.asarray(ws[0].detach().cpu().numpy(), np.float32)

        def done(latent: np.ndarray) -> None:
            G = generator_of(engine)
            doc = Document(latent, seed=seed, synthetic=bool(getattr(G, "synthetic", False)),
                           models=identities_of(engine), description=f"random face, seed {seed}")
            doc.mark_clean()  # a random face is nothing to save until the user edits it
            self.replace_document(doc)

        return self.state.run_job(make, "New face…", on_result=done)

    # -- open ------------------------------------------------------------------------

    def open_project(self, path: Path, ask: bool = True) -> bool:
        if ask and not self.maybe_close():
            return False
        try:
            autosave = autosave_for_project(path)
            live = self.autosaver.written_path if self.autosaver is not None else None
            if autosave is not None and live is not None and autosave.path == live:
                autosave = None  # the open document's own autosave, just discarded: not a crash
            if autosave is not None and dialogs.ask_recover(self.window, autosave):
                doc = recover(autosave)
            else:
                if autosave is not None:
                    forget_autosave(autosave, autosave_dir())  # declined: never offered again
                doc = load_project(path)
        except (ProjectFileError, OSError) as exc:
            log.info("cannot open %s: %s", path, exc)
            self.presenter.show(user_message(exc))
            return False
        self.replace_document(doc)
        self.add_recent(path)
        return True

    # -- save ------------------------------------------------------------------------

    def save(self) -> bool:
        doc = self.state.document
        if doc is None:
            return False
        if doc.file_path is None:
            return self.save_as()
        return self._save_to(doc.file_path)

    def save_as(self) -> bool:
        doc = self.state.document
        if doc is None:
            return False
        suggested = (doc.file_path.name if doc.file_path is not None
                     else (Path(doc.source.path).stem if doc.source is not None else "Untitled") + ".scproj")
        path = dialogs.save_path(self.window, self.settings, "Save Project As", suggested,
                                 start=dialogs.start_folder(doc, self.settings))
        return self._save_to(path) if path is not None else False

    def _save_to(self, path: Path) -> bool:
        doc = self.state.document
        assert doc is not None
        self._store_directions(doc)
        try:
            save_project(doc, path, thumbnail=png_thumbnail(self.state.image))
        except (ProjectFileError, OSError, ValueError) as exc:
            self.presenter.show(f"Could not save {path.name}: {user_message(exc)}")
            return False
        if self.autosaver is not None:
            self.autosaver.discard()
        self.add_recent(path)
        return True

    def _store_directions(self, doc: Document) -> None:
        """Put each text layer's resolved direction into the document before it is
        saved, so the project opens and exports where CLIP and fs3 are not."""
        store = getattr(self.state.engine, "store_directions", None)
        if store is None:
            return
        try:
            notices = store(doc)
        except Exception:  # a project saved without its directions still opens as before
            log.warning("could not store the global directions in the project", exc_info=True)
            return
        for notice in notices:
            self.notice.emit(notice[0].upper() + notice[1:] + ".")

    # -- autosave and recovery -----------------------------------------------------------

    def _on_document(self, doc: Document | None) -> None:
        if self.autosaver is not None and self.autosaver.doc is not doc:
            self.autosaver.close()  # replaced without going through this controller
        self.autosaver = (Autosaver(doc, autosave_dir(), thumbnail=lambda: png_thumbnail(self.state.image))
                          if doc is not None else None)

    def autosave_now_if_due(self) -> None:
        # While a document is being replaced the state still holds the old one; only the
        # autosaver of the open document writes.
        if self.autosaver is not None and self.autosaver.doc is self.state.document:
            self.autosaver.maybe_save()

    def offer_recovery(self) -> bool:
        """At start-up: offer every document a crash left with unsaved work (and remove the
        temporaries of autosaves killed mid-write). One is asked about with Yes or No;
        several are listed (`dialogs.ask_recover_many`): the chosen one opens, those the
        user discards are deleted, the rest stay for the next start. True when one opened."""
        folder = autosave_dir()
        clear_stale_temporaries(folder)
        found = find_recoverable(folder)
        if not found:
            return False
        chosen: RecoverableProject | None
        if len(found) == 1:
            chosen = found[0] if dialogs.ask_recover(self.window, found[0]) else None
            declined = [] if chosen is not None else found
        else:
            chosen, declined = dialogs.ask_recover_many(self.window, found)
        for item in declined:
            if item is not chosen:
                forget_autosave(item, folder)
        if chosen is None:
            return False
        try:
            doc = recover(chosen)
        except (ProjectFileError, OSError) as exc:
            self.presenter.show(f"Could not recover {chosen.title}: {user_message(exc)}")
            return False
        # The document keeps its uid (and its project path), so its autosaves go on
        # overwriting the file recovered from: it stays on disk until the user saves or
        # closes on purpose.
        self._close_autosaver()
        self.state.set_document(doc)
        if self.autosaver is not None:
            try:
                self.autosaver.save_now()  # takes ownership of the file, so closing deletes it
            except OSError as exc:
                log.warning("could not rewrite the recovered autosave: %s", exc)
        return True

    def shutdown(self) -> None:
        self._timer.stop()
