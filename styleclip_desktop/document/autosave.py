"""Autosave and crash recovery.

While a document has unsaved changes, an `Autosaver` writes it to an autosave file at
most once per `interval` seconds. The app calls `maybe_save()` from a timer (every few
seconds) and after edits; a change reaches the disk within `interval` plus that period,
so with the defaults (25 s, and a 5 s timer) a crash loses at most the last 30 s.

Where autosaves go:
- a saved project `photo.scproj` autosaves to `.photo.scproj.autosave` beside it, so the
  recovery travels with the project;
- an untitled project autosaves into the folder the app passes in
  (`styleclip_desktop.paths.data_dir() / "autosave"`) as
  `untitled-<document uid>.scproj.autosave`.

An autosave beside a project also leaves a small link file in the app's autosave folder
(`linked-<hash>.autosave-link`, holding the autosave's path), so that the next start finds
every document that had unsaved work, not only the untitled ones.

An autosave is an ordinary project file (written atomically the same way) whose manifest
also records which project it belongs to. Once the document is saved or closed, the
autosave (and its link) is deleted: a file left behind means the app did not exit
cleanly. So may be the temporary file of an autosave killed mid-write: each autosave
removes those of its own target, and `clear_stale_temporaries` those of every untitled
autosave at start.

When the user discards the changes (`Autosaver.discard_changes`), the autosave goes and no
new one is written until the document changes again; a closed autosaver
(`Autosaver.close`) never writes again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from styleclip_desktop.document.atomic import STALE_AFTER_S, remove_stale_temporaries
from styleclip_desktop.document.document import Document
from styleclip_desktop.document.errors import ProjectFileError
from styleclip_desktop.document.project_file import PROJECT_SUFFIX, load_project, read_manifest, write_project

log = logging.getLogger(__name__)

AUTOSAVE_SUFFIX = PROJECT_SUFFIX + ".autosave"
LINK_SUFFIX = ".autosave-link"
DEFAULT_INTERVAL_S = 25.0


# The temporary of an autosave being written (see `atomic`): `.untitled-<uid>.scproj.autosave.<random>.tmp`.
_TEMPORARY = re.compile(r"\.untitled-[^/\\]+" + re.escape(AUTOSAVE_SUFFIX) + r"\.[a-z0-9_]{8}\.tmp")


def autosave_path(doc: Document, autosave_dir: str | os.PathLike[str]) -> Path:
    """Where `doc` autosaves to now (it moves when an untitled project is first saved)."""
    if doc.file_path is not None:
        return doc.file_path.with_name(f".{doc.file_path.name}.autosave")
    return Path(autosave_dir) / f"untitled-{doc.uid}{AUTOSAVE_SUFFIX}"


def link_path(autosave: str | os.PathLike[str], autosave_dir: str | os.PathLike[str]) -> Path:
    """The link in the app's autosave folder that points at an autosave kept elsewhere."""
    digest = hashlib.sha1(str(Path(autosave).absolute()).encode("utf-8")).hexdigest()[:16]
    return Path(autosave_dir) / f"linked-{digest}{LINK_SUFFIX}"


def _write_link(autosave: Path, autosave_dir: Path) -> None:
    try:
        autosave_dir.mkdir(parents=True, exist_ok=True)
        link_path(autosave, autosave_dir).write_text(str(autosave.absolute()), encoding="utf-8")
    except OSError as exc:  # the autosave itself is written: reopening the project still finds it
        log.warning("could not note the autosave %s for the next start: %s", autosave, exc)


def _is_autosave_name(path: Path) -> bool:
    return path.name.endswith(AUTOSAVE_SUFFIX)


def forget_autosave(autosave: str | os.PathLike[str] | RecoverableProject,
                    autosave_dir: str | os.PathLike[str]) -> None:
    """Delete an autosave and its link (the user declined to recover it). Never raises."""
    path = autosave.path if isinstance(autosave, RecoverableProject) else Path(autosave)
    for target in (path, link_path(path, autosave_dir)):
        if target == path and not _is_autosave_name(path):
            continue  # only ever delete autosaves
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", target, exc)


class Autosaver:
    """Keeps an autosave of one document, rate-limited to one write per `interval` s.

    `clock` supplies `now` when a call gives none (monotonic seconds); `thumbnail`, if
    given, returns PNG bytes for the autosave's preview.
    """

    def __init__(
        self,
        doc: Document,
        autosave_dir: str | os.PathLike[str],
        *,
        interval: float = DEFAULT_INTERVAL_S,
        thumbnail: Callable[[], bytes | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.doc = doc
        self.autosave_dir = Path(autosave_dir)
        self.interval = float(interval)
        self._thumbnail = thumbnail
        self._clock = clock
        self._written: Path | None = None
        self._written_revision: int | None = None
        self._last_write: float | None = None
        self._discarded_revision: int | None = None
        self.closed = False
        self.last_error: OSError | None = None

    @property
    def path(self) -> Path:
        """Where the next autosave goes."""
        return autosave_path(self.doc, self.autosave_dir)

    @property
    def written_path(self) -> Path | None:
        """The autosave file on disk now, if any."""
        return self._written

    def maybe_save(self, now: float | None = None) -> bool:
        """Autosave if there are changes not yet autosaved and the last write is at least
        `interval` seconds old. Returns True when it wrote. A write error is logged and
        kept in `last_error`, never raised: autosave must not interrupt editing."""
        now = self._clock() if now is None else now
        if self.closed:
            return False
        if not self.doc.dirty:
            # Saved (or undone back to the saved state): nothing to recover any more.
            self.discard()
            return False
        if self.doc.revision == self._discarded_revision:
            return False  # the user threw these changes away: they are not worth recovering
        if self.doc.revision == self._written_revision and self._written == self.path:
            return False
        if self._last_write is not None and now - self._last_write < self.interval:
            return False
        try:
            self.save_now(now)
        except OSError as exc:
            self._last_write = now
            self.last_error = exc
            log.warning("autosave to %s failed: %s", self.path, exc)
            return False
        return True

    def save_now(self, now: float | None = None) -> Path:
        """Write the autosave immediately, whatever the rate limit. Raises OSError, and
        RuntimeError once the autosaver is closed."""
        if self.closed:
            raise RuntimeError("this autosaver is closed")
        now = self._clock() if now is None else now
        path = self.path
        project = self.doc.file_path
        thumbnail = self._thumbnail() if self._thumbnail is not None else None
        write_project(
            self.doc,
            path,
            thumbnail=thumbnail,
            extra={"autosave": {"project_path": None if project is None else str(project),
                                "title": self.doc.title}},
        )
        if self._written is not None and self._written != path:
            old = self._written
            self._written = None
            forget_autosave(old, self.autosave_dir)
        if path.parent.absolute() != self.autosave_dir.absolute():
            _write_link(path, self.autosave_dir)
        self._written = path
        self._written_revision = self.doc.revision
        self._last_write = now
        self.last_error = None
        return path

    def discard(self) -> None:
        """Delete the autosave (after a save, or when the document is closed on purpose)."""
        if self._written is not None:
            forget_autosave(self._written, self.autosave_dir)
        self._written = None
        self._written_revision = None

    def discard_changes(self) -> None:
        """The user discarded the unsaved changes: delete the autosave, and write none
        until the document changes again (if what replaces it never comes, further edits
        are worth keeping once more)."""
        self.discard()
        self._discarded_revision = self.doc.revision

    def close(self) -> None:
        """The document is closed on purpose: delete the autosave and never write again."""
        self.discard()
        self.closed = True


@dataclass(frozen=True)
class RecoverableProject:
    """An autosave left behind by a session that did not end cleanly."""

    path: Path
    project_path: Path | None
    title: str
    saved_at: float  # the autosave's modification time (seconds since the epoch)


def _describe(path: Path) -> RecoverableProject | None:
    try:
        manifest = read_manifest(path)
        saved_at = path.stat().st_mtime
    except (ProjectFileError, OSError):
        return None  # unreadable: there is nothing to recover from it
    info = manifest.get("autosave")
    project_path = None
    title = path.name.removesuffix(AUTOSAVE_SUFFIX)
    if isinstance(info, dict):
        if isinstance(info.get("project_path"), str):
            project_path = Path(info["project_path"])
        if isinstance(info.get("title"), str):
            title = info["title"]
    return RecoverableProject(path, project_path, title, saved_at)


def clear_stale_temporaries(autosave_dir: str | os.PathLike[str], *,
                            stale_after: float = STALE_AFTER_S) -> list[Path]:
    """At start: remove what autosaves killed mid-write left in the app's autosave folder
    (the temporaries of untitled autosaves, once stale and unlocked; see `atomic`), which
    no later autosave may ever clear, since each document has its own. Never raises."""
    removed = remove_stale_temporaries(autosave_dir, _TEMPORARY, stale_after=stale_after)
    for path in removed:
        log.info("removed %s, left by an autosave that did not finish", path.name)
    return removed


def _follow_link(link: Path) -> Path | None:
    """The autosave a link points at, or None (the link is then stale and removed)."""
    try:
        target = Path(link.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError, ValueError):
        target = None
    if target is not None and _is_autosave_name(target) and target.is_file():
        return target
    with contextlib.suppress(OSError):
        link.unlink()
    return None


def _newer_than_project(found: RecoverableProject) -> bool:
    """False when the project was saved after its autosave: that work is not lost."""
    if found.project_path is None:
        return True
    try:
        return found.saved_at >= found.project_path.stat().st_mtime
    except OSError:
        return True  # the project itself is gone: the autosave is all there is


def find_recoverable(folder: str | os.PathLike[str]) -> list[RecoverableProject]:
    """Readable autosaves in `folder` (the app's autosave folder, or a project's folder),
    and those beside projects that its links point at, newest first. Links whose autosave
    is gone, or older than its project (the work was saved), are removed. A missing
    folder has none."""
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return []
    candidates = [p for p in entries if _is_autosave_name(p)]
    links: dict[Path, Path] = {}
    for link in (p for p in entries if p.name.endswith(LINK_SUFFIX)):
        target = _follow_link(link)
        if target is not None and target.absolute() not in {c.absolute() for c in candidates}:
            candidates.append(target)
            links[target] = link
    found: list[RecoverableProject] = []
    for path in candidates:
        item = _describe(path)
        if item is None:
            continue
        if path in links and not _newer_than_project(item):
            with contextlib.suppress(OSError):
                links[path].unlink()
            continue
        found.append(item)
    return sorted(found, key=lambda r: r.saved_at, reverse=True)


def autosave_for_project(project_path: str | os.PathLike[str]) -> RecoverableProject | None:
    """The autosave beside a project, when it is readable and newer than the project."""
    project_path = Path(project_path)
    path = project_path.with_name(f".{project_path.name}.autosave")
    if not path.is_file():
        return None
    found = _describe(path)
    if found is None or not _newer_than_project(RecoverableProject(path, project_path, found.title, found.saved_at)):
        return None
    return found


def recover(autosave: str | os.PathLike[str] | RecoverableProject) -> Document:
    """Open an autosave as the project it belongs to, with unsaved changes (dirty)."""
    found = autosave if isinstance(autosave, RecoverableProject) else _describe(Path(autosave))
    path = autosave.path if isinstance(autosave, RecoverableProject) else Path(autosave)
    doc = load_project(path)
    doc.file_path = found.project_path if found is not None else None
    doc.mark_unsaved()
    return doc
