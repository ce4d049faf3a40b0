"""Getting results from background threads back onto the UI thread, and long tasks.

Widgets may only be touched on the UI thread, while models load, photos import and
renders run on other threads. `call_in_ui` hands a callable to the UI thread through a
queued signal; it does not need an asyncio loop, so the same code runs under the app's
qasync loop and under pytest-qt. `watch` does the same for a job's future.

A `Task` is anything long that the status bar should show: a message, progress and,
when it can be stopped, a cancel callback.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot

from styleclip_desktop.errors import Cancelled

log = logging.getLogger(__name__)


class _Dispatcher(QObject):
    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        # Queued explicitly: the slot must run in this object's (the UI) thread whatever
        # thread emits.
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # handed to sys.excepthook, which shows a dialog and logs it
            import sys

            sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]


_dispatcher: _Dispatcher | None = None
_lock = threading.Lock()


def _get_dispatcher() -> _Dispatcher:
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            app = QCoreApplication.instance()
            if app is None:
                raise RuntimeError("call_in_ui needs a QApplication")
            _dispatcher = _Dispatcher()
            _dispatcher.moveToThread(app.thread())
        return _dispatcher


def call_in_ui(fn: Callable[[], None]) -> None:
    """Run `fn` on the UI thread soon; safe from any thread."""
    try:
        _get_dispatcher().call.emit(fn)
    except RuntimeError:  # the application is shutting down
        log.debug("dropped a UI callback during shutdown")


def is_cancellation(exc: BaseException | None) -> bool:
    return isinstance(exc, Cancelled | concurrent.futures.CancelledError)


def watch(job: Any, on_result: Callable[[Any], None], on_error: Callable[[BaseException], None] | None = None,
          on_cancel: Callable[[], None] | None = None, owner: QObject | None = None) -> None:
    """Call one of the callbacks on the UI thread when `job` (a worker Job or a Future) ends.
    Nothing is called once `owner` has been deleted (a window closed while its job ran)."""
    future: concurrent.futures.Future[Any] = getattr(job, "future", job)

    def deliver(fn: Callable[[], None]) -> None:
        if owner is None:
            call_in_ui(fn)
        else:
            call_in_ui(lambda: fn() if shiboken6.isValid(owner) else None)

    def done(f: concurrent.futures.Future[Any]) -> None:
        exc = None if f.cancelled() else f.exception()
        if f.cancelled() or is_cancellation(exc):
            if on_cancel is not None:
                deliver(on_cancel)
        elif exc is not None:
            if on_error is not None:
                deliver(lambda: on_error(exc))
            else:
                log.error("background job failed: %s", exc, exc_info=exc)
        else:
            value = f.result()
            deliver(lambda: on_result(value))

    future.add_done_callback(done)


_ids = itertools.count(1)


@dataclass
class Task:
    """One long operation shown in the status bar."""

    message: str
    cancel: Callable[[], None] | None = None
    done: int = 0
    total: int = 0  # 0: indeterminate
    id: int = field(default_factory=lambda: next(_ids))
    started: float = field(default_factory=time.monotonic)


class TaskList(QObject):
    """The long operations in progress; the newest one is the one the status bar shows."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: dict[int, Task] = {}

    def begin(self, message: str, cancel: Callable[[], None] | None = None) -> Task:
        task = Task(message, cancel)
        self._tasks[task.id] = task
        self.changed.emit()
        return task

    def update(self, task: Task, done: int, total: int, message: str | None = None) -> None:
        """Record progress; callable from any thread."""

        def apply() -> None:
            if task.id not in self._tasks:
                return
            task.done, task.total = int(done), int(total)
            if message:
                task.message = message
            self.changed.emit()

        if threading.current_thread() is threading.main_thread():
            apply()
        else:
            call_in_ui(apply)

    def end(self, task: Task) -> None:
        if self._tasks.pop(task.id, None) is not None:
            self.changed.emit()

    def current(self) -> Task | None:
        return max(self._tasks.values(), key=lambda t: t.started, default=None)

    def cancel_current(self) -> None:
        task = self.current()
        if task is not None and task.cancel is not None:
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)
