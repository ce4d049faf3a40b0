"""LPIPS (Zhang et al. 2018), the perceptual distance published pivotal tuning optimises.

The `lpips` package provides the network and ships its calibrated linear heads
(`lpips/weights/v0.1/alex.pth`, BSD licence). Its AlexNet backbone is torchvision's
ImageNet AlexNet, which torchvision would download on its own on first use; here it is a
catalog model like every other (`alexnet-owt-7be5be79.pth`, fetched by
`styleclip-desktop models download lpips-alexnet`), loaded with the same safe loader,
so nothing is ever fetched behind the user's back and an offline machine says what is
missing in one line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets import checkpoint

MODEL_ID = "lpips-alexnet"
FILENAME = "alexnet-owt-7be5be79.pth"
# torchvision's AlexNet `features` convolutions (index in `features`, weight shape); the
# ReLUs and max-pools between them carry no weights. LPIPS taps the ReLU after each one.
ALEXNET_CONVS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (0, (64, 3, 11, 11)),
    (3, (192, 64, 5, 5)),
    (6, (384, 192, 3, 3)),
    (8, (256, 384, 3, 3)),
    (10, (256, 256, 3, 3)),
)
MISSING = (f"pivotal tuning as published needs the LPIPS AlexNet backbone ({FILENAME}): "
           f"run `styleclip-desktop models download {MODEL_ID}`")


def missing_backbone() -> ModelFileError:
    return ModelFileError(MISSING)


def is_alexnet_state(keys: set[str]) -> bool:
    """Whether the strings of a torch file's index are torchvision AlexNet's keys: its five
    `features` convolutions, no deeper ones (VGG's), and no weights outside `features` and
    `classifier`."""
    feats = {f"features.{i}.{leaf}" for i, _ in ALEXNET_CONVS for leaf in ("weight", "bias")}
    others = {k for k in keys if k.endswith((".weight", ".bias")) and not k.startswith(("features.", "classifier."))}
    return feats <= keys and not others and "features.12.weight" not in keys


def lpips_backbone_state(state: Any, name: str) -> dict[str, Tensor]:
    """torchvision AlexNet keys -> the keys of `lpips.LPIPS(net="alex")`'s trunk, checked.

    The classifier, if present, is not used by LPIPS and is dropped."""
    if not isinstance(state, dict):
        raise ModelFileError(f"{name} is not an AlexNet state dict")
    out: dict[str, Tensor] = {}
    for slice_no, (index, shape) in enumerate(ALEXNET_CONVS, start=1):
        for leaf, want in (("weight", shape), ("bias", shape[:1])):
            t = state.get(f"features.{index}.{leaf}")
            if not isinstance(t, Tensor) or tuple(t.shape) != want or not t.is_floating_point():
                got = tuple(t.shape) if isinstance(t, Tensor) else "nothing"
                raise ModelFileError(f"{name} is not torchvision's AlexNet: features.{index}.{leaf} "
                                     f"should be {want}, found {got}")
            if not bool(torch.isfinite(t).all()):
                raise ModelFileError(f"{name} is damaged: features.{index}.{leaf} holds NaN or infinity")
            out[f"net.slice{slice_no}.{index}.{leaf}"] = t.float()
    return out


def _linear_heads_path() -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"


def _empty_lpips() -> nn.Module:
    import lpips

    # pnet_rand: build the AlexNet trunk without asking torchvision for its weights (that
    # would download them); pretrained=False: the heads are read below through the safe
    # loader rather than by lpips' own torch.load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
        return lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)


def load_lpips(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """LPIPS v0.1 on AlexNet: the backbone from `path`, the linear heads from the package.

    Frozen, in eval mode. Call it as `net(a, b)` with images in [-1, 1]; it returns
    (B, 1, 1, 1) distances."""
    p = Path(path)
    try:
        trunk = lpips_backbone_state(checkpoint.torch_load(p, what="LPIPS backbone"), p.name)
        heads = checkpoint.torch_load(_linear_heads_path(), what="LPIPS linear heads")
    except ModelFileError as exc:
        raise checkpoint.named(exc, p.name) from None
    except checkpoint.MALFORMED as exc:
        raise ModelFileError(f"{p.name} is not a valid AlexNet checkpoint ({checkpoint.describe(exc)})") from None
    net = _empty_lpips()
    net.net.load_state_dict({k.split(".", 1)[1]: v for k, v in trunk.items()}, strict=True)  # type: ignore[union-attr]
    for i in range(5):
        head = getattr(net, f"lin{i}")
        head.load_state_dict({"model.1.weight": heads[f"lin{i}.model.1.weight"].float()}, strict=True)
    return net.eval().requires_grad_(False).to(device)


def find_lpips(models_dir: Path | None, explicit: Path | None = None) -> Path:
    """The backbone file to use; `ModelFileError` (one line, naming the download) if none."""
    if explicit is not None:
        if not explicit.is_file():
            raise ModelFileError(f"file not found: {explicit}")
        return explicit
    if models_dir is not None:
        from styleclip_desktop.render.session import locate

        found = locate(models_dir, MODEL_ID)
        if found is not None:
            return found
    raise missing_backbone()


def write_synthetic_alexnet(path: str | os.PathLike[str], seed: int = 0, classifier: bool = False) -> Path:
    """A seeded random file in torchvision's AlexNet layout (`features.N.weight`, ...).

    `classifier` adds the three fully connected layers (58 M numbers) the real file has."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for index, shape in ALEXNET_CONVS:
        fan_in = shape[1] * shape[2] * shape[3]
        state[f"features.{index}.weight"] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = 0.01 * torch.randn(shape[:1], generator=gen)
    if classifier:
        for index, (o, i) in ((1, (4096, 9216)), (4, (4096, 4096)), (6, (1000, 4096))):
            state[f"classifier.{index}.weight"] = torch.randn((o, i), generator=gen) * i**-0.5
            state[f"classifier.{index}.bias"] = torch.zeros(o)
    p = Path(path)
    torch.save(state, p)
    return p
