"""Building a project from the command line, one edit layer per call.

`edit SOURCE ... -o PROJECT.scproj` adds the edit as a layer: SOURCE may be an existing
project (the layer goes on top of its stack), a W+ latent (.npy) or a seed (a new
project). Repeating it with the project as both source and output stacks layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from styleclip_desktop.document import (
    PROJECT_SUFFIX,
    Document,
    Layer,
    LayerParams,
    UndoStack,
    add_layer,
    archive,
    load_project,
    save_project,
)
from styleclip_desktop.errors import UserError


def new_document(src: Path | int, *, generator: Any = None, psi: float = 0.7,
                 models: Mapping[str, str] | None = None, synthetic: bool = False) -> Document:
    """A document with no layers from a latent file or a seed (a seed needs `generator`)."""
    if isinstance(src, bool):
        raise TypeError("the source must be a path or a seed, not a bool")
    if isinstance(src, int):
        if generator is None:
            raise ValueError("a project from a seed needs the generator that turns the seed into a face")
        import torch

        with torch.no_grad():
            ws = generator.broadcast_w(generator.sample_w(1, src, psi, device=generator.const.device))
        latent = ws[0].detach().cpu().numpy().astype(np.float32)
        return Document(latent, seed=src, description=f"seed {src}, ψ {psi:g}", models=models or {},
                        synthetic=synthetic)
    path = Path(src)
    latent = _load_latent(path)
    if generator is not None:
        want = (int(generator.num_ws), int(generator.config.w_dim))
        if latent.ndim == 1 and latent.shape[0] == want[1]:
            latent = np.repeat(latent[None], want[0], 0)  # a W vector is the same W at every layer
        if latent.shape != want:
            raise UserError(f"latent {path.name} has shape {latent.shape}; this generator needs W+ of shape {want}")
    elif latent.ndim != 2:
        raise UserError(f"latent {path.name} is a single W vector; a project needs W+ of shape (L, w_dim)")
    return Document(latent, description=f"latent {path.name}", models=models or {}, synthetic=synthetic)


# A W+ latent is (L, w_dim) numbers, 18 x 512 for a 1024 px generator: a few hundred KB
# in float64. Far more is not a latent.
_MAX_LATENT = 64 << 20
_FLOATS = tuple(np.dtype(f"{order}f{size}") for order in "<>" for size in (2, 4, 8))


def _load_latent(path: Path) -> np.ndarray:
    """A latent from a .npy file, or from an .npz holding one array (or one named "w", as
    NVIDIA's projector writes), read within `_MAX_LATENT` bytes and without pickles."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise UserError(f"{path} is not a file")
        with open(path, "rb") as f:
            arr = _read_latent(f, size, path.name)
    except FileNotFoundError:
        raise UserError(f"latent file not found: {path}") from None
    except archive.ArchiveError as exc:
        raise UserError(f"{path} is not a readable latent ({exc})") from None
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (1, 2) or not np.isfinite(arr).all():
        raise UserError(f"latent {path.name} must be finite W (w_dim,) or W+ (L, w_dim) or (1, L, w_dim)")
    return np.asarray(arr, np.float32)


def _read_latent(f: IO[bytes], size: int, name: str) -> np.ndarray:
    head = f.read(6)
    f.seek(0)
    if head == b"\x93NUMPY":
        if size > _MAX_LATENT:
            raise archive.ArchiveLimitError(f"it is {archive.size_text(size)}, over the "
                                            f"{archive.size_text(_MAX_LATENT)} a latent can be")
        return archive.read_npy(f, size, name, _FLOATS)
    if not head.startswith(b"PK"):
        raise archive.ArchiveError("expected a .npy array or an .npz archive of one")
    with archive.open_zip(f, max_directory=1 << 20, what=name) as zf:
        infos = {info.filename.removesuffix(".npy"): info for info in zf.infolist()
                 if info.filename.endswith(".npy")}
        key = next(iter(infos)) if len(infos) == 1 else "w" if "w" in infos else None
        if key is None:
            keys = ", ".join(sorted(infos)[:8]) or "none"
            raise archive.ArchiveError(f"it holds arrays {keys}; a latent .npz holds one (or one named 'w')")
        info = infos[key]
        what = f"array {key!r}"
        archive.check_member(info, _MAX_LATENT, what)
        try:
            with zf.open(info) as member:
                return archive.read_npy(member, info.file_size, what, _FLOATS)
        except archive.ArchiveError:
            raise
        except archive.ZIP_ERRORS as exc:
            raise archive.ArchiveError(f"{what} is damaged ({archive.why(exc)})") from None


def add_layer_to_project(src: Path | int, params: LayerParams, out: Path, *, alpha: float | None = None,
                         name: str | None = None, generator: Any = None, psi: float = 0.7,
                         models: Mapping[str, str] | None = None, synthetic: bool = False) -> Document:
    """Add one layer with `params` to the project at `src` (or to a new project from a
    latent or seed) and save it atomically to `out` (.scproj). Returns the document.

    `models` (role -> sha256) are the models this edit was made with: roles the project
    does not know yet are recorded; a project made with other models keeps its record
    (the renderer warns about the difference). The source project file is only rewritten
    when `out` is the same path."""
    out = Path(out)
    if out.suffix.lower() != PROJECT_SUFFIX:
        raise UserError(f"a project must be saved as {PROJECT_SUFFIX}, not {out.suffix or 'without extension'}")
    if not isinstance(src, int) and Path(src).suffix.lower() == PROJECT_SUFFIX:
        if not Path(src).is_file():
            raise UserError(f"project not found: {src}")
        doc = load_project(src)
        if models:
            known = dict(doc.models)
            doc.models = {**{k: v for k, v in models.items() if k not in known}, **known}
        if synthetic and not doc.synthetic:
            doc.synthetic = True
    else:
        doc = new_document(src, generator=generator, psi=psi, models=models, synthetic=synthetic)
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if alpha is not None:
        fields["alpha"] = float(alpha)
    UndoStack().push(add_layer(doc, Layer(params, **fields)))
    from styleclip_desktop.export.source import check_target

    check_target(out)
    save_project(doc, out)
    return doc
