"""Getting an aligned photo into W+: the e4e encoder, then two optional refinements.

- `invert_e4e`: one encoder pass, a fraction of a second; a good, editable latent whose
  reconstruction is recognisably the person but not pixel-exact.
- `project`: optimise the W+ latent itself against the photo (pixel MSE, plus identity
  similarity when an ArcFace network is given). Closer likeness, slightly less editable.
- `pti` (pivotal tuning): keep the latent fixed and nudge the generator's weights so that
  this latent reproduces the photo, by default as published (LPIPS + L2, `methods.pti`).
  The result is a small weight delta that the render path adds to the generator for
  this document only.

Both refinements run step by step, report `progress(step, total, loss)`, look at `cancel`
before every step and, when cancelled, return the result reached so far (the best one;
the last one for published PTI, which keeps the last iterate) with `cancelled=True`.
They are deterministic for a given seed.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from styleclip_desktop.methods.optimization import lr_at
from styleclip_desktop.nets.e4e import E4E, INPUT_SIZE
from styleclip_desktop.nets.irse import ArcFace

Progress = Callable[[int, int, float], None]


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


class GeneratorLike(Protocol):
    """What the refinements need from the StyleGAN2 generator."""

    config: Any  # .resolution, .w_dim
    num_ws: int

    def __call__(self, ws: Tensor) -> Tensor: ...

    def named_parameters(self) -> Any: ...

    def parameters(self) -> Any: ...


LOSS_RES = 256  # losses are compared at most at this size: finer detail costs time, not likeness


def _cancelled(cancel: CancelFlag | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    if callable(is_set):
        return bool(is_set())
    return bool(cancel())  # type: ignore[operator]


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the duration of a job without disturbing anyone else's stream.

    Nothing in the loops draws random numbers today; the seed pins down any generator
    that does (random noise inputs, for one)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _frozen(G: GeneratorLike) -> Iterator[None]:
    """Projection only needs gradients for the latent: switch the weights' off meanwhile."""
    params = list(G.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def _device_of(G: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for p in G.parameters():
        return p.device
    return torch.device("cpu")


def face_tensor(image: np.ndarray, size: int, device: torch.device | str = "cpu") -> Tensor:
    """uint8 HxWx3 RGB -> (1, 3, size, size) float in [-1, 1].

    Resizing goes through Pillow's bilinear filter, which averages when shrinking: the
    same resampling the e4e encoder saw during training."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 RGB image")
    if image.shape[0] != size or image.shape[1] != size:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(device=device, dtype=torch.float32)
    return (t.permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0).contiguous()


@torch.no_grad()
def invert_e4e(encoder: E4E, aligned_face: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """An FFHQ-aligned face (uint8 HxWx3, any size) -> its W+ latent, (L, 512) float32."""
    dev = torch.device(device)
    encoder = encoder.to(dev).eval()
    x = face_tensor(aligned_face, INPUT_SIZE, dev)
    w = encoder(x)[0]
    return w.float().cpu().numpy().astype(np.float32)


class _Adam:
    """Plain Adam. torch.optim would do, but its first use imports the whole compiler stack
    (seconds on a laptop) just to decorate `step`, for a loop this small."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.params = params
        self.lr = lr
        self.b1, self.b2 = betas
        self.eps = 1e-8
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1 = 1.0 - self.b1**self.t
        c2 = 1.0 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1.0 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1.0 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class _ReconstructionLoss:
    """Pixel MSE at `LOSS_RES`, plus (1 - cosine) of ArcFace identities when given."""

    def __init__(self, target: Tensor, id_model: ArcFace | None, id_weight: float) -> None:
        self.res = min(LOSS_RES, int(target.shape[-1]))
        self.target_small = self._shrink(target)
        self.id_model = id_model
        self.id_weight = id_weight
        self.target_id: Tensor | None = None
        if id_model is not None and id_weight > 0:
            with torch.no_grad():
                self.target_id = id_model.identity_features(target)

    def _shrink(self, img: Tensor) -> Tensor:
        if img.shape[-1] == self.res:
            return img
        return F.interpolate(img, size=(self.res, self.res), mode="area")

    def __call__(self, img: Tensor) -> Tensor:
        loss = F.mse_loss(self._shrink(img), self.target_small)
        if self.id_model is not None and self.target_id is not None:
            cos = (self.id_model.identity_features(img) * self.target_id).sum(dim=1).mean()
            loss = loss + self.id_weight * (1.0 - cos)
        return loss


def _target_for(G: GeneratorLike, image: np.ndarray | Tensor, device: torch.device) -> Tensor:
    res = int(G.config.resolution)
    if isinstance(image, Tensor):
        t = image.to(device=device, dtype=torch.float32)
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.shape[-1] != res or t.shape[-2] != res:
            t = F.interpolate(t, size=(res, res), mode="bilinear", align_corners=False, antialias=True)
        return t
    return face_tensor(image, res, device)


@dataclass
class ProjectionResult:
    w: np.ndarray  # (L, w_dim) float32: the best latent found
    loss: float  # its loss
    steps_done: int
    cancelled: bool = False
    losses: list[float] = field(default_factory=list)  # loss at every step, for plots


@dataclass
class PTIResult:
    delta: dict[str, np.ndarray]  # parameter name -> float32 change, changed params only
    loss: float
    steps_done: int  # weight updates made
    cancelled: bool = False
    losses: list[float] = field(default_factory=list)
    lpips: list[float] = field(default_factory=list)  # published procedure: LPIPS at every step
    stopped_early: bool = False  # published procedure: LPIPS reached its threshold
    procedure: str = "mse-identity"


def _as_wplus(G: GeneratorLike, w: np.ndarray | Tensor, device: torch.device) -> Tensor:
    t = torch.as_tensor(np.asarray(w) if not isinstance(w, Tensor) else w)
    t = t.detach().to(device=device, dtype=torch.float32)
    if t.ndim == 1:
        t = t.unsqueeze(0).repeat(G.num_ws, 1)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if tuple(t.shape) != (G.num_ws, int(G.config.w_dim)):
        raise ValueError(f"latent must be ({G.num_ws}, {G.config.w_dim}), got {tuple(t.shape)}")
    return t.clone()


def project(
    G: GeneratorLike,
    target_image: np.ndarray | Tensor,
    w_init: np.ndarray | Tensor,
    steps: int = 200,
    lr: float = 0.01,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: CancelFlag | Callable[[], bool] | None = None,
    *,
    id_model: ArcFace | None = None,
    id_weight: float = 0.1,
    w_l2: float = 0.0,
    device: str | torch.device | None = None,
) -> ProjectionResult:
    """Optimise W+ so that G renders the aligned photo; start from `w_init` (e.g. e4e's).

    `w_l2` pulls the latent towards `w_init`, trading likeness for editability."""
    dev = _device_of(G, device)
    with _seeded(seed, dev), _frozen(G):
        return _project_loop(
            G, target_image, w_init, steps, lr, progress, cancel, id_model, id_weight, w_l2, dev
        )


def _project_loop(
    G: GeneratorLike,
    target_image: np.ndarray | Tensor,
    w_init: np.ndarray | Tensor,
    steps: int,
    lr: float,
    progress: Progress | None,
    cancel: CancelFlag | Callable[[], bool] | None,
    id_model: ArcFace | None,
    id_weight: float,
    w_l2: float,
    dev: torch.device,
) -> ProjectionResult:
    start = _as_wplus(G, w_init, dev)
    loss_fn = _ReconstructionLoss(_target_for(G, target_image, dev), id_model, id_weight)
    w = start.clone().unsqueeze(0).requires_grad_(True)
    opt = _Adam([w], lr=lr)
    best_w, best_loss = start.clone(), math.inf
    losses: list[float] = []
    for step in range(steps):
        if _cancelled(cancel):
            return ProjectionResult(_np(best_w), best_loss, step, True, losses)
        opt.lr = lr_at(step, steps, lr)
        loss = loss_fn(G(w))
        if w_l2 > 0:
            loss = loss + w_l2 * (w[0] - start).square().mean()
        value = float(loss.detach())
        losses.append(value)
        if value < best_loss:
            best_loss, best_w = value, w.detach()[0].clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps, value)
    return ProjectionResult(_np(best_w), best_loss, steps, False, losses)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float32)


def _trainable(G: nn.Module) -> dict[str, nn.Parameter]:
    # The mapping network is never on the path from a fixed W+ pivot to pixels.
    return {n: p for n, p in G.named_parameters() if not n.startswith("mapping.")}


def pti(
    G: GeneratorLike,
    target_image: np.ndarray | Tensor,
    w_pivot: np.ndarray | Tensor,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: CancelFlag | Callable[[], bool] | None = None,
    *,
    procedure: str = "published",
    lpips_model: nn.Module | None = None,
    config: Any = None,
    id_model: ArcFace | None = None,
    id_weight: float = 0.1,
    device: str | torch.device | None = None,
) -> PTIResult:
    """Fine-tune a copy of G around the pivot latent; return the weight change (apply it
    with `apply_weight_delta`; G itself is left untouched).

    `procedure`: "published" (default, `methods.pti`: the paper's loss, schedule and early
    stop; needs `lpips_model` from `nets.lpips_net.load_lpips`; `config` a `PTIConfig`) or
    "mse-identity" (MSE at 256 px + optional ArcFace, best step kept, no extra model).
    `steps`/`lr` override the defaults (published 350 / 3e-4, mse-identity 100 / 3e-4)."""
    from styleclip_desktop.methods import pti as published

    dev = _device_of(G, device)
    if procedure == published.OURS:
        with _seeded(seed, dev):
            return _pti_loop(G, target_image, w_pivot, steps or 100, lr or 3e-4, progress, cancel,
                             id_model, id_weight, dev)
    if procedure != published.PUBLISHED:
        raise ValueError(f"unknown PTI procedure {procedure!r}; choose one of {published.PROCEDURES}")
    with _seeded(seed, dev):
        return cast(PTIResult, published.run(G, target_image, w_pivot, steps, lr, seed, progress,
                                             lambda: _cancelled(cancel), lpips_model, config, dev))


def _pti_loop(
    G: GeneratorLike,
    target_image: np.ndarray | Tensor,
    w_pivot: np.ndarray | Tensor,
    steps: int,
    lr: float,
    progress: Progress | None,
    cancel: CancelFlag | Callable[[], bool] | None,
    id_model: ArcFace | None,
    id_weight: float,
    dev: torch.device,
) -> PTIResult:
    tuned = cast(nn.Module, copy.deepcopy(G)).to(dev).train(False)
    params = _trainable(tuned)
    original = {n: p.detach().clone() for n, p in params.items()}
    for p in tuned.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    pivot = _as_wplus(G, w_pivot, dev).unsqueeze(0)
    loss_fn = _ReconstructionLoss(_target_for(G, target_image, dev), id_model, id_weight)
    opt = _Adam(list(params.values()), lr=lr)
    best = {n: t.clone() for n, t in original.items()}
    best_loss = math.inf
    losses: list[float] = []
    steps_done, was_cancelled = steps, False
    for step in range(steps):
        if _cancelled(cancel):
            steps_done, was_cancelled = step, True
            break
        loss = loss_fn(tuned(pivot))
        value = float(loss.detach())
        losses.append(value)
        if value < best_loss:
            best_loss = value
            best = {n: p.detach().clone() for n, p in params.items()}
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps, value)
    delta: dict[str, np.ndarray] = {}
    for n, before in original.items():
        d = best[n] - before
        if bool(d.any()):
            delta[n] = _np(d)
    return PTIResult(delta, best_loss, steps_done, was_cancelled, losses)


def apply_weight_delta(G: nn.Module, delta: Mapping[str, np.ndarray], inplace: bool = False) -> nn.Module:
    """G with a PTI delta added to its weights (a copy unless `inplace`)."""
    target = G if inplace else copy.deepcopy(G)
    params = dict(target.named_parameters())
    unknown = [n for n in delta if n not in params]
    if unknown:
        raise KeyError(f"weight delta names unknown parameters: {unknown[:3]}")
    with torch.no_grad():
        for n, d in delta.items():
            p = params[n]
            p.add_(torch.tensor(np.asarray(d), dtype=p.dtype, device=p.device).reshape(p.shape))
    return target
