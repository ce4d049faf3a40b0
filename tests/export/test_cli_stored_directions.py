"""Projects render anywhere: `edit --fs3 X -o p.scproj` stores each global direction in
the project, and `export`/`animate` then need only the generator, unless the generator
differs from the one the directions were made with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main
from styleclip_desktop.document import GlobalDirectionParams, load_project, save_project

GREY, SMILE = "a face with grey hair", "smiling"


@pytest.fixture(scope="module")
def built(synthetic_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-layer project made through the CLI with fs3 X on generator A; the same
    project without its stored directions (as older versions saved it); and generator B:
    the same weights in another file, so another identity."""
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.weights.formats import load_generator

    d = tmp_path_factory.mktemp("stored-directions")
    a, b = synthetic_models["stylegan2-ada-pkl"], synthetic_models["stylegan2-rosinality-pt"]
    for gen in (a, b):
        assert main(["--generator", str(gen), "directions", "stats", "--samples", "500"]) == 0
    G = load_generator(a)
    rows = len(gd.conv_channel_index(G))
    for name, seed in (("X", 0), ("Y", 1)):
        fs3 = np.random.RandomState(seed).randn(rows, 512).astype(np.float32)
        np.save(d / f"fs3{name}.npy", fs3 / np.linalg.norm(fs3, axis=1, keepdims=True))
    clip = str(synthetic_models["clip"])
    full_a = ["--generator", str(a), "--clip", clip, "--fs3", str(d / "fs3X.npy")]
    project = d / "portrait.scproj"
    assert main([*full_a, "edit", "--seed", "3", "--target", GREY, "--beta", "0.01", "--alpha", "6",
                 "-o", str(project)]) == 0
    assert main([*full_a, "edit", str(project), "--target", SMILE, "--beta", "0.01", "--alpha", "-4",
                 "-o", str(project)]) == 0
    old = load_project(project)
    for layer in old.layers:
        assert isinstance(layer.params, GlobalDirectionParams)
        layer.set("params", layer.params.with_changes(ds=None, ds_source=None))
    save_project(old, d / "old.scproj")
    return {"dir": d, "a": a, "b": b, "clip": clip, "full_a": full_a, "project": project, "old": d / "old.scproj",
            "sha_a": str(G.source_sha256), "sha_b": str(load_generator(b).source_sha256)}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def frames(path: Path) -> list[np.ndarray]:
    out = []
    with Image.open(path) as im:
        for i in range(int(getattr(im, "n_frames", 1))):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
    return out


def test_the_project_stores_each_direction_with_what_made_it(built: dict[str, Any]) -> None:
    doc = load_project(built["project"])
    assert [layer.name for layer in doc.layers] == [GREY, SMILE]
    for layer in doc.layers:
        p = layer.params
        assert isinstance(p, GlobalDirectionParams) and p.stored_direction() is not None
        assert p.ds_source is not None and p.ds_source.models["generator"] == built["sha_a"]
        assert set(p.ds_source.models) == {"generator", "fs3", "stats", "clip"}


def test_export_and_animate_need_only_the_generator(built: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from styleclip_desktop.render import session

    ref = tmp_path / "ref.png"
    assert main([*built["full_a"], "export", str(built["old"]), "-o", str(ref)]) == 0  # resolved from fs3 X
    only = ["--generator", str(built["a"]), "--clip", str(tmp_path / "no-such-clip.safetensors")]
    # A project without stored directions still needs fs3, as it always did.
    assert main([*only, "export", str(built["old"]), "-o", str(tmp_path / "never.png")]) == 1
    assert "fs3" in capsys.readouterr().err and not (tmp_path / "never.png").exists()

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("CLIP, fs3 or the style statistics were loaded")

    monkeypatch.setattr(session, "load_directions", never)
    monkeypatch.setattr(session, "load_clip", never)
    out = tmp_path / "out.png"
    assert main([*only, "export", str(built["project"]), "-o", str(out)]) == 0
    assert "notice" not in capsys.readouterr().err
    assert np.array_equal(pixels(out), pixels(ref))
    assert main([*only, "animate", str(built["project"]), "-o", str(tmp_path / "a.webp"), "--fps", "12",
                 "--seconds", "1", "--size", "0", "--morph", "--lossless"]) == 0
    assert "12 frames at 12 fps" in capsys.readouterr().out
    sweep = frames(tmp_path / "a.webp")
    assert len(sweep) == 12 and np.array_equal(sweep[-1], pixels(ref)) and not np.array_equal(sweep[0], sweep[-1])


def test_another_generator_recomputes_with_a_notice(built: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    full_b = ["--generator", str(built["b"]), "--clip", built["clip"], "--fs3", str(built["dir"] / "fs3Y.npy")]
    want = tmp_path / "want.png"
    assert main([*full_b, "export", str(built["old"]), "-o", str(want)]) == 0  # resolved from fs3 Y
    capsys.readouterr()
    got = tmp_path / "got.png"
    assert main([*full_b, "export", str(built["project"]), "-o", str(got)]) == 0
    err = capsys.readouterr().err
    a, b = built["sha_a"][:6], built["sha_b"][:6]
    for name in (GREY, SMILE):
        assert (f"notice: layer '{name}' was made with generator {a}…, this is {b}…; "
                "recomputing its direction from the current fs3") in err.splitlines()
    assert np.array_equal(pixels(got), pixels(want))
    mine = tmp_path / "mine.png"
    assert main([*built["full_a"], "export", str(built["project"]), "-o", str(mine)]) == 0
    assert not np.array_equal(pixels(mine), pixels(got))  # the stored ds (from fs3 X) was not used

    # Without this generator's fs3 there is nothing to recompute from: one clear line.
    no_fs3 = ["--generator", str(built["b"]), "--clip", built["clip"]]
    for command in ("export", "animate"):
        target = tmp_path / f"never.{'png' if command == 'export' else 'gif'}"
        assert main([*no_fs3, command, str(built["project"]), "-o", str(target)]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert err.startswith(f"styleclip-desktop: error: layer '{GREY}' was made with generator {a}…, this is {b}…, "
                              "and its direction cannot be recomputed here: ")
        assert "--fs3" in err and not target.exists()

    # Editing the project with generator B re-resolves every layer for B, so the saved
    # project then renders on B alone.
    moved = tmp_path / "moved.scproj"
    assert main([*full_b, "edit", str(built["project"]), "--target", "older", "--beta", "0.01", "-o", str(moved)]) == 0
    assert sum("recomputing its direction" in line for line in capsys.readouterr().err.splitlines()) == 2
    for layer in load_project(moved).layers:
        assert isinstance(layer.params, GlobalDirectionParams) and layer.params.ds_source is not None
        assert layer.params.ds_source.models["generator"] == built["sha_b"]
    assert main([*no_fs3, "export", str(moved), "-o", str(tmp_path / "moved.png")]) == 0
    assert "recomputing" not in capsys.readouterr().err


def test_a_named_fs3_is_checked_against_the_one_the_directions_were_made_with(
        built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, a = built["dir"], str(built["a"])
    missing_clip = ["--clip", str(tmp_path / "no-such-clip.safetensors")]
    same = tmp_path / "same.png"
    # The fs3 they were made with: still no CLIP needed.
    assert main(["--generator", a, *missing_clip, "--fs3", str(d / "fs3X.npy"), "export", str(built["project"]),
                 "-o", str(same)]) == 0
    assert "notice" not in capsys.readouterr().err
    # Another fs3: the layers are recomputed with it, which needs CLIP.
    want = tmp_path / "want.png"
    with_y = ["--generator", a, "--clip", built["clip"], "--fs3", str(d / "fs3Y.npy")]
    assert main([*with_y, "export", str(built["old"]), "-o", str(want)]) == 0
    capsys.readouterr()
    got = tmp_path / "got.png"
    assert main([*with_y, "export", str(built["project"]), "-o", str(got)]) == 0
    err = capsys.readouterr().err
    assert f"notice: layer '{GREY}' was made with fs3 " in err and "recomputing its direction" in err
    assert np.array_equal(pixels(got), pixels(want)) and not np.array_equal(pixels(got), pixels(same))
    assert main(["--generator", a, *missing_clip, "--fs3", str(d / "fs3Y.npy"), "export", str(built["project"]),
                 "-o", str(tmp_path / "never.png")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"layer '{GREY}' was made with fs3 " in err and "cannot be recomputed here" in err
