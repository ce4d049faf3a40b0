"""Global directions stored in the project, so that a project renders anywhere.

A global-direction layer's ds is a function of its text and beta and of four models:
the generator (which channels exist), fs3 (how each channel moves CLIP), the style
statistics (how far a channel's unit step goes) and CLIP (where the text points). Once
resolved, the ds is kept in the layer with the digests of those models
(`GlobalDirectionParams.ds_source`), and rendering the project then needs the generator
alone.

A stored ds is used only when it was resolved for the layer's current text and beta, for
this generator, and for the fs3, statistics and CLIP loaded now (a model that is not
loaded cannot contradict it). Otherwise it is recomputed from the loaded models, with a
notice when it is a model that differs; without those models the render fails with one
line saying so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from styleclip_desktop.document import DirectionSource, GlobalDirectionParams
from styleclip_desktop.errors import UserError

if TYPE_CHECKING:
    from styleclip_desktop.render.pipeline import ModelSet, Renderer

# Checked in this order, so that a layer from another generator says so first.
ROLES = ("generator", "fs3", "stats", "clip")
_LABELS = {"generator": "generator", "fs3": "fs3", "stats": "style statistics", "clip": "CLIP"}


def _short(digest: str) -> str:
    return digest[:6] + "…" if len(digest) > 6 else digest or "?"


def _array_digest(array: np.ndarray, dtype: Any) -> str:
    a = np.ascontiguousarray(array, dtype=dtype)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def model_digests(models: ModelSet) -> dict[str, str]:
    """Digests of what a ds is resolved from, for the models loaded (the generator always).

    fs3 and the statistics are hashed by content (what the ds is computed from), so
    the same matrix saved twice, or statistics recomputed identically, still match."""
    from styleclip_desktop.render.onnx_export import generator_hash

    out = {"generator": models.identities.get("generator") or generator_hash(models.G)}
    if models.fs3 is not None:
        out["fs3"] = _array_digest(models.fs3, np.float32)
    if models.stats is not None:
        out["stats"] = _array_digest(models.stats.std, np.float64)  # the mean does not enter ds
    if models.clip is not None:
        out["clip"] = models.identities.get("clip") or str(getattr(models.clip, "model_hash", "")) or "unknown"
    return out


def style_size(models: ModelSet) -> int:
    return int(sum(models.G.style_dims))


@dataclass(frozen=True)
class Verdict:
    """Whether a layer's stored ds may be used, and if not why."""

    usable: bool
    # "ok"; "none" (nothing stored); "inputs" (stored for other text or beta); "size"
    # (not this generator's style vector); or the model role whose digest differs.
    reason: str
    recorded: str = ""
    current: str = ""

    @property
    def model_differs(self) -> bool:
        return self.reason in ROLES


def check(params: GlobalDirectionParams, digests: Mapping[str, str], size: int) -> Verdict:
    """Judge `params`' stored ds against the loaded models' `digests` (see `model_digests`)."""
    if params.ds is None:
        return Verdict(False, "none")
    stored = params.stored_direction()
    if stored is None:
        return Verdict(False, "inputs")
    ds, made_with = stored
    for role in ROLES:
        now = digests.get(role)
        if now is not None and made_with.get(role) != now:
            return Verdict(False, role, made_with.get(role, ""), now)
        if role == "generator" and ds.shape != (size,):
            return Verdict(False, "size")
    return Verdict(True, "ok")


def describe(name: str, verdict: Verdict) -> str:
    """'layer 'x' was made with generator abc…, this is def…' for a model that differs."""
    return (f"layer '{name}' was made with {_LABELS[verdict.reason]} {_short(verdict.recorded)}, "
            f"this is {_short(verdict.current)}")


def recompute_notice(name: str, verdict: Verdict) -> str:
    return f"{describe(name, verdict)}; recomputing its direction from the current fs3"


def pending(doc: Any, models: ModelSet) -> list[tuple[str, Verdict]]:
    """(name, verdict) of each visible global-direction layer that cannot render from
    its stored ds with these models: the layers that need fs3, statistics and CLIP."""
    layers = [layer for layer in doc.layers if layer.visible and isinstance(layer.params, GlobalDirectionParams)]
    if not any(layer.params.ds is not None for layer in layers):
        return [(layer.name, Verdict(False, "none")) for layer in layers]  # nothing to hash the models for
    digests, size = model_digests(models), style_size(models)
    verdicts = [(layer.name, check(layer.params, digests, size)) for layer in layers]
    return [(name, verdict) for name, verdict in verdicts if not verdict.usable]


def cannot_recompute(waiting: list[tuple[str, Verdict]], exc: BaseException) -> str:
    """One line for a failure to load what the `waiting` layers need, naming the layer
    whose stored direction was made with other models, when one was."""
    for name, verdict in waiting:
        if verdict.model_differs:
            return f"{describe(name, verdict)}, and its direction cannot be recomputed here: {exc}"
    return str(exc)


def notices(doc: Any, models: ModelSet) -> list[str]:
    """One notice per visible layer whose stored direction these models will recompute
    because a model differs from the one it was made with."""
    return [recompute_notice(name, verdict) for name, verdict in pending(doc, models) if verdict.model_differs]


def resolved(renderer: Renderer, params: GlobalDirectionParams) -> GlobalDirectionParams:
    """`params` with their ds resolved by `renderer`'s models and the record of them."""
    d = renderer.direction(params.target, params.neutral, params.beta, params.keep)
    source = DirectionSource(params.target, params.neutral, params.beta, renderer.direction_digests(), params.keep)
    return params.with_changes(ds=d.ds, ds_source=source)


def store(doc: Any, renderer: Renderer) -> list[str]:
    """Give each global-direction layer of `doc` (hidden and locked ones too) a stored ds
    valid for `renderer`'s models, resolving the ones that lack one; returns notices for
    the layers recomputed because a model differs.

    Without CLIP, fs3 and statistics nothing is resolved and stored directions stay as
    they are. A layer whose direction cannot be resolved (beta too high for its text)
    keeps what it has: rendering it reports the problem."""
    if not renderer.can_resolve():
        return []
    digests, size = renderer.direction_digests(), style_size(renderer.models)
    out = []
    for layer in doc.layers:
        p = layer.params
        if not isinstance(p, GlobalDirectionParams):
            continue
        verdict = check(p, digests, size)
        if verdict.usable:
            continue
        try:
            new = resolved(renderer, p)
        except UserError:
            continue
        if verdict.model_differs:
            out.append(recompute_notice(layer.name, verdict))
        # Not an undoable step: the stored ds is a cache of what the parameters already
        # say, and a lock guards the edit, not its cache.
        layer.set("params", new, force=True)
    return out
