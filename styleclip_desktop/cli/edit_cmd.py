"""`styleclip-desktop edit`: apply a text edit to a latent (or a seeded face) and save the image."""

from __future__ import annotations

import argparse
from pathlib import Path

from styleclip_desktop.cli import common


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("edit", help="edit a face latent with a text prompt (global direction)",
                       description="Edit a W+ latent (.npy) or a seeded face with a text prompt and write the image.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("latent", nargs="?", type=Path, help="W+ latent .npy, shape (L,512) or (1,L,512)")
    src.add_argument("--seed", type=int, help="start from the face of this random seed instead of a latent")
    p.add_argument("--psi", type=float, default=0.7, help="truncation for --seed (default 0.7)")
    p.add_argument("--target", required=True, help='what the face should become, e.g. "a face with grey hair"')
    p.add_argument("--neutral", default="a face", help='the neutral description (default "a face")')
    p.add_argument("--alpha", type=float, default=4.0, help="strength in σ units; negative pushes away (default 4)")
    p.add_argument("--beta", type=float, default=0.15, help="disentanglement threshold 0.08-0.30 (default 0.15)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .jpg, .webp)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.stylegan2 import pack_styles, to_uint8, unpack_styles

    common.check_writable(args.output)  # fail before any heavy work
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    if args.seed is not None:
        ws = G.broadcast_w(G.sample_w(1, args.seed, args.psi, device=device))
    else:
        w = common.load_wplus(args.latent, G.num_ws, G.config.w_dim)
        ws = torch.from_numpy(w)[None].to(device)
    fs3 = gd.load_fs3(common.fs3_path(args, G), G)
    stats = common.ensure_stats(G)
    clip = common.load_clip(args, device)
    dt = clip.text_direction(args.target, args.neutral)
    direction = gd.style_direction(fs3, dt, stats.std, gd.conv_channel_index(G), args.beta)
    with torch.no_grad():
        s = gd.apply_direction(pack_styles(G.w_to_s(ws)), direction.ds, args.alpha)
        img = to_uint8(G.synthesize(unpack_styles(s, G.style_dims)))[0]
    common.save_png(img, args.output, {
        "StyleCLIP-Desktop": "AI-edited", "target": args.target, "neutral": args.neutral,
        "alpha": str(args.alpha), "beta": str(args.beta)})
    print(f"changed {direction.channels} of {len(fs3)} channels (β={args.beta}, α={args.alpha}) -> {args.output}")
    return 0
