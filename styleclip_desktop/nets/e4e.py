"""The e4e encoder: an aligned face (256x256) -> W+ offsets from the average latent.

Architecture, as published with `e4e_ffhq_encode.pt`:
- an IR-SE50 body whose stage outputs c1 (stride 4, 128 ch), c2 (stride 8, 256 ch) and
  c3 (stride 16, 512 ch) feed a small feature pyramid: p2 = up(c3) + latlayer1(c2),
  p1 = up(p2) + latlayer2(c1), with bilinear (align_corners) upsampling;
- one "gradual style block" per W+ row (strided 3x3 convs with leaky ReLU down to 1x1,
  then an equalised-lr linear layer): rows 0-2 read c3, rows 3-6 read p2, the rest p1;
- progressive deltas: row 0 predicts a base w, and every other row adds its block's
  output to that base. The checkpoint's `latent_avg` is added to the result.

Checkpoint layout: a dict with `state_dict` (keys `encoder.*` for this network and
`decoder.*`, a rosinality-format StyleGAN2 generator), `latent_avg` (L, 512) and `opts`
(the training options as a plain dict). The decoder is recognised and, on request, handed
back untouched; it is never needed to encode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets import adoption, checkpoint
from styleclip_desktop.nets.irse import (
    TINY_IRSE,
    IRSEBackbone,
    IRSEConfig,
    irse_config_from_state_dict,
    randomize_,
    torch_load,
)

INPUT_SIZE = 256
COARSE_END = 3  # rows [0, 3) read the coarsest features
MIDDLE_END = 7  # rows [3, 7) the middle ones, the rest the finest
# Stride-2 convs per style block for each pyramid level at a 256px input: 16, 32 and 64
# pixel maps are reduced to 1x1.
LEVEL_CONVS = (4, 5, 6)


@dataclass(frozen=True)
class E4EConfig:
    backbone: IRSEConfig = IRSEConfig()
    num_ws: int = 18
    w_dim: int = 512
    style_width: int = 512  # channels inside each style block (equal to w_dim officially)
    progressive: bool = True  # e4e; False gives pSp's independent per-row styles

    @property
    def fpn_width(self) -> int:
        return self.backbone.widths[-1]

    def level(self, row: int) -> int:
        return 0 if row < COARSE_END else (1 if row < MIDDLE_END else 2)


class EqualLinear(nn.Module):
    """Linear layer with its weight scaled by 1/sqrt(fan_in) at run time (equalised lr)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    def __init__(self, in_ch: int, width: int, out_dim: int, num_convs: int) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(in_ch if i == 0 else width, width, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"style block reduced its input to {tuple(x.shape[-2:])}, not 1x1")
        return self.linear(x.flatten(1))


def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(IRSEBackbone):
    """Face (B, 3, 256, 256) in [-1, 1] -> W+ offsets (B, num_ws, w_dim)."""

    def __init__(self, config: E4EConfig | None = None) -> None:
        cfg = config or E4EConfig()
        super().__init__(cfg.backbone)
        self.config = cfg
        widths = cfg.backbone.widths
        self.styles = nn.ModuleList(
            GradualStyleBlock(cfg.fpn_width, cfg.style_width, cfg.w_dim, LEVEL_CONVS[cfg.level(i)])
            for i in range(cfg.num_ws)
        )
        self.latlayer1 = nn.Conv2d(widths[2], cfg.fpn_width, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(widths[1], cfg.fpn_width, kernel_size=1, stride=1, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"e4e expects (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}")
        _, c1, c2, c3 = self.features(x)
        levels: list[Tensor] = [c3]
        # The pyramid levels are built only when a row needs them: short W+ (small
        # generators) may never reach the finest one.
        if self.config.num_ws > COARSE_END:
            levels.append(_upsample_add(c3, self.latlayer1(c2)))
        if self.config.num_ws > MIDDLE_END:
            levels.append(_upsample_add(levels[1], self.latlayer2(c1)))
        rows = [self.styles[i](levels[self.config.level(i)]) for i in range(self.config.num_ws)]
        if not self.config.progressive:
            return torch.stack(rows, dim=1)
        base = rows[0]
        return torch.stack([base] + [base + r for r in rows[1:]], dim=1)


class E4E(nn.Module):
    """The encoder plus the checkpoint's average latent: face -> absolute W+."""

    def __init__(self, config: E4EConfig | None = None) -> None:
        super().__init__()
        self.encoder = Encoder4Editing(config)
        cfg = self.encoder.config
        self.register_buffer("latent_avg", torch.zeros(cfg.num_ws, cfg.w_dim))
        self.opts: dict[str, Any] = {}
        self.decoder_state: dict[str, Tensor] | None = None
        self.has_decoder = False

    @property
    def config(self) -> E4EConfig:
        return self.encoder.config

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    def forward(self, x: Tensor) -> Tensor:
        offsets = self.encoder(x)
        return offsets + self.latent_avg.unsqueeze(0)  # type: ignore[operator]


def e4e_config_from_state_dict(sd: Mapping[str, Tensor], progressive: bool = True) -> E4EConfig:
    """Infer the encoder's shape from an `encoder.`-stripped state dict."""
    backbone = irse_config_from_state_dict(sd)
    num_ws = 0
    while f"styles.{num_ws}.linear.weight" in sd:
        num_ws += 1
    if num_ws == 0:
        raise ModelFileError("not an e4e encoder: no style blocks (styles.N.*) found")
    lin = sd["styles.0.linear.weight"]
    cfg = E4EConfig(
        backbone=backbone,
        num_ws=num_ws,
        w_dim=int(lin.shape[0]),
        style_width=int(lin.shape[1]),
        progressive=progressive,
    )
    for i in range(num_ws):
        convs = sum(1 for k in sd if k.startswith(f"styles.{i}.convs.") and k.endswith(".weight"))
        if convs != LEVEL_CONVS[cfg.level(i)]:
            raise ModelFileError(
                f"e4e style block {i} has {convs} convs; expected {LEVEL_CONVS[cfg.level(i)]}"
            )
    return cfg


def load_e4e(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    keep_decoder: bool = False,
    latent_avg_fallback: Tensor | None = None,
    require_latent_avg: bool = True,
) -> E4E:
    """Load an e4e (or pSp) checkpoint such as `e4e_ffhq_encode.pt`.

    `keep_decoder` keeps the embedded generator's state dict (rosinality keys, `decoder.`
    stripped) on `decoder_state`. `latent_avg_fallback` (e.g. the generator's w_avg) is
    used when a checkpoint trained from the average latent does not carry one; without
    either, `require_latent_avg=False` still loads it (to check the file, not to use it)."""
    name = Path(path).name
    try:
        return _load_e4e(path, name, device, keep_decoder, latent_avg_fallback, require_latent_avg)
    except ModelFileError as exc:
        raise checkpoint.named(exc, name) from None
    except checkpoint.MALFORMED as exc:  # whatever else a crafted file makes the code below raise
        raise ModelFileError(f"{name} is not a valid e4e checkpoint ({checkpoint.describe(exc)})") from None


def _load_e4e(path: str | os.PathLike[str], name: str, device: str | torch.device, keep_decoder: bool,
              latent_avg_fallback: Tensor | None, require_latent_avg: bool) -> E4E:
    # Read into memory, not mapped: the encoder's tensors become the network's weights, so
    # the file's 1 GB is held once, and what the encoder never uses is freed on return.
    ckpt = torch_load(path, mmap=False)
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise ModelFileError(f"{name} is not an e4e checkpoint: it has no 'state_dict'")
    full = ckpt["state_dict"]
    if not isinstance(full, Mapping):
        raise ModelFileError(f"{name}: 'state_dict' is not a dictionary")
    enc = {
        k[len("encoder.") :]: v for k, v in full.items() if isinstance(k, str) and k.startswith("encoder.")
    }
    if not enc:
        raise ModelFileError(f"{name} holds no encoder weights (no 'encoder.*' keys)")
    raw_opts = ckpt.get("opts", {})
    opts: dict[str, Any] = dict(raw_opts) if isinstance(raw_opts, Mapping) else {}
    progressive = opts.get("encoder_type", "Encoder4Editing") != "GradualStyleEncoder"
    cfg = e4e_config_from_state_dict(enc, progressive=progressive)
    try:
        model = checkpoint.build_checked(lambda: E4E(cfg), enc, "encoder", adopt=True,
                                         fill=lambda: {"latent_avg": torch.zeros(cfg.num_ws, cfg.w_dim)})
    except RuntimeError as exc:
        raise ModelFileError(f"{name}: encoder weights do not fit the network: {checkpoint.one_line(exc)}") from None

    avg = ckpt.get("latent_avg")
    if avg is None and opts.get("start_from_latent_avg", True):
        avg = latent_avg_fallback
        if avg is None and require_latent_avg:
            raise ModelFileError(f"{name} has no 'latent_avg'; give the generator's average latent instead")
    if avg is not None:
        avg = torch.as_tensor(avg, dtype=torch.float32).detach()
        if avg.ndim == 1:
            avg = avg.unsqueeze(0).expand(cfg.num_ws, -1)
        if tuple(avg.shape) != (cfg.num_ws, cfg.w_dim):
            raise ModelFileError(
                f"{name}: latent_avg has shape {tuple(avg.shape)}, expected ({cfg.num_ws}, {cfg.w_dim})"
            )
        model.latent_avg.copy_(avg)  # type: ignore[operator]

    model.opts = opts
    dec_keys = [k for k in full if isinstance(k, str) and k.startswith("decoder.")]
    model.has_decoder = bool(dec_keys)
    if keep_decoder and dec_keys:
        model.decoder_state = {k[len("decoder.") :]: full[k] for k in dec_keys}
    del ckpt, full, enc  # the rest of the file (the decoder, unless kept) is freed here
    adoption.release_freed_memory()
    return model.eval().requires_grad_(False).to(device)


def _official_like_opts(num_ws: int) -> dict[str, Any]:
    """The training options an e4e checkpoint carries, with this file's resolution."""
    return {
        "exp_dir": "synthetic",
        "dataset_type": "ffhq_encode",
        "encoder_type": "Encoder4Editing",
        "batch_size": 8,
        "test_batch_size": 4,
        "learning_rate": 0.0001,
        "optim_name": "ranger",
        "train_decoder": False,
        "start_from_latent_avg": True,
        "lpips_type": "alex",
        "lpips_lambda": 0.8,
        "id_lambda": 0.5,
        "l2_lambda": 1.0,
        "stylegan_size": 2 ** ((num_ws + 2) // 2),
        "checkpoint_path": None,
        "max_steps": 200000,
        "w_discriminator_lambda": 0.1,
        "delta_norm": 2,
        "delta_norm_lambda": 0.0002,
        "progressive_steps": [0, 20000] + [20000 + 2000 * i for i in range(1, num_ws - 1)],
        "synthetic_note": "synthetic test file: random weights, not a trained encoder",
    }


TINY_E4E_STYLE_WIDTH = 32


def write_synthetic_e4e(
    path: str | os.PathLike[str],
    num_ws: int = 18,
    seed: int = 0,
    decoder_state: Mapping[str, Tensor] | None = None,
    tiny: bool = True,
) -> Path:
    """Write an e4e checkpoint with the official keys, nesting and dict structure and
    seeded random weights (tiny widths unless `tiny=False`). `decoder_state`, if given,
    is stored under `decoder.` like the embedded generator of the official file."""
    cfg = (
        E4EConfig(backbone=TINY_IRSE, num_ws=num_ws, w_dim=512, style_width=TINY_E4E_STYLE_WIDTH)
        if tiny
        else E4EConfig(num_ws=num_ws)
    )
    encoder = randomize_(Encoder4Editing(cfg), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    state: dict[str, Tensor] = {f"encoder.{k}": v.clone() for k, v in encoder.state_dict().items()}
    if decoder_state is not None:
        state.update({f"decoder.{k}": v.detach().clone() for k, v in decoder_state.items()})
    ckpt = {
        "state_dict": state,
        "latent_avg": 0.5 * torch.randn(num_ws, cfg.w_dim, generator=gen),
        "opts": _official_like_opts(num_ws),
    }
    p = Path(path)
    torch.save(ckpt, p)
    return p
