"""Memory benchmark: what a session with every model at full size costs.

The models are files in their publishers' formats at the real architecture sizes, with
random weights (bench/memory_models.py): NVIDIA's config-f 1024 pickle, CLIP ViT-B/32, the
e4e checkpoint and ArcFace IR-SE50. They are loaded by the app's own loaders, the render
engine opens its ONNX graphs (exported once into the user cache's "onnx-bench" folder and
reused), renders a text edit at full size and as the drag preview, and e4e and ArcFace run
once, as importing a photo and an identity-preserving edit do.

Every configuration runs in a fresh interpreter, so nothing earlier stays in its numbers:
the interpreter with torch, then the app's imports, then each model added in turn. Inside
the full session the peak is reset before each step (Linux's clear_refs), so each step
reports the peak while it ran and the resident size after it: loading peaks and the steady
state apart. Sizes are MiB of resident memory (VmHWM / VmRSS), with the anonymous and
file-backed parts of the steady state. The goal: the whole session's peak at most 4 GiB.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOAL_MIB = 4096
ROOT = Path(__file__).resolve().parents[1]
LOAD_STEPS = ("generator", "clip", "e4e", "arcface", "engine")
SESSION = (*LOAD_STEPS, "render", "encode")
CHILD_TIMEOUT_S = 900
# The product's defaults on a CPU (ONNX Runtime's memory pattern off, CLIP served by torch)
# against the settings they replaced, to show what each costs.
VARIANTS: dict[str, dict[str, Any]] = {
    "ort_mem_pattern_on": {"ort": {"enable_mem_pattern": True}},
    "clip_onnx_graphs_too": {"clip_graphs": True},
    "ort_cpu_mem_arena_off": {"ort": {"enable_cpu_mem_arena": False}},
}


def _status() -> dict[str, float]:
    """This process's resident memory in MiB (peak, now, anonymous, file-backed)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: the peak is all there is
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = kb / 1024.0 if sys.platform != "darwin" else kb / 2**20
        return {"peak_mib": round(peak, 1)}
    fields = {k: int(m.group(1)) / 1024.0 for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile")
              if (m := re.search(rf"^{k}:\s+(\d+)", text, re.MULTILINE))}
    return {"peak_mib": round(fields["VmHWM"], 1), "rss_mib": round(fields["VmRSS"], 1),
            "anon_mib": round(fields.get("RssAnon", 0.0), 1), "file_mib": round(fields.get("RssFile", 0.0), 1)}


def _reset_peak() -> bool:
    """Start the peak afresh from the current size (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- what runs in the fresh interpreters ---------------------------------------------------


def _models_set(G: Any, clip: Any) -> Any:
    import numpy as np
    import torch

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.render.pipeline import ModelSet

    rng = np.random.RandomState(0)
    fs3 = rng.randn(len(gd.conv_channel_index(G)), clip.embed_dim).astype(np.float32)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    with torch.no_grad():
        s = torch.cat(G.w_to_s(G.sample_w(64, seed=5)), 1).double().numpy()
    return ModelSet(G=G, clip=clip, fs3=fs3, stats=gd.StyleStats(s.mean(0), s.std(0) + 1e-3, 64))


def _document(G: Any) -> Any:
    import torch

    from styleclip_desktop.document import Document, GlobalDirectionParams, Layer

    with torch.no_grad():
        latent = G.broadcast_w(G.sample_w(1, seed=3))[0].numpy()
    return Document(latent, layers=[Layer(GlobalDirectionParams("a face with grey hair", beta=0.1), alpha=3.0,
                                          id="hair")])


def _generator(files: dict[str, str], work: Path, quick: bool) -> Any:
    from styleclip_desktop.weights.formats import load_generator

    G = load_generator(files["generator"], cache_dir=work / "cache")
    # NVIDIA's pickle names tensor storages by memory address, so each run's file hashes
    # differently; the seeded weights do not, and this name lets runs share their graphs.
    G.source_sha256 = f"bench-memory-{'tiny' if quick else 'config-f-1024'}-seed0"  # type: ignore[assignment]
    return G


def _session_step(name: str, spec: dict[str, Any], held: dict[str, Any]) -> str:
    """Do one step of a session, keeping what it loads in `held`; returns a note."""
    import torch

    files, work, onnx_dir = spec["files"], Path(spec["work"]), Path(spec["onnx_dir"])
    if name == "generator":
        held["G"] = _generator(files, work, spec["quick"])
        return "warm start: the converted copy in the cache"
    if name == "clip":
        from styleclip_desktop.nets.clip import load_clip

        held["clip"] = load_clip(files["clip"], cache_dir=work / "text")
        return "safetensors, OpenAI layout"
    if name == "e4e":
        from styleclip_desktop.nets.e4e import load_e4e

        G = held.get("G")
        avg = None if G is None else G.w_avg.detach().cpu()
        held["e4e"] = load_e4e(files["e4e"], latent_avg_fallback=avg)
        return "as a photo import loads it (the embedded decoder is not kept)"
    if name == "arcface":
        from styleclip_desktop.nets.irse import load_arcface

        held["arcface"] = load_arcface(files["arcface"])
        return "bare state dict"
    if name == "engine":
        from styleclip_desktop.render.engine import Engine

        held["engine"] = engine = Engine(_models_set(held["G"], held["clip"]), "cpu", backend="auto",
                                         onnx_dir=onnx_dir, background_export=False,
                                         clip_graphs=spec.get("clip_graphs"))
        graphs = sorted(getattr(engine.backend, "sessions", {}) or {})
        clip_graphs = [k for k in ("text", "image") if getattr(engine.backend, k, None) is not None]
        return f"{engine.backend_label}; synthesis graphs {graphs}; CLIP graphs {clip_graphs}"
    if name == "render":
        engine, G = held["engine"], held["G"]
        doc = _document(G)
        # Two of each (other strengths, so the frame cache misses): ONNX Runtime settles
        # its memory only from the second run of a graph on.
        for alpha in (3.0, 1.5):
            engine.render(doc, {"hair": alpha})
        for alpha in (2.0, 2.5):
            engine.render(doc, {"hair": alpha}, preview=True)
        return f"a text edit rendered twice at {engine.resolution} px and twice as the {engine.preview_resolution} px preview"
    if name == "encode":
        with torch.no_grad():
            face = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
            held["e4e"](face)
            held["arcface"].identity_features(face)
        return "e4e encodes one face; ArcFace embeds it"
    raise ValueError(f"unknown step {name}")


def _ort_options(options: dict[str, Any]) -> None:
    """Every ONNX Runtime session this process opens gets `options` (SessionOptions
    attributes): for comparing settings the engine does not use (yet)."""
    import onnxruntime as ort

    class Session(ort.InferenceSession):  # type: ignore[misc]
        def __init__(self, path: Any, sess_options: Any = None, *args: Any, **kwargs: Any) -> None:
            sess_options = sess_options or ort.SessionOptions()
            for key, value in options.items():
                setattr(sess_options, key, value)
            super().__init__(path, sess_options, *args, **kwargs)

    ort.InferenceSession = Session


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this (fresh) interpreter: `spec["steps"]` in turn."""
    out: dict[str, Any] = {"python": _status()}
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out["python_torch"] = {**_status(), "seconds": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    import onnxruntime  # noqa: F401
    import open_clip  # noqa: F401

    import styleclip_desktop.render.engine  # noqa: F401
    if spec.get("ort"):
        _ort_options(spec["ort"])
    gc.collect()
    out["app_imports"] = {**_status(), "seconds": round(time.perf_counter() - t0, 2)}
    held: dict[str, Any] = {}
    resets = True
    for name in spec["steps"]:
        resets = _reset_peak() and resets
        t0 = time.perf_counter()
        note = _session_step(name, spec, held)
        seconds = round(time.perf_counter() - t0, 2)
        gc.collect()
        out[name] = {**_status(), "seconds": seconds, "note": note}
    out["peak_reset_per_step"] = resets
    if "engine" in held:
        held["engine"].shutdown()
    return out


def _prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the files, convert the generator once (the first start, measured) and export
    the engine's graphs if the cache lacks them (not measured: a one-time cost)."""
    from bench.memory_models import write_all

    work = Path(spec["work"])
    t0 = time.perf_counter()
    files = write_all(work / "models", tiny=spec["quick"])
    out: dict[str, Any] = {"files": files, "write_s": round(time.perf_counter() - t0, 1),
                           "sizes_mib": {k: round(os.path.getsize(p) / 2**20, 1) for k, p in files.items()}}
    return out


def _first_conversion(spec: dict[str, Any]) -> dict[str, Any]:
    """The first start: NVIDIA's pickle read and converted into the cache."""
    import torch  # noqa: F401

    from styleclip_desktop.weights.formats import load_generator

    gc.collect()
    before = _status()
    _reset_peak()
    t0 = time.perf_counter()
    load_generator(spec["files"]["generator"], cache_dir=Path(spec["work"]) / "cache")
    gc.collect()
    return {"before": before, "after": {**_status(), "seconds": round(time.perf_counter() - t0, 2)}}


def _export(spec: dict[str, Any]) -> dict[str, Any]:
    from styleclip_desktop.nets.clip import load_clip
    from styleclip_desktop.render.engine import Engine

    work = Path(spec["work"])
    G = _generator(spec["files"], work, spec["quick"])
    clip = load_clip(spec["files"]["clip"], cache_dir=work / "text")
    t0 = time.perf_counter()
    engine = Engine(_models_set(G, clip), "cpu", backend="onnx", onnx_dir=Path(spec["onnx_dir"]))
    out = {"seconds": round(time.perf_counter() - t0, 1), "backend": engine.backend_label,
           "notices": list(engine.notices)}
    engine.shutdown()
    return out


def _main() -> None:
    spec = json.loads(sys.argv[1])
    fn = {"prepare": _prepare, "convert": _first_conversion, "export": _export, "session": _child}[spec["kind"]]
    print("\n@@result " + json.dumps(fn(spec)), flush=True)


def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    code = "import bench.memory as m; m._main()"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S)
    for line in proc.stdout.splitlines():
        if line.startswith("@@result "):
            return dict(json.loads(line[len("@@result "):]))
    tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    return {"error": f"the {spec['kind']} process exited with {proc.returncode}: {tail[-400:]}"}


# --- the suite -------------------------------------------------------------------------------


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _summary(session: dict[str, Any]) -> dict[str, Any]:
    """Loading peak vs steady state, and what each step added to the resident size."""
    steps = ["app_imports", *SESSION]
    peaks = [session[s]["peak_mib"] for s in ("python", "python_torch", *steps) if s in session]
    added, prev = {}, session["python_torch"].get("rss_mib", 0.0)
    for s in steps:
        rss = session[s].get("rss_mib", session[s]["peak_mib"])
        added[s] = round(rss - prev, 1)
        prev = rss
    return {
        "python_torch_mib": session["python_torch"].get("rss_mib"),
        "added_mib": added,
        "loading_peak_mib": max(session[s]["peak_mib"] for s in LOAD_STEPS),
        "steady_after_loading_mib": session["engine"].get("rss_mib"),
        "steady_after_use_mib": session["encode"].get("rss_mib"),
        "use_peak_mib": max(session[s]["peak_mib"] for s in ("render", "encode")),
        "total_peak_mib": max(peaks),
    }


def run(device: Any, repeats: int = 3, quick: bool = False,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """`repeats` and `device` do not apply: memory is counted once, on the CPU."""
    from bench.harness import Stages
    from styleclip_desktop import paths

    configs = [list(SESSION[:n]) for n in range(len(LOAD_STEPS))] + [list(SESSION)]
    stage = Stages(progress, 3 + len(configs) + len(VARIANTS))
    out: dict[str, Any] = {"load_average_start": _load(), "cpu_count": os.cpu_count(), "quick": quick,
                           "models": "tiny test sizes (quick): the numbers mean nothing" if quick else
                           "config-f 1024 generator, CLIP ViT-B/32, e4e and ArcFace IR-SE50 at full size, "
                           "random weights, in their published file formats"}
    work = Path(tempfile.mkdtemp(prefix="styleclip-memory-"))
    onnx_dir = paths.cache_dir() / "onnx-bench"  # random-weight graphs: safe to delete
    try:
        base = {"work": str(work), "onnx_dir": str(onnx_dir), "quick": quick}
        prep = _spawn({**base, "kind": "prepare"})
        stage()
        if "error" in prep:
            out["error"] = prep["error"]
            return out
        out["files_mib"], out["write_s"] = prep["sizes_mib"], prep["write_s"]
        spec = {**base, "files": prep["files"]}
        out["first_start_conversion"] = _spawn({**spec, "kind": "convert"})
        stage()
        out["onnx_export"] = _spawn({**spec, "kind": "export"})
        stage()
        totals: dict[str, Any] = {}
        for steps in configs:
            result = _spawn({**spec, "kind": "session", "steps": steps})
            label = "+".join(["python_torch", "app_imports", *steps])
            totals[label] = result.get("error") or max(v["peak_mib"] for v in result.values() if isinstance(v, dict))
            if steps == configs[-1]:
                out["session"] = result
            stage()
        out["fresh_process_peaks_mib"] = totals
        if "error" in out.get("session", {"error": ""}):
            out["error"] = out.get("session", {}).get("error", "the session did not run")
            return out
        out["summary"] = summary = _summary(out["session"])
        peak = summary["total_peak_mib"]
        # What the engine's settings cost: the same session with ONNX Runtime's CPU arena
        # off (activations freed after each run instead of kept for the next), and also
        # with CLIP served by torch alone (no second copy of it in ONNX Runtime).
        out["variants"] = {}
        for label, extra in VARIANTS.items():
            variant = _spawn({**spec, "kind": "session", "steps": list(SESSION), **extra})
            stage()
            out["variants"][label] = variant.get("error") or {
                **_summary(variant), "render_s": variant["render"]["seconds"],
                "render_s_engine_settings": out["session"]["render"]["seconds"], "settings": extra}
        out["goals"] = {"peak_memory_full_session": {"measured": peak, "goal": GOAL_MIB, "met": peak <= GOAL_MIB,
                                                     "unit": "MiB"}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        out["load_average_end"] = _load()
    return out
