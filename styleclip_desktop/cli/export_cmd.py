"""`styleclip-desktop animate | export | info`: animations and stills from a project, and
reading back what an exported picture says about itself."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UserError

if TYPE_CHECKING:
    from styleclip_desktop.document import Document
    from styleclip_desktop.export.source import FrameSource


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("animate", help="export the project's timeline as MP4, GIF or WebP",
                       description="Render the project's alpha timeline (or, with --morph, every visible layer "
                       "sweeping in from 0) and write a video of fps x seconds frames, the first at the start "
                       "and the last at the end of the sweep. The format follows the extension.")
    a.add_argument("project", type=Path, help="project file (.scproj)")
    a.add_argument("-o", "--output", type=Path, required=True, help="output animation (.mp4, .gif, .webp)")
    a.add_argument("--fps", type=float, help="frames per second, up to 60 (default: the project's timeline)")
    a.add_argument("--seconds", type=float, help="length in seconds (default: the project's timeline)")
    a.add_argument("--size", type=int, default=512, help="longer side in pixels (default 512; 0 = as rendered)")
    a.add_argument("--morph", action="store_true", help="sweep every visible layer from 0 to its alpha")
    a.add_argument("--crop", action="store_true", help="the aligned face only, not pasted back into the photo")
    a.add_argument("--crf", type=int, default=18, help="MP4 quality: 0 best .. 51 worst (default 18)")
    a.add_argument("--quality", type=int, default=90, help="WebP quality 1-100 (default 90)")
    a.add_argument("--lossless", action="store_true", help="lossless WebP")
    a.add_argument("--no-loop", dest="loop", action="store_false", help="GIF and WebP play once (default: forever)")
    a.add_argument("--batch", type=int, help="frames rendered together (default: chosen for the device)")
    a.set_defaults(func=run_animate)

    e = sub.add_parser("export", help="export the edited photo (or face crop) as PNG, JPEG or WebP",
                       description="Render the project at its layers' alphas and write a still with metadata "
                       "saying it was edited by AI, with which prompts and models.")
    e.add_argument("project", type=Path, help="project file (.scproj)")
    e.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .jpg, .webp)")
    e.add_argument("--size", type=int, help="longer side in pixels (default: as rendered)")
    e.add_argument("--crop", action="store_true", help="the aligned face only, not pasted back into the photo")
    e.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default 95)")
    e.add_argument("--lossless", action="store_true", help="lossless WebP")
    e.set_defaults(func=run_export)

    i = sub.add_parser("info", help="show the edit record embedded in an exported image",
                       description="Print the StyleCLIP Desktop metadata of an exported PNG, JPEG, WebP, GIF or MP4.")
    i.add_argument("image", type=Path, help="exported image or animation")
    i.add_argument("--json", action="store_true", help="print the record as JSON")
    i.set_defaults(func=run_info)


def _open(args: argparse.Namespace) -> tuple[Document, FrameSource, dict[str, str], bool]:
    """The project, an engine for it, and the identities of the models that will render it.

    Global-direction layers that carry a ds resolved with this generator render from it,
    so fs3, statistics and CLIP are loaded only for layers without a usable one."""
    from styleclip_desktop.document import compare_models, load_project
    from styleclip_desktop.errors import ModelFileError
    from styleclip_desktop.export.source import open_frame_source
    from styleclip_desktop.methods.global_directions import load_fs3
    from styleclip_desktop.render import stored_directions
    from styleclip_desktop.render.session import load_directions, load_model_set

    if not args.project.is_file():
        raise UserError(f"project not found: {args.project}")
    doc = load_project(args.project)
    device = common.pick_device(args)
    mp = common.model_paths(args)
    models = load_model_set(mp, device, need_directions=False)
    waiting = stored_directions.pending(doc, models)
    if not waiting and mp.fs3 is not None:
        # An fs3 named on the command line may be meant to re-resolve the layers: the ones
        # made with another fs3 are recomputed with it, and only they need CLIP.
        models.fs3 = load_fs3(mp.fs3, models.G)
        waiting = stored_directions.pending(doc, models)
    if waiting:
        try:
            load_directions(models, mp, device, progress=common.progress_bar("style statistics"))
        except ModelFileError as exc:
            raise ModelFileError(stored_directions.cannot_recompute(waiting, exc)) from exc
    # Only models that are loaded can differ: CLIP left unloaded because no layer needs it
    # is not worth a notice.
    used = {role: digest for role, digest in doc.models.items() if role in models.identities}
    for message in [*compare_models(used, models.identities), *stored_directions.notices(doc, models)]:
        common.note(f"notice: {message}")
    identities = {k: v for k, v in models.identities.items() if v}
    source = open_frame_source(models, device)
    masked = source.renderer.torch_only_notice(doc)
    for message in [*getattr(source, "notices", ()), *([masked] if masked else [])]:
        common.note(f"notice: {message}")
    return doc, source, identities, bool(models.synthetic)


def run_animate(args: argparse.Namespace) -> int:
    from styleclip_desktop.export.animation import AnimationOptions, animate_document, animation_format
    from styleclip_desktop.export.source import check_target, close_frame_source

    animation_format(args.output)
    options = AnimationOptions(fps=args.fps, seconds=args.seconds, size=args.size or None, crop=args.crop,
                               morph=args.morph, crf=args.crf, quality=args.quality, lossless=args.lossless,
                               loop=args.loop, batch=args.batch)
    check_target(args.output)  # fail before any heavy work
    doc, source, identities, synthetic = _open(args)
    try:
        result = animate_document(source, doc, args.output, options, models=identities, synthetic=synthetic,
                                  progress=common.progress_bar("rendering", unit="frame"))
    finally:
        close_frame_source(source)
    for note in result.notes:
        common.note(f"notice: {note}")
    print(f"{result.frames} frames at {result.fps:g} fps, {result.width}x{result.height} -> {result.path}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from styleclip_desktop.export.source import check_target, close_frame_source
    from styleclip_desktop.export.stills import StillOptions, export_still, still_format

    still_format(args.output)
    options = StillOptions(size=args.size, crop=args.crop, quality=args.quality, lossless=args.lossless)
    check_target(args.output)  # fail before any heavy work
    doc, source, identities, synthetic = _open(args)
    try:
        path = export_still(source, doc, args.output, options, models=identities, synthetic=synthetic)
    finally:
        close_frame_source(source)
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    print(f"{w}x{h} -> {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from styleclip_desktop.export.metadata import read_metadata

    meta = read_metadata(args.image)
    if not meta:
        raise UserError(f"{args.image} carries no StyleCLIP Desktop metadata")
    if args.json:
        print(json.dumps(meta, indent=2, ensure_ascii=False, sort_keys=True))
        return 0
    print(_describe(meta))
    return 0


def _describe(meta: dict[str, Any]) -> str:
    from styleclip_desktop.export.metadata import summary

    lines = [summary(meta), f"made with: {meta.get('app', '?')} {meta.get('app_version', '')}".rstrip(),
             f"digital source type: {meta.get('digital_source_type', '?')}",
             f"synthetic models: {'yes' if meta.get('synthetic') else 'no'}"]
    out = meta.get("output") or {}
    if "width" in out:
        lines.append(f"output: {out['width']}x{out['height']}, {'face crop' if out.get('crop') else 'whole photo'}")
    for layer in meta.get("layers", []):
        params = {k: v for k, v in layer.items() if k not in ("name", "kind", "visible", "alpha")}
        shown = "" if layer.get("visible", True) else " (hidden)"
        extra = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        lines.append(f"layer \"{layer.get('name')}\"{shown}: {layer.get('kind')} α {layer.get('alpha')}; {extra}")
    for role, digest in sorted((meta.get("models") or {}).items()):
        lines.append(f"model {role}: {digest}")
    return "\n".join(lines)
