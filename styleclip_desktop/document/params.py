"""Method parameters of edit layers, one immutable class per kind.

A new kind of edit is one more `LayerParams` subclass decorated with
`@register_layer_kind`: the layer stack, undo, the project file and the renderer's
dispatch all key on its `kind` string, so nothing else has to change to store it.

Parameters are frozen: a change makes a new object (`with_changes`), which keeps undo
trivial (the old object is the undo state) and lets the renderer cache by value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from styleclip_desktop.document import validators as v
from styleclip_desktop.document.events import values_equal
from styleclip_desktop.methods import optimization_settings

W_SPACE = "w"
S_SPACE = "s"
G_SPACE = "g"  # the generator's own weights (domain layers)

LAYER_KINDS: dict[str, type[LayerParams]] = {}

P = TypeVar("P", bound="LayerParams")


def register_layer_kind(cls: type[P]) -> type[P]:
    """Class decorator: make a parameter class known under its `kind` string."""
    if cls.kind in LAYER_KINDS and LAYER_KINDS[cls.kind] is not cls:
        raise ValueError(f"layer kind {cls.kind!r} is already registered")
    if cls.space not in (W_SPACE, S_SPACE, G_SPACE):
        raise ValueError(f"layer kind {cls.kind!r} has unknown space {cls.space!r}")
    LAYER_KINDS[cls.kind] = cls
    return cls


def params_class(kind: str) -> type[LayerParams]:
    """The parameter class for `kind`; KeyError when this version does not know it."""
    return LAYER_KINDS[kind]


@dataclass(frozen=True, eq=False)
class LayerParams:
    """Base of every kind's parameters.

    Subclasses set `kind`, `space` (W_SPACE: a W+ offset applied before W+ -> S;
    S_SPACE: a style-space offset applied after), `label` (the method's name for people),
    `_checks` (field -> validator) and list array-valued fields in `_array_fields`.
    Array fields are shaped like the latent unless listed in `_style_fields` (flat style
    vectors, whose length only the generator knows). `_derived_fields` are results
    computed from the others and kept so a render can skip the work; they are not
    settings, so `settings_json` leaves them out.
    """

    kind: ClassVar[str] = ""
    space: ClassVar[str] = W_SPACE
    label: ClassVar[str] = ""
    default_alpha: ClassVar[float] = 1.0
    _checks: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    _array_fields: ClassVar[tuple[str, ...]] = ()
    _style_fields: ClassVar[tuple[str, ...]] = ()
    _derived_fields: ClassVar[tuple[str, ...]] = ()
    # Fields holding named weight arrays (parameter name -> array), stored like arrays.
    _weight_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = self._checks.get(f.name)
            if check is not None:
                object.__setattr__(self, f.name, check(getattr(self, f.name)))

    def default_name(self) -> str:
        """A layer name to show until the user renames it."""
        return self.label

    def with_changes(self, **changes: Any) -> Self:
        """A copy with some fields replaced; unknown field names raise TypeError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"{self.label} layers have no parameter {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The non-array fields, as JSON-ready values."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in self._array_fields and f.name not in self._weight_fields
        }

    def settings_json(self) -> dict[str, Any]:
        """`to_json` without the derived fields: what the user chose, for export records."""
        return {k: value for k, value in self.to_json().items() if k not in self._derived_fields}

    def arrays(self) -> dict[str, np.ndarray | None]:
        """The array-valued fields (stored beside the manifest, not in it)."""
        return {name: getattr(self, name) for name in self._array_fields}

    def weights(self) -> dict[str, Mapping[str, np.ndarray] | None]:
        """The named-weight fields (stored beside the manifest, like arrays)."""
        return {name: getattr(self, name) for name in self._weight_fields}

    def latent_arrays(self) -> dict[str, np.ndarray | None]:
        """The array fields that must have the latent's shape."""
        return {name: getattr(self, name) for name in self._array_fields if name not in self._style_fields}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray | None]) -> Self:
        """Rebuild from `to_json` + `arrays` output. Missing fields with a default take
        it (projects from before the field existed); unknown keys are ignored.
        Raises TypeError/ValueError on wrong values."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            source: Mapping[str, Any] = (arrays if f.name in cls._array_fields or f.name in cls._weight_fields
                                         else data)
            if f.name in source:
                kwargs[f.name] = source[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"missing parameter {f.name!r}")
        return cls(**kwargs)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, LayerParams)
        return (values_equal(self.to_json(), other.to_json()) and values_equal(self.arrays(), other.arrays())
                and values_equal(self.weights(), other.weights()))

    __hash__ = None  # type: ignore[assignment]


def _beta(value: Any) -> float:
    beta = v.finite_float(value)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be between 0 and 1, got {beta}")
    return beta


MAX_KEPT = 16


def _kept(value: Any) -> tuple[str, ...]:
    """What a layer holds fixed: distinct non-empty texts, in the order given."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError("keep must be a list of texts")
    out: list[str] = []
    for item in value:
        t = v.non_empty_text(item).strip()
        if len(t) > 200:
            raise ValueError("a kept attribute is at most 200 characters")
        if t not in out:
            out.append(t)
    if len(out) > MAX_KEPT:
        raise ValueError(f"a layer keeps at most {MAX_KEPT} attributes")
    return tuple(out)


def _steps(value: Any) -> int:
    steps = v.strict_int(value)
    if not 1 <= steps <= 100_000:
        raise ValueError(f"steps must be between 1 and 100000, got {steps}")
    return steps


def _seed(value: Any) -> int:
    seed = v.strict_int(value)
    if not 0 <= seed < 2**63:
        raise ValueError(f"the seed must be between 0 and 2**63 - 1, got {seed}")
    return seed


_MAX_DIGEST = 128
_MAX_ROLES = 16


def _digests(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError("the models a direction was resolved with must map role -> digest")
    if len(value) > _MAX_ROLES:
        raise ValueError(f"a direction records at most {_MAX_ROLES} models")
    out = {}
    for role, digest in value.items():
        if len(v.non_empty_text(role)) > _MAX_DIGEST or len(v.non_empty_text(digest)) > _MAX_DIGEST:
            raise ValueError("a model role or digest in a direction's record is too long")
        out[role] = digest
    if "generator" not in out:
        raise ValueError("a resolved direction must record the generator it was resolved with")
    return MappingProxyType(out)


@dataclass(frozen=True)
class DirectionSource:
    """What a stored style direction was resolved from: the layer's inputs as they were,
    and the digests of the models (role -> digest: "generator" always, "fs3", "stats"
    and "clip" as known). A stored ds is only good for exactly these."""

    target: str
    neutral: str
    beta: float
    models: Mapping[str, str]
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", v.non_empty_text(self.target))
        object.__setattr__(self, "neutral", v.non_empty_text(self.neutral))
        object.__setattr__(self, "beta", _beta(self.beta))
        object.__setattr__(self, "models", _digests(self.models))
        object.__setattr__(self, "keep", _kept(self.keep))

    def to_json(self) -> dict[str, Any]:
        out = {"target": self.target, "neutral": self.neutral, "beta": self.beta, "models": dict(self.models)}
        if self.keep:  # absent when nothing is kept, as in projects from before keep existed
            out["keep"] = list(self.keep)
        return out

    @classmethod
    def from_json(cls, data: Any) -> DirectionSource:
        if not isinstance(data, Mapping):
            raise TypeError("ds_source should be an object")
        missing = {"target", "neutral", "beta", "models"} - set(data)
        if missing:
            raise ValueError(f"ds_source lacks {', '.join(sorted(missing))}")
        return cls(data["target"], data["neutral"], data["beta"], data["models"], data.get("keep", ()))

    def describes(self, params: GlobalDirectionParams) -> bool:
        """Whether this was resolved for `params`' own target, neutral text, beta and kept attributes."""
        return ((self.target, self.neutral, self.beta, self.keep)
                == (params.target, params.neutral, params.beta, params.keep))


def _direction_source(value: Any) -> DirectionSource | None:
    if value is None or isinstance(value, DirectionSource):
        return value
    return DirectionSource.from_json(value)


# Changing any of these makes a resolved ds describe a different edit.
_DIRECTION_INPUTS = ("target", "neutral", "beta", "keep")


@register_layer_kind
@dataclass(frozen=True, eq=False)
class GlobalDirectionParams(LayerParams):
    """A text direction in style space: s' = s + alpha * ds(target, neutral, beta, keep).

    `keep` names attributes the edit must hold: ds is made orthogonal to theirs (see
    `methods.keep`).

    `ds`, once resolved, is that direction (S,) as computed with the models recorded in
    `ds_source`. It travels in the project so that a render needs only the generator: no
    CLIP, no fs3. The renderer uses it only while `ds_source` matches both the layer and
    the loaded models."""

    kind: ClassVar[str] = "global_direction"
    space: ClassVar[str] = S_SPACE
    label: ClassVar[str] = "Global direction"
    default_alpha: ClassVar[float] = 3.0
    _checks: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "target": v.non_empty_text,
        "neutral": v.non_empty_text,
        "beta": _beta,
        "keep": _kept,
        "ds": v.optional_style_array,
        "ds_source": _direction_source,
    }
    _array_fields: ClassVar[tuple[str, ...]] = ("ds",)
    _style_fields: ClassVar[tuple[str, ...]] = ("ds",)
    _derived_fields: ClassVar[tuple[str, ...]] = ("ds", "ds_source")

    target: str
    neutral: str = "a face"
    beta: float = 0.15
    keep: tuple[str, ...] = ()  # attributes held fixed: ds is orthogonal to theirs
    ds: np.ndarray | None = None
    ds_source: DirectionSource | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.ds is None) != (self.ds_source is None):
            raise ValueError("a stored style direction and the record of what it was resolved from go together")

    def default_name(self) -> str:
        return self.target

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["ds_source"] = None if self.ds_source is None else self.ds_source.to_json()
        if self.keep:
            out["keep"] = list(self.keep)
        else:  # as projects and export records were before keep existed
            del out["keep"]
        return out

    def with_changes(self, **changes: Any) -> Self:
        """As the base, but new text or beta drops the stored direction unless a new one
        is given with it: a ds is never kept for inputs it was not resolved from."""
        if "ds" not in changes and "ds_source" not in changes:
            probe = super().with_changes(**changes)
            if any(getattr(self, n) != getattr(probe, n) for n in _DIRECTION_INPUTS):
                changes.update(ds=None, ds_source=None)
        return super().with_changes(**changes)

    def stored_direction(self) -> tuple[np.ndarray, Mapping[str, str]] | None:
        """The stored ds and the model digests it was resolved with, when there is one
        resolved for this layer's current inputs; None otherwise."""
        if self.ds is None or self.ds_source is None or not self.ds_source.describes(self):
            return None
        return self.ds, self.ds_source.models


SLIDER_GROUPS = ("coarse", "middle", "fine")
MAX_W_DIM = 4096


def _slider_group(value: Any) -> str:
    group = v.text(value)
    if group not in SLIDER_GROUPS:
        raise ValueError(f"a slider's layer group is one of {', '.join(SLIDER_GROUPS)}, not {group!r}")
    return group


def _rows(value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise TypeError("a slider's W+ rows must be a non-empty list of whole numbers")
    rows = tuple(v.strict_int(r) for r in value)
    if any(not 0 <= r < 64 for r in rows) or len(set(rows)) != len(rows):
        raise ValueError("a slider's W+ rows must be distinct, between 0 and 63")
    return rows


def _w_direction(value: Any) -> np.ndarray:
    out = v.frozen_float32(value, ndim=1, what="the slider's direction")
    if out.shape[0] > MAX_W_DIM:
        raise ValueError(f"the slider's direction has {out.shape[0]} numbers, more than any W space")
    return out


@register_layer_kind
@dataclass(frozen=True, eq=False)
class SliderParams(LayerParams):
    """A closed-form slider (SeFa) from the generator's own weights: the W+ rows of one
    layer group move by alpha * direction (a unit W vector).

    The direction itself travels in the project, so the layer renders the same wherever
    the project opens, its sign already turned so that + moves towards `name`; `group` and
    `index` say which eigenvector of which layers it is, and `name` what CLIP found it
    does ("unnamed" when nothing matched). With
    `keep`, the slider's exact style-space image is made orthogonal to the kept
    attributes (`methods.keep`) and applied in style space."""

    kind: ClassVar[str] = "slider"
    space: ClassVar[str] = W_SPACE
    label: ClassVar[str] = "Slider"
    default_alpha: ClassVar[float] = 3.0
    _checks: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "name": v.non_empty_text,
        "group": _slider_group,
        "index": v.strict_int,
        "rows": _rows,
        "keep": _kept,
        "direction": _w_direction,
    }
    _array_fields: ClassVar[tuple[str, ...]] = ("direction",)
    _style_fields: ClassVar[tuple[str, ...]] = ("direction",)  # (w_dim,): not the latent's shape

    name: str
    group: str
    index: int
    rows: tuple[int, ...]
    direction: np.ndarray
    keep: tuple[str, ...] = ()  # attributes held: the slider then acts in style space, orthogonal to them

    def default_name(self) -> str:
        return self.name if self.name != "unnamed" else f"{self.group} slider {self.index + 1}"

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["rows"] = list(self.rows)
        out["keep"] = list(self.keep)
        return out


@register_layer_kind
@dataclass(frozen=True, eq=False)
class MapperParams(LayerParams):
    """A trained latent mapper: w' = w + alpha * 0.1 * M(w), per enabled sub-mapper."""

    kind: ClassVar[str] = "mapper"
    space: ClassVar[str] = W_SPACE
    label: ClassVar[str] = "Mapper"
    _checks: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "checkpoint": v.non_empty_text,
        "coarse": v.strict_bool,
        "medium": v.strict_bool,
        "fine": v.strict_bool,
    }

    checkpoint: str
    coarse: bool = True
    medium: bool = True
    fine: bool = True

    def default_name(self) -> str:
        return self.checkpoint


# Changing any of these makes a computed delta describe a different edit.
_OPTIMIZATION_INPUTS = ("prompt", "lambda_l2", "lambda_id", "steps", "seed", "clip_input", "result", "keep",
                        "lambda_keep")


def _choice(options: tuple[str, ...], what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{what} must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


@register_layer_kind
@dataclass(frozen=True, eq=False)
class OptimizationParams(LayerParams):
    """Latent optimization towards a prompt; `delta` is the W+ offset once computed.

    The defaults are the published free edit's (`methods.optimization_settings`). A project
    saved before `clip_input` and `result` existed loads with the settings its delta was
    computed with (CLIP's own preprocessing, the lowest-total-loss step), so the layer's
    settings keep describing its stored result and a re-run reproduces it; new layers get
    the published ones.
    """

    kind: ClassVar[str] = "optimization"
    space: ClassVar[str] = W_SPACE
    label: ClassVar[str] = "Optimization"
    _checks: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "prompt": v.non_empty_text,
        "lambda_l2": v.non_negative_float,
        "lambda_id": v.non_negative_float,
        "steps": _steps,
        "seed": _seed,
        "clip_input": _choice(optimization_settings.CLIP_INPUTS, "clip_input"),
        "result": _choice(optimization_settings.RESULTS, "result"),
        "keep": _kept,
        "lambda_keep": v.non_negative_float,
        "delta": v.optional_latent_array,
    }
    _array_fields: ClassVar[tuple[str, ...]] = ("delta",)

    prompt: str
    lambda_l2: float = optimization_settings.EDIT.lambda_l2
    lambda_id: float = optimization_settings.EDIT.lambda_id
    steps: int = optimization_settings.EDIT.steps
    seed: int = 0
    delta: np.ndarray | None = None
    clip_input: str = optimization_settings.DEFAULT_CLIP_INPUT
    result: str = optimization_settings.DEFAULT_RESULT
    keep: tuple[str, ...] = ()  # attributes held at their starting CLIP similarity
    lambda_keep: float = optimization_settings.DEFAULT_LAMBDA_KEEP

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.keep:
            out["keep"] = list(self.keep)
        elif self.lambda_keep == optimization_settings.DEFAULT_LAMBDA_KEEP:
            del out["keep"], out["lambda_keep"]  # as layers were before keep existed
        else:
            out["keep"] = []
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray | None]) -> Self:
        legacy = {"clip_input": optimization_settings.LEGACY_CLIP_INPUT,
                  "result": optimization_settings.LEGACY_RESULT}
        return super().from_json({**legacy, **data}, arrays)

    def default_name(self) -> str:
        return self.prompt

    def with_changes(self, **changes: Any) -> Self:
        """As the base, but a change to what was optimised drops a stale delta unless a
        new one is given with it."""
        if "delta" not in changes:
            probe = super().with_changes(**changes)
            if any(not values_equal(getattr(self, n), getattr(probe, n)) for n in _OPTIMIZATION_INPUTS):
                changes["delta"] = None
        return super().with_changes(**changes)
