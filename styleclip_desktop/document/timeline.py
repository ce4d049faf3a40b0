"""The animation timeline: keyframes of each layer's alpha over time.

A layer with keyframes takes its alpha from them; a layer without keeps its static
`alpha`. Before the first keyframe the first value holds, after the last the last value
holds. Each keyframe's `easing` shapes the segment that starts at it:

- "linear": straight interpolation to the next keyframe;
- "ease-in-out": smoothstep (slow out of one key, slow into the next), still monotone;
- "hold": keep this key's value until the next keyframe's time, then jump (a step).

Frames: an animation of `duration` seconds at `fps` has `frame_count(duration, fps)`
frames, duration * fps rounded to the nearest whole number (halves up), at least 1, so
that it plays for `duration` seconds at `fps`. Frame 0 is t = 0 and the last frame is
exactly t = duration: frame i sits at duration * i / (n - 1). The sweep thus takes n - 1
steps of duration / (n - 1) seconds each, slightly more than 1 / fps, so that both ends
are shown: an exported animation starts on the unedited face and ends on the full edit.
A single frame shows the end (the full edit). The timeline, the exporters and the GUI's
playhead all count and place frames with the functions here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from styleclip_desktop.document import validators as v
from styleclip_desktop.document.events import EventedModel

LINEAR = "linear"
EASE_IN_OUT = "ease-in-out"
HOLD = "hold"
EASINGS = (LINEAR, EASE_IN_OUT, HOLD)

MAX_DURATION_S = 3600.0
MAX_FPS = 240.0


@dataclass(frozen=True)
class Keyframe:
    """A layer's alpha at time `t` (seconds), and how to travel to the next keyframe."""

    t: float
    alpha: float
    easing: str = LINEAR

    def __post_init__(self) -> None:
        t = v.finite_float(self.t)
        if t < 0:
            raise ValueError(f"a keyframe time must be >= 0 s, got {t}")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "alpha", v.finite_float(self.alpha))
        if self.easing not in EASINGS:
            raise ValueError(f"unknown easing {self.easing!r}; use one of {', '.join(EASINGS)}")


def ease(easing: str, u: float) -> float:
    """Map segment progress u in [0, 1] to interpolation weight in [0, 1]."""
    if easing == LINEAR:
        return u
    if easing == EASE_IN_OUT:
        return u * u * (3.0 - 2.0 * u)
    if easing == HOLD:
        return 0.0
    raise ValueError(f"unknown easing {easing!r}")


def sample_keyframes(keys: tuple[Keyframe, ...], t: float) -> float:
    """The alpha of a non-empty, time-sorted keyframe track at time t (exact at keys)."""
    t = v.finite_float(t)
    if t <= keys[0].t:
        return keys[0].alpha
    if t >= keys[-1].t:
        return keys[-1].alpha
    i = bisect.bisect_right([k.t for k in keys], t) - 1
    k0, k1 = keys[i], keys[i + 1]
    if t == k0.t:
        return k0.alpha
    u = (t - k0.t) / (k1.t - k0.t)
    value = k0.alpha + (k1.alpha - k0.alpha) * ease(k0.easing, u)
    # Rounding can overshoot the segment's end value by an ulp; clamping keeps
    # sampling monotone across the keyframe.
    lo, hi = min(k0.alpha, k1.alpha), max(k0.alpha, k1.alpha)
    return min(max(value, lo), hi)


def normalise_track(keys: Iterable[Keyframe]) -> tuple[Keyframe, ...]:
    """Sort by time; two keyframes at the same time are refused."""
    out = sorted(keys, key=lambda k: k.t)
    for k in out:
        if not isinstance(k, Keyframe):
            raise TypeError(f"expected a Keyframe, got {type(k).__name__}")
    for a, b in zip(out, out[1:], strict=False):
        if a.t == b.t:
            raise ValueError(f"two keyframes at t = {a.t} s")
    return tuple(out)


def _duration(value: Any) -> float:
    out = v.positive_float(value)
    if out > MAX_DURATION_S:
        raise ValueError(f"the duration must be at most {MAX_DURATION_S:g} s, got {out:g}")
    return out


def _fps(value: Any) -> float:
    out = v.positive_float(value)
    if out > MAX_FPS:
        raise ValueError(f"the frame rate must be at most {MAX_FPS:g} fps, got {out:g}")
    return out


def frame_count(duration: float, fps: float) -> int:
    """How many frames `duration` seconds at `fps` hold (see the module docstring)."""
    return max(1, math.floor(duration * fps + 0.5))


def frame_time(index: int, count: int, duration: float) -> float:
    """The time in seconds of frame `index` of `count` spread over `duration`."""
    if not 0 <= index < count:
        raise IndexError(f"frame {index} is outside 0..{count - 1}")
    if index == count - 1:
        return duration  # exact, whatever the division would round to
    return duration * index / (count - 1)


def frame_at(t: float, count: int, duration: float) -> int:
    """The frame nearest to time `t` (clamped to the animation)."""
    if count <= 1:
        return 0
    return max(0, min(count - 1, round(t / duration * (count - 1))))


TrackGuard = Callable[[str], None]


class Timeline(EventedModel):
    """Duration, frame rate and per-layer alpha keyframes.

    Events: `changed(field, old, new)` for duration/fps, and
    `track_changed(layer_id, old, new)` with the whole old and new keyframe tuples.
    """

    _validators: ClassVar[dict[str, Callable[[Any], Any]]] = {"duration": _duration, "fps": _fps}

    duration: float
    fps: float

    def __init__(
        self,
        duration: float = 3.0,
        fps: float = 24.0,
        tracks: Mapping[str, Iterable[Keyframe]] | None = None,
    ) -> None:
        self._init_fields(duration=duration, fps=fps)
        self.events.add("track_changed")
        object.__setattr__(self, "_tracks", {})
        object.__setattr__(self, "_guard", None)
        for layer_id, keys in (tracks or {}).items():
            self.set_track(layer_id, keys, force=True)

    # -- reading ---------------------------------------------------------------------

    @property
    def tracks(self) -> dict[str, tuple[Keyframe, ...]]:
        """A copy of every non-empty track, layer id -> keyframes sorted by time."""
        return dict(self._tracks)

    def keyframes(self, layer_id: str) -> tuple[Keyframe, ...]:
        return self._tracks.get(layer_id, ())

    def has_keyframes(self, layer_id: str) -> bool:
        return layer_id in self._tracks

    def sample(self, layer_id: str, t: float) -> float | None:
        """The keyframed alpha at t, or None when the layer has no keyframes."""
        keys = self._tracks.get(layer_id)
        return None if keys is None else sample_keyframes(keys, t)

    @property
    def frame_count(self) -> int:
        return frame_count(self.duration, self.fps)

    def frame_time(self, index: int) -> float:
        """The time in seconds of frame `index` (see the module docstring)."""
        return frame_time(index, self.frame_count, self.duration)

    def frame_at(self, t: float) -> int:
        """The frame nearest to time `t`: where the playhead lands and keyframes snap."""
        return frame_at(t, self.frame_count, self.duration)

    # -- changing --------------------------------------------------------------------

    def set_guard(self, guard: TrackGuard | None) -> None:
        """Install the owner's check that refuses keyframe edits (unknown or locked layer)."""
        object.__setattr__(self, "_guard", guard)

    def set_track(self, layer_id: str, keys: Iterable[Keyframe], *, force: bool = False) -> tuple[Keyframe, ...]:
        """Replace a layer's keyframes (an empty track removes them); returns the old ones.

        `force` skips the guard, for undo and loading."""
        new = normalise_track(keys)
        old = self._tracks.get(layer_id, ())
        if new == old:
            return old
        if not force and self._guard is not None:
            self._guard(layer_id)
        if new:
            self._tracks[layer_id] = new
        else:
            del self._tracks[layer_id]
        self.events.track_changed.emit(layer_id=layer_id, old=old, new=new)
        return old

    def set_keyframe(self, layer_id: str, t: float, alpha: float, easing: str = LINEAR) -> tuple[Keyframe, ...]:
        """Add a keyframe, replacing one at exactly the same time; returns the old track."""
        return self.set_track(layer_id, with_keyframe(self.keyframes(layer_id), Keyframe(t, alpha, easing)))

    def remove_keyframe(self, layer_id: str, t: float) -> tuple[Keyframe, ...]:
        """Remove the keyframe at exactly time t (KeyError if none); returns the old track."""
        return self.set_track(layer_id, without_keyframe(self.keyframes(layer_id), t))

    _tracks: dict[str, tuple[Keyframe, ...]]
    _guard: TrackGuard | None


def with_keyframe(keys: tuple[Keyframe, ...], key: Keyframe) -> tuple[Keyframe, ...]:
    return normalise_track([k for k in keys if k.t != key.t] + [key])


def without_keyframe(keys: tuple[Keyframe, ...], t: float) -> tuple[Keyframe, ...]:
    if not any(k.t == t for k in keys):
        raise KeyError(f"no keyframe at t = {t} s")
    return tuple(k for k in keys if k.t != t)
