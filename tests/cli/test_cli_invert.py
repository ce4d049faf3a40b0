"""`invert` end to end on synthetic models, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, synthetic_models: dict[str, Path]) -> dict[str, Path]:
    from styleclip_desktop.nets.e4e import write_synthetic_e4e
    from styleclip_desktop.weights.formats import load_generator

    d = tmp_path_factory.mktemp("invert")
    G = load_generator(synthetic_models["stylegan2-ada-pkl"])
    e4e = write_synthetic_e4e(d / "e4e.pt", num_ws=G.num_ws, seed=0)
    rng = np.random.RandomState(0)
    photo = (rng.rand(240, 200, 3) * 255).astype(np.uint8)
    Image.fromarray(photo).save(d / "photo.png")
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(d / "grey.jpg")
    return {"dir": d, "e4e": Path(e4e), "gen": synthetic_models["stylegan2-ada-pkl"]}


def _base(s: dict[str, Path]) -> list[str]:
    return ["--generator", str(s["gen"])]


def test_invert_with_landmarks_writes_latent_and_project(setup: dict[str, Path]) -> None:
    d = setup["dir"]
    lm = "80,110,130,110,88,170,124,170"
    assert main([*_base(setup), "invert", str(d / "photo.png"), "--landmarks", lm, "--e4e", str(setup["e4e"]),
                 "-o", str(d / "w.npy")]) == 0
    w = np.load(d / "w.npy")
    assert w.shape == (8, 512) and w.dtype == np.float32 and np.isfinite(w).all()
    assert main([*_base(setup), "invert", str(d / "photo.png"), "--landmarks", lm, "--e4e", str(setup["e4e"]),
                 "-o", str(d / "p.scproj")]) == 0
    from styleclip_desktop.document import load_project
    from styleclip_desktop.render.pipeline import ModelSet, Renderer
    from styleclip_desktop.weights.formats import load_generator

    doc = load_project(d / "p.scproj")
    np.testing.assert_array_equal(doc.latent, w)
    assert doc.source is not None and doc.alignment is not None
    r = Renderer(ModelSet(load_generator(setup["gen"])))
    assert r.render(doc).shape == (32, 32, 3)
    assert r.render(doc, paste_back=True).shape == (240, 200, 3)


def test_no_face_exits_1_with_the_landmarks_hint(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = setup["dir"]
    rc = main([*_base(setup), "invert", str(d / "grey.jpg"), "--e4e", str(setup["e4e"]), "-o", str(d / "x.npy")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "No face found" in err and "--landmarks" in err and "Traceback" not in err
    assert not (d / "x.npy").exists()


def test_invert_refusals(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = setup["dir"]
    bad = d / "truncated.jpg"
    bad.write_bytes((d / "grey.jpg").read_bytes()[:200])
    rc = main([*_base(setup), "invert", str(bad), "--landmarks", "1,1,2,1,1,3,2,3", "-o", str(d / "y.npy")])
    assert rc == 1 and "truncated" in capsys.readouterr().err
    rc = main([*_base(setup), "invert", str(d / "photo.png"), "--landmarks", "80,110,130,110,88,170,124,170",
               "-o", str(d / "y.npy"), "--models-dir", str(d / "empty")])
    assert rc == 1 and "e4e" in capsys.readouterr().err
    assert main([*_base(setup), "invert", str(d / "photo.png"), "-o", str(d / "y.txt")]) == 2


def test_invert_finds_a_real_face_offline(setup: dict[str, Path]) -> None:
    """No detector file and no landmarks: the bundled Haar fallback finds the face."""
    skimage_data = pytest.importorskip("skimage.data")
    from styleclip_desktop.faces.detect import haar_available

    if not haar_available():
        pytest.skip("this OpenCV build has no Haar cascades")
    d = setup["dir"]
    Image.fromarray(skimage_data.astronaut()).save(d / "astronaut.png")
    assert main([*_base(setup), "invert", str(d / "astronaut.png"), "--e4e", str(setup["e4e"]),
                 "-o", str(d / "astronaut.npy")]) == 0
    assert np.load(d / "astronaut.npy").shape == (8, 512)
