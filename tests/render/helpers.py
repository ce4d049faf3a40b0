"""Helpers shared by the engine tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from styleclip_desktop.render.pipeline import ModelSet


def latent(models: ModelSet, seed: int = 3) -> np.ndarray:
    G = models.G
    with torch.no_grad():
        return G.broadcast_w(G.sample_w(1, seed=seed))[0].numpy()


class CountingBackend:
    """Wraps a backend and counts synthesis calls and frames (tests assert on work done)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.frames = 0
        self.label, self.kind, self.on_cuda = inner.label, inner.kind, inner.on_cuda

    def synthesize(self, s_flat: torch.Tensor, out_res: int) -> np.ndarray:
        self.calls += 1
        self.frames += int(s_flat.shape[0])
        return self.inner.synthesize(s_flat, out_res)  # type: ignore[no-any-return]

    def encode_text(self, texts: Any) -> np.ndarray:
        return self.inner.encode_text(texts)  # type: ignore[no-any-return]

    def encode_image(self, images: torch.Tensor) -> np.ndarray:
        return self.inner.encode_image(images)  # type: ignore[no-any-return]

    def on_cpu(self) -> Any:
        return self.inner.on_cpu()
