"""The W+ codes a latent mapper trains on, and the order it sees them in.

The published mappers were trained on e4e inversions of real faces: W+ codes whose 18 rows
all differ. That matters to the network itself: each sub-mapper starts with a pixel norm
over the rows of its level, and on a code whose rows are identical (a sampled w broadcast to
W+) that norm turns every number into +1 or -1, so a mapper trained on such codes never
sees the inputs it will be applied to. Hence the two sources here, both with distinct rows:

- the user's own inverted latents (`load_latent_set`, e.g. saved by `styleclip-desktop
  invert`), the published kind of training set;
- style-mixed samples of the generator (`sample_latents`), standing in for inverted faces
  when there are none: each code takes every row from one of a few truncated w of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from styleclip_desktop.errors import UserError
from styleclip_desktop.nets.mapper import LEVELS
from styleclip_desktop.nets.stylegan2 import Generator

# Style mixing from four truncated w per code: enough that every level (4 rows, or the fine
# level's 1-10) mixes several faces' styles, few enough that rows often share a source, as
# the rows of an inversion are alike but not equal. psi 0.7 is the
# published trainer's truncation for its sampled codes; it keeps each row in the part of W
# the generator renders well.
MIX_SOURCES = 4
SAMPLE_PSI = 0.7
STAND_IN_NOTE = ("note: no inverted photos given (--latents), so style-mixed samples of the generator "
                 "stand in for inverted faces; the published mappers were trained on inverted real faces")


def _level_rows(num_ws: int) -> list[tuple[int, int]]:
    rows = []
    for _attr, start, end in LEVELS.values():
        stop = num_ws if end is None else min(end, num_ws)
        if stop - start > 1:
            rows.append((start, stop))
    return rows


def sample_latents(G: Generator, n: int, seed: int = 0, psi: float = SAMPLE_PSI,
                   sources: int = MIX_SOURCES) -> Tensor:
    """n style-mixed W+ codes (n, L, w_dim) on the CPU, a pure function of the seed.

    Each code draws `sources` truncated w and gives every row one of them at random; within
    each level at least two sources appear, so no level's rows are all equal. At 1024 px the
    published 5000 codes take 184 MB, the price of rows that differ.
    """
    if n < 1:
        raise UserError("the training set needs at least one latent")
    if sources < 2:
        raise ValueError("style mixing needs at least two sources")
    L = G.num_ws
    with torch.no_grad():
        w = G.sample_w(n * sources, seed, psi, device=G.const.device).detach().float().cpu()
    w = w.reshape(n, sources, -1)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(sources, (n, L), generator=gen)
    for start, stop in _level_rows(L):
        level = pick[:, start:stop]
        same = (level == level[:, :1]).all(dim=1)
        shift = 1 + torch.randint(sources - 1, (n,), generator=gen)
        level[:, -1] = torch.where(same, (level[:, -1] + shift) % sources, level[:, -1])
    return torch.gather(w, 1, pick[..., None].expand(n, L, w.shape[-1])).contiguous()


def _read_array(p: Path) -> np.ndarray:
    if not p.is_file():
        raise UserError(f"latent file not found: {p}")
    try:
        if p.suffix.lower() == ".pt":
            from styleclip_desktop.nets.checkpoint import torch_load

            arr = torch_load(p, what="latent file")
            return arr.numpy() if isinstance(arr, Tensor) else np.asarray(arr)
        from styleclip_desktop.weights.npy import read_npy

        return read_npy(p, error=UserError)  # the header is checked against the file first
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{p.name} is not a readable latent file ({type(exc).__name__})") from None


def load_latent_set(path: str | os.PathLike[str], num_ws: int, w_dim: int) -> Tensor:
    """Inverted latents for training: .npy (or a .pt tensor) of shape (N, L, w_dim), or one (L, w_dim).

    w vectors (N, w_dim) are refused: broadcast to W+ their rows would all be equal, which is
    what training on inverted faces avoids (see the module's docstring)."""
    p = Path(path)
    arr = _read_array(p)
    if arr.ndim == 2 and arr.shape == (num_ws, w_dim):
        arr = arr[None]
    if not (arr.ndim == 3 and arr.shape[1:] == (num_ws, w_dim) and arr.shape[0] >= 1):
        raise UserError(f"latents {p.name} have shape {tuple(arr.shape)}; mapper training needs W+ latents "
                        f"of shape (N, {num_ws}, {w_dim}) for this generator, one row per style layer "
                        "(as `styleclip-desktop invert` saves them)")
    if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
        raise UserError(f"latents {p.name} must hold finite floating-point numbers")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def load_latent_sets(paths: Sequence[str | os.PathLike[str]], num_ws: int, w_dim: int) -> Tensor:
    """Several latent files (e.g. one `invert` result per photo) as one training set."""
    if not paths:
        raise UserError("no latent files given")
    return torch.cat([load_latent_set(p, num_ws, w_dim) for p in paths])


def latents_fingerprint(latents: Tensor) -> str:
    return hashlib.sha256(latents.detach().cpu().float().numpy().tobytes()).hexdigest()[:16]


def batch_indices(n: int, batch: int, step: int, seed: int) -> Tensor:
    """The latent indices of `step`: shuffled epochs without replacement, as a data loader
    with shuffle and drop_last would draw them, but reproducible from the step alone."""
    per_epoch = n // batch
    if per_epoch < 1:
        raise UserError(f"the training set has {n} latents, fewer than one batch of {batch}")
    epoch, pos = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    return perm[pos * batch:(pos + 1) * batch]


def latent_batch(G: Generator, latents: Tensor, idx: Tensor) -> Tensor:
    return G.broadcast_w(latents[idx].to(G.const.device))
