"""The optimization and mapper methods through the command line, on synthetic models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main
from styleclip_desktop.nets.mapper import load_mapper


def _base(env: dict[str, Path]) -> list[str]:
    return ["--generator", str(env["gen"]), "--clip", str(env["clip"]), "--models-dir", str(env["models"])]


def _img(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_edit_optimize_changes_the_image(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = env["dir"] / "optimized.png"
    rc, stdout, err = _run([*_base(env), "edit", str(env["w"]), "--method", "optimize", "--target",
                            "a face with purple hair", "--mode", "edit-identity", "--steps", "8", "--lambda-l2", "0",
                            "-o", str(out)], capsys)
    assert rc == 0, err
    assert "optimized 8 steps" in stdout and "identity term is skipped" in err  # no ArcFace installed
    assert _img(out).shape == _img(env["plain"]).shape == (32, 32, 3)
    assert np.abs(_img(out) - _img(env["plain"])).max() > 0
    # alpha 0 keeps the start; with ArcFace the identity term runs
    zero = env["dir"] / "zero.png"
    rc, _, err = _run([*_base(env), "edit", "--seed", "3", "--method", "optimize", "--target", "purple hair",
                       "--steps", "2", "--alpha", "0", "--arcface", str(env["arcface"]), "--lambda-id", "0.5",
                       "-o", str(zero)], capsys)
    assert rc == 0 and "identity term is skipped" not in err
    assert np.array_equal(_img(zero), _img(env["plain"]))


def test_edit_with_a_catalog_mapper(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = env["dir"] / "afro.png"
    rc, stdout, err = _run([*_base(env), "edit", str(env["w"]), "--method", "mapper", "--mapper", "afro",
                            "--alpha", "2", "-o", str(out)], capsys)
    assert rc == 0, err
    assert "mapper afro" in stdout
    assert np.abs(_img(out) - _img(env["plain"])).max() > 0
    # Every sub-mapper off, or the catalog id spelled in full with alpha 0: the unedited face.
    for extra in (["--mapper", "afro", "--no-coarse", "--no-medium", "--no-fine"],
                  ["--mapper", "mapper-afro", "--alpha", "0"]):
        same = env["dir"] / "same.png"
        rc, _, err = _run([*_base(env), "edit", "--seed", "3", "--method", "mapper", *extra, "-o", str(same)], capsys)
        assert rc == 0, err
        assert np.array_equal(_img(same), _img(env["plain"]))


def test_generate_from_a_prompt(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, latent = env["dir"] / "prompted.png", env["dir"] / "prompted.npy"
    rc, stdout, err = _run([*_base(env), "generate", "--prompt", "an old man with a beard", "--seed", "3",
                            "--steps", "6", "-o", str(out), "--save-latent", str(latent)], capsys)
    assert rc == 0, err
    assert "CLIP loss" in stdout
    assert _img(out).shape == (32, 32, 3) and np.abs(_img(out) - _img(env["plain"])).max() > 0
    assert np.load(latent).shape == (8, 512)
    from styleclip_desktop.export.metadata import read_metadata

    meta = read_metadata(out)
    assert meta["prompt"] == "an old man with a beard" and meta["source"] == "seed"


def test_mapper_train_then_edit_with_it(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = env["dir"] / "purple.pt"
    train = [*_base(env), "mapper", "train", "--prompt", "a face with purple hair", "--out", str(ckpt),
             "--samples", "6", "--checkpoint-every", "2"]
    rc, stdout, err = _run([*train, "--steps", "3"], capsys)
    assert rc == 0, err
    assert "trained 3 steps" in stdout and ckpt.is_file()
    assert load_mapper(ckpt).description == "a face with purple hair"
    rc, _, err = _run([*train, "--steps", "4"], capsys)
    assert rc == 1 and "already exists" in err and "--resume" in err
    rc, stdout, err = _run([*train, "--steps", "4", "--resume"], capsys)
    assert rc == 0 and "trained 4 steps" in stdout, err
    out = env["dir"] / "trained.png"
    rc, stdout, err = _run([*_base(env), "edit", "--seed", "3", "--method", "mapper", "--mapper", str(ckpt),
                            "-o", str(out)], capsys)
    assert rc == 0, err
    assert np.abs(_img(out) - _img(env["plain"])).max() > 0


def test_bad_inputs(env: dict[str, Path], synthetic_models: dict[str, Path], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.png"
    edit = [*_base(env), "edit", "--seed", "1", "-o", str(out)]
    cases = [
        (["--method", "mapper", "--mapper", str(tmp_path / "missing.pt")], "mapper file not found"),
        (["--method", "mapper", "--mapper", str(synthetic_models["stylegan2-rosinality-pt"])],
         "is not a StyleCLIP mapper"),
        (["--method", "mapper", "--mapper", "bobcut"], "models download mapper-bobcut"),
        (["--method", "mapper", "--mapper", "no_such_style"], "no mapper file or catalog mapper named"),
        (["--method", "optimize", "--target", "x", "--mode", "edit-identity", "--arcface", str(tmp_path / "nope.pth")],
         "not found"),
    ]
    for extra, message in cases:
        rc, _, err = _run([*edit, *extra], capsys)
        assert rc == 1 and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1, err
    rc, _, err = _run([*edit, "--method", "optimize"], capsys)
    assert rc == 2 and "--target is required" in err
    rc, _, err = _run([*edit, "--method", "mapper"], capsys)
    assert rc == 2 and "--mapper" in err
    rc, _, err = _run([*_base(env), "mapper", "train", "--prompt", "x", "--out", str(tmp_path / "m.pt"),
                       "--latents", str(tmp_path / "none.npy"), "--steps", "1"], capsys)
    assert rc == 1 and "latent file not found" in err
    assert not out.exists() and not (tmp_path / "m.pt").exists()
