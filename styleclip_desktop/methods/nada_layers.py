"""Which generator weights a domain adaptation trains, and its weight delta.

A domain layer is stored as the change of the trained weights only (float16), applied
with a strength alpha: weights = base + alpha * delta, in float32.

Rows to layers, as StyleGAN-NADA's adaptive layer selection maps them: W+ row 0 trains
the 4x4 conv, row 1 the 4x4 toRGB, and row r >= 2 the conv `convs.(r - 1)` (the conv that
reads row r - 1: the published code indexes its list of convs by row without the shift,
and the official adapted generators were trained that way). A chosen layer trains whole:
its weight, bias, noise strength and its style affine. The mapping network, the constant
input and the other toRGB layers never train under adaptive selection.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from styleclip_desktop.errors import UserError

CONV_PARAMS = ("weight", "bias", "noise_strength", "affine.weight", "affine.bias")
TORGB_PARAMS = ("weight", "bias", "affine.weight", "affine.bias")


def row_modules(G: Any, rows: Iterable[int]) -> list[str]:
    """The module prefixes ("convs.3", "torgbs.0") that the W+ rows train, in row order."""
    num_ws = int(G.num_ws)
    out: list[str] = []
    for r in sorted(set(int(r) for r in rows)):
        if not 0 <= r < num_ws:
            raise ValueError(f"W+ row {r} is out of range for a generator with {num_ws} rows")
        name = "convs.0" if r == 0 else "torgbs.0" if r == 1 else f"convs.{r - 1}"
        out.append(name)
    return out


def row_parameters(G: Any, rows: Iterable[int]) -> dict[str, nn.Parameter]:
    """The canonical parameter names (and the parameters of `G`) that the W+ rows train."""
    params = dict(G.named_parameters())
    out: dict[str, nn.Parameter] = {}
    for prefix in row_modules(G, rows):
        names = TORGB_PARAMS if prefix.startswith("torgbs.") else CONV_PARAMS
        for n in names:
            out[f"{prefix}.{n}"] = params[f"{prefix}.{n}"]
    return out


def trainable_names(G: Any) -> set[str]:
    """Every parameter a published NADA configuration can train: the constant input, every
    conv and the first toRGB (manual layer choices add the constant; adaptive ones the toRGB)."""
    names = set(row_parameters(G, range(int(G.num_ws))))
    names.add("const")
    return names


NoiseMaps = list[tuple[nn.Module, Tensor]]


def draw_noise(generator: torch.Generator, batch: int, model: nn.Module) -> NoiseMaps:
    """Fresh per-layer noise, one map per sample (the published training draws new noise in
    every forward pass, separately for the frozen and the trainable copy). Drawn on the CPU
    from `generator`, so a seed gives the same noise on every device."""
    maps: NoiseMaps = []
    for module in model.modules():
        noise = getattr(module, "noise_const", None)
        if isinstance(noise, Tensor):
            h, w = noise.shape[-2:]
            fresh = torch.randn((batch, 1, h, w), generator=generator)
            maps.append((module, fresh.to(noise.device, noise.dtype)))
    return maps


@contextlib.contextmanager
def noise_of(maps: NoiseMaps, part: slice) -> Iterator[None]:
    """Render with the samples `part` of drawn noise maps; the constant noise buffers are
    swapped, not overwritten, and put back afterwards."""
    saved: list[tuple[nn.Module, Tensor]] = []
    try:
        for module, noise in maps:
            saved.append((module, module.noise_const))  # type: ignore[arg-type]
            module.noise_const = noise[part]
        yield
    finally:
        for module, noise in reversed(saved):
            module.noise_const = noise


def misfit(G: Any, delta: Mapping[str, np.ndarray]) -> str | None:
    """The first weight of `delta` that `G` lacks or has in another shape, else None."""
    params = dict(G.named_parameters())
    for name, d in delta.items():
        if name not in params or tuple(params[name].shape) != tuple(np.shape(d)):
            return name
    return None


def apply_delta(G: Any, delta: Mapping[str, np.ndarray], alpha: float) -> Any:
    """A new generator with weights base + alpha * delta (float32 arithmetic); `G` is untouched."""
    name = misfit(G, delta)
    if name is not None:
        raise UserError("This domain layer was made for a different generator: "
                        f"its weight {name!r} does not fit the one loaded.")
    out = copy.deepcopy(G)
    new = dict(out.named_parameters())
    with torch.no_grad():
        for name, d in delta.items():
            p = new[name]
            change = torch.from_numpy(np.asarray(d, dtype=np.float32)).to(p.device)
            p.copy_(p.float() + float(alpha) * change)
    return out


def delta_from_state_dict(G_base: Any, adapted: Any, *, atol: float = 0.0) -> dict[str, np.ndarray]:
    """The weight change (float16) from `G_base` to an adapted generator of the same layout.

    Refuses an adapted generator of another architecture, or one whose untrained parts
    (mapping network, later toRGB layers, constant noise) differ by more than `atol`:
    that one was adapted from a different base generator. The average w is derived, not
    trained, and is not compared."""
    base_sd, new_sd = G_base.state_dict(), adapted.state_dict()
    if set(base_sd) != set(new_sd) or any(base_sd[k].shape != new_sd[k].shape for k in base_sd):
        raise UserError("This domain generator has a different architecture from the base generator, "
                        "so it cannot be loaded as a domain layer for it.")
    trainable = trainable_names(G_base)
    param_names = {n for n, _ in G_base.named_parameters()}
    delta: dict[str, np.ndarray] = {}
    foreign: list[str] = []
    for name, base in base_sd.items():
        if name == "mapping.w_avg" or name.endswith("filter"):
            continue
        diff = new_sd[name].detach().float().cpu() - base.detach().float().cpu()
        if diff.numel() == 0 or float(diff.abs().max()) <= atol:
            continue
        if name in trainable and name in param_names:
            delta[name] = diff.numpy().astype(np.float16)
        else:
            foreign.append(name)
    if foreign:
        raise UserError("This domain generator was adapted from a different base generator "
                        f"(its {_part(foreign[0])} differs from the loaded one), so it cannot be "
                        "loaded as a domain layer for it.")
    return delta


def _part(name: str) -> str:
    if name.startswith("mapping."):
        return "mapping network"
    if name.endswith("noise_const"):
        return "constant noise"
    return f"layer {name.rsplit('.', 1)[0]}"


def delta_nbytes(delta: Mapping[str, np.ndarray]) -> int:
    return int(sum(np.asarray(d).nbytes for d in delta.values()))
