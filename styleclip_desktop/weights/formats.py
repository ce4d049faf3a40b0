"""StyleGAN2 checkpoints in the three formats users actually have.

- NVIDIA stylegan2-ada-pytorch `.pkl` (persistent classes; read with the restricted
  unpickler, the source code inside is never run);
- NVIDIA's original TensorFlow `.pkl` (dnnlib.tflib Network state; stub classes, no TF);
- rosinality stylegan2-pytorch `.pt` (`g_ema` state dict; `torch.load(weights_only=True)`).

All three become the same `Generator`. The format is decided from the file's content,
never its extension. A converted safetensors copy is cached under the source file's
SHA-256 so the next start skips the slow path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets import checkpoint
from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig, state_shapes
from styleclip_desktop.weights import safe_pickle

log = logging.getLogger(__name__)

ADA_PKL = "stylegan2-ada-pkl"
TF_PKL = "stylegan2-tf-pkl"
ROSINALITY_PT = "stylegan2-rosinality-pt"
GENERATOR_FORMATS = (ADA_PKL, TF_PKL, ROSINALITY_PT)

StateDict = dict[str, torch.Tensor]

# Written into every synthetic demo file (see weights/synthetic.py) so that anything made
# with one is labelled synthetic.
SYNTHETIC_MARKER = "Synthetic StyleCLIP Desktop test file"


# --- content sniffing -----------------------------------------------------------------


def _is_legacy_torch(head: bytes) -> bool:
    """True if `head` starts like torch.save's pre-1.6 (non-zip) format: its magic number
    pickled with protocol 2, the only protocol torch can read back with weights_only."""
    return head[:4] == b"\x80\x02\x8a\x0a" and int.from_bytes(head[4:14], "little") == torch.serialization.MAGIC_NUMBER


def _torch_top_keys(path: Path) -> set[str] | None:
    """Top-level keys of a torch.save file (zip or legacy), reading its structure only.

    A file object (not a path) so torch never guesses the format from the extension; the
    meta device and `skip_data` (where this torch has it) keep tensor bytes unread, so a
    1 GB legacy file costs only its small index; `weights_only` means nothing in it runs.
    """
    import argparse

    skip = getattr(torch.serialization, "skip_data", None)
    try:
        with (open(path, "rb") as f, torch.serialization.safe_globals([argparse.Namespace]),
              skip() if skip is not None else contextlib.nullcontext()):
            obj = torch.load(f, map_location="meta", weights_only=True)
    except Exception:
        return None
    return {k for k in obj if isinstance(k, str)} if isinstance(obj, dict) else None


def detect_generator_format(path: str | os.PathLike[str]) -> str | None:
    """Which generator format `path` holds, from its content; None if not a generator."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(4 << 20)
    except OSError:
        return None
    if (head[:2] == b"PK" and zipfile.is_zipfile(p)) or _is_legacy_torch(head):
        keys = _torch_top_keys(p)
        return ROSINALITY_PT if keys and "g_ema" in keys else None
    if head[:1] != b"\x80":
        return None
    refs = safe_pickle.pickle_globals(head)
    if ("torch_utils.persistence", "_reconstruct_persistent_obj") in refs:
        return ADA_PKL
    if ("dnnlib.tflib.network", "Network") in refs:
        return TF_PKL
    return None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- shape inference shared by all formats --------------------------------------------

# Far beyond every published StyleGAN2 (1024 px, 512 channels, 8 mapping layers, z/w 512);
# checked before anything is allocated, because a file only has to claim a size for the
# generator built from it to need it.
MAX_RESOLUTION = 4096
MAX_CHANNELS = 4096
MAX_LATENT_DIM = 4096
MAX_MAPPING_LAYERS = 32
MAX_IMG_CHANNELS = 4


def _dims(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise ModelFileError(f"the generator lacks tensor {key!r}" if t is None
                             else f"the generator's {key!r} is a {type(t).__name__}, not a tensor")
    if t.ndim != ndim:
        raise ModelFileError(f"the generator's tensor {key!r} has shape {tuple(t.shape)}")
    return tuple(int(n) for n in t.shape)


def _limit(what: str, value: int, high: int, low: int = 1) -> int:
    if not low <= value <= high:
        raise ModelFileError(f"the generator's {what} is {value}; this app reads generators with "
                             f"{low} to {high}, so the file is damaged or not a StyleGAN2 generator")
    return value


def _config_from_canonical(sd: Mapping[str, torch.Tensor], mapping_lr_mul: float,
                           conv_clamp: float | None) -> GeneratorConfig:
    """Rebuild the constructor arguments from our own key names and tensor shapes."""
    n_map = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    if n_map == 0 or "const" not in sd:
        raise ModelFileError("the checkpoint has no StyleGAN2 generator weights")
    _limit("number of mapping layers", n_map, MAX_MAPPING_LAYERS)
    z_dim = _limit("z dimension", _dims(sd, "mapping.fc0.weight", 2)[1], MAX_LATENT_DIM)
    w_dim = _limit("w dimension", _dims(sd, f"mapping.fc{n_map - 1}.weight", 2)[0], MAX_LATENT_DIM)
    n_rgb = len([k for k in sd if re.fullmatch(r"torgbs\.\d+\.weight", k)])
    resolution = _limit("resolution", 2 ** (min(n_rgb, 64) + 1), MAX_RESOLUTION, 4)
    channels = [(4, _limit("channel count at 4 px", _dims(sd, "const", 3)[0], MAX_CHANNELS))]
    for i in range(1, n_rgb):
        res = 2 ** (i + 2)
        channels.append((res, _limit(f"channel count at {res} px", _dims(sd, f"torgbs.{i}.weight", 4)[1],
                                     MAX_CHANNELS)))
    img_channels = _limit("image channel count", _dims(sd, "torgbs.0.weight", 4)[0], MAX_IMG_CHANNELS)
    if not (math.isfinite(mapping_lr_mul) and mapping_lr_mul > 0):
        raise ModelFileError(f"the generator's mapping learning-rate multiplier is {mapping_lr_mul}")
    return GeneratorConfig(z_dim=z_dim, w_dim=w_dim, resolution=resolution, img_channels=img_channels,
                           mapping_layers=n_map, mapping_lr_mul=mapping_lr_mul,
                           channels=tuple(channels), conv_clamp=conv_clamp)


# Every StyleGAN2 release resamples with this FIR; our Generator hard-codes it, so a file
# trained with another filter would render differently and must be refused, not guessed at.
STANDARD_FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def standard_fir_2d(gain: float = 1.0, taps: tuple[float, ...] = STANDARD_FIR_TAPS) -> torch.Tensor:
    """A separable FIR as the PyTorch releases store it: outer product, sum normalised to `gain`."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = k[None, :] * k[:, None]
    return k2 / k2.sum() * gain


def _describe_filter(f: torch.Tensor) -> str:
    # The row sums of a separable 2-D filter are its 1-D taps up to scale; scaling the
    # smallest to 1 shows [1, 3, 3, 1] for the standard filter whatever its gain.
    taps = f.sum(dim=1) if f.ndim == 2 else f.reshape(-1)
    nonzero = taps.abs()[taps.abs() > 1e-12]
    if nonzero.numel():
        taps = taps / nonzero.min()
    shape = "x".join(str(n) for n in f.shape)
    return f"[{', '.join(f'{x:.4g}' for x in taps.tolist())}] ({shape})"


def _check_filter(name: str, value: Any, gain: float) -> None:
    raw = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    expected = standard_fir_2d(gain)
    if raw.numel() > 64:  # described by its shape alone: a filter is a handful of taps
        raise ModelFileError(f"the generator's resampling filter {name} has shape {tuple(raw.shape)}, not "
                             "StyleGAN2's standard 4x4 [1, 3, 3, 1] FIR; generators with other filters are "
                             "not supported")
    f = raw.detach().float().cpu()
    if tuple(f.shape) != tuple(expected.shape) or not torch.allclose(f, expected, rtol=1e-4, atol=1e-6):
        raise ModelFileError(f"the generator's resampling filter {name} is {_describe_filter(f)}, not StyleGAN2's "
                             "standard [1, 3, 3, 1] FIR; generators with other filters are not supported")


def _check_stored_filters(tensors: Mapping[str, Any], pattern: str, gain: float) -> None:
    """Refuse the file unless every stored filter matching `pattern` is the standard one."""
    for key, value in tensors.items():
        if re.fullmatch(pattern, key):
            _check_filter(key, value, gain)


def build_generator(sd: Mapping[str, torch.Tensor], config: GeneratorConfig) -> Generator:
    # Every tensor is checked against the shapes the config implies first: the generator is only
    # allocated once the file has proved it holds that many numbers.
    expected = state_shapes(config)
    missing = [k for k in expected if k not in sd and not k.endswith("filter")]
    if missing:
        raise ModelFileError(f"the checkpoint lacks {len(missing)} generator tensors (first: {missing[0]})")
    for k, shape in expected.items():
        if k not in sd:
            continue
        if not isinstance(sd[k], torch.Tensor):
            raise ModelFileError(f"{k} is a {type(sd[k]).__name__}, not a tensor")
        if tuple(sd[k].shape) != shape:
            raise ModelFileError(f"tensor {k} has shape {tuple(sd[k].shape)}, expected {shape}")
        checkpoint.check_tensor(sd[k], "the generator", k)
    # The checked tensors become the weights themselves (no second copy, no random start);
    # from the converted-weights cache they stay memory-mapped until first written.
    G = Generator(config, init=False)
    own = G.state_dict()
    G.load_state_dict({k: sd[k].float().contiguous() if k in sd else v for k, v in own.items()}, assign=True)
    return G.eval().requires_grad_(False)


def _conv_layer_names(n_rgb: int) -> list[tuple[int, int, bool]]:
    """(conv index, resolution, is upsampling conv) in generator order."""
    out = [(0, 4, False)]
    idx = 1
    for i in range(1, n_rgb):
        res = 2 ** (i + 2)
        out += [(idx, res, True), (idx + 1, res, False)]
        idx += 2
    return out


# --- NVIDIA stylegan2-ada-pytorch .pkl ------------------------------------------------


_ADA_CONV_PARTS = ("affine.weight", "affine.bias", "weight", "bias", "noise_strength", "noise_const")
_ADA_RGB_PARTS = ("affine.weight", "affine.bias", "weight", "bias")


def _ada_to_canonical(src: Mapping[str, Any]) -> StateDict:
    def t(x: Any) -> torch.Tensor:
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    sd: StateDict = {}
    for k, v in src.items():
        m = re.fullmatch(r"mapping\.(fc\d+\.(?:weight|bias)|w_avg)", k)
        if m:
            sd[f"mapping.{m.group(1)}"] = t(v)
    sd["const"] = t(src["synthesis.b4.const"])
    n_rgb = len([k for k in src if re.fullmatch(r"synthesis\.b\d+\.torgb\.weight", k)])
    for ours, theirs in _ada_names(n_rgb):
        sd[ours] = t(src[theirs])
    return sd


def _ada_names(n_rgb: int) -> list[tuple[str, str]]:
    """(our name, NVIDIA's name) of every synthesis layer tensor, for a generator with `n_rgb` blocks."""
    names = []
    for idx, res, up in _conv_layer_names(n_rgb):
        layer = f"synthesis.b{res}.{'conv0' if up else 'conv1'}"
        names += [(f"convs.{idx}.{part}", f"{layer}.{part}") for part in _ADA_CONV_PARTS]
    for i in range(n_rgb):
        names += [(f"torgbs.{i}.{part}", f"synthesis.b{2 ** (i + 2)}.torgb.{part}") for part in _ADA_RGB_PARTS]
    return names


def canonical_to_ada(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Our generator's state dict under NVIDIA's stylegan2-ada-pytorch names (G_ema's),
    the inverse of what an ADA pickle loads through."""
    out: StateDict = {k: v for k, v in sd.items() if k.startswith("mapping.")}
    out["synthesis.b4.const"] = sd["const"]
    n_rgb = len([k for k in sd if re.fullmatch(r"torgbs\.\d+\.weight", k)])
    for ours, theirs in _ada_names(n_rgb):
        out[theirs] = sd[ours]
    return out


def _number(what: str, value: Any, kind: Callable[[Any], Any] = float) -> Any:
    """A setting from the file's kwargs, which may hold anything: a clear error if it is
    not a (finite) number."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        shown = repr(value)[:40] if isinstance(value, str) else f"a {type(value).__name__}"
        raise ModelFileError(f"the generator's {what} setting {shown} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number) or (kind is int and number != int(value)):
        raise ModelFileError(f"the generator's {what} setting {number:g} is not a valid value")
    return kind(value)


def _clamp(value: Any) -> float | None:
    return None if value is None else float(_number("conv_clamp", value))


def _kwargs(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ModelFileError(f"the generator's {key} are a {type(value).__name__}, not a dictionary")
    return dict(value)


def load_ada_pkl(path: Path) -> Generator:
    with open(path, "rb") as f:
        data = safe_pickle.restricted_load(f)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), safe_pickle.PersistentObject):
        raise ModelFileError("this NVIDIA pickle has no G_ema generator")
    g = data["G_ema"]
    kwargs = g.init_kwargs
    mapping_kwargs = _kwargs(kwargs, "mapping_kwargs")
    synthesis_kwargs = _kwargs(kwargs, "synthesis_kwargs")
    if _number("c_dim", kwargs.get("c_dim", 0) or 0, int) != 0:
        raise ModelFileError("conditional (class-label) generators are not supported")
    if synthesis_kwargs.get("architecture", "skip") != "skip":
        raise ModelFileError("only the skip-architecture StyleGAN2 generator (config-e/f) is supported")
    tensors = g.tensors()
    # Only the filters that take effect: each block's skip upsampling and its conv0 from 8px
    # on (every layer stores one; the 4px block and the conv1 layers never resample).
    # setup_filter stores them normalised to a sum of 1.
    _check_stored_filters(tensors, r"synthesis\.b(?:8|[1-9]\d+)\.(?:conv0\.)?resample_filter", 1.0)
    try:
        sd = _ada_to_canonical(tensors)
    except KeyError as exc:
        raise ModelFileError(f"the generator in this pickle lacks tensor {exc}") from exc
    cfg = _config_from_canonical(sd, _number("lr_multiplier", mapping_kwargs.get("lr_multiplier", 0.01)),
                                 _clamp(synthesis_kwargs.get("conv_clamp")))
    return build_generator(sd, cfg)


# --- NVIDIA TensorFlow .pkl -----------------------------------------------------------


def _tf_params(net: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, np.ndarray]:
    if depth > safe_pickle.MAX_MODULE_DEPTH:
        raise ModelFileError(f"its networks nest more than {safe_pickle.MAX_MODULE_DEPTH} levels deep")
    out: dict[str, np.ndarray] = {}
    variables = net.get("variables") or []
    components = net.get("components") or {}
    if not isinstance(variables, list | tuple) or not isinstance(components, Mapping):
        raise ModelFileError(f"the TensorFlow network {prefix or 'Gs'} has malformed variables or components")
    for item in variables:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], np.ndarray | np.generic)):
            raise ModelFileError(f"the TensorFlow network {prefix or 'Gs'} has a malformed variable")
        out[prefix + item[0]] = np.asarray(item[1])
    for name, comp in components.items():
        if not isinstance(comp, Mapping):
            raise ModelFileError(f"the TensorFlow component {prefix}{name} is a {type(comp).__name__}")
        out.update(_tf_params(comp, f"{prefix}{name}/", depth + 1))
    return out


def _tf_to_canonical(p: Mapping[str, np.ndarray]) -> StateDict:
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32, order="C"))

    sd: StateDict = {}
    n_map = len([k for k in p if re.fullmatch(r"mapping/Dense\d+/weight", k)])
    for i in range(n_map):
        sd[f"mapping.fc{i}.weight"] = t(p[f"mapping/Dense{i}/weight"].T)
        sd[f"mapping.fc{i}.bias"] = t(p[f"mapping/Dense{i}/bias"])
    sd["mapping.w_avg"] = t(p["dlatent_avg"])
    sd["const"] = t(p["synthesis/4x4/Const/const"][0])
    n_rgb = len([k for k in p if re.fullmatch(r"synthesis/\d+x\d+/ToRGB/weight", k)])
    for idx, res, up in _conv_layer_names(n_rgb):
        scope = f"synthesis/{res}x{res}/" + ("Conv" if res == 4 else "Conv0_up" if up else "Conv1")
        weight = p[f"{scope}/weight"]
        if up:  # TF's upsampling conv flips its kernel; ours (like NVIDIA's PyTorch) does not
            weight = weight[::-1, ::-1]
        sd[f"convs.{idx}.weight"] = t(weight.transpose(3, 2, 0, 1))
        sd[f"convs.{idx}.bias"] = t(p[f"{scope}/bias"])
        sd[f"convs.{idx}.affine.weight"] = t(p[f"{scope}/mod_weight"].T)
        sd[f"convs.{idx}.affine.bias"] = t(p[f"{scope}/mod_bias"] + 1.0)
        sd[f"convs.{idx}.noise_strength"] = t(np.asarray(p[f"{scope}/noise_strength"]).reshape(()))
        sd[f"convs.{idx}.noise_const"] = t(p[f"synthesis/noise{idx}"][0, 0])
    for i in range(n_rgb):
        res = 2 ** (i + 2)
        scope = f"synthesis/{res}x{res}/ToRGB"
        sd[f"torgbs.{i}.weight"] = t(p[f"{scope}/weight"].transpose(3, 2, 0, 1))
        sd[f"torgbs.{i}.bias"] = t(p[f"{scope}/bias"])
        sd[f"torgbs.{i}.affine.weight"] = t(p[f"{scope}/mod_weight"].T)
        sd[f"torgbs.{i}.affine.bias"] = t(p[f"{scope}/mod_bias"] + 1.0)
    return sd


def load_tf_pkl(path: Path) -> Generator:
    with open(path, "rb") as f:
        data = safe_pickle.restricted_load(f)
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, dict) for n in data)):
        raise ModelFileError("this TensorFlow pickle is not the (G, D, Gs) triple StyleGAN2 saves")
    gs = data[2]
    kwargs = _kwargs(gs, "static_kwargs")
    synthesis = _kwargs(gs, "components").get("synthesis")
    # Gs passes its kwargs on to the synthesis network it builds; the component's own copy
    # is what that network was built with, so it wins.
    kwargs.update(_kwargs(synthesis, "static_kwargs") if isinstance(synthesis, Mapping) else {})
    if _number("label_size", kwargs.get("label_size", 0) or 0, int) != 0:
        raise ModelFileError("conditional (class-label) generators are not supported")
    if kwargs.get("architecture", "skip") != "skip":
        raise ModelFileError("only the skip-architecture StyleGAN2 generator (config-e/f) is supported")
    try:
        sd = _tf_to_canonical(_tf_params(gs))
    except KeyError as exc:
        raise ModelFileError(f"the generator in this pickle lacks variable {exc}") from exc
    kernel = kwargs.get("resample_kernel")
    if kernel is not None:  # TF keeps the 1-D taps in the kwargs; it normalises them when it builds
        k = torch.as_tensor(np.asarray(kernel, dtype=np.float32))
        k2 = k[None, :] * k[:, None] if k.ndim == 1 else k
        _check_filter("resample_kernel", k2 / k2.sum() if float(k2.sum()) != 0.0 else k2, 1.0)
    cfg = _config_from_canonical(sd, _number("mapping_lrmul", kwargs.get("mapping_lrmul", 0.01)),
                                 _clamp(kwargs.get("conv_clamp")))
    return build_generator(sd, cfg)


# --- rosinality .pt -------------------------------------------------------------------


def _rosinality_to_canonical(g: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None) -> StateDict:
    sd: StateDict = {}
    n_map = len([k for k in g if re.fullmatch(r"style\.\d+\.weight", k)])
    for i in range(n_map):
        sd[f"mapping.fc{i}.weight"] = g[f"style.{i + 1}.weight"]
        sd[f"mapping.fc{i}.bias"] = g[f"style.{i + 1}.bias"]
    # Without latent_avg (rosinality's own training checkpoints) a placeholder lets the
    # generator be built; the loader then estimates the mean w.
    sd["mapping.w_avg"] = (latent_avg.reshape(-1) if latent_avg is not None
                           else torch.zeros(g[f"style.{n_map}.weight"].shape[0]))
    sd["const"] = g["input.input"][0]
    n_rgb = 1 + len([k for k in g if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    for idx, _res, _up in _conv_layer_names(n_rgb):
        name = "conv1" if idx == 0 else f"convs.{idx - 1}"
        sd[f"convs.{idx}.weight"] = g[f"{name}.conv.weight"][0]
        sd[f"convs.{idx}.affine.weight"] = g[f"{name}.conv.modulation.weight"]
        sd[f"convs.{idx}.affine.bias"] = g[f"{name}.conv.modulation.bias"]
        sd[f"convs.{idx}.bias"] = g[f"{name}.activate.bias"]
        sd[f"convs.{idx}.noise_strength"] = g[f"{name}.noise.weight"].reshape(())
        sd[f"convs.{idx}.noise_const"] = g[f"noises.noise_{idx}"][0, 0]
    for i in range(n_rgb):
        name = "to_rgb1" if i == 0 else f"to_rgbs.{i - 1}"
        sd[f"torgbs.{i}.weight"] = g[f"{name}.conv.weight"][0]
        sd[f"torgbs.{i}.affine.weight"] = g[f"{name}.conv.modulation.weight"]
        sd[f"torgbs.{i}.affine.bias"] = g[f"{name}.conv.modulation.bias"]
        sd[f"torgbs.{i}.bias"] = g[f"{name}.bias"].reshape(-1)
    return sd


def load_rosinality_pt(path: Path) -> Generator:
    import argparse

    ckpt = checkpoint.torch_load(path, what="PyTorch checkpoint", extra_globals=[argparse.Namespace])
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        raise ModelFileError("this PyTorch checkpoint has no 'g_ema' generator")
    latent_avg = ckpt.get("latent_avg")
    if not isinstance(ckpt["g_ema"], Mapping) or not all(isinstance(k, str) for k in ckpt["g_ema"]):
        raise ModelFileError(f"this PyTorch checkpoint's 'g_ema' is a {type(ckpt['g_ema']).__name__}, "
                             "not a state dict")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise ModelFileError(f"this PyTorch checkpoint's 'latent_avg' is a {type(latent_avg).__name__}")
    # make_kernel normalises to a sum of 1, then the 2x upsampling scales by factor**2.
    _check_stored_filters(ckpt["g_ema"], r"convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel", 4.0)
    try:
        sd = _rosinality_to_canonical(ckpt["g_ema"], latent_avg)
    except KeyError as exc:
        raise ModelFileError(f"the generator in this checkpoint lacks tensor {exc}") from exc
    cfg = _config_from_canonical(sd, 0.01, None)
    G = build_generator(sd, cfg)
    G.synthetic = ckpt.get("synthetic") == SYNTHETIC_MARKER  # type: ignore[assignment]
    if latent_avg is None:  # older training checkpoints: estimate the mean w as the official code does
        with torch.no_grad():
            G.mapping.w_avg.copy_(G.mapping(torch.randn(4096, cfg.z_dim, generator=torch.Generator().manual_seed(0))).mean(0))
    return G


# --- front door -----------------------------------------------------------------------

_LOADERS: dict[str, Callable[[Path], Generator]] = {
    ADA_PKL: load_ada_pkl, TF_PKL: load_tf_pkl, ROSINALITY_PT: load_rosinality_pt,
}


def named(exc: ModelFileError, path: Path) -> ModelFileError:
    """`exc` with the file's name in front, unless its message already names it."""
    return checkpoint.named(exc, path.name)


def _cache_path(cache_dir: Path, digest: str) -> Path:
    return cache_dir / "generators" / f"{digest}.safetensors"


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                   cache_dir: Path | None = None) -> Generator:
    """Load any supported StyleGAN2 checkpoint as a `Generator` in eval mode."""
    from safetensors.torch import load_file, save_file

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"generator file not found: {p}")
    digest = sha256_file(p) if cache_dir is not None else ""
    if cache_dir is not None:
        cached = _cache_path(cache_dir, digest)
        if cached.is_file():
            try:
                from safetensors import safe_open

                with safe_open(str(cached), framework="pt") as f:
                    meta = f.metadata() or {}
                cfg = GeneratorConfig.from_dict(json.loads(meta["config"]))
                G = build_generator(load_file(str(cached)), cfg)
                G.source_sha256 = digest  # type: ignore[assignment]
                G.synthetic = meta.get("synthetic") == "1"  # type: ignore[assignment]
                return G.to(device)
            except Exception as exc:  # a damaged cache entry is rebuilt from the source
                log.warning("ignoring unreadable converted copy %s: %s", cached, exc)
    fmt = detect_generator_format(p)
    if fmt is None:
        raise ModelFileError(f"{p.name} is not a StyleGAN2 checkpoint this app can read "
                             "(NVIDIA .pkl, NVIDIA TensorFlow .pkl or rosinality .pt)")
    # The one place where whatever a crafted or broken file makes a loader raise becomes
    # one line that names the file.
    try:
        G = _LOADERS[fmt](p)
    except ModelFileError as exc:
        raise named(exc, p) from None
    except Exception as exc:
        if not checkpoint.is_malformed(exc):
            raise
        raise ModelFileError(f"{p.name} is not a valid StyleGAN2 checkpoint: its content is malformed "
                             f"({checkpoint.describe(exc)})") from None
    G.source_sha256 = digest or sha256_file(p)  # type: ignore[assignment]
    if fmt != ROSINALITY_PT:
        with open(p, "rb") as f:
            G.synthetic = SYNTHETIC_MARKER.encode() in f.read(1 << 20)  # type: ignore[assignment]
    if cache_dir is not None:
        try:
            target = _cache_path(cache_dir, digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp),
                      metadata={"config": json.dumps(G.config.to_dict()), "source_format": fmt,
                                "synthetic": "1" if getattr(G, "synthetic", False) else "0"})
            os.replace(tmp, target)
        except OSError as exc:  # a read-only or full cache only costs speed next time
            log.warning("could not cache the converted generator: %s", exc)
    return G.to(device)
