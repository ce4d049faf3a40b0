"""File > Export Animation… and File > Export Image… through their dialogs, on the demo
models: real files written and read back, Cancel writing nothing, errors in one sentence."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from styleclip_desktop.document import Document, Layer, OptimizationParams, actions
from styleclip_desktop.ui.animation_dialog import ExportAnimationDialog, crf_for_quality
from styleclip_desktop.ui.export_dialogs import ExportImageDialog
from styleclip_desktop.ui.exporting import failure_text

from .photos import pasted_into

TIMEOUT = 60_000


def edited(doc: Document, photo: Path | None = None) -> Document:
    """`doc`'s face with one W-space edit at alpha 1 (a fixed offset: no CLIP needed), in
    `photo` when one is given (the 32 px face pasted 1:1 at (24, 14))."""
    delta = np.random.RandomState(7).randn(*doc.latent.shape).astype(np.float32) * 0.6
    layer = Layer(OptimizationParams("a face with grey hair", delta=delta), alpha=1.0)
    if photo is None:
        return Document(doc.latent, layers=[layer], seed=3, synthetic=True)
    return pasted_into(doc, photo, [layer])


@pytest.fixture
def photo(gradient_photo: Path) -> Path:
    return gradient_photo


def open_document(qtbot: Any, window: Any, doc: Document) -> None:
    window.projects.replace_document(doc)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=TIMEOUT)


def type_path(qtbot: Any, dialog: Any, path: Path) -> None:
    dialog.path_edit.clear()
    qtbot.keyClicks(dialog.path_edit, str(path))


def click(qtbot: Any, button: Any) -> None:
    assert button.isVisible() and button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def finished(qtbot: Any, dialog: Any) -> None:
    qtbot.waitUntil(lambda: dialog.job is None and dialog.close_button.isVisible(), timeout=TIMEOUT)


def read_mp4(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def animation_dialog(qtbot: Any, window: Any) -> ExportAnimationDialog:
    action = window.actions_.export_animation
    file_menu = window.actions_.export_image.associatedObjects()[-1]
    names = [a.text() for a in file_menu.actions()]
    assert names.index("Export Ani&mation…") == names.index("&Export Image…") + 1
    assert action.shortcut().toString() == "Ctrl+Shift+E" and action.isEnabled()
    action.trigger()
    dialog = window.findChild(ExportAnimationDialog)
    assert dialog is not None and dialog.isVisible()
    return dialog


@pytest.mark.parametrize("animated_by", ["morph", "keyframes"])
def test_export_animation_renders_an_mp4_of_the_sweep(make_window: Any, engine: Any, seed_document: Document,
                                                      tmp_path: Path, qtbot: Any, opened_folders: list[str],
                                                      animated_by: str) -> None:
    w = make_window(engine)
    assert not w.actions_.export_animation.isEnabled()  # nothing to export yet
    doc = edited(seed_document)
    open_document(qtbot, w, doc)
    lid = doc.layers[0].id
    if animated_by == "keyframes":  # exported at the timeline's own length
        w.state.push(actions.set_duration(doc, 0.5))
        w.state.push(actions.set_keyframe(doc, lid, 0.0, 0.0))
        w.state.push(actions.set_keyframe(doc, lid, 0.5, 1.0))
    revision, dirty = doc.revision, doc.dirty
    dialog = animation_dialog(qtbot, w)
    assert dialog.fps_box.value() == 60 and dialog.timeline_length.isChecked()
    assert dialog.morph_box.isChecked() == (animated_by == "morph")  # offered when nothing is keyframed
    assert dialog.format_box.currentText().startswith("MP4") and not dialog.loop_box.isEnabled()

    out = tmp_path / "out" / "sweep.mp4"
    out.parent.mkdir()
    type_path(qtbot, dialog, out)
    dialog.picture_box.setCurrentIndex(dialog.picture_box.findText("Face crop only"))
    dialog.size_box.setValue(32)
    dialog.fps_box.setValue(12)
    if animated_by == "morph":
        dialog.timeline_length.setChecked(False)
        dialog.seconds_box.setValue(0.5)
    assert dialog.seconds_box.value() == 0.5 and dialog.seconds_box.isEnabled() == (animated_by == "morph")
    assert dialog.frames_label.text() == "6 frames"  # 12 fps x 0.5 s
    click(qtbot, dialog.export_button)
    assert dialog.cancel_button.isVisible() or dialog.job is None
    finished(qtbot, dialog)

    meta, frames = read_mp4(out)
    assert len(frames) == round(12 * 0.5) and meta["fps"] == 12 and tuple(meta["size"]) == (32, 32)
    start, end = engine.render_frames(doc, [{lid: 0.0}, {lid: 1.0}], size=32, paste_back=False)
    assert mad(frames[0], start) < mad(frames[0], end) and mad(frames[-1], end) < mad(frames[-1], start)
    assert mad(frames[0], frames[-1]) > 5  # the edit sweeps in
    assert len({f.tobytes() for f in frames}) == len(frames)  # every frame moves on
    assert sorted(p.name for p in out.parent.iterdir()) == ["sweep.mp4"]
    assert "6 frames at 12 fps, 32×32" in dialog.message.text() and str(out) in dialog.message.text()
    assert str(out) in w.statusBar().currentMessage()
    assert doc.revision == revision and doc.dirty == dirty and w.state.document is doc  # untouched

    click(qtbot, dialog.open_folder_button)
    assert opened_folders == [str(out.parent)]


def test_cancel_writes_nothing_and_leaves_the_document_alone(make_window: Any, engine: Any, seed_document: Document,
                                                            tmp_path: Path, qtbot: Any) -> None:
    w = make_window(engine)
    doc = edited(seed_document)
    open_document(qtbot, w, doc)
    (tmp_path / "projects").mkdir()
    assert w.projects._save_to(tmp_path / "projects" / "portrait.scproj")
    revision = doc.revision
    dialog = animation_dialog(qtbot, w)
    assert Path(dialog.path_edit.text()) == tmp_path / "projects" / "portrait-animation.mp4"  # the project's folder
    out = tmp_path / "out" / "long.mp4"
    out.parent.mkdir()
    type_path(qtbot, dialog, out)
    dialog.size_box.setValue(32)
    dialog.timeline_length.setChecked(False)
    dialog.seconds_box.setValue(120)  # 7200 frames: far more than can render before Cancel
    click(qtbot, dialog.export_button)
    qtbot.waitUntil(lambda: dialog.progress_bar.value() > 0, timeout=TIMEOUT)
    assert not dialog.export_button.isEnabled() and not dialog.options_panel.isEnabled()
    click(qtbot, dialog.cancel_button)
    finished(qtbot, dialog)
    assert "cancelled" in dialog.message.text() and not dialog.open_folder_button.isVisible()
    assert list(out.parent.iterdir()) == []  # neither the video nor a temporary
    assert doc.revision == revision and w.state.document is doc
    qtbot.waitUntil(lambda: len(w.state.tasks) == 0, timeout=TIMEOUT)
    assert dialog.export_button.isEnabled() and dialog.options_panel.isEnabled()  # ready for another try


def test_missing_ffmpeg_is_one_sentence_and_writes_nothing(make_window: Any, engine: Any, seed_document: Document,
                                                           tmp_path: Path, qtbot: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    w = make_window(engine)
    open_document(qtbot, w, edited(seed_document))
    dialog = animation_dialog(qtbot, w)
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    type_path(qtbot, dialog, out)
    dialog.size_box.setValue(32)
    dialog.fps_box.setValue(4)
    click(qtbot, dialog.export_button)
    finished(qtbot, dialog)
    text = dialog.message.text()
    assert "ffmpeg" in text and "\n" not in text and text.endswith(".") and "Traceback" not in text
    assert list(out.parent.iterdir()) == []


def test_animation_formats_loop_and_quality(make_window: Any, engine: Any, seed_document: Document, tmp_path: Path,
                                            qtbot: Any) -> None:
    w = make_window(engine)
    open_document(qtbot, w, edited(seed_document))
    dialog = animation_dialog(qtbot, w)
    dialog.size_box.setValue(32)
    dialog.fps_box.setValue(8)
    dialog.timeline_length.setChecked(False)
    dialog.seconds_box.setValue(0.5)
    written = {}
    for fmt, loop in (("GIF", False), ("WebP", True)):
        dialog.format_box.setCurrentIndex(dialog.format_box.findText(fmt))
        assert dialog.loop_box.isEnabled() and dialog.quality_box.isEnabled() == (fmt != "GIF")
        dialog.loop_box.setChecked(loop)
        out = tmp_path / f"clip-{fmt}{dialog.suffixes[0]}"
        type_path(qtbot, dialog, out.with_suffix(""))  # the format's extension is added
        click(qtbot, dialog.export_button)
        finished(qtbot, dialog)
        written[fmt] = out
        with Image.open(out) as im:
            assert getattr(im, "n_frames", 1) == 4 and im.size == (32, 32)
            assert ("loop" in im.info) == loop if fmt == "GIF" else im.info.get("loop") == 0
    assert crf_for_quality(90) == 18 and crf_for_quality(100) == 0 and crf_for_quality(1) == 51


def test_export_image_options_start_folder_and_notice(make_window: Any, engine: Any, seed_document: Document,
                                                     photo: Path, tmp_path: Path, qtbot: Any,
                                                     opened_folders: list[str]) -> None:
    w = make_window(engine)
    doc = edited(seed_document, photo)
    open_document(qtbot, w, doc)
    revision = doc.revision
    w.actions_.export_image.trigger()
    dialog = w.findChild(ExportImageDialog)
    assert dialog is not None and dialog.isVisible()
    assert Path(dialog.path_edit.text()) == photo.parent / "portrait-edited.png"  # beside the photo, not home
    assert dialog.picture_box.currentText() == "Pasted back into the photo" and not dialog.quality_box.isEnabled()

    def export(name: str, picture: str, size: int, quality: int = 95) -> Path:
        out = tmp_path / name
        type_path(qtbot, dialog, out)
        dialog.picture_box.setCurrentIndex(dialog.picture_box.findText(picture))
        dialog.size_box.setValue(size)
        dialog.quality_box.setValue(quality)
        click(qtbot, dialog.export_button)
        finished(qtbot, dialog)
        assert dialog.open_folder_button.isVisible() and str(out) in dialog.message.text(), dialog.message.text()
        assert str(out) in w.statusBar().currentMessage()
        return out

    assert Image.open(export("whole.png", "Pasted back into the photo", 0)).size == (81, 61)
    assert Image.open(export("face.png", "Face crop only", 0)).size == (32, 32)
    assert Image.open(export("whole-200.png", "Pasted back into the photo", 200)).size == (200, 151)
    assert dialog.format_box.currentText() == "PNG"
    type_path(qtbot, dialog, tmp_path / "x.jpg")
    assert dialog.format_box.currentText() == "JPEG" and dialog.quality_box.isEnabled()
    fine = export("fine.jpg", "Face crop only", 256, 95)
    rough = export("rough.jpg", "Face crop only", 256, 10)
    assert Image.open(fine).size == Image.open(rough).size == (256, 256)
    assert rough.stat().st_size < fine.stat().st_size * 0.7
    click(qtbot, dialog.open_folder_button)
    assert opened_folders == [str(tmp_path)]
    assert doc.revision == revision

    # An existing file is replaced only when the user says so (the test's answer is No).
    before = fine.read_bytes()
    type_path(qtbot, dialog, fine)
    dialog.quality_box.setValue(20)
    click(qtbot, dialog.export_button)
    assert dialog.job is None and fine.read_bytes() == before


def test_export_errors_show_in_the_dialog(make_window: Any, engine: Any, seed_document: Document, tmp_path: Path,
                                          qtbot: Any) -> None:
    w = make_window(engine)
    open_document(qtbot, w, edited(seed_document))
    dialog = w.export_image()
    type_path(qtbot, dialog, tmp_path / "no-such-folder" / "face.png")
    click(qtbot, dialog.export_button)
    finished(qtbot, dialog)
    text = dialog.message.text()
    assert "does not exist" in text and "\n" not in text and not dialog.open_folder_button.isVisible()
    assert not (tmp_path / "no-such-folder").exists()

    full = failure_text(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "face.png")
    assert full.startswith("The disk is full") and full.endswith(".") and "\n" not in full


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])  # the encoders still at work after the last frame is in
def test_a_cancel_while_the_encoder_finishes_still_writes_nothing(engine: Any, seed_document: Document,
                                                                  tmp_path: Path, suffix: str) -> None:
    from styleclip_desktop.errors import Cancelled
    from styleclip_desktop.export.animation import AnimationOptions, animate_document

    asked: list[bool] = []

    def progress(done: int, total: int) -> None:
        if done == total:
            asked.append(True)  # Cancel pressed once the last frame is in the encoder

    with pytest.raises(Cancelled):
        animate_document(engine, edited(seed_document), tmp_path / f"late{suffix}",
                         AnimationOptions(fps=4, seconds=0.5, size=32), progress=progress, cancelled=lambda: bool(asked))
    assert asked and list(tmp_path.iterdir()) == []
