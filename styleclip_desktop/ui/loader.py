"""Loading the models in the background, so the window is up before torch is.

A plain thread does the work (there is no engine, and so no worker, until it finishes);
its progress goes to the status bar as a task with Cancel, and the finished engine is
handed to the state on the UI thread. A model that text edits need but that is missing
(CLIP, the relevance matrix) does not stop the editor: it opens with the generator alone
and says what is missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from styleclip_desktop.errors import Cancelled, ModelFileError
from styleclip_desktop.ui.jobs import Task, call_in_ui
from styleclip_desktop.ui.model_source import ModelSource
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)


def pick_device(want: str) -> Any:
    import torch

    if want == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if want == "cuda":
        log.warning("CUDA was requested but no usable NVIDIA GPU was found; running on the CPU")
    return torch.device("cpu")


def load_engine(source: ModelSource, progress: Callable[[int, int, str], None],
                cancelled: Callable[[], bool], **engine_options: Any) -> tuple[Any, list[str]]:
    """(engine, notices). Raises ModelFileError when there is no usable generator."""
    progress(0, 0, "Loading PyTorch…")
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.render import session
    from styleclip_desktop.render.mapper_install import installed_mapper_loader
    from styleclip_desktop.render.pipeline import ModelSet
    from styleclip_desktop.ui.engines import make_engine
    from styleclip_desktop.weights.synthetic import is_synthetic_generator

    def step(done: int, message: str) -> None:
        if cancelled():
            raise Cancelled()
        progress(done, 4, message)

    device = pick_device(source.device)
    mp = source.model_paths()
    step(0, "Loading the generator…")
    G = session.load_generator(mp, device)
    models = ModelSet(G=G, identities={"generator": str(getattr(G, "source_sha256", ""))},
                      synthetic=is_synthetic_generator(G),
                      mapper_loader=installed_mapper_loader(mp.models_dir, device))
    notices: list[str] = []
    try:
        step(1, "Loading the global-direction matrix…")
        models.fs3 = gd.load_fs3(session.fs3_path(mp, G), G)
        step(2, "Style statistics…")
        models.stats = session.ensure_stats(G, lambda d, t: progress(d, t, "Style statistics…"), cancelled,
                                            mp.models_dir)
        step(3, "Loading CLIP…")
        models.clip = session.load_clip(mp, device)
        models.identities["clip"] = str(models.clip.model_hash)
    except ModelFileError as exc:
        models.fs3 = models.stats = models.clip = None
        notices.append(f"Text edits are unavailable: {exc}")
    step(4, "Starting the render engine…")
    engine = make_engine(models, device, **engine_options)
    notices += list(getattr(engine, "notices", []) or [])
    return engine, notices


class ModelLoader(QObject):
    """Loads `source` on a thread; `finished(engine, notices)` or `failed(message)` on the UI thread."""

    finished = Signal(object, list)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, state: EditorState, parent: QObject | None = None,
                 engine_options: dict[str, Any] | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.engine_options = dict(engine_options or {})
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: Task | None = None
        self.source: ModelSource | None = None
        self._installed: Any = None  # the engine this loader made; one handed in belongs to the caller

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, source: ModelSource) -> None:
        if self.running:
            self._cancel.set()
        self.source = source
        cancel = self._cancel = threading.Event()
        task = self._task = self.state.tasks.begin("Loading models…", cancel=cancel.set)

        def run() -> None:
            try:
                engine, notices = load_engine(
                    source, lambda d, t, m: self.state.tasks.update(task, d, t, m), cancel.is_set,
                    **self.engine_options)
            except Cancelled:
                call_in_ui(lambda: self._end(task, self.cancelled.emit))
            except Exception as exc:
                message = str(exc) if isinstance(exc, ModelFileError) else f"Loading the models failed: {exc}"
                log.error("loading models failed", exc_info=exc)
                call_in_ui(lambda: self._end(task, lambda: self.failed.emit(message)))
            else:
                if cancel.is_set():
                    engine.shutdown()
                    call_in_ui(lambda: self._end(task, self.cancelled.emit))
                else:
                    call_in_ui(lambda: self._end(task, lambda: self._install(engine, notices)))

        self._thread = threading.Thread(target=run, name="model-loader", daemon=True)
        self._thread.start()

    def _end(self, task: Task, then: Callable[[], None]) -> None:
        self.state.tasks.end(task)
        then()

    def _install(self, engine: Any, notices: list[str]) -> None:
        previous = self._installed
        old, self._installed = self.state.engine, engine
        self.state.set_engine(engine)
        if old is not None and old is not engine and old is previous:
            # Off the UI thread: shutting down waits for the old engine's running job.
            threading.Thread(target=old.shutdown, name="engine-shutdown", daemon=True).start()
        self.finished.emit(engine, notices)

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
