"""The StyleCLIP levels mapper: W+ -> a W+ offset that moves a face towards one prompt.

Three sub-mappers share one shape, a pixel norm followed by four equalized-lr linear layers
(512 -> 512, lr multiplier 0.01, leaky ReLU 0.2 x sqrt(2) after every layer), and each one
reads and writes its own W+ rows: coarse 0-3, medium 4-7, fine 8 to the end. A disabled or
absent sub-mapper contributes nothing, so "no fine mapper" keeps colours.

The network returns M(w); the edit is w_hat = w + MAPPER_SCALE * M(w). The official code
applies that 0.1 outside the network (in its training loop and its inference script), so
the scale is not part of the weights and lives here as a constant.

File layout, as published with the 14 official mappers: a torch dict with `state_dict`
(`mapper.course_mapping.mapping.{1..4}.{weight,bias}` - "course" is the official spelling -
likewise `medium_mapping` and `fine_mapping`, plus the whole rosinality-format generator
under `decoder.*`) and `opts` (the training options as a dict). Index 0 of each `mapping`
is the parameter-free pixel norm, hence layers 1..4. The decoder is recognised and can be
handed back, but is never needed: edits use the app's own generator. The mappers this app
trains are saved without it; `weights.rosinality_export` writes the file with the decoder
that the official code needs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets import checkpoint
from styleclip_desktop.nets.stylegan2 import EqualLinear

# w_hat = w + MAPPER_SCALE * M(w), as in the official training and inference code.
MAPPER_SCALE = 0.1
MAPPER_WIDTH = 512
MAPPER_LAYERS = 4
MAPPER_LR_MUL = 0.01

# Level name -> (attribute and key name in the official files, first W+ row, end row or None).
LEVELS: dict[str, tuple[str, int, int | None]] = {
    "coarse": ("course_mapping", 0, 4),
    "medium": ("medium_mapping", 4, 8),
    "fine": ("fine_mapping", 8, None),
}
LEVEL_NAMES = tuple(LEVELS)


class GroupPixelNorm(nn.Module):
    """Normalize the second moment over dim 1.

    The sub-mappers see a (B, rows, 512) slice of W+, so dim 1 is the rows of the level,
    not the 512 features. That is what the released mappers were trained with, and
    reproducing it is what makes their weights give their published edits.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class SubMapper(nn.Module):
    """Pixel norm + 4 equalized-lr linear layers; state-dict keys `mapping.{1..4}.*`."""

    def __init__(self, width: int = MAPPER_WIDTH) -> None:
        super().__init__()
        layers: list[nn.Module] = [GroupPixelNorm()]
        layers += [EqualLinear(width, width, lr_mul=MAPPER_LR_MUL, activate=True) for _ in range(MAPPER_LAYERS)]
        self.mapping = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mapping(x)


class LevelsMapper(nn.Module):
    """The three sub-mappers; `forward(ws)` is M(w), zero on the rows of absent or disabled levels."""

    def __init__(self, levels: tuple[str, ...] = LEVEL_NAMES, width: int = MAPPER_WIDTH) -> None:
        super().__init__()
        unknown = set(levels) - set(LEVELS)
        if unknown:
            raise ValueError(f"unknown mapper levels: {', '.join(sorted(unknown))}")
        self.width = width
        self.levels = tuple(name for name in LEVEL_NAMES if name in levels)
        for name in self.levels:
            setattr(self, LEVELS[name][0], SubMapper(width))

    def sub_mapper(self, level: str) -> SubMapper | None:
        if level not in self.levels:
            return None
        module = getattr(self, LEVELS[level][0])
        assert isinstance(module, SubMapper)
        return module

    def forward(self, ws: Tensor, enabled: Mapping[str, bool] | None = None) -> Tensor:
        if ws.ndim != 3 or ws.shape[2] != self.width:
            raise ValueError(f"W+ must be (B, L, {self.width}), got {tuple(ws.shape)}")
        parts = []
        for name in LEVEL_NAMES:
            _, start, end = LEVELS[name]
            rows = ws[:, start:end]
            module = self.sub_mapper(name)
            on = enabled is None or enabled.get(name, True)
            # An empty slice (a generator with fewer than 9 rows) must not reach the
            # pixel norm, whose mean over zero rows is NaN.
            if module is None or not on or rows.shape[1] == 0:
                parts.append(torch.zeros_like(rows))
            else:
                parts.append(module(rows))
        return torch.cat(parts, dim=1)


def apply_levels(mapper: LevelsMapper, ws: Tensor, alpha: float = 1.0,
                 enabled: Mapping[str, bool] | None = None) -> Tensor:
    """w + alpha * MAPPER_SCALE * M(w); alpha 1 is the edit the mapper was trained for."""
    return ws + (alpha * MAPPER_SCALE) * mapper(ws, enabled)


# --- files ----------------------------------------------------------------------------


@dataclass
class MapperCheckpoint:
    """A loaded mapper file: the network, its options, and what else the file carried."""

    mapper: LevelsMapper
    opts: dict[str, Any]
    has_decoder: bool = False
    decoder_state: dict[str, Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # our training state, when present

    @property
    def description(self) -> str:
        """The prompt the mapper was trained for, if the file says."""
        return str(self.opts.get("description") or "")


def official_opts(description: str, levels: tuple[str, ...] = LEVEL_NAMES, stylegan_size: int = 1024,
                  **overrides: Any) -> dict[str, Any]:
    """Training options with the official key names and defaults, as a mapper file stores them."""
    opts: dict[str, Any] = {
        "exp_dir": "", "mapper_type": "LevelsMapper", "work_in_stylespace": False,
        "no_coarse_mapper": "coarse" not in levels, "no_medium_mapper": "medium" not in levels,
        "no_fine_mapper": "fine" not in levels,
        "latents_train_path": "", "latents_test_path": "",
        "train_dataset_size": 5000, "test_dataset_size": 1000,
        "batch_size": 2, "test_batch_size": 1, "workers": 4, "test_workers": 2,
        "learning_rate": 0.5, "optim_name": "ranger",
        "id_lambda": 0.1, "clip_lambda": 1.0, "latent_l2_lambda": 0.8,
        "stylegan_weights": "", "stylegan_size": stylegan_size, "ir_se50_weights": "",
        "checkpoint_path": None, "max_steps": 50000, "image_interval": 100, "board_interval": 50,
        "val_interval": 2000, "save_interval": 2000, "description": description,
    }
    opts.update(overrides)
    return opts


def mapper_file_dict(mapper: LevelsMapper, opts: Mapping[str, Any],
                     decoder_state: Mapping[str, Tensor] | None = None,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The official layout: {"state_dict": {mapper.*, decoder.*}, "opts": {...}} (+ our extras)."""
    state = {f"mapper.{k}": v.detach().cpu().clone() for k, v in mapper.state_dict().items()}
    if decoder_state:
        state.update({f"decoder.{k}": v.detach().cpu().clone() for k, v in decoder_state.items()})
    out: dict[str, Any] = {"state_dict": state, "opts": dict(opts)}
    out.update(extra or {})
    return out


def save_mapper(path: str | os.PathLike[str], mapper: LevelsMapper, opts: Mapping[str, Any],
                decoder_state: Mapping[str, Tensor] | None = None,
                extra: Mapping[str, Any] | None = None) -> Path:
    """Write atomically: a crash mid-save must never destroy the previous checkpoint."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.partial")
    try:
        torch.save(mapper_file_dict(mapper, opts, decoder_state, extra), tmp)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def _read(path: Path) -> Any:
    if not path.exists():
        raise ModelFileError(f"mapper file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"mapper path is not a file: {path}")
    # Files saved with the options as an argparse.Namespace are still plain data. Not
    # mapped: training resumes from a checkpoint it then overwrites.
    return checkpoint.torch_load(path, what="StyleCLIP mapper file", extra_globals=[argparse.Namespace],
                                 mmap=False)


def mapper_from_state(state: Mapping[str, Any], name: str = "the mapper file") -> LevelsMapper:
    """Build a LevelsMapper from `mapper.*` keys; the levels present decide which sub-mappers exist."""
    sub = {k[len("mapper."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("mapper.")}
    if not sub:
        raise ModelFileError(f"{name} is not a StyleCLIP mapper: it holds no 'mapper.*' weights")
    if not all(isinstance(v, Tensor) for v in sub.values()):
        raise ModelFileError(f"{name} is damaged: some 'mapper.*' entries are not tensors")
    levels = tuple(n for n in LEVEL_NAMES if any(k.startswith(LEVELS[n][0] + ".") for k in sub))
    if not levels:
        kinds = sorted({k.split(".")[0] for k in sub})
        raise ModelFileError(f"{name} holds a mapper this app does not run (parts: {', '.join(kinds)}); "
                             "only the levels mapper (coarse/medium/fine) is supported")
    width = _width_of(sub, name)
    try:
        mapper = checkpoint.build_checked(lambda: LevelsMapper(levels, width), {k: v.float() for k, v in sub.items()})
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ModelFileError(f"{name}: the mapper weights do not fit the levels mapper ({detail})") from None
    return mapper.eval()


def _width_of(sub: Mapping[str, Any], name: str) -> int:
    for key, value in sub.items():
        if key.endswith("mapping.1.weight") and isinstance(value, Tensor) and value.ndim == 2:
            return int(value.shape[1])
    raise ModelFileError(f"{name}: the mapper has no first linear layer ('mapping.1.weight')")


def load_mapper(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                keep_decoder: bool = False) -> MapperCheckpoint:
    """Load an official mapper (e.g. `mapper-afro.pt`) or one trained here, without running code."""
    p = Path(path)
    try:
        return _load_mapper(p, device, keep_decoder)
    except ModelFileError as exc:
        raise checkpoint.named(exc, p.name) from None
    except checkpoint.MALFORMED as exc:  # whatever else a crafted file makes the code below raise
        raise ModelFileError(f"{p.name} is not a valid StyleCLIP mapper file ({checkpoint.describe(exc)})") from None


def _load_mapper(p: Path, device: str | torch.device, keep_decoder: bool) -> MapperCheckpoint:
    obj = _read(p)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise ModelFileError(f"{p.name} is not a StyleCLIP mapper: it has no 'state_dict' dictionary")
    state = obj["state_dict"]
    mapper = mapper_from_state(state, p.name).to(device)
    raw_opts = obj.get("opts", {})
    if isinstance(raw_opts, argparse.Namespace):
        raw_opts = vars(raw_opts)
    opts = {str(k): v for k, v in raw_opts.items()} if isinstance(raw_opts, Mapping) else {}
    dec_keys = [k for k in state if isinstance(k, str) and k.startswith("decoder.")]
    decoder = {k[len("decoder."):]: state[k] for k in dec_keys} if keep_decoder and dec_keys else None
    extra = {k: v for k, v in obj.items() if k not in ("state_dict", "opts")}
    return MapperCheckpoint(mapper, opts, bool(dec_keys), decoder, extra)


def write_synthetic_mapper(path: str | os.PathLike[str], seed: int = 0,
                           decoder_state: Mapping[str, Tensor] | None = None,
                           levels: tuple[str, ...] = LEVEL_NAMES, description: str = "synthetic mapper",
                           opts_as_namespace: bool = False) -> Path:
    """A mapper file in the official layout with seeded random weights at the real width (512).

    `decoder_state` (e.g. a tiny generator's rosinality state dict) is embedded under
    `decoder.` as the official files embed theirs; without it the file has no decoder.
    Biases are non-zero so that every tensor of the file matters to the output.
    """
    gen = torch.Generator().manual_seed(seed)
    mapper = LevelsMapper(levels)
    with torch.no_grad():
        for name, param in mapper.named_parameters():
            if name.endswith("weight"):
                param.copy_(torch.randn(param.shape, generator=gen) / MAPPER_LR_MUL)
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=gen) / MAPPER_LR_MUL)
    opts: Any = official_opts(description, levels, synthetic_note="random weights, not a trained mapper")
    if opts_as_namespace:
        opts = argparse.Namespace(**opts)
    state = mapper_file_dict(mapper, {}, decoder_state)["state_dict"]
    p = Path(path)
    torch.save({"state_dict": state, "opts": opts}, p)
    return p
