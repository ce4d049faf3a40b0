"""`styleclip-desktop domain train|info`: move the generator to a new domain by text
(StyleGAN-NADA) and keep the result as a `.domain` file, which `edit --method domain`
and the editor add as a layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UsageError, UserError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from styleclip_desktop.methods.nada_settings import NadaConfig

    d = NadaConfig(target="-")
    p = sub.add_parser("domain", help="train a domain layer from text (StyleGAN-NADA)",
                       description="Domain layers: the generator itself fine-tuned towards a target text, so the "
                       "same face renders in a new domain (a pencil sketch, a Pixar character, a werewolf).")
    dsub = p.add_subparsers(dest="domain_command", metavar="ACTION", required=True)
    t = dsub.add_parser("train", help="train a domain from a source and a target text",
                        description="Fine-tune a copy of the generator so that, in CLIP space, its images move "
                        "from the source text towards the target text (the published StyleGAN-NADA settings by "
                        "default). Ctrl+C stops after the current step and keeps the best weights so far.")
    t.add_argument("--target", required=True, help='the domain to reach, e.g. "a pencil sketch"')
    t.add_argument("--source", default=d.source, help=f'what the generator makes now (default "{d.source}")')
    t.add_argument("-o", "--output", type=Path, required=True, help="the domain file to write (.domain)")
    t.add_argument("--iterations", type=int, default=d.iterations,
                   help=f"training steps (default {d.iterations}, as published; minutes per step on a CPU)")
    t.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr:g})")
    t.add_argument("--batch", type=int, default=d.batch, help=f"samples per step (default {d.batch})")
    t.add_argument("--layers", type=int, default=d.layers_k, metavar="K",
                   help=f"W+ rows trained per step, of 18 at 1024 px (default {d.layers_k}); "
                        "0 trains every row without choosing")
    t.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    t.add_argument("--latent", type=Path, metavar="W.npy",
                   help="your own face's W+ (as `invert` saves it) to train on beside the samples")
    t.add_argument("--checkpoint", type=Path, metavar="FILE", help="write a resumable checkpoint here as it trains")
    t.add_argument("--resume", type=Path, metavar="FILE", help="continue from a checkpoint written by --checkpoint")
    t.set_defaults(func=run_train)
    i = dsub.add_parser("info", help="describe a domain file")
    i.add_argument("file", type=Path, help="a .domain file")
    i.set_defaults(func=run_info)


def run_train(args: argparse.Namespace) -> int:
    import numpy as np

    from styleclip_desktop.methods import domain_file, nada

    if args.output.suffix.lower() != domain_file.SUFFIX:
        raise UsageError(f"-o must name a {domain_file.SUFFIX} file")
    if args.iterations < 1 or args.batch < 1 or args.layers < 0:
        raise UsageError("--iterations and --batch must be at least 1, --layers at least 0")
    common.check_writable(args.output)
    select = {"layer_select_iters": 0} if args.layers == 0 else {"layers_k": args.layers}
    cfg = nada.NadaConfig(target=args.target, source=args.source, iterations=args.iterations, lr=args.lr,
                          batch=args.batch, seed=args.seed, **select)  # type: ignore[arg-type]
    cfg.check()
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    extra = None
    if args.latent is not None:
        try:
            extra = np.load(args.latent, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the latent {args.latent.name}: {exc}") from None
    clip = common.load_clip(args, device)
    bar = common.progress_bar("training the domain", "step")
    with common.ctrl_c_cancels() as stop:
        result = nada.train_domain(G, clip, cfg, extra_ws=extra, progress=lambda step, total, _loss: bar(step, total),
                                   cancel=stop.is_set, checkpoint=args.checkpoint, resume=args.resume, device=device)
    params = domain_file.params_from_result(result, cfg, getattr(G, "source_sha256", "") or "")
    domain_file.save_domain(args.output, params)
    state = "stopped early, kept the best step" if result.cancelled else "finished"
    print(f"{state}: {result.steps_done} steps, loss {result.losses[0]:.4f} -> {min(result.losses):.4f}, "
          f"{len(params.delta)} tensors ({params.size_bytes() / 2**20:.1f} MB) -> {args.output}"
          if result.losses else f"{state}: no steps -> {args.output}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from styleclip_desktop.methods.domain_file import read_domain

    p = read_domain(args.file)
    print(f"{p.source!r} -> {p.target!r}: {p.steps} steps, rows {', '.join(map(str, p.rows)) or 'unknown'}, "
          f"{len(p.delta)} tensors, {p.size_bytes() / 2**20:.1f} MB"
          + (f", from {p.origin}" if p.origin else "") + (f", base {p.base[:12]}" if p.base else ""))
    return 0
