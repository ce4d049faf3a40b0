"""`styleclip-desktop mapper train|export`: train a latent mapper for a prompt, write one in the
layout the official StyleCLIP code reads; plus the model lookups that the mapper and
optimization edits share (mapper ids, the ArcFace file)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from styleclip_desktop.cli import common
from styleclip_desktop.errors import Cancelled, UserError

if TYPE_CHECKING:
    import torch

    from styleclip_desktop.nets.irse import ArcFace

ARCFACE_FILENAMES = ("model_ir_se50.pth",)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("mapper", help="train a latent mapper for a prompt",
                       description="Latent mappers: one small network per prompt, fast to apply once trained.")
    msub = p.add_subparsers(dest="mapper_command", metavar="ACTION", required=True)
    t = msub.add_parser("train", help="train a mapper for a prompt",
                        description="Train a levels mapper on sampled faces or on your own inverted latents. "
                        "Ctrl+C stops after the current step and keeps the checkpoint; --resume continues it.")
    t.add_argument("--prompt", required=True, help='what the mapper should do, e.g. "a face with purple hair"')
    t.add_argument("--out", type=Path, required=True,
                   help="the mapper file to write (.pt); its resume state goes beside it, in NAME.train-state.pt")
    t.add_argument("--steps", type=int, default=50_000, help="training steps (default 50000, as published)")
    t.add_argument("--latents", type=Path, metavar="FILE", nargs="+",
                   help="inverted W+ latents to train on (.npy of shape (N,L,512), or one (L,512) face per file, "
                   "as `invert` saves them); default: style-mixed samples of the generator")
    t.add_argument("--samples", type=int, default=5000, help="how many faces to sample without --latents (default 5000)")
    t.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    t.add_argument("--optimizer", choices=("ranger", "adam"), default="ranger",
                   help="ranger (RAdam + Lookahead + gradient centralisation, the published default) or adam")
    t.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5, the published one)")
    t.add_argument("--clip-input", choices=("published", "exact"), default="published",
                   help="how CLIP sees the image: published (the published loss's box filter to 224 px, no "
                   "normalisation; the default, which the published settings were tuned with) or exact "
                   "(CLIP's own preprocessing)")
    t.add_argument("--lambda-l2", type=float, default=0.8, help="weight of the latent L2 term (default 0.8)")
    t.add_argument("--lambda-id", type=float, default=0.1, help="weight of the identity term (default 0.1; needs ArcFace)")
    t.add_argument("--arcface", type=Path, metavar="PATH", help="ArcFace IR-SE50 weights (model_ir_se50.pth)")
    t.add_argument("--keep", action="append", default=[], metavar="TEXT",
                   help='an attribute the mapper must not change, e.g. "age" or any text (repeatable): each '
                        "face's CLIP similarity to it is held at its start")
    t.add_argument("--lambda-keep", type=float, default=1.0, help="weight of the kept attributes (default 1)")
    t.add_argument("--checkpoint-every", type=int, default=500, help="save every N steps (default 500)")
    t.add_argument("--seed", type=int, default=0, help="seed for the mapper's start, the samples and the batch order (default 0)")
    t.add_argument("--resume", action="store_true", help="continue training the mapper at --out from its state file")
    add_level_switches(t)
    t.set_defaults(func=run_train)
    e = msub.add_parser("export", help="write a mapper file the official StyleCLIP code can read",
                        description="Write MAPPER in the official StyleCLIP layout: the mapper, the generator it "
                        "edits (--generator, or the one in the models folder) as the rosinality-format decoder, and "
                        "the options the official loader reads. The official code refuses files without the "
                        "decoder, such as the ones `mapper train` writes.")
    e.add_argument("mapper", metavar="MAPPER", help="a mapper file (.pt) or catalog id")
    e.add_argument("--official", type=Path, metavar="OUT.pt", required=True, help="the file to write")
    e.set_defaults(func=run_export)


def add_level_switches(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-coarse", action="store_true", help="leave W+ rows 0-3 (pose, shape) alone")
    p.add_argument("--no-medium", action="store_true", help="leave W+ rows 4-7 (features, hair style) alone")
    p.add_argument("--no-fine", action="store_true", help="leave W+ rows 8+ (colours, micro-structure) alone")


def levels_from(args: argparse.Namespace) -> dict[str, bool]:
    return {"coarse": not args.no_coarse, "medium": not args.no_medium, "fine": not args.no_fine}


# --- model lookups ----------------------------------------------------------------------


def resolve_mapper(args: argparse.Namespace, ref: str) -> Path:
    """A mapper file from a path, or from a catalog id (`afro`, `mapper-afro`) in the models folder."""
    from styleclip_desktop.render.session import resolve_mapper as _resolve

    return _resolve(common.models_dir(args), ref)


def arcface_path(args: argparse.Namespace) -> Path | None:
    if getattr(args, "arcface", None):
        return Path(args.arcface)
    from styleclip_desktop.weights.catalog import ARCFACE, load_catalog

    names: list[str] = list(ARCFACE_FILENAMES)
    with contextlib.suppress(UserError):
        names = [n for e in load_catalog().by_format(ARCFACE) for n in e.filenames] + names
    folder = common.models_dir(args)
    return next((folder / n for n in names if (folder / n).is_file()), None)


def load_arcface_for(args: argparse.Namespace, device: torch.device, lambda_id: float) -> ArcFace | None:
    """The ArcFace net when the identity term is wanted; a notice and None when it is not installed."""
    if lambda_id <= 0:
        return None
    path = arcface_path(args)
    if path is None:
        common.note("notice: no ArcFace model (model_ir_se50.pth) found; the identity term is skipped. "
                    "Get it with `styleclip-desktop models download arcface-ir-se50` or pass --arcface PATH")
        return None
    from styleclip_desktop.nets.irse import load_arcface

    return load_arcface(path, device)


# --- mapper train -----------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    from styleclip_desktop.methods import mapper as mm

    out = Path(args.out)
    common.check_writable(out)
    if out.exists() and not args.resume:
        raise UserError(f"{out} already exists: pass --resume to continue training it, or choose another --out")
    levels = tuple(name for name, on in levels_from(args).items() if on)
    if not levels:
        raise UserError("every sub-mapper is switched off: there is nothing to train")
    cfg = mm.MapperTrainConfig(prompt=args.prompt, steps=args.steps, batch=args.batch, lr=args.lr,
                               lambda_l2=args.lambda_l2, lambda_id=args.lambda_id, levels=levels,
                               seed=args.seed, checkpoint_every=args.checkpoint_every,
                               optimizer=args.optimizer, clip_input=args.clip_input, keep=tuple(args.keep),
                               lambda_keep=args.lambda_keep)
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    if args.latents:
        latents = mm.load_latent_sets(args.latents, G.num_ws, G.config.w_dim)
    else:
        common.note(mm.STAND_IN_NOTE)
        latents = mm.sample_latents(G, args.samples, seed=args.seed)
    clip = common.load_clip(args, device)
    arcface = load_arcface_for(args, device, args.lambda_id)
    if args.resume and not out.exists():
        common.note(f"no checkpoint at {out} yet; starting a new training run")
    with common.ctrl_c_cancels() as stop:
        result = mm.train_mapper(G, clip, latents, cfg, arcface=arcface, out_path=out, resume=args.resume,
                                 progress=common.progress_bar("training mapper", "step"), cancel=stop)
    if result.cancelled:
        common.note(f"stopped at step {result.step} of {cfg.steps}; checkpoint saved to {out} "
                    "(continue with --resume)")
        raise Cancelled()
    losses = result.losses
    summary = f"loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "nothing left to train"
    print(f"trained {result.step} steps for {args.prompt!r} ({summary}) -> {out}")
    common.note(f"resume state: {mm.state_path(out)}; for the official StyleCLIP code: "
                f"styleclip-desktop mapper export {out} --official OUT.pt")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from styleclip_desktop.weights.rosinality_export import export_official_mapper

    out = Path(args.official)
    common.check_writable(out)
    source = resolve_mapper(args, args.mapper)
    if out.resolve() == source.resolve():
        raise UserError("--official must name a new file, not the mapper being exported")
    G = common.load_generator(args, torch.device("cpu"))
    result = export_official_mapper(source, G, out)
    for problem in result.problems:
        common.note(f"warning: the official code may not load this generator: {problem}")
    print(f"exported {source.name} ({result.description or 'no prompt recorded'}; "
          f"{', '.join(result.levels)}) with its {G.config.resolution} px generator -> {out}")
    return 0
