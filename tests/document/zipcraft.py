"""Zip archives built byte by byte, so that tests can make them lie: deflate bombs of
zeros, directories whose sizes are wrong, entries that overlap, methods we do not read."""

from __future__ import annotations

import functools
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace

MiB = 1 << 20

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes  # the bytes as they lie in the archive (already compressed)
    file_size: int  # what the directory says it unpacks to
    crc: int
    method: int = zipfile.ZIP_STORED
    compress_size: int | None = None  # what the directory says it packs to (None: len(data))
    flags: int = 0
    local_sizes: tuple[int, int] | None = None  # (packed, unpacked) in the local header, if they differ

    def lying(self, **changes: int | tuple[int, int]) -> Member:
        return replace(self, **changes)  # type: ignore[arg-type]


def stored(name: str, content: bytes) -> Member:
    return Member(name, content, len(content), zlib.crc32(content))


def deflated(name: str, content: bytes) -> Member:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Member(name, c.compress(content) + c.flush(), len(content), zlib.crc32(content), zipfile.ZIP_DEFLATED)


@functools.cache
def _zero_segment() -> bytes:
    # A full flush leaves the stream byte-aligned with no references behind it, so copies
    # of this segment concatenate into one valid stream of that many MiB of zeros.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)


@functools.cache
def _zeros_crc(mib: int, crc: int) -> int:
    block = bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return crc


def _flushed(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH) if data else b""


def zero_bomb(name: str, size: int, *, prefix: bytes = b"") -> Member:
    """`size` bytes: `prefix`, then zeros, deflated about 1000:1 (a 2 GiB bomb is 2 MB),
    with sizes and CRC that tell the truth."""
    whole, rest = divmod(size - len(prefix), MiB)
    data = _flushed(prefix) + _zero_segment() * whole + _flushed(bytes(rest)) + b"\x03\x00"  # a final empty block
    crc = zlib.crc32(bytes(rest), _zeros_crc(whole, zlib.crc32(prefix)))
    return Member(name, data, size, crc, zipfile.ZIP_DEFLATED)


def npy_bomb(name: str, size: int) -> Member:
    """A float32 .npy member of about `size` bytes, all zeros, deflated about 1000:1."""
    count = size // 4
    header = npy_header((count,))
    return zero_bomb(name, len(header) + 4 * count, prefix=header)


def build(members: list[Member], *, aliases: tuple[tuple[str, int], ...] = ()) -> bytes:
    """The archive of `members`, plus directory entries `aliases` (name, index of a
    member) that point at another member's data: overlapping entries."""
    out = bytearray()
    offsets = []
    for m in members:
        offsets.append(len(out))
        name = m.name.encode()
        packed = m.compress_size if m.compress_size is not None else len(m.data)
        local_packed, local_unpacked = m.local_sizes or (packed, m.file_size)
        out += _LOCAL.pack(b"PK\x03\x04", 20, 0, m.flags, m.method, 0, 0x21, m.crc,
                           local_packed, local_unpacked, len(name), 0)
        out += name + m.data
    start = len(out)
    entries = [(m, m.name, offsets[i]) for i, m in enumerate(members)]
    entries += [(members[i], alias, offsets[i]) for alias, i in aliases]
    for m, entry_name, offset in entries:
        name = entry_name.encode()
        packed = m.compress_size if m.compress_size is not None else len(m.data)
        out += _CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, m.flags, m.method, 0, 0x21, m.crc,
                             packed, m.file_size, len(name), 0, 0, 0, 0, 0, offset)
        out += name
    count = min(len(entries), 0xFFFF)
    out += _END.pack(b"PK\x05\x06", 0, 0, count, count, len(out) - start, start, 0)
    return bytes(out)


def npy_header(shape: tuple[int, ...], descr: str = "<f4", *, version: int = 1) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == 1:
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()
