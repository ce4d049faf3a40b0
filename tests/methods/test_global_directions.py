from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleclip_desktop.errors import Cancelled, ModelFileError
from styleclip_desktop.methods import global_directions as gd
from styleclip_desktop.nets.stylegan2 import pack_styles, unpack_styles


def test_hand_computed_direction() -> None:
    fs3 = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-0.8, 0.6]])
    dt = np.array([0.8, 0.6])
    # r = fs3.dt = [0.8, 0.6, 0.96, -0.28]; beta 0.5 drops the last; max |r| = 0.96
    std = np.array([2.0, 9.0, 3.0, 9.0, 4.0, 5.0])  # flat S: slots 1 and 3 are toRGB
    conv_idx = np.array([0, 2, 4, 5])
    d = gd.style_direction(fs3, dt, std, conv_idx, beta=0.5)
    expected = np.array([0.8 / 0.96 * 2, 0, 0.6 / 0.96 * 3, 0, 1.0 * 4, 0.0])
    np.testing.assert_allclose(d.ds, expected, rtol=1e-6)
    assert d.channels == 3
    assert d.largest_beta == pytest.approx(0.96)


def test_beta_too_high_names_the_largest_usable_beta() -> None:
    fs3 = np.array([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(gd.BetaTooHighError) as err:
        gd.style_direction(fs3, np.array([0.6, 0.8]), np.ones(2), np.arange(2), beta=0.81)
    assert str(err.value) == "β too high: no channel passes; the largest usable β here is 0.8000"


def test_torgb_slots_zero_and_alpha_zero_is_identity(tiny_G) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.RandomState(0)
    conv_idx = gd.conv_channel_index(tiny_G)
    fs3 = rng.randn(len(conv_idx), 512)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    dt = rng.randn(512)
    dt /= np.linalg.norm(dt)
    stats = gd.compute_style_stats(tiny_G, samples=500, batch=200)
    d = gd.style_direction(fs3, dt, stats.std, conv_idx, beta=0.05)
    start = 0
    for slot in tiny_G.slots:
        block = d.ds[start: start + slot.dim]
        if slot.is_torgb:
            assert not block.any()
        start += slot.dim
    assert d.channels == gd.channels_passing(fs3, dt, 0.05) > 0
    ws = tiny_G.broadcast_w(tiny_G.sample_w(1, seed=2))
    with torch.no_grad():
        s = pack_styles(tiny_G.w_to_s(ws))
        base = tiny_G.synthesize(unpack_styles(s, tiny_G.style_dims))
        same = tiny_G.synthesize(unpack_styles(gd.apply_direction(s, d.ds, 0.0), tiny_G.style_dims))
        moved = tiny_G.synthesize(unpack_styles(gd.apply_direction(s, d.ds, 5.0), tiny_G.style_dims))
    assert torch.equal(base, same)
    assert (moved - base).abs().max() > 1e-3


def test_stats_do_not_depend_on_batching(tiny_G) -> None:  # type: ignore[no-untyped-def]
    a = gd.compute_style_stats(tiny_G, samples=300, batch=300)
    b = gd.compute_style_stats(tiny_G, samples=300, batch=64)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    np.testing.assert_allclose(a.std, b.std, atol=1e-6)
    assert (a.std > 0).all()


def test_fs3_shape_mismatch_is_refused(tiny_G, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "fs3.npy"
    np.save(p, np.zeros((6048, 512), np.float32))
    with pytest.raises(ModelFileError, match="different generator"):
        gd.load_fs3(p, tiny_G)


class _CountingClip:
    """A stand-in image encoder: deterministic features of the image, so the test checks
    precompute's bookkeeping (batching, resume) rather than CLIP."""

    embed_dim = 8

    def __init__(self) -> None:
        self.calls = 0
        self.proj = torch.randn(3 * 4 * 4, 8, generator=torch.Generator().manual_seed(0))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        small = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        e = small @ self.proj
        return e / e.norm(dim=-1, keepdim=True)

    def preprocess_pil(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)


def test_precompute_resumes_to_the_same_result(tiny_G, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stats = gd.compute_style_stats(tiny_G, samples=200, batch=200)
    full = gd.precompute_fs3(tiny_G, _CountingClip(), stats, tmp_path / "a.npy", images=2, batch=64)
    assert full.shape == (len(gd.conv_channel_index(tiny_G)), 8)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    clip = _CountingClip()
    per_image = -(-full.shape[0] // 64)
    with pytest.raises(Cancelled):
        gd.precompute_fs3(tiny_G, clip, stats, tmp_path / "b.npy", images=2, batch=64,
                          cancelled=lambda: clip.calls >= per_image + 1)
    assert (tmp_path / "b.npy.partial.npz").is_file() and not (tmp_path / "b.npy").exists()
    clip2 = _CountingClip()
    resumed = gd.precompute_fs3(tiny_G, clip2, stats, tmp_path / "b.npy", images=2, batch=64)
    assert clip2.calls == per_image  # only the second image was computed again
    np.testing.assert_allclose(resumed, full, atol=1e-6)
    assert not (tmp_path / "b.npy.partial.npz").exists()


def test_auto_beta_keeps_more_than_twenty_channels() -> None:
    rng = np.random.RandomState(1)
    fs3 = rng.randn(500, 16)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    dt = np.eye(16)[0]
    b = gd.auto_beta(fs3, dt)
    assert 0.10 <= b <= 0.29
    assert gd.channels_passing(fs3, dt, b) > 20
