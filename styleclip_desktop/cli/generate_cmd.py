"""`styleclip-desktop generate`: render the face of a random seed, or generate a face from a prompt."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from styleclip_desktop.cli import common

if TYPE_CHECKING:
    import torch

    from styleclip_desktop.nets.stylegan2 import Generator


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("generate", help="render a random face from a seed, or a face from a prompt",
                       description="Render the face of a random seed; with --prompt, optimize that face "
                       "(or the average face) towards the prompt. Optionally save its W+ latent.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation ψ, 0..1 (default 0.7)")
    p.add_argument("--prompt", help='generate a face from this text, e.g. "an old man with a beard"')
    from styleclip_desktop.cli.edit_cmd import add_optimization_options
    from styleclip_desktop.methods.optimization_settings import MODE_TEXT_TO_FACE

    add_optimization_options(p, (MODE_TEXT_TO_FACE,), "with --prompt: ")
    p.add_argument("--start", choices=("sample", "mean"), default="sample",
                   help="with --prompt: start from the seed's face (default) or from the average face")
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .jpg, .webp)")
    p.add_argument("--save-latent", type=Path, metavar="NPY", help="also write the W+ latent (L,512) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from styleclip_desktop.cli.edit_cmd import resolve_optimization_options
    from styleclip_desktop.document import Document
    from styleclip_desktop.errors import UsageError
    from styleclip_desktop.export.metadata import build_metadata
    from styleclip_desktop.export.stills import write_still

    resolve_optimization_options(args)
    if args.steps < 1:
        raise UsageError("--steps must be positive")
    common.check_writable(args.output)  # fail before any heavy work
    if args.save_latent:
        common.check_writable(args.save_latent)
    device = common.pick_device(args)
    engine = common.build_engine(args, device, need_directions=False)
    try:
        G = engine.models.G
        extra: dict[str, object] = {"psi": args.psi}
        if args.prompt is None:
            ws = G.broadcast_w(G.sample_w(1, args.seed, args.psi, device=device))
            message = f"seed {args.seed}"
        else:
            ws, message = _from_text(args, G, device)
            extra.update({"prompt": args.prompt, "steps": args.steps, "start": args.start})
        latent = ws[0].detach().cpu().numpy().astype(np.float32)
        doc = Document(latent, seed=args.seed, models=engine.models.identities, synthetic=bool(engine.models.synthetic),
                       description=f"generated: {message}")
        with common.progress.stage("rendering"):
            pixels = engine.render(doc)
        write_still(pixels, args.output, build_metadata(doc, models=engine.models.identities,
                                                        synthetic=bool(engine.models.synthetic), extra=extra))
    finally:
        engine.shutdown()
    if args.save_latent:
        with common.atomic_output(args.save_latent) as tmp, open(tmp, "wb") as f:
            np.save(f, latent)
    print(f"{message} -> {args.output}")
    return 0


def _from_text(args: argparse.Namespace, G: Generator, device: torch.device) -> tuple[torch.Tensor, str]:
    import torch

    from styleclip_desktop.errors import Cancelled
    from styleclip_desktop.methods.optimization import generate_from_text

    clip = common.load_clip(args, device)
    with common.ctrl_c_cancels() as stop:
        result = generate_from_text(G, clip, args.prompt, seed=args.seed, steps=args.steps, start=args.start,
                                    psi=args.psi, clip_input=args.clip_input, result=args.result,
                                    progress=common.progress_bar("generating", "step"), cancel=stop)
    if result.cancelled:
        raise Cancelled()
    if result.notice:
        common.note(f"notice: {result.notice}")
    ws = torch.from_numpy(result.latent())[None].to(device)
    first = result.history[0].clip
    return ws, (f"{args.prompt!r} from seed {args.seed} ({args.start}): CLIP loss {first:.4f} -> {result.clip:.4f} "
                f"({result.result} iterate: step {result.step})")
