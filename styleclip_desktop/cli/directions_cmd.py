"""`styleclip-desktop directions`: style statistics and the fs3 relevance matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UsageError
from styleclip_desktop.methods.fs3_input import DEFAULT_PRECOMPUTE_INPUT, PRECOMPUTE_INPUTS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("directions", help="prepare global directions for a generator")
    dsub = p.add_subparsers(dest="directions_command", metavar="ACTION", required=True)
    s = dsub.add_parser("stats", help="per-channel mean and std of style space (cached per generator)")
    s.add_argument("--samples", type=int, default=100_000, help="number of sampled faces (default 100000)")
    s.add_argument("--out", type=Path, help="also write the statistics to this .npz")
    s.set_defaults(func=run_stats)
    pc = dsub.add_parser("precompute", help="compute the fs3 relevance matrix (hours at 1024px on a GPU)")
    pc.add_argument("--out", type=Path, required=True, help="where to write fs3.npy (resumes from OUT.partial.npz)")
    pc.add_argument("--images", type=int, default=100, help="faces to average over (default 100)")
    pc.add_argument("--batch", type=int, default=16, help="channels rendered per batch (default 16)")
    pc.add_argument("--seed", type=int, default=None,
                    help="seed of the sampled faces (default: the statistics' seed, so the faces are the first "
                         "of the statistics sample, as published)")
    pc.add_argument("--clip-input", choices=PRECOMPUTE_INPUTS, default=DEFAULT_PRECOMPUTE_INPUT,
                    help="how CLIP sees each render: 'published' (default) as the published precompute, an 8-bit "
                         "picture through CLIP's own transform, so published beta values carry over; 'exact' the "
                         "float render, unclamped, torch-resized. Not the optimization's --clip-input")
    pc.set_defaults(func=run_precompute)


def run_stats(args: argparse.Namespace) -> int:
    from styleclip_desktop.methods import global_directions as gd

    if args.samples < 2:
        raise UsageError("--samples must be at least 2")
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    stats = gd.compute_style_stats(G, samples=args.samples, progress=common.progress_bar("style statistics"))
    stats.save(common.stats_path(G))
    if args.out:
        stats.save(args.out)
    conv = gd.conv_channel_index(G)
    print(f"style statistics over {args.samples:,} samples: {len(stats.std)} channels "
          f"({len(conv)} conv), mean σ {stats.std[conv].mean():.4f} -> {common.stats_path(G)}")
    return 0


def run_precompute(args: argparse.Namespace) -> int:
    from styleclip_desktop.methods import global_directions as gd

    if args.images < 1 or args.batch < 1:
        raise UsageError("--images and --batch must be positive")
    common.check_writable(args.out)  # fail before any heavy work
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    stats = common.ensure_stats(G, args)
    clip = common.load_clip(args, device)
    fs3 = gd.precompute_fs3(G, clip, stats, args.out, images=args.images, seed=args.seed, batch=args.batch,
                            progress=common.progress_bar("fs3 relevance", unit="ch"), clip_input=args.clip_input)
    seed = stats.seed if args.seed is None else args.seed
    print(f"fs3 {fs3.shape[0]}x{fs3.shape[1]} over {args.images} faces (seed {seed}, "
          f"{args.clip_input} CLIP input) -> {args.out}")
    return 0
