"""ONNX graphs of the synthesis network and the CLIP encoders, exported once and cached.

Each graph is exported on first use and kept under `cache_dir()/onnx`, named by the
checkpoint's hash, what the graph computes and `EXPORT_VERSION`, so a new checkpoint or a
change to the export code never picks up a stale file. Before a fresh export is used it
must reproduce torch on fixed seeded inputs at batch 1 and 3 (the batch axis is dynamic,
and a graph that silently froze it would pass batch 1 alone). An export that fails is
deleted, its reason logged and recorded, and the product keeps rendering with torch.

The dynamo exporter is used: the TorchScript one cannot trace the modulated convs, and
the generator modulates activations rather than weights so the batch stays a free axis.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleclip_desktop import paths
from styleclip_desktop.nets.stylegan2 import Generator

log = logging.getLogger(__name__)

# Bump whenever a change here (or in the graphs' modules) changes what an export contains.
EXPORT_VERSION = 1
# Max |onnx - torch| allowed at export time. Images live in [-1, 1] where one uint8 level is
# 0.0078; embeddings are unit vectors. fp32 exports land near 1e-5.
IMAGE_TOLERANCE = 1e-3
EMBEDDING_TOLERANCE = 1e-3
PARITY_BATCHES = (1, 3)
MAX_BATCH = 4096

Progress = Callable[[int, int, str], None]



def onnx_cache_dir() -> Path:
    return paths.cache_dir() / "onnx"


def generator_hash(G: Generator) -> str:
    """The checkpoint's sha256 when it was loaded from a file, else a hash of its weights."""
    known = getattr(G, "source_sha256", None)
    if known:
        return str(known)
    h = hashlib.sha256(json.dumps(G.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- the graphs ---------------------------------------------------------------------------


class SynthesisGraph(nn.Module):
    """S (one input per style slot) -> image, stopping at `out_res`; noise is baked in."""

    def __init__(self, G: Generator, out_res: int) -> None:
        super().__init__()
        self.G = G
        self.out_res = out_res

    def forward(self, *styles: Tensor) -> Tensor:
        return self.G.synthesize(list(styles), out_res=self.out_res)


class TextGraph(nn.Module):
    """Token ids (B, context) -> unit text embeddings (B, D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)  # type: ignore[operator]


class ImageGraph(nn.Module):
    """CLIP-normalized pixels (B, 3, S, S) -> unit image embeddings (B, D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: Tensor) -> Tensor:
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)  # type: ignore[operator]


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """Where a usable graph is (None when there is none) and, if not, why."""

    name: str
    path: Path | None
    reason: str | None = None
    max_abs_diff: float | None = None
    seconds: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.path is not None


@dataclass
class GraphJob:
    """One graph to export: its cache name, how to build the module, and seeded inputs."""

    name: str  # file stem: what, for which checkpoint, by which export code
    make_module: Callable[[], nn.Module]  # built only when an export is needed
    make_inputs: Callable[[nn.Module, int], tuple[Tensor, ...]]  # (module, batch) -> seeded inputs
    input_names: tuple[str, ...]
    output_name: str
    tolerance: float
    _module: nn.Module | None = None

    @property
    def module(self) -> nn.Module:
        if self._module is None:
            self._module = self.make_module().eval().requires_grad_(False)
        return self._module

    def inputs(self, batch: int) -> tuple[Tensor, ...]:
        return self.make_inputs(self.module, batch)


def _stem(kind: str, model_hash: str, detail: str) -> str:
    versions = f"v{EXPORT_VERSION}-torch{torch.__version__.split('+')[0]}"
    tag = hashlib.sha256(f"{kind}|{model_hash}|{detail}|{versions}".encode()).hexdigest()[:20]
    return f"{kind}-{detail}-{tag}"


def synthesis_job(G: Generator, out_res: int | None = None) -> GraphJob:
    res = out_res or G.config.resolution
    if res not in G.config.resolutions:
        raise ValueError(f"out_res must be one of {G.config.resolutions}, got {res}")

    def make_module() -> nn.Module:
        # Export and check on the CPU: a CUDA reference would differ by TF32 rounding.
        return SynthesisGraph(_cpu_model(G), res)  # type: ignore[arg-type]

    def make_inputs(module: nn.Module, batch: int) -> tuple[Tensor, ...]:
        Gc: Generator = module.G  # type: ignore[assignment]
        with torch.no_grad():
            return tuple(Gc.w_to_s(Gc.sample_w(batch, seed=1234 + batch, psi=0.7)))

    names = tuple(f"s{i}" for i in range(len(G.slots)))
    return GraphJob(_stem("synthesis", generator_hash(G), f"{G.config.resolution}-out{res}"), make_module,
                    make_inputs, names, "image", IMAGE_TOLERANCE)


def clip_text_job(clip: Any) -> GraphJob:
    """`clip` is a `styleclip_desktop.nets.clip.ClipModel`."""
    prompts = ["a face", "a face with grey hair", "a smiling face", "a photo of a robot", "red lipstick"]

    def make_inputs(module: nn.Module, batch: int) -> tuple[Tensor, ...]:
        return (clip.tokenize([prompts[i % len(prompts)] for i in range(batch)]).cpu(),)

    return GraphJob(_stem("clip-text", str(clip.model_hash), "text"), lambda: TextGraph(_cpu_model(clip.model)),
                    make_inputs, ("tokens",), "text_features", EMBEDDING_TOLERANCE)


def clip_image_job(clip: Any) -> GraphJob:
    size = int(clip.image_size)

    def make_inputs(module: nn.Module, batch: int) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(99 + batch)
        return (torch.randn(batch, 3, size, size, generator=g),)

    return GraphJob(_stem("clip-image", str(clip.model_hash), f"image{size}"),
                    lambda: ImageGraph(_cpu_model(clip.model)), make_inputs, ("pixels",), "image_features",
                    EMBEDDING_TOLERANCE)


def _cpu_model(model: nn.Module) -> nn.Module:
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return (model if on_cpu else copy.deepcopy(model).cpu()).eval().requires_grad_(False)


def is_cached(job: GraphJob, cache_dir: Path | None = None) -> bool:
    """Whether a checked graph for `job` is on disk (nothing is exported)."""
    return _on_disk(job, Path(cache_dir) if cache_dir is not None else onnx_cache_dir())


def _on_disk(job: GraphJob, folder: Path) -> bool:
    known = _read_record(folder / f"{job.name}.json")
    target = folder / f"{job.name}.onnx"
    return bool(known and known.get("ok") and target.is_file() and target.stat().st_size == known.get("size"))


# --- export with a parity check -------------------------------------------------------------


def ensure_exported(job: GraphJob, cache_dir: Path | None = None, progress: Progress | None = None,
                    tamper: Callable[[Path], None] | None = None) -> ExportResult:
    """The cached graph for `job`, exporting and checking it first if need be.

    `tamper` edits the fresh file before its parity check (tests use it to prove a bad
    export is refused)."""
    from filelock import FileLock

    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # One lock for the folder: exports run one at a time anyway (each uses every core).
        with FileLock(str(folder / ".export.lock")):
            return _ensure_locked(job, folder, progress or (lambda done, total, msg: None), tamper)
    except OSError as exc:  # a read-only or full cache disk costs speed, never the render
        reason = f"the ONNX cache folder {folder} is not usable ({exc.strerror or exc})"
        log.warning("ONNX export %s is not used: %s", job.name, reason)
        return ExportResult(job.name, None, reason)


def _ensure_locked(job: GraphJob, folder: Path, report: Progress,
                   tamper: Callable[[Path], None] | None) -> ExportResult:
    target = folder / f"{job.name}.onnx"
    record = folder / f"{job.name}.json"
    known = _read_record(record)
    if _on_disk(job, folder) and known is not None:
        report(4, 4, "cached")
        return ExportResult(job.name, target, None, known.get("max_abs_diff"), 0.0, cached=True)
    if known is not None and not known.get("ok") and tamper is None and known.get("ort") == _ort_version():
        reason = str(known.get("reason"))
        log.warning("ONNX export %s is not used: %s (recorded earlier)", job.name, reason)
        return ExportResult(job.name, None, reason, known.get("max_abs_diff"), 0.0, cached=True)
    t0 = time.perf_counter()
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{job.name}.", suffix=".onnx")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        report(0, 4, "exporting the graph")
        _export(job, tmp)
        if tamper is not None:
            tamper(tmp)
        report(2, 4, "checking the export against torch")
        diff = parity_diff(job, tmp)
        seconds = time.perf_counter() - t0
        if not np.isfinite(diff) or diff > job.tolerance:
            reason = (f"the exported graph differs from torch by {diff:.3g} "
                      f"(max allowed {job.tolerance:g}) on seeded inputs at batch {PARITY_BATCHES}")
            log.warning("ONNX export %s is not used: %s", job.name, reason)
            _write_record(record, {"ok": False, "reason": reason, "max_abs_diff": diff, "ort": _ort_version()})
            return ExportResult(job.name, None, reason, diff, seconds)
        os.replace(tmp, target)
        _write_record(record, {"ok": True, "size": target.stat().st_size, "max_abs_diff": diff,
                               "seconds": round(seconds, 2), "torch": torch.__version__})
        report(4, 4, "exported")
        log.info("exported %s in %.1f s (max abs diff %.2g)", job.name, seconds, diff)
        return ExportResult(job.name, target, None, diff, seconds)
    except Exception as exc:  # an export bug must never stop rendering: torch still works
        reason = f"the export failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        log.warning("ONNX export %s is not used: %s", job.name, reason)
        return ExportResult(job.name, None, reason, None, time.perf_counter() - t0)
    finally:
        tmp.unlink(missing_ok=True)


def forget(name: str, cache_dir: Path | None = None) -> None:
    """Drop a cached graph (e.g. one ONNX Runtime could not load), so it is exported again."""
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    for suffix in (".onnx", ".json", "-fp16.onnx"):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)


def _export(job: GraphJob, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # Batch 2 as the example: torch.export specializes sizes 0 and 1.
    example = job.inputs(2)
    dynamic = (tuple({0: batch} for _ in example),)
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that all inputs share one batch axis: that is the intent.
        warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used", category=UserWarning)
        program = torch.onnx.export(
            _Positional(job.module).eval(), example, dynamo=True, dynamic_shapes=dynamic, verbose=False,
            input_names=list(job.input_names), output_names=[job.output_name],
        )
    assert program is not None
    program.save(str(path), external_data=False)


class _Positional(nn.Module):
    """Presents every graph as forward(*inputs), so one dynamic-shape spec fits all."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *inputs: Tensor) -> Tensor:
        out: Tensor = self.inner(*inputs)
        return out


def parity_diff(job: GraphJob, path: Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> float:
    """Max |onnx - torch| over the seeded parity batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=list(providers))
    worst = 0.0
    for batch in PARITY_BATCHES:
        inputs = job.inputs(batch)
        with torch.no_grad():
            ref = job.module(*inputs).float().cpu().numpy()
        got = session.run(None, {n: t.cpu().numpy() for n, t in zip(job.input_names, inputs, strict=True)})[0]
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got.astype(np.float32) - ref).max()))
    return worst


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_record(path: Path, data: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(data, indent=1))
    except OSError as exc:  # only a cache: the graph still works this session
        log.warning("could not record the ONNX export in %s: %s", path, exc)
