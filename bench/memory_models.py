"""Full-size model files in the official formats, with seeded random weights, for the
memory benchmark.

Each file has the layout its publisher's file has, at the real architecture size:
NVIDIA's stylegan2-ada-pytorch pickle (G, D and G_ema of a config-f 1024 generator),
OpenAI-layout CLIP ViT-B/32 as safetensors, the e4e checkpoint (IR-SE50 encoder, the
embedded rosinality decoder, latent_avg and the training options) and ArcFace IR-SE50's
bare state dict. Random weights occupy exactly what trained ones do. `tiny` writes the
same formats at test sizes, for a smoke test of the benchmark itself.

The seeds are fixed, so the files (and their hashes, which name the exported ONNX
graphs) are the same on every run.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from styleclip_desktop.nets.stylegan2 import Generator

# stylegan2-ada-pytorch's config-f 1024 discriminator holds about 29 million numbers.
DISCRIMINATOR_PARAMS = 29_011_458

FILES = {"generator": "ffhq.pkl", "clip": "clip-vit-b32.safetensors", "e4e": "e4e_ffhq_encode.pt",
         "arcface": "model_ir_se50.pth"}


def _generator(tiny: bool) -> Generator:
    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
    from styleclip_desktop.weights.synthetic import tiny_config

    torch.manual_seed(0)
    G = Generator(tiny_config(64) if tiny else GeneratorConfig(resolution=1024))
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(G.config.w_dim, generator=torch.Generator().manual_seed(1)))
    return G.eval().requires_grad_(False)


def write_ada_pkl(G: Generator, path: Path, disc_params: int) -> Path:
    """NVIDIA's pickle with a discriminator of `disc_params` numbers (the real file's D)."""
    from styleclip_desktop.weights import synthetic as syn

    gen = torch.Generator().manual_seed(7)
    rows = max(1, disc_params // 512)
    disc = syn._Persistent("Discriminator", syn._module_state(
        {"b4.out.weight": torch.randn(rows, 512, generator=gen)}, {}, {}, {"c_dim": 0}))
    modules: dict[str, dict[str, Any]] = {"torch_utils": {}, "torch_utils.persistence": {"_reconstruct_persistent_obj":
                                                              syn._reconstruct_persistent_obj},
               "dnnlib": {}, "dnnlib.util": {"EasyDict": syn.EasyDict}}
    with syn._fake_modules(modules):
        data = {"G": syn._ada_generator_object(G), "D": disc, "G_ema": syn._ada_generator_object(G),
                "training_set_kwargs": syn.EasyDict(resolution=G.config.resolution, use_labels=False),
                "augment_pipe": None}
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return path


def write_clip(path: Path, tiny: bool) -> Path:
    from safetensors.torch import save_file

    from styleclip_desktop.nets.clip import tiny_clip_state_dict

    if tiny:
        sd = tiny_clip_state_dict(0)
    else:
        import open_clip

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.endswith("attn_mask")}
        del model
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_all(folder: Path, tiny: bool = False) -> dict[str, str]:
    """Write the four files into `folder`; returns role -> path."""
    from styleclip_desktop.nets.e4e import write_synthetic_e4e
    from styleclip_desktop.nets.irse import write_synthetic_arcface
    from styleclip_desktop.weights.synthetic import rosinality_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    out = {role: folder / name for role, name in FILES.items()}
    G = _generator(tiny)
    write_ada_pkl(G, out["generator"], 64 if tiny else DISCRIMINATOR_PARAMS)
    decoder, num_ws = rosinality_state_dict(G), G.num_ws
    del G
    write_synthetic_e4e(out["e4e"], num_ws=num_ws, seed=0, decoder_state=decoder, tiny=tiny)
    del decoder
    write_synthetic_arcface(out["arcface"], seed=0, tiny=tiny)
    write_clip(out["clip"], tiny)
    return {role: str(p) for role, p in out.items()}
