"""The fs3 precompute on a Ray cluster (`directions precompute --ray`).

The conv channels are split into shards, runs of whole channel batches; one actor per
worker loads the generator, CLIP and the style statistics once and computes shard after
shard with the same code as the single-process precompute (`global_directions.fs3_rows`),
so the merged matrix is the single-process one bit for bit. The driver checkpoints each
finished shard to `OUT.shards/<lo>-<hi>.npy`, next to a `settings.json` naming what the
shards were computed with: a run stopped or crashed midway resumes with the shards it
finished, and shards of other settings are never mixed in. A shard whose worker dies
(its machine lost, its process killed, out of memory) is given to a fresh worker.
When every shard is in, the rows are merged in channel order, normalized as the
single-process path does, OUT is written atomically and the shard folder is removed.

Every worker must find the model files at the same paths as this machine; the
statistics travel with the job.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from styleclip_desktop.cluster import cluster_resources, connect, worker_room
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods.fs3_input import DEFAULT_PRECOMPUTE_INPUT
from styleclip_desktop.nets.checkpoint import one_line

if TYPE_CHECKING:
    from styleclip_desktop.methods.global_directions import StyleStats
    from styleclip_desktop.nets.stylegan2 import Generator
    from styleclip_desktop.render.session import ModelPaths

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ShardRecord = dict[str, Any]

SHARDS_PER_WORKER = 8  # the default shard size gives each worker about this many: a lost one costs little
MAX_LOSSES_PER_SHARD = 3  # a shard that takes this many workers down with it stops the run
SETTINGS_FILE = "settings.json"
_SHARD_NAME = re.compile(r"(\d+)-(\d+)\.npy")


@dataclass(frozen=True)
class Fs3Job:
    """What every shard of one precompute shares (sent once to each worker)."""

    images: int
    seed: int
    psi: float
    batch: int
    sigmas: float
    out_res: int | None
    clip_input: str


class Fs3Actor:
    """What each Ray actor holds: the generator, CLIP and statistics, loaded once when it starts.

    A worker that cannot load them keeps the error and raises it on every call, so the
    driver reports it instead of taking the worker for lost and starting another."""

    def __init__(self, models: ModelPaths, stats: StyleStats, job: Fs3Job, expect: dict[str, str],
                 threads: int, device: str = "cpu") -> None:
        import torch

        from styleclip_desktop.methods import global_directions as gd
        from styleclip_desktop.render import session

        torch.set_num_threads(max(1, threads))
        self.stats, self.job = stats, job
        self.error: str | None = None
        try:
            self.G = session.load_generator(models, device)
            self.clip = session.load_clip(models, device)
            where = f"the Ray worker on {socket.gethostname()}"
            if expect.get("generator") and _generator_id(self.G) != expect["generator"]:
                raise UserError(f"{where} finds another generator at {session.generator_path(models)} "
                                "than this machine: every machine needs the same model files at the same paths")
            if expect.get("clip") and str(self.clip.model_hash) != expect["clip"]:
                raise UserError(f"{where} finds another CLIP model than the other workers at "
                                f"{session.clip_source(models)}")
            if stats.mean.shape != (gd.s_size(self.G),):
                raise UserError(f"the style statistics do not fit the generator {where} loaded")
        except Exception as exc:  # reported by the driver, on the first call
            self.error = one_line(exc)

    def _check(self) -> None:
        if self.error is not None:
            raise UserError(f"a Ray worker could not load the models: {self.error}")

    def info(self) -> dict[str, Any]:
        from styleclip_desktop.methods import global_directions as gd

        self._check()
        return {"pid": os.getpid(), "host": socket.gethostname(), "generator": _generator_id(self.G),
                "clip": str(self.clip.model_hash), "embed_dim": int(self.clip.embed_dim),
                "channels": len(gd.conv_channel_index(self.G))}

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, int, str]:
        """The summed fs3 rows of channels lo..hi-1, with this worker's process id and host."""
        from styleclip_desktop.methods import global_directions as gd

        self._check()
        j = self.job
        acc = gd.fs3_rows(self.G, self.clip, self.stats, lo, hi, j.images, j.seed, psi=j.psi, batch=j.batch,
                          sigmas=j.sigmas, out_res=j.out_res, clip_input=j.clip_input)
        return acc, os.getpid(), socket.gethostname()


def worker_paths(models: ModelPaths) -> ModelPaths:
    """The model files as this machine finds them, as absolute paths: what every worker loads."""
    from styleclip_desktop.render import session

    clip = session.clip_source(models)
    if clip != "openai" and Path(clip).expanduser().exists():
        clip = str(Path(clip).expanduser().resolve())
    return dataclasses.replace(models, models_dir=models.models_dir.expanduser().resolve(),
                               generator=session.generator_path(models).expanduser().resolve(), clip=clip,
                               fs3=None)


def _generator_id(G: Generator) -> str:
    return str(getattr(G, "source_sha256", "") or "")


def shards_dir(out: Path) -> Path:
    """Where a Ray precompute of `out` keeps its finished shards until the matrix is written."""
    return out.with_name(out.name + ".shards")


def default_shard_channels(channels: int, workers: int, batch: int) -> int:
    """Several shards per worker, each a whole number of channel batches."""
    want = -(-channels // max(1, workers * SHARDS_PER_WORKER))
    return max(batch, -(-want // batch) * batch)


def plan_shards(channels: int, shard_channels: int, have: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The channel ranges still to compute: the gaps between the shards `have`, cut into
    runs of `shard_channels` starting at each gap's start (so at a batch boundary)."""
    todo: list[tuple[int, int]] = []
    start = 0
    for lo, hi in [*sorted(have), (channels, channels)]:
        for a in range(start, lo, shard_channels):
            todo.append((a, min(a + shard_channels, lo)))
        start = max(start, hi)
    return todo


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def _save_rows(path: Path, rows: np.ndarray) -> None:
    np.save(path, rows)


def _settings(G: Generator, stats: StyleStats, job: Fs3Job, info: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(np.ascontiguousarray(stats.mean).tobytes() + np.ascontiguousarray(stats.std).tobytes())
    return {"images": job.images, "seed": job.seed, "psi": job.psi, "batch": job.batch, "sigmas": job.sigmas,
            "out_res": job.out_res, "clip_input": job.clip_input, "generator": _generator_id(G),
            "clip": info["clip"], "channels": info["channels"], "embed_dim": info["embed_dim"],
            "stats": digest.hexdigest()[:32]}


def _finished_shards(folder: Path, settings: dict[str, Any], G: Generator) -> list[tuple[int, int]]:
    """The shards in `folder` computed with exactly these settings (none when they differ)."""
    from styleclip_desktop.methods.global_directions import check_channel_range

    try:
        saved = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if saved != settings:
        if any(folder.glob("*.npy")):
            log.warning("ignoring the shards in %s: they were computed with other settings", folder)
        return []
    have: list[tuple[int, int]] = []
    end = 0
    found = []
    for f in folder.iterdir():
        m = _SHARD_NAME.fullmatch(f.name)
        if m:
            found.append((int(m[1]), int(m[2]), f))
    for lo, hi, f in sorted(found):
        if lo < end:
            continue  # overlaps a shard already taken
        try:
            check_channel_range(G, lo, hi, settings["batch"])
            rows = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring shard %s (%s)", f.name, exc)
            continue
        if rows.shape != (hi - lo, settings["embed_dim"]) or rows.dtype != np.float64 or not np.isfinite(rows).all():
            log.warning("ignoring shard %s: it does not hold channels %d-%d", f.name, lo, hi)
            continue
        have.append((lo, hi))
        end = hi
    return have


def precompute_fs3_on_ray(models: ModelPaths, out: Path, images: int = 100, seed: int | None = None,
                          batch: int = 16, clip_input: str = DEFAULT_PRECOMPUTE_INPUT,
                          shard_channels: int | None = None, workers: int | None = None, cpus_per_worker: int = 1,
                          progress: Progress | None = None, on_shard: Callable[[ShardRecord], None] | None = None,
                          *, address: str | None = "auto", generator: Generator | None = None,
                          stats: StyleStats | None = None, psi: float | None = None, sigmas: float = 5.0,
                          out_res: int | None = None, device: str = "auto") -> np.ndarray:
    """`global_directions.precompute_fs3` on a Ray cluster: the same matrix, bit for bit, and the same file.

    `models` names the files every worker loads (the same paths on every machine);
    `generator` and `stats` are this machine's copies, loaded here when not given (the
    statistics computed once if the generator has none). Workers: `workers` actors of
    `cpus_per_worker` cores each (default: as many as the cluster's cores allow), each
    running that many torch threads. `shard_channels` (a multiple of `batch`; default
    several shards per worker) sets how much a lost worker costs.

    Progress counts channel renders, as the single-process path does. `on_shard(record)`
    is called after each computed shard is checkpointed, with keys shard (its index in
    channel order), lo, hi, worker_pid, host, redone (how often it was given out again
    after its worker died), next ((lo, hi) now given to the same worker, or None), done
    and total (channels). A run stopped midway (Ctrl+C, a crash) keeps its finished shards;
    the next one with the same settings resumes with them.

    On a cluster with GPUs each worker takes one (unless `device` is "cpu"). The file is
    then bit for bit the one a single process writes on the same kind of GPU.
    """
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.methods.fs3_input import check_precompute_input
    from styleclip_desktop.render import session

    check_precompute_input(clip_input)
    if images < 1 or batch < 1 or cpus_per_worker < 1 or (workers is not None and workers < 1):
        raise UserError("images, batch, workers and cores per worker must be positive")
    if shard_channels is not None and (shard_channels < 1 or shard_channels % batch):
        raise UserError(f"a shard must be a positive multiple of the batch ({batch} channels), not {shard_channels}")
    models = worker_paths(models)
    G = generator if generator is not None else session.load_generator(models, "cpu")
    if stats is None:
        stats = session.ensure_stats(G, models_dir=models.models_dir)
    job = Fs3Job(images, stats.seed if seed is None else seed, gd.STATS_PSI if psi is None else psi, batch,
                 sigmas, out_res, clip_input)
    channels = len(gd.conv_channel_index(G))

    ray = connect(address)
    from ray.exceptions import RayActorError

    room = worker_room(ray, cpus_per_worker)
    gpus = int(cluster_resources().get("GPU", 0)) if device != "cpu" else 0
    if gpus:
        room = min(room, gpus)
    if room < 1:
        raise UserError(f"no machine of the Ray cluster has {cpus_per_worker} CPU cores for a worker "
                        f"(the cluster has {int(cluster_resources().get('CPU', 0))} in all)")
    if workers is not None and workers > room:
        log.warning("the Ray cluster has room for %d workers of %d cores; starting %d", room, cpus_per_worker, room)
    workers = min(workers or room, room)
    shard_channels = shard_channels or default_shard_channels(channels, workers, batch)
    actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=1 if gpus else 0, max_restarts=0)(Fs3Actor)
    stats_ref = ray.put(stats)
    expect = {"generator": _generator_id(G)}

    def spawn() -> Any:
        return actor_class.remote(models, stats_ref, job, expect, cpus_per_worker, "cuda" if gpus else "cpu")

    actors: list[Any] = []
    try:
        actors = [spawn() for _ in range(workers)]
        try:
            infos = _get(ray, [a.info.remote() for a in actors])
        except RayActorError as exc:
            raise UserError(f"a Ray worker died while loading the models ({one_line(exc)})") from None
        info = infos[0]
        if any(i["clip"] != info["clip"] for i in infos):
            raise UserError("the Ray workers load different CLIP models: every machine needs the same model "
                            "files at the same paths")
        expect["clip"] = info["clip"]
        if info["channels"] != channels:
            raise UserError("the Ray workers' generator has another channel count than this machine's")
        folder = shards_dir(out)
        settings = _settings(G, stats, job, info)
        have = _finished_shards(folder, settings, G) if folder.is_dir() else []
        if not have:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            _atomic_write(folder / SETTINGS_FILE,
                          lambda p: p.write_text(json.dumps(settings, indent=1, sort_keys=True), encoding="utf-8"))
        else:
            log.info("resuming the fs3 precompute with %d finished shards from %s", len(have), folder)
        todo = plan_shards(channels, shard_channels, have)
        index = {r: i for i, r in enumerate(sorted([*have, *todo]))}
        done = sum(hi - lo for lo, hi in have)
        if progress:
            progress(done * images, channels * images)
        for extra in actors[len(todo):]:  # more workers than shards left
            ray.kill(extra)
        actors = actors[: len(todo)]
        run_shards(ray, actors, spawn, todo, folder, index, channels, images, done, progress, on_shard)
        acc = np.concatenate([np.load(folder / f"{lo}-{hi}.npy", allow_pickle=False)
                              for lo, hi in sorted([*have, *todo])])
        fs3 = gd.finish_fs3(acc)
        gd.write_fs3(out, fs3)
        shutil.rmtree(folder, ignore_errors=True)
        return fs3
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass


def run_shards(ray: Any, actors: list[Any], spawn: Callable[[], Any], todo: list[tuple[int, int]], folder: Path,
                index: dict[tuple[int, int], int], channels: int, images: int, done: int,
                progress: Progress | None, on_shard: Callable[[ShardRecord], None] | None) -> None:
    """Hand the shards out, one at a time per actor, checkpointing each as it comes back.

    `actors` is updated in place as dead ones are replaced, so the caller can stop the
    ones left."""
    from ray.exceptions import RayActorError

    pending = collections.deque(todo)
    losses: collections.Counter[tuple[int, int]] = collections.Counter()
    busy: dict[Any, tuple[int, tuple[int, int]]] = {}  # result -> (actor slot, shard)

    def give(slot: int) -> tuple[int, int] | None:
        if not pending:
            return None
        shard = pending.popleft()
        busy[actors[slot].rows.remote(*shard)] = (slot, shard)
        return shard

    for slot in range(len(actors)):
        give(slot)
    while busy:
        ready, _ = ray.wait(list(busy), num_returns=1)
        slot, shard = busy.pop(ready[0])
        try:
            rows, pid, host = _get(ray, ready[0])
        except RayActorError:
            losses[shard] += 1
            if losses[shard] >= MAX_LOSSES_PER_SHARD:
                raise UserError(f"channels {shard[0]}-{shard[1]} lost their Ray worker {losses[shard]} times "
                                f"(out of memory?); the finished shards are kept in {folder}: run again to "
                                "resume") from None
            log.warning("the Ray worker computing channels %d-%d died; giving them to a new worker", *shard)
            try:
                ray.kill(actors[slot])
            except Exception:  # already gone
                pass
            actors[slot] = spawn()
            pending.appendleft(shard)
            give(slot)
            continue
        lo, hi = shard
        _atomic_write(folder / f"{lo}-{hi}.npy", functools.partial(_save_rows, rows=rows))
        done += hi - lo
        if progress:
            progress(done * images, channels * images)
        following = give(slot)
        if on_shard is not None:
            on_shard({"shard": index[shard], "lo": lo, "hi": hi, "worker_pid": pid, "host": host,
                      "redone": losses[shard], "next": following, "done": done, "total": channels})


def _get(ray: Any, refs: Any) -> Any:
    """ray.get, with what went wrong on a worker as this process's own error."""
    from ray.exceptions import RayTaskError

    try:
        return ray.get(refs)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise cause from None
        raise
