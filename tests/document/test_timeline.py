"""Timeline sampling: exact at keys, monotone where it should be, hold as a step, frames."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from styleclip_desktop.document import (
    Document,
    GlobalDirectionParams,
    Keyframe,
    Layer,
    Timeline,
    UndoStack,
    morph,
    set_locked,
)

from .strategies import DOC_SETTINGS

times = st.floats(0, 100, allow_nan=False)
alphas = st.floats(-1e6, 1e6, allow_nan=False)
easings = st.sampled_from(["linear", "ease-in-out", "hold"])
tracks = st.lists(st.builds(Keyframe, times, alphas, easings), min_size=1, max_size=6, unique_by=lambda k: k.t)


def _timeline(keys: list[Keyframe]) -> Timeline:
    return Timeline(10.0, 24.0, {"a": keys})


@DOC_SETTINGS
@given(tracks)
def test_sampling_is_exact_at_keyframes(keys: list[Keyframe]) -> None:
    timeline = _timeline(keys)
    for key in keys:
        assert timeline.sample("a", key.t) == key.alpha


def _sorted_samples(keys: list[Keyframe], ts: list[float], easing: str) -> list[float]:
    ordered = sorted(k.t for k in keys)
    values = sorted(k.alpha for k in keys)
    timeline = _timeline([Keyframe(t, a, easing) for t, a in zip(ordered, values, strict=True)])
    samples = [timeline.sample("a", t) for t in sorted(ts)]
    assert all(s is not None for s in samples)
    return samples  # type: ignore[return-value]


@DOC_SETTINGS
@given(tracks, st.lists(times, min_size=2, max_size=30), st.sampled_from(["linear", "hold"]))
def test_monotone_keys_give_monotone_alpha(keys: list[Keyframe], ts: list[float], easing: str) -> None:
    # Exactly monotone, not just up to rounding: a scrubbed slider must never flick back.
    samples = _sorted_samples(keys, ts, easing)
    assert all(a <= b for a, b in zip(samples, samples[1:], strict=False))


@DOC_SETTINGS
@given(tracks, st.lists(times, min_size=2, max_size=30))
def test_ease_in_out_never_overshoots(keys: list[Keyframe], ts: list[float]) -> None:
    samples = _sorted_samples(keys, ts, "ease-in-out")
    lo, hi = min(k.alpha for k in keys), max(k.alpha for k in keys)
    assert all(lo <= s <= hi for s in samples)
    assert all(a <= b + 1e-9 * max(1.0, abs(b)) for a, b in zip(samples, samples[1:], strict=False))


@DOC_SETTINGS
@given(st.floats(0, 10), st.floats(0.001, 10), alphas, alphas, st.floats(0, 1, exclude_max=True))
def test_hold_is_a_step(t0: float, span: float, a0: float, a1: float, u: float) -> None:
    t1 = t0 + span
    timeline = _timeline([Keyframe(t0, a0, "hold"), Keyframe(t1, a1)])
    t = t0 + u * span
    if t < t1:
        assert timeline.sample("a", t) == a0
    assert timeline.sample("a", t1) == a1


def test_linear_and_eased_midpoints() -> None:
    timeline = _timeline([Keyframe(0.0, 0.0), Keyframe(2.0, 4.0)])
    assert timeline.sample("a", 1.0) == 2.0
    assert timeline.sample("a", 0.5) == 1.0
    eased = _timeline([Keyframe(0.0, 0.0, "ease-in-out"), Keyframe(2.0, 4.0)])
    assert eased.sample("a", 1.0) == pytest.approx(2.0)
    early = eased.sample("a", 0.5)
    assert early is not None and early < 1.0  # slow out of the first key


def test_ends_hold_and_unkeyed_layers_use_their_static_alpha() -> None:
    doc = Document(np.zeros((2, 2), np.float32), layers=[
        Layer(GlobalDirectionParams("smile"), alpha=2.5, id="s"),
        Layer(GlobalDirectionParams("hair"), alpha=1.0, id="h"),
    ])
    doc.timeline.set_track("h", [Keyframe(1.0, 5.0), Keyframe(2.0, 7.0)])
    assert doc.alpha_at("h", 0.0) == 5.0
    assert doc.alpha_at("h", 99.0) == 7.0
    assert doc.alpha_at("s", 1.5) == 2.5


def test_frames_follow_fps_times_seconds_and_cover_both_ends() -> None:
    timeline = Timeline(2.0, 12.0)
    assert timeline.frame_count == 24  # 2 s at 12 fps plays 24 frames, not 25
    assert timeline.frame_time(0) == 0.0
    assert timeline.frame_time(23) == 2.0  # the last frame is exactly the end
    assert timeline.frame_time(1) == pytest.approx(2.0 / 23)
    assert Timeline(1.0, 12.0).frame_count == 12 and Timeline(5.0, 60.0).frame_count == 300
    odd = Timeline(1.01, 10.0)  # 10.1 frames: rounded to 10, spread evenly, end exact
    assert odd.frame_count == 10 and odd.frame_time(9) == 1.01
    assert Timeline(0.25, 10.0).frame_count == 3  # 2.5 rounds half up
    assert Timeline(0.24, 10.0).frame_count == 2
    single = Timeline(0.01, 1.0)  # less than a frame: one frame, showing the end
    assert single.frame_count == 1 and single.frame_time(0) == 0.01 and single.frame_at(0.0) == 0
    with pytest.raises(IndexError):
        timeline.frame_time(24)


def test_frame_at_is_the_inverse_of_frame_time() -> None:
    for timeline in (Timeline(2.0, 12.0), Timeline(1.01, 10.0), Timeline(3.0, 7.5)):
        n = timeline.frame_count
        assert [timeline.frame_at(timeline.frame_time(i)) for i in range(n)] == list(range(n))
        assert timeline.frame_at(-1.0) == 0 and timeline.frame_at(99.0) == n - 1


def test_frame_alphas_and_morph() -> None:
    doc = Document(np.zeros((2, 2), np.float32), layers=[
        Layer(GlobalDirectionParams("smile"), alpha=4.0, id="s"),
        Layer(GlobalDirectionParams("hidden"), alpha=2.0, id="h", visible=False),
        Layer(GlobalDirectionParams("locked"), alpha=-1.0, id="l"),
    ], timeline=Timeline(1.0, 5.0))
    stack = UndoStack()
    stack.push(set_locked(doc, "l", True))
    stack.push(morph(doc))
    assert doc.timeline.keyframes("s") == (Keyframe(0.0, 0.0), Keyframe(1.0, 4.0))
    assert not doc.timeline.has_keyframes("h") and not doc.timeline.has_keyframes("l")
    assert [doc.frame_alphas(i)["s"] for i in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert doc.frame_alphas(2) == {"s": 2.0, "h": 2.0, "l": -1.0}
    stack.undo()
    assert doc.timeline.tracks == {}


def test_keyframe_validation() -> None:
    with pytest.raises(ValueError):
        Keyframe(-1.0, 0.0)
    with pytest.raises(ValueError):
        Keyframe(0.0, float("nan"))
    with pytest.raises(ValueError, match="easing"):
        Keyframe(0.0, 0.0, "bounce")
    with pytest.raises(ValueError, match="two keyframes"):
        Timeline(1.0, 1.0, {"a": [Keyframe(0.5, 1.0), Keyframe(0.5, 2.0)]})
    with pytest.raises(ValueError):
        Timeline(0.0, 24.0)
    with pytest.raises(ValueError):
        Timeline(1.0, 0.0)
