"""Latent optimization: edit one face by gradient descent towards a prompt, and text-to-face.

Minimizes, over a latent x (W+ by default, or the style vector S):

    D_CLIP(G(x), t) + lambda_L2 * ||x - x_start||^2 + lambda_ID * (1 - <R(G(x_start)), R(G(x))>)

with D_CLIP = 1 - cos(CLIP image embedding, CLIP text embedding) and R an ArcFace network.
As published: Adam at lr 0.1, a linear warm-up over the first 5% of the steps and a cosine
ramp-down over the last 25%, the L2 term summed (not averaged) over the latent. The defaults
of each use (free edit, edit keeping identity, text-to-face) are the published ones, listed
in `optimization_settings`. By default CLIP sees the image as in the published loss (a box
filter to 224 px, no normalisation; see `clip_input`), because the published weights and
step counts were tuned with that input; CLIP's own preprocessing is an option.

The result is a delta (x_result - x_start) plus its loss history: an optimization layer
scales the delta by its alpha without optimizing again. x_result is the last iterate, as
published, or optionally the step with the lowest CLIP loss; a result that leaves the face
unchanged says so (`unchanged`, `notice`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor

from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import optimization_settings as settings
from styleclip_desktop.methods.clip_input import check_clip_input, encode_for_loss
from styleclip_desktop.nets.stylegan2 import Generator, pack_styles, to_uint8, unpack_styles

if TYPE_CHECKING:  # open_clip is slow to import; callers hand in a loaded model
    from styleclip_desktop.nets.clip import ClipModel

# The settings' names and the published defaults of each mode (`optimization_settings`),
# here too so that callers need one import.
CLIP_INPUT_EXACT = settings.CLIP_INPUT_EXACT
CLIP_INPUT_PUBLISHED = settings.CLIP_INPUT_PUBLISHED
CLIP_INPUTS = settings.CLIP_INPUTS
DEFAULT_CLIP_INPUT = settings.DEFAULT_CLIP_INPUT
RESULT_LAST = settings.RESULT_LAST
RESULT_BEST = settings.RESULT_BEST
RESULTS = settings.RESULTS
DEFAULT_RESULT = settings.DEFAULT_RESULT
MODES = settings.MODES
PRESETS = settings.PRESETS
EDIT = settings.EDIT
EDIT_IDENTITY = settings.EDIT_IDENTITY
TEXT_TO_FACE = settings.TEXT_TO_FACE
OptimizationPreset = settings.OptimizationPreset
preset = settings.preset
DEFAULT_LAMBDA_KEEP = settings.DEFAULT_LAMBDA_KEEP

# The free edit's, the default of a plain `OptimizationConfig()`.
DEFAULT_LR = EDIT.lr
DEFAULT_LAMBDA_L2 = EDIT.lambda_l2
DEFAULT_LAMBDA_ID = EDIT.lambda_id
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


def clip_loss(clip: ClipModel, images: Tensor, text_features: Tensor,
              clip_input: str = DEFAULT_CLIP_INPUT) -> Tensor:
    """(B,) 1 - cosine similarity of each image (in [-1, 1]) with the unit text embedding.

    `clip_input` is how CLIP sees the image (`clip_input.CLIP_INPUTS`); the published loss's
    by default. (The published loss reads 1 - logits / 100, the same number: OpenAI's CLIP
    scales its cosines by exactly 100.)"""
    return 1.0 - encode_for_loss(clip, images, clip_input) @ text_features.to(clip.device)


def kept_features(clip: ClipModel, keep: tuple[str, ...]) -> Tensor:
    """(K, D) unit text embeddings of the kept attributes (shorthands such as "age" name the
    slider vocabulary's prompt; "identity" is refused: it has its own loss)."""
    from styleclip_desktop.methods.keep import kept_prompts, shorthands

    return clip.encode_text(kept_prompts(keep, shorthands())).to(clip.device)


def keep_loss(feats: Tensor, kept: Tensor, start: Tensor) -> Tensor:
    """Mean over the batch of Σ_k |cos(image, kept_k) - its value at the start|: on the scale
    of the CLIP loss itself, so a weight of 1 prices a kept attribute like the target."""
    return (feats @ kept.T - start.detach()).abs().sum(dim=1).mean()


def identity_loss(net: IdentityNet, images: Tensor, reference: Tensor) -> Tensor:
    """(B,) 1 - cosine of the identity features of `images` and the (unit) `reference` features."""
    feats = net.identity_features(images)
    return 1.0 - (feats * reference.to(feats.device).detach()).sum(dim=1)


@dataclass(frozen=True)
class OptimizationConfig:
    """One run's settings; the defaults are the published free edit's (`config_for` for the others)."""

    steps: int = EDIT.steps
    lr: float = DEFAULT_LR
    lambda_l2: float = DEFAULT_LAMBDA_L2
    lambda_id: float = DEFAULT_LAMBDA_ID
    space: str = W_SPACE  # W_SPACE: optimize W+; S_SPACE: optimize the conv style channels
    clip_input: str = DEFAULT_CLIP_INPUT  # how CLIP sees the image: the published loss's by default
    result: str = DEFAULT_RESULT  # RESULT_LAST (as published) or RESULT_BEST (lowest CLIP loss)
    rampup: float = RAMPUP
    rampdown: float = RAMPDOWN
    seed: int = 0
    frame_every: int = 0  # send a frame to `on_frame` every N steps (0: never)
    out_res: int | None = None  # render at a lower resolution (early exit) to save time
    keep: tuple[str, ...] = ()  # attributes held at their starting CLIP similarity
    lambda_keep: float = DEFAULT_LAMBDA_KEEP

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserError(f"steps must be at least 1, got {self.steps}")
        if self.space not in (W_SPACE, S_SPACE):
            raise ValueError(f"space must be {W_SPACE!r} or {S_SPACE!r}, got {self.space!r}")
        if min(self.lambda_l2, self.lambda_id, self.lr, self.lambda_keep) < 0:
            raise UserError("lr, lambda_l2, lambda_id and lambda_keep must not be negative")
        check_clip_input(self.clip_input)
        if self.result not in RESULTS:
            raise ValueError(f"result must be one of {', '.join(RESULTS)}, got {self.result!r}")


def config_for(mode: str, **overrides: Any) -> OptimizationConfig:
    """The published settings of `mode` (`optimization_settings.MODES`), with some replaced."""
    p = preset(mode)
    base: dict[str, Any] = {"steps": p.steps, "lr": p.lr, "lambda_l2": p.lambda_l2, "lambda_id": p.lambda_id}
    return OptimizationConfig(**{**base, **overrides})


@dataclass(frozen=True)
class StepLoss:
    step: int
    total: float
    clip: float
    l2: float
    identity: float
    lr: float
    keep: float = 0.0  # sum of |change| of the kept attributes' CLIP similarities


@dataclass(frozen=True)
class OptimizationFrame:
    """An intermediate picture for a live preview."""

    step: int
    image: np.ndarray  # (H, W, 3) uint8
    loss: float


@dataclass
class OptimizationResult:
    """The chosen latent (last iterate, or lowest CLIP loss) as an offset from the start, and
    how the loss went. `history[i]` is the i-th iterate measured; `step` indexes it."""

    space: str
    start: np.ndarray  # W+ (L, 512), or flat S (sum of style dims,)
    delta: np.ndarray  # result - start, same shape
    step: int  # which iterate the delta is (0: the start itself)
    loss: float  # its total loss
    steps_done: int
    cancelled: bool
    history: list[StepLoss] = field(default_factory=list)
    result: str = DEFAULT_RESULT  # how the iterate was chosen

    def latent(self, alpha: float = 1.0) -> np.ndarray:
        return (self.start + np.float32(alpha) * self.delta).astype(np.float32)

    @property
    def losses(self) -> list[float]:
        return [h.total for h in self.history]

    @property
    def clip(self) -> float:
        """The CLIP loss of the returned latent."""
        return self.history[self.step].clip if self.history else math.nan

    @property
    def unchanged(self) -> bool:
        """True when the returned latent is the start: the edit would show nothing."""
        return not bool(np.any(self.delta != 0))

    @property
    def notice(self) -> str:
        """One sentence for people when the result is empty; "" when it is a real edit."""
        if not self.unchanged:
            return ""
        if self.steps_done <= 1:
            why = ("its only step ran at learning rate 0, where the published warm-up starts; use more steps"
                   if self.steps_done == 1 else "no step ran")
        elif self.result == RESULT_BEST and self.step == 0:
            why = "no step lowered the CLIP loss below the start's, so the best latent is the start"
        else:
            why = "every step left the latent where it was"
        return f"The optimization left the face unchanged: {why}."


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
    """Optimize towards `prompt` from `w_start`; returns the last iterate or the lowest-CLIP-loss one.

    `cancel` is checked before every step, so a cancel stops within one step; the result
    then holds the last (or best) iterate measured so far and `cancelled` is True. The
    identity term is skipped when `arcface` is None or lambda_id is 0.
    """
    cfg = config or OptimizationConfig()
    text = prompt_features(clip, prompt)
    kept = kept_features(clip, cfg.keep) if cfg.keep and cfg.lambda_keep > 0 else None
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
        start = G(ws0, out_res=cfg.out_res) if use_id or kept is not None else None
        reference = arcface.identity_features(start) if use_id and start is not None else None  # type: ignore[union-attr]
        kept_start = encode_for_loss(clip, start, cfg.clip_input) @ kept.T \
            if kept is not None and start is not None else None

    def render(delta: Tensor) -> Tensor:
        x = x0 + delta * mask
        if cfg.space == S_SPACE:
            return G.synthesize(unpack_styles(x, dims), out_res=cfg.out_res)
        return G(x, out_res=cfg.out_res)

    def losses(delta: Tensor, lr: float, step: int) -> tuple[Tensor, StepLoss, Tensor]:
        img = render(delta)
        feats = encode_for_loss(clip, img, cfg.clip_input)
        c = (1.0 - feats @ text.to(clip.device)).mean()
        l2 = (delta * mask).square().sum()
        idl = identity_loss(arcface, img, reference).mean() if use_id else torch.zeros((), device=img.device)  # type: ignore[arg-type]
        kl = keep_loss(feats, kept, kept_start) if kept is not None and kept_start is not None \
            else torch.zeros((), device=img.device)
        total = c + cfg.lambda_l2 * l2 + cfg.lambda_id * idl + cfg.lambda_keep * kl
        rec = StepLoss(step, float(total.detach()), float(c.detach()), float(l2.detach()), float(idl.detach()), lr,
                       float(kl.detach()))
        return total, rec, img

    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.lr)
    history: list[StepLoss] = []
    chosen = (0, delta.detach().clone())  # (iterate, its delta): the last one measured, or the best
    best_clip = math.inf
    cancelled = False
    steps_done = 0

    def keep(rec: StepLoss) -> None:
        nonlocal chosen, best_clip
        if cfg.result == RESULT_LAST or rec.clip < best_clip:
            chosen = (rec.step, delta.detach().clone())
        best_clip = min(best_clip, rec.clip)

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
            keep(rec)
            if on_frame is not None and cfg.frame_every > 0 and step % cfg.frame_every == 0:
                on_frame(OptimizationFrame(step, to_uint8(img)[0], rec.total))
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            steps_done = step + 1
            if progress is not None:
                progress(steps_done, cfg.steps)
        if not cancelled:
            # The last update has not been measured yet: the published result is this latent.
            with torch.no_grad():
                _, rec, img = losses(delta, 0.0, cfg.steps)
            history.append(rec)
            keep(rec)
            if on_frame is not None and cfg.frame_every > 0:
                on_frame(OptimizationFrame(cfg.steps, to_uint8(img)[0], rec.total))
    step_of, kept = chosen
    result_delta = (kept * mask).cpu().numpy()[0].astype(np.float32)
    return OptimizationResult(
        space=cfg.space, start=x0.cpu().numpy()[0].astype(np.float32), delta=result_delta,
        step=step_of, loss=history[step_of].total if history else math.nan, steps_done=steps_done,
        cancelled=cancelled, history=history, result=cfg.result)


def start_latent(G: Generator, start: str = "mean", seed: int = 0, psi: float = 0.7) -> Tensor:
    """W+ (1, L, w_dim) to start text-to-face from: the mean latent or a psi-truncated sample."""
    if start == "mean":
        return G.broadcast_w(G.w_avg[None].clone())
    if start == "sample":
        return G.broadcast_w(G.sample_w(1, seed, psi, device=G.const.device))
    raise ValueError(f"start must be 'mean' or 'sample', got {start!r}")


def generate_from_text(G: Generator, clip: ClipModel, prompt: str, seed: int = 0,
                       steps: int = TEXT_TO_FACE.steps, start: str = "mean", psi: float = 0.7, *,
                       lr: float = TEXT_TO_FACE.lr, lambda_l2: float = TEXT_TO_FACE.lambda_l2,
                       clip_input: str = DEFAULT_CLIP_INPUT, result: str = DEFAULT_RESULT,
                       frame_every: int = 0, out_res: int | None = None,
                       progress: Progress | None = None,
                       on_frame: Callable[[OptimizationFrame], None] | None = None,
                       cancel: CancelCheck = None) -> OptimizationResult:
    """A face from a prompt: CLIP loss only (no identity to keep), from the mean latent or
    from the psi-truncated sample of `seed`, with the published text-to-face defaults. With
    start="mean" the seed changes nothing: the run is deterministic. `result.latent()` is
    the generated W+."""
    ws0 = start_latent(G, start, seed, psi)
    cfg = config_for(TEXT_TO_FACE.mode, steps=steps, lr=lr, lambda_l2=lambda_l2, seed=seed,
                     clip_input=clip_input, result=result, frame_every=frame_every, out_res=out_res)
    return optimize_latent(G, clip, prompt, ws0, cfg, progress=progress, on_frame=on_frame, cancel=cancel)
