"""The engine's contract: caches reuse what did not change, stale previews are dropped,
cancellation is prompt, snapshots isolate the worker, GPU memory exhaustion degrades."""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pytest
import torch

from styleclip_desktop.document import Alignment, Document, GlobalDirectionParams, Layer, OptimizationParams
from styleclip_desktop.document.document import SourcePhoto
from styleclip_desktop.errors import Cancelled
from styleclip_desktop.render.engine import DirectionInfo, Engine, default_preview_resolution
from styleclip_desktop.render.pipeline import ModelSet
from styleclip_desktop.render.worker import Priority

from .helpers import CountingBackend, latent


def two_text_layers(models: ModelSet) -> Document:
    rng = np.random.RandomState(1)
    delta = (0.05 * rng.randn(*latent(models).shape)).astype(np.float32)
    return Document(latent(models), layers=[
        Layer(OptimizationParams("a smiling face", delta=delta), alpha=1.0, id="opt"),
        Layer(GlobalDirectionParams("grey hair", beta=0.05), alpha=3.0, id="hair"),
        Layer(GlobalDirectionParams("smiling", beta=0.05), alpha=2.0, id="smile"),
    ])


def counting(engine: Engine) -> CountingBackend:
    backend = CountingBackend(engine.renderer.backend)
    engine.renderer.backend = backend  # type: ignore[assignment]
    return backend


def delta(engine: Engine, before: dict[str, dict[str, int]]) -> dict[str, tuple[int, int]]:
    now = engine.cache_stats()
    return {k: (now[k]["hits"] - before[k]["hits"], now[k]["misses"] - before[k]["misses"]) for k in now}


def test_an_alpha_change_reuses_every_other_cached_term(engine: Engine, models: ModelSet,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    real = models.clip.text_embedding  # type: ignore[union-attr]
    monkeypatch.setattr(models.clip, "text_embedding", lambda text: encoded.append(text) or real(text))
    backend = counting(engine)
    doc = two_text_layers(models)
    first = engine.render(doc)
    assert sorted(set(encoded)) == ["a face", "grey hair", "smiling"]
    encoded.clear()

    before = engine.cache_stats()
    doc.layers.get("hair").set("alpha", 1.5)
    changed = engine.render(doc)
    # ds of both layers, W+ -> S (only an S-layer changed): hits; the frame: a miss.
    assert delta(engine, before) == {"text": (0, 0), "ds": (2, 0), "styles": (1, 0), "frames": (0, 1)}
    assert not np.array_equal(first, changed) and encoded == []

    before = engine.cache_stats()
    doc.layers.get("hair").set("params", doc.layers.get("hair").params.with_changes(beta=0.06))
    engine.render(doc)
    # A new beta recomputes that layer's ds from cached text embeddings; the other ds is reused.
    assert delta(engine, before) == {"text": (2, 0), "ds": (1, 1), "styles": (1, 0), "frames": (0, 1)}
    assert encoded == []

    before = engine.cache_stats()
    doc.layers.get("opt").set("alpha", 0.5)
    engine.render(doc)
    # A W-layer changes W+, so S is recomputed; both directions are reused.
    assert delta(engine, before) == {"text": (0, 0), "ds": (2, 0), "styles": (0, 1), "frames": (0, 1)}

    calls = backend.calls
    doc.layers.get("opt").set("alpha", 1.0)
    doc.layers.get("hair").set("alpha", 1.5)
    doc.layers.get("hair").set("params", doc.layers.get("hair").params.with_changes(beta=0.05))
    assert np.array_equal(engine.render(doc), changed)  # back to an earlier state: the frame cache
    assert backend.calls == calls


def test_a_superseded_preview_is_never_rendered(engine: Engine, models: ModelSet) -> None:
    backend = counting(engine)
    doc = two_text_layers(models)
    gate = threading.Event()
    blocker = engine.worker.submit(lambda ctx: gate.wait(10), Priority.INTERACTIVE)
    jobs = [engine.submit_render(doc, {"hair": float(a)}, preview=True) for a in range(5)]
    gate.set()
    last = jobs[-1].future.result(timeout=30)
    assert blocker.future.result(timeout=5)
    assert all(j.future.cancelled() for j in jobs[:-1])
    assert backend.calls == 1 and backend.frames == 1
    assert last.shape == (engine.preview_resolution, engine.preview_resolution, 3)


def test_precompute_fills_the_frame_cache_and_lets_previews_through(engine: Engine, models: ModelSet) -> None:
    backend = counting(engine)
    doc = two_text_layers(models)
    keyframes = [{"hair": float(a)} for a in np.linspace(0, 4, 6)]
    gate, started = threading.Event(), threading.Event()
    sizes: list[int] = []
    count_synth = backend.synthesize

    def synth(s: torch.Tensor, res: int) -> np.ndarray:
        if not started.is_set():
            started.set()
            gate.wait(10)
        sizes.append(res)
        return count_synth(s, res)

    backend.synthesize = synth  # type: ignore[method-assign]
    job = engine.precompute(doc, keyframes)
    assert started.wait(10)
    preview = engine.submit_render(doc, {"hair": 9.0}, preview=True)
    gate.set()
    preview.future.result(timeout=30)
    assert job.future.result(timeout=30) == 6
    # The preview ran after the precompute's first batch, not after all of them.
    assert sizes == [32, 16, 32, 32]
    calls = backend.calls
    for a in keyframes:
        assert engine.is_cached(doc, a)
        engine.render(doc, a)
    assert backend.calls == calls


def test_an_export_job_lets_previews_through_between_batches(engine: Engine, models: ModelSet) -> None:
    backend = counting(engine)
    doc = two_text_layers(models)
    gate, started = threading.Event(), threading.Event()
    sizes: list[int] = []
    count_synth = backend.synthesize

    def synth(s: torch.Tensor, res: int) -> np.ndarray:
        if not started.is_set():
            started.set()
            gate.wait(10)
        sizes.append(res)
        return count_synth(s, res)

    backend.synthesize = synth  # type: ignore[method-assign]
    frames = [{"hair": float(a)} for a in range(4)]
    export = engine.worker.submit(lambda ctx: list(engine.render_frames(doc, frames, batch=2)), Priority.EXPORT)
    assert started.wait(10)
    preview = engine.submit_render(doc, {"hair": 9.0}, preview=True)
    gate.set()
    assert len(export.future.result(timeout=30)) == 4 and preview.future.result(timeout=30).shape == (16, 16, 3)
    assert sizes == [32, 16, 32]


def test_cancel_stops_a_long_job_within_one_step(engine: Engine, models: ModelSet) -> None:
    backend = counting(engine)
    doc = two_text_layers(models)
    frames = [{"hair": float(a)} for a in np.linspace(0, 4, 20)]
    stop = threading.Event()
    got = []
    progress: list[tuple[int, int]] = []
    with pytest.raises(Cancelled):
        for img in engine.render_frames(doc, frames, batch=2, cancelled=stop.is_set,
                                        progress=lambda d, t: progress.append((d, t))):
            got.append(img)
            stop.set()
    assert len(got) == 2 and backend.frames == 2 and progress == [(2, 20)]


def test_render_frames_are_in_order_and_batched(engine: Engine, models: ModelSet) -> None:
    backend = counting(engine)
    doc = two_text_layers(models)
    frames = [{"hair": float(a)} for a in np.linspace(0, 4, 5)]
    out = list(engine.render_frames(doc, frames, batch=3, size=20))
    assert backend.calls == 2 and [f.shape for f in out] == [(20, 20, 3)] * 5
    singles = [engine.render(doc, a, size=20) for a in frames]
    assert all(np.array_equal(a, b) for a, b in zip(out, singles, strict=True))


def test_snapshot_isolates_the_worker_from_later_document_changes(engine: Engine, models: ModelSet) -> None:
    doc = two_text_layers(models)
    expected = engine.render(doc)
    state = engine.snapshot(doc)
    gate = threading.Event()
    engine.worker.submit(lambda ctx: gate.wait(10), Priority.INTERACTIVE)
    job = engine.submit_render(doc, key="full")
    # The UI goes on editing while the job waits.
    doc.layers.get("hair").set("alpha", -5.0)
    doc.layers.get("smile").set("visible", False)
    doc.layers.append(Layer(GlobalDirectionParams("a robot", beta=0.05), alpha=4.0))
    doc.set("latent", latent(models, seed=9))
    gate.set()
    assert np.array_equal(job.future.result(timeout=30), expected)
    assert np.array_equal(engine.render(state), expected)
    assert not np.array_equal(engine.render(doc), expected)
    with pytest.raises(ValueError):
        state.latent[0, 0] = 1.0  # read-only


class OomBackend(CountingBackend):
    """A GPU backend that runs out of memory above `limit` frames per call."""

    def __init__(self, inner: Any, limit: int) -> None:
        super().__init__(inner)
        self.on_cuda, self.label, self.limit = True, "torch CUDA", limit

    def synthesize(self, s_flat: torch.Tensor, out_res: int) -> np.ndarray:
        if s_flat.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().synthesize(s_flat, out_res)


def test_gpu_out_of_memory_shrinks_the_batch_then_moves_to_the_cpu(engine: Engine, models: ModelSet) -> None:
    doc = two_text_layers(models)
    frames = [{"hair": float(a)} for a in np.linspace(0, 4, 6)]
    reference = [engine.render(doc, a) for a in frames]
    engine.renderer.frames.clear()
    engine.renderer.backend = OomBackend(engine.renderer.backend, limit=1)  # type: ignore[assignment]
    out = list(engine.render_frames(doc, frames, batch=4))
    assert all(np.array_equal(a, b) for a, b in zip(out, reference, strict=True))
    assert any("2 frame(s)" in n for n in engine.notices) and any("1 frame(s)" in n for n in engine.notices)
    engine.renderer.frames.clear()
    engine.renderer.backend = OomBackend(engine.renderer.backend.inner, limit=0)  # type: ignore[attr-defined]
    assert np.array_equal(engine.render(doc, frames[0]), reference[0])
    assert engine.backend_label == "torch CPU" and any("on the CPU" in n for n in engine.notices)


def test_direction_info_counts_channels_and_explains_a_too_high_beta(engine: Engine, models: ModelSet) -> None:
    info = engine.direction_info("grey hair", "a face", 0.05)
    assert isinstance(info, DirectionInfo) and info.channels > 0 and info.error is None
    assert info.largest_beta > 0.05
    assert engine.direction_info("grey hair", "a face", 0.01).channels > info.channels
    high = engine.direction_info("grey hair", "a face", info.largest_beta + 0.01)
    assert high.channels == 0 and high.error is not None and f"{info.largest_beta:.4f}" in high.error
    assert engine.direction_info(" ", "a face", 0.1).error is not None


def test_sizes_preview_and_paste_back(engine: Engine, models: ModelSet) -> None:
    from PIL import Image

    assert engine.resolution == 32 and engine.preview_resolution == 16
    # A quarter of the side on a GPU and, with the alpha sweep behind drags, on a CPU too.
    assert default_preview_resolution(1024, gpu=True) == 256 and default_preview_resolution(1024) == 256
    assert default_preview_resolution(512) == 128 and default_preview_resolution(256) == 64
    assert default_preview_resolution(64) == 16 and default_preview_resolution(16) == 16
    buf = io.BytesIO()
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(buf, format="PNG")
    # The crop covers the photo's square at (20, 10) with side 40.
    matrix = np.array([[32 / 40, 0, -20 * 32 / 40], [0, 32 / 40, -10 * 32 / 40], [0, 0, 1]])
    doc = Document(latent(models), source=SourcePhoto.from_bytes("p.png", buf.getvalue()),
                   alignment=Alignment(matrix, 32))
    assert engine.render(doc, preview=True).shape == (16, 16, 3)
    pasted = engine.render(doc, paste_back=True)
    assert pasted.shape == (60, 80, 3) and (pasted[0, 0] == 90).all() and not (pasted[30, 40] == 90).all()
    assert engine.render(doc, paste_back=True, size=40).shape == (30, 40, 3)
    assert engine.render(doc, size=(24, 12)).shape == (12, 24, 3)
