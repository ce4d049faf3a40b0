"""The editor's shell through pytest-qt, offscreen, with the real engine on synthetic models:
opening a photo, undo, projects, the compare views, a responsive UI thread, error
dialogs, and the model wizard."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from styleclip_desktop.document import Document, GlobalDirectionParams, actions
from styleclip_desktop.ui.compare import CompareMode
from styleclip_desktop.ui.images import from_qimage
from styleclip_desktop.ui.model_source import DEMO_LABEL, ModelSource

TIMEOUT = 60_000
PHOTO_POINTS = np.array([[50.0, 54.0], [78.0, 54.0], [54.0, 84.0], [74.0, 84.0]])


def next_image(qtbot: Any, state: Any, action: Callable[[], object]) -> np.ndarray:
    """Do `action` and return the picture once every render it led to has arrived."""
    before = state._render_seq
    action()
    worker = state.engine.worker
    qtbot.waitUntil(lambda: state._render_seq > before and state._shown_seq == state._render_seq
                    and worker.pending() == 0 and worker.current is None, timeout=TIMEOUT)
    qtbot.wait(20)  # results queued for the UI thread
    return np.array(state.image)


def open_seed(qtbot: Any, window: Any, doc: Document) -> np.ndarray:
    with qtbot.waitSignal(window.state.original_ready, timeout=TIMEOUT):
        image = next_image(qtbot, window.state, lambda: window.projects.replace_document(doc))
    return image


def add_edit(qtbot: Any, window: Any, engine: Any, target: str = "a face with grey hair", alpha: float = 3.0) -> np.ndarray:
    info = engine.direction_info(target, "a face", 0.01)
    assert info.error is None, info.error
    doc = window.state.document
    params = GlobalDirectionParams(target, beta=round(info.largest_beta / 2, 4))
    return next_image(qtbot, window.state, lambda: window.state.push(actions.add_layer(doc, params, alpha=alpha)))


@pytest.fixture
def photo(face_photo: Path) -> Path:
    return face_photo


def grab(widget: Any) -> np.ndarray:
    return from_qimage(widget.grab().toImage())


def at(canvas: Any, x: int, y: int) -> tuple[int, int]:
    """The widget pixel showing the centre of image pixel (x, y)."""
    p = canvas.image_to_widget(QPointF(x + 0.5, y + 0.5))
    return int(p.y()), int(p.x())


def send_mouse(widget: Any, kind: QEvent.Type, pos: QPointF, buttons: Qt.MouseButton = Qt.MouseButton.LeftButton) -> None:
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    held = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else buttons
    event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, held, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


# -- opening a photo -----------------------------------------------------------------------


def test_open_photo_with_landmarks_shows_the_composite(make_window: Any, engine: Any, photo: Path,
                                                       qtbot: Any) -> None:
    w = make_window(engine)
    w.importer.open_photo(photo, landmarks=PHOTO_POINTS, ask=False)
    qtbot.waitUntil(lambda: w.state.document is not None and w.state.image is not None, timeout=TIMEOUT)
    doc = w.state.document
    assert doc.source is not None and doc.alignment is not None and doc.source.path == str(photo)
    image = w.canvas.image_array()
    assert image is not None and image.shape == (128, 128, 3)  # pasted back into the photo
    assert w.canvas.has_image()
    shown = grab(w.canvas)
    assert shown.std() > 3  # a picture, not the empty background
    assert str(photo) in w.projects.recent_files()
    assert not w.isWindowModified() and "photo" in w.windowTitle()  # nothing to save until edited


def test_no_face_landmarks_and_several_faces_click_to_choose(make_window: Any, engine: Any, photo: Path,
                                                              qtbot: Any) -> None:
    from styleclip_desktop.faces.imaging import load_image
    from styleclip_desktop.render.photo_import import PhotoFaces

    w = make_window(engine)
    img = load_image(photo)
    # No face found: four handles and a clear message.
    w.importer._found(photo, PhotoFaces(photo, img.data, img.pixels, []), "No face found in photo.png.")
    canvas = w.canvas
    assert canvas.landmarks is not None and canvas.banner.isVisible()
    assert "No face found" in canvas.banner.text.text() and "eyes" in canvas.banner.text.text()
    start = canvas.landmarks.points[0].copy()
    grip = canvas.image_to_widget(QPointF(*start))
    target = canvas.image_to_widget(QPointF(*PHOTO_POINTS[0]))
    send_mouse(canvas, QEvent.Type.MouseButtonPress, grip)
    send_mouse(canvas, QEvent.Type.MouseMove, target)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, target)
    assert np.allclose(canvas.landmarks.points[0], PHOTO_POINTS[0], atol=1.0)
    canvas.landmarks.points[1:] = PHOTO_POINTS[1:]
    with qtbot.waitSignal(w.importer.imported, timeout=TIMEOUT):
        qtbot.mouseClick(canvas.banner.ok, Qt.MouseButton.LeftButton)
    assert canvas.landmarks is None and not canvas.banner.isVisible()
    assert w.state.document is not None and w.state.document.alignment is not None

    # Several faces: the one clicked is the one opened.
    second = PHOTO_POINTS * 0.4 + 5
    w.importer._found(photo, PhotoFaces(photo, img.data, img.pixels, [PHOTO_POINTS, second]), "")
    assert canvas.chooser is not None and "2 faces" in canvas.banner.text.text()
    centre = canvas.image_to_widget(canvas.chooser.boxes[1].center())
    with qtbot.waitSignal(w.importer.imported, timeout=TIMEOUT):
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=centre.toPoint())
    assert "face 2 of 2" in w.state.document.description


# -- undo, projects, compare ------------------------------------------------------------------


def test_undo_restores_exact_pixels_and_projects_round_trip(make_window: Any, engine: Any, seed_document: Document,
                                                             tmp_path: Path, qtbot: Any) -> None:
    w = make_window(engine)
    state = w.state
    base = open_seed(qtbot, w, seed_document)
    edited = add_edit(qtbot, w, engine)
    assert not np.array_equal(base, edited)
    assert np.array_equal(next_image(qtbot, state, w.actions_.undo.trigger), base)
    assert np.array_equal(w.canvas.image_array(), base)
    assert np.array_equal(next_image(qtbot, state, w.actions_.redo.trigger), edited)
    assert {s.toString() for s in w.actions_.redo.shortcuts()} >= {"Ctrl+Shift+Z", "Ctrl+Y"}
    assert w.actions_.undo.shortcut().toString() == "Ctrl+Z"

    path = tmp_path / "portrait.scproj"
    assert w.projects._save_to(path)
    assert not state.dirty and not w.isWindowModified() and "portrait" in w.windowTitle()
    layers = [(layer.name, layer.alpha, layer.visible, layer.params) for layer in state.document.layers]
    w.projects.close_document()
    assert state.document is None and w.canvas.image_array() is None
    reopened = next_image(qtbot, state, lambda: w.projects.open_project(path, ask=False))
    doc = w.state.document
    assert doc is not None and doc.file_path == path and not doc.dirty
    assert [(layer.name, layer.alpha, layer.visible, layer.params) for layer in doc.layers] == layers
    assert np.array_equal(reopened, edited)
    assert w.projects.recent_files()[0] == str(path)


def test_saved_projects_carry_their_directions_and_a_new_beta_refreshes_them(
        make_window: Any, engine: Any, seed_document: Document, tmp_path: Path, qtbot: Any) -> None:
    from styleclip_desktop.document import load_project
    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.render.pipeline import ModelSet

    w = make_window(engine)
    state = w.state
    open_seed(qtbot, w, seed_document)
    edited = add_edit(qtbot, w, engine)
    layer = state.document.layers[0]
    path = tmp_path / "portrait.scproj"
    assert w.projects._save_to(path)
    first = load_project(path).layers[0].params
    assert isinstance(first, GlobalDirectionParams) and first.ds is not None
    assert np.array_equal(first.ds, engine.renderer.direction(first.target, first.neutral, first.beta).ds)
    # The saved project renders on the generator alone, as the editor showed it.
    bare = Engine(ModelSet(G=engine.models.G, identities=dict(engine.models.identities)), backend="torch")
    try:
        assert np.array_equal(bare.render(load_project(path)), edited)
        state.set_current_layer(layer.id)
        beta = w.panels["propertiesDock"].fields["beta"]
        new_beta = round(first.beta / 2, 2)  # what the two-decimal spin box can hold
        next_image(qtbot, state, lambda: beta.setValue(new_beta))
        assert layer.params.beta == new_beta and layer.params.ds is None  # never the old ds for a new beta
        assert w.projects._save_to(path)
        second = load_project(path).layers[0].params
        assert isinstance(second, GlobalDirectionParams) and second.ds is not None and second.beta == new_beta
        assert np.array_equal(second.ds, engine.renderer.direction(second.target, second.neutral, new_beta).ds)
        assert not np.array_equal(second.ds, first.ds)
        assert np.array_equal(bare.render(load_project(path)), np.array(state.image))
    finally:
        bare.shutdown()


def test_a_project_made_on_the_demo_models_exports_from_the_command_line(
        make_window: Any, engine: Any, demo_source: ModelSource, seed_document: Document, tmp_path: Path,
        qtbot: Any, capsys: Any) -> None:
    """The demo models are an ordinary models directory: `--models-dir` on it is all the CLI needs."""
    from styleclip_desktop.cli import main
    from styleclip_desktop.document import load_project

    w = make_window(engine)
    open_seed(qtbot, w, seed_document)
    edited = add_edit(qtbot, w, engine)
    path = tmp_path / "demo.scproj"
    assert w.projects._save_to(path)
    out = tmp_path / "demo.png"
    capsys.readouterr()
    assert main(["--models-dir", str(demo_source.models_dir), "--backend", "torch", "export", str(path),
                 "-o", str(out)]) == 0, capsys.readouterr().err
    assert "notice: layer" not in capsys.readouterr().err  # same generator: the stored directions serve
    assert np.array_equal(np.asarray(Image.open(out)), edited)
    assert load_project(path).synthetic


def test_wipe_side_by_side_and_hold_backslash_show_the_original(make_window: Any, engine: Any,
                                                               seed_document: Document, qtbot: Any) -> None:
    w = make_window(engine)
    open_seed(qtbot, w, seed_document)
    add_edit(qtbot, w, engine, alpha=6.0)
    state, canvas = w.state, w.canvas
    with qtbot.waitSignal(state.original_ready, timeout=TIMEOUT):
        next_image(qtbot, state, lambda: w.actions_.show_crop.trigger())  # the aligned crop: edits everywhere
    before, after = state.original, state.image
    assert before.shape == after.shape == (32, 32, 3)
    diff = np.abs(before.astype(int) - after.astype(int)).sum(2)
    assert diff.max() > 0

    def strongest(xs: range) -> tuple[int, int]:
        sub = diff[6:26, xs.start:xs.stop]
        y, x = np.unravel_index(int(sub.argmax()), sub.shape)
        assert sub[y, x] > 0
        return int(x) + xs.start, int(y) + 6

    w.set_compare(CompareMode.WIPE)
    canvas.set_zoom(8.0)
    canvas.set_split(0.5)
    shown = grab(canvas)
    (lx, ly), (rx, ry) = strongest(range(1, 13)), strongest(range(20, 31))
    assert np.array_equal(shown[at(canvas, lx, ly)], before[ly, lx])  # left of the split: the original
    assert np.array_equal(shown[at(canvas, rx, ry)], after[ry, rx])  # right of it: the edit
    canvas.set_split(1.0)
    assert np.array_equal(grab(canvas)[at(canvas, rx, ry)], before[ry, rx])

    # Side by side: one zoom and pan for both halves.
    w.set_compare(CompareMode.SIDE_BY_SIDE)
    canvas.set_zoom(4.0)
    shown = grab(canvas)
    p = canvas.image_to_widget(QPointF(rx + 0.5, ry + 0.5))
    assert np.array_equal(shown[int(p.y()), int(p.x())], before[ry, rx])
    assert np.array_equal(shown[int(p.y()), int(p.x() + canvas.width() / 2)], after[ry, rx])

    # Hold backslash: the original while the key is down.
    w.set_compare(CompareMode.OFF)
    canvas.setFocus()
    qtbot.keyPress(canvas, Qt.Key.Key_Backslash)
    assert np.array_equal(grab(canvas)[at(canvas, rx, ry)], before[ry, rx])
    qtbot.keyRelease(canvas, Qt.Key.Key_Backslash)
    assert np.array_equal(grab(canvas)[at(canvas, rx, ry)], after[ry, rx])


# -- responsiveness ---------------------------------------------------------------------------


def test_ui_thread_never_blocks_during_renders(make_window: Any, engine: Any, seed_document: Document,
                                               qtbot: Any) -> None:
    w = make_window(engine)
    open_seed(qtbot, w, seed_document)
    add_edit(qtbot, w, engine)
    snapshot = engine.snapshot(w.state.document)
    layer_id = w.state.document.layers[0].id

    def long_job(ctx: Any) -> int:
        # Distinct alphas, so every frame is a real render and never a cache hit.
        started, n = time.monotonic(), 0
        while time.monotonic() - started < 1.5 or n < 3:
            engine.render(snapshot, {layer_id: 0.37 + 0.011 * n})
            n += 1
        return n

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    job = engine.worker.submit(long_job)
    w.state.request_render()
    qtbot.waitUntil(lambda: job.future.done(), timeout=TIMEOUT)
    timer.stop()
    assert job.future.result() >= 3
    assert len(gaps) > 20
    assert max(gaps[1:]) < 0.1, f"the UI thread stalled for {max(gaps) * 1000:.0f} ms"


def test_long_tasks_show_progress_and_cancel_in_the_status_bar(make_window: Any, engine: Any, qtbot: Any) -> None:
    from styleclip_desktop.errors import Cancelled

    w = make_window(engine)
    ended: list[str] = []

    def slow(ctx: Any) -> None:
        for i in range(400):
            ctx.progress(i, 400, "Counting sheep…")
            if ctx.cancelled():
                raise Cancelled()
            time.sleep(0.01)

    w.state.run_job(slow, "Counting sheep…", on_result=lambda _r: ended.append("done"),
                    on_cancel=lambda: ended.append("cancelled"))
    assert not w.status.showing_progress()  # nothing flashes for quick work
    qtbot.waitUntil(w.status.showing_progress, timeout=5000)
    assert w.status.cancel_button.isVisible() and "sheep" in w.status.busy_text.text()
    qtbot.mouseClick(w.status.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ended == ["cancelled"], timeout=5000)
    qtbot.waitUntil(lambda: not w.status.showing_progress(), timeout=2000)
    assert len(w.state.tasks) == 0


def test_new_from_prompt_and_export(make_window: Any, engine: Any, tmp_path: Path, qtbot: Any) -> None:
    from styleclip_desktop.ui.exporting import export_image
    from styleclip_desktop.ui.generate_dialog import GenerateDialog

    w = make_window(engine)
    dialog = GenerateDialog(w.state, w.projects, w)
    qtbot.addWidget(dialog)
    assert dialog.generate_button.isEnabled()
    dialog.prompt.setText("a smiling face")
    dialog.steps.setValue(3)
    dialog.seed.setValue(5)
    dialog.generate_button.click()
    qtbot.waitUntil(lambda: w.state.document is not None and w.state.image is not None, timeout=TIMEOUT)
    doc = w.state.document
    assert doc is not None and '"a smiling face"' in doc.description and doc.seed == 5
    assert dialog.preview.pixmap() is not None and not dialog.preview.pixmap().isNull()  # live frames
    out = tmp_path / "still.png"
    job = export_image(w.state, w.settings, None, out)
    qtbot.waitUntil(lambda: job.future.done(), timeout=TIMEOUT)
    assert job.future.result() == out and Image.open(out).size == (32, 32)


# -- errors -----------------------------------------------------------------------------------


def test_errors_show_as_one_line_dialogs_and_are_logged(make_window: Any, tmp_path: Path, qtbot: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from styleclip_desktop.ui.error_report import install_excepthook, setup_logging

    shown: list[str] = []

    def capture(parent: Any, title: str, text: str, *args: Any, **kwargs: Any) -> QMessageBox.StandardButton:
        shown.append(text)
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(capture))
    log_file = setup_logging(tmp_path / "logs")
    assert log_file is not None
    w = make_window()
    uninstall = install_excepthook(w.presenter)
    try:
        broken = tmp_path / "broken.scproj"
        broken.write_bytes(b"this is not a project")
        assert not w.projects.open_project(broken, ask=False)

        def crash() -> None:
            raise RuntimeError("the renderer fell over\n  File 'x.py', line 3, in y")

        QTimer.singleShot(0, crash)
        qtbot.waitUntil(lambda: len(shown) >= 2, timeout=5000)
        w.state.error.emit("global directions need CLIP")
        assert len(shown) == 3
    finally:
        uninstall()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "baseFilename", "") == str(log_file)]:
            root.removeHandler(handler)
            handler.close()
    assert "broken.scproj" in shown[0]
    assert "the renderer fell over" in shown[1]
    assert shown[2] == "global directions need CLIP"
    for message in shown:
        assert "Traceback" not in message and "\n" not in message and "File '" not in message
    logged = log_file.read_text()
    assert "the renderer fell over" in logged and "Traceback" in logged


# -- models -----------------------------------------------------------------------------------


def test_model_wizard_lists_missing_models_and_the_demo_makes_the_app_usable(
        make_window: Any, tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no CLIP from this machine's cache
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    empty = tmp_path / "models"
    empty.mkdir()
    w = make_window(source=ModelSource(empty, device="cpu"))
    w.start()
    wizard = w.wizard
    assert wizard is not None and wizard.isVisible() and "generator" in wizard.reason.text()
    missing = wizard.missing_ids()
    assert {"stylegan2-ffhq-ada", "clip-vit-b-32", "e4e-ffhq"} <= set(missing)
    statuses = [wizard.features.topLevelItem(i).text(1) for i in range(wizard.features.topLevelItemCount())]
    assert statuses and all(s.startswith("Missing") for s in statuses)
    assert not w.actions_.new.isEnabled()

    wizard.use_demo()
    qtbot.waitUntil(lambda: w.state.engine is not None, timeout=TIMEOUT)
    assert DEMO_LABEL in w.windowTitle() and DEMO_LABEL in w.status.models_label.text()
    assert w.settings.value("models/use_demo", type=bool)
    assert w.actions_.new.isEnabled() and w.status.backend_label.text().startswith("Backend:")
    next_image(qtbot, w.state, w.new_document)
    assert w.state.document is not None and w.canvas.image_array() is not None


def test_window_shows_before_torch_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from PySide6.QtCore import QSettings\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from styleclip_desktop.ui.main_window import MainWindow\n"
        "from styleclip_desktop.ui.model_source import ModelSource\n"
        f"w = MainWindow(QSettings({str(tmp_path / 's.ini')!r}, QSettings.Format.IniFormat), "
        f"ModelSource(Path({str(tmp_path)!r})))\n"
        "w.show(); app.processEvents()\n"
        "print('visible', w.isVisible(), 'torch', 'torch' in sys.modules)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "visible True torch False" in out.stdout


# -- projects: prompts, recovery, persistence -----------------------------------------------------


def test_unsaved_changes_prompt_and_crash_recovery(make_window: Any, seed_document: Document, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, qtbot: Any) -> None:
    from styleclip_desktop.ui import dialogs
    from styleclip_desktop.ui.projects import autosave_dir

    for leftover in autosave_dir().glob("*"):
        leftover.unlink()
    empty = ModelSource(tmp_path / "models", device="cpu")
    w = make_window(source=empty)
    w.projects.replace_document(seed_document)
    w.state.push(actions.add_layer(seed_document, GlobalDirectionParams("a smiling face"), alpha=2.0))
    assert w.state.dirty and w.isWindowModified()
    # Autosave while dirty: this file is what a crash leaves behind.
    w.projects.autosaver.save_now()
    assert list(autosave_dir().glob("untitled-*"))

    asked: list[str] = []
    def cancel(parent: Any, title: str) -> str:
        asked.append(title)
        return dialogs.CANCEL

    monkeypatch.setattr(dialogs, "ask_save_changes", cancel)
    w.close()
    assert asked and w.isVisible() and w.state.document is seed_document  # Cancel keeps everything

    # An autosave killed mid-write left its temporary; the next start removes it.
    import os

    killed = autosave_dir() / f".untitled-{seed_document.uid}.scproj.autosave.k1ll3d_0.tmp"
    killed.write_bytes(b"half an autosave")
    os.utime(killed, (0, 0))
    # The next start offers to recover it.
    monkeypatch.setattr(dialogs, "ask_recover", lambda parent, found: True)
    w2 = make_window(source=empty)
    assert w2.projects.offer_recovery()
    assert not killed.exists()
    recovered = w2.state.document
    assert recovered is not None and recovered.dirty
    assert [layer.name for layer in recovered.layers] == ["a smiling face"]
    # Discarding on close removes the autosave: nothing is offered the time after.
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, title: dialogs.DISCARD)
    w2.close()
    assert not list(autosave_dir().glob("untitled-*"))


def test_layout_geometry_and_recent_files_persist(make_window: Any, tmp_path: Path) -> None:
    empty = ModelSource(tmp_path / "models", device="cpu")
    w = make_window(source=empty)
    w.docks["timelineDock"].hide()
    w.projects.add_recent(tmp_path / "a.scproj")
    w.projects.add_recent(tmp_path / "b.png")
    w.save_settings()
    w2 = make_window(source=empty)
    w2.show()
    assert not w2.docks["timelineDock"].isVisible()
    # Geometry is saved too (the offscreen screen is too small to check sizes against).
    assert w.settings.value("window/geometry") is not None
    assert w2.projects.recent_files() == [str(tmp_path / "b.png"), str(tmp_path / "a.scproj")]
    names = [a.text() for a in w2.actions_.recent_menu.actions()]
    assert names[:2] == ["&1 b.png", "&2 a.scproj"]


def test_refused_change_leaves_no_undo_step(qtbot) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from styleclip_desktop.document import Document, GlobalDirectionParams, Layer, actions
    from styleclip_desktop.ui.state import EditorState

    state = EditorState()
    doc = Document(np.zeros((8, 512), np.float32))
    state.set_document(doc)
    layer = Layer(GlobalDirectionParams(target="grey hair"), alpha=3.0)
    state.push(actions.add_layer(doc, layer))
    state.push(actions.set_locked(doc, layer.id, True))
    count = state.undo_stack.count()
    errors: list[str] = []
    state.error.connect(errors.append)
    state.push(actions.remove_layer(doc, layer.id))
    assert state.undo_stack.count() == count and len(doc.layers) == 1
    assert errors and "lock" in errors[0].lower()
    state.undo_stack.undo()
    assert not doc.layers[0].locked
    state.undo_stack.undo()
    assert len(doc.layers) == 0
    state.undo_stack.redo()
    assert len(doc.layers) == 1
    state.undo_stack.blockSignals(True)
