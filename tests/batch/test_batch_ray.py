"""The same batch on a Ray cluster (a local one started here): the same images and manifest
as on one machine, and a worker killed mid-batch loses nothing and doubles nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.batch.manifest import read_records
from styleclip_desktop.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_cluster() -> Iterator[None]:
    from styleclip_desktop.cluster import connect

    if ray.is_initialized():
        ray.shutdown()
    connect("auto", num_cpus=2)
    yield
    ray.shutdown()


PHOTOS = ("astronaut.jpg", "two_faces.png", "no_face.jpg", "rotated.jpg", "corrupt.jpg", "small.webp")


def _same_images(out: Path, reference: Path) -> int:
    n = 0
    for r in read_records(out):
        for face in r.get("faces", []):
            for name in face["outputs"]:
                np.testing.assert_array_equal(np.asarray(Image.open(out / name)),
                                              np.asarray(Image.open(reference / name)))
                n += 1
    return n


def test_the_ray_path_gives_the_same_images_and_manifest(first_run: dict[str, object], demo_models: Path,
                                                         mixed_photos: Path, look_toml: Path, tmp_path: Path) -> None:
    reference = Path(str(first_run["out"]))
    out = tmp_path / "ray"
    photos = [str(mixed_photos / n) for n in PHOTOS]
    rc = main(["--models-dir", str(demo_models), "--quiet", "batch", str(look_toml), *photos, "-o", str(out),
               "--faces", "all", "--ray", "auto", "--workers", "2"])
    assert rc == 1
    records = read_records(out)
    local = {r["key"]: r for r in read_records(reference)}
    assert len(records) == len(PHOTOS)
    for r in records:
        mine = local[r["key"]]  # the same key: the same photo and recipe
        assert (r["status"], r.get("reason"), r.get("faces")) == (mine["status"], mine.get("reason"), mine.get("faces"))
    assert len({r["worker"] for r in records}) == 2
    assert _same_images(out, reference) >= 5


def test_a_killed_worker_loses_nothing_and_doubles_nothing(first_run: dict[str, object], demo_models: Path,
                                                           mixed_photos: Path, look_toml: Path, tmp_path: Path) -> None:
    from styleclip_desktop.batch.recipe import load_recipe
    from styleclip_desktop.batch.runner import prepare, run_batch
    from styleclip_desktop.batch.worker import WorkerConfig
    from styleclip_desktop.cluster.ray_batch import RayExecutor

    recipe = load_recipe(look_toml, faces="all")
    items = prepare(recipe, [mixed_photos / n for n in PHOTOS])
    out = tmp_path / "killed"
    config = WorkerConfig(models_dir=str(demo_models), outdir=str(out))
    made: list[RayExecutor] = []
    killed: list[int] = []

    def factory() -> RayExecutor:
        made.append(RayExecutor(config, recipe, workers=2))
        return made[0]

    def on_record(record: dict[str, Any]) -> None:
        # After the first photo, kill the other worker: it is in the middle of a photo.
        if killed:
            return
        this = int(str(record["worker"]).rsplit(":", 1)[1])
        other = [pid for pid in made[0].worker_pids() if pid != this]
        os.kill(other[0], signal.SIGKILL)
        killed.append(other[0])

    summary = run_batch(recipe, items, out, factory, on_record=on_record)
    assert killed and made[0].redone >= 1
    assert summary.done + summary.failed == len(PHOTOS) and not summary.stopped
    keys = [r["key"] for r in read_records(out)]
    assert sorted(keys) == sorted(item.key for item in items)  # each photo once
    assert killed[0] not in {int(str(r["worker"]).rsplit(":", 1)[1]) for r in read_records(out)}
    outputs = sorted(o for r in read_records(out) for f in r.get("faces", []) for o in f["outputs"])
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == outputs  # no half-written leftovers
    assert not [p for p in out.iterdir() if ".part" in p.name]
    assert _same_images(out, Path(str(first_run["out"]))) == len(outputs)


def test_shipping_files_through_the_object_store(first_run: dict[str, object], demo_models: Path,
                                                 mixed_photos: Path, look_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "shipped"
    rc = main(["--models-dir", str(demo_models), "--quiet", "batch", str(look_toml), str(mixed_photos / "astronaut.jpg"),
               "-o", str(out), "--faces", "all", "--ray", "auto", "--workers", "1", "--ship-files"])
    assert rc == 0
    [record] = read_records(out)
    assert "files" not in record and record["faces"][0]["outputs"] == ["astronaut_face1.png"]
    assert _same_images(out, Path(str(first_run["out"]))) == 1


def test_a_worker_that_cannot_load_its_models_is_one_line(mixed_photos: Path, look_toml: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    rc = main(["--models-dir", str(empty), "--quiet", "batch", str(look_toml), str(mixed_photos / "astronaut.jpg"),
               "-o", str(tmp_path / "o"), "--ray", "auto", "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "a Ray worker could not start" in err and "generator" in err and "Traceback" not in err
