"""A batch on a Ray cluster: one actor per GPU (or per few CPU cores), each holding the
models, photos handed out one at a time.

The actors run the same `BatchWorker` as a local batch, so a photo gives the same
images on either path, and the driver keeps the manifest exactly as a local batch does.
An actor that dies (its machine lost, its process killed, out of memory) is replaced and
the photo it held is given out again; its outputs were written atomically, so nothing
half-written stays behind, and the manifest records each photo once. A photo that kills
two workers is recorded as failed, so one bad file cannot stall the batch.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

from styleclip_desktop.batch.manifest import FAILED, BatchItem
from styleclip_desktop.batch.recipe import Recipe
from styleclip_desktop.batch.worker import BatchWorker, WorkerConfig
from styleclip_desktop.cluster import cluster_resources, connect, worker_room
from styleclip_desktop.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_CPUS_PER_WORKER = 4
MAX_DEATHS_PER_PHOTO = 2


@dataclasses.dataclass(frozen=True)
class Placement:
    """How many actors, and what each asks of the cluster."""

    workers: int
    cpus: int
    gpus: int
    device: str



def placement(ray: Any, workers: int | None, cpus_per_worker: int | None, want_gpu: bool = True) -> Placement:
    """One actor per GPU when the cluster has GPUs; else one per `cpus_per_worker` cores
    (default 4, or the cores shared evenly among `workers`). Never more actors than the
    cluster's machines can hold at once: the others would wait for ever, and their photos
    with them."""
    resources = cluster_resources()
    cpus = int(resources.get("CPU", 0))
    gpus = int(resources.get("GPU", 0)) if want_gpu else 0
    if cpus < 1:
        raise UserError("the Ray cluster has no CPU to run on")
    if gpus:
        n = workers or gpus
        cpw = cpus_per_worker or max(1, min(DEFAULT_CPUS_PER_WORKER, cpus // n))
        room = min(gpus, worker_room(ray, cpw))
    else:
        cpw = cpus_per_worker or (max(1, cpus // workers) if workers else min(DEFAULT_CPUS_PER_WORKER, cpus))
        n = workers or max(1, cpus // cpw)
        room = worker_room(ray, cpw)
    if room < 1:
        raise UserError(f"no machine of the Ray cluster has {cpw} CPU cores for a worker "
                        f"(the cluster has {cpus} in all); pass a smaller --cpus-per-worker")
    if n > room:
        log.warning("the Ray cluster has room for %d workers of %d cores; starting %d", room, cpw, room)
    return Placement(min(n, room), cpw, 1 if gpus else 0, "cuda" if gpus else "cpu")


class RayExecutor:
    """The batch executor of `--ray`: see the module's docstring."""

    def __init__(self, config: WorkerConfig, recipe: Recipe, *, address: str | None = "auto",
                 workers: int | None = None, cpus_per_worker: int | None = None, ship_files: bool = False,
                 num_cpus: int | None = None) -> None:
        self.ray = connect(address, num_cpus=num_cpus)
        self.place = placement(self.ray, workers, cpus_per_worker, want_gpu=config.device != "cpu")
        self.config = dataclasses.replace(config, device=self.place.device, threads=self.place.cpus,
                                          return_files=ship_files or config.return_files)
        self.recipe = recipe
        self.ship_files = ship_files
        self.workers = self.place.workers
        self.redone = 0  # photos given out again after their worker died
        self._actor_class = self.ray.remote(num_cpus=self.place.cpus, num_gpus=self.place.gpus)(BatchWorker)
        self.actors: list[Any] = []
        self.pids: dict[int, int] = {}  # id(actor) -> its process id
        self._start([self._spawn() for _ in range(self.workers)])

    def _spawn(self) -> Any:
        # The models are sent once to the object store and shared by every actor made from them.
        return self._actor_class.remote(self.config, self.recipe)

    def _start(self, actors: list[Any]) -> None:
        """Wait for new actors to load their models; a worker that cannot is a one-line error."""
        infos = []
        for actor in actors:
            try:
                infos.append(self.ray.get(actor.info.remote()))
            except Exception as exc:
                for a in actors:
                    self.ray.kill(a)
                raise UserError(f"a Ray worker could not start: {_cause(exc)}") from None
        for actor, info in zip(actors, infos, strict=True):
            self.actors.append(actor)
            self.pids[id(actor)] = int(info["pid"])

    def worker_pids(self) -> list[int]:
        """The process ids of the live actors (on this machine's cluster: real processes here)."""
        return [self.pids[id(a)] for a in self.actors if id(a) in self.pids]

    def _replace(self, dead: Any) -> Any:
        self.actors = [a for a in self.actors if a is not dead]
        self.pids.pop(id(dead), None)
        try:
            self.ray.kill(dead)
        except Exception:  # already gone
            pass
        fresh = self._spawn()
        self._start([fresh])
        return fresh

    def run(self, items: Iterator[BatchItem], stop: Callable[[], bool]) -> Iterator[dict[str, Any]]:
        from ray.exceptions import RayActorError, RayTaskError

        queue = collections.deque(items)
        deaths: collections.Counter[str] = collections.Counter()
        idle = list(self.actors)
        busy: dict[Any, tuple[Any, BatchItem]] = {}
        while queue or busy:
            while queue and idle and not stop():
                actor, item = idle.pop(), queue.popleft()
                busy[actor.process.remote(item.with_data() if self.ship_files else item)] = (actor, item)
            if not busy:
                return
            ready, _ = self.ray.wait(list(busy), num_returns=1)
            actor, item = busy.pop(ready[0])
            try:
                record = self.ray.get(ready[0])
            except RayActorError:
                deaths[item.key] += 1
                log.warning("the Ray worker doing %s died; %s", item.name,
                            "giving the photo to another" if deaths[item.key] < MAX_DEATHS_PER_PHOTO else "giving up")
                idle.append(self._replace(actor))
                if deaths[item.key] < MAX_DEATHS_PER_PHOTO:
                    self.redone += 1
                    queue.appendleft(item)
                else:
                    yield _failed(item, f"its worker died {MAX_DEATHS_PER_PHOTO} times (out of memory?)")
                continue
            except RayTaskError as exc:  # process() itself never raises for a bad photo; this is a defect
                idle.append(actor)
                yield _failed(item, f"internal error on a Ray worker ({_cause(exc)})")
                continue
            idle.append(actor)
            yield record

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        self.actors = []


def _failed(item: BatchItem, reason: str) -> dict[str, Any]:
    return {"key": item.key, "input": item.path, "sha256": item.sha256, "index": item.index,
            "status": FAILED, "reason": reason}


def _cause(exc: BaseException) -> str:
    """What went wrong on the worker, in one line, without Ray's wrapping."""
    from styleclip_desktop.nets.checkpoint import one_line

    cause = getattr(exc, "cause", None) or exc.__cause__
    if isinstance(cause, BaseException) and str(cause):
        return one_line(cause)
    # An actor that failed to start says so inside a long text: its error's own line.
    useful = [line for line in str(exc).splitlines() if "Error:" in line or "error:" in line]
    return one_line(useful[-1].strip() if useful else exc)
