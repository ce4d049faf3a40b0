"""The batch benchmark on the tiny demo models: every configuration runs every photo, the
numbers it prints are positive, and its projection's arithmetic holds (the numbers themselves
are for bench/, never asserted here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import batch  # noqa: E402

PHOTOS = 2
pytestmark = pytest.mark.slow  # worker processes and Ray actors start in each configuration


@pytest.fixture(scope="module")
def ray_session() -> Any:
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batch.tiny_models(tmp_path_factory.mktemp("bench-batch-models"))


def _positive(section: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        assert isinstance(section[key], (int, float)) and section[key] > 0, (key, section[key])


def test_photos_differ_so_each_is_its_own_batch_item(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    import hashlib

    photos = batch.write_photos(tmp_path, 3)
    assert photos is not None and len(photos) == 3
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}) == 3


def test_batch_configurations_and_ray_overhead(ray_session: Any, models: Path, tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    from styleclip_desktop.faces.detect import haar_available

    if not haar_available():
        pytest.skip("OpenCV's Haar cascades are not installed")
    photos = batch.write_photos(tmp_path / "photos", PHOTOS)
    assert photos is not None
    stages: list[int] = []
    out = batch.bench_batch(models, photos, tmp_path, beta=batch.BETA, stage=lambda: stages.append(1))
    assert len(stages) == 3
    for name in ("local_1_worker", "local_2_workers", "ray_2_workers"):
        section = out[name]
        assert section["photos"] == PHOTOS
        _positive(section, ("end_to_end_s", "after_startup_s", "photos_per_min_end_to_end",
                            "photos_per_min_after_startup", "s_per_photo_after_startup"))
        assert section["after_startup_s"] <= section["end_to_end_s"]
        assert section["worker_s_per_photo_by_stage"]["invert"] > 0
        # every photo was written where this configuration's batch put it
        folder = {"local_1_worker": "local1", "local_2_workers": "local2", "ray_2_workers": "ray2"}[name]
        assert len(list((tmp_path / folder).glob("*.png"))) == PHOTOS
    assert out["local_1_worker"]["workers_seen"] == 1
    assert out["ray_2_workers"]["workers_seen"] == 2
    ray_s, local_s = (out[k]["s_per_photo_after_startup"] for k in ("ray_2_workers", "local_2_workers"))
    expected = ray_s / local_s
    assert out["ray_overhead"] == pytest.approx(expected, abs=1e-3)
    assert out["goal"]["ray_overhead"]["goal"] == batch.GOAL_RAY_OVERHEAD
    assert ray_session.is_initialized()  # a session the caller started is left running


def test_without_ray_the_ray_part_says_skipped(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "ray_session", lambda num_cpus=2: (None, False))
    out = batch.bench_precompute(models, channels=8, batch=8)
    assert out["ray_2_workers"] == "skipped: ray not installed"
    _positive(out["single_process"], ("channels_per_s", "seconds"))
    assert batch.projection(out, 6048)["gpus"] == "skipped: no Ray scaling measurement"


def test_precompute_and_projection(ray_session: Any, models: Path) -> None:
    out = batch.bench_precompute(models, channels=16, batch=8)
    for name in ("single_process", "single_process_1_thread", "ray_2_workers"):
        _positive(out[name], ("channels_per_s", "seconds", "s_per_channel_image"))
    assert out["single_process_1_thread"]["threads"] == 1
    assert out["ray_2_workers"]["channels"] == 2 * out["single_process"]["channels"]
    _positive(out, ("speed_up_vs_single_process", "scaling_efficiency_2_workers"))
    assert out["scaling_efficiency_2_workers"] == pytest.approx(out["speed_up_vs_1_thread"] / 2, abs=1e-3)

    channels = batch.full_conv_channels()
    assert channels == 6048  # config-f 1024: fs3's rows
    proj = batch.projection(out, channels)
    assert "projection, not a measurement" in proj["note"]
    eff = out["scaling_efficiency_2_workers"]
    for gpu, published in batch.PUBLISHED_GPU_HOURS.items():
        entry = proj["on_8_gpus"][gpu]
        assert entry["hours_on_8"] == pytest.approx(published["hours"] / (8 * eff), abs=0.01)
        assert f"/ (8 x {eff})" in entry["arithmetic"]
    per = out["single_process"]["s_per_channel_image"]
    hours = proj["this_cpu_single_process_hours"]["value"]
    assert hours == pytest.approx(per * channels * 100 / 3600, abs=0.1)
