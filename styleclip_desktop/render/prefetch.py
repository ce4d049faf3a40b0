"""Rendering a layer's alpha axis ahead, so that a slider drag never waits for synthesis.

When a layer is added, or its text, β or anything else it renders from changes, the
engine sweeps that layer's slider range at the preview resolution in the background:
coarse first (the two ends, the middle, the quarters, ...) and then finer, each level
starting nearest the layer's alpha. The sweep runs through `Engine.precompute` at the
lowest priority one frame at a time, so a preview asked for meanwhile waits one frame at
most, and it never asks for more frames than half the frame cache holds, so its own
coarse frames are not evicted by its fine ones. A sweep belongs to a fingerprint of
everything the swept frames depend on except the swept layer's own alpha: a newer sweep,
or any other change to the document, supersedes it, and a superseded sweep stops at its
next frame.

While the slider is dragged, `AxisSweeps.stand_in` answers at once, on the caller's
thread, from the frame cache: the exact frame when it is cached, else a linear blend of
the two nearest swept frames around the slider's value. A blend is a stand-in, labelled
as one (`StandIn.blended`), shown only until the exact frame, which renders meanwhile,
replaces it. Frames are found by content keys computed from the document as it is now,
so a frame rendered for an older document can never be shown.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from styleclip_desktop.render.state import RenderState, snapshot

if TYPE_CHECKING:
    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.render.worker import Job

SWEEP_KEY = "alpha-sweep"
MAX_SWEEP_FRAMES = 65  # six bisections of the range: the ends and 63 points between
BUDGET_SHARE = 0.5  # of the frame cache's byte budget a sweep may fill


@dataclass(frozen=True)
class AxisRange:
    """A slider's reach in alpha units and its resolution (positions per alpha unit)."""

    lo: float
    hi: float
    steps_per_unit: int

    def position(self, step: int) -> float:
        # Divided as the slider divides, so a swept alpha equals the slider's value bit for bit.
        return step / self.steps_per_unit

    def steps(self) -> tuple[int, int]:
        a, b = round(self.lo * self.steps_per_unit), round(self.hi * self.steps_per_unit)
        return min(a, b), max(a, b)


@dataclass(frozen=True, eq=False)
class StandIn:
    """A frame to show at once for a slider position: the exact one from the cache, or a
    blend of its two nearest swept neighbours (`blended`) until the exact one renders."""

    image: np.ndarray
    blended: bool
    lower: float  # the neighbours' alphas (both the position itself for an exact frame)
    upper: float
    weight: float  # of the upper neighbour


def sweep_order(axis: AxisRange, near: float | None = None, limit: int | None = None) -> list[float]:
    """The slider positions of `axis`, coarse to fine: both ends, then the midpoint of every
    interval, level by level down to every position; within a level, the positions
    nearest `near` first. At most `limit` positions."""
    lo, hi = axis.steps()
    if limit is not None and limit <= 0:
        return []
    centre = (near if near is not None else (axis.lo + axis.hi) / 2) * axis.steps_per_unit
    order = [lo] if lo == hi else [lo, hi]
    intervals = [(lo, hi)] if hi - lo >= 2 else []
    while intervals and (limit is None or len(order) < limit):
        level: list[int] = []
        finer: list[tuple[int, int]] = []
        for a, b in intervals:
            m = (a + b) // 2
            level.append(m)
            finer += [(x, y) for x, y in ((a, m), (m, b)) if y - x >= 2]
        level.sort(key=lambda s: (abs(s - centre), s))
        order += level
        intervals = finer
    if lo != hi and near is not None and abs(hi - centre) < abs(lo - centre):
        order[0], order[1] = hi, lo
    return [axis.position(s) for s in order[:limit]]


def blend(lower: np.ndarray, upper: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * lower + weight * upper for uint8 images, rounded to the nearest level."""
    a = lower.astype(np.float32)
    out = a + np.float32(weight) * (upper.astype(np.float32) - a)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def fingerprint(state: RenderState, layer_id: str, alphas: Mapping[str, float] | None) -> tuple[Any, ...]:
    """What a layer's swept frames depend on, except that layer's own alpha.

    Layer parameters and generator-delta arrays are immutable in the document model (a
    change makes a new object), so their identities stand for their content; the sweep
    record keeps its state alive, so an identity is never reused while it is compared."""
    eff = state.frame_alphas(alphas)
    latent = hashlib.blake2b(np.ascontiguousarray(state.latent).tobytes(), digest_size=16).hexdigest()
    delta = tuple(sorted((name, id(arr)) for name, arr in (state.generator_delta or {}).items()))
    layers = tuple((layer.id, layer.visible, None if layer.id == layer_id else eff[layer.id], id(layer.params))
                   for layer in state.layers)
    return (layer_id, latent, delta, layers)


@dataclass
class _Sweep:
    fingerprint: tuple[Any, ...]
    state: RenderState  # keeps the objects whose identities the fingerprint holds alive
    layer_id: str
    axis: AxisRange
    base: dict[str, float]
    positions: list[float]
    res: int
    done: int = 0  # positions[:done] are rendered
    job: Job[int] | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    # alpha -> frame key, for the fingerprint's document: a drag asks for the same neighbours again and again
    keys: dict[float, tuple[str, int, str]] = field(default_factory=dict)
    # Alphas a drag has shown: only these, and the swept ones, can have an exact preview
    # cached (a preview is asked for after its stand-in), so only their keys are worth computing.
    seen: set[float] = field(default_factory=set)


class AxisSweeps:
    """The engine's alpha-axis sweeps: at most one runs at a time (see the module doc)."""

    def __init__(self, engine: Engine, max_frames: int = MAX_SWEEP_FRAMES,
                 budget_share: float = BUDGET_SHARE) -> None:
        self.engine = engine
        self.max_frames = max_frames
        self.budget_share = budget_share
        self._current: _Sweep | None = None
        self._lock = threading.Lock()

    # --- sweeping ------------------------------------------------------------------------

    def frame_limit(self) -> int:
        """How many preview frames one sweep may render within the frame cache's budget."""
        frames = self.engine.renderer.frames
        res = self.engine.preview_resolution
        share = int(frames.max_items * self.budget_share)
        if frames.max_bytes is not None:
            share = min(share, int(frames.max_bytes * self.budget_share) // (res * res * 3))
        return max(0, min(self.max_frames, share))

    def sweep(self, doc: Any, layer_id: str, axis: AxisRange,
              alphas: Mapping[str, float] | None = None) -> Job[int] | None:
        """Render `layer_id`'s alpha axis ahead (other layers at `alphas`, else their own
        alphas). Returns the sweep's job: the one already under way when nothing it depends
        on changed, else a new one that supersedes it. None for a hidden or missing layer."""
        state = snapshot(doc)
        layer = next((la for la in state.layers if la.id == layer_id), None)
        if layer is None or not layer.visible:
            self.cancel()
            return None
        fp = fingerprint(state, layer_id, alphas)
        res = self.engine.preview_resolution
        with self._lock:
            cur = self._current
            if cur is not None and cur.fingerprint == fp and cur.axis == axis and cur.res == res \
                    and cur.job is not None and not _failed(cur.job):
                return cur.job
            near = state.frame_alphas(alphas)[layer_id]
            positions = sweep_order(axis, near, self.frame_limit())
            if not positions:
                self._cancel_locked()
                return None
            base = dict(alphas or {})
            record = _Sweep(fp, state, layer_id, axis, base, positions, res)
            frames = [{**base, layer_id: a} for a in positions]
            if cur is not None and cur.job is not None:
                cur.job.cancel()
            record.job = self.engine.precompute(state, frames, preview=True, key=SWEEP_KEY, batch=1,
                                                on_progress=lambda d, _t, _m: self._progress(record, d))
            record.job.future.add_done_callback(lambda _f: record.finished.set())
            self._current = record
            return record.job

    def _progress(self, record: _Sweep, done: int) -> None:
        with self._lock:
            record.done = max(record.done, min(done, len(record.positions)))

    def cancel(self) -> None:
        """Stop the sweep under way (the document it renders for is gone)."""
        with self._lock:
            self._cancel_locked()

    def _cancel_locked(self) -> None:
        if self._current is not None and self._current.job is not None:
            self._current.job.cancel()
        self._current = None

    def status(self) -> dict[str, Any] | None:
        """The current sweep: its layer, positions planned and rendered, and whether it ended."""
        with self._lock:
            cur = self._current
            if cur is None:
                return None
            return {"layer_id": cur.layer_id, "planned": len(cur.positions), "done": cur.done,
                    "finished": cur.finished.is_set(), "positions": list(cur.positions)}

    # --- the drag ------------------------------------------------------------------------

    def stand_in(self, doc: Any, alphas: Mapping[str, float] | None, layer_id: str, *,
                 paste_back: bool = False) -> StandIn | None:
        """What to show at once for the document with `layer_id` at its alpha in `alphas`
        (else its own): the exact preview frame when cached, else a blend of the nearest
        swept frames below and above; None when the sweep has neither yet."""
        state = snapshot(doc)
        with self._lock:
            cur = self._current
            if cur is None or cur.layer_id != layer_id or cur.res != self.engine.preview_resolution:
                return None
            done = sorted(cur.positions[:cur.done])
            base = cur.base
            matches = cur.fingerprint == fingerprint(state, layer_id, alphas)
        if not matches or not done:
            return None  # the sweep is for another document, or has rendered nothing yet
        a = state.frame_alphas(alphas)[layer_id]
        look = _Lookup(self.engine, state, {**base, **(alphas or {})}, layer_id, cur)
        i = bisect.bisect_left(done, a)
        swept = i < len(done) and done[i] == a
        known = swept or a in cur.seen or a in cur.keys
        cur.seen.add(a)
        exact = look.frame(a) if known else None
        if exact is not None:
            return StandIn(self._finish(state, exact, paste_back), False, a, a, 0.0)
        lower, upper = look.nearest(reversed(done[:i])), look.nearest(iter(done[i:]))
        if lower is None or upper is None:
            return None
        (a0, f0), (a1, f1) = lower, upper
        w = (a - a0) / (a1 - a0)
        return StandIn(self._finish(state, blend(f0, f1, w), paste_back), True, a0, a1, w)

    def _finish(self, state: RenderState, face: np.ndarray, paste_back: bool) -> np.ndarray:
        return self.engine.renderer.composite(state, face) if paste_back else np.array(face)


class _Lookup:
    """Frame-cache lookups along one layer's axis of one document (keys computed once)."""

    def __init__(self, engine: Engine, state: RenderState, alphas: dict[str, float], layer_id: str,
                 sweep: _Sweep) -> None:
        self.engine, self.state, self.alphas, self.layer_id, self.sweep = engine, state, alphas, layer_id, sweep

    def frame(self, alpha: float) -> np.ndarray | None:
        r, sweep = self.engine.renderer, self.sweep
        key = sweep.keys.get(alpha)
        if key is None:
            key = r.frame_key(self.state, {**self.alphas, self.layer_id: alpha}, sweep.res)
            if len(sweep.keys) < 4096:
                sweep.keys[alpha] = key
        return r.frames.get(key) if r.frames.peek(key) else None

    def nearest(self, candidates: Any) -> tuple[float, np.ndarray] | None:
        for alpha in candidates:
            frame = self.frame(alpha)
            if frame is not None:
                return alpha, frame
        return None


def _failed(job: Job[Any]) -> bool:
    """A sweep that was cancelled or failed is redone when asked again; a finished one is not."""
    f = job.future
    return job.cancel_requested or f.cancelled() or (f.done() and f.exception() is not None)
