"""Core benchmark at the real architecture size: config-f 1024 generator, ViT-B/32 CLIP.

Random weights cost exactly what trained weights cost, so these numbers hold for the
real models.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import peak_rss_mb, timeit


def run(device: torch.device, repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.clip import random_vit_b32
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig

    res = 256 if quick else 1024
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=res)).eval().requires_grad_(False).to(device)
    ws = G.broadcast_w(G.sample_w(1, seed=0, device=device))
    out: dict[str, Any] = {"generator": f"config-f {res}px, random weights"}
    with torch.no_grad():
        styles = G.w_to_s(ws)
        out["wplus_to_s"] = timeit(lambda: G.w_to_s(ws), device, repeats=max(repeats, 10))
        out[f"synthesis_{res}_batch1"] = timeit(lambda: G.synthesize(styles), device, repeats=repeats)
        out["synthesis_256_early_exit_batch1"] = timeit(lambda: G.synthesize(styles, out_res=256), device,
                                                        repeats=repeats)
    full = out[f"synthesis_{res}_batch1"]["median_ms"]
    out["early_exit_256_vs_full_ratio"] = round(out["synthesis_256_early_exit_batch1"]["median_ms"] / full, 3)

    with tempfile.TemporaryDirectory() as tmp:
        clip = random_vit_b32(device=str(device), cache_dir=Path(tmp))
        conv_idx = gd.conv_channel_index(G)
        rng = np.random.RandomState(0)
        fs3 = rng.randn(len(conv_idx), clip.embed_dim).astype(np.float32)
        fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
        std = np.abs(rng.randn(sum(G.style_dims))) + 0.1
        counter = iter(range(10**6))

        def new_prompt() -> None:  # a text never seen before: both embeddings miss every cache
            n = next(counter)
            clip.text_embedding.cache_clear() if hasattr(clip.text_embedding, "cache_clear") else None
            dt = clip.text_direction(f"a face with hair style number {n}", f"a neutral face {n}")
            gd.style_direction(fs3, dt, std, conv_idx, beta=0.1)

        out["dt_ds_new_prompt_vit_b32"] = timeit(new_prompt, device, repeats=repeats)
    out["peak_rss_mb"] = peak_rss_mb()
    return out
