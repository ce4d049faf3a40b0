"""One job thread that owns torch and ONNX Runtime, so the UI thread never waits on a render.

Jobs carry a priority (interactive preview > export > precompute), progress callbacks,
cooperative cancellation and error results. A job submitted with a `key` supersedes an
older job with the same key: a stale preview that has not started is dropped, never
rendered; one that is running is asked to cancel. Results arrive as
`concurrent.futures.Future`s, which asyncio (and so qasync) can await without blocking.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from styleclip_desktop.errors import Cancelled

log = logging.getLogger(__name__)
T = TypeVar("T")
ProgressFn = Callable[[int, int, str], None]


class Priority(enum.IntEnum):
    INTERACTIVE = 0
    EXPORT = 1
    PRECOMPUTE = 2


class JobContext:
    """Handed to the job function: report progress, and stop when asked."""

    def __init__(self, job: Job[Any], worker: Worker | None = None) -> None:
        self._job = job
        self._worker = worker

    def progress(self, done: int, total: int, message: str = "") -> None:
        for cb in list(self._job._progress):
            try:
                cb(done, total, message)
            except Exception:  # a broken listener must not kill the job
                log.exception("progress listener failed")

    def cancelled(self) -> bool:
        return self._job._cancel.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if the job was cancelled: call it between steps."""
        if self._job._cancel.is_set():
            raise Cancelled()

    def yield_to_higher(self) -> int:
        """Run queued jobs of a higher priority now, on this thread, then come back.

        A long low-priority job (precompute, export) calls this between steps, so a
        preview the user asks for meanwhile waits one step, not the whole job."""
        return self._worker.yield_to_higher() if self._worker is not None else 0

    @property
    def cancel_event(self) -> threading.Event:
        return self._job._cancel


class Job(Generic[T]):
    def __init__(self, fn: Callable[[JobContext], T], priority: Priority, key: str | None, seq: int) -> None:
        self.fn, self.priority, self.key, self.seq = fn, priority, key, seq
        self.future: Future[T] = Future()
        self._cancel = threading.Event()
        self._progress: list[ProgressFn] = []
        self.started = False

    def on_progress(self, cb: ProgressFn) -> Job[T]:
        self._progress.append(cb)
        return self

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; a job that has not started never runs."""
        self._cancel.set()
        if not self.started:
            self.future.cancel()

    def __lt__(self, other: Job[Any]) -> bool:
        return (self.priority, self.seq) < (other.priority, other.seq)


class Worker:
    """A single background thread running jobs by priority, then submission order."""

    def __init__(self, name: str = "render-worker") -> None:
        self._queue: list[Job[Any]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._by_key: dict[str, Job[Any]] = {}
        self._stop = False
        self.current: Job[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[JobContext], T], priority: Priority = Priority.INTERACTIVE,
               key: str | None = None, on_progress: ProgressFn | None = None) -> Job[T]:
        job: Job[T] = Job(fn, priority, key, next(self._seq))
        if on_progress is not None:
            job.on_progress(on_progress)
        with self._cond:
            if self._stop:
                raise RuntimeError("the render worker has shut down")
            if key is not None:
                old = self._by_key.get(key)
                if old is not None:
                    old.cancel()
                self._by_key[key] = job
            heapq.heappush(self._queue, job)
            self._cond.notify()
        return job

    def _next(self) -> Job[Any] | None:
        with self._cond:
            while True:
                while self._queue and self._queue[0].future.cancelled():
                    heapq.heappop(self._queue)
                if self._queue:
                    job = heapq.heappop(self._queue)
                    job.started = True
                    self.current = job
                    return job
                if self._stop:
                    return None
                self._cond.wait()

    def _run(self) -> None:
        while (job := self._next()) is not None:
            self._execute(job)
            with self._cond:
                self.current = None

    def _execute(self, job: Job[Any]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            if job._cancel.is_set():
                raise Cancelled()
            result = job.fn(JobContext(job, self))
        except BaseException as exc:  # errors travel to whoever awaits the job
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
        finally:
            with self._cond:
                if job.key is not None and self._by_key.get(job.key) is job:
                    del self._by_key[job.key]

    def yield_to_higher(self) -> int:
        """From inside a job on this worker: run the queued jobs more urgent than it, then
        return how many ran. Anywhere else it does nothing."""
        if threading.current_thread() is not self._thread or self.current is None:
            return 0
        return self._run_higher(self.current.priority)

    def _run_higher(self, priority: Priority) -> int:
        """Run queued jobs more urgent than `priority` inline (see `JobContext.yield_to_higher`)."""
        ran = 0
        while True:
            with self._cond:
                while self._queue and self._queue[0].future.cancelled():
                    heapq.heappop(self._queue)
                if not self._queue or self._queue[0].priority >= priority or self._stop:
                    return ran
                job = heapq.heappop(self._queue)
                job.started = True
                outer, self.current = self.current, job
            try:
                self._execute(job)
            finally:
                with self._cond:
                    self.current = outer
            ran += 1

    def pending(self) -> int:
        with self._cond:
            return sum(1 for j in self._queue if not j.future.cancelled())

    def shutdown(self, cancel_running: bool = True, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stop = True
            for job in self._queue:
                job.cancel()
            if cancel_running and self.current is not None:
                self.current.cancel()
            self._cond.notify_all()
        self._thread.join(timeout)


async def await_job(job: Job[T]) -> T:
    """Await a job from an asyncio (qasync) loop without blocking it."""
    return await asyncio.wrap_future(job.future)
