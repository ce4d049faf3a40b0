"""Global directions: a text prompt becomes one direction in style space (S).

Pipeline (StyleCLIP §3):

1. Per-channel statistics of S (mean, std) over sampled style codes.
2. The relevance matrix fs3: one unit CLIP-space vector per conv channel, saying how
   the image's CLIP embedding moves when that channel moves. A one-off precompute per
   generator (or the official file for FFHQ).
3. For a prompt, dt = e(target) - e(neutral) in CLIP space; r = fs3 . dt; channels with
   |r| < beta are dropped; the rest are divided by max|r| and scaled by each channel's
   std. toRGB slots stay zero. The edit is s' = s + alpha * ds.

Everything here works on flat S vectors: the generator's style slots concatenated in
generator order (toRGB included), so index arithmetic is shared by every caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from styleclip_desktop.errors import Cancelled, ModelFileError, UserError
from styleclip_desktop.methods.fs3_input import (
    DEFAULT_PRECOMPUTE_INPUT,
    ImageEncoder,
    check_precompute_input,
    encode_renders,
)
from styleclip_desktop.nets.stylegan2 import Generator, pack_styles, unpack_styles

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

STATS_SEED = 5
STATS_SAMPLES = 100_000
STATS_PSI = 0.7
# The published statistics are numpy's std with its default ddof=0 (the population std).
STATS_DDOF = 0


class BetaTooHighError(UserError):
    def __init__(self, largest: float) -> None:
        self.largest = largest
        super().__init__(f"β too high: no channel passes; the largest usable β here is {largest:.4f}")


# --- layout ---------------------------------------------------------------------------


def conv_channel_index(G: Generator) -> np.ndarray:
    """Positions, within flat S, of the conv channels (the rows of fs3), in order."""
    idx: list[np.ndarray] = []
    start = 0
    for slot in G.slots:
        if not slot.is_torgb:
            idx.append(np.arange(start, start + slot.dim))
        start += slot.dim
    return np.concatenate(idx)


def conv_layer_widths(G: Generator) -> list[int]:
    """Channels of each conv layer (toRGB left out), in generator order: fs3's row blocks."""
    return [slot.dim for slot in G.slots if not slot.is_torgb]


def s_size(G: Generator) -> int:
    return sum(G.style_dims)


# --- statistics -----------------------------------------------------------------------


@dataclass
class StyleStats:
    mean: np.ndarray  # (S,) float64
    std: np.ndarray  # (S,) float64, ddof STATS_DDOF
    samples: int
    seed: int = STATS_SEED  # of the sampled z's: the fs3 precompute's faces are the first of them

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, mean=self.mean, std=self.std, samples=np.int64(self.samples), seed=np.int64(self.seed),
                 ddof=np.int64(STATS_DDOF))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, G: Generator | None = None) -> StyleStats:
        try:
            with np.load(path, allow_pickle=False) as z:
                stats = cls(z["mean"].astype(np.float64), z["std"].astype(np.float64), int(z["samples"]),
                            int(z["seed"]) if "seed" in z.files else STATS_SEED)
                # Files written before the published ddof hold the sample std (ddof 1):
                # rescaling gives exactly the population std of the same samples.
                ddof = int(z["ddof"]) if "ddof" in z.files else 1
                if ddof != STATS_DDOF:
                    n = max(stats.samples, 2)
                    stats.std = stats.std * np.sqrt((n - ddof) / (n - STATS_DDOF))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"style statistics file {path} is unreadable ({exc}); delete it to recompute") from exc
        if G is not None and stats.mean.shape != (s_size(G),):
            raise ModelFileError(f"style statistics in {path} have {stats.mean.shape[0]} channels, "
                                 f"this generator has {s_size(G)}; delete the file to recompute")
        return stats


@torch.no_grad()
def compute_style_stats(G: Generator, samples: int = STATS_SAMPLES, seed: int = STATS_SEED, psi: float = STATS_PSI,
                        batch: int = 2000, progress: Progress | None = None,
                        cancelled: CancelCheck | None = None) -> StyleStats:
    """Mean and std (ddof 0, as published) of every S channel over `samples` seeded z's, truncated by psi.

    Accumulates in float64 (sums of x and x^2), so the result does not depend on batching.
    The z's are drawn in order from one seeded stream, so the first n of them are
    `G.sample_w(n, seed, psi)`: the faces the fs3 precompute starts from.
    """
    device = G.const.device
    rng = np.random.RandomState(seed)
    total = s_size(G)
    acc = np.zeros(total, np.float64)
    acc2 = np.zeros(total, np.float64)
    done = 0
    while done < samples:
        if cancelled is not None and cancelled():
            raise Cancelled()
        n = min(batch, samples - done)
        z = torch.from_numpy(rng.randn(n, G.config.z_dim).astype(np.float32)).to(device)
        s = pack_styles(G.w_to_s(G.mapping_forward(z, psi))).double().cpu().numpy()
        acc += s.sum(0)
        acc2 += np.square(s).sum(0)
        done += n
        if progress:
            progress(done, samples)
    mean = acc / samples
    var = np.maximum(acc2 / samples - mean**2, 0.0)
    return StyleStats(mean, np.sqrt(var), samples, seed)


# --- fs3 ------------------------------------------------------------------------------


def check_fs3(fs3: np.ndarray, G: Generator, source: str = "fs3") -> np.ndarray:
    """fs3 with one row per conv channel; a matrix of the first conv layers only is zero-filled.

    The published precompute covers the conv layers up to 128 px (5,376 of the 6,048 rows at
    1024 px) and the published editor gives the layers it does not cover no relevance, so
    their channels never move; zero rows do the same here. A row count that ends inside a
    layer, or exceeds the generator, belongs to another generator and is refused.
    """
    widths = conv_layer_widths(G)
    rows = sum(widths)
    prefixes = np.cumsum(widths)
    if fs3.ndim != 2 or fs3.shape[0] not in prefixes:
        raise ModelFileError(
            f"{source} has shape {tuple(fs3.shape)}, but this generator has {rows} conv channels in "
            f"{len(widths)} layers and no run of its first layers has {fs3.shape[0] if fs3.ndim else 0}: "
            f"it was computed for a different generator. Use the matching file or run `directions precompute`."
        )
    if not np.isfinite(fs3).all():
        raise ModelFileError(f"{source} contains NaN or infinite values")
    fs3 = fs3.astype(np.float32, copy=False)
    if fs3.shape[0] < rows:
        covered = int(np.searchsorted(prefixes, fs3.shape[0])) + 1
        log.info("%s covers the first %d of %d conv layers; the others get no relevance", source, covered, len(widths))
        fs3 = np.concatenate([fs3, np.zeros((rows - fs3.shape[0], fs3.shape[1]), np.float32)])
    return fs3


def load_fs3(path: str | os.PathLike[str], G: Generator) -> np.ndarray:
    from styleclip_desktop.weights.npy import read_npy

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"fs3 file not found: {p}")
    # Its header is checked against the file before anything is allocated.
    fs3 = read_npy(p)
    return check_fs3(np.asarray(fs3), G, p.name)


def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.npz")


@torch.no_grad()
def precompute_fs3(G: Generator, clip: ImageEncoder, stats: StyleStats, out: Path, images: int = 100,
                   seed: int | None = None, psi: float = STATS_PSI, batch: int = 16, sigmas: float = 5.0,
                   progress: Progress | None = None, cancelled: CancelCheck | None = None,
                   out_res: int | None = None, clip_input: str = DEFAULT_PRECOMPUTE_INPUT) -> np.ndarray:
    """Relevance of every conv channel to CLIP space, averaged over `images` sampled faces.

    For each image and channel c: render with s_c at mean - 5 sigma and at mean + 5 sigma,
    encode both with CLIP (through `clip_input`, see `fs3_input`), keep the normalized
    difference of the normalized embeddings.

    The faces are, as published, the first `images` of the sample the statistics come from
    (`seed=None`: the statistics' seed); another seed draws other faces.

    Every channel is moved from the unedited face: all other channels keep their own values.
    The published script instead leaves each channel it has visited at the mean for the rest
    of its run (it copies its list of per-layer arrays shallowly, so writing a channel's mean
    into the copy writes it into the faces themselves); the paper describes each channel's
    effect on the faces, and that script measures later channels on faces with ever more
    channels flattened to the mean, so the result would depend on the order of the channels.

    Progress is saved after every image to `<out>.partial.npz`; a new run resumes there.
    """
    check_precompute_input(clip_input)
    if seed is None:
        seed = stats.seed
    n_ch = len(conv_channel_index(G))
    partial = _partial_path(out)
    acc = np.zeros((n_ch, clip.embed_dim), np.float64)
    first = 0
    if partial.is_file():
        try:
            with np.load(partial, allow_pickle=False) as z:
                same_input = "clip_input" in z.files and str(z["clip_input"]) == clip_input
                if z["acc"].shape == acc.shape and int(z["seed"]) == seed and int(z["images"]) == images \
                        and same_input:
                    acc, first = z["acc"].astype(np.float64), int(z["done"])
                    log.info("resuming fs3 precompute at image %d of %d", first, images)
        except (OSError, KeyError, ValueError):
            log.warning("ignoring unreadable partial file %s", partial)

    def save_partial(done: int, acc: np.ndarray) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial.with_name(partial.name + ".tmp.npz")
        np.savez(tmp, acc=acc, done=np.int64(done), seed=np.int64(seed), images=np.int64(images),
                 clip_input=np.str_(clip_input))
        os.replace(tmp, partial)

    fs3_rows(G, clip, stats, 0, n_ch, images, seed, psi=psi, batch=batch, sigmas=sigmas, out_res=out_res,
             clip_input=clip_input, progress=progress, cancelled=cancelled, acc=acc, first_image=first,
             after_image=save_partial)
    fs3 = finish_fs3(acc)
    write_fs3(out, fs3)
    partial.unlink(missing_ok=True)
    return fs3


def check_channel_range(G: Generator, lo: int, hi: int, batch: int) -> None:
    """A part of fs3 must start and end where the whole-matrix run's channel batches do.

    A batch renders its channels together, and how many images a render holds can change
    the last bits of each one; so rows computed in parts are the whole run's rows, bit for
    bit, only when every part is made of exactly the whole run's batches."""
    n_ch = len(conv_channel_index(G))
    if batch < 1 or not 0 <= lo < hi <= n_ch or lo % batch or (hi % batch and hi != n_ch):
        raise ValueError(f"channels {lo}-{hi} are not a run of whole batches of {batch} "
                         f"among this generator's {n_ch} conv channels")


@torch.no_grad()
def fs3_rows(G: Generator, clip: ImageEncoder, stats: StyleStats, lo_channel: int, hi_channel: int, images: int,
             seed: int, psi: float = STATS_PSI, batch: int = 16, sigmas: float = 5.0, out_res: int | None = None,
             clip_input: str = DEFAULT_PRECOMPUTE_INPUT, progress: Progress | None = None,
             cancelled: CancelCheck | None = None, *, acc: np.ndarray | None = None, first_image: int = 0,
             after_image: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """The unnormalized fs3 rows of conv channels lo_channel..hi_channel-1: float64 sums over the faces.

    What `precompute_fs3` computes for those channels, in the same batches of `batch` channels
    and adding the faces in the same order, so the rows of parts put together (`finish_fs3`)
    are the whole run's matrix exactly; the range must be one of whole batches
    (`check_channel_range`). Sums go into `acc` (hi-lo rows) when given, starting at face
    `first_image`; `after_image(done, acc)` is called after each face. Progress counts
    channel renders of this range over all its faces.
    """
    check_precompute_input(clip_input)
    check_channel_range(G, lo_channel, hi_channel, batch)
    device = G.const.device
    conv_idx = conv_channel_index(G)
    width = hi_channel - lo_channel
    if acc is None:
        acc = np.zeros((width, clip.embed_dim), np.float64)
    elif acc.shape != (width, clip.embed_dim):
        raise ValueError(f"acc has shape {acc.shape}, channels {lo_channel}-{hi_channel} need "
                         f"{(width, clip.embed_dim)}")
    # All the faces are drawn at once whatever the range: the mapping of a batch of z's is
    # the same in every part.
    ws_all = G.sample_w(images, seed, psi, device=device)
    lo = torch.from_numpy((stats.mean - sigmas * stats.std)[conv_idx].astype(np.float32)).to(device)
    hi = torch.from_numpy((stats.mean + sigmas * stats.std)[conv_idx].astype(np.float32)).to(device)
    conv_pos = torch.from_numpy(conv_idx).to(device)
    total = images * width
    for i in range(first_image, images):
        base = pack_styles(G.w_to_s(ws_all[i: i + 1]))  # (1, S)
        for c0 in range(lo_channel, hi_channel, batch):
            if cancelled is not None and cancelled():
                raise Cancelled()
            cs = torch.arange(c0, min(c0 + batch, hi_channel), device=device)
            k = len(cs)
            flat = base.repeat(2 * k, 1)
            rows = torch.arange(2 * k, device=device)
            cols = conv_pos[cs].repeat(2)
            flat[rows, cols] = torch.cat([lo[cs], hi[cs]])
            img = G.synthesize(unpack_styles(flat, G.style_dims), out_res=out_res)
            e = encode_renders(clip, img, clip_input).double()
            e = e / e.norm(dim=-1, keepdim=True)
            d = e[k:] - e[:k]
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            acc[c0 - lo_channel: c0 - lo_channel + k] += d.cpu().numpy()
            if progress:
                progress(i * width + c0 - lo_channel + k, total)
        if after_image is not None:
            after_image(i + 1, acc)
    return acc


def finish_fs3(acc: np.ndarray) -> np.ndarray:
    """fs3 from the summed rows of all conv channels: each row scaled to unit length, as float32."""
    fs3 = acc / np.linalg.norm(acc, axis=1, keepdims=True).clip(1e-12)
    return fs3.astype(np.float32)


def write_fs3(out: Path, fs3: np.ndarray) -> None:
    """Write fs3 to `out` as .npy, atomically: a reader sees the old file or the whole new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp.npy")
    np.save(tmp_out, fs3)
    os.replace(tmp_out, out)


# --- from a text direction to a style direction -----------------------------------------


@dataclass(frozen=True)
class StyleDirection:
    ds: np.ndarray  # (S,) float32, zeros in toRGB slots and dropped channels
    channels: int  # how many channels survive beta
    largest_beta: float  # max |fs3 . dt|: any beta at or above it drops every channel


def relevance(fs3: np.ndarray, dt: np.ndarray) -> np.ndarray:
    return fs3.astype(np.float64) @ dt.astype(np.float64)


def channels_passing(fs3: np.ndarray, dt: np.ndarray, beta: float) -> int:
    return int((np.abs(relevance(fs3, dt)) >= beta).sum())


def style_direction(fs3: np.ndarray, dt: np.ndarray, std: np.ndarray, conv_idx: np.ndarray, beta: float) -> StyleDirection:
    """ds for a unit text direction dt: threshold by beta, normalize by max |r|, scale by std."""
    if dt.ndim != 1 or fs3.shape[1] != dt.shape[0]:
        raise ValueError(f"dt has shape {dt.shape}, fs3 rows have {fs3.shape[1]} dims")
    r = relevance(fs3, dt)
    largest = float(np.abs(r).max()) if r.size else 0.0
    keep = np.abs(r) >= beta
    if not keep.any():
        raise BetaTooHighError(largest)
    r = np.where(keep, r, 0.0) / largest
    ds = np.zeros(std.shape[0], np.float64)
    ds[conv_idx] = r * std[conv_idx]
    return StyleDirection(ds.astype(np.float32), int(keep.sum()), largest)


def apply_direction(styles_flat: torch.Tensor, ds: np.ndarray | torch.Tensor, alpha: float) -> torch.Tensor:
    """s' = s + alpha * ds for flat S of shape (B, S)."""
    d = torch.as_tensor(ds, dtype=styles_flat.dtype, device=styles_flat.device)
    return styles_flat + alpha * d


def auto_beta(fs3: np.ndarray, dt: np.ndarray, min_channels: int = 20,
              candidates: tuple[float, ...] = tuple(np.round(np.arange(0.10, 0.30, 0.01), 2))) -> float:
    """The largest beta in 0.10..0.29 that keeps more than `min_channels` channels (else 0.10)."""
    best = candidates[0]
    r = np.abs(relevance(fs3, dt))
    for b in candidates:
        if int((r >= b).sum()) > min_channels:
            best = b
    return float(best)
