"""StyleGAN2 generator in pure PyTorch, with an explicit style-space (S) API.

The arithmetic follows NVIDIA's StyleGAN2 exactly (modulated/demodulated convs,
transposed-conv upsampling followed by a [1,3,3,1] FIR filter, constant per-layer noise,
leaky ReLU times sqrt(2), skip-architecture toRGB outputs), so the official weights load
and render unchanged. No custom CUDA or C++ ops: it runs anywhere and exports to ONNX.

Style space layout (26 vectors at 1024px), in generator order::

    [conv(4), torgb(4), conv0(8), conv1(8), torgb(8), conv0(16), ...]

Conv layer k reads W+ row k; the toRGB of a block reads the next row, which it shares
with the next block's first conv. S excludes the toRGB weight gain (1/sqrt(in)): it is
applied inside the toRGB layer, so S values are comparable with statistics and
relevance matrices computed on the original TensorFlow generator.

Weight layout follows the stylegan2-ada-pytorch checkpoint (conv weights [out, in, k, k],
no flip for the upsampling conv); the loaders in `weights/` convert the other formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; config-f FFHQ 1024 by default."""

    z_dim: int = 512
    w_dim: int = 512
    resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    # Explicit (resolution, channels) pairs override channel_base/channel_max.
    channels: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution)
        if self.resolution < 4 or log2 != int(log2):
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    def channels_at(self, res: int) -> int:
        explicit = dict(self.channels)
        if res in explicit:
            return explicit[res]
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    def to_dict(self) -> dict[str, object]:
        return {
            "z_dim": self.z_dim, "w_dim": self.w_dim, "resolution": self.resolution,
            "img_channels": self.img_channels, "mapping_layers": self.mapping_layers,
            "mapping_lr_mul": self.mapping_lr_mul, "channel_base": self.channel_base,
            "channel_max": self.channel_max, "channels": [list(p) for p in self.channels],
            "conv_clamp": self.conv_clamp,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> GeneratorConfig:
        kw = dict(d)
        kw["channels"] = tuple((int(r), int(c)) for r, c in kw.get("channels", ()))  # type: ignore[attr-defined]
        return cls(**kw)  # type: ignore[arg-type]


# --- low-level ops --------------------------------------------------------------------


def fir_filter_1d() -> Tensor:
    # [1, 3, 3, 1] / 8, written out: exact in binary, and no arithmetic on the meta device.
    return torch.tensor([0.125, 0.375, 0.375, 0.125])


def upfirdn2d(x: Tensor, f1d: Tensor, up: int = 1, pad: tuple[int, int] = (0, 0), gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad (negative = crop), then filter with a separable FIR.

    Same arithmetic as NVIDIA's upfirdn2d reference for square, symmetric filters.
    `gain` is the total 2-D gain (e.g. up**2 to keep brightness after zero insertion).
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 > 0 or p1 > 0:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    taps = (f1d * math.sqrt(gain)).flip(0).to(x.dtype)
    k = taps.numel()
    fy = taps.view(1, 1, k, 1).repeat(c, 1, 1, 1)
    fx = taps.view(1, 1, 1, k).repeat(c, 1, 1, 1)
    x = F.conv2d(x, fy, groups=c)
    return F.conv2d(x, fx, groups=c)


def upsample2d(x: Tensor, f1d: Tensor) -> Tensor:
    """2x upsampling of the skip image (pad 2,1 for a 4-tap filter)."""
    k = f1d.numel()
    return upfirdn2d(x, f1d, up=2, pad=((k + 1) // 2, (k - 2) // 2), gain=4.0)


def lrelu_agc(x: Tensor, bias: Tensor, clamp: float | None) -> Tensor:
    x = F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2) * SQRT2
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class EqualLinear(nn.Module):
    """Fully connected layer with an equalized learning rate (runtime weight scaling)."""

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activate: bool = False, init: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(_fresh(out_features, in_features, init=init, divisor=lr_mul))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain)
        x = x + self.bias * self.bias_gain
        if self.activate:
            x = F.leaky_relu(x, 0.2) * SQRT2
        return x


def _fresh(*shape: int, init: bool = True, divisor: float = 1.0) -> Tensor:
    """Seeded-normal starting values, or uninitialised memory for a layer about to be loaded.

    On the meta device (a loader's size check) nothing is drawn: random and out-of-place
    ops there load torch's symbolic-shape machinery, seconds on first use.
    """
    blank = torch.empty(*shape)
    if not init or blank.is_meta:
        return blank
    return torch.randn(*shape) / divisor if divisor != 1.0 else torch.randn(*shape)


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    w_avg: Tensor

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float, init: bool = True) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.num_layers = num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activate=True, init=init))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor) -> Tensor:
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


# A per-channel scale (B, C, 1, 1), or a function that scales activations by a blend of
# several (see `BlendedScale`).
Scale = Tensor | Callable[[Tensor], Tensor]


def _scaled(x: Tensor, scale: Scale) -> Tensor:
    return x * scale if isinstance(scale, Tensor) else scale(x)


class StyledConv(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), constant noise, bias, lrelu."""

    noise_const: Tensor
    filter: Tensor

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: bool,
                 conv_clamp: float | None, init: bool = True) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.up, self.resolution = in_ch, out_ch, up, resolution
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0, init=init)
        self.weight = nn.Parameter(_fresh(out_ch, in_ch, 3, 3, init=init))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", _fresh(resolution, resolution, init=init))
        self.register_buffer("filter", fir_filter_1d())

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.apply_modulation(x, *self.modulation(style))

    def modulation(self, style: Tensor) -> tuple[Tensor, Tensor]:
        """A style (B, in) as the input scale (B, in, 1, 1) and demodulation (B, out, 1, 1).

        A masked render blends these per pixel into maps (B, C, H, W) of the same values
        where the mask is 0 or 1 (see `Generator.synthesize_masked`)."""
        dcoef = (style.square() @ self.weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
        return style.view(style.shape[0], -1, 1, 1), dcoef.view(dcoef.shape[0], -1, 1, 1)

    def apply_modulation(self, x: Tensor, scale: Scale, dcoef: Scale) -> Tensor:
        # Modulate activations rather than weights: mathematically identical to the fused
        # grouped conv, but keeps the batch dimension free (dynamic batch in ONNX export).
        w = self.weight
        x = _scaled(x, scale)
        if self.up:
            x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
            x = upfirdn2d(x, self.filter, pad=(1, 1), gain=4.0)
        else:
            x = F.conv2d(x, w, padding=1)
        x = _scaled(x, dcoef)
        x = x + self.noise_const * self.noise_strength
        return lrelu_agc(x, self.bias, self.conv_clamp)


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, img_channels: int, w_dim: int, conv_clamp: float | None,
                 init: bool = True) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0, init=init)
        self.weight = nn.Parameter(_fresh(img_channels, in_ch, 1, 1, init=init))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_ch)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.apply_modulation(x, self.modulation(style))

    def modulation(self, style: Tensor) -> Tensor:
        """A style (B, in) as the input scale (B, in, 1, 1)."""
        return (style * self.weight_gain).view(style.shape[0], -1, 1, 1)

    def apply_modulation(self, x: Tensor, scale: Scale) -> Tensor:
        x = _scaled(x, scale)
        x = F.conv2d(x, self.weight) + self.bias.view(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


@dataclass(frozen=True)
class StyleSlot:
    """One entry of S: which layer it drives and which W+ row feeds it."""

    index: int
    resolution: int
    kind: str  # "conv" or "torgb"
    dim: int
    w_row: int

    @property
    def is_torgb(self) -> bool:
        return self.kind == "torgb"


class Generator(nn.Module):
    """StyleGAN2 generator: z -> w -> W+ -> S -> image."""

    mapping: MappingNetwork
    filter: Tensor

    def __init__(self, config: GeneratorConfig | None = None, init: bool = True) -> None:
        """`init=False` leaves the weights uninitialised, for a loader that assigns them all."""
        super().__init__()
        cfg = config or GeneratorConfig()
        self.config = cfg
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul, init=init)
        self.const = nn.Parameter(_fresh(cfg.channels_at(4), 4, 4, init=init))
        self.convs = nn.ModuleList()
        self.torgbs = nn.ModuleList()
        slots: list[StyleSlot] = []
        conv_index = 0
        prev = cfg.channels_at(4)
        for res in cfg.resolutions:
            ch = cfg.channels_at(res)
            ups = [False] if res == 4 else [True, False]
            for up in ups:
                in_ch = prev if up else ch
                self.convs.append(StyledConv(in_ch, ch, cfg.w_dim, res, up, cfg.conv_clamp, init=init))
                slots.append(StyleSlot(len(slots), res, "conv", in_ch, conv_index))
                conv_index += 1
            self.torgbs.append(ToRGB(ch, cfg.img_channels, cfg.w_dim, cfg.conv_clamp, init=init))
            slots.append(StyleSlot(len(slots), res, "torgb", ch, conv_index))
            prev = ch
        self.slots: tuple[StyleSlot, ...] = tuple(slots)
        self.register_buffer("filter", fir_filter_1d())

    # --- bookkeeping ------------------------------------------------------------------

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_avg(self) -> Tensor:
        return self.mapping.w_avg

    @property
    def style_dims(self) -> list[int]:
        return [s.dim for s in self.slots]

    def _styled_layers(self) -> list[StyledConv | ToRGB]:
        layers: list[StyledConv | ToRGB] = []
        ci = ti = 0
        for slot in self.slots:
            if slot.is_torgb:
                layers.append(self.torgbs[ti])  # type: ignore[arg-type]
                ti += 1
            else:
                layers.append(self.convs[ci])  # type: ignore[arg-type]
                ci += 1
        return layers

    # --- z -> w -> W+ -> S ------------------------------------------------------------

    def mapping_forward(self, z: Tensor, psi: float = 1.0) -> Tensor:
        """z (B, z_dim) -> w (B, w_dim), truncated towards w_avg by psi."""
        if z.ndim != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must be (B, {self.config.z_dim}), got {tuple(z.shape)}")
        w = self.mapping(z)
        return self.truncate(w, psi)

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        if psi == 1.0:
            return w
        return self.w_avg + psi * (w - self.w_avg)

    def broadcast_w(self, w: Tensor) -> Tensor:
        """(B, w_dim) or (B, L, w_dim) -> W+ (B, L, w_dim)."""
        if w.ndim == 2:
            return w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if w.ndim == 3 and w.shape[1] == self.num_ws and w.shape[2] == self.config.w_dim:
            return w
        raise ValueError(f"W+ must be (B, {self.num_ws}, {self.config.w_dim}), got {tuple(w.shape)}")

    def w_to_s(self, w: Tensor) -> list[Tensor]:
        """w or W+ -> the style vectors, one (B, dim) tensor per slot, toRGB included."""
        ws = self.broadcast_w(w)
        return [layer.affine(ws[:, slot.w_row]) for slot, layer in zip(self.slots, self._styled_layers(), strict=True)]

    # --- synthesis --------------------------------------------------------------------

    def _check_styles(self, styles: Sequence[Tensor], out_res: int | None) -> int:
        if len(styles) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} style vectors, got {len(styles)}")
        for slot, s in zip(self.slots, styles, strict=True):
            if s.ndim != 2 or s.shape[1] != slot.dim:
                raise ValueError(f"style {slot.index} must be (B, {slot.dim}), got {tuple(s.shape)}")
        stop = out_res or self.config.resolution
        if stop not in self.config.resolutions:
            raise ValueError(f"out_res must be one of {self.config.resolutions}, got {stop}")
        return stop

    def synthesize(self, styles: Sequence[Tensor], out_res: int | None = None,
                   taps: dict[int, Tensor] | None = None) -> Tensor:
        """S -> image (B, C, H, W), range about [-1, 1].

        `out_res` stops after that block and returns the skip image summed so far: a cheap
        low-resolution preview of the same picture. `taps`, when given, receives each
        block's feature map (B, C, res, res) by resolution, as the block leaves it.
        """
        stop = self._check_styles(styles, out_res)
        batch = styles[0].shape[0]
        x = self.const.unsqueeze(0).expand(batch, -1, -1, -1)
        img: Tensor | None = None
        layers = self._styled_layers()
        for slot, layer, s in zip(self.slots, layers, styles, strict=True):
            if slot.resolution > stop:
                break
            if slot.is_torgb:
                if taps is not None:
                    taps[slot.resolution] = x
                y = layer(x, s)
                img = y if img is None else upsample2d(img, self.filter) + y
            else:
                x = layer(x, s)
        assert img is not None
        return img

    def synthesize_masked(self, branches: Sequence[Sequence[Tensor]], masks: Sequence[Tensor],
                          start_res: int, out_res: int | None = None) -> Tensor:
        """Masked layers blended in feature space.

        `branches[0]` are the styles without the masked layers, `branches[k]` with the
        first k of them (in stack order); `masks[k - 1]` is layer k's coverage (1, 1, h, w)
        in [0, 1]. Below `start_res` every branch runs on its own; the first unit at
        `start_res` or finer still runs per branch, then the branches' feature maps and
        skip images are blended by the masks resized to that resolution, and the rest runs
        once with every style blended per pixel into a map (its demodulation likewise).
        A unit whose styles agree across branches runs once, unblended.

        Blends go through `torch.lerp`, which returns its end points exactly: where every
        mask is 1 the result equals `synthesize(branches[-1])` bit for bit, and where every
        mask is 0 it equals `synthesize(branches[0])`.
        """
        if len(branches) != len(masks) + 1 or not masks:
            raise ValueError("a masked synthesis needs one more style branch than masks, and a mask")
        stop = max(self._check_styles(b, out_res) for b in branches)
        if start_res not in self.config.resolutions:
            raise ValueError(f"start_res must be one of {self.config.resolutions}, got {start_res}")
        sized: dict[int, list[Tensor]] = {}

        def masks_at(res: int) -> list[Tensor]:
            if res not in sized:
                sized[res] = [resize_coverage(m, res) for m in masks]
            return sized[res]

        def blend(values: Sequence[Tensor], res: int) -> Tensor:
            return blend_branches(values, masks_at(res))

        supports: dict[int, tuple[int, tuple[slice, slice] | None]] = {}

        def scale(values: Sequence[Tensor], res: int) -> BlendedScale:
            if res not in supports:
                supports[res] = blend_support(masks_at(res))
            return BlendedScale(values, masks_at(res), *supports[res])

        batch = branches[0][0].shape[0]
        const = self.const.unsqueeze(0).expand(batch, -1, -1, -1)
        xs: list[Tensor] = [const] * len(branches)  # per branch until blended
        imgs: list[Tensor | None] = [None] * len(branches)
        x: Tensor | None = None
        img: Tensor | None = None
        pending_up: Tensor | None = None  # the blended, already upsampled skip image
        layers = self._styled_layers()
        for slot, layer in zip(self.slots, layers, strict=True):
            if slot.resolution > stop:
                break
            styles = [b[slot.index] for b in branches]
            same = all(torch.equal(styles[0], s) for s in styles[1:])
            if x is None:  # branches still apart; where they agree so far, they are one object
                shared = same and all(xk is xs[0] for xk in xs)
                if slot.is_torgb:
                    if shared and all(im is imgs[0] for im in imgs):
                        y = layer(xs[0], styles[0])
                        imgs = [y if imgs[0] is None else upsample2d(imgs[0], self.filter) + y] * len(imgs)
                    else:
                        ys = [layer(xk, s) for xk, s in zip(xs, styles, strict=True)]
                        imgs = [y if im is None else upsample2d(im, self.filter) + y
                                for im, y in zip(imgs, ys, strict=True)]
                else:
                    xs = [layer(xs[0], styles[0])] * len(xs) if shared else [
                        layer(xk, s) for xk, s in zip(xs, styles, strict=True)]
                    if slot.resolution >= start_res:
                        x = blend(xs, slot.resolution)
                        ups = {id(im): upsample2d(im, self.filter) for im in imgs if im is not None}
                        if ups:  # branches that share a skip image share its upsampling too
                            pending_up = blend([ups[id(im)] for im in imgs], slot.resolution)
                continue
            if slot.is_torgb:
                assert isinstance(layer, ToRGB)
                y = layer(x, styles[0]) if same else layer.apply_modulation(
                    x, scale([layer.modulation(s) for s in styles], slot.resolution))
                if pending_up is not None:
                    img, pending_up = pending_up + y, None
                else:
                    img = y if img is None else upsample2d(img, self.filter) + y
            else:
                assert isinstance(layer, StyledConv)
                if same:
                    x = layer(x, styles[0])
                else:
                    mods = [layer.modulation(s) for s in styles]
                    in_res = slot.resolution // 2 if layer.up else slot.resolution
                    x = layer.apply_modulation(x, scale([m[0] for m in mods], in_res),
                                               scale([m[1] for m in mods], slot.resolution))
        if x is None:  # stopped before the start resolution: blend the pictures
            assert all(im is not None for im in imgs)
            return blend([im for im in imgs if im is not None], stop)
        assert img is not None
        return img

    def forward(self, ws: Tensor, out_res: int | None = None) -> Tensor:
        return self.synthesize(self.w_to_s(ws), out_res=out_res)

    @torch.no_grad()
    def sample_w(self, n: int, seed: int, psi: float = 0.7, device: torch.device | str = "cpu") -> Tensor:
        z = torch.from_numpy(np.random.RandomState(seed).randn(n, self.config.z_dim).astype(np.float32))
        return self.mapping_forward(z.to(device), psi)


def state_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of `Generator(config).state_dict()` and its shape, with nothing built.

    Loaders check a checkpoint against this before allocating a generator, so a file that
    claims a huge network is refused without the memory (or the time) to build one.
    """
    cfg = config
    shapes: dict[str, tuple[int, ...]] = {"const": (cfg.channels_at(4), 4, 4), "filter": (4,),
                                          "mapping.w_avg": (cfg.w_dim,)}
    dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
    for i in range(cfg.mapping_layers):
        shapes[f"mapping.fc{i}.weight"] = (dims[i + 1], dims[i])
        shapes[f"mapping.fc{i}.bias"] = (dims[i + 1],)
    conv = 0
    prev = cfg.channels_at(4)
    for t, res in enumerate(cfg.resolutions):
        ch = cfg.channels_at(res)
        for up in ([False] if res == 4 else [True, False]):
            in_ch = prev if up else ch
            p = f"convs.{conv}."
            shapes.update({p + "weight": (ch, in_ch, 3, 3), p + "bias": (ch,), p + "noise_strength": (),
                           p + "noise_const": (res, res), p + "filter": (4,),
                           p + "affine.weight": (in_ch, cfg.w_dim), p + "affine.bias": (in_ch,)})
            conv += 1
        p = f"torgbs.{t}."
        shapes.update({p + "weight": (cfg.img_channels, ch, 1, 1), p + "bias": (cfg.img_channels,),
                       p + "affine.weight": (ch, cfg.w_dim), p + "affine.bias": (ch,)})
        prev = ch
    return shapes


# --- masked synthesis helpers ---------------------------------------------------------


def resize_coverage(mask: Tensor, res: int) -> Tensor:
    """A coverage map (1, 1, h, w) at `res` x `res`: area-averaged down, bilinear up.

    Both keep 0 and 1 exact where the mask is flat, which is what keeps pixels far
    outside a mask exactly as they were."""
    if mask.shape[-1] == res:
        return mask
    if mask.shape[-1] > res:
        return F.adaptive_avg_pool2d(mask, res).clamp(0.0, 1.0)
    return F.interpolate(mask, size=(res, res), mode="bilinear", align_corners=False).clamp(0.0, 1.0)


def blend_branches(values: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """Blend per-branch values (branch k has the first k masked layers) by their masks.

    Mathematically v0 + sum_k m_k (v_k - v_{k-1}); written as a chain of lerps that is
    exact at the end points: with masks of 1 below layer k, the running value is exactly
    v_{k-1}, so layer k's lerp returns exactly v_k or v_{k-1}."""
    out = values[0]
    if all(v is out for v in values):
        return out
    for k in range(1, len(values)):
        end = values[k] if k == 1 else values[k] + (out - values[k - 1])
        out = torch.lerp(out, end, masks[k - 1].to(out.dtype))
    return out


def _box(where: Tensor) -> tuple[slice, slice] | None:
    """The bounding box of the True pixels of a (H, W) map, None when there are none."""
    rows, cols = where.any(dim=1).nonzero(), where.any(dim=0).nonzero()
    if rows.numel() == 0:
        return None
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def blend_support(masks: Sequence[Tensor]) -> tuple[int, tuple[slice, slice] | None]:
    """(branch, box): outside `box` the blend is exactly that branch's value.

    For one mask it is the smaller of the box where the mask is above 0 (branch 0 outside)
    and the box where it is below 1 (branch 1 outside); for several, where any is above 0."""
    if len(masks) == 1:
        m = masks[0][0, 0]
        above, below = _box(m > 0), _box(m < 1)
        if above is None:
            return 0, None
        if below is None:
            return 1, None

        def area(b: tuple[slice, slice]) -> int:
            return (b[0].stop - b[0].start) * (b[1].stop - b[1].start)

        return (1, below) if area(below) < area(above) else (0, above)
    return 0, _box(torch.stack([m[0, 0] > 0 for m in masks]).any(dim=0))


class BlendedScale:
    """Scales activations by per-branch scales (B, C, 1, 1) blended per pixel by masks,
    computing the blend only inside the box where it differs from one branch: the same
    numbers as `x * blend_branches(values, masks)` at a fraction of the memory traffic
    when the mask covers a part of the face."""

    def __init__(self, values: Sequence[Tensor], masks: Sequence[Tensor], base: int,
                 box: tuple[slice, slice] | None) -> None:
        self.values, self.masks, self.base, self.box = values, masks, base, box

    def __call__(self, x: Tensor) -> Tensor:
        out = x * self.values[self.base]
        if self.box is not None:
            ys, xs = self.box
            out[..., ys, xs] = x[..., ys, xs] * blend_branches(self.values, [m[..., ys, xs] for m in self.masks])
        return out


# --- S packing helpers ----------------------------------------------------------------


def pack_styles(styles: Sequence[Tensor]) -> Tensor:
    """List of (B, dim_i) -> (B, sum dim_i)."""
    return torch.cat(list(styles), dim=1)


def unpack_styles(flat: Tensor, dims: Sequence[int]) -> list[Tensor]:
    return list(torch.split(flat, list(dims), dim=1))


def to_uint8(img: Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8."""
    x = (img.detach().float() * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
