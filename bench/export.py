"""Export benchmark: memory stays flat over long animations, and frames/s at full size.

- memory: each format exports 600 frames at 256 px in a fresh process that reads its own
  peak RSS (VmHWM) at frame 100 and after the file is complete. Frames come from a narrow
  generator built at 256 px, so the frames, encoders and files are the real size while
  rendering stays quick. Holding the frames would cost 500 x 256 x 256 x 3 = 98 MB raw
  (33 MB palettised, as Pillow's own GIF writer keeps them); the bound below is far under.
- throughput: a random-weight config-f 1024 generator (costs what the trained one costs)
  through the engine into each encoder, a few frames; plus encode-only rates on frames
  already rendered, which show what the encoder adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RSS_GROWTH_BOUND_MB = 24.0
FORMATS = ("mp4", "gif", "webp")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def _doc(G: Any) -> Any:
    import torch

    from styleclip_desktop.document import Document, Layer, OptimizationParams

    with torch.no_grad():
        latent = G.broadcast_w(G.sample_w(1, seed=1))[0].cpu().numpy().astype(np.float32)
    delta = np.random.RandomState(0).randn(*latent.shape).astype(np.float32) * 0.5
    return Document(latent, layers=[Layer(OptimizationParams("bench", delta=delta), alpha=1.0)])


def memory_child(fmt: str, frames: int, size: int, mark: int, device: str) -> dict[str, Any]:
    """Runs in its own process: export `frames` frames, report peak RSS at `mark` and at the end."""
    import torch

    from styleclip_desktop.export.animation import GIF_MAX_FPS, AnimationOptions, export_animation
    from styleclip_desktop.export.source import close_frame_source, open_frame_source
    from styleclip_desktop.render.pipeline import ModelSet
    from styleclip_desktop.weights.synthetic import tiny_generator

    # Render speed is not what this measures; one thread keeps it quick on a busy machine.
    torch.set_num_threads(1)
    G = tiny_generator(size, seed=0)
    engine = open_frame_source(ModelSet(G=G), device)
    fps = GIF_MAX_FPS if fmt == "gif" else 60.0
    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        if done == mark:
            marks.update(hwm_at_mark_mb=_status_mb("VmHWM"), rss_at_mark_mb=_status_mb("VmRSS"))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"bench.{fmt}"
        t0 = time.perf_counter()
        result = export_animation(engine, _doc(G), out, AnimationOptions(
            fps=fps, seconds=frames / fps, size=size, crop=True, morph=True), progress=progress)
        seconds = time.perf_counter() - t0
        file_mb = round(out.stat().st_size / 2**20, 2)
    close_frame_source(engine)
    hwm_end = _status_mb("VmHWM")
    return {"frames": result.frames, "size": size, **marks, "hwm_end_mb": hwm_end, "rss_end_mb": _status_mb("VmRSS"),
            "peak_growth_after_mark_mb": round(hwm_end - marks["hwm_at_mark_mb"], 1), "file_mb": file_mb,
            "frames_per_s": round(result.frames / seconds, 2)}


def _memory(device: str, frames: int, size: int, mark: int, stage: Callable[[], None] = lambda: None) -> dict[str, Any]:
    out: dict[str, Any] = {"frames": frames, "size": size, "mark_frame": mark,
                           "bound_mb": RSS_GROWTH_BOUND_MB,
                           "frames_held_would_cost_mb": round((frames - mark) * size * size * 3 / 2**20, 1)}
    for fmt in FORMATS:
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench.export import memory_child; "
                "print(json.dumps(memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), "
                "sys.argv[6])))")
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT), fmt, str(frames), str(size), str(mark), device],
                              capture_output=True, text=True, cwd=ROOT, timeout=1800)
        stage()
        if proc.returncode != 0:
            out[fmt] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            continue
        out[fmt] = json.loads(proc.stdout.strip().splitlines()[-1])
    growths = [out[f].get("peak_growth_after_mark_mb") for f in FORMATS]
    out["within_bound"] = all(g is not None and g <= RSS_GROWTH_BOUND_MB for g in growths)
    return out


class _Replay:
    """A frame source that hands out frames rendered earlier: encoder cost alone."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames

    def render_frames(self, doc_or_state: Any, alphas_list: Sequence[Any], **_: Any) -> Iterator[np.ndarray]:
        for i in range(len(alphas_list)):
            yield self.frames[i % len(self.frames)]


def _throughput(device: Any, res: int, frames: int, repeats: int,
                stage: Callable[[], None] = lambda: None) -> dict[str, Any]:
    import torch

    from styleclip_desktop.export.animation import AnimationOptions, export_animation
    from styleclip_desktop.export.source import close_frame_source, open_frame_source
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
    from styleclip_desktop.render.pipeline import ModelSet

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=res)).eval().requires_grad_(False)
    engine = open_frame_source(ModelSet(G=G), device, frame_cache_mb=0)
    doc = _doc(G)
    out: dict[str, Any] = {"generator": f"config-f {res}px, random weights", "frames": frames,
                           "backend": getattr(engine, "backend_label", "?")}
    lid = doc.layers[0].id
    alphas = [{lid: a} for a in np.linspace(0.0, 1.0, frames)]
    list(engine.render_frames(doc, [{lid: -1.0}], size=res))  # warm-up: first-call allocations
    t0 = time.perf_counter()
    rendered = list(engine.render_frames(doc, alphas, size=res))
    out["render_only_fps"] = round(frames / (time.perf_counter() - t0), 3)
    stage()
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            path = Path(tmp) / f"t.{fmt}"
            opts = AnimationOptions(fps=min(frames, 50), seconds=1.0, size=res, crop=True, morph=True)
            t0 = time.perf_counter()
            result = export_animation(engine, doc, path, opts)
            out[f"{fmt}_export_fps"] = round(result.frames / (time.perf_counter() - t0), 3)
            best = float("inf")
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                replayed = export_animation(_Replay(rendered), doc, path, opts)
                best = min(best, time.perf_counter() - t0)
            out[f"{fmt}_encode_only_fps"] = round(replayed.frames / best, 2)
            stage()
    close_frame_source(engine)
    return out


def run(device: Any, repeats: int = 3, quick: bool = False,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from bench.harness import Stages

    stage = Stages(progress, 2 * len(FORMATS) + 1)
    start = os.getloadavg()
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_1m_start": round(start[0], 2)}
    if quick:
        out["memory"] = _memory(str(device), frames=60, size=64, mark=20, stage=stage)
        out["throughput"] = _throughput(device, res=32, frames=3, repeats=1, stage=stage)
    else:
        out["memory"] = _memory(str(device), frames=600, size=256, mark=100, stage=stage)
        out["throughput"] = _throughput(device, res=1024, frames=4, repeats=repeats, stage=stage)
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    return out
