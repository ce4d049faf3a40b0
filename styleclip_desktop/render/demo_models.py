"""A complete models directory of synthetic files, for touring the app without a download.

`styleclip-desktop models synthesize --out DIR` and the editor's "Use Synthetic Demo
Models" both call `write_demo_models`, so a project made in the editor on the demo models
renders from the command line with `--models-dir DIR`, and the other way round.

Every file is in its official format, under the name the catalog gives the official one,
so the app finds them exactly as it finds real downloads; a manifest (`synthetic.json`)
says which files are synthetic, and everything that lists models says so. Style
statistics and the fs3 relevance matrix are computed from this generator and this CLIP
by the real procedures (fewer fs3 images than the official 100), and kept in
`directions/<generator>/` where the app looks for a generator's own directions. There is
no synthetic face detector: photos are opened with OpenCV's bundled one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from styleclip_desktop.errors import Cancelled
from styleclip_desktop.weights.store import SYNTHETIC_MANIFEST, SYNTHETIC_NOTE

Progress = Callable[[int, int, str], None]

DEFAULT_RESOLUTION = 64
FS3_IMAGES = 2  # the official precompute averages 100 faces; the demo keeps its cost to seconds
# Trained CLIP's towers share a space of low effective dimension; see tiny_clip_state_dict.
CLIP_SHARED_RANK = 128
# Half the width of the test generator: the fs3 precompute renders every channel at +-5
# sigma, and its cost grows with the cube of the width (seconds here, not minutes).
DEMO_CHANNELS = 32
DEMO_MAPPERS = ("afro",)  # the mapper the README's examples use


def write_demo_models(folder: Path, resolution: int = DEFAULT_RESOLUTION, seed: int = 0,
                      fs3_images: int = FS3_IMAGES, progress: Progress | None = None,
                      cancelled: Callable[[], bool] | None = None) -> dict[str, Path]:
    """Write the directory; returns catalog id (or "fs3"/"stats") -> path."""
    from safetensors.torch import save_file

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.clip import load_clip, tiny_clip_state_dict
    from styleclip_desktop.nets.e4e import write_synthetic_e4e
    from styleclip_desktop.nets.irse import write_synthetic_arcface
    from styleclip_desktop.nets.mapper import write_synthetic_mapper
    from styleclip_desktop.render import session
    from styleclip_desktop.weights.catalog import load_catalog
    from styleclip_desktop.weights.formats import load_generator
    from styleclip_desktop.weights.synthetic import rosinality_state_dict, tiny_generator, write_ada_pkl

    total = 6
    report = progress or (lambda done, total, message: None)

    def step(done: int, message: str) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled("writing the synthetic models was cancelled")
        report(done, total, message)

    catalog = load_catalog()

    def target(model_id: str) -> Path:
        return folder / catalog.get(model_id).filename

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    titles: dict[str, str] = {}
    step(0, "the generator")
    G0 = tiny_generator(resolution, seed, channel_max=DEMO_CHANNELS)
    written["stylegan2-ffhq-ada"] = _atomic(target("stylegan2-ffhq-ada"), lambda p: write_ada_pkl(G0, p, seed))
    titles["stylegan2-ffhq-ada"] = (f"Synthetic StyleGAN2 generator, {resolution} px, random weights "
                                    "(in NVIDIA's stylegan2-ada-pytorch pickle format)")
    step(1, "CLIP")
    clip_sd = tiny_clip_state_dict(seed, shared_rank=CLIP_SHARED_RANK)
    written["clip-vit-b-32"] = _atomic(target("clip-vit-b-32"), lambda p: save_file(
        {k: v.contiguous() for k, v in clip_sd.items()}, str(p), metadata={"note": SYNTHETIC_NOTE}))
    titles["clip-vit-b-32"] = "Synthetic CLIP (tiny ViT, random weights, open_clip safetensors layout)"
    step(2, "the photo encoder, the identity network and a mapper")
    decoder = rosinality_state_dict(G0)
    written["e4e-ffhq"] = _atomic(target("e4e-ffhq"), lambda p: write_synthetic_e4e(
        p, num_ws=G0.num_ws, seed=seed, decoder_state=decoder))
    titles["e4e-ffhq"] = "Synthetic e4e encoder (tiny IR-SE50, random weights, official checkpoint layout)"
    written["arcface-ir-se50"] = _atomic(target("arcface-ir-se50"), lambda p: write_synthetic_arcface(p, seed))
    titles["arcface-ir-se50"] = "Synthetic ArcFace IR-SE50 (tiny, random weights, official state-dict layout)"
    for name in DEMO_MAPPERS:
        mid = f"mapper-{name}"
        written[mid] = _atomic(target(mid), lambda p, n=name: write_synthetic_mapper(  # type: ignore[misc]
            p, seed=seed, decoder_state=decoder, description=n.replace("_", " ")))
        titles[mid] = f"Synthetic latent mapper '{name}' (random weights, official checkpoint layout)"
    from styleclip_desktop.nets.lpips_net import write_synthetic_alexnet

    written["lpips-alexnet"] = _atomic(target("lpips-alexnet"), lambda p: write_synthetic_alexnet(p, seed=seed))
    titles["lpips-alexnet"] = "Synthetic AlexNet features for LPIPS (random weights, torchvision layout)"
    G = load_generator(written["stylegan2-ffhq-ada"])  # as the app will see it: its key is the file's hash
    own = session.directions_dir(folder, G)
    step(3, "style statistics")
    stats = gd.compute_style_stats(G, cancelled=cancelled)
    stats.save(own / "stats.npz")
    written["stats"] = own / "stats.npz"
    step(4, f"global directions (fs3 over {fs3_images} faces)")
    clip = load_clip(written["clip-vit-b-32"], cache_dir=folder / ".text-cache")

    def fs3_progress(done: int, n: int) -> None:
        report(4, total, f"global directions: {done * 100 // max(n, 1)} %")

    # The published faces: the first of the statistics sample (not the demo's own seed).
    gd.precompute_fs3(G, clip, stats, own / "fs3.npy", images=fs3_images, batch=64,
                      progress=fs3_progress, cancelled=cancelled)
    written["fs3"] = own / "fs3.npy"
    step(5, "the manifest")
    manifest = {
        "note": SYNTHETIC_NOTE,
        "resolution": resolution, "seed": seed, "fs3_images": fs3_images,
        "files": {mid: {"filename": p.name, "size": p.stat().st_size, "title": titles[mid]}
                  for mid, p in written.items() if mid in titles},
        "directions": {"generator": session.generator_key(G), "fs3": str(written["fs3"].relative_to(folder)),
                       "stats": str(written["stats"].relative_to(folder))},
    }
    _atomic(folder / SYNTHETIC_MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n",
                                                                encoding="utf-8"))
    report(total, total, "done")
    return written


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
