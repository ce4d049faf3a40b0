"""A document as plain data: a JSON-ready dict plus named float32 arrays, and back.

The project file stores exactly this; tests compare documents through it
(`canonical_state`), so "the same document" means the same thing everywhere.

Reading is strict: every field is checked for type and range, and anything wrong becomes
a `ManifestError` or `ArrayDataError` naming the field, never a bare Python error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from styleclip_desktop.document.document import Alignment, Document, SourcePhoto
from styleclip_desktop.document.errors import ArrayDataError, ManifestError
from styleclip_desktop.document.layers import Layer
from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.document.params import LAYER_KINDS
from styleclip_desktop.document.timeline import Keyframe, Timeline
from styleclip_desktop.document.validators import MAX_STYLE_CHANNELS

_MEMBER = re.compile(r"source(\.[a-z0-9]{1,10})?")


def source_member_name(source: SourcePhoto) -> str:
    return "source" + source.suffix


def document_to_data(doc: Document) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The document as (JSON-ready dict, arrays by key). Photo bytes are not included;
    the dict names the archive member that holds them."""
    arrays: dict[str, np.ndarray] = {"latent": doc.latent}
    layers = []
    for i, layer in enumerate(doc.layers):
        refs: dict[str, str | None] = {}
        for name, array in layer.params.arrays().items():
            if array is None:
                refs[name] = None
            else:
                key = f"layer{i}_{name}"
                arrays[key] = array
                refs[name] = key
        for name, weights in layer.params.weights().items():
            if weights is None:
                refs[name] = None
                continue
            entries = []
            for j, (param, array) in enumerate(weights.items()):
                key = f"layer{i}_{name}{j}"
                arrays[key] = array
                entries.append({"name": param, "array": key})
            refs[name] = entries  # type: ignore[assignment]
        mask = None
        if layer.mask is not None:
            arrays[f"layer{i}_mask"] = layer.mask.pixels
            mask = {"array": f"layer{i}_mask", **layer.mask.settings_json()}
        layers.append({
            "id": layer.id,
            "name": layer.name,
            "kind": layer.kind,
            "visible": layer.visible,
            "alpha": layer.alpha,
            "locked": layer.locked,
            "params": layer.params.to_json(),
            "arrays": refs,
            "mask": mask,
        })
    generator_delta = None
    if doc.generator_delta is not None:
        generator_delta = []
        for j, (name, array) in enumerate(doc.generator_delta.items()):
            arrays[f"generator{j}"] = array
            generator_delta.append({"name": name, "array": f"generator{j}"})
    source = None
    if doc.source is not None:
        source = {
            "path": doc.source.path,
            "sha256": doc.source.sha256,
            "member": None if doc.source.data is None else source_member_name(doc.source),
        }
    alignment = None
    if doc.alignment is not None:
        alignment = {"matrix": doc.alignment.matrix.tolist(), "crop_size": doc.alignment.crop_size}
    tracks = [
        {"layer": layer.id, "keys": [{"t": k.t, "alpha": k.alpha, "easing": k.easing}
                                     for k in doc.timeline.keyframes(layer.id)]}
        for layer in doc.layers
        if doc.timeline.has_keyframes(layer.id)
    ]
    data = {
        "uid": doc.uid,
        "source": source,
        "seed": doc.seed,
        "description": doc.description,
        "synthetic": doc.synthetic,
        "models": dict(doc.models),
        "alignment": alignment,
        "latent": "latent",
        "generator_delta": generator_delta,
        "layers": layers,
        "timeline": {"duration": doc.timeline.duration, "fps": doc.timeline.fps, "tracks": tracks},
    }
    return data, arrays


def canonical_state(doc: Document) -> bytes:
    """Every saved part of the document as bytes; equal bytes mean equal documents."""
    data, arrays = document_to_data(doc)
    parts = [json.dumps(data, sort_keys=True, ensure_ascii=True, allow_nan=False).encode()]
    for key in sorted(arrays):
        array = arrays[key]
        parts.append(f"\0{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        parts.append(array.tobytes(order="C"))
    photo = doc.source.data if doc.source is not None else None
    parts.append(b"\0photo\0" + (b"-" if photo is None else b"+" + photo))
    return b"".join(parts)


def fingerprint(doc: Document) -> str:
    """sha256 of `canonical_state`."""
    return hashlib.sha256(canonical_state(doc)).hexdigest()


# -- reading ------------------------------------------------------------------------------

_KINDS: dict[type, str] = {str: "text", bool: "true or false", int: "a whole number", float: "a number",
                           list: "a list", dict: "an object"}


class Fields:
    """Typed access to one JSON object, with errors that say where in the manifest."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise ManifestError(f"{where} should be an object")
        self.obj: dict[str, Any] = obj
        self.where = where

    def get(self, key: str, kind: type, *, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            raise ManifestError(f"{self.where} lacks {key!r}")
        value = self.obj[key]
        if value is None and optional:
            return None
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ManifestError(f"{self.where}.{key} should be {_KINDS.get(kind, kind.__name__)}")
        return value

    def sub(self, key: str, *, optional: bool = False) -> Fields | None:
        value = self.get(key, dict, optional=optional)
        return None if value is None else Fields(value, f"{self.where}.{key}")


def _array(arrays: Mapping[str, np.ndarray], key: str, where: str, dtype: type = np.float32) -> np.ndarray:
    if key not in arrays:
        raise ArrayDataError(f"{where} refers to array {key!r}, which arrays.npz does not hold")
    array = arrays[key]
    if array.dtype != dtype:
        raise ArrayDataError(f"{where} should hold {np.dtype(dtype).name} numbers, but array {key!r} "
                             f"holds {array.dtype}")
    return array


def _checked(where: str, make: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return make(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ManifestError(f"{where}: {exc}") from None


def document_from_data(data: Any, arrays: Mapping[str, np.ndarray], photo: bytes | None) -> Document:
    """Rebuild a document from `document_to_data` output plus the photo bytes (when the
    dict names a photo member). Raises ManifestError / ArrayDataError."""
    doc = Fields(data, "document")
    latent = _array(arrays, doc.get("latent", str), "document.latent")
    if latent.ndim != 2 or latent.size == 0:
        raise ArrayDataError(f"the latent should be a 2-D array (rows x width), got shape {latent.shape}")
    if not np.isfinite(latent).all():
        raise ArrayDataError("the latent holds NaN or infinite values")

    source = None
    src = doc.sub("source", optional=True)
    if src is not None:
        member = src.get("member", str, optional=True)
        if member is not None and photo is None:
            raise ManifestError("document.source names a photo member but none was read")
        source = _checked("document.source", SourcePhoto, src.get("path", str), src.get("sha256", str),
                          photo if member is not None else None)

    alignment = None
    al = doc.sub("alignment", optional=True)
    if al is not None:
        rows = al.get("matrix", list)
        if len(rows) != 3 or any(not isinstance(r, list) or len(r) != 3 for r in rows) or any(
            isinstance(x, bool) or not isinstance(x, (int, float)) for r in rows for x in r
        ):
            raise ManifestError("document.alignment.matrix should be 3 rows of 3 numbers")
        matrix = _checked("document.alignment.matrix", np.array, rows, dtype=np.float64)
        alignment = _checked("document.alignment", Alignment, matrix, al.get("crop_size", int))

    generator_delta = None
    gd = doc.get("generator_delta", list, optional=True)
    if gd is not None:
        generator_delta = {}
        for j, entry in enumerate(gd):
            item = Fields(entry, f"document.generator_delta[{j}]")
            name = item.get("name", str)
            if name in generator_delta:
                raise ManifestError(f"document.generator_delta names {name!r} twice")
            array = _array(arrays, item.get("array", str), item.where)
            if not np.isfinite(array).all():
                raise ArrayDataError(f"the generator delta {name!r} holds NaN or infinite values")
            generator_delta[name] = array

    layers = [_layer(entry, i, arrays, latent.shape) for i, entry in enumerate(doc.get("layers", list))]
    ids = [layer.id for layer in layers]
    if len(set(ids)) != len(ids):
        raise ManifestError("two layers share one id")
    timeline = _timeline(doc.sub("timeline"), set(ids))  # type: ignore[arg-type]

    models = doc.get("models", dict)
    if not all(isinstance(k, str) and isinstance(d, str) for k, d in models.items()):
        raise ManifestError("document.models should map model roles to sha256 text")
    seed = doc.get("seed", int, optional=True)
    return _checked(
        "document",
        Document,
        latent,
        source=source,
        alignment=alignment,
        generator_delta=generator_delta,
        layers=layers,
        timeline=timeline,
        models=models,
        seed=seed,
        description=doc.get("description", str),
        synthetic=doc.get("synthetic", bool),
        uid=doc.get("uid", str),
    )


def _layer(entry: Any, i: int, arrays: Mapping[str, np.ndarray], latent_shape: tuple[int, ...]) -> Layer:
    f = Fields(entry, f"document.layers[{i}]")
    name = f.get("name", str)
    kind = f.get("kind", str)
    cls = LAYER_KINDS.get(kind)
    if cls is None:
        raise ManifestError(f'layer "{name}" is a {kind!r} edit, which this version of StyleCLIP Desktop does not know')
    refs = f.sub("arrays")
    assert refs is not None
    layer_arrays: dict[str, np.ndarray | None] = {}
    for field in cls._array_fields:
        key = refs.get(field, str, optional=True)
        if key is None:
            layer_arrays[field] = None
            continue
        array = _array(arrays, key, f"{f.where}.arrays.{field}")
        if field in cls._style_fields:
            if array.ndim != 1 or not 0 < array.shape[0] <= MAX_STYLE_CHANNELS:
                raise ArrayDataError(f'the {field} of layer "{name}" should be a flat style vector of at most '
                                     f"{MAX_STYLE_CHANNELS} channels, got shape {array.shape}")
        elif array.shape != latent_shape:
            raise ArrayDataError(f'the {field} of layer "{name}" has shape {array.shape}, '
                                 f"but the latent has shape {latent_shape}")
        if not np.isfinite(array).all():
            raise ArrayDataError(f'the {field} of layer "{name}" holds NaN or infinite values')
        layer_arrays[field] = array
    for field in cls._weight_fields:
        entries = refs.get(field, list, optional=True)
        if entries is None:
            layer_arrays[field] = None
            continue
        weights: dict[str, np.ndarray] = {}
        for j, entry in enumerate(entries):
            item = Fields(entry, f"{f.where}.arrays.{field}[{j}]")
            param = item.get("name", str)
            if param in weights:
                raise ManifestError(f'the {field} of layer "{name}" names {param!r} twice')
            array = _array(arrays, item.get("array", str), item.where, np.float16)
            if not np.isfinite(array).all():
                raise ArrayDataError(f'the {field} {param!r} of layer "{name}" holds NaN or infinite values')
            weights[param] = array
        layer_arrays[field] = weights  # type: ignore[assignment]
    params_data = f.get("params", dict)
    params = _checked(f"{f.where}.params", cls.from_json, params_data, layer_arrays)
    mask = _mask(f.sub("mask", optional=True), arrays, name)
    return _checked(  # type: ignore[no-any-return]
        f.where,
        Layer,
        params,
        name=name,
        alpha=f.get("alpha", float),
        visible=f.get("visible", bool),
        locked=f.get("locked", bool),
        id=f.get("id", str),
        mask=mask,
    )


def _mask(f: Fields | None, arrays: Mapping[str, np.ndarray], name: str) -> LayerMask | None:
    """A layer's mask (projects from before masks have none)."""
    if f is None:
        return None
    pixels = _array(arrays, f.get("array", str), f"{f.where}.array", np.uint8)
    if pixels.shape != (MASK_SIZE, MASK_SIZE):
        raise ArrayDataError(f'the mask of layer "{name}" should be {MASK_SIZE}x{MASK_SIZE} pixels, '
                             f"got shape {pixels.shape}")
    return _checked(  # type: ignore[no-any-return]
        f.where, LayerMask, pixels, feather=f.get("feather", float), inverted=f.get("inverted", bool),
        enabled=f.get("enabled", bool), start_res=f.get("start_res", int))


def _timeline(f: Fields, layer_ids: set[str]) -> Timeline:
    timeline = _checked(f.where, Timeline, f.get("duration", float), f.get("fps", float))
    for j, entry in enumerate(f.get("tracks", list)):
        track = Fields(entry, f"{f.where}.tracks[{j}]")
        layer_id = track.get("layer", str)
        if layer_id not in layer_ids:
            raise ManifestError(f"{track.where} animates a layer that is not in the stack")
        if timeline.has_keyframes(layer_id):
            raise ManifestError(f"{track.where} animates a layer that already has a track")
        keys = []
        for n, key_entry in enumerate(track.get("keys", list)):
            k = Fields(key_entry, f"{track.where}.keys[{n}]")
            keys.append(_checked(k.where, Keyframe, k.get("t", float), k.get("alpha", float), k.get("easing", str)))
        _checked(track.where, timeline.set_track, layer_id, keys, force=True)
    return timeline  # type: ignore[no-any-return]
