"""The panels' one door to the render engine.

Renders, precomputes and small queries run on the engine's worker thread; their results
come back to the UI thread through a queued Qt signal, so a slow CPU render never freezes
a slider. One link is shared by every panel of an editor state, which lets a full render
replace a preview that another panel asked for, and lets late previews be dropped instead
of overwriting a newer picture.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.ui.panels.widgets import SLIDER_STEPS_PER_UNIT, alpha_range
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)

PREVIEW_KEY = "preview"
RENDER_KEY = "render"

ResultFn = Callable[[Any], None]
ErrorFn = Callable[[BaseException], None]


def image_of(result: Any) -> Any:
    """Engines may hand back the pixels or an object that carries them."""
    return getattr(result, "image", result)


def user_message(exc: BaseException, what: str) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{what} failed: {text[0] if text else type(exc).__name__}"


def is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled | concurrent.futures.CancelledError)


class EngineLink(QObject):
    """Submits engine work for the panels and delivers results on the UI thread."""

    _deliver = Signal(object)  # a zero-argument callable to run on the UI thread

    def __init__(self, state: EditorState) -> None:
        super().__init__(state)
        self.state = state
        self._deliver.connect(self._run, Qt.ConnectionType.QueuedConnection)
        self._seq = 0
        self._shown_seq = 0
        self._preview_job: Any = None
        self._precompute_job: Any = None
        self._precompute_key: object = None
        # Any change may make the current layer's swept alpha axis stale: ask for it again
        # once the change is done (one event-loop turn later, so a burst asks once).
        self._sweep_timer = QTimer(self)
        self._sweep_timer.setSingleShot(True)
        self._sweep_timer.setInterval(0)
        self._sweep_timer.timeout.connect(self.sweep_current)
        for signal in ("document_changed", "current_layer_changed", "document_replaced", "engine_changed"):
            emitter = getattr(state, signal, None)
            if emitter is not None:
                emitter.connect(lambda *_args: self._sweep_timer.start())

    @classmethod
    def of(cls, state: EditorState) -> EngineLink:
        """The link shared by all panels of `state` (created on first use)."""
        link = getattr(state, "_panels_engine_link", None)
        if not isinstance(link, EngineLink):
            link = cls(state)
            state._panels_engine_link = link  # type: ignore[attr-defined]
        return link

    # -- plumbing ----------------------------------------------------------------------

    @property
    def engine(self) -> Any:
        return self.state.engine

    @property
    def paste_back(self) -> bool:
        """Show the edit inside the photo or as the aligned crop, as the editor chose."""
        return bool(getattr(self.state, "paste_back", False))

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the UI thread soon; safe to call from any thread."""
        try:
            self._deliver.emit(fn)
        except RuntimeError:  # the editor closed while a job was still running
            log.debug("result arrived after the editor closed")

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a failing panel callback must not take the event loop down
            log.exception("panel callback failed")

    def watch(self, job: Any, on_result: ResultFn, on_error: ErrorFn | None = None,
              on_cancel: Callable[[], None] | None = None) -> None:
        """Call `on_result(value)`, `on_error(exc)` or `on_cancel()` on the UI thread when
        `job` ends. Cancellations are silent by default: a superseded preview is not news."""
        future = getattr(job, "future", job)

        def done(f: concurrent.futures.Future[Any]) -> None:
            exc = None if f.cancelled() else f.exception()
            if f.cancelled() or (exc is not None and is_cancellation(exc)):
                if on_cancel is not None:
                    self.call_in_ui(on_cancel)
            elif exc is None:
                value = f.result()
                self.call_in_ui(lambda: on_result(value))
            else:
                self.call_in_ui(lambda: (on_error or self._report)(exc))

        future.add_done_callback(done)

    def _report(self, exc: BaseException) -> None:
        self.state.error.emit(user_message(exc, "Rendering"))

    def run_in_worker(self, fn: Callable[[], Any], on_result: ResultFn, *, key: str | None = None,
                      on_error: ErrorFn | None = None, background: bool = False) -> Any:
        """Run a quick engine query off the UI thread (inline when the engine has no worker);
        `background` work yields to renders and exports (the worker's lowest priority)."""
        worker = getattr(self.engine, "worker", None)
        submit = getattr(worker, "submit", None)
        if submit is None:
            try:
                value = fn()
            except Exception as exc:
                (on_error or self._report)(exc)
                return None
            on_result(value)
            return None
        from styleclip_desktop.render.worker import Priority

        job = submit(lambda _ctx: fn(), Priority.PRECOMPUTE if background else Priority.INTERACTIVE, key=key)
        self.watch(job, on_result, on_error)
        return job

    # -- renders -----------------------------------------------------------------------

    def request_render(self, preview: bool) -> None:
        """Show the document as it stands now: through the editor's own render request
        when it has one (it owns the canvas), else straight from the engine."""
        request = getattr(self.state, "request_render", None)
        if callable(request):
            request(preview=preview)
        else:
            self.render(None, preview=preview)

    def render(self, alphas: Mapping[str, float] | None, *, preview: bool,
               on_image: ResultFn | None = None) -> Any:
        """Render the document (with per-layer alphas overriding the static ones, for
        timeline frames) and show it through `render_ready`. Returns the job, or None
        when there is nothing to render with."""
        engine, doc = self.engine, self.state.document
        submit = getattr(engine, "submit_render", None)
        if submit is None or doc is None:
            return None
        if not preview and self._preview_job is not None:
            # The full render supersedes whatever preview is still waiting.
            self._preview_job.cancel()
            self._preview_job = None
        try:
            job = submit(doc, dict(alphas) if alphas is not None else None, preview=preview,
                         paste_back=self.paste_back, key=PREVIEW_KEY if preview else RENDER_KEY)
        except Exception as exc:
            self._report(exc)
            return None
        if preview:
            self._preview_job = job
        self._seq += 1
        seq = self._seq

        def shown(result: Any) -> None:
            if seq < self._shown_seq:
                return  # a newer picture is already on screen
            self._shown_seq = seq
            image = image_of(result)
            if hasattr(self.state, "image"):
                self.state.image = image  # keep "the picture on screen" true for the other views
            self.state.render_ready.emit(image, preview)
            if on_image is not None:
                on_image(image)

        self.watch(job, shown)
        return job

    def sweep_current(self) -> Any:
        """Have the engine render the current layer's alpha axis ahead over its slider's
        range (a drag then shows blended neighbours at once); the engine keeps a sweep that
        is still current and supersedes a stale one. Returns the sweep's job, if any."""
        sweeps = getattr(self.engine, "sweeps", None)
        doc, layer_id = self.state.document, getattr(self.state, "current_layer_id", "")
        if sweeps is None:
            return None
        if doc is None or not layer_id or layer_id not in doc.layers:
            sweeps.cancel()
            return None
        from styleclip_desktop.render.prefetch import AxisRange

        lo, hi = alpha_range(doc.layers.get(layer_id).kind)
        alphas = getattr(self.state, "playhead_alphas", lambda: None)()
        try:
            return sweeps.sweep(self.engine.snapshot(doc), layer_id, AxisRange(lo, hi, SLIDER_STEPS_PER_UNIT), alphas)
        except Exception:  # rendering ahead is a courtesy: the renders the user asks for report problems
            log.debug("alpha sweep not started", exc_info=True)
            return None

    def show_cached(self, alphas: Mapping[str, float]) -> bool:
        """Show a frame at once, on this thread, when the engine's frame cache already has
        it at full resolution (precomputed): scrubbing then never waits for the worker,
        which may be busy precomputing. False when it is not cached."""
        engine, doc = self.engine, self.state.document
        is_cached, render = getattr(engine, "is_cached", None), getattr(engine, "render", None)
        if is_cached is None or render is None or doc is None:
            return False
        try:
            if not is_cached(doc, alphas, preview=False):
                return False
            image = image_of(render(doc, dict(alphas), preview=False, paste_back=self.paste_back))
        except Exception:  # not cached after all, or gone: the worker will render it
            log.debug("cached frame unavailable", exc_info=True)
            return False
        self._seq += 1
        self._shown_seq = self._seq
        if hasattr(self.state, "image"):
            self.state.image = image
        self.state.render_ready.emit(image, False)
        return True

    def precompute(self, alphas_list: Sequence[Mapping[str, float]], cache_key: object) -> Any:
        """Fill the engine's frame cache for these frames, once per `cache_key` (e.g. the
        document revision): scrubbing then mostly shows cached frames."""
        engine, doc = self.engine, self.state.document
        precompute = getattr(engine, "precompute", None)
        if precompute is None or doc is None or not alphas_list:
            return None
        if cache_key == self._precompute_key and self._precompute_job is not None:
            return self._precompute_job
        if self._precompute_job is not None:
            self._precompute_job.cancel()
        try:
            job = precompute(doc, [dict(a) for a in alphas_list], paste_back=self.paste_back)
        except Exception as exc:
            self._report(exc)
            return None
        self._precompute_job, self._precompute_key = job, cache_key
        self.watch(job, lambda _result: None)
        return job
