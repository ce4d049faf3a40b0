"""Take docs/screenshot.png: the real editor window on the synthetic demo models, with three
text layers and a before/after wipe in progress.

Run it under a virtual display (the synthetic models are random: the picture is noise,
not a face, and the window says so):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (("a face with grey hair", "grey hair", 3.0), ("a smiling face", "smiling", 2.0), ("a robot", "a robot", -4.0))


def wait_for(app: object, condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def main(out: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="styleclip-screenshot-"))
    for var, sub in (("STYLECLIP_DATA_DIR", "data"), ("STYLECLIP_CACHE_DIR", "cache"),
                     ("STYLECLIP_MODELS_DIR", "models")):
        os.environ.setdefault(var, str(work / sub))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QMessageBox

    from styleclip_desktop.document import GlobalDirectionParams, actions
    from styleclip_desktop.ui.compare import CompareMode
    from styleclip_desktop.ui.main_window import MainWindow
    from styleclip_desktop.ui.model_source import ModelSource, create_demo_models, demo_dir, demo_ready

    app = QApplication(sys.argv[:1])
    app.setApplicationName("StyleCLIP Desktop")
    # A script has nobody to click dialogs away: print what would have been shown.
    QMessageBox.critical = staticmethod(lambda *a, **k: print("dialog:", a[2]))  # type: ignore[method-assign]
    folder = demo_dir()
    source = ModelSource.demo_in(folder, "cpu") if demo_ready(folder) else create_demo_models(folder, 256)
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings, source.with_device("cpu"),
                   engine_options={"backend": "torch", "background_export": False})
    w.resize(1500, 940)
    w.show()
    w.load_models(w.source)
    wait_for(app, lambda: w.state.engine is not None, 300, "the models")
    engine, state = w.state.engine, w.state
    assert engine is not None

    w.projects.new_from_seed(seed=10)
    wait_for(app, lambda: state.document is not None and state.image is not None, 120, "the first render")
    doc = state.document
    assert doc is not None
    for target, name, alpha in LAYERS:
        info = engine.direction_info(target, "a face", 0.01)
        # The demo's CLIP and relevance matrix are random: keep about a third of the channels.
        beta = round(max(0.01, info.largest_beta * 0.4), 3)
        state.push(actions.add_layer(doc, GlobalDirectionParams(target, beta=beta), name=name, alpha=alpha))
    state.set_current_layer(doc.layers[0].id)
    shown = state._shown_seq
    state.request_original()
    state.request_render()
    wait_for(app, lambda: state._shown_seq > shown and state.original is not None, 120, "the edited render")
    w.set_compare(CompareMode.WIPE)
    w.canvas.fit()
    w.canvas.set_split(0.42)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not w.grab().save(str(out)):
        raise SystemExit(f"could not write {out}")
    print(f"wrote {out}")
    w.projects.close_document()
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot.png"))
