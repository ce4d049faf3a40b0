"""Driving a batch: which photos still need doing, who does them, and the manifest.

`run_batch` is the one loop every front end uses (the `batch` command, File > Batch
Apply..., the benchmark). It plans the items (hashing each photo), skips the ones the
manifest says are finished, hands the rest to an executor and records each result as it
comes back. Executors differ only in where `BatchWorker.process` runs:

- `InProcess`: in this process (one worker; the GUI and the simplest case);
- `LocalPool`: N worker processes on this machine;
- `cluster.ray_batch.RayExecutor`: actors on a Ray cluster (`--ray`).

Each keeps at most one photo per worker in flight, so a stop request (Ctrl+C, Cancel)
takes effect after the photos under way: they finish and are recorded, nothing else
starts, and the manifest is left ready to resume.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from styleclip_desktop.batch.manifest import (
    DONE,
    FAILED,
    BatchItem,
    Manifest,
    check_names,
    collect_photos,
    plan_items,
)
from styleclip_desktop.batch.recipe import Recipe
from styleclip_desktop.batch.worker import BatchWorker, WorkerConfig

StopCheck = Callable[[], bool]


class Executor(Protocol):
    workers: int

    def run(self, items: Iterator[BatchItem], stop: StopCheck) -> Iterator[dict[str, Any]]:
        """Records of the items, as they finish; no new item starts once `stop()` is true."""
        ...

    def close(self) -> None: ...


@dataclass
class BatchSummary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # finished by an earlier run
    skipped_failed: int = 0  # of those, the ones that failed then (retried with retry_failed)
    stopped: bool = False
    halted: str = ""  # why the batch stopped by itself (a full disk), else ""
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    records: list[dict[str, Any]] = field(default_factory=list)  # this run's, in finishing order

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.skipped

    def line(self, outdir: Path) -> str:
        parts = [f"{self.done} done", f"{self.failed} failed"]
        if self.skipped:
            earlier = f", {self.skipped_failed} of them failed" if self.skipped_failed else ""
            parts.append(f"{self.skipped} finished before{earlier}")
        if self.stopped:
            why = f"stopped: {self.halted}; " if self.halted else ""
            parts.append(f"{self.remaining} left ({why}run the same command again to resume)")
        return f"{self.total} photo{'s' if self.total != 1 else ''}: {', '.join(parts)} -> {outdir / 'manifest.jsonl'}"


class InProcess:
    """One worker in the calling process."""

    workers = 1

    def __init__(self, config: WorkerConfig, recipe: Recipe, cancelled: StopCheck | None = None) -> None:
        self.worker = BatchWorker(config, recipe)
        self.cancelled = cancelled  # a hard stop: abandon the photo under way (the GUI's Cancel)

    def run(self, items: Iterator[BatchItem], stop: StopCheck) -> Iterator[dict[str, Any]]:
        for item in items:
            if stop():
                return
            yield self.worker.process(item, cancelled=self.cancelled)

    def close(self) -> None:
        self.worker.close()


_pool_worker: BatchWorker | None = None


def _pool_init(config: WorkerConfig, recipe: Recipe) -> None:
    global _pool_worker
    # The terminal's Ctrl+C reaches the whole process group: the driver decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pool_worker = BatchWorker(config, recipe)


def _pool_process(item: BatchItem) -> dict[str, Any]:
    assert _pool_worker is not None
    return _pool_worker.process(item)


class LocalPool:
    """N worker processes on this machine, each with its own models."""

    def __init__(self, config: WorkerConfig, recipe: Recipe, workers: int) -> None:
        self.workers = workers
        self.config = config
        self.recipe = recipe
        self.pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_pool_init, initargs=(self.config, self.recipe))

    def run(self, items: Iterator[BatchItem], stop: StopCheck) -> Iterator[dict[str, Any]]:
        from concurrent.futures.process import BrokenProcessPool

        queue = list(items)
        queue.reverse()
        running: dict[cf.Future[dict[str, Any]], BatchItem] = {}
        retried: set[str] = set()
        while queue or running:
            while queue and len(running) < self.workers and not stop():
                item = queue.pop()
                running[self.pool.submit(_pool_process, item)] = item
            if not running:
                return
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in finished:
                item = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken = True
                    if item.key in retried:  # it killed its worker twice: record why and go on
                        yield {"key": item.key, "input": item.path, "sha256": item.sha256, "index": item.index,
                               "status": FAILED, "reason": "its worker process died twice (out of memory?)"}
                    else:
                        retried.add(item.key)
                        queue.append(item)
            if broken:
                # A dead process takes the whole pool with it: the photos it held are redone.
                for fut, item in running.items():
                    fut.cancel()
                    retried.add(item.key)
                    queue.append(item)
                running.clear()
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def prepare(recipe: Recipe, photos: Sequence[str | os.PathLike[str]]) -> list[BatchItem]:
    """The batch's items, hashed and checked for output-name clashes, before any model loads."""
    files = collect_photos(photos)
    items = plan_items(files, recipe.digest)
    check_names(items, recipe.outputs)
    return items


def run_batch(recipe: Recipe, items: Sequence[BatchItem], outdir: Path, executor_factory: Callable[[], Executor],
              *, stop: StopCheck = lambda: False, retry_failed: bool = False,
              progress: Callable[[int, int], None] | None = None,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> BatchSummary:
    """Process the items not yet finished in `outdir`'s manifest with the executor that
    `executor_factory` makes (only made when there is work); returns what happened."""
    t0 = time.perf_counter()
    summary = BatchSummary(total=len(items))
    with Manifest(outdir) as manifest:
        pending = []
        for item in items:
            record = manifest.finished(item, retry_failed)
            if record is None:
                pending.append(item)
                continue
            summary.skipped += 1
            summary.skipped_failed += record["status"] == FAILED
        if progress:
            progress(summary.skipped, summary.total)
        if pending and not stop():
            executor = executor_factory()
            halted: list[str] = []

            def stopping() -> bool:
                return bool(halted) or stop()

            try:
                for record in executor.run(iter(pending), stopping):
                    if record.get("transient") == "disk full":
                        halted.append(str(record.get("reason")))
                        summary.halted = str(record.get("reason"))
                    _write_returned_files(record, outdir)
                    manifest.append(record)
                    summary.records.append(record)
                    if record["status"] == DONE:
                        summary.done += 1
                    else:
                        summary.failed += 1
                        summary.failures.append((str(record.get("input")), str(record.get("reason", "?"))))
                    if progress:
                        progress(summary.total - summary.remaining, summary.total)
                    if on_record:
                        on_record(record)
            finally:
                executor.close()
                _sweep_temporaries(pending, recipe, outdir)
    summary.stopped = summary.remaining > 0
    summary.seconds = time.perf_counter() - t0
    return summary


def _write_returned_files(record: dict[str, Any], outdir: Path) -> None:
    """Files a worker sent back instead of writing them (workers without OUTDIR)."""
    files = record.pop("files", None)
    if not files:
        return
    from styleclip_desktop.export.source import staged_file

    for name, data in files.items():
        target = outdir / Path(name).name
        with staged_file(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())


def _sweep_temporaries(items: Sequence[BatchItem], recipe: Recipe, outdir: Path) -> None:
    """Remove what a worker killed mid-write left beside its outputs (its write's lock is
    gone with it, so a write still under way is never touched)."""
    from styleclip_desktop.batch.manifest import output_names
    from styleclip_desktop.document.atomic import remove_stale_temporaries_of

    names = {name for item in items for name in output_names(item, recipe.outputs, 1)}
    for name in sorted(names):
        remove_stale_temporaries_of(outdir / name, staged=True, stale_after=0)
