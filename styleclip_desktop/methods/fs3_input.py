"""What CLIP sees of each render in the fs3 precompute (`directions precompute`).

The names are those of `clip_input` (``published`` and ``exact``), but the published input
of the precompute is not the published input of the CLIP loss: the published precompute
script encodes its renders as pictures, through CLIP's own image transform, while the
published loss box-filters the float image and skips normalisation. So:

- ``published`` (the default): each render is quantised to an 8-bit picture (clamped to
  [-1, 1], mapped to 0..255 and rounded to the nearest level), then put through CLIP's
  image transform: PIL bicubic resize of the shorter side to CLIP's input size, centre
  crop, division by 255, CLIP's mean/std. The published FFHQ fs3 was computed this way,
  so a matrix computed here for another generator means what the downloaded one means and
  the published beta values carry over.
- ``exact``: the float render as it is (not clamped, not quantised), resized by torch's
  bicubic filter (`ClipModel.preprocess`); it keeps the half grey level quantisation
  rounds away, and the overshoot beyond [-1, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from styleclip_desktop.methods.optimization_settings import CLIP_INPUT_EXACT, CLIP_INPUT_PUBLISHED

if TYPE_CHECKING:  # the command line reads the names below without loading torch
    import torch
    from PIL import Image

PRECOMPUTE_INPUTS = (CLIP_INPUT_PUBLISHED, CLIP_INPUT_EXACT)
DEFAULT_PRECOMPUTE_INPUT = CLIP_INPUT_PUBLISHED


class ImageEncoder(Protocol):
    embed_dim: int

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def preprocess_pil(self, image: Image.Image) -> torch.Tensor: ...

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor: ...


def check_precompute_input(clip_input: str) -> str:
    if clip_input not in PRECOMPUTE_INPUTS:
        raise ValueError(f"clip_input must be one of {', '.join(PRECOMPUTE_INPUTS)}, got {clip_input!r}")
    return clip_input


def published_precompute_input(clip: ImageEncoder, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) renders in [-1, 1] -> (B, 3, S, S): the 8-bit pictures through CLIP's transform."""
    import torch
    from PIL import Image

    from styleclip_desktop.nets.stylegan2 import to_uint8

    pictures = to_uint8(images)  # clamps, and rounds to the nearest of the 256 levels
    return torch.stack([clip.preprocess_pil(Image.fromarray(p)) for p in pictures])


def encode_renders(clip: ImageEncoder, images: torch.Tensor, clip_input: str = DEFAULT_PRECOMPUTE_INPUT) -> torch.Tensor:
    """(B, D) CLIP embeddings of renders in [-1, 1], through the chosen precompute input."""
    if check_precompute_input(clip_input) == CLIP_INPUT_EXACT:
        return clip.encode_image(images)
    return clip.encode_preprocessed(published_precompute_input(clip, images))
