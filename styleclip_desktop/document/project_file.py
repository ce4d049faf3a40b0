"""The `.scproj` project file: one zip archive holding

- `manifest.json`: {"schema": 1, "app": ..., "app_version": ..., "saved_at": ...,
  "document": <see serialize.document_to_data>, "members": {...}} (deflated);
- `arrays.npz`: the latent, optimization deltas, resolved global directions (ds in S)
  and the generator delta, all float32, and domain layers' weight deltas, float16;
- `masks/<array>.png`: layer masks, 8-bit grayscale PNGs (the document's 8-bit arrays);
- `source.<ext>`: the original photo's bytes, untouched (absent for a latent-only project);
- `thumbnail.png`: a preview for the open dialog (optional).

Saving is atomic (see `atomic`): a temporary file in the same folder is written, flushed
and fsynced, then renamed over the target, so a crash or a full disk never leaves half a
project; what killed saves left is removed at the next save.

Loading trusts nothing (see `archive`): every member is bounded by its unpacked size and
compression ratio, from the directory and again while it is read; arrays.npz is read in
place, each array straight into its own memory after its header is checked against its
byte count (no pickles); the photo is checked against its sha256. Every way a file can be
damaged becomes a specific `ProjectFileError` with a one-line message, and a refused file
is only ever read.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from styleclip_desktop import __version__
from styleclip_desktop.document import archive
from styleclip_desktop.document.atomic import atomic_write, remove_stale_temporaries_of
from styleclip_desktop.document.document import Document, sha256_hex
from styleclip_desktop.document.errors import (
    ArrayDataError,
    CorruptProjectError,
    ManifestError,
    MissingMemberError,
    NewerSchemaError,
    OversizedProjectError,
    ProjectFileError,
    ProjectReadError,
    SourcePhotoError,
)
from styleclip_desktop.document.serialize import _MEMBER, Fields, document_from_data, document_to_data

SCHEMA_VERSION = 1
APP_NAME = "StyleCLIP Desktop"
PROJECT_SUFFIX = ".scproj"
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
THUMBNAIL = "thumbnail.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Limits on what one project may hold unpacked, far above any real one: a 1024 px
# generator's latent, deltas and resolved directions are under 1 MB, and a PTI delta of
# the whole synthesis network is about 120 MB.
_MAX_MANIFEST = 16 << 20
_MAX_ARRAYS = 1 << 30
_MAX_PHOTO = 1 << 30
_MAX_THUMBNAIL = 64 << 20
_MAX_ARRAY_COUNT = 20_000
# A project has four members; its directory is a few hundred bytes.
_MAX_DIRECTORY = 1 << 20
# An entry per array, about 100 bytes each.
_MAX_NPZ_DIRECTORY = 4 << 20
_F32 = np.dtype("<f4")
_U8 = np.dtype("u1")
_F16 = np.dtype("<f2")
_MAX_MASK = 16 << 20  # a 512 px mask PNG is at most about 300 KB
_MAX_MASK_PIXELS = 4096 * 4096
_MASK_KEY = re.compile(r"[a-z0-9_]{1,64}")


# -- saving -------------------------------------------------------------------------------


def save_project(doc: Document, path: str | os.PathLike[str], *, thumbnail: bytes | None = None) -> Path:
    """Save the document to `path` atomically; it becomes the document's file and clean."""
    path = Path(path)
    write_project(doc, path, thumbnail=thumbnail)
    # Autosaves killed mid-write beside this project: the autosave itself may never be
    # written again (it is only while there are unsaved changes).
    remove_stale_temporaries_of(path.with_name(f".{path.name}.autosave"))
    doc.file_path = path
    doc.mark_saved()
    return path


def write_project(
    doc: Document,
    path: str | os.PathLike[str],
    *,
    thumbnail: bytes | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the document to `path` atomically without changing the document (autosave
    uses this). `extra` adds top-level manifest entries."""
    if thumbnail is not None and not (isinstance(thumbnail, bytes) and thumbnail.startswith(PNG_SIGNATURE)):
        raise ValueError("the thumbnail must be PNG bytes")
    path = Path(path)
    data, arrays = document_to_data(doc)
    masks = {key: _png_bytes(a) for key, a in arrays.items() if a.dtype == _U8}
    arrays = {key: a for key, a in arrays.items() if key not in masks}
    photo = doc.source.data if doc.source is not None else None
    photo_member = data["source"]["member"] if data["source"] is not None else None
    manifest: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "app": APP_NAME,
        "app_version": __version__,
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "document": data,
        "members": {"arrays": ARRAYS, "source": photo_member, "thumbnail": THUMBNAIL if thumbnail else None,
                    "masks": sorted(masks)},
    }
    manifest.update(extra or {})
    manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=True, allow_nan=False).encode("ascii")
    npz = npz_bytes(arrays)

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
            zf.writestr(MANIFEST, manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(ARRAYS, npz, compress_type=zipfile.ZIP_STORED)
            if photo is not None and photo_member is not None:
                zf.writestr(photo_member, photo, compress_type=zipfile.ZIP_STORED)
            if thumbnail:
                zf.writestr(THUMBNAIL, thumbnail, compress_type=zipfile.ZIP_STORED)
            for key, png in sorted(masks.items()):
                zf.writestr(_mask_member(key), png, compress_type=zipfile.ZIP_STORED)

    atomic_write(path, write)


def _mask_member(key: str) -> str:
    return f"masks/{key}.png"


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, np.uint8), mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _read_masks(zf: zipfile.ZipFile, keys: Any) -> dict[str, np.ndarray]:
    """The mask PNGs the manifest lists, as 8-bit arrays; the PNG header's size is checked
    before any pixel is decoded."""
    from PIL import Image

    if keys is None:
        return {}
    if not isinstance(keys, list) or not all(isinstance(k, str) and _MASK_KEY.fullmatch(k) for k in keys):
        raise ManifestError("the manifest's members.masks should list mask arrays by name")
    out = {}
    for key in keys:
        raw = _read_member(zf, _mask_member(key), _MAX_MASK, f"mask {key}")
        if not raw.startswith(PNG_SIGNATURE):
            raise ArrayDataError(f"the mask {key} is not a PNG image; the file is damaged")
        try:
            with Image.open(io.BytesIO(raw), formats=["PNG"]) as img:
                if img.width * img.height > _MAX_MASK_PIXELS:
                    raise ArrayDataError(f"the mask {key} is {img.width}x{img.height}, larger than any mask")
                if img.mode != "L":
                    raise ArrayDataError(f"the mask {key} should be an 8-bit grayscale image, not {img.mode}")
                out[key] = np.asarray(img, np.uint8).copy()
        except (OSError, ValueError, SyntaxError) as exc:
            if isinstance(exc, ArrayDataError):
                raise
            raise ArrayDataError(f"the mask {key} is a damaged PNG ({archive.why(exc)})") from None
    return out


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as an uncompressed .npz (float16 kept, everything else float32)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            dtype = _F16 if array.dtype == _F16 else _F32  # domain deltas stay half precision
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array, dtype=dtype, order="C"), allow_pickle=False)
    return buf.getvalue()


# -- loading ------------------------------------------------------------------------------


def load_project(path: str | os.PathLike[str]) -> Document:
    """Open a project file; the document comes back clean, with `file_path` set."""
    path = Path(path)
    with _labelled(path), _open_archive(path) as zf:
        doc = _read_document(zf)
    doc.file_path = path
    doc.mark_saved()
    return doc


def load_project_bytes(data: bytes) -> Document:
    """Read a project from bytes in memory (no file path, document marked clean)."""
    with _open_archive(data) as zf:
        doc = _read_document(zf)
    doc.mark_saved()
    return doc


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the manifest (cheap: for listing projects and autosaves)."""
    path = Path(path)
    with _labelled(path), _open_archive(path) as zf:
        return _read_manifest(zf)


def read_thumbnail(path: str | os.PathLike[str]) -> bytes | None:
    """The project's PNG thumbnail, or None when it has none."""
    path = Path(path)
    with _labelled(path), _open_archive(path) as zf:
        if THUMBNAIL not in zf.namelist():
            return None
        data = _read_member(zf, THUMBNAIL, _MAX_THUMBNAIL, "thumbnail")
    return data if data.startswith(PNG_SIGNATURE) else None


@contextlib.contextmanager
def _labelled(path: Path) -> Any:
    try:
        yield
    except ProjectFileError as exc:
        raise type(exc)(f"cannot open {path.name}: {exc}") from exc.__cause__


@contextlib.contextmanager
def _open_archive(source: Path | bytes) -> Any:
    f = io.BytesIO(source) if isinstance(source, bytes) else _open_regular_file(source)
    try:
        try:
            zf = archive.open_zip(f, max_directory=_MAX_DIRECTORY, what="the project")
        except archive.NotAnArchiveError as exc:
            raise CorruptProjectError(f"it is not a StyleCLIP Desktop project, or it is damaged ({exc})") from None
        except archive.ArchiveError as exc:
            raise _project_error(exc) from None
        with zf:
            yield zf
    finally:
        f.close()


def _open_regular_file(path: Path) -> IO[bytes]:
    # Non-blocking, so that a FIFO given as a project is refused instead of waited on.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ProjectReadError(exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProjectReadError("it is not a file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _project_error(exc: archive.ArchiveError) -> ProjectFileError:
    if isinstance(exc, archive.ArchiveLimitError):
        return OversizedProjectError(str(exc))
    return CorruptProjectError(str(exc))


def _info(zf: zipfile.ZipFile, name: str, what: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(name)
    except KeyError:
        raise MissingMemberError(f"the project has no {what} ({name}); the file is incomplete") from None


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, what: str) -> bytes:
    info = _info(zf, name, what)
    try:
        return archive.read_member(zf, info, limit, name)
    except archive.ArchiveError as exc:
        raise _project_error(exc) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    raw = _read_member(zf, MANIFEST, _MAX_MANIFEST, "manifest")
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestError(f"the manifest is not valid JSON ({archive.why(exc)})") from None
    top = Fields(manifest, "manifest")
    schema = manifest.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise ManifestError("the manifest has no format version; this is not a StyleCLIP Desktop project")
    if schema > SCHEMA_VERSION:
        version = manifest.get("app_version")
        by = f"StyleCLIP Desktop {version}" if isinstance(version, str) else "a newer StyleCLIP Desktop"
        raise NewerSchemaError(
            f"it was saved by {by} in project format {schema}, and this version ({__version__}) "
            f"reads format {SCHEMA_VERSION}; update StyleCLIP Desktop to open it"
        )
    if schema < 1:
        raise ManifestError(f"the manifest has an invalid format version ({schema})")
    top.get("app_version", str)
    top.get("document", dict)
    return manifest  # type: ignore[no-any-return]


def _read_document(zf: zipfile.ZipFile) -> Document:
    manifest = _read_manifest(zf)
    members = Fields(manifest.get("members", {}), "the manifest's members")
    arrays_name = members.get("arrays", str, optional=True) or ARRAYS
    if arrays_name != ARRAYS:
        raise ManifestError(f"the manifest names an unexpected arrays member {arrays_name!r}")
    arrays = _read_arrays(zf)
    arrays.update(_read_masks(zf, members.obj.get("masks")))
    photo = None
    source = manifest["document"].get("source")
    if isinstance(source, dict) and source.get("member") is not None:
        member = source["member"]
        if not isinstance(member, str) or not _MEMBER.fullmatch(member):
            raise ManifestError("document.source.member should name the photo inside the project")
        photo = _read_member(zf, member, _MAX_PHOTO, "source photo")
        if source.get("sha256") != sha256_hex(photo):
            raise SourcePhotoError("the stored photo does not match its checksum; the file is damaged")
    return document_from_data(manifest["document"], arrays, photo)


def _read_arrays(zf: zipfile.ZipFile) -> dict[str, np.ndarray]:
    info = _info(zf, ARRAYS, "arrays")
    try:
        with archive.member_file(zf, info, _MAX_ARRAYS, ARRAYS) as f:
            return read_npz(f)
    except archive.ArchiveError as exc:
        raise _project_error(exc) from None


def read_npz(f: IO[bytes]) -> dict[str, np.ndarray]:
    """An .npz nobody vouches for: bounded, no pickles, float32 or float16 arrays only."""
    try:
        inner = archive.open_zip(f, max_directory=_MAX_NPZ_DIRECTORY, what=ARRAYS)
    except archive.NotAnArchiveError as exc:
        raise ArrayDataError(f"arrays.npz is not a readable array archive ({exc})") from None
    with inner:
        infos = [info for info in inner.infolist() if info.filename.endswith(".npy")]
        if len(infos) > _MAX_ARRAY_COUNT:
            raise ArrayDataError("arrays.npz holds too many arrays")
        # All of them, before any is read: each may pass on its own while together they
        # are a bomb (many small members, each compressed 1000:1).
        try:
            archive.check_total(infos, _MAX_ARRAYS, "the arrays in arrays.npz")
        except archive.ArchiveLimitError as exc:
            raise OversizedProjectError(str(exc)) from None
        arrays = {}
        for info in infos:
            key = info.filename[: -len(".npy")]
            what = f"array {key!r}"
            try:
                archive.check_member(info, _MAX_ARRAYS, what)
                with inner.open(info) as member:
                    arrays[key] = archive.read_npy(member, info.file_size, what, (_F32, _F16))
            except archive.ArchiveLimitError:
                raise
            except archive.ArchiveError as exc:
                raise ArrayDataError(str(exc)) from None
            except archive.ZIP_ERRORS as exc:
                raise ArrayDataError(f"{what} is damaged ({archive.why(exc)})") from None
    return arrays
