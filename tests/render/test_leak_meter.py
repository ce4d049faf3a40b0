"""The leak meter's numbers equal an independent recomputation from the two renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from styleclip_desktop.document import Document, GlobalDirectionParams, Layer, MapperParams
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import leak
from styleclip_desktop.nets.stylegan2 import to_uint8, unpack_styles
from styleclip_desktop.render import leak_meter
from styleclip_desktop.render.pipeline import ModelSet


def _doc(models: ModelSet) -> Document:
    G = models.G
    latent = G.broadcast_w(G.sample_w(1, seed=3))[0].numpy()
    return Document(latent, layers=[
        Layer(GlobalDirectionParams("a face with grey hair", beta=0.05), alpha=3.0, id="hair"),
        Layer(GlobalDirectionParams("a smiling face", beta=0.05), alpha=2.0, id="smile"),
    ])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def test_the_report_is_the_clip_change_along_each_direction(engine: Any, models: ModelSet) -> None:
    doc = _doc(models)
    panel = leak.LeakPanel("a face", {"age": "an old face", "glasses": "a face with glasses"})
    got = leak_meter.measure(engine, doc, "hair", panel=panel)

    # Independently: S with and without the layer, the preview exit, CLIP on the uint8 pictures.
    G, clip, r = models.G, models.clip, engine.renderer
    ws = torch.from_numpy(np.array(doc.latent))[None]
    with torch.no_grad():
        s0 = torch.cat(G.w_to_s(ws), 1)
        smile = r.direction("a smiling face", "a face", 0.05).ds
        hair = r.direction("a face with grey hair", "a face", 0.05).ds
        without = s0 + 2.0 * torch.from_numpy(smile)
        with_layer = without + 3.0 * torch.from_numpy(hair)
        res = engine.preview_resolution
        pics = [to_uint8(G.synthesize(unpack_styles(s, G.style_dims), out_res=res))[0] for s in (with_layer, without)]
        images = torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        e = clip.encode_image(images).double().numpy()
    change = e[0] - e[1]
    t = {k: np.asarray(clip.text_embedding(k), np.float64) for k in
         ("a face", "an old face", "a face with glasses", "a face with grey hair")}
    assert got.attributes["age"] == pytest.approx(change @ _unit(t["an old face"] - t["a face"]), abs=1e-4)
    assert got.attributes["glasses"] == pytest.approx(change @ _unit(t["a face with glasses"] - t["a face"]), abs=1e-4)
    assert got.target == "a face with grey hair"
    assert got.target_change == pytest.approx(change @ _unit(t["a face with grey hair"] - t["a face"]), abs=1e-4)
    assert got.identity_by == leak.CLIP_IMAGE
    assert got.identity == pytest.approx(float(_unit(e[0]) @ _unit(e[1])), abs=1e-5)
    assert any("identity" in line and "CLIP image cosine" in line for line in got.lines())


def test_identity_uses_arcface_when_it_is_loaded(models: ModelSet) -> None:
    from dataclasses import replace

    from styleclip_desktop.nets.irse import TINY_IRSE, ArcFace, randomize_
    from styleclip_desktop.render.engine import Engine

    arcface = randomize_(ArcFace(TINY_IRSE), seed=0).eval()
    with_arcface = replace(models)
    with_arcface.arcface = arcface  # type: ignore[attr-defined]
    eng = Engine(with_arcface, backend="torch")
    try:
        got = leak_meter.measure(eng, _doc(models), "smile",
                                 panel=leak.LeakPanel("a face", {"age": "an old face"}))
        faces = eng.faces(eng.snapshot(_doc(models)), [{}, {"smile": 0.0}], preview=True)
        with torch.no_grad():
            ids = arcface.identity_features(leak_meter.to_images(faces)).numpy()
        assert got.identity_by == leak.ARCFACE
        assert got.identity == pytest.approx(float(_unit(ids[0]) @ _unit(ids[1])), abs=1e-5)
    finally:
        eng.shutdown()


def test_a_layer_without_text_has_no_target_and_a_missing_layer_is_an_error(engine: Any, models: ModelSet) -> None:
    doc = _doc(models)
    got = leak_meter.measure(engine, doc, "smile", panel=leak.LeakPanel("a face", {"age": "an old face"}))
    assert got.target == "a smiling face"
    mapper = MapperParams("afro")
    assert leak_meter._target(mapper, "a face") is None
    with pytest.raises(UserError, match="not in the document"):
        leak_meter.measure(engine, doc, "nope")


def test_the_built_in_panel_lists_the_attributes_and_a_broken_one_is_clear(tmp_path: Path) -> None:
    panel = leak.load_panel()
    assert {"age", "gender", "smile", "glasses", "head_pose", "lighting", "background"} <= set(panel.attributes)
    bad = tmp_path / "panel.toml"
    bad.write_text("[attributes]\n")
    with pytest.raises(UserError, match="lists no attributes"):
        leak.load_panel(bad)
