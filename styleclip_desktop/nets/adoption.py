"""Networks that own the tensors a file was read into, instead of copies of them.

A loader that reads a checkpoint into memory and then copies it into a freshly built
network holds every weight twice while it loads (and starts the network from random
numbers it throws away). `checkpoint.build_checked(adopt=True)` builds the network without
storage and hands it the tensors read from the file; this module decides which of them it
can own as they are, fills what no file holds, and returns the heap a loader freed.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch

_ALIGNMENT = 64  # bytes: torch's CPU allocator


def adoptable(state: Mapping[str, Any], shapes: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` as tensors a network can own: what is shared, strided, on another device, of
    another dtype than the network's (`shapes`, on the meta device) or not aligned as
    torch aligns what it allocates becomes a copy. (Math libraries may round differently
    on unaligned data, and the numbers must be those of a copied load.)"""
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, like in shapes.items():
        v = state[key]
        storage = v.untyped_storage()
        own = (v.device.type == "cpu" and v.dtype == like.dtype and v.is_contiguous() and not v.requires_grad
               and type(v) is torch.Tensor and v.storage_offset() == 0 and v.data_ptr() % _ALIGNMENT == 0
               and storage.nbytes() == v.numel() * v.element_size() and storage.data_ptr() not in storages)
        if own and v.numel():
            storages.add(storage.data_ptr())
        out[key] = v if own else torch.empty(like.shape, dtype=like.dtype).copy_(v)
    return out


def fill_meta(model: torch.nn.Module, fill: dict[str, torch.Tensor], factory: Callable[[], torch.nn.Module]) -> None:
    """Give every tensor of `model` still without storage its value: from `fill` by name,
    else from a network `factory` builds for real (exact, at the cost of its memory)."""
    left = [(m, prefix, name, kind) for prefix, m in model.named_modules()
            for kind, name in [*(("param", n) for n, t in m._parameters.items() if t is not None and t.is_meta),
                               *(("buffer", n) for n, t in m._buffers.items() if t is not None and t.is_meta),
                               *(("attr", n) for n, t in vars(m).items() if isinstance(t, torch.Tensor) and t.is_meta)]]
    real: torch.nn.Module | None = None
    for module, prefix, name, kind in left:
        full = f"{prefix}.{name}" if prefix else name
        like = getattr(module, name)
        value = fill.get(full)
        if value is None or tuple(value.shape) != tuple(like.shape) or value.dtype != like.dtype:
            real = real if real is not None else factory()
            value = getattr(real.get_submodule(prefix), name).detach()
        if kind == "param":
            module._parameters[name] = torch.nn.Parameter(value, requires_grad=like.requires_grad)
        elif kind == "buffer":
            module._buffers[name] = value
        else:
            setattr(module, name, value)


def release_freed_memory() -> None:
    """Hand memory freed inside the C heap back to the system (glibc only; elsewhere a
    no-op). A loader that reads a whole file and keeps part of it calls this: the parts it
    dropped (e4e's embedded generator) otherwise stay in the process as free heap."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass
