"""Saves killed part-way leave temporaries; the next save of the same target (and, for
untitled autosaves, the next start) removes them, and nothing else.

A killed save is a real one: a child process saves, is stopped inside fsync, and is
killed with SIGKILL, so its temporary is exactly what a crash leaves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.document import (
    Autosaver,
    Document,
    clear_stale_temporaries,
    load_project,
    save_project,
)
from styleclip_desktop.document.atomic import STALE_AFTER_S, create_temporary, temporary_pattern

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills a saving process with SIGKILL")

OLD = time.time() - 2 * STALE_AFTER_S

# Saves `path` (a project, an untitled autosave into a folder, or a still export) and
# stops inside the fsync that follows the write, holding its temporary open.
_CHILD = r"""
import os, sys, time
from pathlib import Path
import numpy as np

kind, target = sys.argv[1], Path(sys.argv[2])

def stuck(fd):
    print("writing", flush=True)
    time.sleep(300)

os.fsync = stuck
if kind == "still":
    from styleclip_desktop.export.stills import write_still
    write_still(np.zeros((8, 8, 3), np.uint8), target)
else:
    from styleclip_desktop.document import Autosaver, Document, save_project
    doc = Document(np.ones((18, 16), np.float32), uid="0123456789abcdef")
    if kind == "project":
        save_project(doc, target)
    else:
        doc.mark_unsaved()
        Autosaver(doc, target).save_now()
"""


class Saver:
    """A child process stuck in the middle of a save."""

    def __init__(self, kind: str, target: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, kind, str(target)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "writing\n", self.proc.stderr.read() if self.proc.stderr else line

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def savers() -> Iterator[list[Saver]]:
    started: list[Saver] = []
    yield started
    for saver in started:
        if saver.proc.poll() is None:
            saver.kill()


def _doc() -> Document:
    return Document(np.zeros((18, 16), np.float32))


def _age(path: Path, when: float = OLD) -> Path:
    os.utime(path, (when, when))
    return path


def _file(path: Path, *, old: bool = True) -> Path:
    """A file of someone's data, last written long ago (or just now)."""
    path.write_bytes(b"someone's data")
    return _age(path) if old else path


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _new(folder: Path, names: set[str]) -> list[Path]:
    return sorted(folder / n for n in _names(folder) - names)


def test_the_next_save_removes_what_killed_saves_left_and_nothing_else(tmp_path: Path,
                                                                     savers: list[Saver]) -> None:
    target = tmp_path / "me.scproj"
    save_project(_doc(), target)
    killed = []
    for _ in range(3):
        before = _names(tmp_path)
        saver = Saver("project", target)
        savers.append(saver)
        [tmp] = _new(tmp_path, before)
        assert temporary_pattern(target).fullmatch(tmp.name), tmp.name
        saver.kill()
        killed.append(_age(tmp))
    # Another save of the same project is still writing (in another window, say), and has
    # been for longer than the stale age: its lock keeps its temporary.
    before = _names(tmp_path)
    live = Saver("project", target)
    savers.append(live)
    [live_tmp] = _new(tmp_path, before)
    _age(live_tmp)
    kept = [
        _file(tmp_path / ".me.scproj.backup.tmp"),  # not mkstemp's 8 characters
        _file(tmp_path / ".me.scproj.ABCDEFGH.tmp"),  # not mkstemp's alphabet
        _file(tmp_path / "me.scproj.abcdefgh.tmp"),  # no leading dot
        _file(tmp_path / ".me.scproj.abcdefgh.tmp.keep"),
        _file(tmp_path / ".other.scproj.abcdefgh.tmp"),  # another project's
        _file(tmp_path / ".me.abcdefgh.part.png"),  # an export's, of another target
        _file(tmp_path / ".me.scproj.fresh123.tmp", old=False),  # ours, but new: a version without locks
    ]
    # Of our naming, but a link (to an old file) and a folder: neither is a temporary.
    outside = _file(tmp_path / "elsewhere")
    link = tmp_path / ".me.scproj.symlink1.tmp"
    link.symlink_to(outside)
    folder = tmp_path / ".me.scproj.folder12.tmp"
    folder.mkdir()
    _age(folder)

    save_project(_doc(), target)

    assert not any(p.exists() for p in killed)
    assert live_tmp.exists()
    assert all(p.exists() for p in kept)
    assert link.is_symlink() and outside.read_bytes() == b"someone's data" and folder.is_dir()
    assert load_project(target).latent.shape == (18, 16)

    live.kill()
    save_project(_doc(), target)
    assert not live_tmp.exists(), "once its writer is dead, an old temporary is stale"
    assert all(p.exists() for p in kept)


def test_a_save_clears_what_killed_autosaves_left_beside_the_project(tmp_path: Path) -> None:
    target = tmp_path / "me.scproj"
    stale = _file(tmp_path / "..me.scproj.autosave.k3j9_x0a.tmp")
    save_project(_doc(), target)
    assert not stale.exists()


def test_an_autosave_clears_what_killed_autosaves_of_it_left(tmp_path: Path, savers: list[Saver]) -> None:
    folder = tmp_path / "autosave"
    folder.mkdir()
    saver = Saver("autosave", folder)
    savers.append(saver)
    [tmp] = list(folder.iterdir())
    assert tmp.name.startswith(".untitled-0123456789abcdef.scproj.autosave.") and tmp.name.endswith(".tmp")
    saver.kill()
    _age(tmp)
    doc = Document(np.ones((18, 16), np.float32), uid="0123456789abcdef")
    doc.mark_unsaved()
    written = Autosaver(doc, folder).save_now()
    assert _names(folder) == {written.name}


def test_start_up_clears_the_autosave_folder_of_killed_autosaves_only(tmp_path: Path, savers: list[Saver]) -> None:
    folder = tmp_path / "autosave"
    folder.mkdir()
    saver = Saver("autosave", folder)
    savers.append(saver)
    [killed] = list(folder.iterdir())
    saver.kill()
    _age(killed)
    kept = [
        _file(folder / "untitled-feedface00000000.scproj.autosave"),  # the autosave itself, however old
        _file(folder / ".untitled-feedface00000000.scproj.autosave.abcdefgh.tmp", old=False),
        _file(folder / ".untitled-feedface00000000.scproj.autosave.tmp"),
        _file(folder / ".notes.txt.abcdefgh.tmp"),
        _file(folder / "untitled-x.scproj.autosave.abcdefgh.tmp"),
    ]
    assert clear_stale_temporaries(folder) == [killed]
    assert all(p.exists() for p in kept)
    assert clear_stale_temporaries(tmp_path / "missing") == []


def test_our_patterns_match_the_names_mkstemp_makes(tmp_path: Path) -> None:
    for staged, target in ((False, tmp_path / "a b.scproj"), (True, tmp_path / "clip.final.mp4")):
        pattern = temporary_pattern(target, staged=staged)
        for _ in range(200):
            fd, path = create_temporary(target, staged=staged)
            os.close(fd)
            assert pattern.fullmatch(path.name), path.name
            path.unlink()
    assert temporary_pattern(tmp_path / "x.mp4", staged=True).pattern.endswith(re.escape(".part.mp4"))


def test_a_killed_still_export_is_cleared_by_the_next_export_of_that_file(tmp_path: Path,
                                                                         savers: list[Saver]) -> None:
    from styleclip_desktop.export.stills import write_still

    target = tmp_path / "out.png"
    saver = Saver("still", target)
    savers.append(saver)
    [tmp] = list(tmp_path.iterdir())
    assert temporary_pattern(target, staged=True).fullmatch(tmp.name), tmp.name
    saver.kill()
    _age(tmp)
    other = _file(tmp_path / ".out.abcdefgh.part.webp")  # the same name, exported as WebP
    write_still(np.zeros((4, 4, 3), np.uint8), target)
    assert _names(tmp_path) == {"out.png", other.name}
