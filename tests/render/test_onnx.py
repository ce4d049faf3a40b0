"""ONNX export and backends: parity with torch, caching, refusal of bad exports, CPU fallback.

Tolerances: synthesis within 1e-4 of torch (images in [-1, 1]; one uint8 level is 0.0078),
uint8 frames within one level; CLIP embeddings (unit vectors) within 1e-4.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from styleclip_desktop.document import Document, GlobalDirectionParams, Layer
from styleclip_desktop.nets.stylegan2 import unpack_styles
from styleclip_desktop.render import onnx_export
from styleclip_desktop.render.backends import OnnxBackend, TorchBackend, cuda_usable
from styleclip_desktop.render.engine import Engine
from styleclip_desktop.render.pipeline import ModelSet

from .helpers import latent

SYNTH_TOL = 1e-4
EMBED_TOL = 1e-4


def seeded_styles(models: ModelSet, batch: int, seed: int = 11) -> torch.Tensor:
    G = models.G
    with torch.no_grad():
        return torch.cat(G.w_to_s(G.sample_w(batch, seed=seed)), 1)


@pytest.mark.parametrize("batch", [1, 3])
def test_synthesis_matches_torch_at_full_and_preview_size(onnx_engine: Any, models: ModelSet, batch: int) -> None:
    backend = onnx_engine.backend
    assert backend.label == "ONNX CPU" and set(backend.sessions) == {32, 16}
    G = models.G
    s = seeded_styles(models, batch)
    for res in (32, 16):
        with torch.no_grad():
            ref = G.synthesize(unpack_styles(s, G.style_dims), out_res=res).numpy()
        got = backend.sessions[res].run([t.numpy() for t in unpack_styles(s, G.style_dims)])
        assert got.shape == ref.shape == (batch, 3, res, res)
        assert np.abs(got - ref).max() < SYNTH_TOL
        frames = backend.synthesize(s, res)
        torch_frames = TorchBackend(G).synthesize(s, res)
        assert np.abs(frames.astype(int) - torch_frames.astype(int)).max() <= 1


@pytest.mark.parametrize("batch", [1, 3])
def test_clip_encoders_match_torch(onnx_engine: Any, models: ModelSet, batch: int) -> None:
    backend = onnx_engine.backend
    assert backend.text is not None and backend.image is not None
    texts = ["a face", "a face with grey hair", "an angry robot"][:batch]
    ref_t = models.clip.encode_text(texts).numpy()  # type: ignore[union-attr]
    assert np.abs(backend.encode_text(texts) - ref_t).max() < EMBED_TOL
    images = torch.rand(batch, 3, 40, 48, generator=torch.Generator().manual_seed(batch)) * 2 - 1
    ref_i = models.clip.encode_image(images).numpy()  # type: ignore[union-attr]
    assert np.abs(backend.encode_image(images) - ref_i).max() < EMBED_TOL


def test_on_a_cpu_clip_is_served_by_torch_alone(onnx_engine: Any, models: ModelSet, onnx_dir: Path) -> None:
    """CLIP's graphs would hold a second copy of its weights beside the torch model."""
    from styleclip_desktop.render.engine import Engine

    engine = Engine(models, backend="onnx", onnx_dir=onnx_dir)
    try:
        assert engine.backend.kind == "onnx" and engine.backend.text is None and engine.backend.image is None
        texts = ["a face with grey hair"]
        assert np.abs(engine.backend.encode_text(texts) - models.clip.encode_text(texts).numpy()).max() < 1e-6  # type: ignore[union-attr]
    finally:
        engine.shutdown()


def test_exports_are_cached_by_checkpoint_hash(onnx_engine: Any, models: ModelSet, onnx_dir: Path) -> None:
    job = onnx_export.synthesis_job(models.G, 32)
    again = onnx_export.ensure_exported(job, onnx_dir)
    assert again.ok and again.cached and again.path is not None and again.path.parent == onnx_dir
    assert "synthesis-32-out32" in again.name
    # A checkpoint loaded from a file is named by its sha256, so other weights get other files.
    models.G.source_sha256 = "ab" * 32  # type: ignore[assignment]
    try:
        assert onnx_export.synthesis_job(models.G, 32).name != job.name
    finally:
        del models.G.source_sha256
    assert onnx_export.synthesis_job(models.G, 32).name == job.name


def perturb_largest_initializer(path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    init.CopyFrom(numpy_helper.from_array(arr + np.float32(0.5), init.name))
    onnx.save(model, str(path))


def test_export_failing_parity_is_never_used_and_logged(models: ModelSet, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    job = onnx_export.synthesis_job(models.G, 4)  # the smallest graph: the quickest export
    with caplog.at_level(logging.WARNING, logger="styleclip_desktop.render.onnx_export"):
        result = onnx_export.ensure_exported(job, tmp_path, tamper=perturb_largest_initializer)
    assert not result.ok and result.path is None
    assert result.reason is not None and "differs from torch" in result.reason
    assert result.max_abs_diff is not None and result.max_abs_diff > onnx_export.IMAGE_TOLERANCE
    assert any("not used" in r.getMessage() and "differs from torch" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*.onnx"))
    # An engine asked for ONNX sees the recorded failure, renders with torch and says why.
    engine = Engine(models, backend="onnx", onnx_dir=tmp_path, preview_resolution=4)
    try:
        assert engine.backend_label == "torch CPU"
        assert any("differs from torch" in n for n in engine.notices)
        doc = Document(latent(models))
        assert engine.render(doc).shape == (32, 32, 3)
    finally:
        engine.shutdown()


def test_an_unusable_cache_folder_costs_speed_not_the_render(models: ModelSet, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = onnx_export.ensure_exported(onnx_export.synthesis_job(models.G, 4), blocker / "onnx")
    assert not result.ok and result.reason is not None and "not usable" in result.reason
    engine = Engine(models, backend="onnx", onnx_dir=blocker / "onnx")
    try:
        assert engine.backend_label == "torch CPU" and any("not usable" in n for n in engine.notices)
    finally:
        engine.shutdown()


def test_cuda_request_without_cuda_gives_a_cpu_session_and_a_notice(onnx_engine: Any, models: ModelSet,
                                                                    onnx_dir: Path) -> None:
    if cuda_usable():
        pytest.skip("this machine has CUDA")
    engine = Engine(models, device="cuda", backend="onnx", onnx_dir=onnx_dir)
    try:
        assert engine.device_label == "CPU" and engine.backend_label == "ONNX CPU"
        assert any("CUDA" in n for n in engine.notices)
        doc = Document(latent(models), layers=[Layer(GlobalDirectionParams("grey hair", beta=0.05))])
        assert engine.render(doc).shape == (32, 32, 3)
    finally:
        engine.shutdown()
    # ONNX Runtime lists its CUDA provider even where CUDA cannot load; the backend checks
    # which provider the session really got.
    paths = {res: s.path for res, s in onnx_engine.backend.sessions.items()}
    backend = OnnxBackend(paths, TorchBackend(models.G), want_cuda=True)
    assert backend.label == "ONNX CPU" and not backend.on_cuda
    assert any("CUDA" in n for n in backend.notices)
    torch_engine = Engine(models, device="cuda", backend="torch")
    try:
        assert torch_engine.backend_label == "torch CPU" and any("CUDA" in n for n in torch_engine.notices)
    finally:
        torch_engine.shutdown()


def test_fp16_is_used_only_after_its_own_parity_check(onnx_engine: Any, models: ModelSet,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The CUDA path cannot run here; the conversion and the check are the same on the CPU.
    from styleclip_desktop.render import backends

    paths = {res: s.path for res, s in onnx_engine.backend.sessions.items()}
    G = models.G

    def inputs(batch: int) -> torch.Tensor:
        return seeded_styles(models, batch, seed=5)

    backend = OnnxBackend(paths, TorchBackend(G))
    backend._try_fp16(inputs)
    assert backend.precision == "fp16" and all("-fp16" in s.path.name for s in backend.sessions.values())
    s = inputs(3)
    assert np.abs(backend.synthesize(s, 32).astype(int) - TorchBackend(G).synthesize(s, 32).astype(int)).max() <= 3
    monkeypatch.setattr(backends, "FP16_TOLERANCE", 1e-9)
    strict = OnnxBackend(paths, TorchBackend(G))
    strict._try_fp16(inputs)
    assert strict.precision == "fp32" and any("fp16 rendering is off" in n for n in strict.notices)


def test_auto_uses_cached_graphs_or_exports_in_the_background(onnx_engine: Any, models: ModelSet, onnx_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ready = Engine(models, backend="auto", onnx_dir=onnx_dir)
    try:
        assert ready.backend_label == "ONNX CPU" and ready.export_job is None
    finally:
        ready.shutdown()
    # Pretend nothing is cached yet: the engine starts on torch and switches when the
    # background job has the graphs (here found on disk, so the job is quick).
    monkeypatch.setattr(onnx_export, "is_cached", lambda job, folder=None: False)
    engine = Engine(models, backend="auto", onnx_dir=onnx_dir)
    try:
        assert engine.export_job is not None
        assert engine.wait_for_export(timeout=60) and engine.backend_label == "ONNX CPU"
    finally:
        engine.shutdown()
    quiet = Engine(models, backend="auto", onnx_dir=onnx_dir, background_export=False)
    try:
        assert quiet.backend_label == "torch CPU" and quiet.export_job is None
        labels: list[str] = []
        progress: list[tuple[int, int]] = []
        quiet.on_backend_changed(labels.append)
        quiet.start_export(on_progress=lambda done, total, msg: progress.append((done, total)))
        assert quiet.wait_for_export(timeout=60)
        assert labels == ["ONNX CPU"] and progress and progress[-1][0] == progress[-1][1]
    finally:
        quiet.shutdown()
