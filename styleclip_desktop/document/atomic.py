"""Writing a file so that it appears whole or not at all, and clearing up after writes
that were killed part-way.

Every atomic write of ours makes a temporary file beside its target with mkstemp, writes
it, and renames it over the target. The temporaries are named

- `.<target name>.<8 random characters>.tmp` for projects and autosaves;
- `.<target stem>.<8 random characters>.part<target suffix>` for exports, whose encoders
  pick the container from the extension.

A process killed in between leaves its temporary behind, and nothing else ever would
remove it. So the next write of the same target removes those earlier writes left, and
the app clears its autosave folder at start. Removed are only files of exactly that name
shape, regular files owned by this user, not modified for `STALE_AFTER_S`, and not locked:
while a write is under way its temporary holds an exclusive flock, so a long export or a
slow save in another window or process is never touched. (Windows has no flock, but it
does not delete a file another process has open.)
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

# A temporary untouched this long is no one's work in progress even where locks are not
# available (or were not taken, by an older version of the app).
STALE_AFTER_S = 10 * 60
# What mkstemp puts between the prefix and the suffix.
_RANDOM = r"[a-z0-9_]{8}"


def _affixes(path: Path, staged: bool) -> tuple[str, str]:
    if staged:
        return f".{path.stem}.", f".part{path.suffix}"
    return f".{path.name}.", ".tmp"


def temporary_pattern(path: Path, *, staged: bool = False) -> re.Pattern[str]:
    """The names our temporaries for `path` have (`staged`: the exporters' kind)."""
    prefix, suffix = _affixes(Path(path), staged)
    return re.compile(re.escape(prefix) + _RANDOM + re.escape(suffix))


def _try_lock(fd: int) -> bool | None:
    """True: we hold an exclusive lock on `fd` now; False: another open file holds one;
    None: this system or file system cannot say."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def create_temporary(path: Path, *, staged: bool = False) -> tuple[int, Path]:
    """A new, locked, empty temporary file beside `path`: (open descriptor, its path).

    The lock lasts as long as the descriptor stays open. Raises OSError."""
    path = Path(path)
    prefix, suffix = _affixes(path, staged)
    folder = path.parent if str(path.parent) else Path(".")
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    _try_lock(fd)
    return fd, Path(name)


def _remove_if_stale(path: Path, cutoff: float) -> bool:
    try:
        # Without following links or waiting on a FIFO that happens to have such a name.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mtime > cutoff:
            return False
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return False  # another user's, even in a shared folder
        if _try_lock(fd) is False:
            return False  # still being written
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False  # the name was taken by another file meanwhile
        if sys.platform == "win32":
            os.close(fd)  # Windows deletes no open file, ours included
            fd = -1
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: re.Pattern[str], *,
                             stale_after: float = STALE_AFTER_S, now: float | None = None) -> list[Path]:
    """Remove the stale temporaries in `folder` whose whole name matches `pattern`
    (see the module's docstring for which count as stale). Returns those removed; never
    raises: a leftover that cannot be removed now is tried again next time."""
    cutoff = (time.time() if now is None else now) - stale_after
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if pattern.fullmatch(e.name)]
    except OSError:
        return []
    removed = []
    for name in names:
        path = Path(folder) / name
        if _remove_if_stale(path, cutoff):
            removed.append(path)
    return removed


def remove_stale_temporaries_of(path: str | os.PathLike[str], *, staged: bool = False,
                                stale_after: float = STALE_AFTER_S) -> list[Path]:
    """Remove what killed writes of `path` left beside it."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    return remove_stale_temporaries(folder, temporary_pattern(path, staged=staged), stale_after=stale_after)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, make it durable, then rename
    it over `path`. On any failure the target is untouched and the temporary file removed;
    temporaries that earlier, killed writes of `path` left are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries_of(path)
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes owner-only files; a project should get the permissions of the file
        # it replaces, or the usual ones for a new document.
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders this way.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
