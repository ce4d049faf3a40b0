"""The fs3 precompute on Ray: shards computed by worker actors merge into the single-process file, bit for bit,
also when a worker is killed midway or a run resumes from its checkpointed shards."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from styleclip_desktop.methods import global_directions as gd

ray = pytest.importorskip("ray")

IMAGES, BATCH, SHARD = 2, 8, 16  # 80 conv channels: 5 shards of 2 batches


@pytest.fixture(scope="module")
def ray_session() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A cluster of its own, even where another one runs on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def models(synthetic_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A narrower generator than the shared one (16 px, 16 channels) so each precompute takes a second;
    its statistics in the models directory; and the single-process matrix as the reference."""
    from styleclip_desktop.render import session
    from styleclip_desktop.weights.synthetic import tiny_generator, write_ada_pkl

    d = tmp_path_factory.mktemp("ray-fs3")
    gen = write_ada_pkl(tiny_generator(16, seed=0, channel_max=16), d / "narrow.pkl")
    mp = session.ModelPaths(d / "models", gen, str(synthetic_models["clip"]))
    G = session.load_generator(mp)
    clip = session.load_clip(mp)
    stats = gd.compute_style_stats(G, samples=200, batch=200)
    stats.save(session.directions_dir(mp.models_dir, G) / "stats.npz")
    assert session.stats_path(G, mp.models_dir).is_file()
    ref = d / "single.npy"
    fs3 = gd.precompute_fs3(G, clip, stats, ref, images=IMAGES, batch=BATCH)
    assert fs3.shape == (80, clip.embed_dim)
    return {"dir": d, "paths": mp, "G": G, "stats": stats, "fs3": fs3, "bytes": ref.read_bytes()}


def _run(models: dict[str, Any], out: Path, **kw: Any) -> np.ndarray:
    from styleclip_desktop.cluster.ray_precompute import precompute_fs3_on_ray

    kw.setdefault("shard_channels", SHARD)
    return precompute_fs3_on_ray(models["paths"], out, images=IMAGES, batch=BATCH, workers=2, cpus_per_worker=1,
                                 **kw)


def test_shards_on_two_workers_merge_into_the_single_process_file(ray_session: Any, models: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    out = tmp_path / "fs3.npy"
    fs3 = _run(models, out, generator=models["G"], stats=models["stats"], on_shard=records.append)
    assert np.array_equal(fs3, models["fs3"]) and fs3.dtype == np.float32
    assert out.read_bytes() == models["bytes"]
    assert sorted((r["lo"], r["hi"]) for r in records) == [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80)]
    assert sorted(r["shard"] for r in records) == [0, 1, 2, 3, 4]
    assert len({r["worker_pid"] for r in records}) == 2 and os.getpid() not in {r["worker_pid"] for r in records}
    assert all(r["redone"] == 0 for r in records) and records[-1]["done"] == 80
    assert not (tmp_path / "fs3.npy.shards").exists()


def test_a_killed_worker_s_shard_is_redone_and_the_file_is_unchanged(ray_session: Any, models: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    killed: list[int] = []

    def on_shard(record: dict[str, Any]) -> None:
        records.append(record)
        if not killed and record["next"] is not None:  # this worker has just been given its next shard
            killed.append(record["worker_pid"])
            os.kill(record["worker_pid"], signal.SIGKILL)

    out = tmp_path / "fs3.npy"
    fs3 = _run(models, out, on_shard=on_shard)  # loads the generator and finds the statistics itself
    assert killed
    assert np.array_equal(fs3, models["fs3"]) and out.read_bytes() == models["bytes"]
    assert sorted((r["lo"], r["hi"]) for r in records) == [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80)]
    redone = [r for r in records if r["redone"]]
    assert len(redone) == 1 and redone[0]["redone"] == 1 and redone[0]["worker_pid"] != killed[0]
    assert killed[0] not in {r["worker_pid"] for r in records[1:]}
    assert not (tmp_path / "fs3.npy.shards").exists()


def test_a_run_resumes_with_the_shards_an_earlier_one_finished(ray_session: Any, models: dict[str, Any],
                                                                tmp_path: Path) -> None:
    from styleclip_desktop.cluster import ray_precompute as rp
    from styleclip_desktop.render import session

    # What a run stopped midway leaves: its settings and the shards it finished (computed here by
    # the code every worker runs), plus one of another run's settings, which must be ignored.
    out = tmp_path / "fs3.npy"
    folder = rp.shards_dir(out)
    folder.mkdir()
    G, stats, clip = models["G"], models["stats"], session.load_clip(models["paths"])
    job = rp.Fs3Job(IMAGES, stats.seed, gd.STATS_PSI, BATCH, 5.0, None, "published")
    info = {"clip": str(clip.model_hash), "channels": 80, "embed_dim": clip.embed_dim}
    (folder / rp.SETTINGS_FILE).write_text(json.dumps(rp._settings(G, stats, job, info)))
    kept = [(16, 32), (48, 64)]
    for lo, hi in kept:
        np.save(folder / f"{lo}-{hi}.npy", gd.fs3_rows(G, clip, stats, lo, hi, IMAGES, stats.seed, batch=BATCH))
    np.save(folder / "64-80.npy", np.zeros((16, clip.embed_dim), np.float32))
    records: list[dict[str, Any]] = []
    fs3 = _run(models, out, generator=G, stats=stats, on_shard=records.append)
    assert sorted((r["lo"], r["hi"]) for r in records) == [(0, 16), (32, 48), (64, 80)]
    assert sorted(r["shard"] for r in records) == [0, 2, 4] and records[-1]["done"] == 80
    assert np.array_equal(fs3, models["fs3"]) and out.read_bytes() == models["bytes"]
    assert not folder.exists()


def test_shards_of_other_settings_are_not_reused(models: dict[str, Any], tmp_path: Path) -> None:
    from styleclip_desktop.cluster.ray_precompute import SETTINGS_FILE, _finished_shards

    settings = {"images": IMAGES, "seed": 5, "batch": BATCH, "embed_dim": 4}
    folder = tmp_path / "fs3.npy.shards"
    folder.mkdir()
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    np.save(folder / "0-16.npy", np.ones((16, 4)))
    np.save(folder / "16-32.npy", np.ones((16, 4), np.float32))  # not the rows' float64
    np.save(folder / "32-40.npy", np.ones((7, 4)))  # not 8 channels
    np.save(folder / "40-52.npy", np.ones((12, 4)))  # ends inside a batch
    np.save(folder / "72-80.npy", np.ones((8, 4)))  # the last batch
    assert _finished_shards(folder, settings, models["G"]) == [(0, 16), (72, 80)]
    assert _finished_shards(folder, {**settings, "seed": 6}, models["G"]) == []


def test_shards_are_whole_batches_in_the_gaps_left() -> None:
    from styleclip_desktop.cluster.ray_precompute import default_shard_channels, plan_shards
    from styleclip_desktop.weights.synthetic import tiny_generator

    assert plan_shards(80, 16, []) == [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80)]
    assert plan_shards(80, 32, [(16, 32), (72, 80)]) == [(0, 16), (32, 64), (64, 72)]
    assert plan_shards(80, 16, [(0, 80)]) == []
    assert default_shard_channels(6048, 8, 16) == 96 and default_shard_channels(80, 2, 8) == 8
    with pytest.raises(ValueError, match="whole batches"):
        gd.check_channel_range(tiny_generator(16, 0, channel_max=16), 4, 16, 8)


def test_no_more_workers_start_than_the_machines_hold() -> None:
    from styleclip_desktop.cluster import worker_room

    class Cluster:
        @staticmethod
        def nodes() -> list[dict[str, Any]]:
            return [{"Alive": True, "Resources": {"CPU": 3.0}}, {"Alive": True, "Resources": {"CPU": 2.0}},
                    {"Alive": False, "Resources": {"CPU": 64.0}}, {"Alive": True, "Resources": {"GPU": 1.0}}]

    assert worker_room(Cluster, 1) == 5 and worker_room(Cluster, 2) == 2 and worker_room(Cluster, 4) == 0


def test_directions_precompute_with_ray_writes_the_same_file(ray_session: Any, models: dict[str, Any],
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from styleclip_desktop.cli import main

    mp = models["paths"]
    base = ["--generator", str(mp.generator), "--clip", str(mp.clip), "--models-dir", str(mp.models_dir)]
    out = tmp_path / "fs3.npy"
    capsys.readouterr()
    assert main([*base, "directions", "precompute", "--out", str(out), "--images", str(IMAGES), "--batch",
                 str(BATCH), "--ray", "auto", "--workers", "2", "--shard-channels", str(SHARD)]) == 0
    assert out.read_bytes() == models["bytes"]
    assert capsys.readouterr().out.strip() == f"fs3 80x512 over {IMAGES} faces (seed 5, published CLIP input) -> {out}"
    assert main([*base, "directions", "precompute", "--out", str(out), "--ray", "auto", "--batch", "8",
                 "--shard-channels", "12"]) == 2
    assert main([*base, "directions", "precompute", "--out", str(out), "--workers", "2"]) == 2
