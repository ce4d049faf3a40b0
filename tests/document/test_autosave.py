"""Autosave: rate limit, locations, discard, and recovery after a crash."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.document import (
    Autosaver,
    Document,
    GlobalDirectionParams,
    Layer,
    UndoStack,
    autosave_for_project,
    canonical_state,
    find_recoverable,
    forget_autosave,
    recover,
    save_project,
    set_alpha,
)


def _doc() -> Document:
    return Document(np.zeros((2, 3), np.float32), layers=[Layer(GlobalDirectionParams("smile"), id="s")])


def test_rate_limited_autosave_of_an_untitled_document(tmp_path: Path) -> None:
    doc = _doc()
    saver = Autosaver(doc, tmp_path / "autosave", interval=30.0)
    assert saver.maybe_save(now=0.0)  # a new, unsaved document is worth keeping
    path = saver.path
    assert path.parent == tmp_path / "autosave" and path.name == f"untitled-{doc.uid}.scproj.autosave"
    assert not saver.maybe_save(now=1.0)  # nothing changed
    stack = UndoStack()
    stack.push(set_alpha(doc, "s", 1.0))
    assert not saver.maybe_save(now=10.0)  # changed, but too soon
    assert saver.maybe_save(now=30.0)
    recovered = recover(path)
    assert canonical_state(recovered) == canonical_state(doc)
    assert recovered.dirty and recovered.file_path is None


def test_autosave_moves_beside_the_project_once_saved_and_goes_away_when_clean(tmp_path: Path) -> None:
    doc = _doc()
    saver = Autosaver(doc, tmp_path / "autosave", interval=0.0)
    saver.maybe_save(now=0.0)
    untitled = saver.written_path
    assert untitled is not None and untitled.exists()
    project = save_project(doc, tmp_path / "portrait.scproj")
    assert not saver.maybe_save(now=1.0)  # clean: the stale autosave is removed
    assert not untitled.exists() and saver.written_path is None
    UndoStack().push(set_alpha(doc, "s", 2.0))
    assert saver.maybe_save(now=2.0)
    beside = tmp_path / ".portrait.scproj.autosave"
    assert saver.written_path == beside and beside.exists()
    found = autosave_for_project(project)
    assert found is not None and found.project_path == project and found.title == "portrait"
    recovered = recover(found)
    assert recovered.file_path == project and recovered.dirty
    assert recovered.layers.get("s").alpha == 2.0
    saver.discard()
    assert not beside.exists() and autosave_for_project(project) is None


def test_find_recoverable_lists_readable_autosaves_newest_first(tmp_path: Path) -> None:
    folder = tmp_path / "autosave"
    a, b = _doc(), _doc()
    Autosaver(a, folder).save_now()
    Autosaver(b, folder).save_now()
    (folder / "untitled-broken.scproj.autosave").write_bytes(b"not a zip")
    (folder / "notes.txt").write_text("ignore me")
    os.utime(folder / f"untitled-{a.uid}.scproj.autosave", (1, 1))
    found = find_recoverable(folder)
    assert [r.path.name for r in found] == [f"untitled-{b.uid}.scproj.autosave", f"untitled-{a.uid}.scproj.autosave"]
    assert all(r.project_path is None and r.title == "Untitled" for r in found)
    assert find_recoverable(tmp_path / "missing") == []


def test_a_failing_autosave_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    saver = Autosaver(_doc(), blocker / "autosave")
    assert not saver.maybe_save(now=0.0)
    assert isinstance(saver.last_error, OSError)
    with pytest.raises(OSError):
        saver.save_now()


def test_an_autosave_beside_a_project_is_found_at_start_through_its_link(tmp_path: Path) -> None:
    folder = tmp_path / "autosave"
    doc = _doc()
    project = save_project(doc, tmp_path / "work" / "portrait.scproj")
    UndoStack().push(set_alpha(doc, "s", 2.0))
    saver = Autosaver(doc, folder, interval=0.0)
    assert saver.maybe_save(now=0.0)
    beside = tmp_path / "work" / ".portrait.scproj.autosave"
    links = list(folder.glob("*.autosave-link"))
    assert saver.written_path == beside and len(links) == 1
    found = find_recoverable(folder)
    assert [(f.path, f.project_path, f.title) for f in found] == [(beside, project, "portrait")]
    assert recover(found[0]).layers.get("s").alpha == 2.0
    saver.discard()  # saved or closed on purpose: the link goes with the autosave
    assert not beside.exists() and not list(folder.glob("*"))
    assert find_recoverable(folder) == []


def test_links_to_saved_or_vanished_work_are_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "autosave"
    doc = _doc()
    project = save_project(doc, tmp_path / "portrait.scproj")
    UndoStack().push(set_alpha(doc, "s", 2.0))
    autosave = Autosaver(doc, folder).save_now()
    os.utime(autosave, (1, 1))  # the project was saved after this autosave: nothing is lost
    assert find_recoverable(folder) == [] and not list(folder.glob("*.autosave-link"))
    assert autosave_for_project(project) is None
    other = _doc()
    save_project(other, tmp_path / "other.scproj")
    UndoStack().push(set_alpha(other, "s", 1.0))
    gone = Autosaver(other, folder).save_now()
    gone.unlink()  # deleted by hand: the link points at nothing
    assert find_recoverable(folder) == [] and not list(folder.glob("*"))


def test_forget_autosave_removes_the_file_and_its_link_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "autosave"
    doc = _doc()
    project = save_project(doc, tmp_path / "portrait.scproj")
    UndoStack().push(set_alpha(doc, "s", 2.0))
    autosave = Autosaver(doc, folder).save_now()
    [found] = find_recoverable(folder)
    forget_autosave(found, folder)
    assert not autosave.exists() and not list(folder.glob("*")) and project.exists()
    forget_autosave(project, folder)  # not an autosave: never deleted
    assert project.exists()


def test_discarded_changes_are_not_autosaved_until_the_document_changes(tmp_path: Path) -> None:
    doc = _doc()
    saver = Autosaver(doc, tmp_path / "autosave", interval=0.0)
    assert saver.maybe_save(now=0.0)
    saver.discard_changes()
    assert saver.written_path is None and not saver.path.exists()
    assert not saver.maybe_save(now=1.0) and not saver.path.exists()
    UndoStack().push(set_alpha(doc, "s", 1.0))
    assert saver.maybe_save(now=2.0) and saver.path.exists()


def test_a_closed_autosaver_never_writes_again(tmp_path: Path) -> None:
    doc = _doc()
    saver = Autosaver(doc, tmp_path / "autosave", interval=0.0)
    assert saver.maybe_save(now=0.0)
    saver.close()
    assert not saver.path.exists()
    UndoStack().push(set_alpha(doc, "s", 1.0))
    assert not saver.maybe_save(now=1.0) and not saver.path.exists()
    with pytest.raises(RuntimeError):
        saver.save_now()
