"""Global directions stored in the document: used in place of CLIP and fs3 while they fit
the loaded models and the layer, recomputed (with a notice) when they do not."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from styleclip_desktop.document import (
    DirectionSource,
    Document,
    GlobalDirectionParams,
    Layer,
    UndoStack,
    set_locked,
    set_params,
)
from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.render import stored_directions as sd
from styleclip_desktop.render.engine import Engine
from styleclip_desktop.render.pipeline import ModelSet

from .helpers import latent


def doc_of(models: ModelSet) -> Document:
    return Document(latent(models), layers=[
        Layer(GlobalDirectionParams("grey hair", beta=0.05), alpha=3.0, id="hair"),
        Layer(GlobalDirectionParams("smiling", beta=0.05), alpha=-2.0, id="smile", visible=False),
    ])


@pytest.fixture
def generator_only(models: ModelSet) -> Iterator[Engine]:
    """An engine with the generator alone: no CLIP, no fs3, no statistics."""
    e = Engine(ModelSet(G=models.G), backend="torch")
    yield e
    e.shutdown()


def stored(doc: Document, layer_id: str) -> GlobalDirectionParams:
    p = doc.layers.get(layer_id).params
    assert isinstance(p, GlobalDirectionParams)
    return p


def test_stored_directions_render_without_clip_or_fs3(engine: Engine, generator_only: Engine,
                                                      models: ModelSet) -> None:
    doc = doc_of(models)
    UndoStack().push(set_locked(doc, "smile", True))  # locked and hidden layers are stored too
    want = engine.render(doc)
    with pytest.raises(ModelFileError, match="need CLIP"):
        generator_only.render(doc)  # nothing stored yet: as before, CLIP and fs3 are needed
    assert engine.store_directions(doc) == []
    misses = generator_only.cache_stats()["ds"]["misses"]
    for layer_id, text in (("hair", "grey hair"), ("smile", "smiling")):
        p = stored(doc, layer_id)
        assert p.ds is not None and np.array_equal(p.ds, engine.renderer.direction(text, "a face", 0.05).ds)
        assert p.ds_source is not None and set(p.ds_source.models) == {"generator", "fs3", "stats", "clip"}
    assert np.array_equal(generator_only.render(doc), want)
    assert generator_only.cache_stats()["ds"]["misses"] == misses  # no direction was computed
    doc.layers.get("smile").set("visible", True)
    assert np.array_equal(generator_only.render(doc), engine.render(doc))


def test_a_new_beta_is_never_rendered_with_the_old_direction(engine: Engine, generator_only: Engine,
                                                             models: ModelSet) -> None:
    doc = doc_of(models)
    engine.store_directions(doc)
    old = stored(doc, "hair").ds
    UndoStack().push(set_params(doc, "hair", beta=0.1))
    assert stored(doc, "hair").ds is None
    with pytest.raises(ModelFileError):
        generator_only.render(doc)  # the stored ds was for beta 0.05: it must not be used
    engine.store_directions(doc)
    new = stored(doc, "hair")
    assert new.ds is not None and old is not None and not np.array_equal(new.ds, old)
    assert np.array_equal(new.ds, engine.renderer.direction("grey hair", "a face", 0.1).ds)
    assert new.ds_source is not None and new.ds_source.beta == 0.1


def test_a_direction_from_other_models_is_recomputed_with_a_notice(engine: Engine, generator_only: Engine,
                                                                   models: ModelSet) -> None:
    doc = doc_of(models)
    want = engine.render(doc)
    engine.store_directions(doc)
    p = stored(doc, "hair")
    assert p.ds_source is not None
    other = DirectionSource(p.target, p.neutral, p.beta, {**p.ds_source.models, "generator": "f00d" * 16})
    doc.layers.get("hair").set("params", dataclasses.replace(p, ds=p.ds * 5, ds_source=other))
    ours = generator_only.renderer.direction_digests()["generator"]
    notices = sd.notices(doc, generator_only.models)
    assert notices == [f"layer 'grey hair' was made with generator f00df0…, this is {ours[:6]}…; "
                       "recomputing its direction from the current fs3"]
    with pytest.raises(ModelFileError):
        generator_only.render(doc)  # without fs3 it cannot be recomputed, and is not used anyway
    assert np.array_equal(engine.render(doc), want)  # recomputed: the scaled-up ds is ignored
    assert engine.store_directions(doc) == notices
    assert stored(doc, "hair").ds_source.models["generator"] == ours  # type: ignore[union-attr]


def test_another_fs3_or_inputs_that_do_not_match_are_recomputed(engine: Engine, models: ModelSet) -> None:
    doc = doc_of(models)
    want = engine.render(doc)
    engine.store_directions(doc)
    p = stored(doc, "hair")
    assert p.ds_source is not None and p.ds is not None
    digests = engine.renderer.direction_digests()
    size = sd.style_size(models)
    assert sd.check(p, digests, size).usable
    other_fs3 = DirectionSource(p.target, p.neutral, p.beta, {**p.ds_source.models, "fs3": "0" * 64})
    verdict = sd.check(dataclasses.replace(p, ds_source=other_fs3), digests, size)
    assert (verdict.reason, verdict.recorded, verdict.current) == ("fs3", "0" * 64, digests["fs3"])
    # fs3 not loaded: it cannot contradict the stored direction.
    assert sd.check(dataclasses.replace(p, ds_source=other_fs3), {"generator": digests["generator"]}, size).usable
    for_other_text = DirectionSource("a robot", p.neutral, p.beta, p.ds_source.models)
    assert sd.check(dataclasses.replace(p, ds_source=for_other_text), digests, size).reason == "inputs"
    assert sd.check(dataclasses.replace(p, ds=p.ds[:-1]), digests, size).reason == "size"
    doc.layers.get("hair").set("params", dataclasses.replace(p, ds=p.ds * 5, ds_source=for_other_text))
    assert np.array_equal(engine.render(doc), want)


def test_store_leaves_directions_alone_without_the_models_or_when_beta_is_too_high(
        engine: Engine, generator_only: Engine, models: ModelSet) -> None:
    doc = doc_of(models)
    assert generator_only.store_directions(doc) == [] and stored(doc, "hair").ds is None
    UndoStack().push(set_params(doc, "smile", beta=1.0))  # keeps no channel
    engine.store_directions(doc)
    assert stored(doc, "hair").ds is not None and stored(doc, "smile").ds is None
