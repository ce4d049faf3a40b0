"""`styleclip-desktop edit`: add one text edit to a face and write the image or the project.

The face comes from a W+ latent (.npy), a random seed, a photo (found, aligned and
inverted; the result is pasted back into it) or a project (.scproj). The edit becomes one
layer of a document, exactly as in the editor, and the image comes from the same render
engine: a global direction (the default; one synthesis pass), latent optimization towards
the prompt (slow, per image), or a trained latent mapper (fast, one prompt each).
With `-o PROJECT.scproj` the document is saved instead, so repeated edits build a
project layer by layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from styleclip_desktop.cli import common
from styleclip_desktop.document.masks import DEFAULT_START_RES, MAX_FEATHER, START_RESOLUTIONS
from styleclip_desktop.errors import Cancelled, UsageError, UserError
from styleclip_desktop.methods import optimization_settings as settings
from styleclip_desktop.methods.optimization_settings import DEFAULT_LAMBDA_KEEP

if TYPE_CHECKING:
    import torch

    from styleclip_desktop.document import Document, LayerParams
    from styleclip_desktop.render.engine import Engine

DEFAULT_ALPHA = {"global": 4.0, "optimize": 1.0, "mapper": 1.0, "domain": 1.0}
IMAGE_OUTPUTS = {".png", ".jpg", ".jpeg", ".webp"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from styleclip_desktop.cli.mapper_cmd import add_level_switches

    p = sub.add_parser("edit", help="edit a face with a text prompt",
                       description="Add a text edit (global direction, latent optimization or a trained "
                       "mapper) to a latent, a seeded face, a photo or a project, and write the image "
                       "(.png/.jpg/.webp) or the project (.scproj).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("source", nargs="?", type=Path,
                     help="W+ latent .npy (L,512)/(1,L,512), a photo, or a project .scproj")
    src.add_argument("--seed", type=int, help="start from the face of this random seed")
    p.add_argument("--psi", type=float, default=0.7, help="truncation for --seed (default 0.7)")
    p.add_argument("--method", choices=("global", "optimize", "mapper", "domain"), default="global",
                   help="global direction (default), latent optimization, a trained mapper, or a domain "
                        "(the generator moved to a new domain: --domain FILE)")
    p.add_argument("--target", help='what the face should become, e.g. "a face with grey hair" '
                   "(required for global and optimize)")
    p.add_argument("--neutral", default="a face", help='global: the neutral description (default "a face")')
    p.add_argument("--alpha", type=float, default=None,
                   help="strength; global: in σ units (default 4), optimize/mapper: scales the found "
                   "offset (default 1); negative pushes away")
    p.add_argument("--beta", type=float, default=0.15, help="global: disentanglement threshold 0.08-0.30 (default 0.15)")
    p.add_argument("--keep", action="append", default=[], metavar="TEXT",
                   help='an attribute the edit must not change, e.g. "age", "glasses" or any text (repeatable). '
                        "global: the direction is made orthogonal to each; optimize: each one's CLIP similarity "
                        "is held at its start, weighted by --lambda-keep")
    p.add_argument("--lambda-keep", type=float, default=DEFAULT_LAMBDA_KEEP,
                   help=f"optimize: the weight of the kept attributes (default {DEFAULT_LAMBDA_KEEP:g})")
    p.add_argument("--mapper", metavar="ID|PATH", help="mapper: a catalog id such as 'afro' or a mapper file")
    p.add_argument("--domain", type=Path, metavar="FILE",
                   help="domain: a .domain file (`domain train`) or a published StyleGAN-NADA generator .pt; "
                        "--alpha 0..1 blends base and adapted weights (default 1)")
    p.add_argument("--domain-paste-back", action="store_true",
                   help="domain: paste the face back into the photo anyway (by default a domain's crop is written)")
    add_level_switches(p)
    add_optimization_options(p, (settings.MODE_EDIT, settings.MODE_EDIT_IDENTITY), "optimize: ")
    p.add_argument("--arcface", type=Path, metavar="PATH", help="ArcFace IR-SE50 weights (model_ir_se50.pth)")
    photo = p.add_argument_group("photos")
    photo.add_argument("--face", type=int, default=0, help="which face in the photo, 0 = largest")
    photo.add_argument("--landmarks", metavar="X1,Y1,...,X4,Y4", help="eyes and mouth corners by hand")
    photo.add_argument("--invert", choices=("e4e", "project", "pti"), default="e4e",
                       help="how to invert the photo (default e4e)")
    from styleclip_desktop.cli.invert_cmd import add_pti_options

    add_pti_options(photo)
    photo.add_argument("--e4e", type=Path, metavar="PATH", help="e4e encoder file")
    photo.add_argument("--detector", type=Path, metavar="PATH", help="YuNet face detector file")
    photo.add_argument("--no-paste-back", action="store_true", help="write the aligned face, not the whole photo")
    masks = p.add_argument_group("masks (where the edit may act)")
    masks.add_argument("--mask", metavar="REGION|FILE",
                       help="confine the edit to an automatic region (hair, skin, eyes, brows, nose, lips, beard, "
                            "background, outside-face) or to a mask image of the aligned face (white: the edit acts)")
    masks.add_argument("--mask-feather", type=float, default=None, metavar="PX",
                       help="soften the mask's edge by this many pixels of a 512 px face (default 6 for a region, "
                            "0 for a file)")
    masks.add_argument("--mask-start", type=int, default=DEFAULT_START_RES, metavar="RES",
                       help=f"the generator resolution from which the mask applies (default {DEFAULT_START_RES})")
    masks.add_argument("--invert-mask", action="store_true", help="let the edit act everywhere but the mask")
    p.add_argument("--preview", action="store_true", help="render the fast low-resolution preview instead")
    p.add_argument("--report", action="store_true",
                   help="also print the leak meter: what the edit changes besides its target (needs CLIP)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output image (.png, .jpg, .webp), or a project (.scproj) to add the edit as a layer")
    p.set_defaults(func=run)


def add_optimization_options(p: argparse.ArgumentParser, modes: tuple[str, ...], prefix: str = "") -> None:
    """--mode, --steps, --lambda-l2, --lambda-id, --clip-input and --result, with the published
    defaults of each mode in the help."""
    table = "; ".join(f"{m}: {settings.preset(m).summary()}" for m in modes)
    if len(modes) > 1:
        p.add_argument("--mode", choices=modes, default=modes[0],
                       help=f"{prefix}published defaults to start from (default {modes[0]}; {table})")
    else:
        p.set_defaults(mode=modes[0])
    def per_mode(name: str) -> str:
        return ", ".join(f"{getattr(settings.preset(m), name):g}" + (f" for {m}" if len(modes) > 1 else "")
                         for m in modes)

    p.add_argument("--steps", type=int, default=None, help=f"{prefix}steps (default {per_mode('steps')})")
    if settings.MODE_TEXT_TO_FACE not in modes:
        p.add_argument("--lambda-l2", type=float, default=None,
                       help=f"{prefix}latent L2 weight (default {per_mode('lambda_l2')})")
        p.add_argument("--lambda-id", type=float, default=None,
                       help=f"{prefix}identity weight (default {per_mode('lambda_id')}; above 0 needs ArcFace)")
    p.add_argument("--clip-input", choices=settings.CLIP_INPUTS, default=settings.DEFAULT_CLIP_INPUT,
                   help=f"{prefix}how CLIP sees the image: published (default; the paper's λ and steps were "
                   "tuned with it) or exact (CLIP's own resize and normalisation)")
    p.add_argument("--result", choices=settings.RESULTS, default=settings.DEFAULT_RESULT,
                   help=f"{prefix}last (default): the final step, as published; best: the step with the "
                   "lowest CLIP loss")


def resolve_optimization_options(args: argparse.Namespace) -> None:
    """Fill the settings left unset with the chosen mode's published defaults."""
    p = settings.preset(args.mode)
    for name in ("steps", "lambda_l2", "lambda_id"):
        if getattr(args, name, None) is None:
            setattr(args, name, getattr(p, name))


def run(args: argparse.Namespace) -> int:
    resolve_optimization_options(args)
    if (args.method == "domain") != (args.domain is not None):
        raise UsageError("--domain FILE goes with --method domain, and --method domain needs it")
    if args.method in ("global", "optimize") and not args.target:
        raise UsageError(f"--target is required for --method {args.method}")
    if args.method == "mapper" and not args.mapper:
        raise UsageError("--mapper ID|PATH is required for --method mapper")
    if args.method == "domain" and args.mask is not None:
        raise UsageError("a domain layer moves the whole generator, so it takes no --mask")
    if args.keep and args.method in ("mapper", "domain"):
        raise UsageError("--keep works with --method global and --method optimize")
    out_suffix = args.output.suffix.lower()
    if out_suffix not in IMAGE_OUTPUTS | {".scproj"}:
        raise UsageError("-o must be an image (.png, .jpg, .webp) or a project (.scproj)")
    if args.steps < 1 or args.face < 0:
        raise UsageError("--steps must be positive and --face at least 0")
    if args.mask_start not in START_RESOLUTIONS:
        raise UsageError(f"--mask-start must be one of {', '.join(map(str, START_RESOLUTIONS))}")
    if args.mask_feather is not None and not 0.0 <= args.mask_feather <= MAX_FEATHER:
        raise UsageError(f"--mask-feather must be between 0 and {MAX_FEATHER:g} px")
    if args.mask is None and (args.mask_feather is not None or args.invert_mask):
        raise UsageError("--mask-feather and --invert-mask need --mask")
    mask_file = _mask_file(args.mask) if args.mask is not None else None  # a bad file fails before models load
    alpha = DEFAULT_ALPHA[args.method] if args.alpha is None else args.alpha
    common.check_writable(args.output)  # fail before any heavy work
    if args.method == "mapper":
        from styleclip_desktop.cli.mapper_cmd import resolve_mapper
        from styleclip_desktop.nets.mapper import load_mapper

        load_mapper(resolve_mapper(args, args.mapper))  # a bad file fails before the generator loads
    device = common.pick_device(args)
    engine = common.build_engine(args, device, need_directions=args.method == "global")
    try:
        doc = _document(args, engine, device)
        params, message = _layer(args, engine, doc, device)
        from styleclip_desktop.document import Layer, UndoStack, actions

        layer = Layer(params, alpha=alpha,
                      mask=None if args.mask is None else _mask(args, engine, doc, mask_file))
        UndoStack().push(actions.add_layer(doc, layer))
        masked = engine.renderer.torch_only_notice(doc)
        if masked:
            common.note(f"notice: {masked}")
        report = _leak_lines(engine, doc, layer.id) if args.report else []
        if out_suffix == ".scproj":
            from styleclip_desktop.document import save_project

            # The resolved directions go into the project, which then renders with its
            # generator alone (no CLIP or fs3 needed to export or animate it).
            for notice in engine.store_directions(doc):
                common.note(f"notice: {notice}")
            doc.models = {**engine.models.identities, **dict(doc.models)}
            save_project(doc, args.output)
            print(f"{message}; layer {len(doc.layers)} added -> {args.output}")
            if report:
                print("\n".join(report))
            return 0
        _write_image(args, engine, doc)
        print(f"{message} -> {args.output}")
        if report:
            print("\n".join(report))
        return 0
    finally:
        engine.shutdown()


def _mask_file(value: str) -> Any:
    """A mask image's coverage (float32, square) when `value` names a file, else None (a region)."""
    from styleclip_desktop.methods.regions import REGION_NAMES, region_name

    path = Path(value)
    if not path.exists():
        try:
            region_name(value)
            return None
        except UserError:
            pass
        raise UsageError(f"--mask: {value!r} is neither a region ({', '.join(REGION_NAMES)}) nor a file")
    from styleclip_desktop.document.mask_ops import read_mask_image

    return read_mask_image(path)


def _mask(args: argparse.Namespace, engine: Engine, doc: Document, coverage: Any) -> Any:
    """The new layer's mask: an automatic region of this face, or the given image."""
    from styleclip_desktop.document import LayerMask

    settings = {"inverted": bool(args.invert_mask), "start_res": args.mask_start}
    if coverage is None:
        from styleclip_desktop.methods.regions import region_mask

        feather = 6.0 if args.mask_feather is None else args.mask_feather
        with common.progress.stage(f"finding the {args.mask} region"):
            return region_mask(engine.renderer, doc, args.mask, feather=feather, **settings)
    try:
        return LayerMask.from_coverage(coverage, feather=args.mask_feather or 0.0, **settings)
    except ValueError as exc:
        raise UsageError(f"--mask: {exc}") from None


def _leak_lines(engine: Engine, doc: Document, layer_id: str) -> list[str]:
    """The leak meter's report for the new layer, at the preview size (see `render.leak_meter`)."""
    from styleclip_desktop.render.leak_meter import measure

    with common.progress.stage("measuring what else the edit changes"):
        rep = measure(engine, doc, layer_id)
    return ["what else it changes (CLIP change along each direction; identity 1.0 = unchanged):",
            *(f"  {line}" for line in rep.lines())]


def _document(args: argparse.Namespace, engine: Engine, device: torch.device) -> Document:
    from styleclip_desktop.export.projects_cli import new_document

    G = engine.models.G
    ids = dict(engine.models.identities)
    synthetic = bool(engine.models.synthetic)
    if args.seed is not None:
        return new_document(args.seed, generator=G, psi=args.psi, models=ids, synthetic=synthetic)
    src: Path = args.source
    suffix = src.suffix.lower()
    if suffix == ".scproj":
        from styleclip_desktop.document import load_project

        if not src.is_file():
            raise UserError(f"project not found: {src}")
        doc = load_project(src)
        for warning in doc.model_mismatches(ids):
            common.note(f"notice: {warning}")
        return doc
    from styleclip_desktop.faces.imaging import PHOTO_SUFFIXES

    if suffix in PHOTO_SUFFIXES:
        from styleclip_desktop.cli.invert_cmd import load_photo_document

        doc = load_photo_document(args, src, G, device, args.invert)
        doc.models = ids
        return doc
    return new_document(src, generator=G, models=ids, synthetic=synthetic)


def _layer(args: argparse.Namespace, engine: Engine, doc: Document, device: torch.device) -> tuple[LayerParams, str]:
    from styleclip_desktop.document import GlobalDirectionParams, MapperParams, OptimizationParams

    if args.method == "global":
        info = engine.direction_info(args.target, args.neutral, args.beta)
        if info.error:
            raise UserError(info.error)
        total = int(len(engine.models.fs3)) if engine.models.fs3 is not None else 0
        try:
            params = GlobalDirectionParams(target=args.target, neutral=args.neutral, beta=args.beta,
                                           keep=tuple(args.keep))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--keep: {exc}") from None
        kept = f", keeping {', '.join(params.keep)}" if params.keep else ""
        return params, f"changed {info.channels} of {total} channels (β={args.beta}{kept})"
    if args.method == "domain":
        from styleclip_desktop.methods.domain_file import load_domain_layer

        with common.progress.stage("reading the domain"):
            domain = load_domain_layer(args.domain, engine.models.G, engine.models.identities.get("generator", ""))
        if args.domain_paste_back:
            domain = domain.with_changes(paste_back=True)
        return domain, f"domain {domain.source!r} -> {domain.target!r} ({len(domain.delta)} tensors)"
    if args.method == "mapper":
        from styleclip_desktop.cli.mapper_cmd import levels_from

        lv = levels_from(args)
        off = [name for name, on in lv.items() if not on]
        return (MapperParams(checkpoint=args.mapper, coarse=lv["coarse"], medium=lv["medium"], fine=lv["fine"]),
                f"mapper {args.mapper}" + (f" without {', '.join(off)}" if off else ""))
    delta, message = _optimize(args, engine, doc, device)
    return (OptimizationParams(prompt=args.target, lambda_l2=args.lambda_l2, lambda_id=args.lambda_id,
                               steps=args.steps, seed=0, delta=delta, clip_input=args.clip_input,
                               result=args.result, keep=tuple(args.keep), lambda_keep=args.lambda_keep), message)


def _optimize(args: argparse.Namespace, engine: Engine, doc: Document, device: torch.device) -> tuple[Any, str]:
    """Optimize from the face as it stands (base latent plus the W-space layers below)."""
    from styleclip_desktop.cli.mapper_cmd import load_arcface_for
    from styleclip_desktop.methods import optimization as opt

    G = engine.renderer.generator_for(doc)
    ws = engine.renderer.wplus(doc)
    clip = engine.models.clip or common.load_clip(args, device)
    if args.arcface and args.lambda_id <= 0:
        common.note(f"notice: --arcface is not used: the identity weight is 0 in mode {args.mode}; "
                    "use --mode edit-identity or --lambda-id to keep the identity")
    arcface = load_arcface_for(args, device, args.lambda_id)
    cfg = opt.config_for(args.mode, steps=args.steps, lambda_l2=args.lambda_l2, lambda_id=args.lambda_id,
                         clip_input=args.clip_input, result=args.result, keep=tuple(args.keep),
                         lambda_keep=args.lambda_keep)
    with common.ctrl_c_cancels() as stop:
        result = opt.optimize_latent(G, clip, args.target, ws, cfg, arcface=arcface, cancel=stop,
                                     progress=common.progress_bar("optimizing", "step"))
    if result.cancelled:
        raise Cancelled()
    if result.notice:
        common.note(f"notice: {result.notice}")
    first = result.history[0].total
    return result.delta, (f"optimized {result.steps_done} steps: loss {first:.4f} -> {result.loss:.4f} "
                          f"({result.result} iterate: step {result.step})")


def _write_image(args: argparse.Namespace, engine: Engine, doc: Document) -> None:
    from styleclip_desktop.export.metadata import build_metadata
    from styleclip_desktop.export.stills import write_still

    paste_back = doc.source is not None and not args.no_paste_back and not engine.renderer.crop_only(doc)
    with common.progress.stage("rendering"):
        pixels = engine.render(doc, preview=args.preview, paste_back=paste_back)
    meta = build_metadata(doc, models=engine.models.identities, synthetic=bool(engine.models.synthetic),
                          crop=not paste_back, dims=(pixels.shape[1], pixels.shape[0]))
    write_still(pixels, args.output, meta)
