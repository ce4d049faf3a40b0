"""The fs3 precompute's inputs as published: what CLIP sees, which faces, which std; and
fs3 files that cover only the first conv layers.

Every reference here is written from the published description, not taken from the product:
the precompute's renders become 8-bit pictures (clamped, rounded), go through CLIP's own
image transform (PIL bicubic, centre crop, /255, CLIP mean/std); its faces are the first of
the seed-5 sample its statistics come from; its std is numpy's default (ddof 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.methods import fs3_input
from styleclip_desktop.methods import global_directions as gd
from styleclip_desktop.nets.stylegan2 import pack_styles, unpack_styles

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from styleclip_desktop.nets.clip import ClipModel, build_clip, tiny_clip_state_dict

    return ClipModel(build_clip(tiny_clip_state_dict(0)), "tiny-test-clip",
                     cache_dir=tmp_path_factory.mktemp("text-cache"))


def reference_input(images: torch.Tensor, size: int) -> np.ndarray:
    """The published precompute's CLIP input, from its description."""
    out = []
    for img in images.detach().double().numpy():
        x = np.clip(img, -1.0, 1.0).transpose(1, 2, 0)
        q = np.floor((x + 1.0) * 127.5 + 0.5).astype(np.uint8)  # 8-bit, nearest level
        pic = Image.fromarray(q)
        h, w = q.shape[:2]
        nh, nw = (size * h // w, size) if w <= h else (size, size * w // h)  # shorter side to `size`
        if (nh, nw) != (h, w):
            pic = pic.resize((nw, nh), Image.Resampling.BICUBIC)
        a = np.asarray(pic, np.float64) / 255.0
        top, left = round((nh - size) / 2), round((nw - size) / 2)
        a = a[top: top + size, left: left + size]
        out.append(((a - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1))
    return np.stack(out)


class _Recorder:
    """Wraps an encoder and keeps what it is given."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.embed_dim = inner.embed_dim
        self.renders: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.renders.append(images.detach().clone())
        return self.inner.encode_image(images)

    def preprocess_pil(self, image: Image.Image) -> torch.Tensor:
        return self.inner.preprocess_pil(image)

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.inner.encode_preprocessed(x)


def _style_samples(G, seed: int, n: int, psi: float = 0.7) -> np.ndarray:  # type: ignore[no-untyped-def]
    """S of the first n z's of a seed, truncated towards w_avg by psi, in float64."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.config.z_dim).astype(np.float32))
    with torch.no_grad():
        w = G.mapping(z)
        w = G.w_avg + psi * (w - G.w_avg)
        return pack_styles(G.w_to_s(w)).double().numpy()


def test_the_published_input_is_an_8_bit_picture_through_clips_transform(tiny_clip) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(3)
    images = 1.3 * torch.randn(2, 3, 40, 40, generator=g)  # overshoots [-1, 1] on purpose
    ours = fs3_input.published_precompute_input(tiny_clip, images).double().numpy()
    ref = reference_input(images, tiny_clip.image_size)
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # The float path is a different input: not clamped, not quantised.
    exact = tiny_clip.preprocess(images).double().numpy()
    assert np.abs(exact - ref).max() > 0.1


def test_precompute_by_default_feeds_clip_the_published_input(tiny_G, tiny_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stats = gd.compute_style_stats(tiny_G, samples=64, batch=64)
    rec = _Recorder(tiny_clip)
    fs3 = gd.precompute_fs3(tiny_G, rec, stats, tmp_path / "fs3.npy", images=1, batch=4)
    assert not rec.renders and rec.inputs  # never the float path
    # The first batch: channels 0..3 at mean - 5 sigma, then at mean + 5 sigma, on face 0.
    s = _style_samples(tiny_G, seed=gd.STATS_SEED, n=1)
    conv = gd.conv_channel_index(tiny_G)
    flat = np.repeat(s, 8, axis=0)
    for k in range(4):
        flat[k, conv[k]] = stats.mean[conv[k]] - 5 * stats.std[conv[k]]
        flat[4 + k, conv[k]] = stats.mean[conv[k]] + 5 * stats.std[conv[k]]
    with torch.no_grad():
        renders = tiny_G.synthesize(unpack_styles(torch.from_numpy(flat).float(), tiny_G.style_dims))
    ref = reference_input(renders, tiny_clip.image_size)
    got = rec.inputs[0].double().numpy()
    assert got.shape == ref.shape
    # Float rounding in the renders may put a pixel one 8-bit level off; nearly all agree exactly.
    assert np.abs(got - ref).max() < 1.5 / 255 / CLIP_STD.min()
    assert np.isclose(got, ref, atol=1e-5).mean() > 0.99
    # The exact input gives another matrix.
    exact = gd.precompute_fs3(tiny_G, tiny_clip, stats, tmp_path / "exact.npy", images=1, batch=64,
                              clip_input="exact")
    assert np.abs(exact - fs3).max() > 1e-3


def test_the_faces_are_the_first_of_the_statistics_sample(tiny_G, tiny_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stats = gd.compute_style_stats(tiny_G, samples=40, batch=40)
    assert stats.seed == 5
    conv = gd.conv_channel_index(tiny_G)
    n_ch = len(conv)
    for st, seed in ((stats, 5), (gd.StyleStats(stats.mean, stats.std, 40, seed=11), 11)):
        rec = _Recorder(tiny_clip)
        gd.precompute_fs3(tiny_G, rec, st, tmp_path / f"f{seed}.npy", images=2, batch=n_ch, clip_input="exact")
        s = _style_samples(tiny_G, seed=seed, n=2)
        for i in range(2):  # one batch per face: its first render moves channel 0 down
            flat = s[i: i + 1].copy()
            flat[0, conv[0]] = st.mean[conv[0]] - 5 * st.std[conv[0]]
            with torch.no_grad():
                ref = tiny_G.synthesize(unpack_styles(torch.from_numpy(flat).float(), tiny_G.style_dims))
            np.testing.assert_allclose(rec.renders[i][:1].numpy(), ref.numpy(), atol=1e-4)


def test_std_is_the_population_std(tiny_G, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stats = gd.compute_style_stats(tiny_G, samples=50, batch=20)
    s = _style_samples(tiny_G, seed=5, n=50)
    np.testing.assert_allclose(stats.mean, s.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std, s.std(0, ddof=0), rtol=1e-4, atol=1e-6)
    # A file written with the sample std (ddof 1) loads as the population std of its samples.
    old = tmp_path / "old.npz"
    np.savez(old, mean=s.mean(0), std=s.std(0, ddof=1), samples=np.int64(50))
    loaded = gd.StyleStats.load(old)
    np.testing.assert_allclose(loaded.std, s.std(0, ddof=0), rtol=1e-12)
    assert loaded.seed == 5
    stats.save(tmp_path / "new.npz")
    np.testing.assert_array_equal(gd.StyleStats.load(tmp_path / "new.npz").std, stats.std)


def _unit_rows(rows: int, dim: int, seed: int) -> np.ndarray:
    a = np.random.RandomState(seed).randn(rows, dim)
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def test_fs3_of_the_first_layers_loads_zero_filled(tiny_G, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    widths = gd.conv_layer_widths(tiny_G)
    covered = sum(widths[:3])
    part = _unit_rows(covered, 16, seed=1)
    p = tmp_path / "part.npy"
    np.save(p, part)
    fs3 = gd.load_fs3(p, tiny_G)
    assert fs3.shape == (sum(widths), 16)
    np.testing.assert_array_equal(fs3[:covered], part)
    assert not fs3[covered:].any()

    rng = np.random.RandomState(2)
    std = rng.uniform(0.5, 2.0, gd.s_size(tiny_G))
    dt = rng.randn(16)
    dt /= np.linalg.norm(dt)
    conv = gd.conv_channel_index(tiny_G)
    d = gd.style_direction(fs3, dt, std, conv, beta=0.1)
    # Reference on the covered channels alone: threshold, divide by the largest |r|, scale by std.
    r = part.astype(np.float64) @ dt
    r = np.where(np.abs(r) >= 0.1, r, 0.0) / np.abs(r).max()
    expected = np.zeros(gd.s_size(tiny_G))
    expected[conv[:covered]] = r * std[conv[:covered]]
    np.testing.assert_allclose(d.ds, expected, rtol=1e-5, atol=1e-7)
    assert d.channels == int((np.abs(part @ dt) >= 0.1).sum())


@pytest.mark.parametrize("rows", [1, 64 + 17, 7 * 64 + 64])
def test_fs3_rows_matching_no_prefix_are_refused_in_one_line(tiny_G, tmp_path: Path, rows: int) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "odd.npy"
    np.save(p, _unit_rows(rows, 16, seed=3))
    with pytest.raises(ModelFileError) as err:
        gd.load_fs3(p, tiny_G)
    msg = str(err.value)
    assert "\n" not in msg and f"({rows}, 16)" in msg and "different generator" in msg


def test_directions_precompute_offers_the_clip_input(monkeypatch: pytest.MonkeyPatch, tiny_G,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from styleclip_desktop.cli import build_parser, common

    stats = gd.StyleStats(np.zeros(gd.s_size(tiny_G)), np.ones(gd.s_size(tiny_G)), 10)
    calls: list[dict[str, object]] = []

    def fake_precompute(G, clip, st, out, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw)
        return np.zeros((len(gd.conv_channel_index(G)), 4), np.float32)

    monkeypatch.setattr(common, "pick_device", lambda args: torch.device("cpu"))
    monkeypatch.setattr(common, "load_generator", lambda args, device: tiny_G)
    monkeypatch.setattr(common, "ensure_stats", lambda G, args=None: stats)
    monkeypatch.setattr(common, "load_clip", lambda args, device: object())
    monkeypatch.setattr(gd, "precompute_fs3", fake_precompute)
    out = str(tmp_path / "fs3.npy")
    for extra, want_input, want_seed in (([], "published", None), (["--clip-input", "exact", "--seed", "3"], "exact", 3)):
        args = build_parser().parse_args(["directions", "precompute", "--out", out, *extra])
        assert args.func(args) == 0
        assert calls[-1]["clip_input"] == want_input and calls[-1]["seed"] == want_seed
    lines = capsys.readouterr().out.splitlines()
    assert "(seed 5, published CLIP input)" in lines[0] and "(seed 3, exact CLIP input)" in lines[1]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["directions", "precompute", "--out", out, "--clip-input", "bicubic"])


def test_the_published_128px_matrix_fits_a_1024px_generator() -> None:
    """The published script covers the conv layers up to 128 px: 5,376 of 6,048 rows."""
    from types import SimpleNamespace

    conv = [512] * 10 + [256, 256, 128, 128, 64, 64, 32]  # style widths of the 17 conv layers at 1024 px
    rgb = [512, 512, 512, 512, 512, 256, 128, 64, 32]
    slots = [SimpleNamespace(dim=conv[0], is_torgb=False), SimpleNamespace(dim=rgb[0], is_torgb=True)]
    for i in range(8):
        slots += [SimpleNamespace(dim=conv[1 + 2 * i], is_torgb=False), SimpleNamespace(dim=conv[2 + 2 * i], is_torgb=False),
                  SimpleNamespace(dim=rgb[1 + i], is_torgb=True)]
    G = SimpleNamespace(slots=slots)
    part = _unit_rows(5376, 8, seed=4)
    fs3 = gd.check_fs3(part, G)  # type: ignore[arg-type]
    assert fs3.shape == (6048, 8) and not fs3[5376:].any()
    np.testing.assert_array_equal(fs3[:5376], part)
    with pytest.raises(ModelFileError):
        gd.check_fs3(_unit_rows(5376 + 128, 8, seed=4), G)  # type: ignore[arg-type]
