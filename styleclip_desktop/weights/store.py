"""What is in the models directory: where each catalog model lives, and its state.

None of the official files publish a checksum (bar one), so the first verified download
or import records the file's SHA-256 and size in `known_hashes.json` beside the models;
later checks compare against that. A hash recorded from a download also guards future
downloads of that model from the same source only: the official sources of one model are
known to serve different, equally valid files (two Drive copies of e4e, for one). Hashes
recorded from an import only guard that local copy (the user may have imported a
different but valid variant).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.weights import hfcache
from styleclip_desktop.weights.catalog import ModelEntry
from styleclip_desktop.weights.download import CancelToken, ProgressFn, part_path, sha256_of

KNOWN_HASHES = "known_hashes.json"
# Written by `models synthesize` (render/demo_models.py): which files here are synthetic.
SYNTHETIC_MANIFEST = "synthetic.json"
SYNTHETIC_NOTE = "synthetic demo models: random weights, images will not look like faces"


class State(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    CORRUPT = "corrupt"
    PARTIAL = "partial"  # a resumable .part exists, nothing usable yet


@dataclass(frozen=True)
class KnownHash:
    sha256: str
    size: int
    source: str  # "download", "import" or "verify"
    recorded: str = ""
    filename: str = ""
    # source label -> sha256 of what that source served, for each source that gave a good file
    by_source: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelStatus:
    id: str
    state: State
    path: Path | None = None
    size: int | None = None
    detail: str = ""
    synthetic: str = ""  # for a synthetic stand-in, what it really is (its title in the manifest)

    @property
    def usable(self) -> bool:
        return self.state is State.PRESENT


def read_synthetic_manifest(models_dir: Path) -> dict[str, Any]:
    """The manifest of a synthetic models directory, or {} for any other directory."""
    try:
        data = json.loads((models_dir / SYNTHETIC_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else {}


def _synthetic_title(entry: ModelEntry, path: Path, size: int, models_dir: Path) -> str:
    if path.parent != models_dir:
        return ""
    rec = read_synthetic_manifest(models_dir).get("files", {}).get(entry.id)
    if not isinstance(rec, dict) or rec.get("filename") != path.name or rec.get("size") != size:
        return ""  # replaced since (by a real download or import)
    return str(rec.get("title") or SYNTHETIC_NOTE)


def model_path(models_dir: Path, entry: ModelEntry) -> Path:
    return models_dir / entry.filename


def read_known_hashes(models_dir: Path) -> dict[str, KnownHash]:
    try:
        data = json.loads((models_dir / KNOWN_HASHES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, KnownHash] = {}
    for model_id, raw in (data.get("models") or {}).items():
        try:
            by_source = {str(k): str(v).lower() for k, v in (raw.get("sources") or {}).items()}
            out[model_id] = KnownHash(str(raw["sha256"]).lower(), int(raw["size"]),
                                      str(raw.get("source", "import")), str(raw.get("recorded", "")),
                                      str(raw.get("filename", "")), by_source)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def record_hash(models_dir: Path, model_id: str, sha256: str, size: int, source: str,
                filename: str = "", origin: str = "") -> None:
    """Remember a verified file's hash (and, for a download, which source served it);
    safe against concurrent writers."""
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / KNOWN_HASHES
    with FileLock(str(path) + ".lock"):
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        models = data.setdefault("models", {})
        old = models.get(model_id)
        sources = dict(old.get("sources") or {}) if isinstance(old, dict) else {}
        if origin:
            sources[origin] = sha256
        models[model_id] = {"sha256": sha256, "size": size, "source": source, "filename": filename,
                            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            **({"sources": sources} if sources else {})}
        data["note"] = ("SHA-256 of model files as first verified on this machine; "
                        "`styleclip-desktop models verify` checks against these.")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def source_hashes(entry: ModelEntry, known: Mapping[str, KnownHash]) -> dict[str, str]:
    """Per source label, the checksum an earlier download from that very source gave."""
    k = known.get(entry.id)
    return dict(k.by_source) if k is not None else {}


def locate(entry: ModelEntry, models_dir: Path) -> Path | None:
    """The file that provides `entry`: in the models dir, else (CLIP) in the hub cache."""
    for name in entry.filenames:
        p = models_dir / name
        if p.exists() or p.is_symlink():
            return p
    if entry.via_huggingface:
        return hfcache.cached_file(entry)
    return None


def _recorded_for(entry: ModelEntry, path: Path, models_dir: Path,
                  known: Mapping[str, KnownHash]) -> KnownHash | None:
    """A recorded hash applies only to the very file it was recorded for (not the hub cache)."""
    k = known.get(entry.id)
    if k is None or path.parent != models_dir:
        return None
    return k if k.filename in ("", path.name) else None


def quick_status(entry: ModelEntry, models_dir: Path,
                 known: Mapping[str, KnownHash] | None = None) -> ModelStatus:
    """Present / missing / corrupt from sizes alone: cheap enough for every start-up."""
    known = read_known_hashes(models_dir) if known is None else known
    p = locate(entry, models_dir)
    if p is None or not p.is_file():
        part = part_path(model_path(models_dir, entry))
        if part.is_file():
            return ModelStatus(entry.id, State.PARTIAL, part, part.stat().st_size,
                               "an interrupted download; `models download` resumes it")
        if p is not None:  # a dangling link left by `models import --link`
            return ModelStatus(entry.id, State.MISSING, p, None, "the linked file is gone")
        return ModelStatus(entry.id, State.MISSING)
    size = p.stat().st_size
    rec = _recorded_for(entry, p, models_dir, known)
    expect = entry.size or (rec.size if rec else None)
    if expect is not None and size != expect:
        return ModelStatus(entry.id, State.CORRUPT, p, size, f"size is {size} bytes, expected {expect}")
    if size == 0:
        return ModelStatus(entry.id, State.CORRUPT, p, size, "the file is empty")
    return ModelStatus(entry.id, State.PRESENT, p, size, synthetic=_synthetic_title(entry, p, size, models_dir))


def deep_status(entry: ModelEntry, models_dir: Path, known: Mapping[str, KnownHash] | None = None,
                progress: ProgressFn | None = None, cancel: CancelToken = None,
                record: bool = True) -> tuple[ModelStatus, str | None]:
    """Re-hash the file and load it as the app would; returns the status and a note
    (e.g. "recorded sha256 ...").

    A matching checksum is not enough: a hash recorded before files were fully checked (or
    for a file that was swapped since) vouches for nothing, so the content is checked every
    time, and a file that does not load is never "present"."""
    known = read_known_hashes(models_dir) if known is None else known
    st = quick_status(entry, models_dir, known)
    if st.state is not State.PRESENT or st.path is None:
        return st, None
    digest = sha256_of(st.path, cancel, progress)
    rec = _recorded_for(entry, st.path, models_dir, known)
    expect = entry.sha256 or (rec.sha256 if rec else None)
    if expect and digest != expect:
        return (ModelStatus(entry.id, State.CORRUPT, st.path, st.size,
                            f"sha256 is {digest}, expected {expect}"), None)
    from styleclip_desktop.weights.identify import identify_file

    try:
        found = identify_file(st.path)
    except ModelFileError as exc:
        return ModelStatus(entry.id, State.CORRUPT, st.path, st.size, str(exc)), None
    if found is None or found.kind != entry.format:
        what = found.kind if found else "not a recognised model file"
        return ModelStatus(entry.id, State.CORRUPT, st.path, st.size,
                           f"its content is {what}, expected {entry.format}"), None
    if expect:
        return st, None
    note = None
    if record and st.path.parent == models_dir:
        record_hash(models_dir, entry.id, digest, st.size or 0, "verify", st.path.name)
        note = f"no published checksum; recorded sha256 {digest} for future checks"
    return st, note
