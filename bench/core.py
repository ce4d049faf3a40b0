"""Core benchmark at the real architecture size: config-f 1024 generator, ViT-B/32 CLIP.

Random weights cost exactly what trained weights cost, so these numbers hold for the
real models.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import Stages, peak_rss_mb, timeit


def run(device: torch.device, repeats: int = 3, quick: bool = False,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.clip import ClipModel, build_clip, random_vit_b32, tiny_clip_state_dict
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
    from styleclip_desktop.weights.synthetic import tiny_generator

    stage = Stages(progress, 4)
    # --quick smoke-tests the benchmark itself with tiny models; its numbers mean nothing.
    res = 64 if quick else 1024
    torch.manual_seed(0)
    G = tiny_generator(res) if quick else Generator(GeneratorConfig(resolution=res))
    G = G.eval().requires_grad_(False).to(device)
    ws = G.broadcast_w(G.sample_w(1, seed=0, device=device))
    out: dict[str, Any] = {"generator": "tiny synthetic (quick)" if quick else f"config-f {res}px, random weights"}
    early = 16 if quick else 256
    with torch.no_grad():
        styles = G.w_to_s(ws)
        out["wplus_to_s"] = timeit(lambda: G.w_to_s(ws), device, repeats=max(repeats, 10))
        stage()
        out[f"synthesis_{res}_batch1"] = timeit(lambda: G.synthesize(styles), device, repeats=repeats)
        stage()
        out[f"synthesis_{early}_early_exit_batch1"] = timeit(lambda: G.synthesize(styles, out_res=early), device,
                                                             repeats=repeats)
        stage()
    full = out[f"synthesis_{res}_batch1"]["median_ms"]
    out[f"early_exit_{early}_vs_full_ratio"] = round(out[f"synthesis_{early}_early_exit_batch1"]["median_ms"] / full, 3)

    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            clip = ClipModel(build_clip(tiny_clip_state_dict(0)).to(device), "tiny", device, cache_dir=Path(tmp))
        else:
            clip = random_vit_b32(device=str(device), cache_dir=Path(tmp))
        conv_idx = gd.conv_channel_index(G)
        rng = np.random.RandomState(0)
        fs3 = rng.randn(len(conv_idx), clip.embed_dim).astype(np.float32)
        fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
        std = np.abs(rng.randn(sum(G.style_dims))) + 0.1
        counter = iter(range(10**6))

        def new_prompt() -> None:  # a text never seen before: both embeddings miss every cache
            n = next(counter)
            dt = clip.text_direction(f"a face with hair style number {n}", f"a neutral face {n}")
            gd.style_direction(fs3, dt, std, conv_idx, beta=0.1)

        out["dt_ds_new_prompt_" + ("tiny_clip" if quick else "vit_b32")] = timeit(new_prompt, device, repeats=repeats)
        stage()
    out["peak_rss_mb"] = peak_rss_mb()
    return out
