"""The photos of a batch and the manifest that records what became of each.

The manifest is `OUTDIR/manifest.jsonl`, one JSON record per line, appended as each
photo finishes and synced to disk before the next: a batch stopped at any moment (Ctrl+C,
a crash, a lost machine) leaves every finished photo recorded and nothing half-written.
A photo's `key` is the sha256 of its content and of the recipe's digest, so a batch run
again with the same OUTDIR skips each photo whose latest record says it is done (or
failed, unless failures are retried) and whose outputs are still there. A later record
for the same key supersedes an earlier one. Only the process that drives the batch
writes the manifest; workers return their records to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from styleclip_desktop.errors import UsageError, UserError
from styleclip_desktop.faces.imaging import PHOTO_SUFFIXES

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
LOCK = ".batch.lock"
DONE = "done"
FAILED = "failed"
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class BatchItem:
    """One input photo: where it is, what it holds, and its key in the manifest."""

    index: int  # its place in the batch, from 1
    path: str
    sha256: str  # of the file's bytes; "" when it could not be read
    key: str
    error: str = ""  # why the file could not even be read (then the item fails at once)
    data: bytes | None = None  # the photo itself, for workers that do not see the driver's files

    @property
    def name(self) -> str:
        return Path(self.path).name

    def stem_fields(self) -> dict[str, Any]:
        p = Path(self.path)
        return {"stem": p.stem, "parent": p.parent.name, "digest": self.sha256 or self.key, "index": self.index}

    def with_data(self) -> BatchItem:
        from dataclasses import replace

        if self.error or self.data is not None:
            return self
        return replace(self, data=Path(self.path).read_bytes())


def collect_photos(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given (whatever their extension, so that a damaged one is reported) and the
    photos directly inside given folders (by extension, sorted, hidden files skipped);
    each file once."""
    seen: set[Path] = set()
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir()
                           if q.suffix.lower() in PHOTO_SUFFIXES and not q.name.startswith(".") and q.is_file())
        else:
            found = [p]
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    if not out:
        raise UsageError("no photos to process: name photos or folders that hold them")
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def item_key(sha256: str, recipe_digest: str) -> str:
    return hashlib.sha256(f"{sha256}:{recipe_digest}".encode()).hexdigest()[:32]


def plan_items(photos: Sequence[Path], recipe_digest: str) -> list[BatchItem]:
    """Hash each photo; one that cannot be read becomes an item that fails with the reason."""
    items = []
    for i, p in enumerate(photos, 1):
        try:
            if not p.is_file():
                raise FileNotFoundError(2, "no such file", str(p))
            sha = file_sha256(p)
        except OSError as exc:
            from styleclip_desktop.cli import describe_os_error

            reason = describe_os_error(exc) if exc.errno else str(exc)
            items.append(BatchItem(i, str(p), "", item_key(f"unreadable:{p.resolve()}", recipe_digest),
                                   error=f"cannot read {p.name}: {reason}"))
            continue
        items.append(BatchItem(i, str(p), sha, item_key(sha, recipe_digest)))
    return items


def output_names(item: BatchItem, outputs: Any, face: int) -> list[str]:
    """The files face `face` (from 1) of `item` becomes, relative to OUTDIR."""
    f = item.stem_fields()
    stem = outputs.stem_for(f["stem"], f["parent"], f["digest"], f["index"], face)
    return [f"{stem}.{ext}" for ext in (outputs.still, outputs.animation) if ext]


def check_names(items: Sequence[BatchItem], outputs: Any) -> None:
    """Refuse, before any work, a template that would give two photos the same file."""
    seen: dict[str, str] = {}
    for item in items:
        for name in output_names(item, outputs, 1):
            other = seen.setdefault(name.lower(), item.path)
            if other != item.path:
                raise UsageError(f"{other} and {item.path} would both be written as {name}; "
                                 "add {hash}, {parent} or {index} to --name")


class ManifestLockedError(UserError):
    pass


class Manifest:
    """The records of OUTDIR, read once, appended to while the batch runs."""

    def __init__(self, outdir: Path) -> None:
        from filelock import FileLock, Timeout

        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.path = self.outdir / MANIFEST
        self._lock = FileLock(str(self.outdir / LOCK))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ManifestLockedError(f"another batch is writing to {self.outdir}; wait for it to finish "
                                      "or choose another output folder") from None
        self.records: dict[str, dict[str, Any]] = {}
        self.damaged_lines = 0
        data = self.path.read_bytes() if self.path.is_file() else b""
        # A line cut short by a crash must not swallow the first one this run appends.
        self._pending_newline = bool(data) and not data.endswith(b"\n")
        for record in self._read(data):
            self.records[str(record["key"])] = record

    def _read(self, data: bytes) -> Iterator[dict[str, Any]]:
        for n, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or "key" not in record or "status" not in record:
                    raise ValueError("not a record")
            except ValueError:
                # The last line of a batch killed mid-write, or a hand edit: that photo is redone.
                self.damaged_lines += 1
                log.warning("%s line %d is not a readable record; its photo will be redone", self.path, n)
                continue
            yield record

    def finished(self, item: BatchItem, retry_failed: bool = False) -> dict[str, Any] | None:
        """The record that lets `item` be skipped: done with its outputs all present, or
        failed (unless failures are retried); None when it has to be (re)done."""
        record = self.records.get(item.key)
        if record is None:
            return None
        if record["status"] == DONE:
            outputs = [o for face in record.get("faces", []) for o in face.get("outputs", [])]
            return record if all((self.outdir / o).is_file() for o in outputs) else None
        if record["status"] == FAILED and not retry_failed and not record.get("transient"):
            return record  # a failure of the photo itself (not a full disk or memory) stays failed
        return None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
        with open(self.path, "ab") as f:
            if self._pending_newline:
                f.write(b"\n")
                self._pending_newline = False
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self.records[str(record["key"])] = record

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(outdir: Path) -> list[dict[str, Any]]:
    """Every readable record of OUTDIR's manifest, in order (for tests and reports)."""
    path = Path(outdir) / MANIFEST
    out = []
    for raw in path.read_bytes().split(b"\n") if path.is_file() else []:
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out

