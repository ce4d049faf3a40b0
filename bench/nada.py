"""Domain training (StyleGAN-NADA) at the real sizes: one training iteration of the config-f
1024 generator with ViT-B/32 CLIP (random weights cost what trained ones cost), and the size
of the domain layer's weight delta (float16) for the published number of trained rows.

One iteration is the published one: adaptive layer selection (a global-CLIP descent step on
8 W+ codes through the trainable generator, back-propagated to the codes), then the
directional loss on a batch of 2 through both generator copies and CLIP, back-propagated
into the selected layers, then Adam. On a CPU the passes run `micro_batch` samples at a time
(same math, less memory: one 1024 px sample's backward holds a few GB).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.harness import peak_rss_mb


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _mib(G: Any, rows: Any) -> float:
    from styleclip_desktop.methods.nada import row_parameters

    return round(sum(p.numel() for p in row_parameters(G, rows).values()) * 2 / 2**20, 2)


def delta_sizes(G: Any, k: int) -> dict[str, Any]:
    """float16 delta sizes: per W+ row, the k rows at most and at least, and every row (the
    union a full run can reach, since the rows are chosen again each step)."""
    per_row = {r: _mib(G, [r]) for r in range(G.num_ws)}
    ordered = sorted(per_row, key=lambda r: per_row[r])
    return {"k": k, "rows": G.num_ws, "per_row_mib": per_row,
            "k_largest_rows_mib": _mib(G, ordered[-k:]), "k_smallest_rows_mib": _mib(G, ordered[:k]),
            "all_rows_mib": _mib(G, range(G.num_ws)), "goal_mib": 40.0}


def bench_iteration(device: Any, quick: bool) -> dict[str, Any]:
    from styleclip_desktop.methods import nada
    from styleclip_desktop.nets.clip import random_vit_b32
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig

    dev = torch.device(device)
    gpu = dev.type == "cuda"
    res = 256 if quick else 1024
    out: dict[str, Any] = {"load_average_start": _load(), "cpu_count": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "device": str(dev), "quick": quick,
                           "generator": f"config-f {res}px, random weights", "clip": "ViT-B/32, random weights"}
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=res)).eval().requires_grad_(False)
    cfg = nada.NadaConfig(target="a pencil sketch", iterations=1, micro_batch=0 if gpu else 2)
    out["config"] = cfg.summary()
    out["micro_batch"] = cfg.micro_batch
    out["layers_trained_per_step"] = nada.layers_for(cfg, G.num_ws)
    with tempfile.TemporaryDirectory() as tmp:
        clip = random_vit_b32(device=str(dev), cache_dir=Path(tmp))
        # Layer selection alone, on a trainable copy, as one step runs it.
        train = Generator(G.config).eval().requires_grad_(False)
        train.load_state_dict(G.state_dict())
        train.to(dev)
        clip.encode_text([cfg.target])  # the text tower's first use is not part of a step
        t0 = time.perf_counter()
        nada.select_rows(train, clip, cfg, None, torch.Generator().manual_seed(0))
        if gpu:
            torch.cuda.synchronize()
        out["layer_selection_s"] = round(time.perf_counter() - t0, 2)
        del train
        stamps: dict[str, float] = {}

        def cancel() -> bool:
            stamps["start"] = time.perf_counter()
            return False

        def progress(step: int, total: int, loss: float) -> None:
            if gpu:
                torch.cuda.synchronize()
            stamps["end"] = time.perf_counter()

        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t_all = time.perf_counter()
        result = nada.train_domain(G, clip, cfg, cancel=cancel, progress=progress, device=dev)
        out["run_total_s"] = round(time.perf_counter() - t_all, 2)
    out["iteration_s"] = round(stamps["end"] - stamps["start"], 2)
    out["directional_step_s"] = round(out["iteration_s"] - out["layer_selection_s"], 2)
    out["published_run_estimate_min"] = round(out["iteration_s"] * 301 / 60, 1)
    out["rows_selected"] = list(result.rows)
    out["delta_this_iteration_mib"] = round(sum(v.nbytes for v in result.delta.values()) / 2**20, 2)
    out["delta"] = delta_sizes(G, nada.layers_for(cfg, G.num_ws))
    out["delta"]["met_k_largest"] = out["delta"]["k_largest_rows_mib"] <= 40.0
    out["delta"]["met_all_rows"] = out["delta"]["all_rows_mib"] <= 40.0
    if gpu:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_average_end"] = _load()
    return out


GOAL_DOMAIN_RENDER = 1.1
GOAL_DELTA_MB = 40.0


def bench_render(device: Any, repeats: int, quick: bool) -> dict[str, Any]:
    """A domain layer's render against a plain one, once its adapted generator is built
    (goal at most 1.1x), the build itself, and the layer's size in a saved project.

    Each run moves a text layer stacked on the domain, so every frame is a cache miss while
    the adapted generator comes from the cache; the three take turns run by run."""
    import numpy as np

    from bench.harness import timeit_alternating
    from bench.render import _models
    from styleclip_desktop import paths
    from styleclip_desktop.document import Document, DomainParams, GlobalDirectionParams, Layer, save_project
    from styleclip_desktop.methods import nada
    from styleclip_desktop.render.engine import Engine

    res = 64 if quick else 1024
    out: dict[str, Any] = {"load_average_start": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(res, quick, Path(tmp) / "text")
        G = models.G
        k = nada.layers_for(nada.NadaConfig(target="-"), G.num_ws)
        gen = torch.Generator().manual_seed(0)
        # Which k rows a run trains depends on the run: the render cost does not, the size
        # does, so the largest k (the worst case) are measured, and the smallest k beside them.
        by_size = sorted(range(G.num_ws), key=lambda r: sum(p.numel() for p in nada.row_parameters(G, [r]).values()))
        rows = sorted(by_size[-k:])

        def delta_for(chosen: list[int]) -> dict[str, Any]:
            return {n: (0.01 * torch.randn(p.shape, generator=gen)).numpy().astype(np.float16)
                    for n, p in nada.row_parameters(G, chosen).items()}

        delta = delta_for(rows)
        with torch.no_grad():
            latent = G.broadcast_w(G.sample_w(1, seed=3))[0].numpy()
        text = Layer(GlobalDirectionParams("a face with grey hair", beta=0.1), alpha=1.0, id="hair")
        plain = Document(latent, layers=[text.copy(id="hair")])
        domain = Document(latent, layers=[Layer(DomainParams("a pencil sketch", delta=delta, rows=tuple(rows)),
                                                id="domain"), text.copy(id="hair")])
        onnx = Engine(models, device, backend="onnx", onnx_dir=paths.cache_dir() / "onnx-bench", clip_graphs=False)
        te = Engine(models, device, backend="torch", worker=onnx.worker)
        te.renderer.texts, te.renderer.directions = onnx.renderer.texts, onnx.renderer.directions
        try:
            te.render(plain)
            t0 = time.perf_counter()
            te.renderer.generator_for(domain)
            out["adapted_generator_build_s"] = round(time.perf_counter() - t0, 3)
            alphas = iter(np.linspace(0.5, 4.0, 10_000))

            def frame(engine: Any, doc: Any) -> Any:
                return lambda: engine.renderer.faces(doc, [{"hair": float(next(alphas))}], res)

            t = timeit_alternating({"domain_torch": frame(te, domain), "plain_torch": frame(te, plain),
                                    "plain_onnx": frame(onnx, plain)}, "cpu", repeats, 1)
            out.update(t)
            out["domain_vs_plain_torch"] = round(t["domain_torch"]["min_ms"] / t["plain_torch"]["min_ms"], 3)
            out["domain_vs_plain_onnx"] = round(t["domain_torch"]["min_ms"] / t["plain_onnx"]["min_ms"], 3)
            out["backend"] = onnx.backend_label
            plain_size = save_project(plain, Path(tmp) / "plain.scproj").stat().st_size
            size = save_project(domain, Path(tmp) / "domain.scproj").stat().st_size - plain_size
            small = sorted(by_size[:k])
            domain.layers.get("domain").params = DomainParams("a pencil sketch", delta=delta_for(small),
                                                              rows=tuple(small))
            out["project_mb_added_smallest_rows"] = round(
                (save_project(domain, Path(tmp) / "small.scproj").stat().st_size - plain_size) / 2**20, 2)
        finally:
            te.shutdown()
            onnx.shutdown()
    out["rows_trained"] = k
    out["project_mb_added"] = round(size / 2**20, 2)  # the k largest rows
    out["goals"] = {
        "render_vs_plain_cached": {"measured": out["domain_vs_plain_torch"], "goal": GOAL_DOMAIN_RENDER,
                                   "met": out["domain_vs_plain_torch"] <= GOAL_DOMAIN_RENDER,
                                   "against": "the plain render on the same (torch) backend"},
        "delta_in_project_mb": {"measured": out["project_mb_added"], "goal": GOAL_DELTA_MB,
                                "met": out["project_mb_added"] <= GOAL_DELTA_MB,
                                "rows": f"the {k} largest (worst case); the {k} smallest add "
                                        f"{out['project_mb_added_smallest_rows']} MB"},
    }
    out["load_average_end"] = _load()
    return out


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(json.dumps(bench_iteration(args.device, args.quick), indent=2))
