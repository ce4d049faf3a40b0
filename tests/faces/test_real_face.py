"""A real portrait end to end offline: the Haar fallback finds the face, alignment
straightens it, and the photo survives a round trip through paste-back.

The portrait is the public-domain NASA astronaut photo that scikit-image ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")

from styleclip_desktop.faces.align import align_face  # noqa: E402
from styleclip_desktop.faces.detect import detect_faces, haar_available  # noqa: E402
from styleclip_desktop.faces.pasteback import face_mask, paste_back  # noqa: E402
from styleclip_desktop.render.photo_import import find_faces  # noqa: E402

pytestmark = pytest.mark.skipif(not haar_available(), reason="this OpenCV build has no Haar cascades")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.asarray(skimage_data.astronaut(), np.uint8)


def test_offline_fallback_finds_the_face(portrait: np.ndarray) -> None:
    faces = detect_faces(portrait, None, photo_name="astronaut.png")
    assert faces, "the bundled Haar cascades should find the astronaut's face"
    face = faces[0]
    assert face.approximate
    x, y, w, h = face.box
    # Her face sits in the upper middle of the 512x512 photo, about 100 px wide.
    assert 120 < x + w / 2 < 260 and 50 < y + h / 2 < 200 and 60 < w < 220
    (rx, ry), (lx, ly) = face.eyes
    assert rx < lx, "the person's right eye is on the image's left"
    assert abs(ry - ly) < 0.15 * w
    assert 0.2 * w < lx - rx < 0.7 * w
    assert face.mouth[:, 1].min() > max(ry, ly)


def test_alignment_centres_the_eyes(portrait: np.ndarray) -> None:
    face = detect_faces(portrait, None)[0]
    aligned = align_face(portrait, face.landmarks, 256)
    eyes = aligned.alignment.to_crop(face.eyes)
    mid = eyes.mean(0) / 256
    assert abs(mid[0] - 0.5) < 0.05 and 0.3 < mid[1] < 0.55
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0  # the eye line is level after alignment
    back = paste_back(portrait, aligned.image, aligned.alignment)
    inside = aligned.alignment.to_photo(np.array([[128.0, 140.0]]))[0].round().astype(int)
    patch = (slice(inside[1] - 10, inside[1] + 10), slice(inside[0] - 10, inside[0] + 10))
    assert np.abs(back[patch].astype(int) - portrait[patch].astype(int)).mean() < 6
    assert face_mask(256)[0, 0] == 0.0


def test_photo_import_reads_a_rotated_jpeg(portrait: np.ndarray, tmp_path: Path) -> None:
    """An EXIF-rotated camera JPEG is turned upright before detection."""
    rotated = Image.fromarray(portrait).transpose(Image.Transpose.ROTATE_90)  # stored on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated.save(tmp_path / "camera.jpg", quality=95, exif=exif)
    found = find_faces(tmp_path / "camera.jpg", None)
    assert found.pixels.shape == portrait.shape
    assert found.count >= 1
