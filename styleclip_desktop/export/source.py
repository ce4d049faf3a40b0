"""What every exporter shares: where frames come from, how they are sized, and how a file
reaches its final name only once it is complete.

Exporters ask a `FrameSource` for pixels: any object with the engine's `render_frames`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from styleclip_desktop.document.atomic import create_temporary, remove_stale_temporaries_of
from styleclip_desktop.errors import UserError

if TYPE_CHECKING:
    import torch

    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.render.pipeline import ModelSet

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
Alphas = Mapping[str, float]


class FrameSource(Protocol):
    """The part of the render engine exporters use: batched frames, streamed."""

    def render_frames(self, doc_or_state: Any, alphas_list: Sequence[Alphas], *, size: int | None = None,
                      paste_back: bool = False, batch: int | None = None, progress: Progress | None = None,
                      cancelled: CancelCheck | None = None) -> Iterator[np.ndarray]: ...


def open_frame_source(models: ModelSet, device: torch.device | str = "cpu", *, frame_cache_mb: int = 8) -> Engine:
    """The render engine for these models: the one render path the GUI uses too.

    It renders with ONNX Runtime when graphs for this generator are already exported, and
    with torch otherwise; an export never starts a background graph export of its own.
    The frame cache is kept small: an export renders each frame once, and only repeated
    frames (a still stretch of the timeline) hit it."""
    from styleclip_desktop.render.engine import Engine

    return Engine(models, device, backend="auto", background_export=False, frame_cache_mb=frame_cache_mb)


def close_frame_source(source: object) -> None:
    """Stop what an engine keeps running (its worker thread); harmless for other sources."""
    shutdown = getattr(source, "shutdown", None)
    if callable(shutdown):
        shutdown()


def release_freed_memory() -> None:
    """Hand freed heap pages back to the system (glibc; elsewhere nothing to do).

    An encoder that keeps small allocations alive between frames (libwebp's animation
    muxer) pins the heap around the large buffers each render frees; glibc then keeps
    those pages, and resident memory grows by about one frame per frame. Trimming now and
    then keeps a long export flat."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # a C library without it (musl)
        return None


# --- sizes --------------------------------------------------------------------------------


def output_dims(native: tuple[int, int], size: int | None, even: bool = False) -> tuple[int, int]:
    """(width, height) with the longer side `size` (native when None), aspect kept.

    `even` rounds both to even numbers, which 4:2:0 video needs."""
    w, h = native
    if size is not None:
        if size < 1:
            raise UserError(f"the size must be a positive number of pixels, got {size}")
        scale = size / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


def fit(frame: np.ndarray, dims: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to `dims` (width, height); a no-op when it already fits.

    A frame one pixel too wide or tall (an odd photo made even for video) loses that edge
    pixel instead: resampling the whole picture for it would soften every frame."""
    h, w = frame.shape[:2]
    if (w, h) == dims:
        return np.ascontiguousarray(frame)
    if 0 <= w - dims[0] <= 1 and 0 <= h - dims[1] <= 1:
        return np.ascontiguousarray(frame[: dims[1], : dims[0]])
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize(dims, Image.Resampling.LANCZOS))


# --- files --------------------------------------------------------------------------------


def check_target(path: Path) -> None:
    """Refuse a target that cannot be written, before any rendering."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: folder {parent} is not writable")


def disk_full_error(path: Path) -> UserError:
    return UserError(f"the disk is full: {path} was not written; free some space and try again")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` that becomes `path` only if the block succeeds.

    A cancelled or failed export leaves neither a partial file under the target name nor
    the temporary one. The temporary name keeps the extension, since encoders pick the
    container from it. It stays locked while the block runs, and what exports of `path`
    killed before they finished left is removed first (see `document.atomic`)."""
    path = Path(path)
    check_target(path)
    remove_stale_temporaries_of(path, staged=True)
    try:
        fd, tmp = create_temporary(path, staged=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise
    try:
        yield tmp
        # mkstemp makes owner-only files; an exported picture is meant to be shared.
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        # Windows renames no open file. The lock ends a moment early, on a file just
        # written, which no cleaner takes for stale.
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
