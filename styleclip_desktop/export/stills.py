"""Still export: the edited face pasted back into the photo (or the aligned crop) as PNG,
JPEG or WebP, at a chosen size, with metadata saying it was edited by AI and how."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.export import metadata as md
from styleclip_desktop.export.source import CancelCheck, FrameSource, fit, output_dims, staged_file

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def still_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"cannot export a still as {Path(path).suffix or 'a file without extension'}: "
                        "use .png, .jpg or .webp")
    return fmt


@dataclass(frozen=True)
class StillOptions:
    size: int | None = None  # the longer side in pixels; None keeps the render's own size
    crop: bool = False  # the aligned face crop instead of the whole photo
    quality: int = 95  # JPEG and lossy WebP
    lossless: bool = False  # WebP only

    def __post_init__(self) -> None:
        if self.size is not None and not 1 <= self.size <= 16384:
            raise UserError(f"the size must be between 1 and 16384 pixels, got {self.size}")
        if not 1 <= self.quality <= 100:
            raise UserError(f"the quality must be between 1 and 100, got {self.quality}")


def static_alphas(doc: Any) -> dict[str, float]:
    return {layer.id: float(layer.alpha) for layer in doc.layers}


def render_still(source: FrameSource, doc: Any, alphas: Mapping[str, float] | None = None, *,
                 size: int | None = None, crop: bool = False) -> np.ndarray:
    """One frame of `doc` through the engine, resized so its longer side is `size`."""
    frames = source.render_frames(doc, [dict(alphas) if alphas is not None else static_alphas(doc)],
                                  size=size, paste_back=not crop, batch=1)
    try:
        frame = next(iter(frames))
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    return fit(frame, output_dims((frame.shape[1], frame.shape[0]), size))


def write_still(pixels: np.ndarray, path: str | Path, meta: Mapping[str, Any] | None = None, *,
                quality: int = 95, lossless: bool = False) -> Path:
    """Encode HxWx3 uint8 `pixels` to `path` (format from the extension) with `meta`
    embedded; the file appears complete or not at all."""
    from PIL import Image

    path = Path(path)
    fmt = still_format(path)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"a still must be HxWx3 uint8, got {pixels.dtype} {pixels.shape}")
    img = Image.fromarray(np.ascontiguousarray(pixels))
    kwargs: dict[str, Any] = {}
    if fmt == "PNG":
        kwargs = {"optimize": False, "compress_level": 6}
        if meta:
            kwargs["pnginfo"] = md.png_info(meta)
    elif fmt == "JPEG":
        # Full-resolution colour above the usual web quality: skin tones and lips smear
        # visibly at 4:2:0.
        kwargs = {"quality": quality, "optimize": True, "subsampling": 0 if quality >= 90 else 2}
    else:
        kwargs = {"quality": quality, "lossless": lossless, "method": 4}
    if meta and fmt in ("JPEG", "WEBP"):
        kwargs["xmp"] = md.xmp_packet(meta)
        kwargs["exif"] = md.exif_bytes(meta)
    with staged_file(path) as tmp:
        with open(tmp, "wb") as f:
            img.save(f, format=fmt, **kwargs)
            f.flush()
            os.fsync(f.fileno())
    return path


def export_still(source: FrameSource, doc: Any, path: str | Path, options: StillOptions = StillOptions(), *,
                 alphas: Mapping[str, float] | None = None, models: Mapping[str, str] | None = None,
                 synthetic: bool = False, cancelled: CancelCheck | None = None) -> Path:
    """Render `doc` and write it to `path` with its metadata. Returns the path written."""
    from styleclip_desktop.export.source import check_target

    path = Path(path)
    still_format(path)
    check_target(path)  # before any rendering
    used = dict(alphas) if alphas is not None else static_alphas(doc)
    pixels = render_still(source, doc, used, size=options.size, crop=options.crop)
    if cancelled is not None and cancelled():
        raise Cancelled()
    meta = md.build_metadata(doc, used, models=models, synthetic=synthetic, crop=options.crop,
                             dims=(pixels.shape[1], pixels.shape[0]))
    return write_still(pixels, path, meta, quality=options.quality, lossless=options.lossless)
