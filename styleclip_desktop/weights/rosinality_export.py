"""Mapper files the official StyleCLIP code reads: our mapper plus the generator it edits.

The official loader (`StyleCLIPMapper`) builds rosinality's `Generator(stylegan_size, 512,
8)` - channel multiplier 2, the FFHQ config-f channel counts - and loads the file's
`decoder.*` into it strictly, and the levels mapper from `mapper.*`, choosing its
sub-mappers from `opts` (`mapper_type`, `no_coarse_mapper`, ..., `work_in_stylespace`).
A file without the decoder is refused there, so an export writes:

    {"state_dict": {"mapper.<our mapper keys>", "decoder.<rosinality generator keys>"},
     "opts": {the official training options, with the values of this mapper}}

Our mapper's keys already are the official ones. The decoder is the generator in
rosinality's key names (`weights.synthetic.rosinality_state_dict`, the inverse of the
rosinality reader in `weights.formats`). Our resumable training state is not part of it: it
stays in the `.train-state.pt` file beside the mapper we trained.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from styleclip_desktop.errors import UserError
from styleclip_desktop.nets.mapper import LEVEL_NAMES, load_mapper, mapper_file_dict, official_opts
from styleclip_desktop.nets.stylegan2 import Generator

# The official loader's `Generator(size, 512, 8)`: rosinality's defaults for the rest.
OFFICIAL_STYLE_DIM = 512
OFFICIAL_MAPPING_LAYERS = 8
OFFICIAL_MAPPING_LR_MUL = 0.01
OFFICIAL_CHANNEL_MULTIPLIER = 2


def official_channels(resolution: int, channel_multiplier: int = OFFICIAL_CHANNEL_MULTIPLIER) -> dict[int, int]:
    """rosinality's channel count at each resolution of a generator of that size."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {r: c for r, c in table.items() if r <= resolution}


def official_decoder_problems(G: Generator) -> list[str]:
    """Why the official code would refuse this generator as a decoder, or render it differently."""
    cfg = G.config
    problems = []
    if cfg.resolution > 1024:
        problems.append(f"its resolution is {cfg.resolution} px; rosinality's generator goes up to 1024")
    if (cfg.z_dim, cfg.w_dim) != (OFFICIAL_STYLE_DIM, OFFICIAL_STYLE_DIM):
        problems.append(f"its z/w sizes are {cfg.z_dim}/{cfg.w_dim}, the official code builds 512/512")
    if cfg.mapping_layers != OFFICIAL_MAPPING_LAYERS:
        problems.append(f"it has {cfg.mapping_layers} mapping layers, the official code builds 8")
    if cfg.img_channels != 3:
        problems.append(f"it makes {cfg.img_channels}-channel images, the official code 3")
    ours = {r: cfg.channels_at(r) for r in cfg.resolutions}
    if cfg.resolution <= 1024 and ours != official_channels(cfg.resolution):
        problems.append("its channel counts are not FFHQ config-f's, which the official code builds")
    if not math.isclose(cfg.mapping_lr_mul, OFFICIAL_MAPPING_LR_MUL):
        problems.append(f"its mapping lr multiplier is {cfg.mapping_lr_mul:g}; the official code's is 0.01 "
                        "(it would read the mapping weights at another scale)")
    if cfg.conv_clamp is not None:
        problems.append(f"it clamps its convolutions at {cfg.conv_clamp:g}; rosinality's generator does not, "
                        "so the official code renders it slightly differently")
    return problems


def decoder_state(G: Generator) -> dict[str, torch.Tensor]:
    """The generator's weights in rosinality's key names and shapes, on the CPU."""
    from styleclip_desktop.weights.synthetic import rosinality_state_dict

    return {k: v.detach().cpu() for k, v in rosinality_state_dict(G).items()}


@dataclass
class OfficialExport:
    path: Path
    description: str
    levels: tuple[str, ...]
    problems: list[str] = field(default_factory=list)  # why the official code may not take it


def official_file_opts(opts: dict[str, Any], description: str, levels: tuple[str, ...],
                       resolution: int) -> dict[str, Any]:
    """The mapper's options in the official layout; the keys the official loader reads are set
    to what the file really holds."""
    out = official_opts(description, levels, stylegan_size=resolution)
    out.update({k: v for k, v in opts.items() if isinstance(v, str | int | float | bool | type(None))})
    out.update({"mapper_type": "LevelsMapper", "work_in_stylespace": False, "stylegan_size": resolution,
                "checkpoint_path": None, "description": description,
                **{f"no_{name}_mapper": name not in levels for name in LEVEL_NAMES}})
    return out


def export_official_mapper(source: str | os.PathLike[str], G: Generator,
                           out: str | os.PathLike[str]) -> OfficialExport:
    """Write the mapper file `source` with `G` as its decoder, in the official layout, to `out`."""
    src, dst = Path(source), Path(out)
    ckpt = load_mapper(src)
    trained_on = str(ckpt.opts.get("generator_sha256") or "")
    ours = str(getattr(G, "source_sha256", "") or "")
    if trained_on and ours and trained_on != ours:
        raise UserError(f"{src.name} was trained on another generator (SHA-256 {trained_on[:12]}...); "
                        "export it with that one (--generator), since a mapper's edit belongs to its generator")
    levels = ckpt.mapper.levels
    opts = official_file_opts(ckpt.opts, ckpt.description, levels, G.config.resolution)
    data = mapper_file_dict(ckpt.mapper, opts, decoder_state(G))
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        torch.save(data, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return OfficialExport(dst, ckpt.description, levels, official_decoder_problems(G))
