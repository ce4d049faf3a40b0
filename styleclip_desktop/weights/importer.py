"""`models import`: bring a model file the user already has into the models directory.

Users download checkpoints through browsers, mirrors and friends' disks, under any
name. The file is recognised by its checksum when the catalog (or an earlier download)
knows it, otherwise by its content, then copied (or linked, to save disk space) under
the catalog's file name. Files we cannot recognise are refused, not guessed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from styleclip_desktop.errors import UserError
from styleclip_desktop.weights import identify, store
from styleclip_desktop.weights.catalog import MAPPER, Catalog, ModelEntry
from styleclip_desktop.weights.download import CancelToken, ProgressFn, sha256_of
from styleclip_desktop.weights.identify import Identified, identify_file


@dataclass(frozen=True)
class ImportResult:
    entry: ModelEntry
    path: Path
    sha256: str
    method: str  # "copied", "hard link", "symlink" or "already present"
    identified_by: str  # "checksum" or "content"
    note: str = ""


def import_model(source: str | os.PathLike[str], models_dir: Path, catalog: Catalog, *,
                 link: bool = False, as_id: str | None = None, force: bool = False,
                 progress: ProgressFn | None = None, cancel: CancelToken = None) -> ImportResult:
    src = Path(source).expanduser()
    if not src.is_file():
        raise UserError(f"no such file: {src}")
    digest = sha256_of(src, cancel, progress)
    known = store.read_known_hashes(models_dir)
    entry, how = _by_hash(digest, catalog, known), "checksum"
    found = identify_file(src)
    if entry is None:
        entry, how = _by_content(src, found, catalog, as_id), "content"
    if as_id is not None and entry.id != as_id:
        raise UserError(f"{src.name} is {entry.title} ({entry.id}), not {as_id}")
    if found is None or found.kind != entry.format:  # only reachable for a checksum match
        got = found.kind if found else "not a model file this app recognises"
        raise UserError(f"{src.name} matches the checksum of {entry.id} but its content is {got}; "
                        "refusing it")

    dest = models_dir / _dest_name(entry, src)
    models_dir.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # (a dangling link from an earlier --link import is simply replaced)
        if _same_file(src, dest) or sha256_of(dest, cancel) == digest:
            return ImportResult(entry, dest, digest, "already present", how)
        if not force:
            raise UserError(f"{dest} already exists with different content; pass --force to replace it")
    method = _place(src, dest, link)
    note = ""
    if not entry.sha256:
        store.record_hash(models_dir, entry.id, digest, src.stat().st_size, "import", dest.name)
        note = f"no published checksum; recorded sha256 {digest} for future checks"
    return ImportResult(entry, dest, digest, method, how, note)


def _by_hash(digest: str, catalog: Catalog, known: dict[str, store.KnownHash]) -> ModelEntry | None:
    for e in catalog:
        if e.sha256 and e.sha256 == digest:
            return e
    for model_id, k in known.items():
        if k.sha256 == digest and k.source == "download" and model_id in catalog.ids():
            return catalog.get(model_id)
    return None


def _by_content(src: Path, found: Identified | None, catalog: Catalog, as_id: str | None) -> ModelEntry:
    if found is None:
        kinds = ", ".join(sorted({e.format for e in catalog}))
        raise UserError(f"{src.name} is not a model file this app recognises (looked for: {kinds}); "
                        "nothing was imported")
    candidates = catalog.by_format(found.kind)
    if not candidates:
        raise UserError(f"{src.name} is a {found.detail or found.kind}, which the catalog does not use")
    if as_id is not None:
        chosen = [e for e in candidates if e.id == as_id]
        if not chosen:
            catalog.get(as_id)  # unknown id -> its own clear message
            raise UserError(f"{src.name} is a {found.detail or found.kind}, not {as_id}")
        return chosen[0]
    if len(candidates) == 1:
        return candidates[0]
    if found.kind == MAPPER:
        guess = _guess_mapper(src, found, candidates)
        if guess is not None:
            return guess
    ids = ", ".join(e.id for e in candidates)
    raise UserError(f"{src.name} is a {found.detail or found.kind}, but which one cannot be told from "
                    f"its content; pass --as with one of: {ids}")


def _guess_mapper(src: Path, found: Identified, candidates: tuple[ModelEntry, ...]) -> ModelEntry | None:
    """Official mapper files are named after their prompt; their options often say it too."""
    stem = src.stem.lower().removeprefix("mapper-").removeprefix("mapper_")
    by_name = [e for e in candidates if e.mapper_name and e.mapper_name.lower() == stem]
    if len(by_name) == 1:
        return by_name[0]
    text = " ".join(found.hints).lower().replace("_", " ")
    by_text = [e for e in candidates if e.mapper_name and e.mapper_name.lower().replace("_", " ") in text]
    return by_text[0] if len(by_text) == 1 else None


def _dest_name(entry: ModelEntry, src: Path) -> str:
    """The catalog name, unless the content needs another extension to be read correctly
    (a CLIP .bin must not be stored under a .safetensors name)."""
    is_st = identify.is_safetensors(src)
    for name in entry.filenames:
        if name.endswith(".safetensors") == is_st:
            return name
    return entry.filename


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _place(src: Path, dest: Path, link: bool) -> str:
    """Copy, or link when asked: a hard link where the filesystem allows, else a symlink."""
    tmp = dest.with_name(dest.name + ".importing")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    if link:
        try:
            os.link(src, tmp)
            method = "hard link"
        except OSError:
            os.symlink(src.resolve(), tmp)
            method = "symlink"
    else:
        try:
            shutil.copyfile(src, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        method = "copied"
    os.replace(tmp, dest)
    return method
