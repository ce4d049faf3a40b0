"""`styleclip-desktop batch` on one machine: outputs, manifest, resume, stopping, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.batch.manifest import read_records
from styleclip_desktop.cli import main


def _batch(models: Path, *args: str) -> int:
    return main(["--models-dir", str(models), "--quiet", "batch", *args])


def test_a_mixed_folder_gives_the_right_outputs_and_manifest(first_run: dict[str, object],
                                                             expected: dict[str, tuple[str, object]]) -> None:
    out = Path(str(first_run["out"]))
    assert first_run["rc"] == 1  # some photos failed, and the exit status says so
    records = read_records(out)
    by_name = {Path(r["input"]).name: r for r in records}
    assert sorted(by_name) == sorted(expected) and len(records) == len(expected)
    for name, (status, detail) in expected.items():
        r = by_name[name]
        assert r["status"] == status, (name, r.get("reason"))
        assert r["sha256"] == "" or len(r["sha256"]) == 64
        assert r["timings"]["total"] >= 0
        if status == "failed":
            assert str(detail) in r["reason"].lower() and "\n" not in r["reason"] and "Traceback" not in r["reason"]
            assert "faces" not in r
            continue
        assert len(r["faces"]) >= int(detail) and r["faces_found"] == len(r["faces"])
        assert set(r["models"]) >= {"generator", "e4e"} and r["recipe"] == "look.toml"
        for n, face in enumerate(r["faces"], 1):
            assert face["face"] == n and face["outputs"] == [f"{Path(name).stem}_face{n}.png"]
            img = Image.open(out / face["outputs"][0])
            assert img.mode == "RGB"
    # The whole photo comes back, upright: the EXIF-rotated one as it is viewed.
    face = np.asarray(Image.open(out / "astronaut_face1.png"))
    assert face.shape == (512, 512, 3)
    assert np.asarray(Image.open(out / "rotated_face1.png")).shape == (512, 512, 3)
    written = sorted(p.name for p in out.iterdir())
    expected_files = sorted(o for r in records if r["status"] == "done" for f in r["faces"] for o in f["outputs"])
    assert written == sorted([*expected_files, "manifest.jsonl", ".batch.lock"]) or \
        written == sorted([*expected_files, "manifest.jsonl"])


def test_outputs_carry_the_edit_record(first_run: dict[str, object]) -> None:
    from styleclip_desktop.export.metadata import read_metadata

    meta = read_metadata(Path(str(first_run["out"])) / "astronaut_face1.png")
    assert meta["ai_edited"] and meta["source"] == "photo"
    layers = meta["layers"]
    assert [(layer["kind"], layer["name"]) for layer in layers] == [("global_direction", "a face with grey hair"),
                                                                     ("mapper", "curls")]
    # The hair region was found on this face: a mask that covers part of it, not all.
    assert 0.02 < layers[1]["mask"]["coverage"] < 0.9


def test_the_edit_changed_the_face(first_run: dict[str, object], demo_models: Path, mixed_photos: Path,
                                   tmp_path: Path) -> None:
    """The same photo through an empty-effect recipe (alpha 0) differs from the edited one."""
    recipe = tmp_path / "nothing.toml"
    recipe.write_text('[[layer]]\nmethod = "global"\ntarget = "a face with grey hair"\nalpha = 0\nbeta = 0.01\n')
    out = tmp_path / "plain"
    assert _batch(demo_models, str(recipe), str(mixed_photos / "astronaut.jpg"), "-o", str(out)) == 0
    plain = np.asarray(Image.open(out / "astronaut.png"), np.int16)
    edited = np.asarray(Image.open(Path(str(first_run["out"])) / "astronaut_face1.png"), np.int16)
    assert plain.shape == edited.shape and np.abs(plain - edited).max() > 10


def test_running_again_resumes_without_redoing_anything(first_run: dict[str, object], demo_models: Path,
                                                        mixed_photos: Path, look_toml: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = Path(str(first_run["out"]))
    before = (out / "manifest.jsonl").read_bytes()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    capsys.readouterr()
    assert _batch(demo_models, str(look_toml), str(mixed_photos), "-o", str(out), "--faces", "all") == 1
    assert "10 finished before, 5 of them failed" in capsys.readouterr().out
    assert (out / "manifest.jsonl").read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes
    # An output deleted since is made again, and only its photo is redone.
    (out / "small_face1.png").unlink()
    assert _batch(demo_models, str(look_toml), str(mixed_photos), "-o", str(out), "--faces", "all") == 1
    added = read_records(out)[len(before.splitlines()):]
    assert [Path(r["input"]).name for r in added] == ["small.webp"] and (out / "small_face1.png").is_file()
    # Another recipe is another batch: the photos are done again for it.
    assert _batch(demo_models, str(look_toml), str(mixed_photos / "astronaut.jpg"), "-o", str(out),
                  "--faces", "all", "--name", "{stem}_v2") == 0
    assert read_records(out)[-1]["faces"][0]["outputs"] == ["astronaut_v2_face1.png"]


def test_stopping_leaves_a_manifest_that_resumes(demo_models: Path, mixed_photos: Path, look_toml: Path,
                                                 tmp_path: Path) -> None:
    from styleclip_desktop.batch.recipe import load_recipe
    from styleclip_desktop.batch.runner import InProcess, prepare, run_batch
    from styleclip_desktop.batch.worker import WorkerConfig

    recipe = load_recipe(look_toml)
    items = prepare(recipe, [mixed_photos])
    out = tmp_path / "out"
    config = WorkerConfig(models_dir=str(demo_models), outdir=str(out))
    seen: list[str] = []
    summary = run_batch(recipe, items, out, lambda: InProcess(config, recipe), stop=lambda: len(seen) >= 3,
                        on_record=lambda r: seen.append(r["key"]))
    assert summary.stopped and summary.done + summary.failed == 3 and summary.remaining == 7
    assert [r["key"] for r in read_records(out)] == seen
    summary = run_batch(recipe, items, out, lambda: InProcess(config, recipe))
    assert not summary.stopped and summary.skipped == 3 and summary.done + summary.failed == 7
    keys = [r["key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == 10  # every photo once: nothing redone, nothing lost


def test_ctrl_c_stops_after_the_current_photo(demo_models: Path, mixed_photos: Path, look_toml: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    photos = [str(mixed_photos / n) for n in ("astronaut.jpg", "small.webp", "rotated.jpg")]
    cmd = [sys.executable, "-m", "styleclip_desktop", "--models-dir", str(demo_models), "batch", str(look_toml),
           *photos, "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (manifest.is_file() and manifest.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stopping after the photos under way" in stderr and "Traceback" not in stderr
    assert "run the same command again to resume" in stdout
    done = read_records(out)
    assert 1 <= len(done) < 3
    assert _batch(demo_models, str(look_toml), *photos, "-o", str(out)) == 0
    keys = [r["key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == 3


def test_local_workers_give_the_same_images(first_run: dict[str, object], demo_models: Path, mixed_photos: Path,
                                            look_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "two-workers"
    photos = [str(mixed_photos / n) for n in ("astronaut.jpg", "two_faces.png", "no_face.jpg", "rotated.jpg")]
    assert _batch(demo_models, str(look_toml), *photos, "-o", str(out), "--faces", "all", "--workers", "2") == 1
    records = read_records(out)
    assert len(records) == 4 and len({r["worker"] for r in records}) == 2
    for r in records:
        for face in r.get("faces", []):
            name = face["outputs"][0]
            a = np.asarray(Image.open(out / name))
            b = np.asarray(Image.open(Path(str(first_run["out"])) / name))
            np.testing.assert_array_equal(a, b)


def test_a_project_recipe_with_keyframes_makes_animations(demo_models: Path, mixed_photos: Path,
                                                          tmp_path: Path) -> None:
    from styleclip_desktop.document import GlobalDirectionParams, Keyframe, Layer, save_project
    from styleclip_desktop.export.metadata import read_metadata
    from styleclip_desktop.export.projects_cli import new_document

    doc = new_document(_latent(demo_models, tmp_path))
    layer = Layer(GlobalDirectionParams(target="smiling", beta=0.01), alpha=2.0)
    doc.layers.append(layer)
    doc.timeline.set("duration", 0.5)
    doc.timeline.set("fps", 8.0)
    doc.timeline.set_track(layer.id, [Keyframe(0.0, 0.0), Keyframe(0.5, 2.0)])
    save_project(doc, tmp_path / "smile.scproj")
    out = tmp_path / "anim"
    assert _batch(demo_models, str(tmp_path / "smile.scproj"), str(mixed_photos / "astronaut.jpg"), "-o", str(out),
                  "--still", "none", "--animation", "gif", "--animation-size", "64") == 0
    [record] = read_records(out)
    assert record["faces"][0]["outputs"] == ["astronaut.gif"]
    with Image.open(out / "astronaut.gif") as gif:
        assert gif.n_frames == 4 and max(gif.size) == 64
    assert read_metadata(out / "astronaut.gif")["layers"][0]["target"] == "smiling"


def _latent(models: Path, tmp: Path) -> Path:
    assert main(["--models-dir", str(models), "--quiet", "generate", "--seed", "1", "-o", str(tmp / "g.png"),
                 "--save-latent", str(tmp / "w.npy")]) == 0
    return tmp / "w.npy"


@pytest.mark.parametrize("toml, words", [
    ('[[layer]]\nmethod = "optimize"\ntarget = "x"\n', "latent optimization is per photo"),
    ('[[layer]]\nmethod = "global"\n', "needs target"),
    ('[[layer]]\nmethod = "global"\ntarget = "x"\nbrightness = 2\n', "take no 'brightness'"),
    ('[[layer]]\nmethod = "global"\ntarget = "x"\n[output]\nstill = "tiff"\n', "still format must be one of"),
    ('[[layer]]\nmethod = "global"\ntarget = "x"\n[output]\nstill = "none"\n', "writes nothing"),
    ('[[layer]]\nmethod = "global"\ntarget = "x"\nmask = "elbows.png"\n', "elbows.png"),
    ("[[layer]\n", "not a readable TOML recipe"),
    ('title = "x"\n', "unknown section 'title'"),
])
def test_bad_recipes_are_refused_in_one_line(demo_models: Path, mixed_photos: Path, tmp_path: Path, toml: str,
                                             words: str, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(toml)
    rc = _batch(demo_models, str(recipe), str(mixed_photos / "astronaut.jpg"), "-o", str(tmp_path / "o"))
    err = capsys.readouterr().err
    assert rc in (1, 2) and words in err and "Traceback" not in err
    assert not (tmp_path / "o" / "manifest.jsonl").exists()


def test_usage_errors(demo_models: Path, mixed_photos: Path, look_toml: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    Image.open(mixed_photos / "astronaut.jpg").save(other / "astronaut.jpg")
    rc = _batch(demo_models, str(look_toml), str(mixed_photos), str(other), "-o", str(tmp_path / "o"))
    assert rc == 2 and "would both be written as astronaut.png" in capsys.readouterr().err
    assert _batch(demo_models, str(look_toml), str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")) == 1
    assert _batch(demo_models, str(look_toml), str(mixed_photos), "-o", str(look_toml)) == 2
    assert _batch(demo_models, str(look_toml), str(mixed_photos), "-o", str(tmp_path / "o"), "--workers", "0") == 2
    assert _batch(demo_models, str(tmp_path / "missing.toml"), str(mixed_photos), "-o", str(tmp_path / "o")) == 1
    assert "recipe not found" in capsys.readouterr().err


def test_a_single_machine_batch_never_imports_ray(demo_models: Path, mixed_photos: Path, look_toml: Path,
                                                  tmp_path: Path) -> None:
    code = ("import sys; from styleclip_desktop.cli import main; "
            f"rc = main(['--models-dir', {str(demo_models)!r}, '--quiet', 'batch', {str(look_toml)!r}, "
            f"{str(mixed_photos / 'astronaut.jpg')!r}, '-o', {str(tmp_path / 'o')!r}]); "
            "import json; print(json.dumps([rc, 'ray' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, False]


def test_a_full_disk_stops_the_batch_and_its_photo_is_redone(demo_models: Path, mixed_photos: Path, look_toml: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from styleclip_desktop.batch.recipe import load_recipe
    from styleclip_desktop.batch.runner import InProcess, prepare, run_batch
    from styleclip_desktop.batch.worker import WorkerConfig
    from styleclip_desktop.export import stills

    recipe = load_recipe(look_toml)
    items = prepare(recipe, [mixed_photos / n for n in ("astronaut.jpg", "small.webp", "rotated.jpg")])
    out = tmp_path / "out"
    config = WorkerConfig(models_dir=str(demo_models), outdir=str(out))
    real = stills.export_still
    calls: list[int] = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "small.png"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stills, "export_still", flaky)
    summary = run_batch(recipe, items, out, lambda: InProcess(config, recipe))
    assert summary.halted.startswith("the disk is full") and summary.stopped and summary.remaining == 1
    assert [r["status"] for r in read_records(out)] == ["done", "failed"]
    monkeypatch.setattr(stills, "export_still", real)
    summary = run_batch(recipe, items, out, lambda: InProcess(config, recipe))
    assert summary.done == 2 and summary.skipped == 1 and not summary.stopped  # the photo the disk failed is redone
    assert (out / "small.png").is_file() and (out / "rotated.png").is_file()


def test_a_manifest_line_cut_short_by_a_crash_is_redone_not_fatal(tmp_path: Path) -> None:
    from styleclip_desktop.batch.manifest import BatchItem, Manifest

    done = {"key": "a", "status": "done", "faces": []}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(done) + '\n{"key": "b", "stat')
    with Manifest(tmp_path) as manifest:
        assert set(manifest.records) == {"a"} and manifest.damaged_lines == 1
        assert manifest.finished(BatchItem(1, "a.jpg", "0" * 64, "a")) is not None
        assert manifest.finished(BatchItem(2, "b.jpg", "1" * 64, "b")) is None  # redone
        manifest.append({"key": "b", "status": "failed", "reason": "no face found"})
        manifest.append({"key": "c", "status": "failed", "reason": "no face found"})
    assert [r["key"] for r in read_records(tmp_path)] == ["a", "b", "c"]
    with Manifest(tmp_path) as manifest:
        assert set(manifest.records) == {"a", "b", "c"} and manifest.damaged_lines == 1
