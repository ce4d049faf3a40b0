"""`styleclip-desktop edit`: apply a text edit to a latent (or a seeded face) and save the image.

Three methods: a global direction (the default; one synthesis pass), latent optimization
towards the prompt (slow, per image), or a trained latent mapper (fast, one prompt each).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from styleclip_desktop.nets.stylegan2 import Generator

DEFAULT_ALPHA = {"global": 4.0, "optimize": 1.0, "mapper": 1.0}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from styleclip_desktop.cli.mapper_cmd import add_level_switches

    p = sub.add_parser("edit", help="edit a face latent with a text prompt",
                       description="Edit a W+ latent (.npy) or a seeded face with a text prompt (global "
                       "direction, latent optimization) or a trained mapper, and write the image.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("latent", nargs="?", type=Path, help="W+ latent .npy, shape (L,512) or (1,L,512)")
    src.add_argument("--seed", type=int, help="start from the face of this random seed instead of a latent")
    p.add_argument("--psi", type=float, default=0.7, help="truncation for --seed (default 0.7)")
    p.add_argument("--method", choices=("global", "optimize", "mapper"), default="global",
                   help="global direction (default), latent optimization, or a trained mapper")
    p.add_argument("--target", help='what the face should become, e.g. "a face with grey hair" '
                   "(required for global and optimize)")
    p.add_argument("--neutral", default="a face", help='global: the neutral description (default "a face")')
    p.add_argument("--alpha", type=float, default=None,
                   help="strength; global: in σ units (default 4), optimize/mapper: scales the found "
                   "offset (default 1); negative pushes away")
    p.add_argument("--beta", type=float, default=0.15, help="global: disentanglement threshold 0.08-0.30 (default 0.15)")
    p.add_argument("--mapper", metavar="ID|PATH", help="mapper: a catalog id such as 'afro' or a mapper file")
    add_level_switches(p)
    p.add_argument("--steps", type=int, default=100, help="optimize: steps (default 100)")
    p.add_argument("--lambda-l2", type=float, default=0.008, help="optimize: latent L2 weight (default 0.008)")
    p.add_argument("--lambda-id", type=float, default=0.005,
                   help="optimize: identity weight (default 0.005; 0 lets the identity change; needs ArcFace)")
    p.add_argument("--space", choices=("w", "s"), default="w", help="optimize: in W+ (default) or in style space S")
    p.add_argument("--arcface", type=Path, metavar="PATH", help="ArcFace IR-SE50 weights (model_ir_se50.pth)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .jpg, .webp)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.method in ("global", "optimize") and not args.target:
        raise UsageError(f"--target is required for --method {args.method}")
    if args.method == "mapper" and not args.mapper:
        raise UsageError("--mapper ID|PATH is required for --method mapper")
    alpha = DEFAULT_ALPHA[args.method] if args.alpha is None else args.alpha
    common.check_writable(args.output)  # fail before any heavy work
    checkpoint = None
    if args.method == "mapper":
        from styleclip_desktop.cli.mapper_cmd import resolve_mapper
        from styleclip_desktop.nets.mapper import load_mapper

        checkpoint = load_mapper(resolve_mapper(args, args.mapper))  # bad files fail before the generator loads
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    if args.seed is not None:
        ws = G.broadcast_w(G.sample_w(1, args.seed, args.psi, device=device))
    else:
        w = common.load_wplus(args.latent, G.num_ws, G.config.w_dim)
        ws = torch.from_numpy(w)[None].to(device)
    if args.method == "global":
        img, meta, message = _global(args, G, ws, alpha)
    elif args.method == "optimize":
        img, meta, message = _optimize(args, G, ws, alpha, device)
    else:
        assert checkpoint is not None
        img, meta, message = _mapper(args, G, ws, alpha, checkpoint)
    common.save_png(img, args.output, {"StyleCLIP-Desktop": "AI-edited", "method": args.method,
                                       "alpha": str(alpha), **meta})
    print(f"{message} -> {args.output}")
    return 0


def _global(args: argparse.Namespace, G: Generator, ws: torch.Tensor,
            alpha: float) -> tuple[np.ndarray, dict[str, str], str]:
    import torch

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.stylegan2 import pack_styles, to_uint8, unpack_styles

    fs3 = gd.load_fs3(common.fs3_path(args, G), G)
    stats = common.ensure_stats(G)
    clip = common.load_clip(args, ws.device)
    dt = clip.text_direction(args.target, args.neutral)
    direction = gd.style_direction(fs3, dt, stats.std, gd.conv_channel_index(G), args.beta)
    with torch.no_grad():
        s = gd.apply_direction(pack_styles(G.w_to_s(ws)), direction.ds, alpha)
        img = to_uint8(G.synthesize(unpack_styles(s, G.style_dims)))[0]
    meta = {"target": args.target, "neutral": args.neutral, "beta": str(args.beta)}
    return img, meta, f"changed {direction.channels} of {len(fs3)} channels (β={args.beta}, α={alpha})"


def _optimize(args: argparse.Namespace, G: Generator, ws: torch.Tensor, alpha: float,
              device: torch.device) -> tuple[np.ndarray, dict[str, str], str]:
    import torch

    from styleclip_desktop.cli.mapper_cmd import ctrl_c_cancels, load_arcface_for
    from styleclip_desktop.errors import Cancelled
    from styleclip_desktop.methods import optimization as opt
    from styleclip_desktop.nets.stylegan2 import to_uint8, unpack_styles

    cfg = opt.OptimizationConfig(steps=args.steps, lambda_l2=args.lambda_l2, lambda_id=args.lambda_id,
                                 space=args.space)
    clip = common.load_clip(args, device)
    arcface = load_arcface_for(args, device, args.lambda_id)
    with ctrl_c_cancels() as stop:
        result = opt.optimize_latent(G, clip, args.target, ws, cfg, arcface=arcface, cancel=stop,
                                     progress=common.progress_bar("optimizing", "step"))
    if result.cancelled:
        raise Cancelled()
    x = torch.from_numpy(result.latent(alpha))[None].to(device)
    with torch.no_grad():
        img = G.synthesize(unpack_styles(x, G.style_dims)) if result.space == opt.S_SPACE else G(x)
    meta = {"target": args.target, "steps": str(args.steps), "lambda_l2": str(args.lambda_l2),
            "lambda_id": str(args.lambda_id if arcface is not None else 0.0), "space": args.space}
    first = result.history[0].total
    message = (f"optimized {result.steps_done} steps: loss {first:.4f} -> {result.best_loss:.4f} "
               f"(best at step {result.best_step}, α={alpha})")
    return to_uint8(img)[0], meta, message


def _mapper(args: argparse.Namespace, G: Generator, ws: torch.Tensor, alpha: float,
            checkpoint: object) -> tuple[np.ndarray, dict[str, str], str]:
    import torch

    from styleclip_desktop.cli.mapper_cmd import levels_from
    from styleclip_desktop.methods.mapper import apply_mapper
    from styleclip_desktop.nets.mapper import MapperCheckpoint
    from styleclip_desktop.nets.stylegan2 import to_uint8

    assert isinstance(checkpoint, MapperCheckpoint)
    trained_for = checkpoint.opts.get("stylegan_size")
    if isinstance(trained_for, int) and trained_for != G.config.resolution:
        common.note(f"notice: this mapper was trained with a {trained_for}px generator; "
                    f"this one is {G.config.resolution}px, so the edit may not look as intended")
    mapper = checkpoint.mapper.to(ws.device)
    levels = levels_from(args)
    with torch.no_grad():
        img = to_uint8(G(apply_mapper(mapper, ws, alpha, levels)))[0]
    off = [name for name, on in levels.items() if not on]
    meta = {"mapper": str(args.mapper), "description": checkpoint.description,
            "disabled_levels": ",".join(off)}
    about = f" ({checkpoint.description!r})" if checkpoint.description else ""
    return img, meta, f"mapper {args.mapper}{about}, α={alpha}" + (f", without {', '.join(off)}" if off else "")
