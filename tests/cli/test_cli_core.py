"""The command line end to end on synthetic models: synthesize -> stats -> precompute -> edit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    assert main(["models", "synthesize", "--out", str(d), "--resolution", "32"]) == 0
    gen = d / "ffhq.pkl"  # the catalog's names: a synthesized folder is a models directory
    clip = d / "clip-vit-b32.safetensors"
    assert gen.is_file() and clip.is_file()
    base = ["--generator", str(gen), "--clip", str(clip)]
    assert main([*base, "directions", "stats", "--samples", "500"]) == 0
    fs3 = d / "fs3.npy"
    assert main([*base, "directions", "precompute", "--out", str(fs3), "--images", "1", "--batch", "128"]) == 0
    return {"dir": d, "gen": gen, "clip": clip, "fs3": fs3}


def _base(p: dict[str, Path]) -> list[str]:
    return ["--generator", str(p["gen"]), "--clip", str(p["clip"]), "--fs3", str(p["fs3"])]


def test_edit_writes_an_edited_image(prepared: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = prepared["dir"]
    fs3 = np.load(prepared["fs3"])
    assert fs3.shape[1] == 512 and np.allclose(np.linalg.norm(fs3, axis=1), 1, atol=1e-4)
    assert main([*_base(prepared), "generate", "--seed", "3", "-o", str(d / "plain.png"),
                 "--save-latent", str(d / "w.npy")]) == 0
    capsys.readouterr()
    assert main([*_base(prepared), "edit", str(d / "w.npy"), "--target", "a face with grey hair",
                 "--alpha", "8", "--beta", "0.01", "-o", str(d / "edited.png")]) == 0
    out = capsys.readouterr().out
    assert "changed" in out and "channels" in out
    changed = int(out.split("changed ")[1].split()[0])
    assert changed > 0
    plain = np.asarray(Image.open(d / "plain.png"))
    edited = np.asarray(Image.open(d / "edited.png"))
    assert plain.shape == edited.shape == (32, 32, 3)
    assert np.abs(plain.astype(int) - edited.astype(int)).max() > 0
    # --seed gives the same start as the saved latent; alpha 0 reproduces it exactly
    assert main([*_base(prepared), "edit", "--seed", "3", "--target", "grey hair", "--alpha", "0",
                 "--beta", "0.01", "-o", str(d / "zero.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(d / "zero.png")), plain)


def test_edit_with_beta_too_high(prepared: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main([*_base(prepared), "edit", "--seed", "1", "--target", "x", "--beta", "1.5", "-o",
               str(prepared["dir"] / "never.png")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "β too high: no channel passes; the largest usable β here is" in err
    assert "Traceback" not in err
    assert not (prepared["dir"] / "never.png").exists()


def _run_err(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_bad_inputs(prepared: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _base(prepared)
    rc, err = _run_err([*base, "edit", str(tmp_path / "missing.npy"), "--target", "x", "-o", str(tmp_path / "o.png")], capsys)
    assert rc == 1 and "latent file not found" in err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 7), np.float32))
    rc, err = _run_err([*base, "edit", str(bad), "--target", "x", "-o", str(tmp_path / "o.png")], capsys)
    assert rc == 1 and "has shape (3, 7)" in err
    cut = tmp_path / "cut.pkl"
    data = prepared["gen"].read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    rc, err = _run_err(["--generator", str(cut), "generate", "-o", str(tmp_path / "o.png")], capsys)
    assert rc == 1 and ("damaged" in err or "truncated" in err)
    rc, err = _run_err([*base, "generate", "-o", str(tmp_path / "no" / "such" / "dir" / "o.png")], capsys)
    assert rc == 1 and "does not exist" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if not os.access(ro, os.W_OK):  # root can write anywhere; the check above covers it then
            rc, err = _run_err([*base, "generate", "-o", str(ro / "o.png")], capsys)
            assert rc == 1 and "not writable" in err
    finally:
        os.chmod(ro, 0o700)
    rc, err = _run_err(["--generator", str(tmp_path / "nope.pkl"), "generate", "-o", str(tmp_path / "o.png")], capsys)
    assert rc == 1 and "not found" in err
    assert not list(tmp_path.glob("*.png"))


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["edit", "--alpha", "3"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    assert main(["directions", "stats", "--samples", "1"]) == 2


def test_edit_builds_a_project_layer_by_layer(prepared: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from styleclip_desktop.document import load_project

    d = prepared["dir"]
    proj = d / "built.scproj"
    assert main([*_base(prepared), "edit", "--seed", "5", "--target", "grey hair", "--alpha", "3",
                 "--beta", "0.01", "-o", str(proj)]) == 0
    assert main([*_base(prepared), "edit", str(proj), "--target", "a robot", "--alpha", "-4",
                 "--beta", "0.01", "-o", str(proj)]) == 0
    doc = load_project(proj)
    assert [(layer.params.target, layer.alpha) for layer in doc.layers] == [("grey hair", 3.0), ("a robot", -4.0)]
    assert doc.seed == 5 and doc.synthetic
    # The project renders through `export` exactly as `edit` renders it directly.
    assert main([*_base(prepared), "export", str(proj), "-o", str(d / "from_project.png")]) == 0
    proj1 = d / "one.scproj"
    assert main([*_base(prepared), "edit", "--seed", "5", "--target", "grey hair", "--alpha", "3",
                 "--beta", "0.01", "-o", str(proj1)]) == 0
    assert main([*_base(prepared), "edit", str(proj1), "--target", "a robot", "--alpha", "-4",
                 "--beta", "0.01", "-o", str(d / "direct.png")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(d / "from_project.png")),
                                  np.asarray(Image.open(d / "direct.png")))
    capsys.readouterr()


def test_edit_a_photo_pastes_back(prepared: dict[str, Path]) -> None:
    from styleclip_desktop.nets.e4e import write_synthetic_e4e

    d = prepared["dir"]
    e4e = write_synthetic_e4e(d / "e4e.pt", num_ws=8, seed=0)
    photo = (np.random.RandomState(1).rand(180, 150, 3) * 255).astype(np.uint8)
    Image.fromarray(photo).save(d / "me.jpg", quality=95)
    common = [*_base(prepared), "edit", str(d / "me.jpg"), "--landmarks", "55,80,95,80,60,125,90,125",
              "--e4e", str(e4e), "--target", "grey hair", "--alpha", "6", "--beta", "0.01"]
    assert main([*common, "-o", str(d / "me_edit.png")]) == 0
    assert np.asarray(Image.open(d / "me_edit.png")).shape == (180, 150, 3)
    assert main([*common, "--no-paste-back", "-o", str(d / "me_crop.png")]) == 0
    assert np.asarray(Image.open(d / "me_crop.png")).shape == (32, 32, 3)
    assert main([*common, "--no-paste-back", "--preview", "-o", str(d / "me_preview.png")]) == 0
    assert np.asarray(Image.open(d / "me_preview.png")).shape[0] < 32
    from styleclip_desktop.export.metadata import read_metadata

    meta = read_metadata(d / "me_edit.png")
    assert meta["ai_edited"] and meta["layers"][0]["target"] == "grey hair" and meta["source"] == "photo"
