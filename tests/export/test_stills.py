"""Still export: formats, sizes, the embedded edit record, and failures that leave nothing."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.document import Document, GlobalDirectionParams, Layer
from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.export import metadata as md
from styleclip_desktop.export.source import FrameSource
from styleclip_desktop.export.stills import StillOptions, export_still, render_still, write_still


def with_prompt_layer(doc: Document) -> Document:
    # Hidden, so rendering needs no CLIP, yet the record must still list it.
    doc.layers.append(Layer(GlobalDirectionParams("a face with grey hair", neutral="a face", beta=0.12),
                            alpha=3.0, visible=False))
    return doc


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_metadata_round_trips(engine: FrameSource, photo_doc: Document, tmp_path: Path, ext: str) -> None:
    doc = with_prompt_layer(photo_doc)
    models = {"generator": "ab" * 32}
    out = export_still(engine, doc, tmp_path / f"still.{ext}", StillOptions(size=48), models=models, synthetic=True)
    meta = md.read_metadata(out)
    assert meta == md.build_metadata(doc, None, models=models, synthetic=True, dims=(48, 36))
    assert meta["ai_edited"] is True and meta["synthetic"] is True and meta["models"] == models
    assert meta["digital_source_type"].endswith("/compositeWithTrainedAlgorithmicMedia")
    assert meta["notice"] == "AI-edited with StyleCLIP Desktop" and meta["app_version"]
    grey = meta["layers"][1]
    assert (grey["target"], grey["alpha"], grey["beta"], grey["visible"]) == ("a face with grey hair", 3.0, 0.12, False)
    with Image.open(out) as im:
        assert im.size == (48, 36)
        if ext != "png":
            xmp = im.info["xmp"]
            assert b"Iptc4xmpExt:DigitalSourceType" in xmp and b"compositeWithTrainedAlgorithmicMedia" in xmp
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_exif_alone_is_enough(engine: FrameSource, doc: Document, tmp_path: Path) -> None:
    """Tools that drop XMP but keep EXIF still leave the record readable."""
    src = export_still(engine, doc, tmp_path / "a.jpg")
    with Image.open(src) as im:
        exif = im.getexif()
        im.save(tmp_path / "b.jpg", exif=exif)
    with Image.open(tmp_path / "b.jpg") as im:
        assert "xmp" not in im.info
    meta = md.read_metadata(tmp_path / "b.jpg")
    assert meta["digital_source_type"].endswith("/trainedAlgorithmicMedia") and meta["source"] == "seed"


def test_sizes_crop_and_lossless_pixels(engine: FrameSource, photo_doc: Document, tmp_path: Path) -> None:
    whole = render_still(engine, photo_doc)
    assert whole.shape == (61, 81, 3)
    out = export_still(engine, photo_doc, tmp_path / "face.webp", StillOptions(crop=True, lossless=True))
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), render_still(engine, photo_doc, crop=True))
    out = export_still(engine, photo_doc, tmp_path / "photo.png", StillOptions(size=162))
    with Image.open(out) as im:
        assert im.size == (162, 122)


def test_full_disk_and_cancel_leave_nothing(engine: FrameSource, doc: Document, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Cancelled):
        export_still(engine, doc, tmp_path / "c.png", cancelled=lambda: True)

    def full(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        fp.write(b"\x89PNG half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(UserError, match="the disk is full"):
        write_still(np.zeros((8, 8, 3), np.uint8), tmp_path / "d.png", {"app": md.APP_NAME})
    assert list(tmp_path.iterdir()) == []


def test_bad_targets(engine: FrameSource, doc: Document, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="use .png, .jpg or .webp"):
        export_still(engine, doc, tmp_path / "a.tiff")
    with pytest.raises(UserError, match="does not exist"):
        export_still(engine, doc, tmp_path / "no" / "a.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UserError, match="it is a folder"):
        export_still(engine, doc, tmp_path / "dir.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    assert md.read_metadata(tmp_path / "plain.png") == {}
    with pytest.raises(UserError, match="not an image"):
        md.read_metadata(Path(__file__))
