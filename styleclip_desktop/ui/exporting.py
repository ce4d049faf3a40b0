"""File > Export Image… and File > Export Animation…: what runs behind the export dialogs.

Both export a frozen copy of the document, taken on the UI thread, so the worker never
reads the document the user goes on editing, and both go through `styleclip_desktop.export`,
the code the command line's `export` and `animate` run too. Nothing here blocks the UI
thread: the work is a job on the engine's worker, with progress and Cancel.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSettings, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QWidget

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.engines import identities_of, is_synthetic
from styleclip_desktop.ui.state import EditorState

IMAGE_FILTER = "PNG image (*.png);;JPEG image (*.jpg *.jpeg);;WebP image (*.webp)"
ANIMATION_FILTER = "MP4 video (*.mp4);;GIF animation (*.gif);;WebP animation (*.webp)"
EXPORT_KEY = "export"


def stills_module() -> Any | None:
    try:
        module = importlib.import_module("styleclip_desktop.export.stills")
    except ImportError:
        return None
    return module if hasattr(module, "export_still") else None


def frozen_copy(doc: Any) -> Any:
    """A copy of `doc` that nobody edits: what an export job reads on the worker."""
    from styleclip_desktop.document.serialize import document_from_data, document_to_data

    data, arrays = document_to_data(doc)
    photo = doc.source.data if doc.source is not None else None
    return document_from_data(data, {key: np.array(value) for key, value in arrays.items()}, photo)


def start_folder(state: EditorState, settings: QSettings) -> Path:
    """Where an export dialog starts: the project's folder, else the photo's, else the
    folder of the last export."""
    return Path(dialogs.start_folder(state, settings, kind=EXPORT_KEY))


def suggested_name(state: EditorState, ending: str) -> str:
    doc = state.document
    if doc is None:
        return "untitled" + ending
    if doc.file_path is not None:
        stem = Path(doc.file_path).stem
    elif doc.source is not None:
        stem = Path(doc.source.path).stem
    else:
        stem = doc.title
    return (stem or "untitled") + ending


def open_folder(path: Path) -> bool:
    """Show the folder holding `path` in the system's file manager."""
    return bool(QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent))))


def failure_text(exc: BaseException, path: Path) -> str:
    """One sentence for the user about an export that failed."""
    from styleclip_desktop.export.source import disk_full_error, is_disk_full

    if is_disk_full(exc):
        exc = disk_full_error(path)
    if isinstance(exc, UserError):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "the export failed"
    elif isinstance(exc, OSError):
        text = f"could not write {path}: {exc.strerror or exc}"
    else:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = f"the export failed: {first}"
    from styleclip_desktop.ui.error_report import sentence

    return sentence(text)


def render_inputs(state: EditorState) -> tuple[Any, Any, dict[str, str], bool]:
    """(engine, frozen document, model identities, synthetic) for an export of the open document."""
    doc, engine = state.document, state.engine
    if doc is None:
        raise UserError("there is no picture to export: open a photo or make a face first")
    if engine is None:
        raise UserError("the models are still loading; try again in a moment")
    return engine, frozen_copy(doc), identities_of(engine), is_synthetic(engine) or bool(doc.synthetic)


def _unless_cancelled(ctx: Any, result: Any, path: Path) -> Any:
    """A Cancel that came in the instant the file was finished still means nothing written."""
    if ctx.cancelled():
        path.unlink(missing_ok=True)
        raise Cancelled()
    return result


def still_job(state: EditorState, path: Path, options: Any) -> Callable[[Any], Path]:
    stills = stills_module()
    if stills is None:
        raise UserError("still export is not available in this installation")
    engine, doc, models, synthetic = render_inputs(state)
    shown = state.playhead_alphas()  # the picture on the canvas: an animated document at its playhead

    def run(ctx: Any) -> Path:
        ctx.progress(0, 1, f"Exporting {path.name}…")
        written = Path(stills.export_still(engine, doc, path, options, alphas=shown, models=models,
                                           synthetic=synthetic, cancelled=ctx.cancelled))
        return _unless_cancelled(ctx, written, written)

    return run


def animation_job(state: EditorState, path: Path, options: Any) -> Callable[[Any], Any]:
    from styleclip_desktop.export.animation import animate_document

    engine, doc, models, synthetic = render_inputs(state)

    def run(ctx: Any) -> Any:
        def progress(done: int, total: int) -> None:
            ctx.progress(done, total, f"Exporting {path.name}: frame {done} of {total}")

        result = animate_document(engine, doc, path, options, models=models, synthetic=synthetic,
                                  progress=progress, cancelled=ctx.cancelled)
        return _unless_cancelled(ctx, result, path)

    return run


def export_image(state: EditorState, settings: QSettings, parent: QWidget | None, path: Path | None = None,
                 options: Any = None) -> Any:
    """Export the picture to `path` as a job (returned); without a path, open the Export
    Image dialog instead (returned)."""
    stills = stills_module()
    if stills is None or state.document is None or state.engine is None:
        return None
    if path is None:
        return open_image_dialog(state, settings, parent)
    options = options or stills.StillOptions(crop=not state.paste_back)
    return state.run_job(still_job(state, Path(path), options), f"Exporting {Path(path).name}…", key=EXPORT_KEY,
                         on_result=lambda p: state.busy.emit(f"Exported {Path(p).name}", 1, 1))


def _reuse(parent: QWidget | None, cls: type) -> Any:
    return parent.findChild(cls) if parent is not None else None


def open_image_dialog(state: EditorState, settings: QSettings, parent: QWidget | None) -> Any:
    from styleclip_desktop.ui.export_dialogs import ExportImageDialog

    dialog = _reuse(parent, ExportImageDialog) or ExportImageDialog(state, settings, parent)
    dialog.present()
    return dialog


def open_animation_dialog(state: EditorState, settings: QSettings, parent: QWidget | None) -> Any:
    from styleclip_desktop.ui.animation_dialog import ExportAnimationDialog

    if state.document is None or state.engine is None:
        return None
    dialog = _reuse(parent, ExportAnimationDialog) or ExportAnimationDialog(state, settings, parent)
    dialog.present()
    return dialog

