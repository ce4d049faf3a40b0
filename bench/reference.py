"""NVIDIA's stylegan2-ada-pytorch synthesis as the yardstick for our renders.

The benchmark never ships or downloads that code: it imports it from a local checkout
whose path is in the environment variable named by `ENV` (for example a clone of
github.com/NVlabs/stylegan2-ada-pytorch). Its generator is built at our generator's size
and given our weights, so both render the same picture; on the CPU its custom ops fall
back to their reference PyTorch implementations, as they would for a user.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

ENV = "STYLECLIP_BENCH_ADA_REPO"


def checkout() -> str | None:
    """The checkout's folder, or None when the variable is unset or names no such code."""
    root = os.environ.get(ENV)
    if not root or not os.path.isfile(os.path.join(root, "training", "networks.py")):
        return None
    return root


def official_state(G: Any) -> dict[str, torch.Tensor]:
    """Our generator's weights under the official module names."""
    from styleclip_desktop.weights.formats import canonical_to_ada

    return canonical_to_ada(G.state_dict())


def synthesis(G: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """W+ (B, L, 512) -> image with the official code and our weights, or None without a checkout."""
    root = checkout()
    if root is None:
        return None
    if root not in sys.path:
        sys.path.insert(0, root)
    networks = importlib.import_module("training.networks")
    cfg = G.config
    ref = networks.Generator(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                             img_channels=cfg.img_channels,
                             mapping_kwargs={"num_layers": cfg.mapping_layers, "lr_multiplier": cfg.mapping_lr_mul},
                             synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                               "conv_clamp": cfg.conv_clamp})
    missing, unexpected = ref.load_state_dict(official_state(G), strict=False)
    missing = [k for k in missing if not k.endswith("resample_filter")]  # its own [1, 3, 3, 1], as ours
    if missing or unexpected:
        raise RuntimeError(f"the reference generator does not match ours (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    ref = ref.eval().requires_grad_(False)

    def run(ws: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ref.synthesis(ws, noise_mode="const", force_fp32=True)  # type: ignore[no-any-return]

    return run
