"""The IR-SE residual backbone shared by the ArcFace identity network and the e4e encoder.

Both official checkpoints use the same body: a stem (3x3 conv, BN, PReLU) and four stages
of "improved residual" units with squeeze-and-excitation, [3, 4, 14, 3] units wide
64/128/256/512 for IR-SE50. Every stage starts with a stride-2 unit. Module and attribute
names here reproduce the published state-dict keys exactly (`input_layer.*`, `body.N.*`,
`output_layer.*`; e4e nests the same names under `encoder.`), so the files load with
`strict=True` and no renaming.

Depth and widths are parameters so tests can build tiny, format-faithful copies; the
defaults are the real IR-SE50. The loaders read the configuration back from tensor shapes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets import checkpoint

StateDict = dict[str, Tensor]

# ArcFace's crop of a 256px FFHQ-aligned face: the inner face, as the identity loss of
# the StyleCLIP and e4e code takes it (rows 35:223, columns 32:220), then pooled to 112.
ARCFACE_POOL = 256
ARCFACE_CROP = (35, 223, 32, 220)
ARCFACE_INPUT = 112


@dataclass(frozen=True)
class IRSEConfig:
    """Shape of an IR(-SE) backbone. Stage widths must all differ: that is how a loader
    tells where one stage ends and the next begins."""

    blocks: tuple[int, ...] = (3, 4, 14, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    se_reduction: int = 16
    use_se: bool = True

    def __post_init__(self) -> None:
        if len(self.blocks) != 4 or len(self.widths) != 4:
            raise ValueError("an IR-SE backbone has exactly four stages")
        if min(self.blocks) < 1:
            raise ValueError("every stage needs at least one unit")
        if self.use_se and min(self.widths) < self.se_reduction:
            raise ValueError("stage widths must be at least the SE reduction factor")

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index in `body` of the last unit of each stage (6, 20, 23 for stages 2-4 of IR-SE50)."""
        ends, total = [], 0
        for n in self.blocks:
            total += n
            ends.append(total - 1)
        return tuple(ends)


class SEModule(nn.Module):
    """Channel attention: global pool -> bottleneck -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """BN -> conv3x3 -> PReLU -> conv3x3 (strided) -> BN [-> SE], plus a shortcut.

    The shortcut is a parameter-free strided identity when the width is unchanged, else a
    strided 1x1 conv with BN. The stride sits on the second conv, as in the official nets."""

    def __init__(self, in_ch: int, depth: int, stride: int, se_reduction: int | None) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_ch, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se_reduction is not None:
            layers.append(SEModule(depth, se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSEBackbone(nn.Module):
    """Stem and body. Subclasses add their heads beside `input_layer` and `body` so that
    the state-dict keys stay flat, as in the official files."""

    def __init__(self, config: IRSEConfig | None = None) -> None:
        super().__init__()
        cfg = config or IRSEConfig()
        self.irse_config = cfg
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, cfg.stem_width, (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(cfg.stem_width),
            nn.PReLU(cfg.stem_width),
        )
        units: list[nn.Module] = []
        in_ch = cfg.stem_width
        se = cfg.se_reduction if cfg.use_se else None
        for n, depth in zip(cfg.blocks, cfg.widths, strict=True):
            for i in range(n):
                units.append(BottleneckIRSE(in_ch, depth, 2 if i == 0 else 1, se))
                in_ch = depth
        self.body = nn.Sequential(*units)

    def features(self, x: Tensor) -> list[Tensor]:
        """The output of each of the four stages (strides 2, 4, 8, 16)."""
        x = self.input_layer(x)
        ends = set(self.irse_config.stage_ends)
        out = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in ends:
                out.append(x)
        return out


def irse_config_from_state_dict(sd: Mapping[str, Tensor], prefix: str = "") -> IRSEConfig:
    """Read stage depths and widths back from the tensor shapes of a backbone state dict."""
    stem_key = f"{prefix}input_layer.0.weight"
    if stem_key not in sd:
        raise ModelFileError(f"not an IR-SE backbone: key {stem_key!r} is missing")
    stem = int(sd[stem_key].shape[0])
    blocks: list[int] = []
    widths: list[int] = []
    reduction, use_se = 16, False
    i = 0
    while f"{prefix}body.{i}.res_layer.1.weight" in sd:
        depth = int(sd[f"{prefix}body.{i}.res_layer.1.weight"].shape[0])
        # A projected shortcut means the width changed, which only happens at a stage start;
        # the very first unit always starts a stage even though its width may not change.
        if i == 0 or f"{prefix}body.{i}.shortcut_layer.0.weight" in sd:
            blocks.append(0)
            widths.append(depth)
        blocks[-1] += 1
        se_key = f"{prefix}body.{i}.res_layer.5.fc1.weight"
        if se_key in sd:
            use_se = True
            reduction = depth // int(sd[se_key].shape[0])
        i += 1
    if len(blocks) != 4:
        raise ModelFileError(f"expected an IR-SE backbone with 4 stages, found {len(blocks)}")
    return IRSEConfig(
        blocks=tuple(blocks), widths=tuple(widths), stem_width=stem, se_reduction=reduction, use_se=use_se
    )


class ArcFace(IRSEBackbone):
    """ArcFace IR-SE50 face recognition (TreB1eN's layout): 512-d identity embeddings."""

    def __init__(
        self,
        config: IRSEConfig | None = None,
        embedding_dim: int = 512,
        input_size: int = ARCFACE_INPUT,
        affine_output: bool = True,
        drop_ratio: float = 0.6,
    ) -> None:
        super().__init__(config)
        cfg = self.irse_config
        if input_size % 16:
            raise ValueError("the input size must be divisible by 16 (four stride-2 stages)")
        self.input_size = input_size
        side = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(cfg.widths[-1]),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(cfg.widths[-1] * side * side, embedding_dim),
            nn.BatchNorm1d(embedding_dim, affine=affine_output),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Pre-cropped faces (B, 3, input_size, input_size) in [-1, 1] -> unit embeddings."""
        x = self.body(self.input_layer(x))
        return F.normalize(self.output_layer(x), dim=1)

    def identity_features(self, images: Tensor) -> Tensor:
        """FFHQ-aligned faces (B, 3, H, W) in [-1, 1], any size -> L2-normalised (B, 512)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = images
        if x.shape[-2:] != (ARCFACE_POOL, ARCFACE_POOL):
            x = F.adaptive_avg_pool2d(x, (ARCFACE_POOL, ARCFACE_POOL))
        top, bottom, left, right = ARCFACE_CROP
        x = x[:, :, top:bottom, left:right]
        x = F.adaptive_avg_pool2d(x, (self.input_size, self.input_size))
        return self(x)


def _unwrap_state_dict(obj: Any) -> StateDict:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelFileError("the file does not hold a state dict of tensors")
    sd = {str(k): v for k, v in obj.items()}
    # Weights saved from a DataParallel wrapper carry a "module." prefix on every key.
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def torch_load(path: str | os.PathLike[str], mmap: bool = True) -> Any:
    """torch.load without executing code; memory-mapped where the file format allows it,
    unless `mmap` is False (for tensors a network adopts as its weights)."""
    return checkpoint.torch_load(path, mmap=mmap)


def arcface_from_state_dict(sd: Mapping[str, Tensor], adopt: bool = False) -> ArcFace:
    """The network for an ArcFace state dict; with `adopt`, `sd`'s tensors become its
    weights (no second copy), so the caller must not use them afterwards."""
    cfg = irse_config_from_state_dict(sd)
    if "output_layer.3.weight" not in sd:
        raise ModelFileError("not an ArcFace network: the output layer is missing")
    lin = sd["output_layer.3.weight"]
    embed, flat = int(lin.shape[0]), int(lin.shape[1])
    side = round((flat / cfg.widths[-1]) ** 0.5)
    if side * side * cfg.widths[-1] != flat:
        raise ModelFileError("ArcFace output layer does not match the backbone width")
    try:
        net = checkpoint.build_checked(
            lambda: ArcFace(cfg, embed, side * 16, affine_output="output_layer.4.weight" in sd), dict(sd),
            adopt=adopt)
    except RuntimeError as exc:
        raise ModelFileError(f"ArcFace weights do not fit the network: {checkpoint.one_line(exc)}") from None
    return net.eval().requires_grad_(False)


def load_arcface(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ArcFace:
    """Load `model_ir_se50.pth` (or any IR-SE ArcFace in that layout), ready for inference."""
    name = Path(path).name
    try:
        # Read into memory, not mapped: the file's tensors become the network's weights.
        net = arcface_from_state_dict(_unwrap_state_dict(torch_load(path, mmap=False)), adopt=True)
    except ModelFileError as exc:
        raise checkpoint.named(exc, name) from None
    except checkpoint.MALFORMED as exc:  # whatever else a crafted file makes the code above raise
        raise ModelFileError(f"{name} is not a valid ArcFace checkpoint ({checkpoint.describe(exc)})") from None
    return net.to(device)


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Seeded random weights and batch-norm statistics, scaled to keep activations tame."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif leaf == "running_mean" or leaf == "bias":
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.ndim == 1:  # BN scale, PReLU slope
                t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=gen))
            else:
                fan_in = max(1, t[0].numel())
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)
    return module


TINY_IRSE = IRSEConfig(blocks=(2, 1, 2, 1), widths=(16, 32, 48, 64), stem_width=16)


def write_synthetic_arcface(path: str | os.PathLike[str], seed: int = 0, tiny: bool = True) -> Path:
    """A random ArcFace file with the official key names and nesting (a bare state dict)."""
    net = ArcFace(TINY_IRSE if tiny else IRSEConfig())
    randomize_(net, seed)
    p = Path(path)
    torch.save(net.state_dict(), p)
    return p
