"""`edit --mask`: confining an edit to a region or a mask image, on synthetic models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main
from styleclip_desktop.document import load_project


@pytest.fixture(scope="module")
def masks(env: dict[str, Path]) -> dict[str, Path]:
    """The shared CLI models and face, plus two mask images of the aligned face."""
    d = env["dir"]
    corner = np.zeros((256, 256), np.uint8)
    corner[:128, :128] = 255
    Image.fromarray(corner).save(d / "corner.png")
    Image.fromarray(np.zeros((100, 60), np.uint8)).save(d / "tall.png")
    return {**env, "corner": d / "corner.png", "tall": d / "tall.png"}


def _img(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def _edit(env: dict[str, Path], *extra: str) -> list[str]:
    return ["--generator", str(env["gen"]), "--clip", str(env["clip"]), "--models-dir", str(env["models"]),
            "edit", str(env["w"]), "--method", "mapper", "--mapper", "afro", "--alpha", "3", *extra]


def test_a_mask_image_confines_the_edit(masks: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = masks["dir"]
    assert main(_edit(masks, "-o", str(d / "all.png"))) == 0
    assert main(_edit(masks, "--mask", str(masks["corner"]), "-o", str(d / "corner-out.png"))) == 0
    assert main(_edit(masks, "--mask", str(masks["corner"]), "--invert-mask", "-o", str(d / "inverse.png"))) == 0
    plain, edited = _img(masks["plain"]), _img(d / "all.png")
    masked, inverse = _img(d / "corner-out.png"), _img(d / "inverse.png")
    assert np.abs(edited - plain).max() > 10
    far, inside = (slice(24, None), slice(24, None)), (slice(0, 6), slice(0, 6))
    assert np.abs(masked[far] - plain[far]).max() <= 1  # far from the mask: unedited
    assert np.abs(masked[inside] - edited[inside]).mean() < np.abs(plain[inside] - edited[inside]).mean()
    assert np.abs(inverse[far] - edited[far]).mean() < np.abs(plain[far] - edited[far]).mean()


def test_a_region_mask_is_saved_with_the_layer(masks: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    proj = masks["dir"] / "hair.scproj"
    assert main(_edit(masks, "--mask", "hair", "--mask-start", "16", "-o", str(proj))) == 0
    layer = load_project(proj).layers[0]
    assert layer.mask is not None and layer.mask.start_res == 16 and layer.mask.feather == 6.0
    assert layer.mask.extent == "some"


@pytest.mark.parametrize(("extra", "message"), [
    (["--mask", "elbows"], "neither a region"),
    (["--mask", "TALL"], "must be square"),
    (["--mask", "hair", "--mask-start", "48"], "--mask-start must be one of"),
    (["--mask-feather", "3"], "need --mask"),
    (["--mask", "hair", "--mask-feather", "-2"], "--mask-feather must be between"),
])
def test_bad_mask_options_fail_in_one_line(masks: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                           extra: list[str], message: str) -> None:
    extra = [str(masks["tall"]) if e == "TALL" else e for e in extra]
    rc = main(_edit(masks, *extra, "-o", str(masks["dir"] / "bad.png")))
    err = capsys.readouterr().err
    assert rc != 0 and message in err and "Traceback" not in err
    assert not (masks["dir"] / "bad.png").exists()
