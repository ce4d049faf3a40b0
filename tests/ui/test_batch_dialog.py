"""File > Batch Apply… on the demo models: the open document's layers over a real face, a
photo with no face and a damaged file, through the dialog's own buttons; Cancel stopping
after the photo under way (a second one abandoning it) and Start resuming; the editor
rendering while a batch runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from styleclip_desktop.batch.manifest import read_records
from styleclip_desktop.batch.worker import BatchWorker
from styleclip_desktop.document import Document, Layer, OptimizationParams
from styleclip_desktop.ui.batch_dialog import BatchDialog, progress_text, worker_config

TIMEOUT = 120_000


def edited(doc: Document) -> Document:
    """`doc`'s face with one W-space edit at alpha 1 (a fixed offset: no CLIP needed)."""
    delta = np.random.RandomState(7).randn(*doc.latent.shape).astype(np.float32) * 0.6
    return Document(doc.latent, layers=[Layer(OptimizationParams("grey hair", delta=delta), alpha=1.0)],
                    seed=3, synthetic=True)


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    """A real face (skimage's astronaut), a flat grey picture and a JPEG cut short."""
    import skimage.data

    folder = tmp_path / "photos"
    folder.mkdir()
    face = folder / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(face, quality=90)
    grey = folder / "grey.jpg"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(grey)
    broken = folder / "broken.jpg"
    broken.write_bytes(face.read_bytes()[:3000])
    return {"face": face, "grey": grey, "broken": broken}


def click(qtbot: Any, button: Any) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def open_dialog(qtbot: Any, window: Any, doc: Document) -> BatchDialog:
    window.projects.replace_document(doc)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=TIMEOUT)
    action = window.actions_.batch_apply
    assert action.isEnabled()
    action.trigger()
    dialog = window.findChild(BatchDialog)
    assert dialog is not None and dialog.isVisible()
    return dialog


def add_photos(qtbot: Any, dialog: BatchDialog, monkeypatch: pytest.MonkeyPatch, files: list[Path],
               outdir: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *a, **k: ([str(p) for p in files], "")))
    click(qtbot, dialog.add_photos_button)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(outdir)))
    click(qtbot, dialog.browse_button)


def finished(qtbot: Any, dialog: BatchDialog) -> None:
    qtbot.waitUntil(lambda: not dialog.running() and dialog.close_button.isVisible(), timeout=TIMEOUT)


class Gate:
    """Holds the batch's first photo until the test lets it go."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached, self.opened = threading.Event(), threading.Event()
        real = BatchWorker.process
        gate = self

        def process(worker: BatchWorker, item: Any, cancelled: Any = None) -> dict[str, Any]:
            gate.reached.set()
            assert gate.opened.wait(60)
            return real(worker, item, cancelled)

        monkeypatch.setattr(BatchWorker, "process", process)

    def wait_reached(self, qtbot: Any) -> None:
        qtbot.waitUntil(self.reached.is_set, timeout=TIMEOUT)


def test_batch_apply_is_offered_only_for_a_document_with_layers(make_window: Any, engine: Any,
                                                                 seed_document: Document, qtbot: Any) -> None:
    w = make_window(engine)
    action = w.actions_.batch_apply
    file_menu = w.actions_.export_image.associatedObjects()[-1]
    assert "&Batch Apply…" in [a.text() for a in file_menu.actions()]
    assert not action.isEnabled()  # no document
    w.projects.replace_document(seed_document)
    qtbot.waitUntil(lambda: w.state.image is not None, timeout=TIMEOUT)
    assert not seed_document.layers and not action.isEnabled()
    w.projects.replace_document(edited(seed_document))
    assert action.isEnabled()


def test_batch_writes_the_face_and_lists_the_failures(make_window: Any, engine: Any, seed_document: Document,
                                                      demo_source: Any, photos: dict[str, Path], tmp_path: Path,
                                                      qtbot: Any, monkeypatch: pytest.MonkeyPatch,
                                                      opened_folders: list[str]) -> None:
    w = make_window(engine)
    dialog = open_dialog(qtbot, w, edited(seed_document))
    assert dialog.recipe_label.text().startswith("Applies the 1 layer of Untitled to each photo")
    outdir = tmp_path / "results"
    add_photos(qtbot, dialog, monkeypatch, [photos["face"], photos["grey"], photos["broken"]], outdir)
    assert dialog.photo_paths() == [str(photos[k]) for k in ("face", "grey", "broken")]
    assert dialog.count_label.text() == "3 photos" and dialog.outdir_edit.text() == str(outdir)
    assert dialog.still_box.currentText() == "PNG" and dialog.animation_box.currentText() == "None"
    dialog.photos.item(1).setSelected(True)  # Remove takes the selected photo out; adding it again puts it back
    click(qtbot, dialog.remove_button)
    assert dialog.photo_paths() == [str(photos["face"]), str(photos["broken"])]
    assert dialog.add_photos([photos["grey"], photos["face"]]) == 1  # each photo once

    click(qtbot, dialog.start_button)
    assert dialog.running() and dialog.cancel_button.isVisible() and not dialog.options_panel.isEnabled()
    assert any("Batch" in t.message for t in w.state.tasks._tasks.values())  # the status bar shows it too
    finished(qtbot, dialog)

    assert (outdir / "astronaut.png").is_file()
    with Image.open(outdir / "astronaut.png") as im:
        assert im.size == (512, 512)  # pasted back into the whole photo
    records = read_records(outdir)
    assert len(records) == 3
    status = {Path(r["input"]).name: r["status"] for r in records}
    assert status == {"astronaut.jpg": "done", "grey.jpg": "failed", "broken.jpg": "failed"}
    summary = dialog.summary
    assert summary is not None and (summary.done, summary.failed, summary.stopped) == (1, 2, False)
    text = dialog.message.text()
    assert text.startswith("3 photos: 1 done, 2 failed.") and str(outdir) in text and "Traceback" not in text
    shown = sorted(dialog.failures.item(i).text() for i in range(dialog.failures.count()))
    assert dialog.failures.isVisible() and len(shown) == 2
    assert shown[0].startswith("broken.jpg: ") and "truncated" in shown[0]
    assert shown[1] == "grey.jpg: no face found"
    assert not any("\n" in s for s in shown)
    assert dialog.progress_bar.value() == 3 and dialog.progress_bar.maximum() == 3
    assert len(w.state.tasks) == 0
    click(qtbot, dialog.open_folder_button)
    assert opened_folders == [str(outdir)]

    # The batch used the editor's models on the editor's device.
    config = worker_config(demo_source, engine, outdir, "torch")
    assert config.models_dir == str(demo_source.models_dir) and config.device == str(engine.device)
    assert config.e4e == str(demo_source.e4e_path())

    # Started again into the same folder: nothing is redone.
    click(qtbot, dialog.start_button)
    finished(qtbot, dialog)
    assert dialog.summary is not None and dialog.summary.skipped == 3 and len(read_records(outdir)) == 3


def test_cancel_stops_after_the_photo_under_way_and_start_resumes(make_window: Any, engine: Any,
                                                                  seed_document: Document, photos: dict[str, Path],
                                                                  tmp_path: Path, qtbot: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(monkeypatch)
    w = make_window(engine)
    dialog = open_dialog(qtbot, w, edited(seed_document))
    outdir = tmp_path / "results"
    add_photos(qtbot, dialog, monkeypatch, [photos["face"], photos["grey"], photos["broken"]], outdir)
    click(qtbot, dialog.start_button)
    gate.wait_reached(qtbot)  # the models are loaded and the first photo is under way
    qtbot.waitUntil(lambda: dialog.message.text().startswith("0 of 3 photos"), timeout=TIMEOUT)

    # The editor goes on rendering while the batch runs.
    before = w.state._render_seq
    w.state.request_render(preview=False)
    qtbot.waitUntil(lambda: w.state._shown_seq > before, timeout=TIMEOUT)
    assert dialog.running()

    click(qtbot, dialog.cancel_button)
    assert "Stopping after the photo under way" in dialog.message.text()
    assert dialog.cancel_button.text() == "Stop Now"
    gate.opened.set()
    finished(qtbot, dialog)
    summary = dialog.summary
    assert summary is not None and summary.stopped and summary.done == 1 and summary.remaining == 2
    assert "Stopped with 2 not started" in dialog.message.text()
    assert [Path(r["input"]).name for r in read_records(outdir)] == ["astronaut.jpg"]
    assert dialog.start_button.text() == "&Resume"

    click(qtbot, dialog.start_button)
    finished(qtbot, dialog)
    summary = dialog.summary
    assert summary is not None and (summary.skipped, summary.failed, summary.stopped) == (1, 2, False)
    assert len(read_records(outdir)) == 3


def test_a_second_cancel_abandons_the_photo_under_way(make_window: Any, engine: Any, seed_document: Document,
                                                      photos: dict[str, Path], tmp_path: Path, qtbot: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(monkeypatch)
    w = make_window(engine)
    dialog = open_dialog(qtbot, w, edited(seed_document))
    outdir = tmp_path / "results"
    add_photos(qtbot, dialog, monkeypatch, [photos["face"], photos["grey"]], outdir)
    click(qtbot, dialog.start_button)
    gate.wait_reached(qtbot)
    click(qtbot, dialog.cancel_button)
    click(qtbot, dialog.cancel_button)
    gate.opened.set()
    finished(qtbot, dialog)
    text = dialog.message.text()
    assert text.startswith("Stopped: 0 done, 0 failed, 2 not finished") and "resume" in text
    assert read_records(outdir) == [] and not (outdir / "astronaut.png").exists()
    assert len(w.state.tasks) == 0


def test_mistakes_are_one_line_messages(make_window: Any, engine: Any, seed_document: Document,
                                        photos: dict[str, Path], tmp_path: Path, qtbot: Any) -> None:
    w = make_window(engine)
    dialog = open_dialog(qtbot, w, edited(seed_document))
    dialog.outdir_edit.setText(str(tmp_path / "out"))
    assert not dialog.start()
    assert "add the photos" in dialog.message.text().lower()
    dialog.add_photos([photos["face"]])
    dialog.still_box.setCurrentIndex(dialog.still_box.findText("None"))
    assert not dialog.start() and "writes nothing" in dialog.message.text()
    dialog.still_box.setCurrentIndex(dialog.still_box.findText("WebP"))
    dialog.animation_box.setCurrentIndex(dialog.animation_box.findText("WebP"))
    assert not dialog.start() and "same name" in dialog.message.text()
    dialog.animation_box.setCurrentIndex(0)
    (tmp_path / "a-file").write_text("x")
    dialog.outdir_edit.setText(str(tmp_path / "a-file"))
    assert not dialog.start() and "is a file" in dialog.message.text()
    (tmp_path / "out").mkdir()
    assert dialog.add_photos([tmp_path / "out"]) == 0
    assert "No photos in out" in dialog.message.text()
    assert not dialog.running() and "\n" not in dialog.message.text()


def test_progress_text_estimates_the_time_left() -> None:
    assert progress_text(0, 3, 0, 0.0) == "0 of 3 photos"
    assert progress_text(2, 10, 2, 30.0) == "2 of 10 photos, about 2 min 0 s left"
    assert progress_text(1, 1, 1, 5.0) == "1 of 1 photo"
