"""`styleclip-desktop directions`: style statistics, the fs3 relevance matrix, closed-form sliders."""

from __future__ import annotations

import argparse
from pathlib import Path

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UsageError
from styleclip_desktop.methods.fs3_input import DEFAULT_PRECOMPUTE_INPUT, PRECOMPUTE_INPUTS

DEFAULT_NAMING_FACES = 4


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
    r = pc.add_argument_group("on a Ray cluster")
    r.add_argument("--ray", metavar="auto|ADDRESS",
                   help="split the channels into shards computed by Ray workers: auto joins the cluster this "
                        "machine is part of (or starts one here), ADDRESS joins that one; finished shards are "
                        "kept in OUT.shards, so a stopped run resumes, and the result is the same file as "
                        "without --ray (needs `pip install 'styleclip-desktop[cluster]'`; every machine needs "
                        "the model files at the same paths)")
    r.add_argument("--workers", type=int, metavar="N",
                   help="Ray workers, each holding the models (default: as many as the cluster's cores allow)")
    r.add_argument("--cpus-per-worker", type=int, metavar="N", help="CPU cores (and torch threads) per worker "
                                                                    "(default 1)")
    r.add_argument("--shard-channels", type=int, metavar="N",
                   help="channels per shard, a multiple of --batch: what a lost worker costs (default: several "
                        "shards per worker)")
    pc.set_defaults(func=run_precompute)
    sf = dsub.add_parser("sefa", help="sliders from the generator's own weights (closed form, no prompt)",
                         description="List the generator's closed-form (SeFa) directions per layer group; with "
                                     "--name, name each by CLIP against the slider vocabulary.")
    sf.add_argument("--group", choices=[*sefa_groups(), "all"], default="all",
                    help="layers to factorize: coarse (4-8 px), middle (16-32 px), fine (64 px up); default all")
    sf.add_argument("--top", type=int, default=8, help="directions listed per group (default 8)")
    sf.add_argument("--name", action="store_true", help="name each direction with CLIP (renders a few faces each)")
    sf.add_argument("--vocabulary", type=Path, help="a slider vocabulary .toml (default: the built-in one)")
    sf.add_argument("--faces", type=int, default=DEFAULT_NAMING_FACES,
                    help=f"faces rendered per direction when naming (default {DEFAULT_NAMING_FACES})")
    sf.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sf.set_defaults(func=run_sefa)


def sefa_groups() -> tuple[str, ...]:
    return ("coarse", "middle", "fine")


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
    if args.ray is None and (args.workers, args.cpus_per_worker, args.shard_channels) != (None, None, None):
        raise UsageError("--workers, --cpus-per-worker and --shard-channels go with --ray")
    if (args.workers is not None and args.workers < 1) or (args.cpus_per_worker is not None
                                                           and args.cpus_per_worker < 1):
        raise UsageError("--workers and --cpus-per-worker must be at least 1")
    if args.shard_channels is not None and (args.shard_channels < 1 or args.shard_channels % args.batch):
        raise UsageError(f"--shard-channels must be a positive multiple of --batch ({args.batch})")
    common.check_writable(args.out)  # fail before any heavy work
    if args.ray is not None:
        return _precompute_on_ray(args)
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    stats = common.ensure_stats(G, args)
    clip = common.load_clip(args, device)
    fs3 = gd.precompute_fs3(G, clip, stats, args.out, images=args.images, seed=args.seed, batch=args.batch,
                            progress=common.progress_bar("fs3 relevance", unit="ch"), clip_input=args.clip_input)
    _print_summary(args, fs3.shape, stats.seed)
    return 0


def _print_summary(args: argparse.Namespace, shape: tuple[int, ...], stats_seed: int) -> None:
    seed = stats_seed if args.seed is None else args.seed
    print(f"fs3 {shape[0]}x{shape[1]} over {args.images} faces (seed {seed}, "
          f"{args.clip_input} CLIP input) -> {args.out}")


def _precompute_on_ray(args: argparse.Namespace) -> int:
    import torch

    from styleclip_desktop.cluster.ray_precompute import precompute_fs3_on_ray

    # This machine only plans and merges: its generator gives the channels and the statistics.
    G = common.load_generator(args, torch.device("cpu"))
    stats = common.ensure_stats(G, args)
    redone: list[dict[str, object]] = []

    def on_shard(record: dict[str, object]) -> None:
        if record["redone"]:
            redone.append(record)

    fs3 = precompute_fs3_on_ray(common.model_paths(args), args.out, images=args.images, seed=args.seed,
                                batch=args.batch, clip_input=args.clip_input, shard_channels=args.shard_channels,
                                workers=args.workers, cpus_per_worker=args.cpus_per_worker or 1,
                                progress=common.progress_bar("fs3 relevance", unit="ch"), on_shard=on_shard,
                                address=args.ray, generator=G, stats=stats,
                                device="cpu" if args.device == "cpu" else "auto")
    if redone:
        common.note(f"notice: {len(redone)} shard{'s' if len(redone) != 1 else ''} redone after "
                    "their Ray worker died")
    _print_summary(args, fs3.shape, stats.seed)
    return 0


def run_sefa(args: argparse.Namespace) -> int:
    import json

    from styleclip_desktop.methods import sefa
    from styleclip_desktop.render.session import generator_key

    if args.top < 1 or args.faces < 1:
        raise UsageError("--top and --faces must be positive")
    vocab = sefa.load_vocabulary(args.vocabulary) if args.name or args.vocabulary else None
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    bases = sefa.cached_bases(G, sefa.bases_path(G))
    if args.group != "all":
        if args.group not in bases:
            raise UsageError(f"this generator has no {args.group} layers")
        bases = {args.group: bases[args.group]}
    rows: list[dict[str, object]] = []
    if args.name and vocab is not None:
        clip = common.load_clip(args, device)
        named = sefa.name_with_clip(G, clip, bases, vocab, top=args.top, faces=args.faces,
                                    progress=common.progress_bar("naming sliders", unit="direction"))
        if args.group == "all" and args.faces == DEFAULT_NAMING_FACES:  # as the Sliders panel names them
            sefa.save_names(named, sefa.names_path(G, str(clip.model_hash), vocab))
        rows = [{"group": d.group, "index": d.index, "share": round(d.share, 4), "name": d.name,
                 "prompt": d.prompt, "score": round(d.score, 4), "sign": d.sign} for d in named]
    else:
        for g, b in bases.items():
            share = b.share()
            rows += [{"group": g, "index": i, "share": round(float(share[i]), 4)}
                     for i in range(min(args.top, len(b.vectors)))]
    if args.json:
        print(json.dumps({"generator": generator_key(G), "rows": {g: list(b.rows) for g, b in bases.items()},
                          "directions": rows}))
        return 0
    for r in rows:
        line = f"{r['group']:<7} {r['index']:>3}  {100 * float(r['share']):5.1f}%"  # type: ignore[arg-type]
        if "name" in r:
            sign = "+" if r["sign"] == 1 else "-"
            line += f"  {r['name']:<12} {float(r['score']):.3f}  ({sign}) {r['prompt'] or ''}"  # type: ignore[arg-type]
        print(line.rstrip())
    return 0
