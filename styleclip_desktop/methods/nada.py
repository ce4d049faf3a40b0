"""Domain adaptation by text (StyleGAN-NADA, Gal et al., SIGGRAPH 2022).

A trainable copy of the generator is fine-tuned so that, in CLIP space, the direction from
the frozen generator's image to the trainable one's image follows the direction from the
source text to the target text. Both copies render the same W+ codes, so the adapted
generator keeps the latent space: a user's inverted photo renders in the new domain.

The published procedure, which the defaults follow:

- text direction: target minus source, each the unit mean of its 79 prompt-template
  embeddings (the product's cached text embeddings), normalized; the published code
  averages the per-template differences before normalizing, which differs only in how
  the two means are scaled;
- image direction: CLIP(trainable image) - CLIP(frozen image), normalized; the loss is
  the batch mean of 1 - cos(image direction, text direction);
- every step, adaptive layer selection: a batch of random w codes (no truncation) is
  broadcast to W+ and moved by plain gradient descent (lr 0.01) on a global CLIP loss
  (1 - cos to the raw target text) through the current trainable generator; the k W+
  rows whose codes moved most (mean absolute change) choose the layers trained that step
  (see `nada_layers` for rows to layers);
- training codes: random z (no truncation), style-mixed at a random row with probability
  `mixing`; fresh per-layer noise in every pass, separately for the two copies;
- Adam with lr x 4/5 and betas (0, 0.99 ** (4/5)): StyleGAN2's lazy-regularization
  ratio, kept by the published trainer.

Because the rows are chosen again every step, a run trains the union of the rows it chose:
the delta holds every layer any step trained, and only those.

Only the ViT-B/32 CLIP model is used (the published "improve shape" setting adds ViT-B/16
with equal weight). The frozen copy runs without gradients throughout.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import nada_state
from styleclip_desktop.methods.nada_layers import (
    apply_delta,
    delta_from_state_dict,
    draw_noise,
    noise_of,
    row_parameters,
)
from styleclip_desktop.methods.nada_settings import REFERENCE_ROWS, NadaConfig, config_from_dict, layers_for

__all__ = ["REFERENCE_ROWS", "NadaConfig", "NadaResult", "config_from_dict", "apply_delta", "delta_from_state_dict", "directional_loss",
           "layers_for", "row_parameters", "select_rows", "text_direction", "train_domain"]

LR_RATIO = 4 / 5  # g_reg_every / (g_reg_every + 1) with g_reg_every = 4
SELECT_LR = 0.01


def text_direction(clip: Any, source: str, target: str) -> Tensor:
    """(D,) unit direction from the source text to the target text (79 templates each)."""
    return torch.from_numpy(clip.text_direction(target, neutral=source))


def directional_loss(train_emb: Tensor, frozen_emb: Tensor, text_dir: Tensor) -> Tensor:
    """Batch mean of 1 - cos(train_emb - frozen_emb, text_dir)."""
    d = train_emb - frozen_emb
    t = text_dir.to(d.device, d.dtype).reshape(1, -1)
    cos = (d * t).sum(dim=-1) / (d.norm(dim=-1).clamp_min(1e-12) * t.norm(dim=-1).clamp_min(1e-12))
    return (1.0 - cos).mean()


def _chunks(n: int, size: int) -> list[slice]:
    size = size if size > 0 else n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def select_rows(G_train: Any, clip: Any, cfg: NadaConfig, ws: Tensor | None = None,
                generator: torch.Generator | None = None) -> list[int]:
    """The W+ rows to train this step: the k rows whose codes move most under a short
    global-CLIP descent through `G_train`, in ascending order.

    `ws`: start codes (B, w_dim) or (B, L, w_dim); None draws `layer_select_batch` random
    ones from `generator` (which also draws the per-layer noise)."""
    num_ws = int(G_train.num_ws)
    k = layers_for(cfg, num_ws)
    if cfg.layer_select_iters <= 0 or k >= num_ws:
        return list(range(num_ws))
    gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
    dev = next(G_train.parameters()).device
    if ws is None:
        z = torch.randn((cfg.layer_select_batch, int(G_train.config.z_dim)), generator=gen).to(dev)
        with torch.no_grad():
            ws = G_train.mapping_forward(z)
    start = G_train.broadcast_w(ws.detach().to(dev).float())
    w = start.clone().requires_grad_(True)
    text = clip.encode_text([cfg.target])[0].to(dev)
    flags = [p.requires_grad for p in G_train.parameters()]
    G_train.requires_grad_(False)
    try:
        n = w.shape[0]
        for _ in range(cfg.layer_select_iters):
            maps = draw_noise(gen, n, G_train)
            for part in _chunks(n, cfg.micro_batch):
                with noise_of(maps, part):
                    emb = clip.encode_image(G_train(w[part]))
                loss = (1.0 - emb @ text).sum() / n
                loss.backward()
            with torch.no_grad():
                assert w.grad is not None
                w -= SELECT_LR * w.grad
            w.grad = None
    finally:
        for p, flag in zip(G_train.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    moved = (w.detach() - start).abs().mean(dim=-1).mean(dim=0)
    return sorted(int(i) for i in torch.topk(moved, k).indices.tolist())


@dataclass
class NadaResult:
    delta: dict[str, np.ndarray]  # canonical name -> float16 (trained - base), trained params only
    rows: tuple[int, ...]  # every W+ row selected in the steps the delta holds
    steps_done: int
    losses: list[float]  # the loss of each step, measured before its update
    best_step: int  # the number of updates behind the lowest loss seen
    cancelled: bool
    # The adapted generator itself, in float32 (the weights the delta was taken from).
    adapted: Any = field(default=None, repr=False, compare=False)


Progress = Callable[[int, int, float], None]
Preview = Callable[[int, np.ndarray], None]


def _as_wplus(G: Any, extra: Any, dev: torch.device) -> Tensor | None:
    if extra is None:
        return None
    t = torch.as_tensor(np.asarray(extra, dtype=np.float32) if not isinstance(extra, Tensor) else extra)
    t = t.detach().float()
    if t.ndim == 2 and t.shape[0] == G.num_ws:
        t = t.unsqueeze(0)
    w_dim = int(G.config.w_dim)
    if not ((t.ndim == 2 and t.shape[1] == w_dim) or (t.ndim == 3 and tuple(t.shape[1:]) == (G.num_ws, w_dim))) \
            or t.shape[0] == 0:
        raise UserError(f"The latent codes to train on must be W+ codes of this generator "
                        f"({G.num_ws} x {w_dim}).")
    return G.broadcast_w(t.to(dev))  # type: ignore[no-any-return]


def _training_ws(frozen: Any, cfg: NadaConfig, rng: torch.Generator, extra: Tensor | None,
                 step: int, dev: torch.device) -> Tensor:
    z_dim, num_ws = int(frozen.config.z_dim), int(frozen.num_ws)
    mixed = cfg.mixing > 0 and float(torch.rand((), generator=rng)) < cfg.mixing
    z = torch.randn((2 if mixed else 1, cfg.batch, z_dim), generator=rng)
    cut = int(torch.randint(1, num_ws, (), generator=rng)) if mixed else num_ws
    with torch.no_grad():
        w = [frozen.mapping_forward(zi.to(dev), cfg.psi) for zi in z]
        ws = w[0].unsqueeze(1).repeat(1, num_ws, 1)
        if mixed:
            ws[:, cut:] = w[1].unsqueeze(1)
        if extra is not None and (cfg.batch > 1 or step % 2 == 0):
            ws[0] = extra[(step // (1 if cfg.batch > 1 else 2)) % extra.shape[0]]
    return ws  # type: ignore[no-any-return]


def _directional_step(train: Any, frozen: Any, clip: Any, ws: Tensor, text_dir: Tensor,
                      cfg: NadaConfig, rng: torch.Generator) -> float:
    """Forward both copies, back-propagate the directional loss into `train`; the loss."""
    n, total = ws.shape[0], 0.0
    frozen_noise, train_noise = draw_noise(rng, n, frozen), draw_noise(rng, n, train)
    for part in _chunks(n, cfg.micro_batch):
        with torch.no_grad(), noise_of(frozen_noise, part):
            frozen_emb = clip.encode_image(frozen(ws[part]))
        with noise_of(train_noise, part):
            train_emb = clip.encode_image(train(ws[part]))
        loss = directional_loss(train_emb, frozen_emb, text_dir) * ((part.stop - part.start) / n)
        loss.backward()
        total += float(loss.detach())
    return total


def train_domain(G: Any, clip: Any, cfg: NadaConfig, *, extra_ws: Any = None,
                 progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                 preview: Preview | None = None, checkpoint: str | Path | None = None,
                 resume: str | Path | None = None, device: str | torch.device = "cpu",
                 checkpoint_every: int = 50) -> NadaResult:
    """Adapt a copy of `G` to the target text; `G` is never modified.

    `progress(step, total, loss)` after each step; `cancel()` is asked before each step and
    a cancelled run returns the lowest-loss weights seen (a finished run returns its last
    weights, as published); `preview(step, images)` about every tenth of the run, uint8
    (N, H, W, 3) renders of fixed codes (psi `preview_psi`; the first is `extra_ws[0]` when
    given). `checkpoint` is rewritten every `checkpoint_every` steps and when cancelled;
    `resume` continues such a file exactly. `extra_ws`: the user's own W+ codes, put in the
    first slot of each batch in turn."""
    from styleclip_desktop.nets.stylegan2 import to_uint8

    cfg.check()
    dev = torch.device(device)
    text_dir = text_direction(clip, cfg.source, cfg.target).to(dev)
    frozen = copy.deepcopy(G).to(dev).eval().requires_grad_(False)
    train = copy.deepcopy(G).to(dev).eval().requires_grad_(False)
    extra = _as_wplus(train, extra_ws, dev)
    params = dict(train.named_parameters())
    base = {n: p.detach().clone() for n, p in row_parameters(train, range(train.num_ws)).items()}
    adam = nada_state.Adam(cfg.lr * LR_RATIO, (0.0 ** LR_RATIO, 0.99 ** LR_RATIO))
    print_ = nada_state.fingerprint(G, cfg, extra) if (checkpoint or resume) else ""
    state = nada_state.RunState(step=0, rng=torch.Generator().manual_seed(cfg.seed), adam=adam)
    if resume is not None:
        state, values = nada_state.load(Path(resume), print_, adam, dev)
        with torch.no_grad():
            for n, v in values.items():
                params[n].copy_(v)

    def touched() -> dict[str, Tensor]:
        return {n: p.detach() for n, p in row_parameters(train, state.rows).items()}

    pws = train.broadcast_w(train.sample_w(cfg.preview_samples, seed=cfg.seed, psi=cfg.preview_psi, device=dev))
    if extra is not None:
        pws[0] = extra[0]
    every = max(1, cfg.iterations // 10)
    cancelled = False
    while state.step < cfg.iterations:
        if cancel is not None and cancel():
            cancelled = True
            break
        rows = select_rows(train, clip, cfg, None, state.rng)
        state.rows |= set(rows)
        chosen = row_parameters(train, rows)
        ws = _training_ws(frozen, cfg, state.rng, extra, state.step, dev)
        for p in chosen.values():
            p.requires_grad_(True)
        loss = _directional_step(train, frozen, clip, ws, text_dir, cfg, state.rng)
        if loss < state.best_loss:
            state.best_loss, state.best_step, state.best_rows = loss, state.step, set(state.rows)
            state.best_values = {n: t.clone() for n, t in touched().items()}
        adam.step(chosen)
        for p in chosen.values():
            p.grad = None
            p.requires_grad_(False)
        state.losses.append(loss)
        state.step += 1
        if checkpoint is not None and checkpoint_every > 0 and state.step % checkpoint_every == 0:
            nada_state.save(Path(checkpoint), state, touched(), print_)
        if progress is not None:
            progress(state.step, cfg.iterations, loss)
        if preview is not None and (state.step % every == 0 or state.step == cfg.iterations):
            with torch.no_grad():
                preview(state.step, to_uint8(train(pws)))
    if cancelled and checkpoint is not None:
        nada_state.save(Path(checkpoint), state, touched(), print_)
    kept, rows_kept = touched(), state.rows
    if cancelled:
        kept, rows_kept = state.best_values, state.best_rows
        with torch.no_grad():
            for n, original in base.items():
                params[n].copy_(kept.get(n, original))
    delta = {n: (v.float() - base[n].float()).cpu().numpy().astype(np.float16) for n, v in kept.items()}
    return NadaResult(delta=delta, rows=tuple(sorted(rows_kept)), steps_done=state.step,
                      losses=list(state.losses), best_step=state.best_step, cancelled=cancelled,
                      adapted=train)
