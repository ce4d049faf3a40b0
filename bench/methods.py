"""Latent optimization and mapper speed at the real sizes: config-f 1024 generator, ViT-B/32 CLIP,
IR-SE50 ArcFace, the 512-wide levels mapper. Random weights cost what trained ones cost.

On a CPU the optimization runs only a few steps at full size: each one renders a 1024px
image and back-propagates through the generator and CLIP. Domain layers (see `bench.nada`):
one StyleGAN-NADA training iteration, a domain layer's render against a plain one, and the
size its delta adds to a project.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.harness import Stages, peak_rss_mb, timeit

PROMPT = "a face with purple hair"


def _optimization_rate(G: Any, clip: Any, ws: torch.Tensor, steps: int, arcface: Any = None) -> dict[str, Any]:
    from styleclip_desktop.methods.optimization import OptimizationConfig, optimize_latent

    stamps: list[float] = []
    cfg = OptimizationConfig(steps=steps, lambda_id=0.005 if arcface is not None else 0.0)
    t0 = time.perf_counter()
    optimize_latent(G, clip, PROMPT, ws, cfg, arcface=arcface,
                    progress=lambda done, total: stamps.append(time.perf_counter()))
    total = time.perf_counter() - t0
    # The first step carries one-off costs (allocator warm-up, kernel selection): time the rest.
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return {"timed_steps": len(stamps) - 1, "ms_per_step": round(per_step * 1000, 1),
            "steps_per_s": round(1.0 / per_step, 3), "run_total_s": round(total, 2)}


def run(device: torch.device, repeats: int = 3, quick: bool = False,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from styleclip_desktop.methods.mapper import apply_mapper, mapper_delta
    from styleclip_desktop.nets.clip import random_vit_b32
    from styleclip_desktop.nets.irse import ArcFace, IRSEConfig, randomize_
    from styleclip_desktop.nets.mapper import LevelsMapper
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig

    stage = Stages(progress, 6)
    gpu = str(device).startswith("cuda")
    res = 256 if quick else 1024
    steps = 20 if gpu and not quick else 3
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=res)).eval().requires_grad_(False).to(device)
    ws = G.broadcast_w(G.sample_w(1, seed=0, device=device))
    out: dict[str, Any] = {"generator": f"config-f {res}px, random weights", "clip": "ViT-B/32, random weights"}
    with tempfile.TemporaryDirectory() as tmp:
        clip = random_vit_b32(device=str(device), cache_dir=Path(tmp))
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        out["optimization_wplus"] = _optimization_rate(G, clip, ws, steps)
        stage()
        if gpu:
            out["optimization_wplus"]["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        arcface = randomize_(ArcFace(IRSEConfig()), seed=0).eval().requires_grad_(False).to(device)
        out["optimization_wplus_arcface_irse50"] = _optimization_rate(G, clip, ws, steps, arcface)
        stage()
        del arcface
    mapper = LevelsMapper().eval().to(device)
    with torch.no_grad():
        out["mapper_delta_batch1"] = timeit(lambda: mapper_delta(mapper, ws), device, repeats=max(repeats, 10))
        stage()
        out[f"mapper_edit_and_render_{res}_batch1"] = timeit(lambda: G(apply_mapper(mapper, ws)), device,
                                                            repeats=repeats)
        stage()
    out["sefa"] = _sefa(G, repeats)
    out["keep_projection"] = _keep_projection(G, repeats)
    out["leak_meter"] = _leak_meter(device, repeats, quick)
    stage()
    from bench import nada

    out["domain_training_iteration"] = nada.bench_iteration(device, quick)
    out["domain_render"] = nada.bench_render(device, repeats, quick)
    stage()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _sefa(G: Any, repeats: int) -> dict[str, Any]:
    """Closed-form sliders from the generator's weights: all three layer groups, and one ds."""
    from styleclip_desktop.methods import sefa

    factorize = timeit(lambda: sefa.factorize_all(G), "cpu", repeats, 1)
    basis = sefa.factorize(G, "middle")
    delta = timeit(lambda: sefa.style_delta(G, basis.vectors[0], basis.rows), "cpu", max(repeats, 10), 1)
    return {"factorize_all_groups": factorize, "style_delta_one_direction": delta,
            "groups": {g: len(b.rows) for g, b in sefa.factorize_all(G).items()}}


def _keep_projection(G: Any, repeats: int) -> dict[str, Any]:
    """A global direction made orthogonal to three kept ones, at this generator's style size (goal < 1 ms)."""
    import numpy as np

    from styleclip_desktop.methods import keep

    size = sum(G.style_dims)
    rng = np.random.RandomState(0)
    std = rng.uniform(0.05, 2.0, size)
    ds = (rng.randn(size) * std * (rng.rand(size) < 0.05)).astype(np.float32)
    kept = [(rng.randn(size) * std).astype(np.float32) for _ in range(3)]
    t = timeit(lambda: keep.orthogonalize(ds, kept, std), "cpu", max(repeats, 20), 2)
    return {"style_size": size, "kept": len(kept), **t, "goal_ms": 1.0, "met": t["median_ms"] < 1.0}

def _leak_meter(device: torch.device, repeats: int, quick: bool) -> dict[str, Any]:
    """The leak meter's cost against one preview render on the same engine (goal at most 1.5x):
    "fresh" when the layer's strength is new (the shown frame renders; the frame without the
    layer comes from the cache), "cached" when both frames are there (two CLIP image passes)."""
    import itertools

    from bench.render import _doc, _models
    from styleclip_desktop import paths
    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.render.leak_meter import measure

    res = 64 if quick else 1024
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(res, quick, Path(tmp) / "text")
        engine = Engine(models, device, backend="onnx", onnx_dir=paths.cache_dir() / "onnx-bench", clip_graphs=False)
        try:
            doc = _doc(models)
            measure(engine, doc, "hair", {"hair": 0.5})  # texts, directions and the frame without the layer
            step = itertools.count(1)
            preview = timeit(lambda: engine.render(doc, {"hair": 0.5 + 0.01 * next(step)}, preview=True),
                             str(device), repeats, 0)
            fresh = timeit(lambda: measure(engine, doc, "hair", {"hair": 0.5 + 0.01 * next(step)}),
                           str(device), repeats, 0)
            cached = timeit(lambda: measure(engine, doc, "hair", {"hair": 0.5}), str(device), repeats, 1)
            out = {"backend": engine.backend_label, "preview_px": engine.preview_resolution,
                   "preview_render": preview, "fresh": fresh, "cached": cached,
                   "fresh_vs_preview": round(fresh["min_ms"] / preview["min_ms"], 3),
                   "cached_vs_preview": round(cached["min_ms"] / preview["min_ms"], 3), "goal": 1.5}
            out["met"] = out["fresh_vs_preview"] <= 1.5
            return out
        finally:
            engine.shutdown()
