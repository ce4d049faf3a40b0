"""Animation export on the tiny synthetic generator: frame counts, rates, sizes, end frames
against direct renders, cancellation and failures."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.document import Document, UndoStack, set_duration, set_fps, set_keyframe
from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.export.animation import AnimationOptions, export_animation, mp4_complete, plan_frames
from styleclip_desktop.export.source import FrameSource, fit


def ends(engine: FrameSource, doc: Document, dims: tuple[int, int], crop: bool = True) -> list[np.ndarray]:
    """Direct renders of the unedited face (alpha 0) and the full edit, at `dims`."""
    lid = doc.layers[0].id
    alpha = doc.layers[0].alpha
    frames = engine.render_frames(doc, [{lid: 0.0}, {lid: alpha}], size=max(dims), paste_back=not crop)
    return [fit(f, dims) for f in frames]


def read_mp4(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]


def lossless_roundtrip(frames: list[np.ndarray], tmp: Path) -> list[np.ndarray]:
    """What the RGB -> yuv420p conversion alone does to `frames` (x264 at CRF 0 is lossless)."""
    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=24, codec="libx264", quality=None,
                                         macro_block_size=2, ffmpeg_log_level="error", output_params=["-crf", "0"])
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return read_mp4(tmp)[1]


def n_frames(im: Image.Image) -> int:
    return int(getattr(im, "n_frames", 1))


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_mp4_frames_rate_size_and_end_frames(engine: FrameSource, doc: Document, tmp_path: Path) -> None:
    ref = ends(engine, doc, (64, 64))
    edit_size = mad(ref[0], ref[1])
    assert edit_size > 10  # the edit is large enough for the checks below to tell the ends apart
    floor = lossless_roundtrip(ref, tmp_path / "floor.mp4")
    for crf in (0, 18):
        out = tmp_path / f"sweep{crf}.mp4"
        result = export_animation(engine, doc, out, AnimationOptions(fps=24, seconds=1, size=64, crop=True,
                                                                     morph=True, crf=crf))
        meta, frames = read_mp4(out)
        assert (result.frames, result.width, result.height) == (24, 64, 64)  # 1 s at 24 fps
        assert len(frames) == 24 and meta["fps"] == 24 and tuple(meta["size"]) == (64, 64)
        if crf == 0:
            # Lossless H.264: the only change is the colour conversion, so each end frame is
            # bit-identical to the direct render passed through that same conversion.
            assert np.array_equal(frames[0], floor[0]) and np.array_equal(frames[-1], floor[1])
        else:
            # CRF 18 adds quantisation on top of that conversion: allow 1.5 levels on
            # average beyond the lossless floor, far below the edit itself.
            for got, want, base in ((frames[0], ref[0], floor[0]), (frames[-1], ref[1], floor[1])):
                assert mad(got, want) <= mad(base, want) + 1.5
                assert mad(got, want) < edit_size / 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["floor.mp4", "sweep0.mp4", "sweep18.mp4"]


def test_mp4_of_an_odd_sized_photo_gets_even_dimensions(engine: FrameSource, photo_doc: Document,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "photo.mp4"
    result = export_animation(engine, photo_doc, out, AnimationOptions(fps=10, seconds=0.5, size=None, morph=True))
    meta, frames = read_mp4(out)
    assert (result.width, result.height) == (80, 60) == tuple(meta["size"])  # from 81x61
    assert len(frames) == 5 and mp4_complete(out)


def test_gif_frames_delays_and_end_frames(engine: FrameSource, doc: Document, tmp_path: Path) -> None:
    out = tmp_path / "sweep.gif"
    result = export_animation(engine, doc, out, AnimationOptions(fps=25, seconds=1, size=64, crop=True, morph=True))
    ref = ends(engine, doc, (64, 64))
    with Image.open(out) as im:
        assert n_frames(im) == result.frames == 25 and im.size == (64, 64)
        delays = []
        for i in range(n_frames(im)):
            im.seek(i)
            delays.append(im.info["duration"])
            if i in (0, n_frames(im) - 1):
                got = np.asarray(im.convert("RGB"))
                want = ref[0 if i == 0 else 1]
                # 256-colour palettes cost a few levels on average; the edit costs far more.
                assert mad(got, want) < 4 and mad(got, want) < mad(ref[0], ref[1]) / 4
    assert set(delays) == {40}


def test_gif_above_50_fps_is_written_at_50(engine: FrameSource, doc: Document, tmp_path: Path) -> None:
    result = export_animation(engine, doc, tmp_path / "fast.gif",
                              AnimationOptions(fps=60, seconds=0.2, size=32, crop=True, morph=True))
    assert result.fps == 50 and result.frames == 10 and any("50 fps" in n for n in result.notes)
    with Image.open(tmp_path / "fast.gif") as im:
        assert n_frames(im) == 10 and im.info["duration"] == 20


def test_lossless_webp_is_exact(engine: FrameSource, photo_doc: Document, tmp_path: Path) -> None:
    out = tmp_path / "sweep.webp"
    result = export_animation(engine, photo_doc, out,
                              AnimationOptions(fps=60, seconds=0.25, size=None, morph=True, lossless=True))
    ref = ends(engine, photo_doc, (81, 61), crop=False)
    with Image.open(out) as im:
        assert n_frames(im) == result.frames == 15 and im.size == (81, 61)
        im.seek(0)
        assert np.array_equal(np.asarray(im.convert("RGB")), ref[0])
        total = 0
        for i in range(n_frames(im)):
            im.seek(i)
            im.load()
            total += im.info["duration"]
        assert np.array_equal(np.asarray(im.convert("RGB")), ref[1])
    assert total == 250  # 15 frames at 60 fps: the 0.25 s asked for


def test_timeline_keyframes_drive_frames_and_the_document_is_untouched(doc: Document) -> None:
    lid = doc.layers[0].id
    stack = UndoStack()
    stack.push(set_duration(doc, 2.0))
    stack.push(set_fps(doc, 4.5))  # 9 frames, 0.25 s apart
    stack.push(set_keyframe(doc, lid, 0.0, 2.0))
    stack.push(set_keyframe(doc, lid, 2.0, 6.0))
    plan = plan_frames(doc)
    assert plan.count == 9 and [plan.alphas(i)[lid] for i in (0, 4, 8)] == [2.0, 4.0, 6.0]
    assert plan.alphas(3) == doc.frame_alphas(3)
    before = doc.revision
    morph = plan_frames(doc, fps=11, seconds=1, morph=True)
    assert morph.count == 11 and morph.alphas(0)[lid] == 0.0 and morph.alphas(10)[lid] == doc.layers[0].alpha
    assert morph.alphas(5)[lid] == pytest.approx(doc.layers[0].alpha / 2)
    assert doc.revision == before and doc.timeline.fps == 4.5
    # Overrides follow the same rule as the timeline: fps x seconds frames, ends included.
    short = plan_frames(doc, fps=12, seconds=1, morph=True)
    assert short.count == 12 and short.alphas(0)[lid] == 0.0 and short.alphas(11)[lid] == doc.layers[0].alpha
    assert plan_frames(doc, fps=60, seconds=5).count == 300


class _Counting:
    """Wraps an engine; cancels, or fails, after a number of frames."""

    def __init__(self, inner: FrameSource, after: int, fail: bool = False) -> None:
        self.inner, self.after, self.fail, self.seen = inner, after, fail, 0

    def cancelled(self) -> bool:
        return self.seen >= self.after

    def render_frames(self, doc_or_state: Any, alphas_list: Sequence[Mapping[str, float]], *,
                      size: int | None = None, paste_back: bool = False, batch: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      cancelled: Callable[[], bool] | None = None) -> Iterator[np.ndarray]:
        for frame in self.inner.render_frames(doc_or_state, alphas_list, size=size, paste_back=paste_back,
                                              batch=batch, cancelled=cancelled):
            self.seen += 1
            if self.fail and self.seen > self.after:
                raise RuntimeError("the engine broke")
            yield frame


@pytest.mark.parametrize("ext", ["mp4", "gif", "webp"])
def test_cancel_or_failure_leaves_nothing(engine: FrameSource, doc: Document, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"anim.{ext}"
    opts = AnimationOptions(fps=30, seconds=2, size=32, crop=True, morph=True)
    src = _Counting(engine, after=20)
    with pytest.raises(Cancelled):
        export_animation(src, doc, out, opts, cancelled=src.cancelled)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"an earlier export")
    with pytest.raises(RuntimeError, match="engine broke"):
        export_animation(_Counting(engine, after=20, fail=True), doc, out, opts)
    assert list(tmp_path.iterdir()) == [out] and out.read_bytes() == b"an earlier export"


def test_bad_targets_and_options(engine: FrameSource, doc: Document, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        export_animation(engine, doc, tmp_path / "missing" / "a.mp4")
    with pytest.raises(UserError, match="use .mp4, .gif or .webp"):
        export_animation(engine, doc, tmp_path / "a.avi")
    with pytest.raises(UserError, match="at most 60"):
        AnimationOptions(fps=120)
    truncated = tmp_path / "cut.mp4"
    export_animation(engine, doc, truncated, AnimationOptions(fps=10, seconds=0.3, size=32, crop=True))
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert not mp4_complete(truncated)


def test_an_unfinished_video_is_a_clear_error(engine: FrameSource, doc: Document, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ffmpeg cut short leaves an MP4 without its index: on a full disk that is said plainly."""
    from styleclip_desktop.export import animation

    opts = AnimationOptions(fps=10, seconds=0.2, size=32, crop=True)
    monkeypatch.setattr(animation, "mp4_complete", lambda path: False)
    monkeypatch.setattr(animation, "free_bytes", lambda folder: 0)
    with pytest.raises(UserError, match="the disk is full"):
        export_animation(engine, doc, tmp_path / "a.mp4", opts)
    monkeypatch.setattr(animation, "free_bytes", lambda folder: 2**40)
    with pytest.raises(UserError, match="ffmpeg.*stopped before finishing"):
        export_animation(engine, doc, tmp_path / "a.mp4", opts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", ["mp4", "gif", "webp"])
def test_animations_carry_the_record(engine: FrameSource, doc: Document, tmp_path: Path, ext: str) -> None:
    from styleclip_desktop.export.metadata import build_metadata, read_metadata

    doc.layers[0].name = 'ça = "grey"; #1 \\ done'
    meta = build_metadata(doc, models={"generator": "cd" * 32}, synthetic=True, crop=True)
    out = tmp_path / f"a.{ext}"
    export_animation(engine, doc, out, AnimationOptions(fps=10, seconds=0.2, size=32, crop=True, morph=True), meta=meta)
    assert read_metadata(out) == {**meta, "animation": {"fps": 10.0, "frames": 2, "morph": True}}
