"""The alpha-axis sweep: coarse-to-fine order, the frame cache budget, supersession by
newer requests and document changes, and the blended stand-in a drag shows at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from styleclip_desktop.document import actions
from styleclip_desktop.errors import Cancelled
from styleclip_desktop.render.engine import Engine
from styleclip_desktop.render.pipeline import ModelSet
from styleclip_desktop.render.prefetch import AxisRange, StandIn, blend, sweep_order

from .helpers import CountingBackend
from .test_engine import two_text_layers

GD_AXIS = AxisRange(-15.0, 25.0, 20)  # the global-direction slider: -15..25 in steps of 0.05


def _sorted_gaps(positions: list[float], steps: int) -> list[int]:
    grid = sorted(round(p * steps) for p in positions)
    return [b - a for a, b in zip(grid, grid[1:], strict=False)]


def test_sweep_order_is_coarse_to_fine_on_the_slider_grid() -> None:
    order = sweep_order(GD_AXIS, near=3.0)
    assert len(order) == len(set(order)) == 801  # every slider position, once
    assert all(p == round(p * 20) / 20 for p in order)  # exactly the values the slider produces
    assert set(order[:2]) == {-15.0, 25.0} and order[2] == 5.0
    # Each level halves the spacing, and the first 2**k + 1 positions cover the range evenly.
    widest = 800
    for k in range(1, 8):
        gaps = _sorted_gaps(order[: 2**k + 1], 20)
        assert max(gaps) - min(gaps) <= 1 and max(gaps) <= -(-widest // 2)
        widest = max(gaps)
    # Within a level, the positions nearest the layer's alpha come first.
    assert order[3:5] == [-5.0, 15.0] and order[5] == 0.0 and order[6] == 10.0
    assert sweep_order(GD_AXIS, near=3.0, limit=9) == order[:9]
    assert sweep_order(AxisRange(-3.0, 3.0, 20), limit=3) == [-3.0, 3.0, 0.0]


def test_the_sweep_renders_the_axis_ahead_within_the_frame_cache_budget(engine: Engine, models: ModelSet) -> None:
    backend = CountingBackend(engine.renderer.backend)
    engine.renderer.backend = backend  # type: ignore[assignment]
    doc = two_text_layers(models)
    frame_bytes = engine.preview_resolution ** 2 * 3
    engine.renderer.frames.max_bytes = 24 * frame_bytes  # room for 24 preview frames; a sweep takes half
    assert engine.sweeps.frame_limit() == 12
    job = engine.sweeps.sweep(doc, "hair", GD_AXIS)
    assert job is not None and job.future.result(timeout=60) == 12
    status = engine.sweeps.status()
    assert status is not None and status["done"] == status["planned"] == 12 and status["finished"]
    assert status["positions"] == sweep_order(GD_AXIS, near=3.0, limit=12)
    assert backend.frames == 12  # one frame per position, each at the preview size
    for a in status["positions"]:  # none evicted by a later one
        assert engine.is_cached(doc, {"hair": a}, preview=True)
    assert engine.cache_stats()["frames"]["bytes"] <= engine.renderer.frames.max_bytes
    # Without a budget problem the sweep stops at its own number of frames.
    engine.renderer.frames.max_bytes = 512 * 2**20
    assert engine.sweeps.frame_limit() == 65


def test_a_drag_of_the_swept_layer_keeps_its_sweep_and_any_other_change_supersedes_it(
        engine: Engine, models: ModelSet) -> None:
    doc = two_text_layers(models)
    first = engine.sweeps.sweep(doc, "hair", GD_AXIS)
    doc.layers.get("hair").set("alpha", 7.5)  # the swept layer's own alpha: the same axis
    assert engine.sweeps.sweep(doc, "hair", GD_AXIS) is first
    doc.layers.get("smile").set("alpha", 1.0)  # another layer's alpha: every swept frame changes
    second = engine.sweeps.sweep(doc, "hair", GD_AXIS)
    assert second is not first and first is not None and first._cancel.is_set()
    third = engine.sweeps.sweep(doc, "smile", GD_AXIS)  # a newer sweep for another layer
    assert third is not second and second is not None and second._cancel.is_set()
    assert third is not None and third.future.result(timeout=60) == 65


def test_a_sweep_superseded_mid_way_stops_and_its_frames_are_never_shown(engine: Engine, models: ModelSet) -> None:
    backend = CountingBackend(engine.renderer.backend)
    engine.renderer.backend = backend  # type: ignore[assignment]
    doc = two_text_layers(models)
    gate, started = threading.Event(), threading.Event()
    inner = backend.synthesize

    def synth(s: torch.Tensor, res: int) -> np.ndarray:
        if not started.is_set():
            started.set()
            gate.wait(10)
        return inner(s, res)

    backend.synthesize = synth  # type: ignore[method-assign]
    old = engine.sweeps.sweep(doc, "hair", GD_AXIS)
    assert old is not None and started.wait(10)
    # The document changes while the sweep's first frame renders: beta of the swept layer.
    actions.set_params(doc, "hair", beta=0.08).do()
    # Until the sweep is asked for again, what it renders belongs to the old document and is never shown.
    assert engine.sweeps.stand_in(doc, None, "hair") is None
    new = engine.sweeps.sweep(doc, "hair", GD_AXIS)  # what the editor asks after every change
    assert new is not None and new is not old
    gate.set()
    with pytest.raises(Cancelled):
        old.future.result(timeout=30)  # the stale sweep stops at its next frame ...
    assert new.future.result(timeout=60) == 65
    assert backend.frames == 1 + 65  # ... after the one in flight: nothing more for the old document
    assert engine.sweeps.stand_in(doc, {"hair": -15.0}, "hair") is not None
    found = engine.sweeps.stand_in(doc, {"hair": 3.05}, "hair")
    assert found is not None and found.blended
    lower = engine.render(doc, {"hair": found.lower}, preview=True)
    upper = engine.render(doc, {"hair": found.upper}, preview=True)
    assert np.abs(found.image.astype(int) - _numpy_blend(lower, upper, found.weight)).max() <= 1


def _numpy_blend(lower: np.ndarray, upper: np.ndarray, weight: float) -> np.ndarray:
    return np.rint((1.0 - weight) * lower.astype(np.float64) + weight * upper.astype(np.float64)).astype(int)


def test_the_stand_in_blends_the_two_nearest_swept_frames_until_the_exact_one_exists(
        engine: Engine, models: ModelSet) -> None:
    doc = two_text_layers(models)
    assert engine.sweeps.stand_in(doc, {"hair": 3.05}, "hair") is None  # nothing swept yet
    job = engine.sweeps.sweep(doc, "hair", GD_AXIS)
    assert job is not None and job.future.result(timeout=60) == 65
    # 65 positions, about 0.625 apart on the slider's grid of 0.05: 3.05 lies between two of them.
    swept = sorted(sweep_order(GD_AXIS, near=3.0, limit=65))
    below, above = max(a for a in swept if a < 3.05), min(a for a in swept if a > 3.05)
    assert 0.5 <= above - below <= 0.65
    found = engine.sweeps.stand_in(doc, {"hair": 3.05}, "hair")
    assert isinstance(found, StandIn) and found.blended
    assert (found.lower, found.upper) == (below, above)
    assert found.weight == pytest.approx((3.05 - below) / (above - below))
    lower = engine.render(doc, {"hair": below}, preview=True)
    upper = engine.render(doc, {"hair": above}, preview=True)
    expected = _numpy_blend(lower, upper, found.weight)
    diff = np.abs(found.image.astype(int) - expected)
    assert found.image.shape == lower.shape == (16, 16, 3) and found.image.dtype == np.uint8
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95  # ties at .5 may round either way
    assert not np.array_equal(found.image, lower) and not np.array_equal(found.image, upper)
    # The exact preview replaces the blend once it has rendered.
    exact = engine.render(doc, {"hair": 3.05}, preview=True)
    again = engine.sweeps.stand_in(doc, {"hair": 3.05}, "hair")
    assert again is not None and not again.blended and np.array_equal(again.image, exact)
    # A swept position is exact at once, and the other layers' alphas count.
    on_grid = engine.sweeps.stand_in(doc, {"hair": above}, "hair")
    assert on_grid is not None and not on_grid.blended and np.array_equal(on_grid.image, upper)
    assert engine.sweeps.stand_in(doc, {"hair": 3.05, "smile": 0.5}, "hair") is None


def test_blend_weights_and_rounding() -> None:
    a = np.array([[[0, 10, 255]]], np.uint8)
    b = np.array([[[255, 20, 0]]], np.uint8)
    assert blend(a, b, 0.0).tolist() == a.tolist() and blend(a, b, 1.0).tolist() == b.tolist()
    assert blend(a, b, 0.5).tolist() == [[[128, 15, 128]]]  # 127.5 rounds to the even 128
    assert blend(a, b, 0.25).dtype == np.uint8


def test_hidden_layers_are_not_swept(engine: Engine, models: ModelSet) -> None:
    doc = two_text_layers(models)
    doc.layers.get("hair").set("visible", False)
    assert engine.sweeps.sweep(doc, "hair", GD_AXIS) is None and engine.sweeps.status() is None


def test_a_sweep_and_the_timeline_precompute_do_not_supersede_each_other(engine: Engine, models: ModelSet) -> None:
    doc = two_text_layers(models)
    gate = threading.Event()
    engine.worker.submit(lambda _ctx: gate.wait(10))  # both wait behind a busy worker
    keyframes = engine.precompute(doc, [{"hair": 0.0}, {"hair": 4.0}])
    sweep = engine.sweeps.sweep(doc, "hair", AxisRange(-3.0, 3.0, 20))
    gate.set()
    assert keyframes.future.result(timeout=60) == 2 and not keyframes._cancel.is_set()
    assert sweep is not None and sweep.future.result(timeout=60) == 65
    assert engine.is_cached(doc, {"hair": 4.0})  # the keyframes at full size, the sweep at the preview size
    assert engine.is_cached(doc, {"hair": 3.0}, preview=True) and not engine.is_cached(doc, {"hair": 3.0})


def test_a_drag_computes_each_frame_key_once(engine: Engine, models: ModelSet, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = two_text_layers(models)
    job = engine.sweeps.sweep(doc, "hair", GD_AXIS)
    assert job is not None and job.future.result(timeout=60) == 65
    calls: list[float] = []
    real = engine.renderer.styles_for
    monkeypatch.setattr(engine.renderer, "styles_for",
                        lambda d, alphas=None: calls.append((alphas or {})["hair"]) or real(d, alphas))
    first = engine.sweeps.stand_in(doc, {"hair": 3.05}, "hair")
    assert first is not None and first.blended and sorted(calls) == [first.lower, first.upper]
    calls.clear()
    # The next slider position between the same neighbours: nothing to compute, only the blend.
    again = engine.sweeps.stand_in(doc, {"hair": 3.0}, "hair")
    assert again is not None and again.blended and (again.lower, again.upper) == (first.lower, first.upper)
    assert calls == []
    # A position shown before may have its exact preview by now: its key is computed then.
    engine.render(doc, {"hair": 3.05}, preview=True)
    calls.clear()
    exact = engine.sweeps.stand_in(doc, {"hair": 3.05}, "hair")
    assert exact is not None and not exact.blended and calls == [3.05]
