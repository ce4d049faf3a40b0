"""Latent optimization: edit one face by gradient descent towards a prompt, and text-to-face.

Minimizes, over a latent x (W+ by default, or the style vector S):

    D_CLIP(G(x), t) + lambda_L2 * ||x - x_start||^2 + lambda_ID * (1 - <R(G(x_start)), R(G(x))>)

with D_CLIP = 1 - cos(CLIP image embedding, CLIP text embedding) and R an ArcFace network.
As published: Adam at lr 0.1, a linear warm-up over the first 5% of the steps and a cosine
ramp-down over the last 25%, the L2 term summed (not averaged) over the latent, lambda_L2
0.008 and lambda_ID 0.005 by default. Unlike the published script, CLIP sees the image
through its own resize/crop/normalize (`ClipModel.encode_image`), so the loss is the
similarity CLIP was trained to measure.

The result is a delta (x_best - x_start) plus its loss history: an optimization layer
scales the delta by its alpha without optimizing again.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from styleclip_desktop.errors import UserError
from styleclip_desktop.nets.stylegan2 import Generator, pack_styles, to_uint8, unpack_styles

if TYPE_CHECKING:  # open_clip is slow to import; callers hand in a loaded model
    from styleclip_desktop.nets.clip import ClipModel

DEFAULT_LR = 0.1
DEFAULT_LAMBDA_L2 = 0.008
DEFAULT_LAMBDA_ID = 0.005
RAMPUP = 0.05
RAMPDOWN = 0.25
W_SPACE = "w"
S_SPACE = "s"

Progress = Callable[[int, int], None]
CancelCheck = threading.Event | Callable[[], bool] | None


class IdentityNet(Protocol):
    """Anything with ArcFace's `identity_features`: images in [-1, 1] -> unit (B, D)."""

    def identity_features(self, images: Tensor) -> Tensor: ...


def lr_at(step: int, total_steps: int, base_lr: float = DEFAULT_LR,
          rampup: float = RAMPUP, rampdown: float = RAMPDOWN) -> float:
    """The learning rate of `step` (0-based) out of `total_steps`.

    With t = step / total_steps: a linear warm-up min(1, t / rampup), times a cosine
    ramp-down 0.5 - 0.5 cos(pi * min(1, (1 - t) / rampdown)). As published, step 0 has
    lr 0 (Adam still starts its moment estimates there).
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    t = step / total_steps
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(math.pi * down)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    return base_lr * ramp


def prompt_features(clip: ClipModel, prompt: str) -> Tensor:
    """(D,) unit text embedding of the prompt itself (no templates, as the published method)."""
    if not prompt.strip():
        raise UserError("The prompt is empty: type what the face should look like.")
    return clip.encode_text([prompt])[0]


def clip_loss(clip: ClipModel, images: Tensor, text_features: Tensor) -> Tensor:
    """(B,) 1 - cosine similarity of each image (in [-1, 1]) with the unit text embedding."""
    return 1.0 - clip.encode_image(images) @ text_features.to(clip.device)


def identity_loss(net: IdentityNet, images: Tensor, reference: Tensor) -> Tensor:
    """(B,) 1 - cosine of the identity features of `images` and the (unit) `reference` features."""
    feats = net.identity_features(images)
    return 1.0 - (feats * reference.to(feats.device).detach()).sum(dim=1)


@dataclass(frozen=True)
class OptimizationConfig:
    steps: int = 100
    lr: float = DEFAULT_LR
    lambda_l2: float = DEFAULT_LAMBDA_L2
    lambda_id: float = DEFAULT_LAMBDA_ID
    space: str = W_SPACE  # W_SPACE: optimize W+; S_SPACE: optimize the conv style channels
    rampup: float = RAMPUP
    rampdown: float = RAMPDOWN
    seed: int = 0
    frame_every: int = 0  # send a frame to `on_frame` every N steps (0: never)
    out_res: int | None = None  # render at a lower resolution (early exit) to save time

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserError(f"steps must be at least 1, got {self.steps}")
        if self.space not in (W_SPACE, S_SPACE):
            raise ValueError(f"space must be {W_SPACE!r} or {S_SPACE!r}, got {self.space!r}")
        if min(self.lambda_l2, self.lambda_id, self.lr) < 0:
            raise UserError("lr, lambda_l2 and lambda_id must not be negative")


@dataclass(frozen=True)
class StepLoss:
    step: int
    total: float
    clip: float
    l2: float
    identity: float
    lr: float


@dataclass(frozen=True)
class OptimizationFrame:
    """An intermediate picture for a live preview."""

    step: int
    image: np.ndarray  # (H, W, 3) uint8
    loss: float


@dataclass
class OptimizationResult:
    """The best latent found, as an offset from the start, and how the loss went."""

    space: str
    start: np.ndarray  # W+ (L, 512), or flat S (sum of style dims,)
    delta: np.ndarray  # best - start, same shape
    best_step: int
    best_loss: float
    steps_done: int
    cancelled: bool
    history: list[StepLoss] = field(default_factory=list)

    def latent(self, alpha: float = 1.0) -> np.ndarray:
        return (self.start + np.float32(alpha) * self.delta).astype(np.float32)

    @property
    def losses(self) -> list[float]:
        return [h.total for h in self.history]


def is_cancelled(cancel: CancelCheck) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def as_wplus(G: Generator, w: Tensor | np.ndarray) -> Tensor:
    """A single latent as W+ (1, L, w_dim): accepts (w_dim,), (L, w_dim) or (1, L, w_dim)."""
    t = torch.as_tensor(w).float().to(G.const.device)
    if t.ndim == 1:
        t = t[None]
    elif t.ndim == 2 and t.shape[0] == G.num_ws and t.shape[1] == G.config.w_dim:
        t = t[None]
    if t.ndim == 3 and t.shape[0] != 1:
        raise ValueError("optimize one latent at a time")
    return G.broadcast_w(t).detach()


def optimize_latent(G: Generator, clip: ClipModel, prompt: str, w_start: Tensor | np.ndarray,
                    config: OptimizationConfig | None = None, *, arcface: IdentityNet | None = None,
                    progress: Progress | None = None,
                    on_frame: Callable[[OptimizationFrame], None] | None = None,
                    cancel: CancelCheck = None) -> OptimizationResult:
    """Optimize towards `prompt` from `w_start`; keeps the lowest-loss latent seen.

    `cancel` is checked before every step, so a cancel stops within one step; the result
    then holds the best latent evaluated so far and `cancelled` is True. The identity term
    is skipped when `arcface` is None or lambda_id is 0.
    """
    cfg = config or OptimizationConfig()
    text = prompt_features(clip, prompt)
    ws0 = as_wplus(G, w_start)
    use_id = arcface is not None and cfg.lambda_id > 0
    dims = G.style_dims
    with torch.no_grad():
        if cfg.space == S_SPACE:
            x0 = pack_styles(G.w_to_s(ws0)).detach()
            # The published S-space variant leaves the toRGB styles alone: they only tint.
            mask = torch.cat([torch.full((s.dim,), 0.0 if s.is_torgb else 1.0) for s in G.slots]).to(x0)
        else:
            x0, mask = ws0, torch.ones_like(ws0)
        reference = arcface.identity_features(G(ws0, out_res=cfg.out_res)) if use_id else None  # type: ignore[union-attr]

    def render(delta: Tensor) -> Tensor:
        x = x0 + delta * mask
        if cfg.space == S_SPACE:
            return G.synthesize(unpack_styles(x, dims), out_res=cfg.out_res)
        return G(x, out_res=cfg.out_res)

    def losses(delta: Tensor, lr: float, step: int) -> tuple[Tensor, StepLoss, Tensor]:
        img = render(delta)
        c = clip_loss(clip, img, text).mean()
        l2 = (delta * mask).square().sum()
        idl = identity_loss(arcface, img, reference).mean() if use_id else torch.zeros((), device=img.device)  # type: ignore[arg-type]
        total = c + cfg.lambda_l2 * l2 + cfg.lambda_id * idl
        rec = StepLoss(step, float(total.detach()), float(c.detach()), float(l2.detach()), float(idl.detach()), lr)
        return total, rec, img

    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.lr)
    history: list[StepLoss] = []
    best = (math.inf, -1, delta.detach().clone())
    cancelled = False
    steps_done = 0
    devices = [G.const.device] if G.const.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        for step in range(cfg.steps):
            if is_cancelled(cancel):
                cancelled = True
                break
            lr = lr_at(step, cfg.steps, cfg.lr, cfg.rampup, cfg.rampdown)
            for group in opt.param_groups:
                group["lr"] = lr
            total, rec, img = losses(delta, lr, step)
            history.append(rec)
            if rec.total < best[0]:
                best = (rec.total, step, delta.detach().clone())
            if on_frame is not None and cfg.frame_every > 0 and step % cfg.frame_every == 0:
                on_frame(OptimizationFrame(step, to_uint8(img)[0], rec.total))
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            steps_done = step + 1
            if progress is not None:
                progress(steps_done, cfg.steps)
        if not cancelled:
            # The last update has not been evaluated yet; it is usually the best latent.
            with torch.no_grad():
                _, rec, img = losses(delta, 0.0, cfg.steps)
            history.append(rec)
            if rec.total < best[0]:
                best = (rec.total, cfg.steps, delta.detach().clone())
            if on_frame is not None and cfg.frame_every > 0:
                on_frame(OptimizationFrame(cfg.steps, to_uint8(img)[0], rec.total))
    best_delta = (best[2] * mask).cpu().numpy()[0].astype(np.float32)
    return OptimizationResult(
        space=cfg.space, start=x0.cpu().numpy()[0].astype(np.float32), delta=best_delta,
        best_step=best[1], best_loss=float(best[0]), steps_done=steps_done, cancelled=cancelled,
        history=history)


def start_latent(G: Generator, start: str = "mean", seed: int = 0, psi: float = 0.7) -> Tensor:
    """W+ (1, L, w_dim) to start text-to-face from: the mean latent or a psi-truncated sample."""
    if start == "mean":
        return G.broadcast_w(G.w_avg[None].clone())
    if start == "sample":
        return G.broadcast_w(G.sample_w(1, seed, psi, device=G.const.device))
    raise ValueError(f"start must be 'mean' or 'sample', got {start!r}")


def generate_from_text(G: Generator, clip: ClipModel, prompt: str, seed: int = 0, steps: int = 100,
                       start: str = "mean", psi: float = 0.7, *, lr: float = DEFAULT_LR,
                       lambda_l2: float = 0.0, frame_every: int = 0, out_res: int | None = None,
                       progress: Progress | None = None,
                       on_frame: Callable[[OptimizationFrame], None] | None = None,
                       cancel: CancelCheck = None) -> OptimizationResult:
    """A face from a prompt: CLIP loss only (no identity to keep), from the mean latent or
    from the psi-truncated sample of `seed`. With start="mean" the seed changes nothing:
    the run is deterministic. `result.latent()` is the generated W+."""
    ws0 = start_latent(G, start, seed, psi)
    cfg = OptimizationConfig(steps=steps, lr=lr, lambda_l2=lambda_l2, lambda_id=0.0, seed=seed,
                             frame_every=frame_every, out_res=out_res)
    return optimize_latent(G, clip, prompt, ws0, cfg, progress=progress, on_frame=on_frame, cancel=cancel)
