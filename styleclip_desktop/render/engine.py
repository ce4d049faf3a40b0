"""The render engine: the one object the GUI, the CLI and export ask for pixels.

It wraps the `Renderer` (stack -> S -> image, with its content caches), a backend
(ONNX Runtime or torch, chosen once and swapped when a background export finishes or
the GPU runs out of memory) and the job `Worker`. Rendering reads a `RenderState`
snapshot taken on the caller's thread, so the worker never sees a document the UI is
changing.

Preview strategy: while an alpha slider is dragged the GUI asks for `preview=True`, the
early exit of the synthesis network at `preview_resolution` (256 px for a 1024px
generator, on a GPU and on a CPU alike; see `default_preview_resolution`). Each new
request supersedes the waiting one under the same key, so a slow CPU never builds a
backlog. On release it asks for the full resolution. The current layer's alpha axis is
rendered ahead at the preview size (`sweeps`, see `prefetch`), so while a slider moves the
GUI shows a blend of the nearest swept frames at once, until the exact preview arrives.
Timeline keyframes and those sweeps are rendered ahead with `precompute` at the lowest
priority, yielding to previews between frames, so scrubbing mostly hits the frame cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.methods import global_directions as gd
from styleclip_desktop.render import onnx_export, stored_directions
from styleclip_desktop.render.backends import OnnxBackend, TorchBackend, cuda_usable, is_out_of_memory
from styleclip_desktop.render.pipeline import ModelSet, Renderer
from styleclip_desktop.render.prefetch import AxisSweeps
from styleclip_desktop.render.state import RenderState, snapshot
from styleclip_desktop.render.worker import Job, JobContext, Priority, Worker

if TYPE_CHECKING:
    from styleclip_desktop.document import Document

log = logging.getLogger(__name__)

Alphas = Mapping[str, float]
Size = int | tuple[int, int]
BACKENDS = ("auto", "onnx", "torch")


@dataclass(frozen=True)
class DirectionInfo:
    """What the GUI shows beside a global-direction layer while its text or beta is edited."""

    channels: int  # style channels that survive beta
    largest_beta: float  # any beta at or above this keeps no channel
    error: str | None = None


def default_preview_resolution(resolution: int, gpu: bool = False) -> int:
    """The early exit shown while dragging: a quarter of the side (256 at 1024px).

    The same on a CPU as on a GPU (`gpu` is kept for callers that pass it): a 256 exit
    costs about 0.4x a full render on a 2-core CPU, too slow to follow a slider by
    itself, but the alpha-axis sweep (`prefetch`) lets a drag show blended neighbours at
    once while the exact frame renders. Never below 16 px, never above full size.
    """
    return min(resolution, max(16, resolution // 4))


class Engine:
    """Renderer + backend + worker behind the API the GUI and export use."""

    def __init__(self, models: ModelSet, device: torch.device | str = "cpu", backend: str = "auto",
                 worker: Worker | None = None, *, onnx_dir: Path | None = None, background_export: bool = True,
                 preview_resolution: int | None = None, fp16: bool = True, frame_cache_mb: int = 512,
                 export_progress: Callable[[int, int, str], None] | None = None,
                 clip_graphs: bool | None = None) -> None:
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.notices: list[str] = []
        self.models = models
        self.device = self._resolve_device(device)
        self.device_label = "CUDA" if self.device.type == "cuda" else "CPU"
        self.renderer = Renderer(models, self.device, frame_cache_bytes=frame_cache_mb * 2**20)
        self.resolution = int(self.renderer.G.config.resolution)
        self.preview_resolution = int(preview_resolution or default_preview_resolution(
            self.resolution, gpu=self.device.type == "cuda"))
        if self.preview_resolution not in self.renderer.G.config.resolutions:
            raise UserError(f"the preview size must be one of {self.renderer.G.config.resolutions}")
        self.batch = 8 if self.device.type == "cuda" else 2
        self._fits: int | None = None  # the largest batch known to fit in GPU memory
        self.worker = worker or Worker()
        self._own_worker = worker is None
        self.onnx_dir = onnx_dir
        self.fp16 = fp16
        # CLIP's ONNX graphs by default only on a GPU: on a CPU they would hold a second copy
        # of CLIP's weights (about 530 MB at ViT-B/32) beside the torch model that serves
        # text and images anyway.
        self.clip_graphs = self.device.type == "cuda" if clip_graphs is None else clip_graphs
        self.sweeps = AxisSweeps(self)  # the current layer's alpha axis, rendered ahead for drags
        self.export_job: Job[OnnxBackend | None] | None = None
        self._exporter: Worker | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        if backend == "onnx":
            self._use(self._build_onnx(export=True, progress=export_progress))
        elif backend == "auto":
            ready = self._build_onnx(export=False)
            if ready is not None:
                self._use(ready)
            elif background_export:
                self.start_export(export_progress)

    # --- setup ---------------------------------------------------------------------------

    def _resolve_device(self, device: torch.device | str) -> torch.device:
        if str(device) == "auto":
            return torch.device("cuda" if cuda_usable() else "cpu")
        want = torch.device(device)
        if want.type == "cuda" and not cuda_usable():
            self.notices.append("CUDA was requested but no usable NVIDIA GPU was found; rendering on the CPU")
            return torch.device("cpu")
        return want

    @property
    def backend(self) -> Any:
        return self.renderer.backend

    @property
    def backend_label(self) -> str:
        return str(self.renderer.backend.label)

    def on_backend_changed(self, callback: Callable[[str], None]) -> None:
        """Call `callback(label)` (on the exporting thread) whenever the backend changes."""
        self._listeners.append(callback)

    def _use(self, backend: Any) -> None:
        if backend is None:
            return
        self.notices.extend(n for n in getattr(backend, "notices", ()) if n not in self.notices)
        self.renderer.backend = backend
        for cb in list(self._listeners):
            try:
                cb(backend.label)
            except Exception:  # a broken listener must not break rendering
                log.exception("backend listener failed")

    def _build_onnx(self, export: bool, progress: onnx_export.Progress | None = None) -> OnnxBackend | None:
        """An ONNX backend from cached graphs; with `export`, exporting what is missing first."""
        folder = Path(self.onnx_dir) if self.onnx_dir is not None else onnx_export.onnx_cache_dir()
        G, clip = self.renderer.G, self.models.clip
        synth = {res: onnx_export.synthesis_job(G, res) for res in sorted({self.resolution, self.preview_resolution})}
        encoders = {"text": onnx_export.clip_text_job(clip), "image": onnx_export.clip_image_job(clip)} \
            if clip is not None and self.clip_graphs else {}
        if not export:
            if not all(onnx_export.is_cached(j, folder) for j in synth.values()):
                return None
            encoders = {k: j for k, j in encoders.items() if onnx_export.is_cached(j, folder)}
        todo = [*synth.values(), *encoders.values()]
        done: dict[str, onnx_export.ExportResult] = {}
        for i, job in enumerate(todo):
            def step(n: int, total: int, msg: str, i: int = i, name: str = job.name) -> None:
                if progress is not None:
                    progress(i * total + n, len(todo) * total, f"{name}: {msg}")
            result = onnx_export.ensure_exported(job, folder, step)
            done[job.name] = result
            if not result.ok:
                self.notices.append(f"the ONNX graph {result.name} is not used: {result.reason}")
                if i < len(synth):
                    self.notices.append("rendering with torch instead of ONNX Runtime")
                    return None
        paths = {k: done[j.name].path for k, j in encoders.items()}
        try:
            built = OnnxBackend(
                {res: p for res, j in synth.items() if (p := done[j.name].path) is not None},
                TorchBackend(G, clip, self.device), want_cuda=self.device.type == "cuda", fp16=self.fp16,
                text_graph=paths.get("text"), image_graph=paths.get("image"),
                parity_inputs=lambda b: torch.cat(G.w_to_s(G.sample_w(b, seed=4321 + b, device=self.device)), 1))
        except Exception as exc:  # a graph ONNX Runtime cannot load is exported afresh next time
            for name in done:
                onnx_export.forget(name, folder)
            self.notices.append(f"ONNX Runtime could not load the exported graphs ({type(exc).__name__}); "
                                "rendering with torch")
            log.warning("ONNX Runtime failed to load graphs: %s", exc)
            return None
        if self.device.type == "cuda" and not built.on_cuda:
            # torch on the GPU beats ONNX Runtime on the CPU by far.
            self.notices.append("ONNX Runtime could not use CUDA here; rendering with torch on CUDA")
            return None
        return built

    def start_export(self, on_progress: Callable[[int, int, str], None] | None = None) -> Job[OnnxBackend | None]:
        """Export the graphs in the background (minutes at 1024px on a CPU) and switch to
        ONNX Runtime once they pass their checks. Rendering goes on with torch meanwhile."""
        with self._lock:
            if self.export_job is not None and not self.export_job.future.done():
                return self.export_job
            if self._exporter is None:
                self._exporter = Worker(name="onnx-export")

            def run(ctx: JobContext) -> OnnxBackend | None:
                built = self._build_onnx(export=True, progress=ctx.progress)
                self._use(built)
                return built

            self.export_job = self._exporter.submit(run, Priority.PRECOMPUTE, key="onnx-export",
                                                    on_progress=on_progress)
            return self.export_job

    def wait_for_export(self, timeout: float | None = None) -> bool:
        """Block until a background export ends; True if ONNX Runtime is in use now."""
        job = self.export_job
        if job is not None:
            job.future.exception(timeout)
        return self.renderer.backend.kind == "onnx"

    # --- state ---------------------------------------------------------------------------

    def snapshot(self, doc: Document | RenderState) -> RenderState:
        """An immutable copy of what rendering reads; take it on the thread that owns `doc`."""
        return snapshot(doc)

    def _res(self, preview: bool) -> int:
        return self.preview_resolution if preview else self.resolution

    def is_cached(self, doc_or_state: Document | RenderState, alphas: Alphas | None = None, *,
                  preview: bool = False) -> bool:
        """Whether this frame is in the frame cache (a scrub can then render it synchronously)."""
        state = snapshot(doc_or_state)
        r = self.renderer
        return r.frames.peek(r.frame_key(state, alphas, self._res(preview)))

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return self.renderer.cache_stats()

    # --- rendering -----------------------------------------------------------------------

    def render(self, doc_or_state: Document | RenderState, alphas: Alphas | None = None, *, preview: bool = False,
               paste_back: bool = False, size: Size | None = None) -> np.ndarray:
        """One image, on the calling thread: (H, W, 3) uint8."""
        state = snapshot(doc_or_state)
        face = self._faces(state, [alphas], self._res(preview))[0]
        return self._finish(state, face, paste_back, size)

    def submit_render(self, doc_or_state: Document | RenderState, alphas: Alphas | None = None, *,
                      preview: bool = False, paste_back: bool = False, key: str = "preview") -> Job[np.ndarray]:
        """`render` on the worker at interactive priority; replaces a waiting job with the same key."""
        state = snapshot(doc_or_state)
        frozen = dict(alphas) if alphas is not None else None
        return self.worker.submit(lambda ctx: self.render(state, frozen, preview=preview, paste_back=paste_back),
                                  Priority.INTERACTIVE, key=key)

    def render_frames(self, doc_or_state: Document | RenderState, alphas_list: Sequence[Alphas], *,
                      size: Size | None = None, paste_back: bool = False, batch: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      cancelled: Callable[[], bool] | None = None) -> Iterator[np.ndarray]:
        """Full-resolution frames in order, synthesized `batch` at a time; raises `Cancelled`
        at the first batch boundary after `cancelled()` turns true."""
        state = snapshot(doc_or_state)
        frames = [dict(a) for a in alphas_list]
        return self._frames(state, frames, size, paste_back, batch or self.batch, progress, cancelled)

    def _frames(self, state: RenderState, frames: list[dict[str, float]], size: Size | None, paste_back: bool,
                step: int, progress: Callable[[int, int], None] | None,
                cancelled: Callable[[], bool] | None) -> Iterator[np.ndarray]:
        total, done = len(frames), 0
        while done < total:
            # An export running as a worker job lets waiting previews through between batches.
            self.worker.yield_to_higher()
            if cancelled is not None and cancelled():
                raise Cancelled()
            chunk = frames[done: done + step]
            faces = self._faces(state, chunk, self.resolution)
            for face in faces:
                yield self._finish(state, face, paste_back, size)
            done += len(chunk)
            if progress is not None:
                progress(done, total)

    def precompute(self, doc_or_state: Document | RenderState, alphas_list: Sequence[Alphas], *,
                   paste_back: bool = False, preview: bool = False, key: str = "precompute",
                   batch: int | None = None, on_progress: Callable[[int, int, str], None] | None = None) -> Job[int]:
        """Fill the frame cache for these frames, in order, at the lowest priority; returns
        how many were rendered. A newer request under the same `key` supersedes this one."""
        state = snapshot(doc_or_state)
        frames = [dict(a) for a in alphas_list]
        res = self._res(preview)

        def run(ctx: JobContext) -> int:
            if paste_back:
                self.renderer.photo(state)  # decode the photo once, ahead of the first scrub
            step = max(1, batch or self.batch)
            for i in range(0, len(frames), step):
                ctx.yield_to_higher()  # previews asked for meanwhile wait one batch, not the whole job
                ctx.check()
                self._faces(state, frames[i: i + step], res)
                ctx.progress(min(i + step, len(frames)), len(frames), "precomputing frames")
            return len(frames)

        return self.worker.submit(run, Priority.PRECOMPUTE, key=key, on_progress=on_progress)

    def faces(self, doc_or_state: Document | RenderState, alphas_list: Sequence[Alphas | None], *,
              preview: bool = False) -> list[np.ndarray]:
        """Aligned faces (no paste-back) for several alpha settings, from the frame cache where it can."""
        return self._faces(snapshot(doc_or_state), list(alphas_list), self._res(preview))

    def _faces(self, state: RenderState, alphas_list: Sequence[Alphas | None], res: int) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        step = max(1, min(len(alphas_list), self._fits or len(alphas_list)))
        while len(out) < len(alphas_list):
            chunk = alphas_list[len(out): len(out) + step]
            try:
                out += self.renderer.faces(state, chunk, res)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                step = self._after_oom(step, exc)
        return out

    def _after_oom(self, step: int, exc: BaseException) -> int:
        """Smaller batches first; at one frame, the CPU. Each move leaves a notice."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if step > 1:
            step //= 2
            self.batch = min(self.batch, step)
            self._fits = step
            self.notices.append(f"GPU memory ran out; rendering {step} frame(s) at a time")
            return step
        backend = self.renderer.backend
        if not getattr(backend, "on_cuda", False):
            raise exc
        self._use(backend.on_cpu())
        self.notices.append("GPU memory ran out even for one frame; rendering on the CPU")
        return 1

    def _finish(self, state: RenderState, face: np.ndarray, paste_back: bool, size: Size | None) -> np.ndarray:
        img = self.renderer.composite(state, face) if paste_back else face
        if size is not None:
            img = resize(img, size)
        return np.array(img) if img is face else img

    # --- directions ----------------------------------------------------------------------

    def direction_info(self, target: str, neutral: str, beta: float) -> DirectionInfo:
        """Live channel count and largest usable beta for a global direction (encodes text on first use)."""
        m = self.models
        try:
            if m.fs3 is None:
                raise UserError("global directions need this generator's fs3 matrix")
            dt = self.renderer.text_direction(target, neutral)
        except UserError as exc:
            return DirectionInfo(0, 0.0, str(exc))
        r = np.abs(gd.relevance(m.fs3, dt))
        largest = float(r.max()) if r.size else 0.0
        channels = int((r >= beta).sum())
        error = None if channels else str(gd.BetaTooHighError(largest))
        return DirectionInfo(channels, largest, error)

    def store_directions(self, doc: Document) -> list[str]:
        """Keep each global-direction layer's resolved ds in `doc`, so the saved project
        renders without CLIP or fs3; returns notices (see `stored_directions.store`)."""
        return stored_directions.store(doc, self.renderer)

    # --- lifetime ------------------------------------------------------------------------

    def shutdown(self) -> None:
        if self.export_job is not None:
            self.export_job.cancel()
        if self._exporter is not None:
            self._exporter.shutdown(timeout=1.0)
        if self._own_worker:
            self.worker.shutdown()


def resize(img: np.ndarray, size: Size) -> np.ndarray:
    """`size` as an int is the longer side (aspect kept); a pair is (width, height)."""
    h, w = img.shape[:2]
    if isinstance(size, int):
        if size < 1:
            raise UserError(f"the size must be a positive number of pixels, got {size}")
        scale = size / max(h, w)
        dims = (max(1, round(w * scale)), max(1, round(h * scale)))
    else:
        dims = (int(size[0]), int(size[1]))
    if dims == (w, h):
        return img
    from PIL import Image

    up = dims[0] > w
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize(
        dims, Image.Resampling.BICUBIC if up else Image.Resampling.LANCZOS))
