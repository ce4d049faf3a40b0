"""File > Export Image…: the picture as shown (composite or aligned crop), written by
`styleclip_desktop.export` with its "edited by AI" metadata, on the worker."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.engines import identities_of, is_synthetic
from styleclip_desktop.ui.state import EditorState

IMAGE_FILTER = "PNG image (*.png);;JPEG image (*.jpg *.jpeg);;WebP image (*.webp)"


def stills_module() -> Any | None:
    try:
        module = importlib.import_module("styleclip_desktop.export.stills")
    except ImportError:
        return None
    return module if hasattr(module, "export_still") else None


class _Snapshot:
    """Renders a fixed snapshot whatever document it is handed, so the worker never reads
    the document the UI thread goes on editing."""

    def __init__(self, engine: Any, snapshot: Any) -> None:
        self.engine, self.snapshot = engine, snapshot

    def render_frames(self, _doc: Any, alphas_list: Any, **kwargs: Any) -> Any:
        return self.engine.render_frames(self.snapshot, alphas_list, **kwargs)


def export_image(state: EditorState, settings: QSettings, parent: QWidget | None, path: Path | None = None) -> Any:
    stills, doc, engine = stills_module(), state.document, state.engine
    if stills is None or doc is None or engine is None:
        return None
    if path is None:
        suggested = (Path(doc.source.path).stem if doc.source is not None else doc.title) + "-edited.png"
        path = dialogs.save_path(parent, settings, "Export Image", suggested, IMAGE_FILTER, ".png", kind="export")
        if path is None:
            return None
    options = stills.StillOptions(crop=not state.paste_back)
    source = _Snapshot(engine, engine.snapshot(doc))
    models, synthetic = identities_of(engine), is_synthetic(engine) or bool(doc.synthetic)

    def run(ctx: Any) -> Path:
        return Path(stills.export_still(source, doc, path, options, models=models, synthetic=synthetic,
                                        cancelled=ctx.cancelled))

    return state.run_job(run, f"Exporting {path.name}…", key="export",
                         on_result=lambda p: state.busy.emit(f"Exported {Path(p).name}", 1, 1))
