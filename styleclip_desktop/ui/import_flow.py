"""Opening a photo: detect -> (choose a face | place landmarks) -> align -> invert.

Detection and inversion run on the engine's worker as status-bar tasks with Cancel. The
canvas takes over in between: with several faces the user clicks one; with none, the
user drags four handles onto the eyes and mouth corners. Opening a photo needs the e4e
encoder; when it is missing the model wizard is asked to say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from styleclip_desktop.errors import UserError
from styleclip_desktop.ui.canvas import Canvas
from styleclip_desktop.ui.engines import generator_of, identities_of
from styleclip_desktop.ui.landmarks import default_landmarks
from styleclip_desktop.ui.model_source import ModelSource
from styleclip_desktop.ui.projects import ProjectController
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)

NO_FACE_HINT = ("Place the face yourself: drag the four points onto the two eyes and the two mouth corners, "
                "then press \u201cUse these points\u201d (Enter). Esc cancels.")
FALLBACK_NOTICE = ("The faces were found by the basic offline detector (the YuNet face detector is not "
                   "installed; Models > Model Manager\u2026 can download it), so their points are estimates.")
UNSURE = "unsure"


def no_face_text(exc: Any) -> str:
    """What the canvas says when detection found nothing (a `NoFaceError`), in words."""
    text = f"No face was found in {getattr(exc, 'photo_name', 'the photo')}"
    if getattr(exc, "detector_missing", False):
        text += (" by the basic offline detector (the YuNet face detector is not installed; "
                 "Models > Model Manager\u2026 can download it)")
    return text + "."


def several_faces_text(photo: Any, name: str) -> str:
    """The banner over the face boxes: how many, which are doubtful, which detector."""
    unsure = sum(photo.is_low_confidence(i) for i in range(photo.count))
    text = f"{photo.count} faces found in {name}"
    if unsure:
        text += f" ({unsure} {UNSURE}, marked \u201c?\u201d: the detector was not confident)"
    text += ": click the face to edit (Esc cancels)."
    if photo.fallback:
        text += " " + FALLBACK_NOTICE
    return text


@dataclass
class _Pending:
    path: Path
    photo: Any  # render.photo_import.PhotoFaces


class PhotoImporter(QObject):
    missing_models = Signal(str, str)  # (feature name, message)
    imported = Signal(object)  # the new Document
    status = Signal(str)
    notice = Signal(str)  # a warning worth a longer look than a status line

    def __init__(self, state: EditorState, canvas: Canvas, projects: ProjectController,
                 source: ModelSource, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.canvas = canvas
        self.projects = projects
        self.source = source
        self._encoder: tuple[Path, Any] | None = None
        self._pending: _Pending | None = None
        canvas.landmarks_accepted.connect(self._on_landmarks)
        canvas.face_chosen.connect(self._on_face)
        canvas.pick_cancelled.connect(self._on_pick_cancelled)

    def set_source(self, source: ModelSource) -> None:
        if source != self.source:
            self.source = source
            self._encoder = None

    # -- step 1: find the faces ----------------------------------------------------------

    def open_photo(self, path: Path, landmarks: np.ndarray | None = None, ask: bool = True) -> Any:
        """Start opening `path`; `landmarks` (4 x 2, photo pixels) skip detection."""
        if self.state.engine is None:
            raise UserError("The models are still loading; open the photo again in a moment.")
        e4e = self.source.e4e_path()
        if e4e is None:
            self.missing_models.emit("invert", "Opening your own photo needs the e4e encoder (e4e-ffhq), "
                                               "which is not installed.")
            return None
        if ask and not self.projects.maybe_close():
            return None
        detector = self.source.detector_path()
        self.status.emit("")  # a warning about the previous photo no longer applies

        def find(_ctx: Any) -> Any:
            from styleclip_desktop.faces.detect import NoFaceError
            from styleclip_desktop.faces.imaging import load_image
            from styleclip_desktop.render.photo_import import PhotoFaces, find_faces

            try:
                return find_faces(path, detector, landmarks), ""
            except NoFaceError as exc:
                img = load_image(path)
                return PhotoFaces(path, img.data, img.pixels, []), no_face_text(exc)

        return self.state.run_job(find, f"Finding faces in {path.name}…", key="import",
                                  on_result=lambda found: self._found(path, *found), on_error=self._failed,
                                  on_cancel=lambda: self.status.emit("Opening the photo was cancelled."))

    def _found(self, path: Path, photo: Any, message: str) -> None:
        self._pending = _Pending(path, photo)
        h, w = photo.pixels.shape[:2]
        if photo.count == 0:
            text = (message or f"No face was found in {path.name}.") + " " + NO_FACE_HINT
            self.canvas.edit_landmarks(photo.pixels, default_landmarks(w, h), text)
        elif photo.count > 1:
            notes = ["?" if photo.is_low_confidence(i) else "" for i in range(photo.count)]
            self.canvas.choose_face(photo.pixels, photo.faces, several_faces_text(photo, path.name), notes)
        else:
            if photo.fallback:
                self.notice.emit(FALLBACK_NOTICE)
            self._invert(0)

    def _on_landmarks(self, points: np.ndarray) -> None:
        if self._pending is not None:
            self._pending.photo.faces = [np.asarray(points, np.float64).reshape(4, 2)]
            self._invert(0)

    def _on_face(self, index: int) -> None:
        if self._pending is not None:
            self._invert(index)

    def _on_pick_cancelled(self) -> None:
        self._pending = None
        self.status.emit("Opening the photo was cancelled.")

    # -- step 2: align and invert -----------------------------------------------------------

    def _invert(self, face: int) -> Any:
        pending = self._pending
        assert pending is not None
        engine = self.state.engine
        e4e = self.source.e4e_path()
        if e4e is None:
            self.missing_models.emit("invert", "Opening your own photo needs the e4e encoder (e4e-ffhq).")
            return None

        stop: list[Any] = []  # the job's cancel flag, set once it runs

        def run(ctx: Any) -> Any:
            from styleclip_desktop.render.photo_import import import_photo

            stop.append(ctx.cancel_event)
            G = generator_of(engine)
            ctx.progress(0, 3, "Loading the photo encoder…")
            encoder = self._load_encoder(e4e, G)
            doc = import_photo(pending.photo, G, encoder, face=face, progress=ctx.progress,
                               cancelled=ctx.cancelled)
            ctx.check()
            return doc

        def finished(doc: Any) -> None:
            # Cancel pressed after the last step but before the result arrived still cancels.
            if stop and stop[0].is_set():
                self._cancelled()
            else:
                self._done(pending.path, doc)

        return self.state.run_job(run, f"Opening {pending.path.name}…", key="import",
                                  on_result=finished, on_error=self._failed, on_cancel=self._cancelled)

    def _cancelled(self) -> None:
        """The open document stays exactly as it was."""
        self._pending = None
        self.status.emit("Opening the photo was cancelled.")

    def _load_encoder(self, path: Path, G: Any) -> Any:
        """The e4e encoder, kept between photos (runs on the worker)."""
        if self._encoder is not None and self._encoder[0] == path:
            return self._encoder[1]
        from styleclip_desktop.nets.e4e import load_e4e

        device = G.const.device
        avg = getattr(G, "w_avg", None)
        encoder = load_e4e(path, device, latent_avg_fallback=None if avg is None else avg.detach().cpu())
        self._encoder = (path, encoder)
        return encoder

    def _done(self, path: Path, doc: Any) -> None:
        from styleclip_desktop.render.photo_import import soft_face_notice

        self._pending = None
        identities = identities_of(self.state.engine)
        if identities and not doc.models:
            doc.models = identities
        doc.mark_clean()  # nothing to save until the user edits it
        self.projects.replace_document(doc)
        self.projects.add_recent(path)
        notice = soft_face_notice(doc.alignment)
        if notice:
            self.notice.emit(notice)
        self.imported.emit(doc)

    def _failed(self, exc: BaseException) -> None:
        self._pending = None
        self.canvas.end_pick()
        if isinstance(exc, UserError):
            self.state.error.emit(str(exc))
        else:
            log.error("opening the photo failed", exc_info=exc)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.state.error.emit(f"Opening the photo failed: {first}")
