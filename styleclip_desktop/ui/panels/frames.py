"""Timeline frames for the screen: which frames to precompute, and a renderer that keeps
only one frame in flight.

When rendering is slower than playback or scrubbing, the newest wanted frame wins and
the ones in between are dropped: a queue of stale frames would make the picture lag
further and further behind the playhead.
"""

from __future__ import annotations

from typing import Any

from styleclip_desktop.document import Document
from styleclip_desktop.ui.panels.engine_link import EngineLink

MAX_PRECOMPUTE_FRAMES = 120


def cache_frames(doc: Document) -> list[int]:
    """Frames worth precomputing: all of them for short animations, else an even spread
    plus every keyframe's frame; frames with identical alphas are listed once."""
    tl = doc.timeline
    n = tl.frame_count
    if n <= MAX_PRECOMPUTE_FRAMES:
        frames = set(range(n))
    else:
        frames = {round(i * (n - 1) / (MAX_PRECOMPUTE_FRAMES - 1)) for i in range(MAX_PRECOMPUTE_FRAMES)}
        for keys in tl.tracks.values():
            frames.update(tl.frame_at(k.t) for k in keys)
    seen: set[tuple[tuple[str, float], ...]] = set()
    out = []
    for i in sorted(frames):
        signature = tuple(sorted(doc.frame_alphas(i).items()))
        if signature not in seen:
            seen.add(signature)
            out.append(i)
    return out


class FramePump:
    """Renders the latest wanted timeline frame, one at a time."""

    def __init__(self, link: EngineLink) -> None:
        self.link = link
        self.doc: Document | None = None
        self.wanted: tuple[int, bool, int] | None = None  # (frame, preview, document revision)
        self.rendered: tuple[int, bool, int] | None = None
        self.inflight: Any = None

    def want(self, frame: int, preview: bool) -> None:
        if self.doc is not None:
            self.wanted = (frame, preview, self.doc.revision)
            self._pump()

    def _supersede(self) -> None:
        # This frame is the newest picture of the playhead: an editor render asked for
        # before it must not land on top of it when it arrives late.
        supersede = getattr(self.link.state, "supersede_renders", None)
        if callable(supersede):
            supersede()

    def precompute(self) -> Any:
        doc = self.doc
        if doc is None:
            return None
        alphas = [doc.frame_alphas(i) for i in cache_frames(doc)]
        return self.link.precompute(alphas, (doc.uid, doc.revision))

    def _pump(self) -> None:
        doc, want = self.doc, self.wanted
        if self.inflight is not None or doc is None or want is None or want == self.rendered:
            return
        frame, preview, revision = want
        if revision != doc.revision or frame >= doc.timeline.frame_count:
            return  # the document moved on; whoever changed it asks for a frame again
        alphas = doc.frame_alphas(frame)
        if self.link.show_cached(alphas):
            self.rendered = want
            self._supersede()
            return
        job = self.link.render(alphas, preview=preview)
        if job is None:
            return
        self.inflight = job
        self._supersede()

        def finished(*_args: Any) -> None:
            if self.inflight is job:
                self.inflight = None
                self.rendered = want
                self._pump()

        self.link.watch(job, finished, finished, finished)
