"""Latent optimization and mapper speed at the real sizes: config-f 1024 generator, ViT-B/32 CLIP,
IR-SE50 ArcFace, the 512-wide levels mapper. Random weights cost what trained ones cost.

On a CPU the optimization runs only a few steps at full size: each one renders a 1024px
image and back-propagates through the generator and CLIP.
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

    stage = Stages(progress, 4)
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
    out["peak_rss_mb"] = peak_rss_mb()
    return out
