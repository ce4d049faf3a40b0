"""Where pixels and embeddings are computed: torch, or ONNX Runtime over exported graphs.

Both backends answer the same three questions (S -> image, texts -> embeddings,
images -> embeddings), so the renderer never knows which one it talks to. ONNX Runtime
is faster for inference; torch remains the reference, the fallback, and the only choice
where gradients are needed.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from styleclip_desktop.nets.stylegan2 import Generator, to_uint8, unpack_styles

log = logging.getLogger(__name__)

# fp16 on CUDA is accepted when it stays within this of fp32 on seeded inputs: about two
# uint8 levels, invisible in a preview, and far below what a broken conversion gives.
FP16_TOLERANCE = 2e-2
_OOM_MARKERS = ("out of memory", "failed to allocate memory", "cudnn_status_alloc_failed",
                "cublas_status_alloc_failed", "cudaerrormemoryallocation")


class Backend(Protocol):
    """What the renderer asks for pixels and embeddings."""

    label: str  # "ONNX CUDA", "ONNX CPU", "torch CUDA", "torch CPU"
    kind: str  # "onnx" or "torch"
    on_cuda: bool

    def synthesize(self, s_flat: torch.Tensor, out_res: int) -> np.ndarray:
        """Flat S (B, S) -> (B, H, W, 3) uint8 images of side `out_res` (an early exit below full size)."""
        ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 unit embeddings."""
        ...

    def encode_image(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) images in [-1, 1] -> (B, D) float32 unit embeddings."""
        ...

    def on_cpu(self) -> Backend:
        """The same backend on the CPU (after the GPU ran out of memory)."""
        ...


def is_out_of_memory(exc: BaseException) -> bool:
    """True for GPU memory exhaustion from torch or ONNX Runtime (they word it differently)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


def cuda_usable() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver install reports itself as an exception
        return False


class TorchBackend:
    """The generator and CLIP as PyTorch modules, on the CPU or one CUDA device."""

    kind = "torch"

    def __init__(self, G: Generator, clip: Any | None = None, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.G = G if next(G.parameters()).device == self.device else G.to(self.device)
        self.clip = clip
        self.on_cuda = self.device.type == "cuda"
        self.label = "torch CUDA" if self.on_cuda else "torch CPU"

    def synthesize(self, s_flat: torch.Tensor, out_res: int) -> np.ndarray:
        with torch.no_grad():
            styles = unpack_styles(s_flat.to(self.device, torch.float32), self.G.style_dims)
            return to_uint8(self.G.synthesize(styles, out_res=out_res))

    def on_cpu(self) -> TorchBackend:
        """A CPU twin (after CUDA ran out of memory); a copy, so the CUDA generator stays intact."""
        return TorchBackend(copy.deepcopy(self.G).cpu() if self.on_cuda else self.G, self.clip, "cpu")

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        clip = _need(self.clip)
        return clip.encode_text(list(texts)).cpu().numpy().astype(np.float32)  # type: ignore[no-any-return]

    def encode_image(self, images: torch.Tensor) -> np.ndarray:
        clip = _need(self.clip)
        with torch.no_grad():
            return clip.encode_image(images).cpu().numpy().astype(np.float32)  # type: ignore[no-any-return]


def _need(clip: Any | None) -> Any:
    if clip is None:
        from styleclip_desktop.errors import ModelFileError

        raise ModelFileError("this needs CLIP: download it with `styleclip-desktop models download clip-vit-b32`")
    return clip


@dataclass(frozen=True)
class OrtSettings:
    """How an ONNX Runtime session runs on the CPU (the render benchmark compares them)."""

    # Idle ORT threads otherwise spin for a while after each run, taking the CPU from the
    # UI thread and from the torch work (W+ -> S, CLIP) that follows a render.
    spinning: bool = False
    threads: int = 0  # intra-op threads; 0: one per physical core
    optimization: str = "all"  # "basic", "extended" or "all" (adds the NCHWc layout)
    arena: bool = True  # ORT's CPU memory arena
    # Off: ORT would otherwise plan one buffer for all of a run's intermediate tensors,
    # about 1 GB more at 1024 px, and the render bench measured no gain from it.
    mem_pattern: bool = False

    def label(self) -> str:
        return (f"spin={'on' if self.spinning else 'off'} threads={self.threads or 'auto'} "
                f"opt={self.optimization} arena={'on' if self.arena else 'off'} "
                f"pattern={'on' if self.mem_pattern else 'off'}")


class OrtSession:
    """One ONNX Runtime session and the provider it really got (ORT falls back silently)."""

    def __init__(self, path: Path, want_cuda: bool, settings: OrtSettings = OrtSettings()) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # our notices say what matters; ORT's warnings are noise
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
        options.intra_op_num_threads = settings.threads
        options.enable_cpu_mem_arena = settings.arena
        options.enable_mem_pattern = settings.mem_pattern
        levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        options.graph_optimization_level = levels[settings.optimization]
        providers = ["CPUExecutionProvider"]
        if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.on_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: Sequence[np.ndarray]) -> np.ndarray:
        out = self.session.run(None, dict(zip(self.input_names, feeds, strict=True)))[0]
        return np.asarray(out, dtype=np.float32)


def fp16_graph(path: Path) -> Path:
    """An fp16 copy of an fp32 graph (inputs and outputs stay fp32), cached beside it."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    out = path.with_name(path.stem + "-fp16.onnx")
    if not out.is_file():
        # The demodulation coefficients sum hundreds of squared terms: fp16 would overflow
        # there, and they are tiny per-sample vectors, so they stay fp32; the convs go fp16.
        blocked = [*DEFAULT_OP_BLOCK_LIST, "MatMul", "Sqrt", "Reciprocal"]
        model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True, op_block_list=blocked)
        tmp = out.with_suffix(".tmp")
        onnx.save(model, str(tmp))
        tmp.replace(out)
    return out


class OnnxBackend:
    """Exported graphs on ONNX Runtime: CUDA when it works, else the CPU.

    `synthesis` maps an output resolution (full size, the preview's early exit) to its
    graph; a resolution without a graph, and CLIP without exported encoders, is served by
    `fallback` (a TorchBackend) so a missing graph costs speed, never a feature.
    """

    kind = "onnx"

    def __init__(self, synthesis: Mapping[int, Path], fallback: TorchBackend, *, want_cuda: bool = False,
                 text_graph: Path | None = None, image_graph: Path | None = None, fp16: bool = True,
                 parity_inputs: Callable[[int], torch.Tensor] | None = None) -> None:
        self.fallback = fallback
        self.notices: list[str] = []
        self.precision = "fp32"
        self.sessions = {res: OrtSession(p, want_cuda) for res, p in synthesis.items()}
        first = next(iter(self.sessions.values()), None)
        self.on_cuda = bool(first and first.on_cuda)
        if want_cuda and not self.on_cuda:
            self.notices.append("ONNX Runtime could not use CUDA on this machine; it renders on the CPU")
        self.label = "ONNX CUDA" if self.on_cuda else "ONNX CPU"
        self.text = OrtSession(text_graph, want_cuda) if text_graph is not None else None
        self.image = OrtSession(image_graph, want_cuda) if image_graph is not None else None
        if self.on_cuda and fp16 and parity_inputs is not None:
            self._try_fp16(parity_inputs)

    def _try_fp16(self, parity_inputs: Callable[[int], torch.Tensor]) -> None:
        """Switch each synthesis graph to fp16 only if it matches fp32 on seeded inputs."""
        dims = self.fallback.G.style_dims
        for res, sess in list(self.sessions.items()):
            try:
                half = OrtSession(fp16_graph(sess.path), want_cuda=True)
                worst = 0.0
                for batch in (1, 3):
                    feeds = _feeds(parity_inputs(batch), dims)
                    worst = max(worst, float(np.abs(half.run(feeds) - sess.run(feeds)).max()))
            except Exception as exc:  # fp16 is an optimisation; fp32 keeps working
                self.notices.append(f"fp16 rendering is off: the conversion failed ({type(exc).__name__})")
                return
            if not np.isfinite(worst) or worst > FP16_TOLERANCE:
                self.notices.append(f"fp16 rendering is off: it differs from fp32 by {worst:.3g} at {res}px")
                log.warning("fp16 graph at %spx refused: max abs diff %.3g", res, worst)
                return
            self.sessions[res] = half
        self.precision = "fp16"

    def synthesize(self, s_flat: torch.Tensor, out_res: int) -> np.ndarray:
        sess = self.sessions.get(out_res)
        if sess is None:
            return self.fallback.synthesize(s_flat, out_res)
        img = sess.run(_feeds(s_flat, self.fallback.G.style_dims))
        return to_uint8(torch.from_numpy(img))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if self.text is None:
            return self.fallback.encode_text(texts)
        tokens = _need(self.fallback.clip).tokenize(list(texts)).cpu().numpy()
        return self.text.run([tokens])

    def encode_image(self, images: torch.Tensor) -> np.ndarray:
        if self.image is None:
            return self.fallback.encode_image(images)
        with torch.no_grad():
            pixels = _need(self.fallback.clip).preprocess(images).cpu().numpy()
        return self.image.run([pixels])

    def on_cpu(self) -> OnnxBackend:
        """The same graphs on the CPU (after CUDA ran out of memory)."""
        cpu_torch = self.fallback.on_cpu()
        paths = {res: s.path for res, s in self.sessions.items()}
        paths = {res: p.with_name(p.name.replace("-fp16.onnx", ".onnx")) for res, p in paths.items()}
        return OnnxBackend(paths, cpu_torch, text_graph=self.text.path if self.text else None,
                           image_graph=self.image.path if self.image else None)


def _feeds(s_flat: torch.Tensor, dims: Sequence[int]) -> list[np.ndarray]:
    s = s_flat.detach().to("cpu", torch.float32)
    return [np.ascontiguousarray(t.numpy()) for t in unpack_styles(s, dims)]
