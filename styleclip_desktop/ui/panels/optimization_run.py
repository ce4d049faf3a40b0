"""Running an optimization layer: a long job with live frames and a Cancel button.

The optimization itself lives in `styleclip_desktop.methods.optimization`; this module
only starts it on the engine's worker, relays its intermediate pictures to the layer row
and the canvas, and stores the resulting delta in the layer (one undo step) when it ends.
A cancelled run changes nothing.

The frames are aligned face crops. The canvas shows what View says: with the composite
view they are pasted back into the photo (on the worker) before they reach it, and a
frame made for the other view is dropped. When the run ends without a result (cancelled
or failed) the canvas shows the document again, rendered per View.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from styleclip_desktop.document import OptimizationParams, actions
from styleclip_desktop.render.worker import Priority
from styleclip_desktop.ui.panels.editing import refused_by_lock
from styleclip_desktop.ui.panels.engine_link import EngineLink, user_message
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)

FRAMES_PER_RUN = 20
CLIP_VIEW_RES = 256  # CLIP looks at 224 px: rendering larger only costs time


def optimization_available() -> bool:
    return importlib.util.find_spec("styleclip_desktop.methods.optimization") is not None


def _photo_view(engine: Any, doc: Any) -> Any:
    """What the worker may read to paste frames back into the photo (None without one)."""
    if getattr(doc, "source", None) is None or getattr(doc, "alignment", None) is None:
        return None
    take = getattr(engine, "snapshot", None)
    try:
        return take(doc) if callable(take) else None
    except Exception:
        log.debug("no snapshot of the document for live frames", exc_info=True)
        return None


def _models_of(engine: Any) -> Any:
    for holder in (engine, getattr(engine, "renderer", None), getattr(engine, "session", None)):
        models = getattr(holder, "models", None)
        if models is not None and getattr(models, "G", None) is not None:
            return models
    return None


class OptimizationRunner(QObject):
    started = Signal(str)
    progressed = Signal(str, int, int)
    frame = Signal(str, object)  # layer id, HxWx3 uint8
    finished = Signal(str, str)  # layer id, "" on success, else why it stopped

    def __init__(self, state: EditorState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.link = EngineLink.of(state)
        self._jobs: dict[str, Any] = {}
        self._cancelled: set[str] = set()  # runs asked to stop: whatever they return is dropped

    def running(self, layer_id: str) -> bool:
        return layer_id in self._jobs

    def cancel(self, layer_id: str) -> None:
        job = self._jobs.get(layer_id)
        if job is not None:
            self._cancelled.add(layer_id)
            job.cancel()

    def cancel_all(self) -> None:
        for layer_id in list(self._jobs):
            self.cancel(layer_id)

    def start(self, layer_id: str) -> bool:
        doc, engine = self.state.document, self.state.engine
        if doc is None or layer_id in self._jobs or layer_id not in doc.layers:
            return False
        layer = doc.layers.get(layer_id)
        params = layer.params
        if not isinstance(params, OptimizationParams):
            return False
        if engine is None:
            self.state.error.emit("Load the models before running an optimization.")
            return False
        if not optimization_available():
            self.state.error.emit("Latent optimization is not available in this version.")
            return False

        composite = getattr(getattr(engine, "renderer", None), "composite", None)
        photo_doc = _photo_view(engine, doc)

        def on_frame(frame: Any) -> None:  # on the worker thread
            face = getattr(frame, "image", frame)
            pasted = bool(self.state.paste_back)
            shown = face
            if pasted and composite is not None and photo_doc is not None:
                try:
                    shown = composite(photo_doc, np.asarray(face))
                except Exception:  # a live frame is a courtesy: keep the run going without it
                    log.debug("could not paste a live frame back", exc_info=True)
                    return
            self.link.call_in_ui(lambda: self._show_frame(layer_id, face, shown, pasted))

        try:
            job = self._submit(engine, doc, layer_id, params, on_frame)
        except Exception as exc:
            self.state.error.emit(user_message(exc, "Optimization"))
            return False
        if job is None:
            self.state.error.emit("This engine cannot run latent optimization.")
            return False
        self._jobs[layer_id] = job
        if hasattr(job, "on_progress"):
            job.on_progress(lambda done, total, _msg="": self.link.call_in_ui(
                lambda: self._progress(layer_id, done, total)))
        self.link.watch(job, lambda result: self._done(layer_id, result),
                        lambda exc: self._failed(layer_id, exc), lambda: self._end(layer_id, "cancelled"))
        self.started.emit(layer_id)
        return True

    def _submit(self, engine: Any, doc: Any, layer_id: str, params: OptimizationParams, on_frame: Any) -> Any:
        own = getattr(engine, "submit_optimization", None)
        if callable(own):
            return own(doc, layer_id, on_frame=on_frame)
        models, worker = _models_of(engine), getattr(engine, "worker", None)
        if models is None or getattr(models, "clip", None) is None or worker is None:
            return None
        renderer = getattr(engine, "renderer", None)
        start = np.array(doc.latent, dtype=np.float32)

        def work(ctx: Any) -> Any:
            from styleclip_desktop.methods import optimization as opt

            tuned = getattr(renderer, "generator_for", None)
            G = tuned(doc) if tuned is not None else models.G
            res = getattr(G.config, "resolutions", [])
            config = opt.OptimizationConfig(
                steps=params.steps, lambda_l2=params.lambda_l2, lambda_id=params.lambda_id, seed=params.seed,
                clip_input=params.clip_input, result=params.result, keep=params.keep,
                lambda_keep=params.lambda_keep,
                frame_every=max(1, params.steps // FRAMES_PER_RUN),
                out_res=CLIP_VIEW_RES if CLIP_VIEW_RES in res and CLIP_VIEW_RES < G.config.resolution else None)
            return opt.optimize_latent(
                G, models.clip, params.prompt, start, config, arcface=getattr(models, "arcface", None),
                progress=lambda done, total: ctx.progress(done, total, "Optimizing"),
                on_frame=on_frame, cancel=ctx.cancel_event)

        return worker.submit(work, Priority.EXPORT, key=f"optimize:{layer_id}")

    # -- results (UI thread) -------------------------------------------------------------

    def _show_frame(self, layer_id: str, face: Any, shown: Any, pasted: bool) -> None:
        if layer_id in self._jobs:
            self.frame.emit(layer_id, face)
            if pasted == bool(self.state.paste_back):  # a frame made for the other view is dropped
                self.state.render_ready.emit(shown, True)

    def _progress(self, layer_id: str, done: int, total: int) -> None:
        if layer_id in self._jobs:
            self.progressed.emit(layer_id, done, total)
            self.state.busy.emit("Optimizing", done, total)

    def _end(self, layer_id: str, message: str) -> None:
        if self._jobs.pop(layer_id, None) is None:
            return
        self._cancelled.discard(layer_id)
        self.state.busy.emit("", 1, 1)
        self.finished.emit(layer_id, message)
        if message:
            # The canvas showed the run's frames: put the document, unchanged, back on it.
            self.link.request_render(preview=False)

    def _failed(self, layer_id: str, exc: BaseException) -> None:
        message = user_message(exc, "Optimization")
        self.state.error.emit(message)
        self._end(layer_id, message)

    def _done(self, layer_id: str, result: Any) -> None:
        if getattr(result, "cancelled", False) or layer_id in self._cancelled:
            self._end(layer_id, "cancelled")
            return
        doc = self.state.document
        delta = getattr(result, "delta", result)
        if doc is None or layer_id not in doc.layers:
            self._end(layer_id, "the layer is gone")
            return
        if refused_by_lock(self.state, layer_id):
            self._end(layer_id, "the layer is locked")
            return
        delta = np.asarray(delta, dtype=np.float32)
        if delta.size != doc.latent.size:
            self._failed(layer_id, ValueError("the optimization did not produce a W+ offset"))
            return
        self.state.push(actions.set_params(doc, layer_id, delta=delta.reshape(doc.latent.shape)))
        # An empty edit is kept (the run did finish) but never passes for a result.
        notice = str(getattr(result, "notice", "") or "")
        if notice:
            self.state.error.emit(notice)
        self._end(layer_id, "unchanged" if notice else "")
        self.link.request_render(preview=False)
