"""Putting a catalog model in place: the one entry point the CLI and the GUI call.

It picks the right channel (our downloader, or the Hugging Face cache for CLIP), checks
the content is the model the catalog promises (Google Drive and GitHub like to answer
with web pages or LFS pointers), and records the checksum of the first good download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.weights import hfcache, store
from styleclip_desktop.weights.catalog import Catalog, ModelEntry
from styleclip_desktop.weights.download import CancelToken, ProgressFn, download_file
from styleclip_desktop.weights.identify import identify_file


@dataclass(frozen=True)
class InstallResult:
    entry: ModelEntry
    path: Path
    sha256: str | None
    reused: bool  # it was already there
    note: str = ""
    source: str = ""  # the label of the source that served it


def content_validator(entry: ModelEntry) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        # Identification loads the file as the app would (all of it, safely): a host that
        # serves the first part of a file as if it were all, or a file that hides something
        # past its first megabytes, does not pass.
        found = identify_file(path)  # its refusal already says, in one line, what is wrong
        if found is None or found.kind != entry.format:
            what = found.kind if found else "not a recognised model file"
            raise ModelFileError(f"its content is {what}, expected {entry.format}")

    return check


def download_model(entry: ModelEntry, models_dir: Path, *, progress: ProgressFn | None = None,
                   cancel: CancelToken = None, session: requests.Session | None = None,
                   retries: int = 3, retry_wait: float = 2.0) -> InstallResult:
    target = store.model_path(models_dir, entry)
    have = store.quick_status(entry, models_dir)
    if have.usable and have.path is not None:
        return InstallResult(entry, have.path, None, True)
    if entry.via_huggingface:
        path = hfcache.download_to_cache(entry, progress, cancel)
        return InstallResult(entry, path, None, False, "kept in the Hugging Face cache, shared with open_clip")
    known = store.read_known_hashes(models_dir)
    res = download_file(entry.download_sources, target, sha256=entry.sha256,
                        source_hashes=store.source_hashes(entry, known), size=entry.size, progress=progress,
                        cancel=cancel, validate=content_validator(entry), session=session,
                        retries=retries, retry_wait=retry_wait, what=entry.title)
    note = ""
    if entry.sha256 is None and not res.reused:
        store.record_hash(models_dir, entry.id, res.sha256, res.size, "download", target.name,
                          origin=res.source)
        note = f"no published checksum; recorded sha256 {res.sha256} (from {res.source}) for future checks"
    return InstallResult(entry, res.path, res.sha256, res.reused, note, res.source)


def required_to_fetch(catalog: Catalog, models_dir: Path) -> list[ModelEntry]:
    """One entry per required group that has nothing usable yet (the group's first)."""
    known = store.read_known_hashes(models_dir)
    out = []
    for members in catalog.required_groups().values():
        if not any(store.quick_status(e, models_dir, known).usable for e in members):
            out.append(members[0])
    return out
