"""Batch throughput: photos per minute on one worker, two local workers and two Ray workers,
and the fs3 precompute's channels per second in one process and on two Ray workers.

At full size the models are a config-f 1024 generator (NVIDIA's pickle, with its full-size
discriminator), the full-size e4e checkpoint and CLIP ViT-B/32, all with seeded random
weights (they cost what trained ones cost), written once into the cache. The global
direction's fs3 is a matrix of the real shape with seeded random unit rows, and the style
statistics come from a few thousand samples: the real precompute takes hours at 1024 px, and
applying a direction costs the same whatever its numbers. `quick` writes the same models at
test sizes.

The recipe is one global direction; each photo is found, aligned, inverted with e4e, edited,
pasted back and written as a PNG, exactly as `styleclip-desktop batch` does it. The photos are
copies of the public-domain astronaut portrait (scikit-image), each a few pixels different, so
each is its own photo to the manifest. Every configuration is timed end to end (its workers
loading their models included) and from the moment all its workers are ready: models load once
per worker, so the second figure is what a long batch runs at. `ray_overhead` is Ray's time
per photo over the local pool's with the same number of workers, both from the same run
(goal: at most 1.15).

The precompute is measured on the full-size generator over a few channels (the whole matrix
takes hours): in this process, with all cores and with one core (a Ray worker's share), and
on two Ray workers running the sharded precompute's worker actors. From those and the
published single-GPU times comes a projection (labelled so) for the whole FFHQ matrix on 8 GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Stages, peak_rss_mb

GOAL_RAY_OVERHEAD = 1.15
MODELS_VERSION = 1  # bump when the full-size models folder changes: an old one is written again
INFO_FILE = "bench-models.json"
STATS_SAMPLES = 2000  # the published statistics use 100,000; a few thousand give the mean and spread
PHOTOS = 4
BETA = 0.05  # about a quarter of the channels of a random fs3 pass: a broad edit
WORKERS = 2
# The published fs3 precompute on one GPU, FFHQ config-f, 100 images.
PUBLISHED_GPU_HOURS: dict[str, dict[str, Any]] = {
    "GTX 1080": {"hours": 4.0, "source": "orpatashnik/StyleCLIP#95: SingleChannel.py takes about 4 hours "
                                         "on a GTX 1080 (a StyleCLIP author)"},
    "V100": {"hours": 24.0, "source": "orpatashnik/StyleCLIP#95: about 24 hours reported on a V100"},
}
FFHQ_PRECOMPUTE_IMAGES = 100
PROJECTION_GPUS = 8
RECIPE = """# one global direction for every photo
[[layer]]
method = "global"
target = "a face with grey hair"
alpha = 3
beta = {beta}

[output]
still = "png"
"""


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


# --- the models -------------------------------------------------------------------------


def full_size_models(folder: Path | None = None) -> Path:
    """The full-size models folder, written once into the cache (a minute or two) and reused."""
    from styleclip_desktop import paths

    folder = folder or paths.cache_dir() / "bench" / f"batch-models-1024-v{MODELS_VERSION}"
    if (folder / INFO_FILE).is_file():
        return folder
    tmp = folder.with_name(folder.name + f".writing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_models(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def tiny_models(folder: Path) -> Path:
    """The same folder at test sizes (a 32 px generator, tiny CLIP and e4e): seconds to write."""
    write_models(folder, tiny=True)
    return folder


def write_models(folder: Path, tiny: bool = False) -> dict[str, Any]:
    """Generator, CLIP and e4e under their catalog names, and the generator's own directions
    (a synthetic fs3 of the real shape, statistics from a few samples)."""
    import torch
    from safetensors import safe_open

    from bench import memory_models as mm
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.e4e import write_synthetic_e4e
    from styleclip_desktop.render import session
    from styleclip_desktop.weights.synthetic import rosinality_state_dict, tiny_generator
    from styleclip_desktop.weights.synthetic import write_ada_pkl as write_small_pkl

    folder.mkdir(parents=True, exist_ok=True)
    files = {role: folder / name for role, name in mm.FILES.items()}
    if tiny:
        G0 = tiny_generator(32, 0, channel_max=32)
        write_small_pkl(G0, files["generator"], 0)
    else:
        G0 = mm._generator(tiny=False)
        mm.write_ada_pkl(G0, files["generator"], mm.DISCRIMINATOR_PARAMS)  # the real file's discriminator too
    decoder, num_ws, res = rosinality_state_dict(G0), G0.num_ws, G0.config.resolution
    del G0
    write_synthetic_e4e(files["e4e"], num_ws=num_ws, seed=0, decoder_state=decoder, tiny=tiny)
    del decoder
    mm.write_clip(files["clip"], tiny)
    with safe_open(str(files["clip"]), "pt") as f:
        embed_dim = int(f.get_slice("text_projection").get_shape()[1])
    G = session.load_generator(session.ModelPaths(folder))  # keyed by the file's hash, as the app keys it
    own = session.directions_dir(folder, G)
    samples = 200 if tiny else STATS_SAMPLES
    with torch.random.fork_rng(devices=[]):
        stats = gd.compute_style_stats(G, samples=samples, batch=500)
    stats.save(own / "stats.npz")
    rows = len(gd.conv_channel_index(G))
    fs3 = np.random.RandomState(0).randn(rows, embed_dim).astype(np.float32)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    gd.write_fs3(own / "fs3.npy", fs3)
    size = "test sizes" if tiny else "full size"
    info = {"version": MODELS_VERSION,
            "generator": f"{'tiny' if tiny else 'config-f'} {res} px, random weights (NVIDIA pickle"
                         f"{'' if tiny else ', with the full-size discriminator'})",
            "e4e": f"IR-SE50 e4e checkpoint at {size}, random weights, with its embedded decoder",
            "clip": "tiny CLIP, random weights" if tiny else "ViT-B/32, random weights",
            "fs3": f"synthetic: {rows} x {embed_dim} seeded random unit rows (the real shape; applying it "
                   "costs what the precomputed one does)",
            "stats": f"from {samples} samples (published: 100,000)"}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


def model_files(models: Path) -> dict[str, Path]:
    from styleclip_desktop.render import session

    mp = session.ModelPaths(models)
    found = {"generator": session.generator_path(mp), "clip": Path(session.clip_source(mp)),
             "e4e": session.locate(models, "e4e-ffhq")}
    return {k: v for k, v in found.items() if v is not None}


# --- the photos and the recipe ------------------------------------------------------------


def write_photos(folder: Path, count: int) -> list[Path] | None:
    """`count` copies of the astronaut portrait, each with a few pixels changed (so each hash
    differs); None when scikit-image (the test extra) is not installed."""
    try:
        from skimage import data as skimage_data
    except ImportError:
        return None
    from PIL import Image

    face = np.asarray(skimage_data.astronaut())
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        img = face.copy()
        img[i // img.shape[1] % img.shape[0], i % img.shape[1]] ^= np.uint8(1)  # one pixel's lowest bits
        img[-1, -1, 0] ^= np.uint8(i & 0xFF)
        path = folder / f"portrait_{i + 1:03d}.png"
        Image.fromarray(img).save(path)
        out.append(path)
    return out


def write_recipe(folder: Path, beta: float) -> Path:
    path = folder / "grey_hair.toml"
    path.write_text(RECIPE.format(beta=beta), encoding="utf-8")
    return path


# --- batch throughput -------------------------------------------------------------------


def _pool_pid() -> int:
    time.sleep(0.2)
    return os.getpid()


def _ready_pool(pool: Any) -> Any:
    """A local pool whose worker processes have all loaded their models (each starts on its
    first task and loads before it runs one)."""
    seen: set[int] = set()
    while len(seen) < pool.workers:
        seen.update(f.result() for f in [pool.pool.submit(_pool_pid) for _ in range(pool.workers)])
    return pool


def ray_session(num_cpus: int = WORKERS) -> tuple[Any, bool]:
    """Ray (a cluster of `num_cpus` cores started here unless one is already joined), and
    whether this call started it; (None, False) when Ray is not installed."""
    try:
        import ray
    except ImportError:
        return None, False
    if ray.is_initialized():
        return ray, False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray, True


def time_batch(recipe: Any, photos: list[Path], outdir: Path, make: Callable[[], Any]) -> dict[str, Any]:
    """One batch from scratch: end to end, and from when every worker is ready."""
    from styleclip_desktop.batch.runner import prepare, run_batch

    load = _load()
    t0 = time.perf_counter()
    items = prepare(recipe, photos)
    stamps: dict[str, float] = {}

    def factory() -> Any:
        executor = make()
        stamps["ready"] = time.perf_counter()
        return executor

    summary = run_batch(recipe, items, outdir, factory)
    end = time.perf_counter()
    if summary.failed or summary.done != len(photos):
        raise RuntimeError(f"the benchmark batch did not finish every photo: {summary.failures[:2]}")
    n = len(photos)
    total, steady = end - t0, end - stamps["ready"]
    per = [r["timings"] for r in summary.records]
    stages = {k: round(float(np.mean([t.get(k, 0.0) for t in per])), 3)
              for k in ("detect", "invert", "recipe", "still", "total")}
    return {"photos": n, "end_to_end_s": round(total, 2), "startup_s": round(stamps["ready"] - t0, 2),
            "after_startup_s": round(steady, 2),
            "photos_per_min_end_to_end": round(60.0 * n / total, 2),
            "photos_per_min_after_startup": round(60.0 * n / steady, 2),
            "s_per_photo_end_to_end": round(total / n, 3), "s_per_photo_after_startup": round(steady / n, 3),
            "worker_s_per_photo_by_stage": stages,
            "workers_seen": len({r.get("worker") for r in summary.records}), "load_average_start": load}


def bench_batch(models: Path, photos: list[Path], work: Path, *, beta: float, backend: str = "torch",
                with_ray: bool = True, stage: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Photos per minute: local 1 worker, local 2 workers, Ray 2 workers, and Ray's overhead."""
    from styleclip_desktop.batch.recipe import load_recipe
    from styleclip_desktop.batch.runner import InProcess, LocalPool
    from styleclip_desktop.batch.worker import WorkerConfig

    recipe = load_recipe(write_recipe(work, beta))
    cores = os.cpu_count() or 1

    def config(name: str, threads: int | None) -> WorkerConfig:
        # As the batch command sets it: one worker has torch's default threads, N local ones share the cores.
        return WorkerConfig(models_dir=str(models), backend=backend, threads=threads,
                            outdir=str((work / name).resolve()))

    out: dict[str, Any] = {"recipe": f"one global direction (beta {beta}), e4e inversion, paste-back, PNG",
                           "backend": backend, "cores": cores}
    out["local_1_worker"] = time_batch(recipe, photos, work / "local1",
                                       lambda: InProcess(config("local1", None), recipe))
    stage()
    threads = max(1, cores // WORKERS)
    out["local_2_workers"] = time_batch(recipe, photos, work / "local2", lambda: _ready_pool(
        LocalPool(config("local2", threads), recipe, WORKERS)))
    out["local_2_workers"]["threads_per_worker"] = threads
    stage()
    ray, started = ray_session() if with_ray else (None, False)
    if ray is None:
        out["ray_2_workers"] = "skipped: ray not installed" if with_ray else "skipped: not asked for"
        out["ray_overhead"] = None
        stage()
        return out
    try:
        from styleclip_desktop.cluster.ray_batch import RayExecutor

        out["ray_2_workers"] = time_batch(recipe, photos, work / "ray2", lambda: RayExecutor(
            config("ray2", None), recipe, address="auto", workers=WORKERS, num_cpus=WORKERS))
        out["ray_2_workers"]["cluster"] = f"ray.init(num_cpus={WORKERS}) on this machine, 1 core per worker"
    finally:
        if started:
            ray.shutdown()
    stage()
    local, remote = out["local_2_workers"], out["ray_2_workers"]
    out["ray_overhead"] = round(remote["s_per_photo_after_startup"] / local["s_per_photo_after_startup"], 3)
    out["ray_overhead_end_to_end"] = round(remote["s_per_photo_end_to_end"] / local["s_per_photo_end_to_end"],
                                           3)
    out["goal"] = {"ray_overhead": {"measured": out["ray_overhead"], "goal": GOAL_RAY_OVERHEAD,
                                    "met": out["ray_overhead"] <= GOAL_RAY_OVERHEAD,
                                    "against": "2 local worker processes, after start-up, same run"}}
    return out


# --- the fs3 precompute -----------------------------------------------------------------


def bench_precompute(models: Path, *, channels: int, batch: int, images: int = 1, with_ray: bool = True,
                     stage: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Channels per second over the first channels of the generator: in this process with all
    cores and with one, and on two Ray workers (each given `channels` channels, one core)."""
    import torch

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.render import session

    mp = session.ModelPaths(models)
    G = session.load_generator(mp)
    clip = session.load_clip(mp)
    stats = session.ensure_stats(G, models_dir=models)
    total = len(gd.conv_channel_index(G))
    channels = max(batch, min(channels // batch * batch, total // (2 * batch) * batch))
    out: dict[str, Any] = {
        "generator": f"{G.config.resolution} px", "total_conv_channels": total, "images": images,
        "batch": batch,
        "measured_on": f"the first {channels} of {total} conv channels per worker, {images} image(s), "
                       f"batches of {batch} channels: precompute_fs3_on_ray takes no channel range, so the "
                       "Ray run drives its worker actors (Fs3Actor: the same fs3_rows code) over that range "
                       "with its own run_shards (one-batch shards handed out as workers finish, each "
                       "checkpointed); no warm-up run, model loading not counted"}
    threads = torch.get_num_threads()

    def single(n_threads: int) -> dict[str, Any]:
        load = _load()
        torch.set_num_threads(n_threads)
        try:
            t0 = time.perf_counter()
            gd.fs3_rows(G, clip, stats, 0, channels, images, stats.seed, batch=batch)
            s = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        return {"threads": n_threads, "channels": channels, "load_average_start": load,
                "seconds": round(s, 2), "channels_per_s": round(channels / s, 4),
                "s_per_channel_image": round(s / (channels * images), 3)}

    out["single_process"] = single(threads)
    stage()
    out["single_process_1_thread"] = single(1)
    stage()
    ray, started = ray_session() if with_ray else (None, False)
    if ray is None:
        out["ray_2_workers"] = "skipped: ray not installed" if with_ray else "skipped: not asked for"
        stage()
        return out
    try:
        out["ray_2_workers"] = _ray_precompute(ray, mp, G, stats, channels, batch, images)
    finally:
        if started:
            ray.shutdown()
    stage()
    r, one, alls = out["ray_2_workers"], out["single_process_1_thread"], out["single_process"]
    out["speed_up_vs_single_process"] = round(r["channels_per_s"] / alls["channels_per_s"], 3)
    out["speed_up_vs_1_thread"] = round(r["channels_per_s"] / one["channels_per_s"], 3)
    # What each worker keeps of a lone worker's speed with the same resources (1 core each).
    out["scaling_efficiency_2_workers"] = round(out["speed_up_vs_1_thread"] / WORKERS, 3)
    return out


def _ray_precompute(ray: Any, mp: Any, G: Any, stats: Any, channels: int, batch: int,
                    images: int) -> dict[str, Any]:
    """Two of the sharded precompute's workers (`Fs3Actor`, one core each), handed one-batch
    shards of the range by the precompute's own `run_shards`."""
    from styleclip_desktop.cluster import ray_precompute as rp
    from styleclip_desktop.methods.fs3_input import DEFAULT_PRECOMPUTE_INPUT
    from styleclip_desktop.methods.global_directions import STATS_PSI

    job = rp.Fs3Job(images, stats.seed, STATS_PSI, batch, 5.0, None, DEFAULT_PRECOMPUTE_INPUT)
    actor_class = ray.remote(num_cpus=1, max_restarts=0)(rp.Fs3Actor)
    stats_ref = ray.put(stats)
    load = _load()
    t0 = time.perf_counter()
    paths, expect = rp.worker_paths(mp), {"generator": str(G.source_sha256)}

    def spawn() -> Any:
        return actor_class.remote(paths, stats_ref, job, expect, 1)

    actors = [spawn() for _ in range(WORKERS)]
    try:
        ray.get([a.info.remote() for a in actors])  # each has loaded its models
        ready = time.perf_counter()
        todo = [(lo, lo + batch) for lo in range(0, WORKERS * channels, batch)]
        pids: set[int] = set()
        with tempfile.TemporaryDirectory(prefix="bench-fs3-shards-") as folder:
            # The precompute's own hand-out and checkpointing, over this range of channels.
            rp.run_shards(ray, actors, spawn, todo, Path(folder), {r: i for i, r in enumerate(todo)},
                          WORKERS * channels, images, 0, None, lambda record: pids.add(int(record["worker_pid"])))
        s = time.perf_counter() - ready
    finally:
        for a in actors:
            ray.kill(a)
    n = WORKERS * channels
    return {"workers": WORKERS, "threads_per_worker": 1, "channels": n, "load_average_start": load,
            "seconds": round(s, 2),
            "startup_s": round(ready - t0, 2), "channels_per_s": round(n / s, 4),
            "s_per_channel_image": round(s / (n * images), 3), "worker_processes": len(pids)}


def projection(pre: dict[str, Any], full_channels: int) -> dict[str, Any]:
    """The FFHQ fs3 precompute on 8 GPUs, projected from the published single-GPU hours and
    the measured two-worker scaling efficiency; and on this CPU, from the measured per-channel cost."""
    out: dict[str, Any] = {
        "note": "a projection, not a measurement: published single-GPU hours and this run's measured "
                "numbers, combined by the arithmetic below",
        "channels": full_channels, "images": FFHQ_PRECOMPUTE_IMAGES,
        "renders": 2 * full_channels * FFHQ_PRECOMPUTE_IMAGES,
    }
    single = pre["single_process"]
    cpu_h = single["s_per_channel_image"] * full_channels * FFHQ_PRECOMPUTE_IMAGES / 3600
    out["this_cpu_single_process_hours"] = {
        "value": round(cpu_h, 1),
        "arithmetic": f"{single['s_per_channel_image']} s per channel and image x {full_channels} channels x "
                      f"{FFHQ_PRECOMPUTE_IMAGES} images / 3600"}
    eff = pre.get("scaling_efficiency_2_workers")
    if not isinstance(eff, (int, float)) or eff <= 0:
        out["gpus"] = "skipped: no Ray scaling measurement"
        return out
    ray_run = pre["ray_2_workers"]
    out["this_cpu_ray_2_workers_hours"] = {
        "value": round(ray_run["s_per_channel_image"] * full_channels * FFHQ_PRECOMPUTE_IMAGES / 3600, 1),
        "arithmetic": f"{ray_run['s_per_channel_image']} s per channel and image (2 workers together) x "
                      f"{full_channels} x {FFHQ_PRECOMPUTE_IMAGES} / 3600"}
    out["scaling_efficiency"] = {"value": eff,
                                 "measured": "2 Ray workers of 1 core against 1 process of 1 core, this run"}
    gpus: dict[str, Any] = {}
    for gpu, pub in PUBLISHED_GPU_HOURS.items():
        hours = pub["hours"] / (PROJECTION_GPUS * eff)
        gpus[gpu] = {"single_gpu_hours": pub["hours"], "source": pub["source"],
                     f"hours_on_{PROJECTION_GPUS}": round(hours, 2),
                     "arithmetic": f"{pub['hours']} h / ({PROJECTION_GPUS} x {eff}) = {hours:.2f} h"}
    out[f"on_{PROJECTION_GPUS}_gpus"] = gpus
    return out


def full_conv_channels() -> int:
    """The conv channels of a config-f 1024 generator (fs3's rows)."""
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig

    return len(gd.conv_channel_index(Generator(GeneratorConfig(resolution=1024))))


# --- the suite --------------------------------------------------------------------------


def run(device: Any = "cpu", repeats: int = 1, quick: bool = False,
        progress: Callable[[int, int], None] | None = None, photos: int = PHOTOS, channels: int | None = None,
        with_ray: bool = True, models: Path | None = None) -> dict[str, Any]:
    """The whole suite. `quick`: the models at test sizes (seconds, for a smoke test of the suite).
    `photos` per configuration; `channels` per precompute worker; `models` a models folder
    to use instead of the default one. The batch runs on the CPU."""
    stage = Stages(progress, 6)
    out: dict[str, Any] = {"load_average_start": _load(), "cpu_count": os.cpu_count(), "quick": quick,
                           "device": "cpu", "photos_per_configuration": photos}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        folder = models or (tiny_models(work / "models") if quick else full_size_models())
        out["models_ready_s"] = round(time.perf_counter() - t0, 1)
        info = folder / INFO_FILE
        out["models"] = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else str(folder)
        out["model_files_mb"] = {k: round(p.stat().st_size / 2**20, 1) for k, p in model_files(folder).items()
                                 if p.is_file()}
        files = write_photos(work / "photos", photos)
        t0 = time.perf_counter()
        ray, started = ray_session() if with_ray else (None, False)  # one cluster for both parts
        out["ray_start_s"] = round(time.perf_counter() - t0, 1) if started else None
        try:
            if files is None:
                out["batch"] = "skipped: scikit-image (the test extra) is not installed: no portrait to use"
                for _ in range(3):
                    stage()
            else:
                out["batch"] = bench_batch(folder, files, work, beta=BETA, with_ray=with_ray, stage=stage)
            out["precompute"] = bench_precompute(folder, channels=channels or (16 if quick else 2),
                                                 batch=8 if quick else 1, with_ray=with_ray, stage=stage)
        finally:
            if started and ray is not None:
                ray.shutdown()
    out["projection"] = projection(out["precompute"], full_conv_channels())
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_average_end"] = _load()
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--photos", type=int, default=PHOTOS)
    parser.add_argument("--channels", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, photos=args.photos, channels=args.channels), indent=2))
