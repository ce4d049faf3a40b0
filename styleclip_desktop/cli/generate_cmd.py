"""`styleclip-desktop generate`: render the face of a random seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from styleclip_desktop.cli import common


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("generate", help="render a random face from a seed",
                       description="Render the face of a random seed; optionally save its W+ latent.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation ψ, 0..1 (default 0.7)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .jpg, .webp)")
    p.add_argument("--save-latent", type=Path, metavar="NPY", help="also write the W+ latent (L,512) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from styleclip_desktop.nets.stylegan2 import to_uint8

    common.check_writable(args.output)  # fail before any heavy work
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    ws = G.broadcast_w(G.sample_w(1, args.seed, args.psi, device=device))
    with torch.no_grad():
        img = to_uint8(G(ws))[0]
    common.save_png(img, args.output, {"StyleCLIP-Desktop": "AI-generated", "seed": str(args.seed), "psi": str(args.psi)})
    if args.save_latent:
        with common.atomic_output(args.save_latent) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, ws[0].cpu().numpy().astype(np.float32))
    print(f"seed {args.seed} -> {args.output}")
    return 0
