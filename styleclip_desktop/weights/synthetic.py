"""Tiny, format-faithful model files with seeded random weights.

They have the same key names, nesting and pickle structure as the official files, at a
small resolution and width, so every loader runs its real code path on them. Tests use
them; users can use them to tour the app offline. Their images are noise, not faces, and
everything made with them is labelled synthetic.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
from styleclip_desktop.weights.formats import (
    STANDARD_FIR_TAPS,
    SYNTHETIC_MARKER,
    _conv_layer_names,
    standard_fir_2d,
)

SYNTHETIC_NOTE = "synthetic demo model: random weights, images will not look like faces"
SOURCE_PLACEHOLDER = f"# {SYNTHETIC_MARKER}: no source code is stored here.\n"


def tiny_config(resolution: int = 64, channel_max: int = 64) -> GeneratorConfig:
    """A small generator with the real z/w width (512), so latents have official shapes."""
    # Narrow channels expressed through channel_base/channel_max, as NVIDIA's kwargs do.
    return GeneratorConfig(resolution=resolution, channel_base=32 * channel_max, channel_max=channel_max)


def is_synthetic_generator(G: Generator) -> bool:
    """True for generators loaded from (or built as) synthetic demo files."""
    return bool(getattr(G, "synthetic", False))


def tiny_generator(resolution: int = 64, seed: int = 0, channel_max: int = 64) -> Generator:
    """Seeded random generator; noise strengths and biases are non-zero so every tensor matters."""
    torch.manual_seed(seed)
    G = Generator(tiny_config(resolution, channel_max))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, G.config.z_dim, generator=gen)).mean(0))
    G.synthetic = True  # type: ignore[assignment]
    return G.eval().requires_grad_(False)


# --- rosinality .pt ------------------------------------------------------------------


def _fir_kernel(gain: float, taps: Sequence[float] = STANDARD_FIR_TAPS) -> torch.Tensor:
    return standard_fir_2d(gain, tuple(float(t) for t in taps))


def rosinality_state_dict(G: Generator, blur_kernel: Sequence[float] = STANDARD_FIR_TAPS) -> dict[str, torch.Tensor]:
    sd = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    for i in range(G.config.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["const"][None]
    n_rgb = len(G.torgbs)
    for idx, _res, up in _conv_layer_names(n_rgb):
        name = "conv1" if idx == 0 else f"convs.{idx - 1}"
        out[f"{name}.conv.weight"] = sd[f"convs.{idx}.weight"][None]
        out[f"{name}.conv.modulation.weight"] = sd[f"convs.{idx}.affine.weight"]
        out[f"{name}.conv.modulation.bias"] = sd[f"convs.{idx}.affine.bias"]
        if up:
            out[f"{name}.conv.blur.kernel"] = _fir_kernel(4.0, blur_kernel)
        out[f"{name}.noise.weight"] = sd[f"convs.{idx}.noise_strength"].reshape(1)
        out[f"{name}.activate.bias"] = sd[f"convs.{idx}.bias"]
    for i in range(n_rgb):
        name = "to_rgb1" if i == 0 else f"to_rgbs.{i - 1}"
        if i > 0:
            out[f"{name}.upsample.kernel"] = _fir_kernel(4.0, blur_kernel)
        out[f"{name}.bias"] = sd[f"torgbs.{i}.bias"].reshape(1, -1, 1, 1)
        out[f"{name}.conv.weight"] = sd[f"torgbs.{i}.weight"][None]
        out[f"{name}.conv.modulation.weight"] = sd[f"torgbs.{i}.affine.weight"]
        out[f"{name}.conv.modulation.bias"] = sd[f"torgbs.{i}.affine.bias"]
    for idx, res, _up in _conv_layer_names(n_rgb):
        out[f"noises.noise_{idx}"] = sd[f"convs.{idx}.noise_const"].reshape(1, 1, res, res)
    return {k: v.clone().contiguous() for k, v in out.items()}


def write_rosinality_pt(G: Generator, path: Path, legacy: bool = False,
                        blur_kernel: Sequence[float] = STANDARD_FIR_TAPS) -> Path:
    """`legacy` writes torch.save's pre-1.6 (non-zip) format, as older checkpoints are.

    `blur_kernel` is the 1-D filter rosinality's Generator(blur_kernel=...) was built with
    (scaled as make_kernel and its 2x upsampling scale it)."""
    data = {"g_ema": rosinality_state_dict(G, blur_kernel), "latent_avg": G.w_avg.clone(), "synthetic": SYNTHETIC_MARKER}
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


# --- fake modules so the pickles name NVIDIA's classes -----------------------------------


@contextlib.contextmanager
def _fake_modules(names: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Temporarily register modules (e.g. 'torch_utils.persistence') holding given objects."""
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for modname, attrs in names.items():
            mod = types.ModuleType(modname)
            for attr, obj in attrs.items():
                obj.__module__ = modname
                obj.__qualname__ = attr
                setattr(mod, attr, obj)
            sys.modules[modname] = mod
            parent, _, child = modname.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, mod)
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:  # placeholder, never called
    raise RuntimeError("synthetic placeholder")


class EasyDict(dict):  # type: ignore[type-arg]
    pass


class _Persistent:
    """Pickles like an object of a torch_utils.persistence class."""

    def __init__(self, class_name: str, state: dict[str, Any]) -> None:
        self.class_name, self.state = class_name, state

    def __reduce__(self) -> tuple[Any, ...]:
        meta = dict(type="class", version=6, module_src=SOURCE_PLACEHOLDER, class_name=self.class_name,
                    state=self.state)
        return (_reconstruct_persistent_obj, (meta,))


def _module_state(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                  modules: dict[str, _Persistent], init_kwargs: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    od = collections.OrderedDict
    state: dict[str, Any] = {
        "training": False,
        "_parameters": od((k, torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()),
        "_buffers": od((k, v.clone()) for k, v in buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": od(), "_forward_hooks": od(), "_forward_pre_hooks": od(),
        "_state_dict_hooks": od(), "_load_state_dict_pre_hooks": od(),
        "_modules": od(modules),
        "_init_args": (),
        "_init_kwargs": EasyDict(init_kwargs),
    }
    state.update(attrs)
    return state


def _ada_generator_object(G: Generator, resample_filter: Sequence[float] = STANDARD_FIR_TAPS) -> _Persistent:
    cfg, sd = G.config, G.state_dict()
    fir = _fir_kernel(1.0, resample_filter)

    def fc(i: int, prefix: str) -> _Persistent:
        w = sd[f"{prefix}.weight"]
        return _Persistent("FullyConnectedLayer", _module_state(
            {"weight": w, "bias": sd[f"{prefix}.bias"]}, {}, {},
            {"in_features": w.shape[1], "out_features": w.shape[0]}, activation="lrelu"))

    mapping = _Persistent("MappingNetwork", _module_state(
        {}, {"w_avg": sd["mapping.w_avg"]}, {f"fc{i}": fc(i, f"mapping.fc{i}") for i in range(cfg.mapping_layers)},
        {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "num_ws": cfg.num_ws, "num_layers": cfg.mapping_layers},
        z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, num_ws=cfg.num_ws))
    blocks: dict[str, _Persistent] = {}
    n_rgb = len(G.torgbs)
    layers = {idx: (res, up) for idx, res, up in _conv_layer_names(n_rgb)}
    for i, res in enumerate(cfg.resolutions):
        children: dict[str, _Persistent] = {}
        for idx, (r, up) in layers.items():
            if r != res:
                continue
            p = f"convs.{idx}"
            children["conv0" if up else "conv1"] = _Persistent("SynthesisLayer", _module_state(
                {"weight": sd[f"{p}.weight"], "noise_strength": sd[f"{p}.noise_strength"], "bias": sd[f"{p}.bias"]},
                {"resample_filter": fir, "noise_const": sd[f"{p}.noise_const"]},
                {"affine": fc(0, f"{p}.affine")}, {"resolution": res, "up": 2 if up else 1}))
        t = f"torgbs.{i}"
        children["torgb"] = _Persistent("ToRGBLayer", _module_state(
            {"weight": sd[f"{t}.weight"], "bias": sd[f"{t}.bias"]}, {}, {"affine": fc(0, f"{t}.affine")}, {}))
        params = {"const": sd["const"]} if res == 4 else {}
        blocks[f"b{res}"] = _Persistent("SynthesisBlock", _module_state(
            params, {"resample_filter": fir}, dict(sorted(children.items())), {"resolution": res}))
    synthesis = _Persistent("SynthesisNetwork", _module_state(
        {}, {}, blocks, {"w_dim": cfg.w_dim, "img_resolution": cfg.resolution, "img_channels": cfg.img_channels},
        w_dim=cfg.w_dim, img_resolution=cfg.resolution, num_ws=cfg.num_ws))
    kwargs = {
        "z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
        "img_channels": cfg.img_channels,
        "mapping_kwargs": EasyDict(num_layers=cfg.mapping_layers),
        "synthesis_kwargs": EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                     num_fp16_res=4, conv_clamp=cfg.conv_clamp),
    }
    return _Persistent("Generator", _module_state({}, {}, {"mapping": mapping, "synthesis": synthesis}, kwargs,
                                                  z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim,
                                                  img_resolution=cfg.resolution, img_channels=cfg.img_channels))


def write_ada_pkl(G: Generator, path: Path, seed: int = 0, protocol: int = 4,
                  resample_filter: Sequence[float] = STANDARD_FIR_TAPS) -> Path:
    """`protocol` 4 is what Python 3.8's default wrote; 2 is what Python-2-era tools write.
    `resample_filter` is the Generator(synthesis_kwargs=dict(resample_filter=...)) setting."""
    gen = torch.Generator().manual_seed(seed + 7)
    disc = _Persistent("Discriminator", _module_state(
        {"b4.out.weight": torch.randn(1, 16, generator=gen)}, {}, {}, {"c_dim": 0}))
    with _fake_modules({"torch_utils": {}, "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
                        "dnnlib": {}, "dnnlib.util": {"EasyDict": EasyDict}}):
        data = {
            "G": _ada_generator_object(G, resample_filter), "D": disc,
            "G_ema": _ada_generator_object(G, resample_filter),
            "training_set_kwargs": EasyDict(resolution=G.config.resolution, use_labels=False),
            "augment_pipe": None,
        }
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    return path


# --- NVIDIA TensorFlow .pkl ----------------------------------------------------------


class Network:
    """Pickles like dnnlib.tflib.network.Network (its state is what __getstate__ returned)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def _tf_net(name: str, func: str, variables: list[tuple[str, np.ndarray]], components: dict[str, Network] | None = None,
            static_kwargs: dict[str, Any] | None = None) -> Network:
    return Network({"version": 4, "name": name, "static_kwargs": static_kwargs or {},
                    "components": components or {}, "build_module_src": SOURCE_PLACEHOLDER,
                    "build_func_name": func, "variables": variables})


def tf_variables(G: Generator) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(mapping variables, synthesis variables) in TensorFlow naming and layout."""
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in G.state_dict().items()}
    mapping = []
    for i in range(G.config.mapping_layers):
        mapping += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T.copy()), (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"])]
    synth: list[tuple[str, np.ndarray]] = [("lod", np.float32(0.0) * np.ones((), np.float32))]
    synth.append(("4x4/Const/const", sd["const"][None]))
    n_rgb = len(G.torgbs)
    for idx, res, up in _conv_layer_names(n_rgb):
        scope = f"{res}x{res}/" + ("Conv" if res == 4 else "Conv0_up" if up else "Conv1")
        w = sd[f"convs.{idx}.weight"].transpose(2, 3, 1, 0)
        if up:
            w = w[::-1, ::-1]
        synth += [(f"{scope}/weight", np.ascontiguousarray(w)), (f"{scope}/mod_weight", sd[f"convs.{idx}.affine.weight"].T.copy()),
                  (f"{scope}/mod_bias", sd[f"convs.{idx}.affine.bias"] - 1.0),
                  (f"{scope}/noise_strength", sd[f"convs.{idx}.noise_strength"]), (f"{scope}/bias", sd[f"convs.{idx}.bias"])]
        t = [i for i, r in enumerate(G.config.resolutions) if r == res][0]
        if not up:
            ts = f"{res}x{res}/ToRGB"
            synth += [(f"{ts}/weight", np.ascontiguousarray(sd[f"torgbs.{t}.weight"].transpose(2, 3, 1, 0))),
                      (f"{ts}/mod_weight", sd[f"torgbs.{t}.affine.weight"].T.copy()),
                      (f"{ts}/mod_bias", sd[f"torgbs.{t}.affine.bias"] - 1.0), (f"{ts}/bias", sd[f"torgbs.{t}.bias"])]
    for idx, res, _up in _conv_layer_names(n_rgb):
        synth.append((f"noise{idx}", sd[f"convs.{idx}.noise_const"].reshape(1, 1, res, res)))
    return mapping, synth


def write_tf_pkl(G: Generator, path: Path, seed: int = 0, resample_kernel: Sequence[float] | None = None) -> Path:
    """G's conv_clamp, if set, is stored as stylegan2-ada's TF code stores it: in the static
    kwargs of Gs and of its synthesis network, which G_main builds with the same kwargs.
    `resample_kernel`, if given, is stored the same way (None leaves TF's default,
    [1, 3, 3, 1], implicit)."""
    cfg = G.config
    mapping_vars, synth_vars = tf_variables(G)
    kwargs: dict[str, Any] = {"num_channels": cfg.img_channels, "resolution": cfg.resolution, "label_size": 0,
                              "fmap_base": cfg.channel_base // 2, "fmap_max": cfg.channel_max}
    if cfg.conv_clamp is not None:
        kwargs["conv_clamp"] = cfg.conv_clamp
    if resample_kernel is not None:
        kwargs["resample_kernel"] = [float(t) for t in resample_kernel]
    rng = np.random.RandomState(seed + 11)

    def g_net(name: str) -> Network:
        return _tf_net(name, "G_main", [("dlatent_avg", G.w_avg.numpy().astype(np.float32))], {
            "mapping": _tf_net("G_mapping", "G_mapping", mapping_vars, static_kwargs={"dlatent_broadcast": cfg.num_ws}),
            "synthesis": _tf_net("G_synthesis", "G_synthesis_stylegan2", synth_vars, static_kwargs=dict(kwargs)),
        }, kwargs)

    D = _tf_net("D", "D_stylegan2", [("Output/weight", rng.randn(16, 1).astype(np.float32))], static_kwargs=kwargs)
    with _fake_modules({"dnnlib": {}, "dnnlib.tflib": {}, "dnnlib.tflib.network": {"Network": Network}}):
        with open(path, "wb") as f:
            pickle.dump((g_net("G"), D, g_net("Gs")), f, protocol=4)  # Python 3.6's highest
    return path


# --- everything at once ---------------------------------------------------------------


def synthesize_all(out_dir: Path, resolution: int = 64, seed: int = 0) -> dict[str, Path]:
    """Write one tiny file per format; returns kind -> path."""
    from safetensors.torch import save_file

    from styleclip_desktop.nets.clip import tiny_clip_state_dict

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    G = tiny_generator(resolution, seed)
    paths = {
        "stylegan2-ada-pkl": write_ada_pkl(G, out_dir / "synthetic-stylegan2-ada.pkl", seed),
        "stylegan2-tf-pkl": write_tf_pkl(G, out_dir / "synthetic-stylegan2-tf.pkl", seed),
        "stylegan2-rosinality-pt": write_rosinality_pt(G, out_dir / "synthetic-stylegan2-rosinality.pt"),
    }
    clip_path = out_dir / "synthetic-clip-vit.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip_state_dict(seed).items()}, str(clip_path),
              metadata={"note": SYNTHETIC_NOTE})
    paths["clip"] = clip_path
    return paths
