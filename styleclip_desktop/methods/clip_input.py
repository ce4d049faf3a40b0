"""What CLIP sees of a generated image in the CLIP loss of optimization and mapper training.

The published StyleCLIP loss feeds the generator's [-1, 1] image to CLIP after nearest
upsampling by 7 and average pooling with a kernel of resolution / 32 (1024 px: 7168 px,
pooled by 32, gives CLIP's 224), with no mean/std normalisation. Those two operations
together are an exact box filter: each output pixel is the area-weighted mean of the input
pixels its footprint covers, and the result depends only on the ratio of the two sizes.
`published_clip_input` computes that box filter as two small matrix products, which is the
published operation to float rounding wherever the published one is defined (every size
with 7 * resolution divisible by CLIP's input size, e.g. multiples of 32 for 224), and the
same filter at every other size (16 px: nearest upsampling x14; tiny test CLIPs with other
input sizes). The matrices avoid the 7x image (600 MB per face at 1024 px, with gradients).

The option names and the default live in `optimization_settings`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from styleclip_desktop.methods.optimization_settings import (
    CLIP_INPUT_EXACT,
    CLIP_INPUT_PUBLISHED,
    CLIP_INPUTS,
    DEFAULT_CLIP_INPUT,
)

if TYPE_CHECKING:  # open_clip is slow to import; callers hand in a loaded model
    from styleclip_desktop.nets.clip import ClipModel

__all__ = ["CLIP_INPUTS", "CLIP_INPUT_EXACT", "CLIP_INPUT_PUBLISHED", "DEFAULT_CLIP_INPUT",
           "box_resize_matrix", "check_clip_input", "encode_for_loss", "published_clip_input"]


def check_clip_input(clip_input: str) -> str:
    if clip_input not in CLIP_INPUTS:
        raise ValueError(f"clip_input must be one of {', '.join(CLIP_INPUTS)}, got {clip_input!r}")
    return clip_input


@lru_cache(maxsize=16)
def _box_matrix(n_in: int, n_out: int) -> Tensor:
    # Output j covers input coordinates [j * n_in / n_out, (j + 1) * n_in / n_out). Scaled by
    # n_out every bound is an integer, so the overlaps (the weights) are exact.
    i = torch.arange(n_in, dtype=torch.float64)
    j = torch.arange(n_out, dtype=torch.float64)[:, None]
    lo = torch.maximum(j * n_in, i * n_out)
    hi = torch.minimum((j + 1) * n_in, (i + 1) * n_out)
    return ((hi - lo).clamp(min=0) / n_in).float()


def box_resize_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in): each row averages the input pixels under one output pixel, by area."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    return _box_matrix(int(n_in), int(n_out)).clone()


def published_clip_input(images: Tensor, size: int = 224) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 3, size, size), box-filtered, neither clamped nor normalised.

    Differentiable. Not clamped, as published: the generator overshoots [-1, 1] a little and a
    clamp would cut its gradient there.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    h, w = int(images.shape[-2]), int(images.shape[-1])
    x = images.float()
    rows = _box_matrix(h, size).to(x.device)
    cols = _box_matrix(w, size).to(x.device)
    return rows @ x @ cols.T


def encode_for_loss(clip: ClipModel, images: Tensor, clip_input: str = DEFAULT_CLIP_INPUT) -> Tensor:
    """(B, D) unit CLIP embeddings of generated images in [-1, 1], through the chosen input."""
    if check_clip_input(clip_input) == CLIP_INPUT_EXACT:
        return clip.encode_image(images)
    x = published_clip_input(images.to(clip.device), clip.image_size)
    return clip.encode_preprocessed(x)
