"""Reading zip archives and .npy arrays from files nobody vouches for, in bounded memory,
disk and time.

A zip's directory says how large each member is, but a crafted file can make those
numbers lie, and deflate turns a megabyte of input into a gigabyte of output. So:

- the central directory is sized from the end record before zipfile parses it (zipfile
  reads it whole and builds an object per entry);
- a member is refused before it is read when its declared size is over its limit, or its
  declared compression ratio is one no real member reaches;
- while it is read, the bytes that actually come out are counted, in bounded chunks, and
  reading stops at the limit and at the declared size, whatever the directory said;
- only stored and deflated members are read: zipfile inflates bzip2 and LZMA without an
  output bound, so one chunk of input could become gigabytes at once;
- a stored member is read in place (a window on the archive), so an archive inside an
  archive is never copied into memory.

Every failure is an `ArchiveError` with a one-line message; callers turn it into an error
of their own kind.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Collection, Iterator
from typing import IO, cast

import numpy as np

CHUNK = 1 << 20
# Deflate peaks near 1030:1 on constant data. Real members (floats, photos, JSON) stay far
# below 200:1; only members past RATIO_FLOOR are held to it, so a small, very repetitive
# manifest is still fine.
MAX_RATIO = 200
RATIO_FLOOR = 1 << 20
# numpy refuses headers over 10 000 bytes itself, but only after reading all of them.
MAX_NPY_HEADER = 1 << 16

# The ways zipfile and zlib report damage while reading; each means "damaged file".
ZIP_ERRORS: tuple[type[BaseException], ...] = (
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

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_HOSTILE = "the file is damaged, or made to exhaust memory"


class ArchiveError(ValueError):
    """The archive or one of its members is damaged or unreadable."""


class ArchiveLimitError(ArchiveError):
    """A member (or the directory) is larger, or compressed further, than allowed."""


class NotAnArchiveError(ArchiveError):
    """zipfile cannot read the archive at all; the message is its reason."""


def size_text(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def why(exc: BaseException) -> str:
    """An exception as a short phrase for the end of a one-line message."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# -- the directory --------------------------------------------------------------------------


def directory_size(f: IO[bytes]) -> int | None:
    """The central directory's size in bytes as zipfile will read it, or None when the
    end record is missing (zipfile then refuses the file itself).

    The end record is found the way zipfile finds it: at the very end, else the last
    signature in the final 64 KiB, with a zip64 record right before its locator."""
    f.seek(0, io.SEEK_END)
    size = f.tell()
    tail_len = min(size, _EOCD.size + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    if len(tail) >= _EOCD.size and tail[-_EOCD.size:][:4] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        start = len(tail) - _EOCD.size
    else:
        start = tail.rfind(b"PK\x05\x06")
        if start < 0 or start + _EOCD.size > len(tail):
            return None
    dir_size: int = _EOCD.unpack_from(tail, start)[5]
    end_record = size - tail_len + start
    if end_record >= _EOCD64_LOCATOR.size + _EOCD64.size:
        f.seek(end_record - _EOCD64_LOCATOR.size)
        locator = f.read(_EOCD64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            f.seek(end_record - _EOCD64_LOCATOR.size - _EOCD64.size)
            record = f.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                dir_size = _EOCD64.unpack(record)[8]
    return dir_size


def open_zip(f: IO[bytes], *, max_directory: int, what: str) -> zipfile.ZipFile:
    """A ZipFile on `f`, once its directory is known to fit in `max_directory` bytes."""
    try:
        dir_size = directory_size(f)
        f.seek(0)
    except ZIP_ERRORS as exc:
        raise ArchiveError(f"{what} is unreadable ({why(exc)})") from None
    if dir_size is not None and dir_size > max_directory:
        raise ArchiveLimitError(f"the directory of {what} is {size_text(dir_size)}, over the "
                                f"{size_text(max_directory)} limit; {_HOSTILE}")
    try:
        zf = zipfile.ZipFile(f)
    except ZIP_ERRORS as exc:
        raise NotAnArchiveError(why(exc)) from None
    try:
        names = zf.namelist()
        if len(set(names)) != len(names):
            # Two members of one name read differently in different tools: damage or deceit.
            raise ArchiveError(f"{what} names one member twice; the file is damaged")
        # Members share no bytes in a real archive. Entries that overlap (one block listed
        # under many names) multiply what a small file unpacks to; a directory that
        # overstates sizes would have a reader allocate for data that is not there.
        packed = sum(info.compress_size for info in zf.infolist())
        size = f.seek(0, io.SEEK_END)
        if packed > size:
            raise ArchiveLimitError(f"the members of {what} claim {size_text(packed)}, more than the whole "
                                    f"{size_text(size)} file (they overlap, or the directory lies); {_HOSTILE}")
    except BaseException:
        zf.close()
        raise
    return zf


# -- members --------------------------------------------------------------------------------


def check_member(info: zipfile.ZipInfo, limit: int, what: str) -> None:
    """Refuse, from the directory alone, a member that cannot be read within `limit`."""
    if info.flag_bits & 0x1:
        raise ArchiveError(f"{what} is encrypted")
    if info.compress_type not in _READABLE_METHODS:
        raise ArchiveError(f"{what} is packed with a compression method StyleCLIP Desktop does not read "
                           f"(zip method {info.compress_type})")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ArchiveError(f"{what} is damaged (its sizes disagree)")
    _check_sizes(info.file_size, info.compress_size, limit, what)


def check_total(infos: Collection[zipfile.ZipInfo], limit: int, what: str) -> None:
    """Refuse members that together would unpack to more than `limit`, or that are each
    small enough to pass on their own but compressed too far taken together."""
    _check_sizes(sum(i.file_size for i in infos), sum(i.compress_size for i in infos), limit, what)


def _check_sizes(unpacked: int, packed: int, limit: int, what: str) -> None:
    if unpacked > limit:
        raise ArchiveLimitError(f"{what} would unpack to {size_text(unpacked)}, over the "
                                f"{size_text(limit)} limit; {_HOSTILE}")
    if unpacked > RATIO_FLOOR and unpacked > MAX_RATIO * packed:
        ratio = unpacked / max(packed, 1)
        raise ArchiveLimitError(f"{what} would unpack to {size_text(unpacked)} from {size_text(packed)} "
                                f"({ratio:.0f}:1), far more than real files compress; {_HOSTILE}")


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> IO[bytes]:
    try:
        return zf.open(info)
    except ZIP_ERRORS as exc:
        raise ArchiveError(f"{what} is damaged ({why(exc)})") from None


def _read(f: IO[bytes], n: int, what: str) -> bytes:
    try:
        return f.read(n)
    except ArchiveError:
        raise
    except ZIP_ERRORS as exc:  # zipfile's CRC check, a broken deflate stream, ...
        raise ArchiveError(f"{what} is damaged ({why(exc)})") from None


def _copy(src: IO[bytes], dst: IO[bytes], info: zipfile.ZipInfo, what: str) -> None:
    # The count is ours: whatever zipfile does with sizes the directory misstates, no more
    # than the declared size (already within the limit) is ever accepted. Errors writing
    # `dst` (a full disk) are left as they are: they say nothing about the archive.
    expected = info.file_size
    total = 0
    while True:
        chunk = _read(src, min(CHUNK, expected - total + 1), what)
        if not chunk:
            break
        total += len(chunk)
        if total > expected:
            raise ArchiveError(f"{what} holds more than the archive's directory says; the file is damaged")
        dst.write(chunk)
    if total != expected:
        raise ArchiveError(f"{what} is truncated")


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, what: str) -> bytes:
    """The whole member as bytes, never more than `limit` of them."""
    check_member(info, limit, what)
    out = io.BytesIO()
    with _open_member(zf, info, what) as f:
        _copy(f, out, info, what)
    return out.getvalue()


class _Window(io.RawIOBase):
    """A read-only, seekable view of `size` bytes of `f` from `start`."""

    def __init__(self, f: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self._f = f
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        # The archive's file is shared with zipfile, which seeks it too: always seek first.
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _stored_window(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> IO[bytes]:
    f = zf.fp
    if f is None:
        raise ArchiveError(f"{what} is unreadable (the archive is closed)")
    try:
        f.seek(info.header_offset)
        head = f.read(_LOCAL_HEADER.size)
        f.seek(0, io.SEEK_END)
        end = f.tell()
    except ZIP_ERRORS as exc:
        raise ArchiveError(f"{what} is unreadable ({why(exc)})") from None
    if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise ArchiveError(f"{what} is damaged (its header is missing)")
    fields = _LOCAL_HEADER.unpack(head)
    start = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
    if info.compress_size != info.file_size or start + info.file_size > end:
        raise ArchiveError(f"{what} is truncated")
    return cast(IO[bytes], _Window(f, start, info.file_size))


@contextlib.contextmanager
def member_file(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, what: str) -> Iterator[IO[bytes]]:
    """A seekable file holding the member (an archive inside the archive, say).

    A stored member is read where it lies; a deflated one is unpacked, within `limit`,
    into an anonymous temporary file (gone when closed, even after a crash), since seeking
    in a deflate stream means inflating it again from the start."""
    check_member(info, limit, what)
    if info.compress_type == zipfile.ZIP_STORED:
        with _stored_window(zf, info, what) as window:
            yield window
        return
    with tempfile.TemporaryFile() as spill:
        with _open_member(zf, info, what) as f:
            _copy(f, spill, info, what)
        spill.seek(0)
        yield spill


# -- .npy arrays ----------------------------------------------------------------------------


def _exactly(f: IO[bytes], n: int, what: str) -> bytes:
    data = _read(f, n, what)
    if len(data) != n:
        raise ArchiveError(f"{what} is truncated")
    return data


def read_npy(f: IO[bytes], size: int, what: str, dtypes: Collection[np.dtype]) -> np.ndarray:
    """The .npy array in `f`, which holds `size` bytes (as already checked against a limit).

    The header is parsed and checked against `size` before the array is allocated, and
    the data is read straight into it: memory is the array plus one chunk."""
    magic = _exactly(f, 8, what)
    if magic[:6] != b"\x93NUMPY":
        raise ArchiveError(f"{what} is not a .npy array")
    if magic[6] == 1:
        length_format = "<H"
    elif magic[6] == 2:
        length_format = "<I"
    else:
        raise ArchiveError(f"{what} has a damaged header (unsupported .npy version {magic[6]}.{magic[7]})")
    length_bytes = _exactly(f, struct.calcsize(length_format), what)
    header_len = struct.unpack(length_format, length_bytes)[0]
    if header_len > MAX_NPY_HEADER:
        raise ArchiveError(f"{what} has a damaged header ({header_len} bytes long)")
    header = _exactly(f, header_len, what)
    parsed = io.BytesIO(magic + length_bytes + header)
    try:
        version = np.lib.format.read_magic(parsed)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(parsed)
    except (ValueError, SyntaxError, EOFError, TypeError, OverflowError, RecursionError, MemoryError,
            tokenize.TokenError) as exc:  # numpy parses the header with Python's tokenizer
        raise ArchiveError(f"{what} has a damaged header ({why(exc)})") from None
    if dtype not in dtypes:
        names = " or ".join(sorted({np.dtype(d).name for d in dtypes}))
        raise ArchiveError(f"{what} should hold {names} numbers but holds {dtype}")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ArchiveError(f"{what} has an invalid shape {shape}")
    need = math.prod(shape) * dtype.itemsize
    have = size - parsed.tell()
    if have != need:
        raise ArchiveError(f"{what} has {have} bytes of data, not the {need} its shape {tuple(shape)} needs")
    try:
        array = np.empty(tuple(reversed(shape)) if fortran else shape, dtype)
    except (ValueError, MemoryError) as exc:
        raise ArchiveError(f"{what} has an invalid shape {tuple(shape)} ({why(exc)})") from None
    raw = array.reshape(-1).view(np.uint8)
    filled = 0
    while filled < need:
        chunk = _read(f, min(CHUNK, need - filled), what)
        if not chunk:
            raise ArchiveError(f"{what} is truncated")
        raw[filled: filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
        filled += len(chunk)
    if _read(f, 1, what):
        raise ArchiveError(f"{what} holds more than its shape needs; the file is damaged")
    return array.T if fortran else array
