"""`animate`, `export` and `info` end to end on synthetic models, and projects built one
layer at a time from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from styleclip_desktop.cli import main
from styleclip_desktop.document import GlobalDirectionParams, OptimizationParams, load_project
from styleclip_desktop.errors import UserError
from styleclip_desktop.export.metadata import read_metadata
from styleclip_desktop.export.projects_cli import add_layer_to_project


@pytest.fixture(scope="module")
def prepared(synthetic_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Models ready for global directions, and a project of two prompt layers made by
    `add_layer_to_project`, as `edit ... -o PROJECT.scproj` does."""
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.weights.formats import load_generator

    d = tmp_path_factory.mktemp("cli-export")
    gen, clip = synthetic_models["stylegan2-ada-pkl"], synthetic_models["clip"]
    assert main(["--generator", str(gen), "directions", "stats", "--samples", "500"]) == 0
    G = load_generator(gen)
    # A random unit relevance matrix stands in for a precomputed one: export only needs
    # some channels to pass beta.
    fs3 = np.random.RandomState(0).randn(len(gd.conv_channel_index(G)), 512).astype(np.float32)
    np.save(d / "fs3.npy", fs3 / np.linalg.norm(fs3, axis=1, keepdims=True))
    project = d / "portrait.scproj"
    identities = {"generator": str(G.source_sha256)}
    add_layer_to_project(3, GlobalDirectionParams("a face with grey hair", beta=0.01), project, alpha=6.0,
                         generator=G, models=identities, synthetic=True)
    add_layer_to_project(project, GlobalDirectionParams("smiling", beta=0.01), project, alpha=-4.0)
    base = ["--generator", str(gen), "--clip", str(clip), "--fs3", str(d / "fs3.npy")]
    return {"dir": d, "base": base, "project": project, "G": G}


def test_project_built_layer_by_layer(prepared: dict[str, Any], tmp_path: Path) -> None:
    doc = load_project(prepared["project"])
    assert [(layer.name, layer.alpha) for layer in doc.layers] == [("a face with grey hair", 6.0), ("smiling", -4.0)]
    assert doc.seed == 3 and doc.synthetic and doc.models["generator"] == str(prepared["G"].source_sha256)
    latent = tmp_path / "w.npy"
    np.save(latent, doc.latent)
    from_npy = add_layer_to_project(latent, OptimizationParams("older"), tmp_path / "n.scproj", generator=prepared["G"])
    assert np.array_equal(load_project(tmp_path / "n.scproj").latent, doc.latent) and len(from_npy.layers) == 1
    with pytest.raises(UserError, match="must be saved as .scproj"):
        add_layer_to_project(latent, OptimizationParams("older"), tmp_path / "n.png")
    with pytest.raises(UserError, match="project not found"):
        add_layer_to_project(tmp_path / "gone.scproj", OptimizationParams("older"), tmp_path / "n.scproj")
    assert len(load_project(tmp_path / "n.scproj").layers) == 1  # a failed add leaves the project alone


def test_export_and_info_round_trip(prepared: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d, base = prepared["dir"], prepared["base"]
    for ext in ("png", "jpg", "webp"):
        out = d / f"still.{ext}"
        assert main([*base, "export", str(prepared["project"]), "-o", str(out), "--size", "48"]) == 0
        capsys.readouterr()
        assert main(["info", str(out), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown == read_metadata(out)
        assert [(x["target"], x["alpha"], x["beta"]) for x in shown["layers"]] == [
            ("a face with grey hair", 6.0, 0.01), ("smiling", -4.0, 0.01)]
        assert shown["synthetic"] is True and set(shown["models"]) == {"generator", "clip"}
        assert shown["output"] == {"crop": True, "width": 48, "height": 48}
        assert main(["info", str(out)]) == 0
        text = capsys.readouterr().out
        assert text.startswith("AI-generated with StyleCLIP Desktop") and '"smiling" α -4' in text


def test_animate_writes_the_morph(prepared: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = prepared["dir"] / "morph.mp4"
    assert main([*prepared["base"], "animate", str(prepared["project"]), "-o", str(out), "--fps", "10",
                 "--seconds", "0.5", "--size", "32", "--morph", "--crf", "23"]) == 0
    assert "5 frames at 10 fps, 32x32" in capsys.readouterr().out
    gen = imageio_ffmpeg.read_frames(str(out))
    meta = next(gen)
    assert meta["fps"] == 10 and tuple(meta["size"]) == (32, 32) and sum(1 for _ in gen) == 5
    assert main(["info", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["animation"] == {"fps": 10.0, "frames": 5, "morph": True}
    assert [x["target"] for x in shown["layers"]] == ["a face with grey hair", "smiling"]


def _frames(path: Path) -> list[np.ndarray]:
    from PIL import Image

    out = []
    with Image.open(path) as im:
        for i in range(int(getattr(im, "n_frames", 1))):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
    return out


def test_animate_writes_fps_times_seconds_frames_ending_on_the_edit(prepared: dict[str, Any], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    base, project = prepared["base"], str(prepared["project"])
    still = tmp_path / "still.png"
    assert main([*base, "export", project, "-o", str(still)]) == 0
    with Image.open(still) as im:
        end = np.asarray(im.convert("RGB"))
    sweep = ["--fps", "12", "--seconds", "1", "--size", "0", "--morph"]
    assert main([*base, "animate", project, "-o", str(tmp_path / "a.gif"), *sweep]) == 0
    assert "12 frames at 12 fps" in capsys.readouterr().out
    gif = _frames(tmp_path / "a.gif")
    assert len(gif) == 12  # 1 s at 12 fps, not 13
    # A GIF's 256-colour palette costs a few levels; the edit costs far more.
    error = np.abs(gif[-1].astype(int) - end.astype(int)).mean()
    assert error < 4 < np.abs(gif[0].astype(int) - end.astype(int)).mean()
    assert main([*base, "animate", project, "-o", str(tmp_path / "a.webp"), *sweep, "--lossless"]) == 0
    webp = _frames(tmp_path / "a.webp")
    assert len(webp) == 12 and np.array_equal(webp[-1], end)  # the last frame is exactly the still
    assert main([*base, "animate", project, "-o", str(tmp_path / "b.mp4"), "--fps", "60", "--seconds", "5",
                 "--size", "8"]) == 0
    assert "300 frames at 60 fps" in capsys.readouterr().out  # not 301
    assert sum(1 for _ in imageio_ffmpeg.read_frames(str(tmp_path / "b.mp4"))) - 1 == 300


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_unwritable_targets_fail_cleanly(prepared: dict[str, Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base, project = prepared["base"], str(prepared["project"])
    err = _one_line_error([*base, "animate", project, "-o", str(tmp_path / "missing" / "a.mp4")], capsys)
    assert "folder" in err and "does not exist" in err
    (tmp_path / "taken.png").mkdir()
    err = _one_line_error([*base, "export", project, "-o", str(tmp_path / "taken.png")], capsys)
    assert "it is a folder" in err
    err = _one_line_error([*base, "animate", project, "-o", str(tmp_path / "a.avi")], capsys)
    assert "use .mp4, .gif or .webp" in err
    err = _one_line_error([*base, "animate", str(tmp_path / "none.scproj"), "-o", str(tmp_path / "a.gif")], capsys)
    assert "project not found" in err
    err = _one_line_error(["info", str(prepared["project"])], capsys)
    assert "not an image" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]
