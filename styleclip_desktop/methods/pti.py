"""Pivotal tuning as published (Roich et al., "Pivotal Tuning for Latent-based Editing of
Real Images", 2021): keep the pivot latent fixed and tune the generator's weights so that
it renders the user's photo there.

The published procedure, which is the default here:

- loss: `l2_lambda` x pixel MSE + `lpips_lambda` x LPIPS (AlexNet, v0.1) between the
  generated and the aligned photo, both at the generator's full resolution in [-1, 1];
- Adam at a constant 3e-4 on every generator weight (the mapping network is never on the
  path from a fixed pivot to pixels, so it receives no gradient either way);
- at most 350 steps, stopping as soon as the LPIPS term is at or below 0.06 (checked
  before each update, so a pivot that is already close is not tuned at all);
- optionally (off by default, as published) the locality regulariser: each step one
  latent is drawn (z ~ N(0, I), truncation 0.5), moved from the pivot towards it to a
  distance of 30, and the tuned generator's image there is held to the untouched
  generator's with 0.1 x MSE + 0.1 x LPIPS, without per-layer noise.

The result is the last iterate's weight change (the published code saves the generator
as the loop leaves it); a cancelled run returns the change reached so far.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PUBLISHED = "published"
OURS = "mse-identity"  # MSE at 256 px (+ ArcFace identity), best step kept: quicker, no LPIPS backbone
PROCEDURES = (PUBLISHED, OURS)


@dataclass(frozen=True)
class PTIConfig:
    """The published hyper-parameters (PTI's configs/hyperparameters.py), by default."""

    steps: int = 350  # max_pti_steps
    lr: float = 3e-4  # pti_learning_rate
    l2_lambda: float = 1.0  # pt_l2_lambda
    lpips_lambda: float = 1.0  # pt_lpips_lambda
    lpips_threshold: float = 0.06  # LPIPS_value_threshold: good enough, stop
    # Off by default because it is off in the published configuration: it keeps edits far
    # from the pivot intact at the price of an extra pair of renders per step.
    locality: bool = False  # use_locality_regularization
    locality_samples: int = 1  # latent_ball_num_of_samples
    locality_alpha: float = 30.0  # regulizer_alpha: distance from the pivot of the sampled latent
    locality_l2_lambda: float = 0.1  # regulizer_l2_lambda
    locality_lpips_lambda: float = 0.1  # regulizer_lpips_lambda
    locality_psi: float = 0.5  # truncation of the sampled latents


def reconstruction_terms(img: Tensor, target: Tensor, lpips_net: nn.Module,
                         cfg: PTIConfig) -> tuple[Tensor, Tensor]:
    """(weighted loss, LPIPS distance) between a render and the photo, both in [-1, 1]."""
    loss = img.new_zeros(())
    if cfg.l2_lambda > 0:
        loss = loss + cfg.l2_lambda * F.mse_loss(img, target)
    dist = lpips_net(img, target).mean()
    if cfg.lpips_lambda > 0:
        loss = loss + cfg.lpips_lambda * dist
    return loss, dist


def locality_latents(frozen: Any, pivot: Tensor, z: Tensor, cfg: PTIConfig) -> list[Tensor]:
    """One W+ latent per row of `z`: the pivot moved `locality_alpha` (Frobenius norm over
    all rows) towards the sample's truncated W+."""
    w = frozen.broadcast_w(frozen.mapping_forward(z, cfg.locality_psi))
    out = []
    for row in w:
        step = row.unsqueeze(0) - pivot
        out.append(pivot + cfg.locality_alpha * step / step.norm(p=2))
    return out


@contextlib.contextmanager
def without_noise(*models: nn.Module) -> Iterator[None]:
    """Render with zero per-layer noise (the published regulariser's noise_mode='none').

    The buffers are swapped, not zeroed in place, so graphs built before keep theirs."""
    saved: list[tuple[nn.Module, Tensor]] = []
    try:
        for model in models:
            for module in model.modules():
                noise = getattr(module, "noise_const", None)
                if isinstance(noise, Tensor):
                    saved.append((module, noise))
                    module.noise_const = torch.zeros_like(noise)
        yield
    finally:
        for module, noise in saved:
            module.noise_const = noise


def locality_loss(tuned: nn.Module, frozen: Any, lpips_net: nn.Module, pivot: Tensor, z: Tensor,
                  cfg: PTIConfig) -> Tensor:
    """The published locality regulariser: tuned vs untouched renders near the pivot."""
    total = pivot.new_zeros(())
    latents = locality_latents(frozen, pivot, z, cfg)
    with without_noise(tuned, frozen):
        for w in latents:
            new = tuned(w)
            with torch.no_grad():
                old = frozen(w)
            if cfg.locality_l2_lambda > 0:
                total = total + cfg.locality_l2_lambda * F.mse_loss(old, new)
            if cfg.locality_lpips_lambda > 0:
                total = total + cfg.locality_lpips_lambda * lpips_net(old, new).mean()
    return total / len(latents)


def run(G: Any, target_image: Any, w_pivot: Any, steps: int | None, lr: float | None, seed: int,
        progress: Callable[[int, int, float], None] | None, cancelled: Callable[[], bool],
        lpips_net: nn.Module | None, config: PTIConfig | None, dev: torch.device) -> Any:
    """`inversion.pti` with procedure "published": checks the inputs, then the loop."""
    from styleclip_desktop.methods.inversion import _as_wplus, _target_for
    from styleclip_desktop.nets.lpips_net import missing_backbone

    if lpips_net is None:
        raise missing_backbone()
    cfg = config or PTIConfig()
    cfg = dataclasses.replace(cfg, steps=cfg.steps if steps is None else steps, lr=cfg.lr if lr is None else lr)
    target = _target_for(G, target_image, dev)
    pivot = _as_wplus(G, w_pivot, dev).unsqueeze(0)
    return pti_published(G, target, pivot, lpips_net, cfg, seed, progress, cancelled, dev)


def pti_published(G: Any, target: Tensor, pivot: Tensor, lpips_net: nn.Module, cfg: PTIConfig, seed: int,
                  progress: Callable[[int, int, float], None] | None,
                  cancelled: Callable[[], bool], dev: torch.device) -> Any:
    """The published loop; `target` (1, 3, R, R) in [-1, 1], `pivot` (1, L, w_dim) on `dev`.

    Returns an `inversion.PTIResult`. Sampled latents come from NumPy's RandomState(seed),
    one (locality_samples, z_dim) draw per step, so a run is reproducible."""
    from styleclip_desktop.methods.inversion import PTIResult, _Adam, _frozen, _np, _trainable

    lpips_net = lpips_net.to(dev).eval().requires_grad_(False)
    tuned = cast(nn.Module, copy.deepcopy(G)).to(dev).train(False)
    params = _trainable(tuned)
    original = {n: p.detach().clone() for n, p in params.items()}
    tuned.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    opt = _Adam(list(params.values()), lr=cfg.lr)  # Adam with torch's defaults, as published
    rng = np.random.RandomState(seed)
    z_dim = int(G.config.z_dim)
    losses: list[float] = []
    distances: list[float] = []
    steps_done, was_cancelled, early = cfg.steps, False, False
    with _frozen(G):
        for step in range(cfg.steps):
            if cancelled():
                steps_done, was_cancelled = step, True
                break
            loss, dist = reconstruction_terms(tuned(pivot), target, lpips_net, cfg)
            if cfg.locality:
                z = torch.from_numpy(rng.randn(cfg.locality_samples, z_dim).astype(np.float32)).to(dev)
                loss = loss + locality_loss(tuned, G, lpips_net, pivot, z, cfg)
            value = float(loss.detach())
            losses.append(value)
            distances.append(float(dist.detach()))
            if distances[-1] <= cfg.lpips_threshold:
                steps_done, early = step, True
                if progress is not None:
                    progress(cfg.steps, cfg.steps, value)  # the run is complete
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress is not None:
                progress(step + 1, cfg.steps, value)
    delta: dict[str, np.ndarray] = {}
    for n, p in params.items():
        d = p.detach() - original[n]
        if bool(d.any()):
            delta[n] = _np(d)
    last = losses[-1] if losses else float("nan")
    return PTIResult(delta, last, steps_done, was_cancelled, losses, lpips=distances, stopped_early=early,
                     procedure=PUBLISHED)
