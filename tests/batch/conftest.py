"""A models folder (the tiny demo models) and a folder of ten mixed photos for batch tests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from styleclip_desktop.render.demo_models import write_demo_models

    folder = tmp_path_factory.mktemp("batch-models")
    write_demo_models(folder, resolution=32, seed=0)
    return folder


def _astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    from styleclip_desktop.faces.detect import haar_available

    if not haar_available():
        pytest.skip("OpenCV's Haar cascades are not installed")
    return np.asarray(skimage_data.astronaut())


# What each photo of `mixed_photos` becomes: "done" with how many faces at least, or "failed"
# with words its reason must contain.
EXPECTED = {
    "astronaut.jpg": ("done", 1),
    "two_faces.png": ("done", 2),
    "rotated.jpg": ("done", 1),
    "deep16.png": ("done", 1),
    "small.webp": ("done", 1),
    "no_face.jpg": ("failed", "no face"),
    "corrupt.jpg": ("failed", "truncated"),
    "empty.jpg": ("failed", "empty"),
    "notes.png": ("failed", "not an image"),
    "tiny.png": ("failed", "too small"),
}


@pytest.fixture(scope="session")
def expected() -> dict[str, tuple[str, object]]:
    return dict(EXPECTED)


@pytest.fixture(scope="session")
def mixed_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten files as a shoot's folder might hold them: the real public-domain portrait, two
    faces in one photo, a photo with no face, a truncated file, an EXIF-rotated one, a
    16-bit PNG, a WebP, an empty file, a text file with an image's name, a thumbnail."""
    face = _astronaut()
    d = tmp_path_factory.mktemp("shoot")
    Image.fromarray(face).save(d / "astronaut.jpg", quality=92)
    Image.fromarray(np.concatenate([face, face[:, ::-1]], 1)).save(d / "two_faces.png")
    rng = np.random.RandomState(0)
    Image.fromarray(np.clip(rng.normal(128, 10, (240, 320, 3)), 0, 255).astype(np.uint8)).save(d / "no_face.jpg")
    (d / "corrupt.jpg").write_bytes((d / "astronaut.jpg").read_bytes()[:4000])
    # Stored on its side; orientation 6 says "turn me 90 degrees clockwise to view".
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(face, 1)))
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(d / "rotated.jpg", quality=92, exif=exif.tobytes())
    grey16 = (face.astype(np.float64) @ [0.299, 0.587, 0.114] * 257).astype(np.uint16)
    Image.fromarray(grey16).save(d / "deep16.png")
    assert Image.open(d / "deep16.png").mode in ("I;16", "I")
    Image.fromarray(face).resize((384, 384)).save(d / "small.webp", quality=90)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.png").write_text("not a photo, only text with a photo's name\n")
    Image.fromarray(face).resize((48, 48)).save(d / "tiny.png")
    assert len(list(d.iterdir())) == len(EXPECTED)
    return d


@pytest.fixture(scope="session")
def look_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe of two layers: grey hair everywhere, the afro mapper in the hair region."""
    d = tmp_path_factory.mktemp("recipe")
    path = d / "look.toml"
    path.write_text('''# a look for a whole shoot
[[layer]]
method = "global"
target = "a face with grey hair"
alpha = 3
beta = 0.01

[[layer]]
method = "mapper"
mapper = "afro"
name = "curls"
mask = "hair"
mask_feather = 4

[output]
still = "png"
''')
    return path


@pytest.fixture(scope="session")
def first_run(demo_models: Path, mixed_photos: Path, look_toml: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The look over the whole folder, every face, on one worker in this process."""
    from styleclip_desktop.cli import main

    out = tmp_path_factory.mktemp("batch-out") / "out"
    t0 = time.perf_counter()
    rc = main(["--models-dir", str(demo_models), "--quiet", "batch", str(look_toml), str(mixed_photos), "-o", str(out),
               "--faces", "all"])
    return {"rc": rc, "out": out, "seconds": time.perf_counter() - t0}
