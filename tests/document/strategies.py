"""Hypothesis strategies and settings for the document tests."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from styleclip_desktop.document import (
    EASINGS,
    Alignment,
    DirectionSource,
    Document,
    GlobalDirectionParams,
    Keyframe,
    Layer,
    LayerParams,
    MapperParams,
    OptimizationParams,
    SourcePhoto,
    Timeline,
)
from styleclip_desktop.document.masks import MASK_SIZE, START_RESOLUTIONS, LayerMask

# Small by default so the folder runs in well under 30 s on two shared cores; raise
# STYLECLIP_DOC_EXAMPLES for a thorough run.
settings.register_profile(
    "styleclip-document",
    max_examples=int(os.environ.get("STYLECLIP_DOC_EXAMPLES", "25")),
    deadline=None,
    database=None,  # write nothing into the source tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DOC_SETTINGS = settings.get_profile("styleclip-document")


def fast(n: int) -> settings:
    """The profile, with at most `n` examples (for the slower tests)."""
    return settings(DOC_SETTINGS, max_examples=min(n, DOC_SETTINGS.max_examples * 4))


texts = st.text(min_size=1, max_size=10).filter(lambda s: s.strip() != "")
digests = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
f32 = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)


def f32_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=f32)


@st.composite
def params_for(draw: st.DrawFn, shape: tuple[int, int]) -> LayerParams:
    kind = draw(st.sampled_from(["global_direction", "mapper", "optimization"]))
    if kind == "global_direction":
        target, neutral, beta = draw(texts), draw(texts), draw(st.floats(0, 1))
        if draw(st.booleans()):
            return GlobalDirectionParams(target, neutral, beta)
        # A stored direction, resolved for these inputs or (as a hand-edited file might
        # have it) for others.
        made_for = (target, neutral, beta) if draw(st.booleans()) else (draw(texts), draw(texts), draw(st.floats(0, 1)))
        models = {"generator": draw(digests), **draw(st.dictionaries(texts, digests, max_size=3))}
        return GlobalDirectionParams(target, neutral, beta, ds=draw(f32_arrays((draw(st.integers(1, 9)),))),
                                     ds_source=DirectionSource(*made_for, models))
    if kind == "mapper":
        return MapperParams(draw(texts), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    delta = draw(st.none() | f32_arrays(shape))
    return OptimizationParams(
        draw(texts), draw(st.floats(0, 1)), draw(st.floats(0, 1)), draw(st.integers(1, 1000)),
        draw(st.integers(0, 2**63 - 1)), delta,
    )


@st.composite
def layers_for(draw: st.DrawFn, shape: tuple[int, int], max_size: int = 4) -> list[Layer]:
    ids = draw(st.lists(st.text(min_size=1, max_size=8).filter(str.strip), max_size=max_size, unique=True))
    return [
        Layer(draw(params_for(shape)), name=draw(texts), alpha=draw(finite), visible=draw(st.booleans()),
              locked=draw(st.booleans()), id=layer_id, mask=draw(masks()))
        for layer_id in ids
    ]


@st.composite
def masks(draw: st.DrawFn) -> LayerMask | None:
    """No mask, or a mask of a few painted rectangles with random settings."""
    if not draw(st.booleans()):
        return None
    pixels = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
    for _ in range(draw(st.integers(0, 3))):
        y, x = draw(st.integers(0, MASK_SIZE - 1)), draw(st.integers(0, MASK_SIZE - 1))
        pixels[y: y + draw(st.integers(1, 200)), x: x + draw(st.integers(1, 200))] = draw(st.integers(1, 255))
    return LayerMask(pixels, feather=draw(st.floats(0.0, 32.0)), inverted=draw(st.booleans()),
                     enabled=draw(st.booleans()), start_res=draw(st.sampled_from(START_RESOLUTIONS)))


@st.composite
def timelines_for(draw: st.DrawFn, layer_ids: list[str]) -> Timeline:
    duration = draw(st.floats(0.01, 3600))
    timeline = Timeline(duration, draw(st.floats(0.5, 240)))
    for layer_id in layer_ids:
        keys = draw(st.lists(
            st.builds(Keyframe, st.floats(0, duration * 1.5), finite, st.sampled_from(EASINGS)),
            max_size=4, unique_by=lambda k: k.t,
        ))
        timeline.set_track(layer_id, keys, force=True)
    return timeline


@st.composite
def sources(draw: st.DrawFn) -> SourcePhoto | None:
    choice = draw(st.sampled_from(["none", "embedded", "referenced"]))
    if choice == "none":
        return None
    # The last name was not valid UTF-8 on disk; Python keeps it as a lone surrogate.
    names = ["me.jpg", "C:\\photos\\Me.PNG", "/tmp/noext", "x.tar.gz", "/p/\udcff.jpg"]
    path = draw(st.sampled_from(names) | st.text(max_size=20))
    data = draw(st.binary(max_size=64))
    photo = SourcePhoto.from_bytes(path, data)
    return photo if choice == "embedded" else SourcePhoto(photo.path, photo.sha256, None)


@st.composite
def documents(draw: st.DrawFn, max_layers: int = 4) -> Document:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 6)))
    layers = draw(layers_for(shape, max_layers))
    alignment = draw(st.none() | st.builds(
        Alignment,
        hnp.arrays(np.float64, (3, 3), elements=st.floats(-1e9, 1e9, allow_nan=False)),
        st.integers(1, 65536),
    ))
    generator_delta = draw(st.none() | st.dictionaries(
        texts, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3).flatmap(f32_arrays), max_size=3,
    ))
    return Document(
        draw(f32_arrays(shape)),
        source=draw(sources()),
        alignment=alignment,
        generator_delta=generator_delta,
        layers=layers,
        timeline=draw(timelines_for([layer.id for layer in layers])),
        models=draw(st.dictionaries(texts, st.text(alphabet="0123456789abcdef", min_size=1, max_size=64), max_size=3)),
        seed=draw(st.none() | st.integers(0, 2**63 - 1)),
        description=draw(st.text(max_size=20)),
        synthetic=draw(st.booleans()),
        uid=draw(texts),
    )


# -- operations for the undo property ----------------------------------------------------

merge_keys = st.sampled_from([None, "drag-a", "drag-b"])
picks = st.integers(0, 10)

operations: st.SearchStrategy[tuple[Any, ...]] = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 10**9), st.integers(-1, 6), st.booleans(), finite),
    st.tuples(st.just("remove"), picks),
    st.tuples(st.just("move"), picks, st.integers(-2, 8)),
    st.tuples(st.just("duplicate"), picks),
    st.tuples(st.just("rename"), picks, texts),
    st.tuples(st.just("alpha"), picks, finite, merge_keys),
    st.tuples(st.just("visible"), picks),
    st.tuples(st.just("lock"), picks, st.booleans()),
    st.tuples(st.just("params"), picks, st.floats(0, 1), st.booleans(), merge_keys),
    st.tuples(st.just("key"), picks, st.floats(0, 5), finite, st.sampled_from(EASINGS), merge_keys),
    st.tuples(st.just("unkey"), picks, picks),
    st.tuples(st.just("clear"), picks),
    st.tuples(st.just("duration"), st.floats(0.1, 10), merge_keys),
    st.tuples(st.just("fps"), st.floats(1, 60)),
    st.tuples(st.just("morph")),
    st.tuples(st.just("latent"), st.integers(0, 10**9)),
    st.tuples(st.just("doc"), st.text(max_size=8), st.booleans()),
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
)
