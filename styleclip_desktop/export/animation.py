"""Animation export: the document's timeline as MP4 (H.264), GIF or animated WebP.

Frame i shows the alphas of timeline frame i; `morph` first gives every visible layer
the one-click 0 -> alpha sweep. Frames stream from the engine in batches straight into
the encoder, so memory stays flat however long the animation:

- MP4: raw frames are piped to the bundled ffmpeg as they are rendered;
- GIF: each frame is palettised and appended on its own (Pillow's GIF writer would keep
  every frame until the end), only the changed rectangle after the first;
- WebP: Pillow's animated WebP writer pulls frames from the render stream one at a time;
  libwebp keeps only the compressed result until it assembles the file (and freed heap
  pages are handed back now and then, see `release_freed_memory`).

Everything is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import struct
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from styleclip_desktop.document.timeline import Keyframe, Timeline
from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.export import metadata as md
from styleclip_desktop.export.source import (
    CancelCheck,
    FrameSource,
    Progress,
    check_target,
    disk_full_error,
    fit,
    free_bytes,
    output_dims,
    release_freed_memory,
    staged_file,
)

FORMATS = {".mp4": "MP4", ".gif": "GIF", ".webp": "WEBP"}
MAX_FPS = 60.0
# GIF delays count hundredths of a second, and browsers slow any delay under 2/100 s down
# to 1/10 s: above 50 fps a GIF would play slower, not smoother.
GIF_MAX_FPS = 50.0


def animation_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"cannot export an animation as {Path(path).suffix or 'a file without extension'}: "
                        "use .mp4, .gif or .webp")
    return fmt


@dataclass(frozen=True)
class AnimationOptions:
    fps: float | None = None  # None: the document's timeline
    seconds: float | None = None  # None: the document's timeline
    size: int | None = 512  # the longer side in pixels; None keeps the render's own size
    crop: bool = False
    morph: bool = False
    crf: int = 18  # MP4: 0 best .. 51 worst; 18 looks lossless to most eyes
    quality: int = 90  # lossy WebP
    lossless: bool = False  # WebP
    loop: bool = True  # GIF and WebP: play forever (False: once); MP4 players choose for themselves
    batch: int | None = None  # frames per engine batch; None lets the engine choose

    def __post_init__(self) -> None:
        if self.fps is not None and not 0 < self.fps <= MAX_FPS:
            raise UserError(f"the frame rate must be above 0 and at most {MAX_FPS:g} fps, got {self.fps:g}")
        if self.seconds is not None and not 0 < self.seconds <= 3600:
            raise UserError(f"the length must be above 0 and at most 3600 seconds, got {self.seconds:g}")
        if self.size is not None and not 2 <= self.size <= 8192:
            raise UserError(f"the size must be between 2 and 8192 pixels, got {self.size}")
        if not 0 <= self.crf <= 51:
            raise UserError(f"the CRF must be between 0 (best) and 51, got {self.crf}")
        if not 1 <= self.quality <= 100:
            raise UserError(f"the quality must be between 1 and 100, got {self.quality}")


@dataclass(frozen=True)
class FramePlan:
    """Which alphas each frame shows, at what rate."""

    count: int
    fps: float
    duration: float
    alphas: Callable[[int], dict[str, float]]


def plan_frames(doc: Any, *, fps: float | None = None, seconds: float | None = None,
                morph: bool = False) -> FramePlan:
    """The frames of `doc`'s timeline, optionally at another rate or length, or morphed.

    The document itself is left as it is: overrides live on a copy of its timeline."""
    tl = doc.timeline
    if fps is None and seconds is None and not morph:
        return FramePlan(tl.frame_count, tl.fps, tl.duration, doc.frame_alphas)
    duration = float(seconds if seconds is not None else tl.duration)
    tracks = tl.tracks
    if morph:
        # The document's own morph definition, stretched to the exported length.
        scale = duration / tl.duration
        tracks.update({lid: tuple(Keyframe(k.t * scale, k.alpha, k.easing) for k in keys)
                       for lid, keys in doc.morph_tracks().items()})
    plan = Timeline(duration, float(fps if fps is not None else tl.fps), tracks)
    statics = {layer.id: float(layer.alpha) for layer in doc.layers}

    def alphas(i: int) -> dict[str, float]:
        t = plan.frame_time(i)
        out = dict(statics)
        for lid in out:
            sampled = plan.sample(lid, t)
            if sampled is not None:
                out[lid] = sampled
        return out

    return FramePlan(plan.frame_count, plan.fps, plan.duration, alphas)


@dataclass
class AnimationResult:
    path: Path
    format: str
    frames: int
    fps: float
    width: int
    height: int
    notes: list[str] = field(default_factory=list)


def export_animation(source: FrameSource, doc: Any, path: str | Path,
                     options: AnimationOptions = AnimationOptions(), *, meta: Mapping[str, Any] | None = None,
                     progress: Progress | None = None, cancelled: CancelCheck | None = None) -> AnimationResult:
    """Render `doc`'s timeline through `source` and encode it to `path` (.mp4/.gif/.webp).

    Raises `Cancelled` when `cancelled()` turns true; then, as on any failure, nothing is
    left at `path` (an existing file there is kept) and no temporary file remains."""
    path = Path(path)
    fmt = animation_format(path)
    check_target(path)
    notes: list[str] = []
    fps = options.fps
    if fmt == "GIF" and (fps or doc.timeline.fps) > GIF_MAX_FPS:
        fps = GIF_MAX_FPS
        notes.append(f"GIF plays at most {GIF_MAX_FPS:g} fps in browsers: written at {GIF_MAX_FPS:g} fps "
                     "(use .mp4 or .webp for more)")
    plan = plan_frames(doc, fps=fps, seconds=options.seconds, morph=options.morph)
    if plan.fps > MAX_FPS:
        raise UserError(f"the timeline runs at {plan.fps:g} fps; export at most {MAX_FPS:g} (pass a frame rate)")
    if not options.morph and not doc.timeline.tracks:
        notes.append("the timeline has no keyframes, so every frame is the same; a morph sweeps each layer in")
    stream = _render_stream(source, doc, plan, options, progress, cancelled)
    try:
        first = next(stream)
        dims = output_dims((first.shape[1], first.shape[0]), options.size, even=fmt == "MP4")
        frames = (fit(f, dims) for f in itertools.chain([first], stream))
        record = dict(meta or {})
        if record:
            record.setdefault("animation", {"fps": plan.fps, "frames": plan.count, "morph": options.morph})
        with staged_file(path) as tmp:
            if fmt == "MP4":
                _write_mp4(tmp, frames, dims, plan.fps, options.crf, record, path)
            elif fmt == "GIF":
                _write_gif(tmp, frames, plan.fps, record, options.loop)
            else:
                _write_webp(tmp, frames, plan.count, dims, plan.fps, options, record)
            if cancelled is not None and cancelled():  # asked while the encoder finished the file
                raise Cancelled()
    finally:
        stream.close()
    return AnimationResult(path, fmt, plan.count, plan.fps, dims[0], dims[1], notes)


def animate_document(source: FrameSource, doc: Any, path: str | Path,
                     options: AnimationOptions = AnimationOptions(), *, models: Mapping[str, str] | None = None,
                     synthetic: bool = False, progress: Progress | None = None,
                     cancelled: CancelCheck | None = None) -> AnimationResult:
    """The one animation export the editor and the command line share: `doc`'s timeline
    with its edit record (the layers, the models that rendered it, "edited by AI")."""
    meta = md.build_metadata(doc, None, models=models, synthetic=synthetic, crop=options.crop)
    return export_animation(source, doc, path, options, meta=meta, progress=progress, cancelled=cancelled)


def _render_stream(source: FrameSource, doc: Any, plan: FramePlan, options: AnimationOptions,
                   progress: Progress | None, cancelled: CancelCheck | None) -> Generator[np.ndarray, None, None]:
    # Frames are asked for a few batches at a time, so however the engine buffers, at most
    # one chunk of frames is alive at once.
    chunk = max(16, 4 * (options.batch or 4))
    done = 0
    for start in range(0, plan.count, chunk):
        alphas = [plan.alphas(i) for i in range(start, min(start + chunk, plan.count))]
        frames = source.render_frames(doc, alphas, size=options.size, paste_back=not options.crop,
                                      batch=options.batch, cancelled=cancelled)
        try:
            for frame in frames:
                if cancelled is not None and cancelled():
                    raise Cancelled()
                yield frame
                done += 1
                if progress is not None:
                    progress(done, plan.count)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
    if done != plan.count:
        raise RuntimeError(f"the engine returned {done} frames for {plan.count}")


# --- MP4 ----------------------------------------------------------------------------------


class _Abort(BaseException):
    """Thrown into imageio-ffmpeg's writer so that it kills ffmpeg rather than waiting
    for it to finish a file that is going to be deleted."""


def _write_mp4(tmp: Path, frames: Iterator[np.ndarray], dims: tuple[int, int], fps: float, crf: int,
               meta: Mapping[str, Any], target: Path) -> None:
    import imageio_ffmpeg

    _check_ffmpeg(imageio_ffmpeg)

    params = ["-crf", str(crf), "-preset", "medium", "-movflags", "+faststart"]
    if meta:
        params += ["-metadata", f"comment={md.to_json(meta)}", "-metadata", f"description={md.summary(meta)}",
                   "-metadata", f"encoder={md.APP_NAME} {meta.get('app_version', '')}".strip()]
    writer = imageio_ffmpeg.write_frames(str(tmp), dims, fps=fps, codec="libx264", quality=None,
                                         pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=2,
                                         ffmpeg_log_level="error", output_params=params)
    writer.send(None)
    try:
        for frame in frames:
            try:
                writer.send(frame)
            except OSError as exc:  # a broken pipe: ffmpeg has stopped
                raise _encoder_error(target, exc) from None
    except BaseException:
        with contextlib.suppress(_Abort, StopIteration, Exception):
            writer.throw(_Abort())
        raise
    writer.close()
    if not mp4_complete(tmp):
        raise _encoder_error(target, None)


def _check_ffmpeg(imageio_ffmpeg: Any) -> None:
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        exe = ""
    if not exe or not (Path(exe).is_file() or shutil.which(exe)):
        raise UserError("the video encoder (ffmpeg) is not installed: export as .gif or .webp, "
                        "or reinstall imageio-ffmpeg")


def _encoder_error(target: Path, exc: BaseException | None) -> UserError:
    free = free_bytes(target.parent if str(target.parent) else Path("."))
    if free is not None and free < 16 * 2**20:
        return disk_full_error(target)
    why = str(exc).splitlines()[0] if exc is not None and str(exc) else "it stopped before finishing the file"
    return UserError(f"the video encoder (ffmpeg) failed to write {target}: {why}")


def mp4_complete(path: Path) -> bool:
    """True when the file is a whole MP4: top-level boxes that tile it exactly, with the
    movie header present. ffmpeg cut short (full disk, crash) leaves a file that fails this."""
    size = path.stat().st_size
    seen: set[bytes] = set()
    pos = 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                return False
            n, kind = struct.unpack(">I4s", head)
            if n == 1:
                big = f.read(8)
                if len(big) < 8:
                    return False
                n = struct.unpack(">Q", big)[0]
            elif n == 0:
                n = size - pos
            if n < 8:
                return False
            seen.add(kind)
            pos += n
    return pos == size and {b"ftyp", b"moov", b"mdat"} <= seen


# --- GIF ----------------------------------------------------------------------------------


def _durations(fps: float, unit_per_s: int) -> Iterator[int]:
    """Frame delays in whole units whose running sum stays on the exact timeline."""
    for i in itertools.count():
        yield round((i + 1) * unit_per_s / fps) - round(i * unit_per_s / fps)


def _changed_box(prev: np.ndarray, cur: np.ndarray) -> tuple[int, int, int, int] | None:
    diff = np.any(prev != cur, axis=2)
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _write_gif(tmp: Path, frames: Iterator[np.ndarray], fps: float, meta: Mapping[str, Any], loop: bool) -> None:
    from PIL import GifImagePlugin, Image

    def palettise(rgb: np.ndarray) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(rgb)).quantize(256)

    delays = _durations(fps, 100)
    prev: np.ndarray | None = None
    with open(tmp, "wb") as fp:
        for frame in frames:
            delay_ms = 10 * next(delays)
            if prev is None:
                im = palettise(frame)
                # Without the loop extension a GIF plays once.
                info: dict[str, Any] = {"loop": 0, "duration": delay_ms} if loop else {"duration": delay_ms}
                if meta:
                    info["comment"] = md.gif_comment(meta)
                header, _ = GifImagePlugin.getheader(im, None, info)
                fp.write(b"".join(header))
                fp.write(b"".join(GifImagePlugin.getdata(im, (0, 0), duration=delay_ms, disposal=1)))
            else:
                # Only the changed rectangle, drawn over the previous frame: the background
                # of a pasted-back photo is written once and keeps its first palette.
                box = _changed_box(prev, frame) or (0, 0, 1, 1)
                im = palettise(frame[box[1]: box[3], box[0]: box[2]])
                fp.write(b"".join(GifImagePlugin.getdata(im, box[:2], duration=delay_ms, disposal=1,
                                                         include_color_table=True)))
            prev = frame
        fp.write(b";")


# --- WebP ---------------------------------------------------------------------------------


def _pil_image_class() -> type:
    from PIL import Image

    class StreamedFrames(Image.Image):
        """Frames 1..n-1 as one multi-frame image whose `seek` pulls the next rendered
        frame; Pillow's animated WebP writer asks for them strictly in order."""

        def __init__(self, frames: Iterator[np.ndarray], count: int, dims: tuple[int, int]) -> None:
            super().__init__()
            self._frames = frames
            self._mode = "RGB"
            if self.mode != "RGB":  # Pillow before 10.1 keeps the mode in a plain attribute
                setattr(self, "mode", "RGB")  # noqa: B010
            self._size = dims
            self.n_frames = count
            self._index = -1

        def seek(self, frame: int) -> None:
            if frame == self._index:
                return
            if frame != self._index + 1:
                raise EOFError("streamed frames can only be read in order")
            try:
                pixels = next(self._frames)
            except StopIteration:
                raise EOFError("no more frames") from None
            self.im = Image.fromarray(np.ascontiguousarray(pixels)).im
            self._index = frame
            if frame % 8 == 0:
                release_freed_memory()

        def tell(self) -> int:
            return self._index

    return StreamedFrames


def _write_webp(tmp: Path, frames: Iterator[np.ndarray], count: int, dims: tuple[int, int], fps: float,
                options: AnimationOptions, meta: Mapping[str, Any]) -> None:
    from PIL import Image

    first = Image.fromarray(next(frames))
    rest = _pil_image_class()(frames, count - 1, dims)
    kwargs: dict[str, Any] = {}
    if meta:
        kwargs = {"xmp": md.xmp_packet(meta), "exif": md.exif_bytes(meta)}
    with open(tmp, "wb") as fp:
        # A float duration: Pillow rounds the running timestamp, so 60 fps stays exact on average.
        first.save(fp, format="WEBP", save_all=True, append_images=[rest], duration=1000.0 / fps,
                   loop=0 if options.loop else 1,
                   lossless=options.lossless, quality=options.quality, method=4, **kwargs)
    if rest.tell() != count - 2:
        raise RuntimeError(f"the WebP writer took {rest.tell() + 2} frames of {count}")
