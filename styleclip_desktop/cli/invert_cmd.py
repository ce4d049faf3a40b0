"""`styleclip-desktop invert`: a photo's face -> a W+ latent (.npy) or a new project (.scproj)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from styleclip_desktop.cli import common
from styleclip_desktop.errors import ModelFileError, UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("invert", help="find, align and invert the face in a photo",
                       description="Find the face in PHOTO, align it FFHQ-style and invert it into the "
                       "generator's W+ space. Writes the latent (.npy) or a new project (.scproj).")
    p.add_argument("photo", type=Path, help="JPEG, PNG, WebP, TIFF or BMP photo")
    p.add_argument("-o", "--output", type=Path, required=True, help="latent.npy or project.scproj")
    p.add_argument("--method", choices=("e4e", "project", "pti"), default="e4e",
                   help="e4e (seconds), project (optimise W+, minutes) or pti (tune the generator, minutes)")
    p.add_argument("--face", type=int, default=0, help="which face, 0 = largest (default 0)")
    p.add_argument("--landmarks", metavar="X1,Y1,...,X4,Y4",
                   help="eye centres and mouth corners by hand, when no face is found")
    p.add_argument("--steps", type=int, default=None, dest="refine_steps",
                   help="refinement steps (default: project 100; pti 350 as published, stopping early once "
                   "LPIPS reaches 0.06; pti --pti-loss mse-identity 100)")
    add_pti_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the refinement (default 0)")
    p.add_argument("--e4e", type=Path, metavar="PATH", help="e4e encoder file (default: from the models dir)")
    p.add_argument("--detector", type=Path, metavar="PATH", help="YuNet face detector (default: from the models dir)")
    p.set_defaults(func=run)


def add_pti_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--pti-loss", choices=("published", "mse-identity"), default="published",
                   help="pti: published = LPIPS + L2 at full resolution, Adam 3e-4, as in the PTI paper "
                   "(needs the lpips-alexnet model); mse-identity = pixel MSE at 256 px, quicker (default published)")
    p.add_argument("--pti-locality", action="store_true",
                   help="pti: add the published locality regulariser (off by default, as published)")
    p.add_argument("--lpips", type=Path, metavar="PATH",
                   help="AlexNet backbone for LPIPS (default: lpips-alexnet from the models dir)")


def pti_inputs(args: argparse.Namespace, method: str, device: object) -> dict[str, Any]:
    """The import_photo keywords for PTI: procedure, its settings, the LPIPS network."""
    procedure = getattr(args, "pti_loss", "published")
    if method != "pti" or procedure != "published":
        return {"pti_procedure": procedure}
    from styleclip_desktop.methods.pti import PTIConfig
    from styleclip_desktop.nets.lpips_net import find_lpips, load_lpips

    path = find_lpips(common.models_dir(args), getattr(args, "lpips", None))
    return {"pti_procedure": procedure, "pti_config": PTIConfig(locality=bool(getattr(args, "pti_locality", False))),
            "lpips_model": load_lpips(path, device=device)}  # type: ignore[arg-type]


def locate_model(args: argparse.Namespace, explicit: Path | None, model_id: str) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ModelFileError(f"file not found: {explicit}")
        return explicit
    from styleclip_desktop.render.session import locate

    return locate(common.models_dir(args), model_id)


def load_photo_document(args: argparse.Namespace, photo: Path, G: object, device: object, method: str = "e4e") -> Any:
    """Photo -> Document, shared by `invert` and `edit PHOTO`."""
    from styleclip_desktop.faces.detect import landmarks_from_points
    from styleclip_desktop.nets.e4e import load_e4e
    from styleclip_desktop.render.photo_import import find_faces, import_photo

    landmarks = landmarks_from_points(args.landmarks) if getattr(args, "landmarks", None) else None
    with common.progress.stage("finding the face"):
        faces = find_faces(photo, locate_model(args, getattr(args, "detector", None), "yunet"), landmarks)
    if faces.count > 1:
        common.note(f"{photo.name}: {faces.count} faces found; using face {args.face} (choose with --face N)")
    e4e_path = locate_model(args, getattr(args, "e4e", None), "e4e-ffhq")
    if e4e_path is None:
        raise ModelFileError("inverting a photo needs the e4e encoder: run `styleclip-desktop models download "
                             "e4e-ffhq` or pass --e4e PATH")
    with common.progress.stage("loading the e4e encoder"):
        encoder = load_e4e(e4e_path, device=device)  # type: ignore[arg-type]
    extra = pti_inputs(args, method, device)
    return import_photo(faces, G, encoder, face=args.face, method=method,
                        steps=getattr(args, "refine_steps", None), seed=getattr(args, "seed", 0),
                        progress=_InversionProgress(), **extra)


class _InversionProgress:
    """The stages of an import (align, invert, done) as one bar, and a refinement's steps
    ("projection step 40/100") as a bar of their own: that is where the minutes go."""

    _STEP = re.compile(r"^(?P<what>.+) step (?P<done>\d+)/(?P<total>\d+)$")

    def __init__(self) -> None:
        self.stages = common.progress_bar("importing the photo", "stage")
        self.steps: dict[str, common.progress.Progress] = {}

    def __call__(self, done: int, total: int, message: str = "") -> None:
        m = self._STEP.match(message or "")
        if m is None:
            self.stages(done, total)
            return
        what = m["what"]
        if what not in self.steps:
            self.steps[what] = common.progress_bar(what, "step")
        self.steps[what](int(m["done"]), int(m["total"]))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    suffix = args.output.suffix.lower()
    if suffix not in (".npy", ".scproj"):
        raise UsageError("-o must end in .npy (the latent) or .scproj (a project)")
    if (args.refine_steps is not None and args.refine_steps < 1) or args.face < 0:
        raise UsageError("--steps must be positive and --face at least 0")
    common.check_writable(args.output)
    device = common.pick_device(args)
    G = common.load_generator(args, device)
    doc = load_photo_document(args, args.photo, G, device, args.method)
    if suffix == ".scproj":
        from styleclip_desktop.document import save_project

        save_project(doc, args.output)
    else:
        if args.method == "pti":
            common.note("note: the fine-tuned generator from pti is kept only in a project (.scproj); "
                        "the .npy holds the pivot latent")
        with common.atomic_output(args.output) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(doc.latent, np.float32))
    print(f"{args.photo.name}: face {args.face} inverted with {args.method} -> {args.output}")
    return 0
