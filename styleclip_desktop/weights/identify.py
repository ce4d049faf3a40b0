"""Which model a file holds, decided from its bytes, never its name.

The kind is first guessed cheaply (the state-dict keys in a PyTorch file's pickle index,
the globals near the top of an NVIDIA pickle, a safetensors or .npy header, an ONNX
protobuf header), then the file is loaded with the very loader the app would use for
that kind: the same restricted unpickling, the same size checks, the same network built
on top. A file is identified only if it loads, so anything `models import`, download
validation or `models verify` accepts is a file the app can use, and a file that hides
something its first megabytes do not show (a forbidden global further in, safetensors
offsets that lie, a truncated tail) is refused with the loader's one-line reason.

Loading runs nothing from the file: torch files with `weights_only`, NVIDIA's pickles
with the allow-list of `safe_pickle`, .npy files without pickles, ONNX files are only
parsed (and refused if they point at data in other files).
"""

from __future__ import annotations

import io
import os
import pickletools
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets import checkpoint
from styleclip_desktop.weights.catalog import ALEXNET, ARCFACE, CLIP, E4E, FS3, MAPPER, YUNET

_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})
# The first line of a current Git LFS pointer file (GitHub serves these for LFS files on
# raw.githubusercontent.com); older pointers name other spec addresses.
LFS_POINTER_VERSION = b"version https://git-lfs.github.com/spec/v1\n"
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

    Raises `ModelFileError`, one line naming the file, for files we recognise but refuse
    (because they do not load, or ask for something unsafe), with the reason.
    """
    p = Path(path)
    try:
        return _identify(p)
    except ModelFileError as exc:
        from styleclip_desktop.weights.formats import named

        raise named(exc, p) from None
    except OSError as exc:
        if not checkpoint.from_content(exc):
            raise
        raise ModelFileError(f"{p.name} is damaged or malformed ({checkpoint.describe(exc)})") from None
    except checkpoint.MALFORMED as exc:  # the one place a loader's unexpected failure becomes a refusal
        raise ModelFileError(f"{p.name} is damaged or malformed ({checkpoint.describe(exc)})") from None


def _identify(p: Path) -> Identified | None:
    with open(p, "rb") as f:
        head = f.read(128)
    if head.startswith(b"\x93NUMPY"):
        return _identify_npy(p)
    if head.startswith(b"version ") and b"\noid sha256:" in head:  # any spec version
        raise ModelFileError(f"{p.name} is a Git LFS pointer, not the model itself; "
                             "download the real file (github.com/.../raw/... follows LFS)")
    if _looks_like_safetensors(p, head):
        return _identify_safetensors(p)
    if _looks_like_onnx(head):
        size = p.stat().st_size
        if _ONNX_SIZE_RANGE[0] <= size <= _ONNX_SIZE_RANGE[1]:
            from styleclip_desktop.faces.detect import check_onnx_model

            nodes = check_onnx_model(p)
            return Identified(YUNET, f"ONNX model, {size} bytes, {nodes} nodes")
        return None
    if head.startswith(b"PK") and zipfile.is_zipfile(p):
        strings = _zip_pickle_strings(p)
    elif head[:1] == b"\x80":
        strings = _legacy_torch_strings(p, head)
    else:
        return None
    found = _classify_torch(strings) if strings is not None else None
    if found is not None:
        _check_loads(p, found.kind)
        return found
    generator = _generator(p)
    if generator is None and strings is not None:
        # A PyTorch file of no kind we use: still say so if it is unsafe or broken.
        checkpoint.torch_load(p)
    return generator


def _check_loads(p: Path, kind: str) -> None:
    """Load `p` as the app loads `kind`, discarding the result; raises why it does not."""
    if kind == CLIP:
        from styleclip_desktop.nets.clip import build_clip, read_clip_state_dict

        build_clip(read_clip_state_dict(p), name=p.name)
    elif kind == E4E:
        from styleclip_desktop.nets.e4e import load_e4e

        # An encoder trained without an average latent needs the generator's; that is no
        # fault of the file.
        load_e4e(p, require_latent_avg=False)
    elif kind == ARCFACE:
        from styleclip_desktop.nets.irse import load_arcface

        load_arcface(p)
    elif kind == MAPPER:
        from styleclip_desktop.nets.mapper import load_mapper

        load_mapper(p)
    elif kind == ALEXNET:
        from styleclip_desktop.nets.lpips_net import load_lpips

        load_lpips(p)
    else:  # every kind the classifiers return is one of the above
        raise AssertionError(kind)


def _generator(p: Path) -> Identified | None:
    from styleclip_desktop.weights.formats import detect_generator_format, load_generator

    kind = detect_generator_format(p)
    if kind is None:
        return None
    load_generator(p)  # no cache_dir: identifying a file writes nothing
    return Identified(kind, "StyleGAN2 generator")


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
    from styleclip_desktop.nets.lpips_net import is_alexnet_state

    if is_alexnet_state(keys):
        return Identified(ALEXNET, "torchvision AlexNet (the LPIPS backbone)")
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
        # Bounded: a declared string length is checked against the file before it is read.
        return _pickle_strings(checkpoint.BoundedReader(f, p.stat().st_size), max_pickles=4)  # type: ignore[arg-type]


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

    from styleclip_desktop.weights.npy import read_header, read_npy

    header = read_header(p)
    shape = header.shape
    if not (len(shape) == 2 and shape[1] == 512 and shape[0] > 0 and header.dtype.kind == "f"):
        return None
    if not np.isfinite(read_npy(p)).all():
        raise ModelFileError(f"{p.name} contains NaN or infinite values")
    return Identified(FS3, f"channel relevance matrix, {shape[0]} x 512")


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        return _looks_like_safetensors(path, f.read(16))


def _looks_like_safetensors(p: Path, head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n < min(p.stat().st_size, 100 << 20)


def _identify_safetensors(p: Path) -> Identified | None:
    from safetensors import SafetensorError, safe_open

    # safe_open checks the whole header against the file (every entry's dtype, shape and
    # offsets, the offsets covering the data exactly) without reading tensors; a header
    # that is not a flat object of entries, or nests 200,000 deep, is its error too.
    try:
        with safe_open(str(p), framework="pt") as f:
            raw_keys = list(f.keys())
            shapes = {k: f.get_slice(k).get_shape() for k in raw_keys if k.endswith("visual.conv1.weight")}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{p.name} is not a valid safetensors file ({checkpoint.one_line(exc)})") from None
    keys = {k.removeprefix("module.") for k in raw_keys}
    if {"visual.conv1.weight", "token_embedding.weight"} <= keys:
        _check_loads(p, CLIP)
        return Identified(CLIP, f"CLIP state dict (patch embedding {next(iter(shapes.values()), None)})")
    found = _classify_torch(keys)
    if found is not None:
        _check_loads(p, found.kind)
    return found


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, a small varint) then another known field.
    return (len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 15
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))
