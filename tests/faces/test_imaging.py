"""The odd-image suite: every kind of file a user might open, generated on the fly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from styleclip_desktop.errors import UserError
from styleclip_desktop.faces.imaging import ImageLoadError, load_image


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int = 48, h: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], -1).astype(
        np.uint8
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions but carries no pixel data at all."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_plain_rgb_png_round_trips_and_keeps_bytes() -> None:
    arr = _gradient()
    data = _encode(Image.fromarray(arr), "PNG")
    loaded = load_image(data)
    assert loaded.format == "PNG"
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == (32, 48, 3)
    np.testing.assert_array_equal(loaded.pixels, arr)
    assert loaded.data == data
    assert not loaded.flattened_alpha


def test_reads_from_path(tmp_path: Path) -> None:
    p = tmp_path / "photo.bmp"
    Image.fromarray(_gradient()).save(p)
    loaded = load_image(p)
    assert loaded.format == "BMP"
    np.testing.assert_array_equal(loaded.pixels, _gradient())


@pytest.mark.parametrize("fmt,name", [("WEBP", "WebP"), ("TIFF", "TIFF"), ("BMP", "BMP")])
def test_lossless_formats(fmt: str, name: str) -> None:
    arr = _gradient()
    kwargs: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    loaded = load_image(_encode(Image.fromarray(arr), fmt, **kwargs))
    assert loaded.format == name
    np.testing.assert_array_equal(loaded.pixels, arr)


def test_cmyk_jpeg_becomes_rgb() -> None:
    img = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red ink
    loaded = load_image(_encode(img, "JPEG", quality=95))
    assert loaded.source_mode == "CMYK"
    assert loaded.pixels.shape == (30, 40, 3)
    r, g, b = loaded.pixels.reshape(-1, 3).mean(axis=0)
    assert r > 230 and g < 25 and b < 25


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    img = Image.fromarray(values)
    assert img.mode.startswith("I;16")
    loaded = load_image(_encode(img, "PNG"))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert loaded.pixels.shape == (16, 64, 3)
    assert np.abs(loaded.pixels[:, :, 0].astype(int) - expected).max() <= 1
    assert loaded.pixels[0, 0, 0] == 0 and loaded.pixels[-1, -1, 0] == 255


def test_sixteen_bit_tiff_and_float_tiff() -> None:
    values = np.full((8, 8), 32896, np.uint16)  # 128 * 257
    loaded = load_image(_encode(Image.fromarray(values), "TIFF"))
    assert int(loaded.pixels[0, 0, 0]) == 128
    floats = np.full((8, 8), 0.5, np.float32)
    loaded_f = load_image(_encode(Image.fromarray(floats, mode="F"), "TIFF"))
    assert abs(int(loaded_f.pixels[0, 0, 0]) - 128) <= 1


def test_exif_orientation_is_applied() -> None:
    # Stored 40 wide x 20 tall with a red block at the stored top-left. Orientation 6 means
    # "rotate 90 degrees clockwise to display": the block must end up at the top-right.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :] = (0, 0, 255)
    arr[:6, :6] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    loaded = load_image(_encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert loaded.pixels.shape == (40, 20, 3)
    top_right = loaded.pixels[:4, -4:].reshape(-1, 3).mean(axis=0)
    top_left = loaded.pixels[:4, :4].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[2] < 60
    assert top_left[2] > 200 and top_left[0] < 60
    assert any("upright" in n for n in loaded.notes)


def test_palette_png_with_transparency_goes_on_white() -> None:
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 0, 200, 10, 10] + [0, 0, 0] * 254)
    img.paste(0, (0, 0, 5, 10))
    data = _encode(img, "PNG", transparency=0)
    loaded = load_image(data)
    assert loaded.flattened_alpha
    np.testing.assert_array_equal(loaded.pixels[:, :5], 255)
    np.testing.assert_array_equal(loaded.pixels[0, 7], [200, 10, 10])


def test_half_transparent_rgba_and_la_composite_over_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    px = load_image(_encode(rgba, "PNG")).pixels[0, 0].astype(int)
    np.testing.assert_allclose(px, [255, 127, 127], atol=1)
    la = Image.new("LA", (4, 4), (0, 0))
    np.testing.assert_array_equal(load_image(_encode(la, "PNG")).pixels, 255)


def test_opaque_alpha_is_not_reported_as_flattened() -> None:
    rgba = Image.fromarray(np.dstack([_gradient(), np.full((32, 48), 255, np.uint8)]))
    loaded = load_image(_encode(rgba, "PNG"))
    assert not loaded.flattened_alpha
    np.testing.assert_array_equal(loaded.pixels, _gradient())


def test_grayscale_and_bilevel() -> None:
    grey = Image.fromarray(np.full((6, 9), 77, np.uint8))
    loaded = load_image(_encode(grey, "JPEG", quality=100))
    assert loaded.pixels.shape == (6, 9, 3)
    assert np.abs(loaded.pixels.astype(int) - 77).max() <= 1
    bilevel = Image.new("1", (5, 5), 1)
    np.testing.assert_array_equal(load_image(_encode(bilevel, "BMP")).pixels, 255)


def test_embedded_srgb_profile_leaves_colours_alone() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    arr = _gradient()
    loaded = load_image(_encode(Image.fromarray(arr), "PNG", icc_profile=icc))
    assert np.abs(loaded.pixels.astype(int) - arr.astype(int)).max() <= 2


def test_truncated_jpeg_is_reported() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noisy), "JPEG", quality=90)
    with pytest.raises(ImageLoadError, match="the file is truncated"):
        load_image(data[: len(data) // 2])


def test_truncated_png_is_reported() -> None:
    data = _encode(Image.fromarray(_gradient(64, 64)), "PNG")
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: len(data) - 30])


def test_garbage_and_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not an image Pillow can read"):
        load_image(b"this is a text file, not a photo" * 10)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="No such file"):
        load_image(tmp_path / "nope.jpg")
    assert issubclass(ImageLoadError, UserError)


def test_unsupported_format_names_the_alternatives() -> None:
    with pytest.raises(ImageLoadError, match="use JPEG, PNG, WebP, TIFF or BMP"):
        load_image(_encode(Image.new("RGB", (4, 4)), "GIF"))


def test_oversized_claim_is_refused_without_decoding() -> None:
    # 20000 x 6000 = 120 MP: over our limit, under Pillow's own hard limit.
    with pytest.raises(ImageLoadError, match="the image is 120 megapixels; the limit is 80"):
        load_image(_png_header_only(20000, 6000))


def test_decompression_bomb_is_refused_with_size() -> None:
    # 30000 x 10000 = 300 MP: Pillow itself refuses before we ever see the size.
    with pytest.raises(ImageLoadError, match="300 megapixels; the limit is 80"):
        load_image(_png_header_only(30000, 10000))


def test_custom_pixel_limit() -> None:
    with pytest.raises(ImageLoadError, match="limit is"):
        load_image(_encode(Image.fromarray(_gradient()), "PNG"), max_pixels=1000)
