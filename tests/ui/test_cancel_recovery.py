"""Cancel leaves the document as it was; autosave and recovery tell the truth; live
optimization frames follow View; file dialogs start where the document lives.

All through real widgets on the demo models (pytest-qt, offscreen)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from styleclip_desktop.document import (
    Document,
    GlobalDirectionParams,
    OptimizationParams,
    actions,
    find_recoverable,
)
from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.model_source import ModelSource

from .photos import pasted_into

TIMEOUT = 30_000


@pytest.fixture(autouse=True)
def _own_autosaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Autosaves of this test only: what other tests leave is never offered here."""
    data = tmp_path / "data"
    monkeypatch.setenv("STYLECLIP_DATA_DIR", str(data))
    return data / "autosave"


@pytest.fixture
def photo(gradient_photo: Path) -> Path:
    return gradient_photo


def photo_document(doc: Document, photo: Path) -> Document:
    return pasted_into(doc, photo)


def open_document(qtbot: Any, w: Any, doc: Document) -> np.ndarray:
    """Open `doc` in `w` and wait for its first full render."""
    shown: list[np.ndarray] = []
    w.state.render_ready.connect(lambda image, preview: None if preview else shown.append(np.asarray(image)))
    w.projects.replace_document(doc)
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT)
    return shown[-1]


def edit(w: Any, doc: Document, text: str = "a smiling face") -> None:
    w.state.push(actions.add_layer(doc, GlobalDirectionParams(text), alpha=2.0))


def crash(w: Any) -> None:
    """What kill -9 does to the editor's autosaves: nothing more is written or removed."""
    w.projects.shutdown()
    w.projects.autosaver = None


def empty_source(tmp_path: Path) -> ModelSource:
    return ModelSource(tmp_path / "models", device="cpu")


# -- Cancel ------------------------------------------------------------------------------------


class _Generated:
    def __init__(self, latent: np.ndarray, cancelled: bool) -> None:
        self._latent, self.cancelled = latent, cancelled

    def latent(self) -> np.ndarray:
        return self._latent


def fake_text_to_face(monkeypatch: pytest.MonkeyPatch, latent: np.ndarray, *, wait_for_cancel: bool) -> None:
    """Text-to-face as `generate_from_text` behaves: frames as it goes, and on cancel the
    best face so far with `cancelled` set."""
    from styleclip_desktop.ui import generate_dialog

    def generate(G: Any, clip: Any, prompt: str, *, cancel: Any, on_frame: Any, progress: Any,
                 **_kw: Any) -> _Generated:
        class Frame:
            image = np.full((32, 32, 3), 120, np.uint8)

        on_frame(Frame())
        progress(1, 100)
        while wait_for_cancel and not cancel():
            threading.Event().wait(0.005)
        return _Generated(latent, cancelled=wait_for_cancel)

    monkeypatch.setattr(generate_dialog, "text_to_face", lambda: generate)


def test_cancel_in_new_from_prompt_aborts_and_keeps_the_document(
        make_window: Any, engine: Any, seed_document: Document, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from styleclip_desktop.ui.generate_dialog import GenerateDialog

    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    edit(w, seed_document)
    asked: list[str] = []
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, title: asked.append(title) or dialogs.DISCARD)
    fake_text_to_face(monkeypatch, np.zeros_like(seed_document.latent), wait_for_cancel=True)
    dialog = GenerateDialog(w.state, w.projects, w)
    qtbot.addWidget(dialog)
    dialog.open()
    dialog.prompt.setText("a smiling woman")
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    assert dialog.job is not None and not dialog.generate_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.preview.pixmap() is not None and not dialog.preview.pixmap().isNull(),
                    timeout=TIMEOUT)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.job is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: len(w.state.tasks) == 0, timeout=TIMEOUT)
    assert asked == []  # no "Save the changes?" for a job the user stopped
    assert w.state.document is seed_document and seed_document.dirty
    assert dialog.isVisible() and dialog.generate_button.isEnabled() and dialog.cancel_button.isEnabled()


def test_backing_out_of_the_save_prompt_leaves_generate_usable(
        make_window: Any, engine: Any, seed_document: Document, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from styleclip_desktop.ui.generate_dialog import GenerateDialog

    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    edit(w, seed_document)
    asked: list[str] = []
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, title: asked.append(title) or dialogs.CANCEL)
    fake_text_to_face(monkeypatch, np.zeros_like(seed_document.latent), wait_for_cancel=False)
    dialog = GenerateDialog(w.state, w.projects, w)
    qtbot.addWidget(dialog)
    dialog.open()
    dialog.prompt.setText("a smiling woman")
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(asked), timeout=TIMEOUT)
    assert w.state.document is seed_document
    assert dialog.isVisible() and dialog.generate_button.isEnabled() and dialog.job is None


def test_cancelled_new_face_keeps_the_document_even_when_the_job_ran_to_its_end(
        make_window: Any, engine: Any, seed_document: Document, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """File > New (random face): sampling cannot stop half way; asked to cancel, its face is dropped."""
    from styleclip_desktop.ui import projects
    from styleclip_desktop.ui.engines import generator_of

    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    started, release = threading.Event(), threading.Event()
    real = generator_of(engine)

    class SlowGenerator:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def sample_w(self, *args: Any, **kwargs: Any) -> Any:
            started.set()
            release.wait(TIMEOUT / 1000)
            return real.sample_w(*args, **kwargs)

    monkeypatch.setattr(projects, "generator_of", lambda _engine: SlowGenerator())
    w.actions_.new.trigger()
    assert started.wait(TIMEOUT / 1000)
    w.state.tasks.cancel_current()  # what the status bar's Cancel does
    release.set()
    qtbot.waitUntil(lambda: len(w.state.tasks) == 0, timeout=TIMEOUT)
    assert w.state.document is seed_document


def test_a_new_random_face_is_clean_until_edited(make_window: Any, engine: Any, qtbot: Any) -> None:
    """File > New makes nothing worth a save prompt until the user changes it."""
    w = make_window(engine)
    w.actions_.new.trigger()
    qtbot.waitUntil(lambda: w.state.document is not None and len(w.state.tasks) == 0, timeout=TIMEOUT)
    assert not w.state.document.dirty and not w.isWindowModified()
    w.state.push(actions.add_layer(w.state.document, GlobalDirectionParams("smiling"), alpha=1.0))
    assert w.state.document.dirty


class _Optimized:
    cancelled = False

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.delta = np.full(shape, 0.5, np.float32)


def slow_optimization(engine: Any, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An optimization that sends one live 32 px crop, then runs until cancelled; released,
    it finishes with a result (which a cancelled run must drop)."""
    from styleclip_desktop.render.worker import Priority

    release = threading.Event()

    def submit_optimization(doc: Document, layer_id: str, on_frame: Any) -> Any:
        shape = doc.latent.shape

        def work(ctx: Any) -> Any:
            on_frame(np.full((32, 32, 3), 200, np.uint8))
            while not ctx.cancelled() and not release.is_set():
                ctx.cancel_event.wait(0.01)
            return _Optimized(shape)  # runs to its end even when asked to stop

        return engine.worker.submit(work, Priority.EXPORT)

    monkeypatch.setattr(engine, "submit_optimization", submit_optimization, raising=False)
    return release


def test_cancelled_optimization_leaves_the_document_and_the_canvas_shows_the_composite(
        make_window: Any, engine: Any, seed_document: Document, photo: Path, qtbot: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_window(engine)
    doc = photo_document(seed_document, photo)
    before = open_document(qtbot, w, doc)
    assert before.shape == (61, 81, 3) and w.state.paste_back
    slow_optimization(engine, monkeypatch)
    shown: list[tuple[np.ndarray, bool]] = []
    w.state.render_ready.connect(lambda image, preview: shown.append((np.asarray(image), preview)))
    panel = w.panels["layersDock"]
    panel.prompt.setText("a face with a beard")
    layer_id = panel.add_from_prompt("optimization")
    assert layer_id is not None and panel.runner.running(layer_id)
    index = w.state.undo_stack.index()
    row = panel.rows[layer_id]
    qtbot.waitUntil(lambda: row.thumb.pixmap() is not None and not row.thumb.pixmap().isNull(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any(preview for _image, preview in shown), timeout=TIMEOUT)
    # View says Composite: the live frame reaches the canvas pasted into the photo.
    live = [image for image, preview in shown if preview]
    pasted = engine.renderer.composite(engine.snapshot(doc), np.full((32, 32, 3), 200, np.uint8))
    assert all(image.shape == (61, 81, 3) for image in live)
    assert np.array_equal(live[-1], pasted)
    shown.clear()
    qtbot.mouseClick(row.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.runner.running(layer_id), timeout=TIMEOUT)
    # Nothing committed, and the canvas shows the document (per View) again.
    params = doc.layers.get(layer_id).params
    assert isinstance(params, OptimizationParams) and params.delta is None
    assert w.state.undo_stack.index() == index
    qtbot.waitUntil(lambda: any(not preview for _image, preview in shown), timeout=TIMEOUT)
    final = [image for image, preview in shown if not preview][-1]
    assert np.array_equal(final, before)
    assert w.canvas.image_array() is not None and np.array_equal(w.canvas.image_array(), before)


def test_live_optimization_frames_follow_the_crop_view(
        make_window: Any, engine: Any, seed_document: Document, photo: Path, qtbot: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_window(engine)
    doc = photo_document(seed_document, photo)
    open_document(qtbot, w, doc)
    shown: list[np.ndarray] = []
    w.state.set_paste_back(False)
    qtbot.waitUntil(lambda: w.state.image is not None and w.state.image.shape == (32, 32, 3), timeout=TIMEOUT)
    release = slow_optimization(engine, monkeypatch)
    w.state.render_ready.connect(lambda image, preview: shown.append(np.asarray(image)) if preview else None)
    panel = w.panels["layersDock"]
    panel.prompt.setText("a face with a beard")
    layer_id = panel.add_from_prompt("optimization")
    assert layer_id is not None
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT)
    assert shown[-1].shape == (32, 32, 3) and int(shown[-1][0, 0, 0]) == 200
    release.set()
    qtbot.waitUntil(lambda: not panel.runner.running(layer_id), timeout=TIMEOUT)
    params = doc.layers.get(layer_id).params
    assert isinstance(params, OptimizationParams) and params.delta is not None  # finished: committed


# -- autosave and recovery ---------------------------------------------------------------------


def test_a_discarded_document_is_never_autosaved_or_offered(
        make_window: Any, engine: Any, seed_document: Document, tmp_path: Path, qtbot: Any,
        _own_autosaves: Path) -> None:
    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    edit(w, seed_document)  # autosaved at once (the first change)
    assert seed_document.dirty
    w.projects.autosaver.interval = 0.0  # as if the last autosave were long ago: any signal may write
    w.actions_.new.trigger()  # File > New; the conftest answers "Discard"
    qtbot.waitUntil(lambda: w.state.document is not seed_document and w.state.document is not None,
                    timeout=TIMEOUT)
    w.projects.autosave_now_if_due()
    qtbot.waitUntil(lambda: len(w.state.tasks) == 0, timeout=TIMEOUT)
    names = [p.name for p in _own_autosaves.glob("*")] if _own_autosaves.exists() else []
    assert not [n for n in names if seed_document.uid in n]
    assert all(found.path.name != f"untitled-{seed_document.uid}.scproj.autosave"
               for found in find_recoverable(_own_autosaves))


def test_discard_then_a_cancelled_new_writes_no_autosave_until_the_next_change(
        make_window: Any, engine: Any, seed_document: Document, qtbot: Any, monkeypatch: pytest.MonkeyPatch,
        _own_autosaves: Path) -> None:
    from styleclip_desktop.ui import projects

    w = make_window(engine)
    open_document(qtbot, w, seed_document)
    edit(w, seed_document)
    w.projects.autosaver.save_now()
    untitled = _own_autosaves / f"untitled-{seed_document.uid}.scproj.autosave"
    assert untitled.exists()
    from styleclip_desktop.ui.engines import generator_of

    release = threading.Event()
    real = generator_of(engine)

    class SlowGenerator:
        def __getattr__(self, name: str) -> Any:
            release.wait(TIMEOUT / 1000)
            return getattr(real, name)

    monkeypatch.setattr(projects, "generator_of", lambda _engine: SlowGenerator())
    w.actions_.new.trigger()  # "Discard": the autosave goes at once
    assert not untitled.exists()
    w.projects.autosave_now_if_due()
    assert not untitled.exists()
    w.state.tasks.cancel_current()
    release.set()
    qtbot.waitUntil(lambda: len(w.state.tasks) == 0, timeout=TIMEOUT)
    assert w.state.document is seed_document
    w.projects.autosaver.interval = 0.0
    w.projects.autosave_now_if_due()
    assert not untitled.exists()
    edit(w, seed_document, "grey hair")  # new work after the cancel is worth keeping again
    assert untitled.exists()


def test_a_saved_project_with_later_changes_is_offered_at_the_next_start(
        make_window: Any, seed_document: Document, tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch,
        _own_autosaves: Path) -> None:
    w = make_window(source=empty_source(tmp_path))
    w.projects.replace_document(seed_document)
    edit(w, seed_document)
    project = tmp_path / "projects" / "portrait.scproj"
    project.parent.mkdir()
    assert w.projects._save_to(project)
    edit(w, seed_document, "grey hair")
    w.projects.autosaver.save_now()
    crash(w)
    offered: list[Any] = []
    monkeypatch.setattr(dialogs, "ask_recover", lambda parent, found: offered.append(found) or True)
    w2 = make_window(source=empty_source(tmp_path))
    assert w2.projects.offer_recovery()
    assert [found.project_path for found in offered] == [project]
    doc = w2.state.document
    assert doc is not None and doc.dirty and doc.file_path == project
    assert [layer.name for layer in doc.layers] == ["a smiling face", "grey hair"]
    # Saved: nothing is left to offer.
    assert w2.projects.save()
    assert find_recoverable(_own_autosaves) == []
    assert not (project.parent / ".portrait.scproj.autosave").exists()


def test_no_when_reopening_a_project_removes_its_autosave(
        make_window: Any, seed_document: Document, tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch,
        _own_autosaves: Path) -> None:
    w = make_window(source=empty_source(tmp_path))
    w.projects.replace_document(seed_document)
    project = tmp_path / "portrait.scproj"
    assert w.projects._save_to(project)
    edit(w, seed_document)
    w.projects.autosaver.save_now()
    beside = tmp_path / ".portrait.scproj.autosave"
    assert beside.exists()
    crash(w)
    asked: list[Any] = []
    monkeypatch.setattr(dialogs, "ask_recover", lambda parent, found: (asked.append(found), False)[1])
    w2 = make_window(source=empty_source(tmp_path))
    assert w2.projects.open_project(project)
    assert len(asked) == 1 and not w2.state.document.dirty
    assert not beside.exists() and find_recoverable(_own_autosaves) == []
    w2.projects.close_document()
    assert w2.projects.open_project(project)
    assert len(asked) == 1  # never asked again
    assert not w2.projects.offer_recovery() and len(asked) == 1


def test_several_recoverable_documents_are_listed_in_one_dialog(
        make_window: Any, engine: Any, tmp_path: Path, qtbot: Any, monkeypatch: pytest.MonkeyPatch,
        _own_autosaves: Path) -> None:
    import os

    from styleclip_desktop.ui.dialogs import RecoverDialog

    w = make_window(source=empty_source(tmp_path))
    latent = np.zeros((4, 512), np.float32)
    docs = {name: Document(latent.copy(), description=name) for name in ("oldest", "project", "newest")}
    for i, (name, doc) in enumerate(docs.items()):
        w.projects.replace_document(doc)
        edit(w, doc, f"edit of {name}")
        if name == "project":
            assert w.projects._save_to(tmp_path / "project.scproj")
            edit(w, doc, "later edit")
        path = w.projects.autosaver.save_now()
        os.utime(path, (1000 + i, 1000 + i))
        if name == "project":
            os.utime(tmp_path / "project.scproj", (500, 500))  # saved before the changes autosaved
        crash(w)
        w = make_window(source=empty_source(tmp_path))
    assert len(find_recoverable(_own_autosaves)) == 3
    seen: list[RecoverDialog] = []

    def ask_many(parent: Any, found: list[Any]) -> Any:
        dialog = RecoverDialog(parent, found)
        qtbot.addWidget(dialog)
        dialog.show()
        seen.append(dialog)
        assert dialog.list.count() == 3 and "project.scproj" in dialog.list.item(1).text()
        assert dialog.list.currentRow() == 0  # the newest first, selected
        qtbot.mouseClick(dialog.discard_button, Qt.MouseButton.LeftButton)  # the newest goes
        assert dialog.list.count() == 2
        dialog.list.setCurrentRow(1)  # the oldest
        qtbot.mouseClick(dialog.recover_button, Qt.MouseButton.LeftButton)
        return dialog.chosen, dialog.discarded

    monkeypatch.setattr(dialogs, "ask_recover_many", ask_many)
    found = find_recoverable(_own_autosaves)
    newest, project_autosave, oldest = (f.path for f in found)
    assert w.projects.offer_recovery() and seen
    doc = w.state.document
    assert doc is not None and [layer.name for layer in doc.layers] == ["edit of oldest"]
    assert not newest.exists()  # discarded: deleted
    assert project_autosave.exists() and oldest.exists()  # kept for the next start / owned by the open document
    assert w.projects.autosaver.written_path == oldest
    left = find_recoverable(_own_autosaves)
    assert {f.path for f in left} == {project_autosave, oldest}


def test_recover_dialog_discard_all_and_later(qtbot: Any, tmp_path: Path) -> None:
    from styleclip_desktop.document import RecoverableProject
    from styleclip_desktop.ui.dialogs import RecoverDialog

    found = [RecoverableProject(tmp_path / f"untitled-{i}.scproj.autosave", None, f"Doc {i}", 1000.0 + i)
             for i in range(3)]
    later = RecoverDialog(None, found)
    qtbot.addWidget(later)
    later.show()
    qtbot.mouseClick(later.later_button, Qt.MouseButton.LeftButton)
    assert later.chosen is None and later.discarded == [] and not later.isVisible()
    every = RecoverDialog(None, found)
    qtbot.addWidget(every)
    every.show()
    qtbot.mouseClick(every.discard_all_button, Qt.MouseButton.LeftButton)
    assert every.chosen is None and every.discarded == found


# -- file dialogs start where the document lives -------------------------------------------------


def test_save_as_and_open_start_in_the_photo_or_project_folder(
        make_window: Any, seed_document: Document, photo: Path, tmp_path: Path, qtbot: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    starts: list[str] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda parent, caption, start, *a, **k: (starts.append(start), ("", ""))[1]))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda parent, caption, start, *a, **k: (starts.append(start), ("", ""))[1]))
    w = make_window(source=empty_source(tmp_path))
    w.projects.replace_document(photo_document(seed_document, photo))
    w.actions_.save_as.trigger()
    assert starts[-1] == str(photo.parent / "portrait.scproj")
    project = tmp_path / "projects" / "mine.scproj"
    project.parent.mkdir()
    assert w.projects._save_to(project)
    w.actions_.save_as.trigger()
    assert starts[-1] == str(project.parent / "mine.scproj")
    w.open_dialog()
    assert starts[-1] == str(project.parent)
