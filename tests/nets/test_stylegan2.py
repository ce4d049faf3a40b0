from __future__ import annotations

import numpy as np
import pytest
import torch

from styleclip_desktop.nets.stylegan2 import (
    Generator,
    GeneratorConfig,
    pack_styles,
    unpack_styles,
    upsample2d,
)

# METHODS.md §1: the 26 style vectors of config-f at 1024, in generator order.
FFHQ_DIMS = [512, 512] + [512] * 3 * 4 + [512, 256, 256, 256, 128, 128, 128, 64, 64, 64, 32, 32]
FFHQ_ROWS = [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9, 10, 11, 11, 12, 13, 13, 14, 15, 15, 16, 17]


def test_config_f_style_layout() -> None:
    G = Generator(GeneratorConfig())
    assert G.num_ws == 18
    assert G.style_dims == FFHQ_DIMS
    assert [s.w_row for s in G.slots] == FFHQ_ROWS
    assert sum(G.style_dims) == 9088
    assert sum(s.dim for s in G.slots if not s.is_torgb) == 6048
    assert sum(s.dim for s in G.slots if s.is_torgb) == 3040
    assert [s.index for s in G.slots if s.is_torgb] == [1, 4, 7, 10, 13, 16, 19, 22, 25]


def _direct_wplus(G: Generator, ws: torch.Tensor, stop: int | None = None) -> torch.Tensor:
    """Block-wise W+ synthesis written independently of the slot table: each block reads
    its convs' rows from a running index and its toRGB from the row after them."""
    x = G.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
    img = None
    conv_iter = iter(G.convs)
    w_idx = 0
    for res, torgb in zip(G.config.resolutions, G.torgbs, strict=True):
        n_conv = 1 if res == 4 else 2
        for k in range(n_conv):
            conv = next(conv_iter)
            x = conv(x, conv.affine(ws[:, w_idx + k]))
        y = torgb(x, torgb.affine(ws[:, w_idx + n_conv]))
        img = y if img is None else upsample2d(img, G.filter) + y
        w_idx += n_conv
        if stop == res:
            break
    assert img is not None
    return img


@torch.no_grad()
def test_s_synthesis_equals_direct_wplus(tiny_G: Generator) -> None:
    gen = torch.Generator().manual_seed(1)
    ws = tiny_G.mapping(torch.randn(3 * tiny_G.num_ws, 512, generator=gen)).reshape(3, tiny_G.num_ws, 512)
    via_s = tiny_G.synthesize(tiny_G.w_to_s(ws))
    direct = _direct_wplus(tiny_G, ws)
    assert via_s.shape == (3, 3, 32, 32)
    assert torch.allclose(via_s, direct, atol=1e-5, rtol=0)
    # Different rows must matter: W+ with distinct rows is not the same as a broadcast w.
    assert (tiny_G(ws) - tiny_G(ws[:, :1].expand_as(ws))).abs().max() > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("res", [4, 8, 16])
def test_early_exit_is_the_skip_sum(tiny_G: Generator, res: int) -> None:
    ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=4))
    early = tiny_G.synthesize(tiny_G.w_to_s(ws), out_res=res)
    assert early.shape == (2, 3, res, res)
    assert torch.allclose(early, _direct_wplus(tiny_G, ws, stop=res), atol=1e-5, rtol=0)


@torch.no_grad()
def test_deterministic_and_packing(tiny_G: Generator) -> None:
    ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=9))
    a, b = tiny_G(ws), tiny_G(ws)
    assert torch.equal(a, b)
    s = tiny_G.w_to_s(ws)
    flat = pack_styles(s)
    assert flat.shape == (2, sum(tiny_G.style_dims))
    assert all(torch.equal(x, y) for x, y in zip(s, unpack_styles(flat, tiny_G.style_dims), strict=True))


def test_truncation_and_shape_checks(tiny_G: Generator) -> None:
    w = tiny_G.sample_w(4, seed=0, psi=1.0)
    w0 = tiny_G.sample_w(4, seed=0, psi=0.0)
    assert torch.allclose(w0, tiny_G.w_avg.expand_as(w0), atol=1e-6)
    wh = tiny_G.sample_w(4, seed=0, psi=0.5)
    assert torch.allclose(wh, (w + w0) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="W\\+ must be"):
        tiny_G.w_to_s(torch.zeros(1, 3, 512))
    with pytest.raises(ValueError, match="style"):
        tiny_G.synthesize([torch.zeros(1, 5)] * len(tiny_G.slots))
    with pytest.raises(ValueError, match="out_res"):
        tiny_G.synthesize(tiny_G.w_to_s(w[:1]), out_res=12)
    assert np.isfinite(tiny_G(tiny_G.broadcast_w(w)).numpy()).all()
