"""Masked layers: what a mask costs a render, and how long the automatic regions take.

Part of `bench --suite render`. A masked render always runs on PyTorch (the exported
graphs take no masks), so its cost is measured three ways in one run: against the same
layer unmasked on PyTorch (the cost of the blend itself), against the unmasked layer on
ONNX Runtime (what a user who adds a mask sees), at full size and at the preview size.
Every frame is a cache miss (each run moves the layer's alpha), and the three take turns
run by run. Goal: a masked layer's
render at most 1.4x the unmasked one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bench.harness import timeit_alternating

GOAL_MASKED_VS_UNMASKED = 1.4


def _ellipse_mask(feather: float = 6.0) -> Any:
    from styleclip_desktop.document import MASK_SIZE, LayerMask

    yy, xx = np.mgrid[0:MASK_SIZE, 0:MASK_SIZE].astype(np.float32) / MASK_SIZE
    inside = ((xx - 0.5) / 0.22) ** 2 + ((yy - 0.72) / 0.12) ** 2 <= 1.0  # about where the mouth is
    return LayerMask((inside * 255).astype(np.uint8), feather=feather)


def _docs(models: Any) -> dict[str, tuple[Any, Any]]:
    """(unmasked, masked) documents for a global direction and a W+ (optimization) layer."""
    from styleclip_desktop.document import Document, GlobalDirectionParams, Layer, OptimizationParams

    G = models.G
    with torch.no_grad():
        latent = G.broadcast_w(G.sample_w(1, seed=3))[0].numpy()
    delta = (0.2 * np.random.RandomState(0).randn(*latent.shape)).astype(np.float32)
    mask = _ellipse_mask()
    out = {}
    for name, params in (("global_direction", GlobalDirectionParams("a face with red lipstick", beta=0.1)),
                         ("w_plus_delta", OptimizationParams("a face with red lipstick", delta=delta))):
        out[name] = tuple(Document(latent, layers=[Layer(params, alpha=1.0, id="edit", mask=m)])
                          for m in (None, mask))
    return out


def _miss_timer(engine: Any, doc: Any, res: int) -> Any:
    alphas = iter(np.linspace(0.5, 4.0, 10_000))

    def once() -> None:
        engine.renderer.faces(doc, [{"edit": float(next(alphas))}], res)

    return once


def run_masked(models: Any, onnx_engine: Any, torch_engine: Any, repeats: int) -> dict[str, Any]:
    res_full, res_preview = models.G.config.resolution, onnx_engine.preview_resolution
    out: dict[str, Any] = {"mask": "an ellipse over the mouth, feather 6 px, start 32 px"}
    for name, (plain, masked) in _docs(models).items():
        torch_engine.render(plain)  # the layer's text and ds, and W+ -> S, warm in both
        section: dict[str, Any] = {}
        for label, res in (("full", res_full), ("preview", res_preview)):
            t = timeit_alternating({"masked": _miss_timer(torch_engine, masked, res),
                                    "torch": _miss_timer(torch_engine, plain, res),
                                    "onnx": _miss_timer(onnx_engine, plain, res)}, "cpu", repeats, 1)
            t_masked, t_torch, t_onnx = t["masked"], t["torch"], t["onnx"]
            section[label] = {
                "px": res, "masked_torch": t_masked, "unmasked_torch": t_torch, "unmasked_onnx": t_onnx,
                "masked_vs_unmasked_torch": round(t_masked["min_ms"] / t_torch["min_ms"], 3),
                "masked_vs_unmasked_onnx": round(t_masked["min_ms"] / t_onnx["min_ms"], 3),
            }
        # Far from the mask (the top quarter of the face, the mask is over the mouth) the
        # masked edit must leave the picture as it was, at full size.
        edited = torch_engine.render(masked, {"edit": 3.0})
        unedited = torch_engine.render(plain, {"edit": 0.0})
        top = res_full // 4
        section["far_outside_max_uint8_diff"] = int(np.abs(edited[:top].astype(int) - unedited[:top]).max())
        out[name] = section
    out["goal"] = {
        "measured": max(out[n][k]["masked_vs_unmasked_torch"] for n in ("global_direction", "w_plus_delta")
                        for k in ("full", "preview")),
        "goal": GOAL_MASKED_VS_UNMASKED,
        "against": "the same layer unmasked on the same (torch) backend, worst of full and preview",
    }
    out["goal"]["met"] = out["goal"]["measured"] <= GOAL_MASKED_VS_UNMASKED
    out["regions"] = _regions(torch_engine, _docs(models)["global_direction"][0])
    return out


def _regions(engine: Any, doc: Any) -> dict[str, Any]:
    try:
        from styleclip_desktop.methods import regions
    except ImportError as exc:
        return {"error": f"automatic regions are not available ({exc})"}
    t0 = time.perf_counter()
    first = regions.document_regions(engine.renderer, doc)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    regions.document_regions(engine.renderer, doc)
    warm = time.perf_counter() - t0
    return {"cold_s": round(cold, 3), "cached_ms": round(warm * 1000.0, 3), "landmarks": first.source,
            "coverage": {name: round(float(m.mean()), 3) for name, m in first.masks.items()}}
