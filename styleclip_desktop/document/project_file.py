"""The `.scproj` project file: one zip archive holding

- `manifest.json`: {"schema": 1, "app": ..., "app_version": ..., "saved_at": ...,
  "document": <see serialize.document_to_data>, "members": {...}} (deflated);
- `arrays.npz`: the latent, optimization deltas, resolved global directions (ds in S)
  and the generator delta, all float32;
- `source.<ext>`: the original photo's bytes, untouched (absent for a latent-only project);
- `thumbnail.png`: a preview for the open dialog (optional).

Saving is atomic: a temporary file in the same folder is written, flushed and fsynced,
then renamed over the target, so a crash or a full disk never leaves half a project.

Loading trusts nothing: sizes are checked before reading, arrays are parsed with
allow_pickle=False after their headers are checked against their byte counts, the photo
is checked against its sha256, and every way a file can be damaged becomes a specific
`ProjectFileError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from styleclip_desktop import __version__
from styleclip_desktop.document.document import Document, sha256_hex
from styleclip_desktop.document.errors import (
    ArrayDataError,
    CorruptProjectError,
    ManifestError,
    MissingMemberError,
    NewerSchemaError,
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

_MAX_MANIFEST = 16 << 20
_MAX_ARRAYS = 8 << 30
_MAX_PHOTO = 1 << 30
_MAX_THUMBNAIL = 64 << 20
_MAX_ARRAY_COUNT = 100_000
_F32 = np.dtype("<f4")

# The ways the zip and zlib modules report a damaged archive; all mean "corrupt file".
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
    IndexError,
    KeyError,
    UnicodeDecodeError,
)


# -- saving -------------------------------------------------------------------------------


def save_project(doc: Document, path: str | os.PathLike[str], *, thumbnail: bytes | None = None) -> Path:
    """Save the document to `path` atomically; it becomes the document's file and clean."""
    path = Path(path)
    write_project(doc, path, thumbnail=thumbnail)
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
    photo = doc.source.data if doc.source is not None else None
    photo_member = data["source"]["member"] if data["source"] is not None else None
    manifest: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "app": APP_NAME,
        "app_version": __version__,
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "document": data,
        "members": {"arrays": ARRAYS, "source": photo_member, "thumbnail": THUMBNAIL if thumbnail else None},
    }
    manifest.update(extra or {})
    manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=True, allow_nan=False).encode("ascii")
    npz = _npz_bytes(arrays)

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
            zf.writestr(MANIFEST, manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(ARRAYS, npz, compress_type=zipfile.ZIP_STORED)
            if photo is not None and photo_member is not None:
                zf.writestr(photo_member, photo, compress_type=zipfile.ZIP_STORED)
            if thumbnail:
                zf.writestr(THUMBNAIL, thumbnail, compress_type=zipfile.ZIP_STORED)

    atomic_write(path, write)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array, dtype=_F32, order="C"), allow_pickle=False)
    return buf.getvalue()


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary file beside `path`, make it durable, then rename
    it over `path`. On any failure the target is untouched and the temporary file removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
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
    if isinstance(source, bytes):
        f: IO[bytes] = io.BytesIO(source)
    else:
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise ProjectReadError(exc.strerror or str(exc)) from None
    try:
        try:
            zf = zipfile.ZipFile(f)
        except _ZIP_ERRORS as exc:
            raise CorruptProjectError(f"it is not a StyleCLIP Desktop project, or it is damaged ({_why(exc)})") from None
        with zf:
            yield zf
    finally:
        f.close()


def _why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, what: str) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise MissingMemberError(f"the project has no {what} ({name}); the file is incomplete") from None
    if info.file_size > limit:
        raise CorruptProjectError(f"the {what} ({name}) claims an impossible size; the file is damaged")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except _ZIP_ERRORS as exc:
        raise CorruptProjectError(f"the {what} ({name}) is damaged ({_why(exc)})") from None
    if len(data) != info.file_size:
        raise CorruptProjectError(f"the {what} ({name}) is truncated")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    raw = _read_member(zf, MANIFEST, _MAX_MANIFEST, "manifest")
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestError(f"the manifest is not valid JSON ({_why(exc)})") from None
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
    arrays = _read_npz(_read_member(zf, ARRAYS, _MAX_ARRAYS, "arrays"))
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


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise ArrayDataError(f"arrays.npz is not a readable array archive ({_why(exc)})") from None
    with inner:
        infos = inner.infolist()
        if len(infos) > _MAX_ARRAY_COUNT:
            raise ArrayDataError("arrays.npz holds too many arrays")
        arrays = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            raw = _read_member(inner, info.filename, _MAX_ARRAYS, f"array {key!r}")
            arrays[key] = _parse_npy(raw, key)
    return arrays


def _parse_npy(raw: bytes, key: str) -> np.ndarray:
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, EOFError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise ArrayDataError(f"array {key!r} has a damaged header ({_why(exc)})") from None
    if dtype != _F32:
        raise ArrayDataError(f"array {key!r} should hold float32 numbers but holds {dtype}")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ArrayDataError(f"array {key!r} has an invalid shape {shape}")
    count = 1
    for d in shape:
        count *= d
    if len(raw) - f.tell() != count * _F32.itemsize:
        raise ArrayDataError(f"array {key!r} has {len(raw) - f.tell()} bytes of data, not the "
                             f"{count * _F32.itemsize} its shape {tuple(shape)} needs")
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise ArrayDataError(f"array {key!r} is unreadable ({_why(exc)})") from None
    if not isinstance(array, np.ndarray) or array.dtype != _F32 or array.shape != tuple(shape):
        raise ArrayDataError(f"array {key!r} is unreadable")
    return array
