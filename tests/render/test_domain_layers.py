"""Domain layers: the generator moved by a weight delta at the layer's alpha, through the
one render path, with everything else stacked on the adapted generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from styleclip_desktop.document import (
    Alignment,
    Document,
    DomainParams,
    GlobalDirectionParams,
    Layer,
    SourcePhoto,
    UndoStack,
    actions,
    load_project,
    save_project,
)
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import domain_file
from styleclip_desktop.methods.nada_layers import apply_delta, row_parameters
from styleclip_desktop.render.engine import Engine
from styleclip_desktop.render.pipeline import DOMAIN_ON_TORCH, ModelSet, Renderer
from styleclip_desktop.weights.synthetic import tiny_generator, write_rosinality_pt

from .helpers import latent


def _delta(models: ModelSet, rows: tuple[int, ...] = (2, 5), scale: float = 0.3) -> dict[str, np.ndarray]:
    gen = torch.Generator().manual_seed(7)
    return {name: (scale * torch.randn(p.shape, generator=gen)).numpy().astype(np.float16)
            for name, p in row_parameters(models.G, rows).items()}


def _doc(models: ModelSet, delta: dict[str, np.ndarray], alpha: float = 1.0, **layers: float) -> Document:
    stack = [Layer(DomainParams("a pencil sketch", delta=delta, rows=(2, 5)), alpha=alpha, id="domain")]
    stack += [Layer(GlobalDirectionParams(text, beta=0.0), alpha=a, id=text) for text, a in layers.items()]
    return Document(latent(models), layers=stack)


def test_alpha_zero_is_the_base_and_alpha_one_the_adapted_generator(models: ModelSet) -> None:
    delta = _delta(models)
    r = Renderer(models)
    base = r.render(Document(latent(models)))
    assert np.array_equal(r.render(_doc(models, delta, 0.0)), base)
    adapted = Renderer(ModelSet(G=apply_delta(models.G, delta, 1.0), clip=models.clip, fs3=models.fs3,
                                stats=models.stats))
    one = r.render(_doc(models, delta, 1.0))
    assert np.array_equal(one, adapted.render(Document(latent(models))))
    assert not np.array_equal(one, base)
    half = r.render(_doc(models, delta, 0.5))
    assert not np.array_equal(half, one) and not np.array_equal(half, base)
    assert models.G is r.G and r.generator_for(Document(latent(models))) is models.G  # the base is untouched


def test_text_edits_apply_to_the_adapted_generator(models: ModelSet) -> None:
    delta = _delta(models)
    r = Renderer(models)
    stacked = r.render(_doc(models, delta, 1.0, **{"grey hair": 3.0}))
    adapted = Renderer(ModelSet(G=apply_delta(models.G, delta, 1.0), clip=models.clip, fs3=models.fs3,
                                stats=models.stats))
    direct = adapted.render(Document(latent(models), layers=[
        Layer(GlobalDirectionParams("grey hair", beta=0.0), alpha=3.0, id="grey hair")]))
    assert np.array_equal(stacked, direct)


def test_frames_are_keyed_by_the_domain_alpha(models: ModelSet) -> None:
    r = Renderer(models)
    doc = _doc(models, _delta(models), 1.0)
    frames = r.faces(doc, [{"domain": 0.0}, {"domain": 0.5}, {"domain": 1.0}, {"domain": 0.5}], 16)
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
    assert frames[1] is frames[3]
    assert r.frame_key(doc, {"domain": 0.5}, 16) != r.frame_key(doc, {"domain": 1.0}, 16)


def test_a_domain_layer_is_not_pasted_back_unless_asked(models: ModelSet) -> None:
    import io

    from PIL import Image

    photo = np.full((80, 60, 3), 120, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    source = SourcePhoto.from_bytes("photo.png", buf.getvalue())
    alignment = Alignment(np.array([[0.5, 0.0, -5.0], [0.0, 0.5, -10.0], [0.0, 0.0, 1.0]]), 32)
    r = Renderer(models)
    doc = _doc(models, _delta(models))
    doc.source, doc.alignment = source, alignment
    assert r.render(doc, paste_back=True).shape == (32, 32, 3)  # the crop: a domain changes the whole look
    UndoStack().push(actions.set_params(doc, "domain", paste_back=True))
    assert r.render(doc, paste_back=True).shape == (80, 60, 3)


def test_domain_layers_round_trip_through_projects_and_undo(models: ModelSet, tmp_path: Path) -> None:
    delta = _delta(models)
    doc = Document(latent(models))
    stack = UndoStack()
    stack.push(actions.add_layer(doc, DomainParams("a werewolf", delta=delta, rows=(2, 5), steps=12)))
    back = load_project(save_project(doc, tmp_path / "domain.scproj"))
    p = back.layers[0].params
    assert isinstance(p, DomainParams) and p == doc.layers[0].params and p.steps == 12
    assert all(a.dtype == np.float16 for a in p.delta.values())
    assert np.array_equal(Renderer(models).render(back), Renderer(models).render(doc))
    stack.undo()
    assert len(doc.layers) == 0


def test_domain_files_save_load_and_refuse_bad_ones(models: ModelSet, tmp_path: Path) -> None:
    params = DomainParams("a pencil sketch", delta=_delta(models), rows=(2, 5), base="ab" * 32, steps=3)
    path = domain_file.save_domain(tmp_path / "sketch.domain", params)
    assert domain_file.load_domain_layer(path, models.G, "ab" * 32) == params
    with pytest.raises(UserError, match="another generator"):
        domain_file.load_domain_layer(path, models.G, "cd" * 32)
    with pytest.raises(UserError, match="does not fit"):
        domain_file.load_domain_layer(path, tiny_generator(32, seed=0, channel_max=32), "")
    broken = tmp_path / "broken.domain"
    broken.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match="not a usable domain file"):
        domain_file.load_domain_layer(broken, models.G)


def test_a_published_nada_generator_loads_as_a_domain_layer(models: ModelSet, tmp_path: Path) -> None:
    """A rosinality-layout g_ema as the published trainer saves it ({"g_ema", "g_optim"},
    no latent_avg) becomes a delta that renders what the adapted generator renders."""
    delta = _delta(models, rows=(1, 4))
    adapted = apply_delta(models.G, delta, 1.0)
    path = tmp_path / "sketch.pt"
    write_rosinality_pt(adapted, path)
    ckpt = torch.load(path, weights_only=False)
    torch.save({"g_ema": ckpt["g_ema"], "g_optim": {"state": {}, "param_groups": [{"lr": 0.0016}]}}, path)
    params = domain_file.load_domain_layer(path, models.G, "")
    assert params.origin == "sketch.pt" and set(params.delta) == set(delta)
    r = Renderer(models)
    layered = r.render(Document(latent(models), layers=[Layer(params, id="d")]))
    direct = Renderer(ModelSet(G=adapted)).render(Document(latent(models)))
    assert np.abs(layered.astype(int) - direct).max() <= 1  # the recomputed delta is rounded to float16
    other = tmp_path / "other.pt"
    write_rosinality_pt(tiny_generator(32, seed=5), other)
    with pytest.raises(UserError, match="different base generator"):
        domain_file.load_domain_layer(other, models.G, "")


def test_onnx_engines_render_domain_layers_with_torch_and_say_so(onnx_engine: Engine, models: ModelSet) -> None:
    doc = _doc(models, _delta(models))
    assert onnx_engine.renderer.torch_only_notice(doc) == DOMAIN_ON_TORCH
    torch_engine = Engine(models, backend="torch")
    try:
        assert np.array_equal(onnx_engine.render(doc), torch_engine.render(doc))
    finally:
        torch_engine.shutdown()
