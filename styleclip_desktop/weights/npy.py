""".npy files whose header may lie: the declared shape is checked against the bytes in
the file before anything is allocated, and no pickle is ever read.

`np.load` trusts the header: a 100-byte file that declares shape (10^12,) makes it try to
allocate 4 TB (a MemoryError traceback), and its memory-mapped mode reports the short
file as a ValueError that reads like "holds Python objects".
"""

from __future__ import annotations

import math
import os
import tokenize
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from styleclip_desktop.errors import ModelFileError, UserError

# np.save writes headers of a few hundred bytes; numpy's own default limit is 10,000.
MAX_HEADER = 10_000


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    data_bytes: int  # what the shape needs, which the file is known to hold exactly


def read_header(path: str | os.PathLike[str], error: type[UserError] = ModelFileError) -> NpyHeader:
    """The header of a .npy file, refused (as `error`) unless the file holds exactly the
    data its shape and dtype declare and that data is plain numbers."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        magic = f.read(6)
        if magic.startswith(b"PK"):
            raise error(f"{p.name} is an .npz archive of arrays, not a single .npy array")
        if magic != b"\x93NUMPY":
            raise error(f"{p.name} is not a .npy array")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version[0]}.{version[1]}")
        # numpy parses the header as a Python literal: a damaged one can raise any of these.
        except (ValueError, SyntaxError, TypeError, EOFError, OverflowError, RecursionError, MemoryError,
                tokenize.TokenError) as exc:
            detail = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise error(f"{p.name} has a damaged .npy header ({detail})") from None
        offset = f.tell()
    if dtype.hasobject:
        raise error(f"{p.name} is a .npy file holding Python objects; it is refused because loading it "
                    "would run code")
    need = math.prod(shape) * dtype.itemsize
    have = size - offset
    if have != need:
        shown = "x".join(str(n) for n in shape) if len(shape) <= 8 else f"{len(shape)}-dimensional"
        raise error(f"{p.name} declares a {shown} array of {dtype} ({need:,} bytes) but holds {have:,} bytes "
                    "of data: it is damaged or truncated")
    return NpyHeader(tuple(shape), dtype, bool(fortran), need)


def read_npy(path: str | os.PathLike[str], *, max_bytes: int | None = None,
             error: type[UserError] = ModelFileError) -> np.ndarray:
    """The array in a .npy file, read only after `read_header` has vouched for its size
    (and, with `max_bytes`, found it no larger than that)."""
    p = Path(path)
    header = read_header(p, error)
    if max_bytes is not None and header.data_bytes > max_bytes:
        raise error(f"{p.name} holds {header.data_bytes:,} bytes of data, more than the {max_bytes:,} "
                    "such a file can need")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, MemoryError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise error(f"{p.name} is not a readable .npy array ({detail})") from None
