"""Opening photos and the models behind them, through the real window (offscreen): Cancel
during inversion, the no-face and several-faces banners, small faces, a fresh photo's
saved state, a missing mapper, and the Model Manager while the demo set is in use."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from styleclip_desktop.document import Alignment, Document, GlobalDirectionParams, MapperParams, actions
from styleclip_desktop.ui.model_source import ModelSource

TIMEOUT = 60_000
PHOTO_POINTS = np.array([[50.0, 54.0], [78.0, 54.0], [54.0, 84.0], [74.0, 84.0]])


@pytest.fixture
def photo(face_photo: Path) -> Path:
    return face_photo


def _idle(qtbot: Any, w: Any) -> None:
    worker = w.state.engine.worker
    qtbot.waitUntil(lambda: worker.pending() == 0 and worker.current is None and len(w.state.tasks) == 0,
                    timeout=TIMEOUT)


def _open(qtbot: Any, w: Any, path: Path, points: np.ndarray = PHOTO_POINTS) -> Document:
    with qtbot.waitSignal(w.importer.imported, timeout=TIMEOUT) as got:
        w.importer.open_photo(path, landmarks=points, ask=False)
    _idle(qtbot, w)
    return got.args[0]  # type: ignore[no-any-return]


# -- Cancel during inversion --------------------------------------------------------------------


def test_cancelling_the_inversion_leaves_the_open_document_as_it_was(
        make_window: Any, engine: Any, seed_document: Document, photo: Path, qtbot: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from styleclip_desktop.methods import inversion

    w = make_window(engine)
    w.projects.replace_document(seed_document)
    w.state.push(actions.add_layer(seed_document, GlobalDirectionParams("a smiling face"), alpha=2.0))
    _idle(qtbot, w)
    revision, dirty, steps = seed_document.revision, seed_document.dirty, w.state.undo_stack.count()
    entered, release = threading.Event(), threading.Event()
    real = inversion.invert_e4e

    def slow_invert(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)  # the inversion itself finishes: only Cancel may stop it

    monkeypatch.setattr(inversion, "invert_e4e", slow_invert)
    w.importer.open_photo(photo, landmarks=PHOTO_POINTS, ask=False)
    qtbot.waitUntil(entered.is_set, timeout=TIMEOUT)
    qtbot.waitUntil(w.status.showing_progress, timeout=TIMEOUT)
    qtbot.mouseClick(w.status.cancel_button, Qt.MouseButton.LeftButton)
    release.set()
    qtbot.waitUntil(lambda: "cancelled" in w.status.currentMessage(), timeout=TIMEOUT)
    _idle(qtbot, w)
    assert w.state.document is seed_document
    assert seed_document.revision == revision and seed_document.dirty == dirty
    assert w.state.undo_stack.count() == steps and [la.name for la in seed_document.layers] == ["a smiling face"]
    assert str(photo) not in w.projects.recent_files()
    assert w.canvas.landmarks is None and not w.canvas.banner.isVisible()


# -- a fresh photo is not unsaved; the prompt names the photo ------------------------------------


def test_a_freshly_opened_photo_is_clean_until_edited_and_the_prompt_names_it(
        make_window: Any, engine: Any, photo: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from styleclip_desktop.ui import dialogs

    w = make_window(engine)
    doc = _open(qtbot, w, photo)
    assert not doc.dirty and not w.state.dirty and not w.isWindowModified()
    asked: list[str] = []
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, title: asked.append(title) or dialogs.CANCEL)
    assert w.projects.maybe_close()  # nothing to save: no question
    assert asked == []
    w.state.push(actions.add_layer(doc, GlobalDirectionParams("a face with grey hair"), alpha=1.0))
    assert w.state.dirty and w.isWindowModified()
    assert not w.projects.maybe_close()  # Cancel keeps it open
    assert asked == ["photo.png"]
    w.state.undo_stack.undo()
    assert not w.state.dirty  # back to the photo as opened


# -- no face: words, fully visible ----------------------------------------------------------------


def test_no_face_banner_speaks_in_words_and_shows_all_its_text(make_window: Any, engine: Any, tmp_path: Path,
                                                               qtbot: Any) -> None:
    grey = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(grey)
    w = make_window(engine)
    w.resize(760, 700)
    w.importer.open_photo(grey, ask=False)
    canvas = w.canvas
    qtbot.waitUntil(lambda: canvas.landmarks is not None, timeout=TIMEOUT)
    text = canvas.banner.text.text()
    assert text.startswith("No face was found in wall.png") and "two eyes and the two mouth corners" in text
    assert "--landmarks" not in text and "x_eye1" not in text
    assert canvas.banner.isVisible()
    label = canvas.banner.text
    assert label.height() >= label.heightForWidth(label.width())  # every wrapped line fits
    canvas.resize(420, canvas.height())  # narrower: more lines, and still nothing cut off
    assert label.height() >= label.heightForWidth(label.width())
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert not canvas.banner.isVisible()


# -- several faces: ranked, unsure ones marked, the fallback detector named -----------------------


def test_several_faces_mark_the_unsure_one_and_name_the_fallback_detector(
        make_window: Any, engine: Any, photo: Path, qtbot: Any) -> None:
    from styleclip_desktop.faces.imaging import load_image
    from styleclip_desktop.render.photo_import import PhotoFaces

    w = make_window(engine)
    img = load_image(photo)
    faces = [PHOTO_POINTS, PHOTO_POINTS * 0.4 + 5, PHOTO_POINTS * 0.3 + 80]
    w.importer._found(photo, PhotoFaces(photo, img.data, img.pixels, faces, low_confidence=[False, False, True]), "")
    canvas = w.canvas
    text = canvas.banner.text.text()
    assert text.startswith("3 faces found in photo.png (1 unsure")
    assert canvas.chooser is not None
    assert [canvas.chooser.label_of(i) for i in range(3)] == ["Face 1", "Face 2", "Face 3 ?"]
    assert "basic offline detector" not in text
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)

    w.importer._found(photo, PhotoFaces(photo, img.data, img.pixels, faces[:2], fallback=True), "")
    assert "basic offline detector" in canvas.banner.text.text()
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)

    # One face from the fallback detector opens at once, and the status bar says how it was found.
    with qtbot.waitSignal(w.importer.imported, timeout=TIMEOUT):
        w.importer._found(photo, PhotoFaces(photo, img.data, img.pixels, [PHOTO_POINTS], fallback=True), "")
        assert "basic offline detector" in w.status.currentMessage()
    _idle(qtbot, w)


# -- small faces ----------------------------------------------------------------------------------


def test_soft_face_notice_arithmetic() -> None:
    from styleclip_desktop.faces.align import alignment_from_quad
    from styleclip_desktop.render.photo_import import face_size_px, soft_face_notice

    def doc_alignment(side: float, size: int = 1024) -> Alignment:
        quad = np.array([[10, 10], [10, 10 + side], [10 + side, 10 + side], [10 + side, 10]], np.float64)
        return Alignment(alignment_from_quad(quad, size).matrix, size)

    assert face_size_px(doc_alignment(100)) == pytest.approx(100, abs=1)
    notice = soft_face_notice(doc_alignment(100))
    assert notice is not None and "about 100 px" in notice and "below 256 px" in notice and "soft" in notice
    assert notice.count(".") == 1 and notice.endswith(".")  # one sentence
    assert soft_face_notice(doc_alignment(300)) is None
    assert soft_face_notice(doc_alignment(70, 256)) is None  # 64 px is the limit for a 256 px generator
    assert "below 64 px" in (soft_face_notice(doc_alignment(50, 256)) or "")
    assert soft_face_notice(None) is None


def test_a_tiny_face_warns_that_the_edit_will_look_soft(make_window: Any, engine: Any, photo: Path,
                                                        qtbot: Any) -> None:
    w = make_window(engine)
    centre = PHOTO_POINTS.mean(axis=0)
    tiny = centre + (PHOTO_POINTS - centre) * 0.05  # eyes 1.4 px apart: a crop of about 6 px
    _open(qtbot, w, photo, tiny)
    message = w.status.currentMessage()
    assert "will look soft" in message and "below 8 px" in message  # the demo generator draws 32 px

    _open(qtbot, w, photo)
    assert "soft" not in w.status.currentMessage()


# -- a mapper that is not installed -------------------------------------------------------------


def _modal_button(text: str, found: list[str]) -> None:
    box = QApplication.activeModalWidget()
    if not isinstance(box, QMessageBox):
        QTimer.singleShot(20, lambda: _modal_button(text, found))
        return
    found.append(box.text())
    for button in box.findChildren(QPushButton):
        if button.text() == text:
            button.click()
            return
    box.reject()


def test_a_missing_mapper_offers_the_model_manager_entry_that_installs_it(
        make_window: Any, engine: Any, seed_document: Document, qtbot: Any) -> None:
    w = make_window(engine)
    w.projects.replace_document(seed_document)
    _idle(qtbot, w)
    # The demo set has the "afro" mapper: a mapper layer renders in the editor.
    w.state.push(actions.add_layer(seed_document, MapperParams("afro"), alpha=1.0))
    _idle(qtbot, w)
    assert w.presenter.shown == []
    # "bobcut" is in the catalog but not installed.
    shown: list[str] = []
    QTimer.singleShot(0, lambda: _modal_button("Open Model Manager", shown))
    w.state.push(actions.add_layer(seed_document, MapperParams("bobcut"), alpha=1.0))
    qtbot.waitUntil(lambda: w.wizard is not None and w.wizard.isVisible(), timeout=TIMEOUT)
    assert len(shown) == 1
    assert shown[0].startswith("The latent mapper \u201cbobcut\u201d is not installed")
    assert "mapper support" not in shown[0]
    wizard = w.wizard
    assert wizard._selected_id() == "mapper-bobcut" and wizard.download_button.isEnabled()
    assert "bobcut" in wizard.reason.text()
    _idle(qtbot, w)


def test_a_renderer_without_mapper_support_names_the_model_to_install(engine: Any, seed_document: Document) -> None:
    from styleclip_desktop.errors import ModelFileError
    from styleclip_desktop.render.mapper_install import MapperNotInstalledError, not_installed

    err = not_installed("purple_hair")
    assert isinstance(err, ModelFileError) and isinstance(err, MapperNotInstalledError)
    assert err.model_id == "mapper-purple_hair"
    assert str(err) == ("The latent mapper \u201cpurple hair\u201d is not installed: download it in Models > "
                        "Model Manager\u2026 or with `styleclip-desktop models download mapper-purple_hair`.")
    assert not_installed("my-own.pt").model_id is None


# -- the Model Manager on the demo set --------------------------------------------------------------


def test_model_manager_shows_the_demo_is_in_use_and_offers_the_way_back(
        make_window: Any, engine: Any, demo_source: ModelSource, tmp_path: Path, qtbot: Any) -> None:
    empty = tmp_path / "my-models"
    empty.mkdir()
    w = make_window(engine)
    assert w.source.demo
    w.models_dir = empty
    wizard = w.show_model_wizard()
    assert wizard.demo_banner.isVisible() and "synthetic demo models are in use" in wizard.demo_text.text()
    assert "no StyleGAN2 generator yet" in wizard.demo_text.text()
    assert not wizard.real_button.isEnabled()
    wizard.close()

    # A models folder with a generator of its own (here: the demo files, read as ordinary models).
    w.models_dir = demo_source.models_dir
    wizard = w.show_model_wizard()
    assert wizard.real_button.isEnabled() and "switches back" in wizard.demo_text.text()
    with qtbot.waitSignal(w.loader.finished, timeout=TIMEOUT):
        qtbot.mouseClick(wizard.real_button, Qt.MouseButton.LeftButton)
    assert not w.source.demo and not wizard.isVisible()
    assert not w.settings.value("models/use_demo", type=bool)
    wizard = w.show_model_wizard()
    assert not wizard.demo_banner.isVisible()
