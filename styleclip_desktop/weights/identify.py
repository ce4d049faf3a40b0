"""Which model a file holds, decided from its bytes, never its name.

Nothing in a file is executed or even fully loaded to identify it:
- PyTorch checkpoints (zip or legacy format) are recognised from the strings in their
  pickle index (the state-dict keys), read opcode by opcode with `pickletools.genops`;
  so a 1.2 GB encoder costs only its small index, and a hostile pickle runs nothing;
- NVIDIA's pickles go through `formats.detect_generator_format`, which scans globals;
- safetensors files by their JSON header, .npy files with `allow_pickle=False`,
  ONNX files by their protobuf header.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.weights.catalog import ARCFACE, CLIP, E4E, FS3, MAPPER, YUNET

_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_ONNX_SIZE_RANGE = (20_000, 20_000_000)  # YuNet is ~230 KB; a guard against arbitrary blobs
_MAX_INDEX = 256 << 20


@dataclass(frozen=True)
class Identified:
    kind: str
    detail: str = ""
    hints: tuple[str, ...] = field(default=())  # free text in the file (mapper prompts, ...)


def identify_file(path: str | os.PathLike[str]) -> Identified | None:
    """The kind of model in `path` (a catalog `format`), or None if it is none we know.

    Raises `ModelFileError` for files we recognise but refuse, with the reason.
    """
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(128)
    if head.startswith(b"\x93NUMPY"):
        return _identify_npy(p)
    if head.startswith(b"version ") and b"\noid sha256:" in head:
        raise ModelFileError(f"{p.name} is a Git LFS pointer, not the model itself; "
                             "download the real file (github.com/.../raw/... follows LFS)")
    if _looks_like_safetensors(p, head):
        return _identify_safetensors(p)
    if _looks_like_onnx(head):
        size = p.stat().st_size
        if _ONNX_SIZE_RANGE[0] <= size <= _ONNX_SIZE_RANGE[1]:
            return Identified(YUNET, f"ONNX model, {size} bytes")
        return None
    if head.startswith(b"PK") and zipfile.is_zipfile(p):
        strings = _zip_pickle_strings(p)
        found = _classify_torch(strings) if strings is not None else None
        return found or _generator(p)
    if head[:1] == b"\x80":
        strings = _legacy_torch_strings(p, head)
        found = _classify_torch(strings) if strings is not None else None
        return found or _generator(p)
    return None


def _generator(p: Path) -> Identified | None:
    from styleclip_desktop.weights.formats import detect_generator_format

    kind = detect_generator_format(p)
    return Identified(kind, "StyleGAN2 generator") if kind else None


# --- PyTorch checkpoints --------------------------------------------------------------


def _classify_torch(strings: set[str]) -> Identified | None:
    keys = {s.removeprefix("module.") for s in strings}
    if {"visual.conv1.weight", "token_embedding.weight"} <= keys:
        return Identified(CLIP, "CLIP state dict")
    if "state_dict" in keys and any(k.startswith("mapper.") for k in keys):
        return Identified(MAPPER, "StyleCLIP latent mapper", tuple(sorted(_free_text(strings))))
    if "latent_avg" in keys and any(k.startswith("encoder.") for k in keys):
        return Identified(E4E, "e4e encoder")
    if ("input_layer.0.weight" in keys and any(k.startswith("body.") for k in keys)
            and any(k.startswith("output_layer.") for k in keys)):
        return Identified(ARCFACE, "IR-SE50 face recognition network")
    return None


def _free_text(strings: Iterable[str]) -> set[str]:
    """Strings that are not tensor names: option values such as a mapper's prompt or paths."""
    return {s for s in strings if len(s) <= 300 and (" " in s or "/" in s or "." not in s)}


def _zip_pickle_strings(p: Path) -> set[str] | None:
    with zipfile.ZipFile(p) as z:
        names = z.namelist()
        if any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names):
            raise ModelFileError(
                f"{p.name} is a TorchScript archive (such as OpenAI's original ViT-B-32.pt), which this "
                "app does not load: it runs code. Use the open_clip weights instead "
                "(`styleclip-desktop models download clip-vit-b-32`)")
        index = [n for n in names if n.rsplit("/", 1)[-1] == "data.pkl"]
        if not index:
            return None
        info = z.getinfo(index[0])
        if info.file_size > _MAX_INDEX:
            return None
        return _pickle_strings(io.BytesIO(z.read(info)), max_pickles=1)


def _legacy_torch_strings(p: Path, head: bytes) -> set[str] | None:
    """torch.save's pre-1.6 format: magic number, protocol, sys info, then the index pickle."""
    if head[:4] != b"\x80\x02\x8a\x0a" or int.from_bytes(head[4:14], "little") != _LEGACY_TORCH_MAGIC:
        return None
    with open(p, "rb") as f:
        return _pickle_strings(f, max_pickles=4)


def _pickle_strings(stream: IO[bytes], max_pickles: int) -> set[str]:
    out: set[str] = set()
    for _ in range(max_pickles):
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in _STRING_OPS:
                    out.add(arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg))
        except Exception:  # end of stream, or a truncated file: keep what was read
            break
    return out


# --- other formats --------------------------------------------------------------------


def _identify_npy(p: Path) -> Identified | None:
    import numpy as np

    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ModelFileError(f"{p.name} is a .npy file holding Python objects; it is refused "
                             f"because loading it would run code ({exc})") from exc
    if arr.ndim == 2 and arr.shape[1] == 512 and arr.shape[0] > 0 and arr.dtype.kind == "f":
        return Identified(FS3, f"channel relevance matrix, {arr.shape[0]} x 512")
    return None


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        return _looks_like_safetensors(path, f.read(16))


def _looks_like_safetensors(p: Path, head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n < min(p.stat().st_size, 100 << 20)


def _identify_safetensors(p: Path) -> Identified | None:
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return None
    keys = {k.removeprefix("module.") for k in header if k != "__metadata__"}
    if {"visual.conv1.weight", "token_embedding.weight"} <= keys:
        shape = header.get("visual.conv1.weight", header.get("module.visual.conv1.weight", {})).get("shape")
        return Identified(CLIP, f"CLIP state dict (patch embedding {shape})")
    return _classify_torch(keys)


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, a small varint) then another known field.
    return (len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 15
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))
