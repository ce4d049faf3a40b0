"""Opening the user's photo: any common file becomes plain 8-bit sRGB pixels.

Photos arrive in every shape a camera, phone or editor can produce: CMYK print files,
16-bit scans, palette PNGs with a transparent colour, phone JPEGs stored sideways with an
EXIF orientation tag, half-downloaded files. Everything downstream (detection, alignment,
inversion, paste-back) wants one thing: an upright HxWx3 uint8 RGB array, so all the
special cases live here and each failure gets a message the user can act on.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from styleclip_desktop.errors import UserError

DEFAULT_MAX_PIXELS = 80_000_000
# What a folder of photos is read for (`edit PHOTO`, batches): the formats `load_image` opens.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")

# MPO is what many cameras write for JPEGs with an embedded preview; it decodes as JPEG.
SUPPORTED_FORMATS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "TIFF": "TIFF",
    "BMP": "BMP",
}

_WHITE = 255.0


class ImageLoadError(UserError):
    """The photo could not be opened; the message says why in the user's terms."""


@dataclass(frozen=True)
class LoadedImage:
    """An opened photo: upright RGB pixels plus what we need to remember about the file."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    data: bytes  # the file exactly as read, so a project can embed the original
    format: str  # "JPEG", "PNG", "WebP", "TIFF" or "BMP"
    source_mode: str  # Pillow's mode of the file before conversion ("CMYK", "I;16", ...)
    flattened_alpha: bool = False  # transparency was composited over white
    notes: tuple[str, ...] = field(default_factory=tuple)  # human-readable remarks for the UI

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _megapixels(pixels: int) -> str:
    mp = pixels / 1_000_000
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.1f}"


def _read_source(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return bytes(path_or_bytes), "the image"
    path = Path(path_or_bytes)
    try:
        return path.read_bytes(), path.name
    except FileNotFoundError:
        raise ImageLoadError(f"No such file: {path}") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{path} is a folder, not an image file") from None
    except PermissionError:
        raise ImageLoadError(f"No permission to read {path}") from None
    except OSError as exc:
        raise ImageLoadError(f"Could not read {path}: {exc.strerror or exc}") from None


def _bomb_message(exc: BaseException, limit: int) -> str:
    # Pillow refuses before we see the size, so the only place the size lives is its message.
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found:
        return (
            f"the image is {_megapixels(int(found.group(1)))} megapixels; the limit is {_megapixels(limit)}"
        )
    return f"the image is too large to open safely; the limit is {_megapixels(limit)} megapixels"


def load_image(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> LoadedImage:
    """Open a photo and return upright 8-bit RGB pixels; raise `ImageLoadError` on any failure.
    `name` is what messages call it (default: the file's name, or "the image" for bytes)."""
    data, own_name = _read_source(path_or_bytes)
    name = name or own_name
    if not data:
        raise ImageLoadError(f"Cannot open {name}: the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two bomb thresholds; we want one clear refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, name, max_pixels)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"Cannot open {name}: {_bomb_message(exc, max_pixels)}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"Cannot open {name}: not an image Pillow can read") from None
    except MemoryError:
        raise ImageLoadError(f"Cannot open {name}: not enough memory to decode it") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        text = str(exc).lower()
        if "truncated" in text or isinstance(exc, EOFError) or "premature end" in text:
            raise ImageLoadError(f"Cannot open {name}: the file is truncated") from None
        raise ImageLoadError(f"Cannot open {name}: the file is damaged ({exc})") from None


def _decode(data: bytes, name: str, max_pixels: int) -> LoadedImage:
    img: Image.Image = Image.open(io.BytesIO(data))
    fmt = SUPPORTED_FORMATS.get(img.format or "")
    if fmt is None:
        raise ImageLoadError(
            f"Cannot open {name}: {img.format or 'this'} files are not supported; "
            "use JPEG, PNG, WebP, TIFF or BMP"
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"Cannot open {name}: the image has no pixels")
    if width * height > max_pixels:
        raise ImageLoadError(
            f"Cannot open {name}: the image is {_megapixels(width * height)} megapixels; "
            f"the limit is {_megapixels(max_pixels)}"
        )
    source_mode = img.mode
    notes: list[str] = []
    # An MPO's extra frames are the camera's previews, not pages the user would care about.
    if getattr(img, "n_frames", 1) > 1 and img.format != "MPO":
        notes.append("the file holds several frames; the first one is used")
    img.load()
    icc = img.info.get("icc_profile")
    if _orientation(img) not in (None, 1):
        img = ImageOps.exif_transpose(img)
        notes.append("turned upright according to the camera's orientation tag")
    pixels, flattened = _to_rgb8(img, icc, notes)
    if flattened:
        notes.append("transparent areas were placed on a white background")
    return LoadedImage(
        pixels=pixels,
        data=data,
        format=fmt,
        source_mode=source_mode,
        flattened_alpha=flattened,
        notes=tuple(notes),
    )


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(0x0112)
    except Exception:  # a broken EXIF block must not stop the photo from opening
        return None
    return int(value) if value is not None else None


def _to_srgb(img: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """Convert through the embedded colour profile when there is one (CMYK, Display P3, ...)."""
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode != "CMYK" and "srgb" in (ImageCms.getProfileDescription(src) or "").lower():
            return img  # already sRGB: a transform would only cost time and add rounding
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        if img.mode == "RGBA":
            # lcms cannot carry alpha through every transform; convert colour and reattach alpha.
            alpha = img.getchannel("A")
            rgb = ImageCms.profileToProfile(img.convert("RGB"), src, dst, outputMode="RGB")
            assert rgb is not None
            rgb.putalpha(alpha)
            return rgb
        converted = ImageCms.profileToProfile(img, src, dst, outputMode=out_mode)
        return converted if converted is not None else img
    except Exception:
        # A profile lcms cannot parse is common in the wild; plain conversion is the fallback.
        notes.append("the embedded colour profile could not be used; colours may be slightly off")
        return img


def _high_depth_to_float(img: Image.Image) -> np.ndarray:
    """Scale 16-bit and 32-bit single-channel data to 0..255 floats."""
    arr = np.asarray(img)
    mode = img.mode
    if mode.startswith("I;16"):
        return arr.astype(np.float64) / 257.0
    if mode == "I":
        # Pillow hands 16-bit greyscale (PNG, TIFF) to us as 32-bit ints holding 0..65535.
        return np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    # Mode "F": float files are nearly always 0..1; anything else is taken as 0..255.
    f = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    hi = float(f.max()) if f.size else 0.0
    return f * 255.0 if hi <= 1.0 else f


def _to_rgb8(img: Image.Image, icc: bytes | None, notes: list[str]) -> tuple[np.ndarray, bool]:
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = np.clip(np.rint(_high_depth_to_float(img)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2)), False

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        img = img.convert("RGBA")
    elif mode == "CMYK":
        img = _to_srgb(img, icc, notes)
        img = img.convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")
    if icc and mode in ("RGB", "RGBA"):
        img = _to_srgb(img, icc, notes)

    arr = np.asarray(img)
    if img.mode == "RGBA":
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        if float(alpha.min()) >= 1.0:
            return np.ascontiguousarray(arr[:, :, :3]), False
        rgb = arr[:, :, :3].astype(np.float32) * alpha + _WHITE * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), True
    return np.ascontiguousarray(arr[:, :, :3].astype(np.uint8)), False
