"""OpenAI CLIP ViT-B/32 via open_clip: safe loading, differentiable image encoding, cached text embeddings.

Every weights file goes through one path: read a state dict without running code, build the model from
its shapes, always with QuickGELU (OpenAI trained with it; GELU loads without complaint and gives wrong
embeddings). The tiny synthetic checkpoint used by tests and demos takes that same path.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import pickle
import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip.transformer import QuickGELU
from PIL import Image

from styleclip_desktop import paths
from styleclip_desktop.errors import ModelFileError, UnsafePickleError, UserError
from styleclip_desktop.nets import checkpoint

SAFETENSORS_HINT = (
    "Use open_clip's ViT-B-32 file 'open_clip_model.safetensors' "
    "(Hugging Face repository timm/vit_base_patch32_clip_224.openai)."
)

# open_clip's name for OpenAI's ViT-B/32 with the activation it was trained with.
OPENAI_MODEL = "ViT-B-32-quickgelu"

# OpenAI's 80 ImageNet templates without "a photo of many {}.", as StyleCLIP's global directions use them.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.",
    "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
    "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.",
    "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
    "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
    "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
)

_WHAT = "CLIP weights file"
_MAX_CONTEXT = 1024
# Entries OpenAI's files carry beside the weights; the model rebuilds them itself.
_NOT_WEIGHTS = {"input_resolution", "context_length", "vocab_size"}
_STORAGE_DTYPES = {f"{name}Storage": dtype for name, dtype in [
    ("Float", torch.float32), ("Half", torch.float16), ("BFloat16", torch.bfloat16),
    ("Double", torch.float64), ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16),
    ("Char", torch.int8), ("Byte", torch.uint8), ("Bool", torch.bool)]}


class ClipModel:
    """A frozen CLIP model with the product's preprocessing and a text-embedding cache."""

    def __init__(self, model: CLIP, model_hash: str, device: str | torch.device = "cpu",
                 cache_dir: str | os.PathLike[str] | None = None, memory_items: int = 256) -> None:
        if not uses_quick_gelu(model):
            raise ModelFileError("This CLIP model uses GELU; OpenAI's weights need QuickGELU to be right.")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.model_hash = model_hash
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.embed_dim = int(model.visual.output_dim)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "text"
        self._tokenizer = _tokenizer(int(model.context_length))
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_items = memory_items
        self._lock = threading.Lock()
        self._mean = torch.tensor(OPENAI_DATASET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(OPENAI_DATASET_STD, device=self.device).view(1, 3, 1, 1)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts)).to(self.device)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit-norm embeddings. no_grad rather than inference_mode: the result may meet autograd."""
        with torch.no_grad():
            features = self._encode_tokens(self.tokenize(texts))
        return F.normalize(features.float(), dim=-1)

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The text tower on only as many positions as the longest text uses.

        CLIP's text attention is causal and the embedding is read at the end-of-text token,
        so the padding after it never influences the result: cutting it gives the same
        embedding several times faster (a prompt is ~10 tokens of the 77)."""
        m = self.model
        used = int((tokens != 0).sum(dim=1).max())
        if not all(hasattr(m, a) for a in ("token_embedding", "positional_embedding", "attn_mask", "transformer")):
            return m.encode_text(tokens)  # type: ignore[no-any-return]
        from open_clip.transformer import text_global_pool

        t = tokens[:, :used].to(self.device)
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(t).to(cast) + m.positional_embedding[:used].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:used, :used])
        x = m.ln_final(x)
        x = text_global_pool(x, t, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if isinstance(m.text_projection, torch.nn.Linear):
            return m.text_projection(x)  # type: ignore[no-any-return]
        return x @ m.text_projection  # type: ignore[no-any-return]

    def text_embedding(self, text: str) -> np.ndarray:
        """(D,) float32: the unit mean of the unit embeddings of `text` in the 79 templates, cached."""
        if not text.strip():
            raise UserError("The text is empty: type what the edit should look like.")
        key = hashlib.sha256(f"{self.model_hash}\0{text}".encode()).hexdigest()
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit.copy()
        emb = self._read_cached(key)
        if emb is None:
            per_template = self.encode_text([t.format(text) for t in IMAGENET_TEMPLATES])
            emb = F.normalize(per_template.mean(dim=0), dim=0).cpu().numpy().astype(np.float32)
            self._write_cached(key, emb)
        with self._lock:
            self._memory[key] = emb
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)
        return emb.copy()

    def text_direction(self, target: str, neutral: str = "a face") -> np.ndarray:
        """(D,) float32 unit vector from `neutral` to `target` in CLIP space."""
        d = self.text_embedding(target).astype(np.float64) - self.text_embedding(neutral)
        norm = float(np.linalg.norm(d))
        if norm < 1e-6:
            raise UserError(f"Target and neutral text mean the same to CLIP ({target!r} vs {neutral!r}).")
        return (d / norm).astype(np.float32)

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.npy"

    def _read_cached(self, key: str) -> np.ndarray | None:
        try:
            arr = np.load(self._cache_path(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        ok = (
            arr.shape == (self.embed_dim,) and arr.dtype == np.float32 and bool(np.isfinite(arr).all())
            and abs(float(np.linalg.norm(arr)) - 1.0) < 1e-3
        )
        return arr if ok else None

    def _write_cached(self, key: str, emb: np.ndarray) -> None:
        # The cache only saves time, so a full or read-only disk must never fail an edit.
        tmp = None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{key[:16]}", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, emb)
            os.replace(tmp, self._cache_path(key))
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [-1, 1] -> CLIP's normalized input, differentiably.

        Not clamped: the generator overshoots [-1, 1] a little and clamping would cut its gradient there.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        size = self.image_size
        h, w = int(x.shape[-2]), int(x.shape[-1])
        nh, nw = _resized_size(h, w, size)
        if (nh, nw) != (h, w):
            # antialias=True uses the same bicubic filter as PIL, so photos and renders agree.
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = _crop_origin(nh, nw, size)
        x = x[..., top : top + size, left : left + size]
        return ((x + 1) / 2 - self._mean) / self._std

    def preprocess_pil(self, image: Image.Image) -> torch.Tensor:
        """A photo -> (3, S, S) normalized, the same pipeline as `preprocess` (and as open_clip's)."""
        image = image.convert("RGB")
        size = self.image_size
        nh, nw = _resized_size(image.height, image.width, size)
        if (nh, nw) != (image.height, image.width):
            image = image.resize((nw, nh), Image.Resampling.BICUBIC)
        top, left = _crop_origin(nh, nw, size)
        arr = np.asarray(image, dtype=np.float32)[top : top + size, left : left + size] / 255.0
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).to(self.device)
        return (x - self._mean[0]) / self._std[0]

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) unit-norm embeddings of already normalized input (e.g. stacked `preprocess_pil` output)."""
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) unit-norm embeddings of (B,3,H,W) images in [-1, 1]; gradients flow to `images`."""
        return self.encode_preprocessed(self.preprocess(images))


def load_clip(source: str | os.PathLike[str], device: str | torch.device = "cpu",
              cache_dir: str | os.PathLike[str] | None = None) -> ClipModel:
    """"openai" (open_clip's download) or a local .safetensors / .bin / .pt file, including OpenAI's own."""
    if isinstance(source, str) and source == "openai":
        try:
            # The "-quickgelu" name: open_clip 3.x builds plain "ViT-B-32" with GELU even for the
            # openai tag (it only warns), and OpenAI's weights give wrong embeddings under GELU.
            model = open_clip.create_model_and_transforms(OPENAI_MODEL, pretrained="openai", device=device)[0]
        except Exception as e:
            detail = " ".join(str(e).split())[:300]
            raise ModelFileError(f"Could not get OpenAI CLIP ViT-B/32 through open_clip ({detail}). Connect "
                                 f"to the internet once, or choose a local file. {SAFETENSORS_HINT}") from e
        return ClipModel(model, "openai", device, cache_dir)
    path = Path(source).expanduser()
    model = build_clip(read_clip_state_dict(path), name=path.name, adopt=True)
    return ClipModel(model, _sha256(path), device, cache_dir)


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    acts = [m for m in model.modules() if isinstance(m, QuickGELU | torch.nn.GELU)]
    return bool(acts) and all(isinstance(m, QuickGELU) for m in acts)


def build_clip(state_dict: dict[str, torch.Tensor], name: str = "the CLIP file", adopt: bool = False) -> CLIP:
    """An open_clip CLIP (always QuickGELU, float32) shaped by an OpenAI-layout ViT state dict.

    With `adopt`, the float32 tensors of `state_dict` become the model's weights (no second
    copy of CLIP's 600 MB), so the caller must not use them afterwards."""
    sd = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()
          if k not in _NOT_WEIGHTS and not k.endswith("attn_mask")}
    try:
        conv, pos = sd["visual.conv1.weight"], sd["visual.positional_embedding"]
        grid = round((pos.shape[0] - 1) ** 0.5)
        if "visual.proj" not in sd or conv.ndim != 4 or grid * grid + 1 != pos.shape[0]:
            raise ValueError("not a ViT image tower")
        width = sd["ln_final.weight"].shape[0]
        vision = CLIPVisionCfg(
            layers=_count_blocks(sd, "visual.transformer.resblocks."), width=conv.shape[0],
            patch_size=conv.shape[-1], image_size=conv.shape[-1] * grid,
        )
        text = CLIPTextCfg(
            context_length=sd["positional_embedding"].shape[0],
            vocab_size=sd["token_embedding.weight"].shape[0], width=width, heads=max(width // 64, 1),
            layers=_count_blocks(sd, "transformer.resblocks."),
        )
        if not 1 <= text.context_length <= _MAX_CONTEXT:
            # The causal mask is context_length squared floats, and no tensor in the file backs it.
            raise ValueError(f"a text context of {text.context_length} tokens (OpenAI's CLIP has 77)")

        def make(vision: CLIPVisionCfg = vision, text: CLIPTextCfg = text) -> CLIP:
            return CLIP(sd["text_projection"].shape[1], vision_cfg=vision, text_cfg=text, quick_gelu=True)

        def causal_mask() -> dict[str, torch.Tensor]:
            # The one tensor no file holds, from a CLIP of one narrow layer with this context.
            small = make(CLIPVisionCfg(layers=1, width=64, patch_size=vision.patch_size, image_size=vision.image_size),
                         CLIPTextCfg(context_length=text.context_length, vocab_size=1, width=8, heads=1, layers=1))
            return {"attn_mask": small.attn_mask}

        with torch.device("meta"):
            expected = set(make().state_dict())
        if missing := sorted(expected - sd.keys()):
            raise ValueError(f"missing {', '.join(missing[:3])}")
        if unexpected := sorted(sd.keys() - expected):
            raise ValueError(f"unexpected {', '.join(unexpected[:3])}")
        model = checkpoint.build_checked(make, sd, adopt=adopt, fill=causal_mask)
    except (KeyError, ValueError, RuntimeError, IndexError, AssertionError, TypeError, AttributeError) as e:
        detail = checkpoint.one_line(e, 200)
        raise ModelFileError(
            f"{name} is not an OpenAI-layout CLIP ViT checkpoint ({detail}). {SAFETENSORS_HINT}") from e
    return model.eval()


def read_clip_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a weights file, never executing anything it contains."""
    if not path.exists():
        raise ModelFileError(f"CLIP model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"CLIP model path is not a file: {path}")
    size = path.stat().st_size
    if size < 16:
        raise ModelFileError(f"CLIP model file {path.name} is empty or truncated ({size} bytes).")
    with path.open("rb") as f:
        head = f.read(9)
    header_len = int.from_bytes(head[:8], "little")
    try:
        if head.startswith(b"PK\x03\x04"):
            obj: Any = _read_zip(path)
        elif (head[8:9] == b"{" and header_len < size) or path.suffix == ".safetensors":
            # safetensors checks every header entry against the file before it reads data.
            obj = _read_safetensors(path)
        else:
            obj = checkpoint.torch_load(path, what=_WHAT)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{checkpoint.named(e, path.name)} {SAFETENSORS_HINT}") from None
    except ModelFileError as e:
        raise checkpoint.named(e, path.name) from None
    except Exception as e:
        raise ModelFileError(f"CLIP model file {path.name} is damaged, truncated or not a weights file "
                             f"({checkpoint.describe(e)}). Download it again. {SAFETENSORS_HINT}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ModelFileError(f"{path.name} holds no CLIP weights. {SAFETENSORS_HINT}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def tiny_clip_state_dict(seed: int = 0, shared_rank: int | None = None) -> dict[str, torch.Tensor]:
    """A small random CLIP in OpenAI's layout: real tokenizer, real 512-d embeddings, instant to run.

    `shared_rank` makes both towers project into one shared subspace of that dimension.
    Trained CLIP's image and text embeddings share a space of low effective dimension, which
    is what gives global directions channels whose relevance reaches the published β range
    (0.08-0.3). Independent full-rank random projections make every relevance a random
    number of size about 1/sqrt(512) = 0.044, so no published β would keep a channel.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(
            512,
            vision_cfg=CLIPVisionCfg(layers=2, width=64, patch_size=8, image_size=32),
            text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
            quick_gelu=True,
        )
        sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if shared_rank is not None:
            basis = torch.linalg.qr(torch.randn(512, shared_rank))[0].T  # (rank, 512), orthonormal rows
            for key in ("visual.proj", "text_projection"):
                width = sd[key].shape[0]
                sd[key] = (torch.randn(width, shared_rank) @ basis / width ** 0.5).contiguous()
    return sd


def random_vit_b32(device: str | torch.device = "cpu", seed: int = 0,
                   cache_dir: str | os.PathLike[str] | None = None) -> ClipModel:
    """The real ViT-B/32 architecture with random weights, for benchmarks at the real size."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    return ClipModel(model, f"random-vit-b32-{seed}-torch{torch.__version__}", device, cache_dir)


@lru_cache(maxsize=4)
def _tokenizer(context_length: int) -> Any:
    return open_clip.get_tokenizer("ViT-B-32", context_length=context_length)


def _resized_size(h: int, w: int, size: int) -> tuple[int, int]:
    # torchvision's Resize(int) rule, which open_clip's preprocessing uses.
    if w <= h:
        return int(size * h / w), size
    return size, int(size * w / h)


def _crop_origin(h: int, w: int, size: int) -> tuple[int, int]:
    # torchvision's CenterCrop rounding.
    return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


def _count_blocks(sd: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.attn\.in_proj_weight$")
    return len({m.group(1) for k in sd if (m := pattern.match(k))})


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file read into memory of its own (torch's, aligned as
    any tensor it allocates), never mapped: the tensors become the model's weights, and a
    mapping would tie the file to the session."""
    with safetensors.safe_open(str(path), framework="pt") as f:  # checks every entry against the file
        keys = list(f.keys())
    out: dict[str, torch.Tensor] = {}
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
        for key in keys:
            info = header[key]
            dtype = _SAFETENSORS_DTYPES.get(str(info["dtype"]))
            start, end = (int(x) for x in info["data_offsets"])
            shape = [int(n) for n in info["shape"]]
            if dtype is None:
                raise ModelFileError(f"{path.name}: tensor {key[:60]} is of type {str(info['dtype'])[:10]}, "
                                     "which CLIP weights do not use")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if end - start != nbytes or 8 + header_len + end > size:
                raise ModelFileError(f"{path.name} changed while it was read, or is damaged")
            t = torch.empty(shape, dtype=dtype)
            if nbytes:
                fh.seek(8 + header_len + start)
                if fh.readinto((ctypes.c_char * nbytes).from_address(t.data_ptr())) != nbytes:
                    raise ModelFileError(f"{path.name} is truncated. Download it again.")
            out[key] = t
    return out


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_zip(path: Path) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ModelFileError(f"CLIP model file {path.name} is truncated or damaged; get it again.") from e
    with zf:
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist()):
            return _read_torchscript(zf, path.name)
    # Read into memory, not mapped: the loaded tensors become the model's weights.
    return checkpoint.torch_load(path, what=_WHAT, mmap=False)


class _ScriptObject:
    """Stands in for a TorchScript module: keeps its attributes, has no code."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _read_torchscript(zf: zipfile.ZipFile, name: str) -> dict[str, torch.Tensor]:
    """OpenAI's TorchScript archive -> state dict without torch.jit.load, which runs the archive's code.

    Only data.pkl is read, with an unpickler that knows tensors and nothing else.
    """
    pkl = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise ModelFileError(f"{name} is a TorchScript archive without its weights. {SAFETENSORS_HINT}")
    prefix = pkl[0].rsplit("/", 1)[0]
    storages: dict[str, torch.Tensor] = {}

    def rebuild(storage: torch.Tensor, offset: int, shape: tuple[int, ...], stride: tuple[int, ...],
                *_: Any) -> Any:
        t = storage.as_strided(tuple(shape), tuple(stride), int(offset))  # bounds-checked by torch
        checkpoint.check_tensor(t, name)  # and no more elements than its storage (no stride 0)
        return t

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, cls: str) -> Any:
            if module.startswith("__torch__."):
                return _ScriptObject
            if (module, cls) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, cls) == ("collections", "OrderedDict"):
                return OrderedDict
            if module == "torch" and cls in _STORAGE_DTYPES:
                return _STORAGE_DTYPES[cls]
            raise UnsafePickleError(f"{name} asks for {module}.{cls}, which CLIP weights never need; "
                                    f"nothing was run. {SAFETENSORS_HINT}")

        def persistent_load(self, pid: Any) -> Any:
            kind, dtype, key, _location, numel = pid
            if kind != "storage" or not isinstance(dtype, torch.dtype) or not re.fullmatch(r"\w+", str(key)):
                raise ModelFileError(f"{name} has a malformed tensor record.")
            if key not in storages:
                info = zf.getinfo(f"{prefix}/data/{key}")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ModelFileError(f"{name} is not a PyTorch archive (compressed tensor data).")
                raw = bytearray(zf.read(info))
                itemsize = torch.empty((), dtype=dtype).element_size()
                if len(raw) < int(numel) * itemsize or len(raw) % itemsize:
                    raise ModelFileError(f"{name} is truncated. Download it again.")
                storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            return storages[key]

    with zf.open(pkl[0]) as f:
        checkpoint.check_pickle_lengths(f, zf.getinfo(pkl[0]).file_size)
        root = Unpickler(f).load()
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def collect(obj: Any, key: str) -> None:
        if isinstance(obj, torch.Tensor):
            out[key] = obj.clone()
        elif isinstance(obj, _ScriptObject) and isinstance(obj.state, dict) and id(obj) not in seen:
            seen.add(id(obj))
            for k, v in obj.state.items():
                if isinstance(k, str):
                    collect(v, f"{key}.{k}" if key else k)

    collect(root, "")
    return out
