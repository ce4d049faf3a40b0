"""The editing document: what a project is, independent of any view or engine.

A document holds the source photo (or, for a project made from a seed, a description of
where its latent came from), the face alignment, the inverted base latent, the layer
stack, the timeline and the identities of the models it was made with. It is plain
Python + numpy: the GUI observes it through events and changes it through commands
(`commands`), the CLI and exporter read it directly.

Dirty tracking: every change gives the document a new `revision` token. Saving records
the token; the document is dirty when its token differs. Commands put the token back
when undone, so undoing to the saved state makes the document clean again.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from styleclip_desktop.document import validators as v
from styleclip_desktop.document.errors import LockedLayerError
from styleclip_desktop.document.events import Event, EventedModel, values_equal
from styleclip_desktop.document.layers import Layer, LayerStack
from styleclip_desktop.document.params import LayerParams
from styleclip_desktop.document.timeline import Keyframe, Timeline

_revisions = itertools.count(1)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class SourcePhoto:
    """The photo being edited: where it was opened from, its hash, and its encoded bytes.

    `data` is None when the project refers to the photo without carrying it."""

    path: str
    sha256: str
    data: bytes | None = None

    def __post_init__(self) -> None:
        v.text(self.path)
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ValueError("the photo hash must be 64 lowercase hex digits (sha256)")
        if self.data is not None:
            if not isinstance(self.data, bytes):
                raise TypeError(f"photo data must be bytes, got {type(self.data).__name__}")
            if sha256_hex(self.data) != self.sha256:
                raise ValueError("the photo's bytes do not match its sha256")

    @classmethod
    def from_bytes(cls, path: str | Path, data: bytes) -> SourcePhoto:
        return cls(str(path), sha256_hex(data), bytes(data))

    @classmethod
    def from_file(cls, path: str | Path) -> SourcePhoto:
        return cls.from_bytes(path, Path(path).read_bytes())

    @property
    def suffix(self) -> str:
        """The file extension to store the photo under ("" when the name has none usable)."""
        suffix = Path(self.path.replace("\\", "/")).suffix
        return suffix.lower() if _SUFFIX.fullmatch(suffix) else ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourcePhoto):
            return NotImplemented
        return (self.path, self.sha256, self.data) == (other.path, other.sha256, other.data)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Alignment:
    """Photo pixel coords -> aligned-crop coords (3x3, homogeneous) and the crop's size.

    Its inverse is what pastes the edited face back into the photo."""

    matrix: np.ndarray
    crop_size: int

    def __post_init__(self) -> None:
        m = self.matrix
        if not isinstance(m, np.ndarray) or m.shape != (3, 3):
            raise ValueError("the alignment must be a 3x3 matrix")
        m = np.array(m, dtype=np.float64, copy=True)
        if not np.isfinite(m).all():
            raise ValueError("the alignment matrix holds NaN or infinite values")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        size = v.strict_int(self.crop_size)
        if not 0 < size <= 65536:
            raise ValueError(f"the crop size must be between 1 and 65536 pixels, got {size}")
        object.__setattr__(self, "crop_size", size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Alignment):
            return NotImplemented
        return self.crop_size == other.crop_size and values_equal(self.matrix, other.matrix)

    __hash__ = None  # type: ignore[assignment]


def _short(digest: str) -> str:
    return digest[:6] + "…" if len(digest) > 6 else digest


def compare_models(used: Mapping[str, str], loaded: Mapping[str, str]) -> list[str]:
    """Messages for each model role whose identity differs from the one a project used."""
    messages = []
    for role, digest in used.items():
        now = loaded.get(role)
        if now is None:
            messages.append(f"this project was made with a {role} ({_short(digest)}) that is not loaded now")
        elif now != digest:
            messages.append(f"this project was made with a different {role} ({_short(digest)} vs {_short(now)})")
    return messages


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _instance(cls: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(value).__name__}")
        return value

    return check


def _generator_delta(value: Any) -> Mapping[str, np.ndarray] | None:
    if not isinstance(value, Mapping):
        raise TypeError("the generator delta must be a mapping of parameter name -> array")
    if not value:
        return None
    out = {}
    for name, array in value.items():
        v.non_empty_text(name)
        out[name] = v.frozen_float32(array, what=f"generator delta {name!r}")
    return MappingProxyType(out)


def _models(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError("models must be a mapping of role -> sha256")
    return MappingProxyType({v.non_empty_text(k): v.non_empty_text(d) for k, d in value.items()})


def _seed(value: Any) -> int:
    seed = v.strict_int(value)
    if not 0 <= seed < 2**63:
        raise ValueError(f"the seed must be between 0 and 2**63 - 1, got {seed}")
    return seed


class Document(EventedModel):
    """One project being edited.

    Events (`doc.events`): `changed(field, old, new)` for the fields below; `modified(event)`
    after any change anywhere in the document (the layer stack and timeline keep their own
    detailed events too); `dirty_changed(dirty)`; `file_path_changed(path)`.
    """

    _validators: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "source": _optional(_instance(SourcePhoto)),
        "alignment": _optional(_instance(Alignment)),
        "latent": v.latent_array,
        "generator_delta": _optional(_generator_delta),
        "models": _models,
        "seed": _optional(_seed),
        "description": v.text,
        "synthetic": v.strict_bool,
    }

    source: SourcePhoto | None
    alignment: Alignment | None
    latent: np.ndarray
    generator_delta: Mapping[str, np.ndarray] | None
    models: Mapping[str, str]
    seed: int | None
    description: str
    synthetic: bool
    uid: str
    layers: LayerStack
    timeline: Timeline

    def __init__(
        self,
        latent: np.ndarray,
        *,
        source: SourcePhoto | None = None,
        alignment: Alignment | None = None,
        generator_delta: Mapping[str, np.ndarray] | None = None,
        layers: Iterable[Layer] = (),
        timeline: Timeline | None = None,
        models: Mapping[str, str] | None = None,
        seed: int | None = None,
        description: str = "",
        synthetic: bool = False,
        uid: str | None = None,
    ) -> None:
        self._init_fields(
            source=source,
            alignment=alignment,
            latent=latent,
            generator_delta=generator_delta,
            models=models or {},
            seed=seed,
            description=description,
            synthetic=synthetic,
        )
        self.events.add("modified")
        self.events.add("dirty_changed")
        self.events.add("file_path_changed")
        object.__setattr__(self, "uid", secrets.token_hex(8) if uid is None else v.non_empty_text(uid))
        object.__setattr__(self, "_file_path", None)
        object.__setattr__(self, "_revision", next(_revisions))
        object.__setattr__(self, "_saved_revision", None)
        stack = LayerStack()
        stack.set_params_validator(self._check_params)
        object.__setattr__(self, "layers", stack)
        for layer in layers:
            stack.append(layer)
        timeline = Timeline() if timeline is None else timeline
        object.__setattr__(self, "timeline", timeline)
        for layer_id in timeline.tracks:
            if layer_id not in stack:
                raise ValueError(f"the timeline has keyframes for a layer that is not in the stack: {layer_id!r}")
        timeline.set_guard(self._check_track_change)
        self.events.changed.connect(self._on_modified)
        stack.events.connect(self._on_modified)
        timeline.events.connect(self._on_modified)

    # -- checks ----------------------------------------------------------------------

    def _check_change(self, name: str, value: Any) -> None:
        if name == "latent":
            for layer in self.layers:
                self._check_params(layer, layer.params, latent_shape=value.shape)

    def _check_params(self, layer: Layer, params: LayerParams, latent_shape: tuple[int, ...] | None = None) -> None:
        shape = self.latent.shape if latent_shape is None else latent_shape
        for name, array in params.latent_arrays().items():
            if array is not None and array.shape != shape:
                raise ValueError(
                    f'the {name} of layer "{layer.name}" has shape {array.shape}, '
                    f"but the latent has shape {tuple(shape)}"
                )

    def _check_track_change(self, layer_id: str) -> None:
        layer = self.layers.get(layer_id)
        if layer.locked:
            raise LockedLayerError(layer.name, "animated")

    # -- dirty tracking ----------------------------------------------------------------

    _revision: int
    _saved_revision: int | None
    _file_path: Path | None

    @property
    def revision(self) -> int:
        """A token that changes with every change (and comes back on undo)."""
        return self._revision

    @property
    def dirty(self) -> bool:
        """Changed since it was last saved or loaded (a never-saved document is dirty unless
        it was marked clean as it was made, see `mark_clean`)."""
        return self._revision != self._saved_revision

    def mark_saved(self) -> None:
        self._set_saved(self._revision)

    def mark_clean(self) -> None:
        """Nothing to save yet: a fresh document (a photo just opened, a new face) stays clean
        until the user changes it, and undoing back to here makes it clean again."""
        self._set_saved(self._revision)

    def mark_unsaved(self) -> None:
        """Dirty whatever the revision, e.g. for a document recovered from an autosave."""
        self._set_saved(None)

    def _set_saved(self, token: int | None) -> None:
        was = self.dirty
        object.__setattr__(self, "_saved_revision", token)
        if self.dirty != was:
            self.events.dirty_changed.emit(dirty=self.dirty)

    def restore_revision(self, token: int) -> None:
        """Put back an earlier revision token; only undo/redo should call this."""
        was = self.dirty
        object.__setattr__(self, "_revision", token)
        if self.dirty != was:
            self.events.dirty_changed.emit(dirty=self.dirty)

    def _on_modified(self, event: Event) -> None:
        self.restore_revision(next(_revisions))
        self.events.modified.emit(event=event)

    @property
    def file_path(self) -> Path | None:
        """Where the project was last saved to or opened from (None: untitled)."""
        return self._file_path

    @file_path.setter
    def file_path(self, path: str | Path | None) -> None:
        path = None if path is None else Path(path)
        if path != self._file_path:
            object.__setattr__(self, "_file_path", path)
            self.events.file_path_changed.emit(path=path)

    @property
    def title(self) -> str:
        """The project's name; before its first save, a photo's document goes by the photo's name."""
        if self._file_path is not None:
            return self._file_path.stem
        if self.source is not None:
            return Path(self.source.path.replace("\\", "/")).name or "Untitled"
        return "Untitled"

    # -- reading -----------------------------------------------------------------------

    def model_mismatches(self, loaded: Mapping[str, str]) -> list[str]:
        """Human messages for models that differ from the ones this project was made with."""
        return compare_models(self.models, loaded)

    def alpha_at(self, layer_id: str, t: float) -> float:
        """A layer's alpha at time t: from its keyframes, else its static alpha."""
        layer = self.layers.get(layer_id)
        sampled = self.timeline.sample(layer_id, t)
        return layer.alpha if sampled is None else sampled

    def frame_alphas(self, index: int) -> dict[str, float]:
        """Every layer's alpha (hidden ones included) at frame `index` of the timeline."""
        t = self.timeline.frame_time(index)
        return {layer.id: self.alpha_at(layer.id, t) for layer in self.layers}

    def morph_tracks(self) -> dict[str, tuple[Keyframe, ...]]:
        """Keyframes for a one-click morph: each visible, unlocked layer rises from 0 at
        t = 0 to its static alpha at t = duration."""
        end = self.timeline.duration
        return {
            layer.id: (Keyframe(0.0, 0.0), Keyframe(end, layer.alpha))
            for layer in self.layers
            if layer.visible and not layer.locked
        }
