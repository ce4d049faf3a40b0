"""Every prompt the user has tried, kept across sessions, plus the starter presets.

The history is a small JSON file in the user's data folder. It is re-read before each
change and written atomically (temporary file, then rename), so two open windows do not
lose each other's prompts and a crash mid-write never leaves half a file. A file that
cannot be read is set aside (not deleted: it may be the only copy of a long history)
and the history starts empty.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from styleclip_desktop import paths

log = logging.getLogger(__name__)

FILE_NAME = "prompt_history.json"
VERSION = 1
MAX_ENTRIES = 500  # favourites are never dropped; the oldest of the rest are
DEFAULT_NEUTRAL = "a face"


@dataclass(frozen=True)
class HistoryEntry:
    target: str
    neutral: str = DEFAULT_NEUTRAL
    alpha: float = 3.0
    kind: str = "global_direction"
    uses: int = 1
    last_used: float = 0.0
    favourite: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.target, self.neutral)

    @classmethod
    def from_json(cls, data: Any) -> HistoryEntry | None:
        """One stored entry, or None when it is not one (skipped, not fatal)."""
        if not isinstance(data, dict) or not isinstance(data.get("target"), str) or not data["target"].strip():
            return None
        try:
            return cls(
                target=data["target"],
                neutral=str(data.get("neutral") or DEFAULT_NEUTRAL),
                alpha=float(data.get("alpha", 3.0)),
                kind=str(data.get("kind", "global_direction")),
                uses=max(1, int(data.get("uses", 1))),
                last_used=float(data.get("last_used", 0.0)),
                favourite=bool(data.get("favourite", False)),
            )
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Preset:
    """A starter prompt; the alpha carries the sign that makes it work (negative alpha
    makes an antiprompt: the face moves away from the text)."""

    group: str
    label: str
    target: str
    neutral: str = DEFAULT_NEUTRAL
    alpha: float = 3.0

    @property
    def antiprompt(self) -> bool:
        return self.alpha < 0


_HAIR = "a face with hair"
PRESETS: tuple[Preset, ...] = (
    Preset("Hair", "grey hair", "a face with grey hair", _HAIR, 3.0),
    Preset("Hair", "blond hair", "a face with blond hair", _HAIR, 3.0),
    Preset("Hair", "red hair", "a face with red hair", _HAIR, 3.0),
    Preset("Hair", "purple hair", "a face with purple hair", _HAIR, 3.0),
    Preset("Expression", "smiling", "a smiling face", DEFAULT_NEUTRAL, 3.0),
    Preset("Expression", "surprised", "a surprised face", DEFAULT_NEUTRAL, 3.0),
    Preset("Expression", "angry", "an angry face", DEFAULT_NEUTRAL, 3.0),
    Preset("Age", "young", "a young face", DEFAULT_NEUTRAL, 3.0),
    Preset("Age", "old", "an old face", DEFAULT_NEUTRAL, 3.0),
    Preset("Look", "tanned", "a tanned face", DEFAULT_NEUTRAL, 3.0),
    # Antiprompts users found, labelled with the text they push away from (the negative
    # alpha does the pushing): away from a laughing face reads as serious, away from a
    # robot as very human, away from an anime hero as smaller, lighter hair.
    Preset("Antiprompts", "a robot", "a robot", DEFAULT_NEUTRAL, -4.0),
    Preset("Antiprompts", "laughing", "a laughing face", DEFAULT_NEUTRAL, -3.0),
    Preset("Antiprompts", "a person", "a person", DEFAULT_NEUTRAL, -3.0),
    Preset("Antiprompts", "Goku", "Goku", DEFAULT_NEUTRAL, -3.0),
)

Listener = Callable[[], None]
_listeners: list[weakref.ReferenceType[Any]] = []


def default_path() -> Path:
    return paths.data_dir() / FILE_NAME


def _notify(path: Path) -> None:
    for ref in list(_listeners):
        history = ref()
        if history is None:
            _listeners.remove(ref)
        elif history.path == path:
            history._reloaded()


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PromptHistory:
    """The prompt history file, read and written as a whole."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.clock = clock
        self._on_change: list[Listener] = []
        self.entries: list[HistoryEntry] = self._read()
        _listeners.append(weakref.ref(self))

    def on_change(self, listener: Listener) -> None:
        """Hear about changes made through any history object on the same file."""
        self._on_change.append(listener)

    def _reloaded(self) -> None:
        self._reloaded_from(self._read())

    # -- file --------------------------------------------------------------------------

    def _read(self) -> list[HistoryEntry]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read the prompt history %s: %s", self.path, exc)
            return []
        try:
            data = json.loads(raw)
            items = data["entries"] if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ValueError("no list of entries")
        except (ValueError, KeyError, TypeError) as exc:
            self._set_aside(exc)
            return []
        entries = [e for e in (HistoryEntry.from_json(item) for item in items) if e is not None]
        return self._dedupe(entries)

    def _set_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(self.path.name + ".corrupt")
        log.warning("the prompt history %s is unreadable (%s); keeping it as %s", self.path, exc, aside)
        try:
            os.replace(self.path, aside)
        except OSError:
            log.warning("could not set the unreadable prompt history aside")

    @staticmethod
    def _dedupe(entries: Iterable[HistoryEntry]) -> list[HistoryEntry]:
        seen: dict[tuple[str, str, str], HistoryEntry] = {}
        for e in entries:
            old = seen.get(e.key)
            if old is None or e.last_used > old.last_used:
                seen[e.key] = e
        return list(seen.values())

    def _change(self, edit: Callable[[list[HistoryEntry]], list[HistoryEntry]]) -> None:
        entries = edit(self._read())
        keep = [e for e in entries if e.favourite]
        rest = sorted((e for e in entries if not e.favourite), key=lambda e: e.last_used, reverse=True)
        entries = keep + rest[: max(0, MAX_ENTRIES - len(keep))]
        try:
            _write_atomic(self.path, {"version": VERSION, "entries": [asdict(e) for e in entries]})
        except OSError as exc:
            # Losing the history is a nuisance, not a reason to interrupt editing.
            log.warning("cannot save the prompt history %s: %s", self.path, exc)
            self._reloaded_from(entries)
            return
        _notify(self.path)

    def _reloaded_from(self, entries: list[HistoryEntry]) -> None:
        self.entries = entries
        for listener in list(self._on_change):
            try:
                listener()
            except Exception:  # e.g. a closed panel; the history itself is fine
                log.debug("prompt history listener failed", exc_info=True)

    # -- use ---------------------------------------------------------------------------

    def record(self, target: str, neutral: str = DEFAULT_NEUTRAL, alpha: float = 3.0,
               kind: str = "global_direction") -> None:
        """Remember that a prompt was used (again), with the strength it was used at."""
        target = target.strip()
        if not target:
            return
        now = self.clock()
        probe = HistoryEntry(target, neutral or DEFAULT_NEUTRAL, alpha, kind, last_used=now)

        def edit(entries: list[HistoryEntry]) -> list[HistoryEntry]:
            for i, e in enumerate(entries):
                if e.key == probe.key:
                    entries[i] = replace(e, alpha=alpha, uses=e.uses + 1, last_used=now)
                    return entries
            return [*entries, probe]

        self._change(edit)

    def set_favourite(self, entry: HistoryEntry, favourite: bool) -> None:
        def edit(entries: list[HistoryEntry]) -> list[HistoryEntry]:
            return [replace(e, favourite=favourite) if e.key == entry.key else e for e in entries]

        self._change(edit)

    def remove(self, entry: HistoryEntry) -> None:
        self._change(lambda entries: [e for e in entries if e.key != entry.key])

    def search(self, text: str = "") -> list[HistoryEntry]:
        """Entries whose prompt contains every word of `text`; favourites first, then the
        most recently used."""
        words = text.lower().split()
        found = [e for e in self.entries
                 if all(w in f"{e.target} {e.neutral}".lower() for w in words)]
        return sorted(found, key=lambda e: (not e.favourite, -e.last_used))
