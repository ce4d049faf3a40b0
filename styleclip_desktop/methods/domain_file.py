"""Domain files: a trained domain to keep, share and load as a layer.

A `.domain` file is a zip archive holding `domain.json` ({"format": FORMAT, "params": the
layer's settings, "delta": [{"name": parameter, "array": key}, ...]}) and `delta.npz`
(the float16 weight delta). It is read as untrusted input, with the project file's
bounds: no pickles, sizes checked before anything is unpacked, every fault one sentence.

A published StyleGAN-NADA generator (rosinality `.pt` of the adapted `g_ema`) loads as a
domain layer too: its weights minus the base generator's, refused with a clear sentence
when it was adapted from another generator.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import IO, Any

from styleclip_desktop.document import archive
from styleclip_desktop.document.atomic import atomic_write
from styleclip_desktop.document.domain_params import DomainParams
from styleclip_desktop.document.project_file import npz_bytes, read_npz
from styleclip_desktop.errors import UserError

FORMAT = "styleclip-desktop/domain/1"
SUFFIX = ".domain"
MANIFEST, DELTA = "domain.json", "delta.npz"
_MAX_MANIFEST = 4 << 20
_MAX_DELTA = 1 << 30


class DomainFileError(UserError):
    """A domain file that cannot be used, with the reason in one sentence."""


def save_domain(path: str | Path, params: DomainParams) -> Path:
    """Write `params` as a domain file, atomically (a full disk never leaves half a file)."""
    path = Path(path)
    names = list(params.delta)
    arrays = {f"d{j}": params.delta[name] for j, name in enumerate(names)}
    manifest = {"format": FORMAT, "params": params.to_json(),
                "delta": [{"name": name, "array": f"d{j}"} for j, name in enumerate(names)]}
    raw = json.dumps(manifest, indent=1, ensure_ascii=True, allow_nan=False).encode("ascii")
    npz = npz_bytes(arrays)

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
            zf.writestr(MANIFEST, raw, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(DELTA, npz, compress_type=zipfile.ZIP_STORED)

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise DomainFileError(f"cannot write {path.name}: {exc.strerror or exc}") from None
    return path


def read_domain(path: str | Path) -> DomainParams:
    """The domain layer settings and delta stored in a `.domain` file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DomainFileError(f"cannot open {path.name}: {exc.strerror or exc}") from None
    try:
        return _parse(data)
    except (archive.ArchiveError, ValueError, TypeError, KeyError) as exc:
        raise DomainFileError(f"cannot open {path.name}: it is not a usable domain file ({archive.why(exc)})") from None


def _parse(data: bytes) -> DomainParams:
    with archive.open_zip(io.BytesIO(data), max_directory=1 << 20, what="the domain file") as zf:
        manifest = json.loads(archive.read_member(zf, zf.getinfo(MANIFEST), _MAX_MANIFEST, MANIFEST))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("its format is not one this version reads")
        info = zf.getinfo(DELTA)
        with archive.member_file(zf, info, _MAX_DELTA, DELTA) as f:
            arrays = read_npz(f)
    entries = manifest.get("delta")
    settings = manifest.get("params")
    if not isinstance(entries, list) or not isinstance(settings, dict):
        raise ValueError("its manifest lacks the delta or the settings")
    delta = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError("a delta entry is malformed")
        array = arrays[entry["array"]]
        if array.dtype.itemsize != 2:
            raise ValueError(f"the weight {entry['name']!r} is not float16")
        delta[entry["name"]] = array
    return DomainParams.from_json(settings, {"delta": delta})  # type: ignore[dict-item]


def params_from_result(result: Any, cfg: Any, base_identity: str = "") -> DomainParams:
    """A domain layer from a finished (or cancelled) training run (`nada.train_domain`)."""
    if not result.delta:
        raise UserError("The training changed no weights, so there is no domain to add; train for a step or more.")
    return DomainParams(target=cfg.target, source=cfg.source, delta=dict(result.delta), rows=tuple(result.rows),
                        base=base_identity, steps=int(result.steps_done))


def load_domain_layer(path: str | Path, G_base: Any, base_identity: str = "") -> DomainParams:
    """A domain layer from a `.domain` file or a published StyleGAN-NADA generator, checked
    against the base generator it will be applied to."""
    from styleclip_desktop.methods.nada_layers import delta_from_state_dict, misfit

    path = Path(path)
    if not path.is_file():
        raise DomainFileError(f"domain file not found: {path}")
    if path.suffix.lower() == SUFFIX:
        params = read_domain(path)
        if params.base and base_identity and params.base != base_identity:
            raise DomainFileError(f"{path.name} was trained on another generator (sha256 {params.base[:12]}…), "
                                  f"not the loaded one ({base_identity[:12]}…)")
        name = misfit(G_base, params.delta)
        if name is not None:
            raise DomainFileError(f"{path.name} does not fit the loaded generator (its weight {name!r} has another "
                                  "shape or does not exist); it was made for a different generator")
        return params
    from styleclip_desktop.weights.formats import load_generator

    adapted = load_generator(path)
    delta = delta_from_state_dict(G_base, adapted)
    if not delta:
        raise DomainFileError(f"{path.name} is the same generator as the loaded one: it changes nothing")
    return DomainParams(target=path.stem.replace("_", " "), delta=delta, base=base_identity, origin=path.name)

