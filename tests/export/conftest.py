"""Documents and an engine on the tiny synthetic generator, shared by the export tests."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.document import Alignment, Document, Layer, OptimizationParams, SourcePhoto
from styleclip_desktop.export.source import FrameSource


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # On a busy two-core machine torch's thread pool spends more time waiting on its peers
    # than rendering 32 px frames; one thread is several times faster here.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(tiny_G: Any) -> Iterator[FrameSource]:
    from styleclip_desktop.export.source import close_frame_source, open_frame_source
    from styleclip_desktop.render.pipeline import ModelSet

    source = open_frame_source(ModelSet(G=tiny_G, synthetic=True), "cpu")
    yield source
    close_frame_source(source)


def photo_bytes(width: int = 81, height: int = 61) -> bytes:
    """An odd-sized photo (a gradient, so resampling is visible) to paste the face into."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def make_doc(G: Any, *, photo: bool = False, alpha: float = 1.0, seed: int = 3) -> Document:
    """A face from a seed with one W-space edit layer (a fixed random offset), which the
    renderer applies without CLIP, so these tests need only the generator."""
    latent = G.broadcast_w(G.sample_w(1, seed))[0].numpy().astype(np.float32)
    delta = np.random.RandomState(7).randn(*latent.shape).astype(np.float32) * 0.6
    layer = Layer(OptimizationParams("a face with grey hair", delta=delta), alpha=alpha)
    if not photo:
        return Document(latent, layers=[layer], seed=seed, synthetic=True)
    # The 32 px face sits at (24, 14) in the photo, scaled 1:1.
    matrix = np.array([[1.0, 0.0, -24.0], [0.0, 1.0, -14.0], [0.0, 0.0, 1.0]])
    return Document(latent, layers=[layer], source=SourcePhoto.from_bytes("photo.png", photo_bytes()),
                    alignment=Alignment(matrix, 32), synthetic=True)


@pytest.fixture
def doc(tiny_G: Any) -> Document:
    return make_doc(tiny_G)


@pytest.fixture
def photo_doc(tiny_G: Any) -> Document:
    return make_doc(tiny_G, photo=True)
