"""Masked layers: the edit acts where its mask is, blended in the generator's feature space.

Exactness comes from `torch.lerp` returning its end points: an all-ones mask renders the
unmasked layer bit for bit, an all-zeros mask the picture without it, and far from a
feathered mask's edge the picture is the unedited one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styleclip_desktop.document import (
    MASK_SIZE,
    Document,
    GlobalDirectionParams,
    Layer,
    LayerMask,
    OptimizationParams,
)
from styleclip_desktop.nets.stylegan2 import Generator, pack_styles, unpack_styles
from styleclip_desktop.render.engine import Engine
from styleclip_desktop.render.pipeline import MASKED_ON_TORCH, ModelSet, Renderer
from styleclip_desktop.weights.synthetic import tiny_generator

from .helpers import latent


@pytest.fixture(scope="module")
def G64() -> Generator:
    return tiny_generator(64, seed=0)


def _branches(G: Generator, seed: int = 1, scale: float = 2.0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    with torch.no_grad():
        s0 = pack_styles(G.w_to_s(G.broadcast_w(G.sample_w(1, seed=seed))))
        gen = torch.Generator().manual_seed(seed)
        s1 = s0 + scale * torch.randn(s0.shape, generator=gen)
    return unpack_styles(s0, G.style_dims), unpack_styles(s1, G.style_dims)


def _corner_mask(size: int, feather: float = 0.0) -> LayerMask:
    px = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
    px[: size, : size] = 255
    return LayerMask(px, feather=feather)


def _tensor(mask: LayerMask) -> torch.Tensor:
    return torch.from_numpy(np.array(mask.coverage(), np.float32))[None, None]


@pytest.mark.parametrize("start", [4, 16, 32, 64])
def test_end_point_masks_render_exactly_with_and_without_the_layer(G64: Generator, start: int) -> None:
    b0, b1 = _branches(G64)
    ones, zeros = torch.ones(1, 1, MASK_SIZE, MASK_SIZE), torch.zeros(1, 1, MASK_SIZE, MASK_SIZE)
    with torch.no_grad():
        assert torch.equal(G64.synthesize_masked([b0, b1], [ones], start), G64.synthesize(b1))
        assert torch.equal(G64.synthesize_masked([b0, b1], [zeros], start), G64.synthesize(b0))
        # The preview's early exit, and one that stops before the start resolution.
        assert torch.equal(G64.synthesize_masked([b0, b1], [ones], start, out_res=16), G64.synthesize(b1, out_res=16))
        assert torch.equal(G64.synthesize_masked([b0, b1], [zeros], start, out_res=8), G64.synthesize(b0, out_res=8))


def test_three_branches_compose_in_stack_order_with_exact_end_points(G64: Generator) -> None:
    b0, b1 = _branches(G64)
    _, b2 = _branches(G64, seed=2)
    ones, zeros = torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(G64.synthesize_masked([b0, b1, b2], [ones, ones], 16), G64.synthesize(b2))
        assert torch.equal(G64.synthesize_masked([b0, b1, b2], [ones, zeros], 16), G64.synthesize(b1))
        assert torch.equal(G64.synthesize_masked([b0, b1, b2], [zeros, zeros], 16), G64.synthesize(b0))


def test_far_outside_a_feathered_mask_the_picture_is_unedited(G64: Generator) -> None:
    b0, b1 = _branches(G64)
    mask = _corner_mask(128, feather=8.0)  # the top-left quarter of the face, softened
    with torch.no_grad():
        masked = G64.synthesize_masked([b0, b1], [_tensor(mask)], 32)
        base, edited = G64.synthesize(b0), G64.synthesize(b1)
    far = (slice(None), slice(None), slice(40, None), slice(40, None))
    assert float((masked - base)[far].abs().max()) * 127.5 < 1.0  # within 1/255 of the unedited render
    inside = (slice(None), slice(None), slice(0, 8), slice(0, 8))
    assert float((masked - edited)[inside].abs().mean()) < 0.1 * float((edited - base)[inside].abs().mean())


@pytest.mark.parametrize("differs", ["last torgb", "first conv"])
def test_units_whose_styles_agree_run_once(G64: Generator, monkeypatch: pytest.MonkeyPatch, differs: str) -> None:
    from styleclip_desktop.nets.stylegan2 import StyledConv, ToRGB

    b0, _ = _branches(G64)
    b1 = list(b0)
    i = -1 if differs == "last torgb" else 0
    b1[i] = b0[i] + 1.0
    calls: list[str] = []
    for cls in (StyledConv, ToRGB):
        real = cls.apply_modulation
        monkeypatch.setattr(cls, "apply_modulation",
                            lambda self, *a, _real=real, _n=cls.__name__: calls.append(_n) or _real(self, *a))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :16, :16] = 1.0
    with torch.no_grad():
        out = G64.synthesize_masked([b0, b1], [mask], 64)
        ran = len(calls)
        assert not torch.equal(out, G64.synthesize(b0))
    calls = calls[:ran]
    units = len(G64.slots)
    if differs == "last torgb":
        # The branches agree up to the last unit: everything runs once, that one blended.
        assert len(calls) == units
    else:
        # They part at the first unit: below 64 px and at the first unit there (where they
        # are blended) each branch runs; after it the agreeing units run once.
        below = sum(1 for slot in G64.slots if slot.resolution < 64)
        assert len(calls) == units + below + 1


def _doc(models: ModelSet, mask: LayerMask | None, alpha: float = 3.0) -> Document:
    return Document(latent(models), layers=[
        Layer(GlobalDirectionParams("grey hair", beta=0.0), alpha=alpha, id="hair", mask=mask),
    ])


def test_the_renderer_uses_the_mask_and_keys_frames_by_it(models: ModelSet) -> None:
    r = Renderer(models)
    plain = r.render(_doc(models, None))
    without = r.render(_doc(models, None, alpha=0.0))
    assert not np.array_equal(plain, without)
    assert np.array_equal(r.render(_doc(models, LayerMask.filled(255))), plain)
    assert np.array_equal(r.render(_doc(models, LayerMask.filled(0))), without)
    assert np.array_equal(r.render(_doc(models, LayerMask.filled(0, enabled=False))), plain)
    inverted = LayerMask.filled(0, inverted=True)
    assert np.array_equal(r.render(_doc(models, inverted)), plain)

    corner = _corner_mask(160)
    masked = r.render(_doc(models, corner))
    assert not np.array_equal(masked, plain) and not np.array_equal(masked, without)
    assert np.abs(masked[:4, :4].astype(int) - plain[:4, :4]).mean() < np.abs(
        without[:4, :4].astype(int) - plain[:4, :4]).mean()
    # Another mask is another frame (the cache is keyed by the mask too).
    other = r.render(_doc(models, _corner_mask(160).with_changes(inverted=True)))
    assert not np.array_equal(other, masked)
    assert r.frame_key(_doc(models, corner), None, 32) != r.frame_key(_doc(models, None), None, 32)


def test_a_masked_w_space_layer_renders_through_the_same_path(models: ModelSet) -> None:
    rng = np.random.RandomState(0)
    delta = (0.3 * rng.randn(*latent(models).shape)).astype(np.float32)

    def doc(mask: LayerMask | None) -> Document:
        return Document(latent(models), layers=[Layer(OptimizationParams("a smile", delta=delta), mask=mask)])

    r = Renderer(models)
    plain, masked = r.render(doc(None)), r.render(doc(_corner_mask(256)))
    base = r.render(Document(latent(models)))
    assert not np.array_equal(plain, masked)
    assert np.abs(masked[-3:, -3:].astype(int) - base[-3:, -3:]).max() <= 1


def test_previews_and_batches_take_the_masked_path(models: ModelSet) -> None:
    engine = Engine(models, backend="torch")
    try:
        doc = _doc(models, _corner_mask(200, feather=4.0))
        frames = engine.renderer.faces(doc, [{"hair": a} for a in (0.0, 1.5, 3.0)], 16)
        singles = [engine.renderer.faces(Document(doc.latent, layers=[
            Layer(GlobalDirectionParams("grey hair", beta=0.0), alpha=a, id="hair", mask=doc.layers[0].mask)]),
            [None], 16)[0] for a in (0.0, 1.5, 3.0)]
        for batched, single in zip(frames, singles, strict=True):
            assert np.abs(batched.astype(int) - single).max() <= 1
        assert engine.is_cached(doc, {"hair": 1.5}, preview=False) is False
        engine.render(doc)
        assert engine.is_cached(doc)
    finally:
        engine.shutdown()


def test_onnx_engines_render_masked_layers_with_torch_and_say_so(onnx_engine: Engine, models: ModelSet) -> None:
    doc = _doc(models, _corner_mask(200))
    assert onnx_engine.renderer.torch_only_notice(doc) == MASKED_ON_TORCH
    assert onnx_engine.renderer.torch_only_notice(_doc(models, None)) is None
    torch_engine = Engine(models, backend="torch")
    try:
        assert np.array_equal(onnx_engine.render(doc), torch_engine.render(doc))
    finally:
        torch_engine.shutdown()


@pytest.mark.parametrize("shape", ["corner", "inverse corner", "two masks", "empty", "full"])
def test_blending_only_inside_the_box_gives_the_same_numbers(shape: str) -> None:
    from styleclip_desktop.nets.stylegan2 import BlendedScale, blend_branches, blend_support

    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(2, 5, 1, 1, generator=gen) for _ in range(3 if shape == "two masks" else 2)]
    x = torch.randn(2, 5, 16, 16, generator=gen)
    m = torch.zeros(1, 1, 16, 16)
    m[..., 2:6, 3:9] = 1.0
    m[..., 6, 3:9] = 0.5
    masks = {"corner": [m], "inverse corner": [1.0 - m], "two masks": [m, m.flip(-1)],
             "empty": [torch.zeros_like(m)], "full": [torch.ones_like(m)]}[shape]
    base, box = blend_support(masks)
    if shape == "inverse corner":
        assert base == 1 and box == (slice(2, 7), slice(3, 9))
    if shape in ("empty", "full"):
        assert box is None
    assert torch.equal(BlendedScale(values, masks, base, box)(x), x * blend_branches(values, masks))
