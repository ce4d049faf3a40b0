"""What a batch applies to every photo: a layer stack, its timeline and the output settings.

A recipe comes from one of three places:

- a project (`.scproj`): its layers (with their masks and stored directions), keyframes
  and timeline; its own photo and latent are not used;
- a TOML file: layers written out by hand, each naming its method and settings, with an
  optional automatic region as its mask, found anew on every face;
- the editor's current document (File > Batch Apply...), which becomes a project recipe.

A recipe is plain data (its file's bytes and the options), so it travels unchanged to
worker processes and cluster machines; each worker turns it into layers once
(`RecipeLayers`). Its `digest` names everything that decides the outputs, so a batch
resumed with the same recipe skips the photos it finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from styleclip_desktop.errors import UserError

if TYPE_CHECKING:
    from styleclip_desktop.document import Document, Layer

PROJECT = "project"
TOML = "toml"
STILL_FORMATS = ("png", "jpg", "webp")
ANIMATION_FORMATS = ("mp4", "gif", "webp")
FACE_MODES = ("largest", "all")
INVERSIONS = ("e4e", "project", "pti")
MAX_RECIPE_BYTES = 256 << 20  # a project recipe with domain layers holds their weight deltas

# The layer methods a TOML recipe may name, and the keys each takes (besides the common ones).
_COMMON_KEYS = {"method", "name", "alpha", "visible", "mask", "mask_feather", "mask_invert", "mask_start"}
_METHOD_KEYS = {
    "global": {"target", "neutral", "beta", "keep"},
    "mapper": {"mapper", "coarse", "medium", "fine"},
    "domain": {"domain", "paste_back"},
}


class RecipeError(UserError):
    """A recipe that cannot be used, said in one line naming the file and the problem."""


@dataclass(frozen=True)
class BatchOutputs:
    """What each face of each photo becomes, and what the files are called.

    `name` is a template: {stem} (the photo's name without extension), {parent} (its
    folder's name), {hash} (the first 8 hex digits of its content hash), {index} (its
    place in the batch, from 1) and {face} (the face's number, from 1; with `faces="all"`
    a template without it gets `_face{face}` added)."""

    still: str | None = "png"
    animation: str | None = None
    name: str = "{stem}"
    faces: str = "largest"
    inversion: str = "e4e"
    crop: bool = False  # the aligned face only, not pasted back
    size: int | None = None  # the still's longer side (None: as rendered)
    animation_size: int = 512
    fps: float | None = None  # None: the recipe's timeline
    seconds: float | None = None
    morph: bool | None = None  # None: sweep the layers in when the recipe has no keyframes
    quality: int = 95

    def __post_init__(self) -> None:
        if self.still is None and self.animation is None:
            raise RecipeError("the batch writes nothing: choose a still format, an animation format or both")
        if self.still is not None and self.still not in STILL_FORMATS:
            raise RecipeError(f"the still format must be one of {', '.join(STILL_FORMATS)}, not {self.still!r}")
        if self.animation is not None and self.animation not in ANIMATION_FORMATS:
            raise RecipeError(f"the animation format must be one of {', '.join(ANIMATION_FORMATS)}, "
                              f"not {self.animation!r}")
        if self.still is not None and self.still == self.animation:
            raise RecipeError(f"the still and the animation would both be .{self.still} files of the same name; "
                              "choose another format for one of them")
        if self.faces not in FACE_MODES:
            raise RecipeError(f"faces must be one of {', '.join(FACE_MODES)}, not {self.faces!r}")
        if self.inversion not in INVERSIONS:
            raise RecipeError(f"the inversion must be one of {', '.join(INVERSIONS)}, not {self.inversion!r}")
        try:
            self.name.format(stem="x", parent="x", hash="x", index=1, face=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise RecipeError(f"the name template {self.name!r} is not usable ({exc}); its fields are "
                              "{stem}, {parent}, {hash}, {index} and {face}") from None
        if "/" in self.name or "\\" in self.name:
            raise RecipeError(f"the name template {self.name!r} must name a file, not a folder")
        # The exporters check the numbers themselves; checking here fails before any work.
        from styleclip_desktop.export.animation import AnimationOptions
        from styleclip_desktop.export.stills import StillOptions

        StillOptions(size=self.size, quality=self.quality)
        AnimationOptions(fps=self.fps, seconds=self.seconds, size=self.animation_size)

    def with_changes(self, **changes: Any) -> BatchOutputs:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def stem_for(self, stem: str, parent: str, digest: str, index: int, face: int) -> str:
        template = self.name
        if self.faces == "all" and "{face}" not in template:
            template += "_face{face}"
        return template.format(stem=stem, parent=parent, hash=digest[:8], index=index, face=face)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recipe:
    """A recipe's source as bytes, where its relative paths start, and the output settings."""

    kind: str  # PROJECT or TOML
    data: bytes
    label: str  # the file's name, for messages and the manifest
    base_dir: str  # TOML: where its relative mask and domain paths start
    outputs: BatchOutputs
    extras: Mapping[str, str] = field(default_factory=dict)  # TOML: referenced file -> sha256

    @property
    def digest(self) -> str:
        """sha256 over what decides the outputs: the layers and timeline (for a project, not
        its photo or latent), the files a TOML recipe refers to, and the output settings."""
        h = hashlib.sha256()
        h.update(self.kind.encode() + b"\0")
        if self.kind == PROJECT:
            from styleclip_desktop.document.serialize import canonical_state

            h.update(canonical_state(_stripped(self.document())))
        else:
            h.update(json.dumps(self.toml(), sort_keys=True, default=str).encode())
        h.update(json.dumps(dict(self.extras), sort_keys=True).encode())
        h.update(json.dumps(self.outputs.to_json(), sort_keys=True).encode())
        return h.hexdigest()

    def document(self) -> Document:
        from styleclip_desktop.document.project_file import load_project_bytes

        return load_project_bytes(self.data)

    def toml(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RecipeError(f"{self.label} is not a readable TOML recipe ({exc})") from None

    def with_outputs(self, outputs: BatchOutputs) -> Recipe:
        return dataclasses.replace(self, outputs=outputs)

def _stripped(doc: Document) -> Document:
    """The recipe part of a document: its layers and timeline on a blank face."""
    from styleclip_desktop.document import Document as Doc
    from styleclip_desktop.document import Timeline

    tl = doc.timeline
    # A fixed uid: the same layers must give the same digest, so that a batch run again resumes.
    return Doc(np.zeros_like(doc.latent), layers=[layer.copy(id=layer.id, name=layer.name) for layer in doc.layers],
               timeline=Timeline(tl.duration, tl.fps, tl.tracks), uid="recipe")


def recipe_from_document(doc: Document, outputs: BatchOutputs, label: str = "the current document") -> Recipe:
    """The editor's document as a project recipe (its photo left out)."""
    import tempfile

    from styleclip_desktop.document.project_file import write_project

    if not len(doc.layers):
        raise RecipeError(f"{label} has no layers to apply")
    with tempfile.TemporaryDirectory(prefix="styleclip-recipe-") as tmp:
        path = Path(tmp) / "recipe.scproj"
        write_project(_stripped(doc), path)
        data = path.read_bytes()
    return Recipe(PROJECT, data, label, "", outputs)


def load_recipe(path: Path, outputs: BatchOutputs | None = None, **overrides: Any) -> Recipe:
    """A recipe from a project or TOML file; `overrides` (not None) replace its output settings."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RecipeError(f"the recipe {path} is not a file")
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"the recipe {path.name} is {size >> 20} MB, more than a recipe can be")
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"recipe not found: {path}") from None
    suffix = path.suffix.lower()
    if suffix == ".scproj":
        recipe = Recipe(PROJECT, data, path.name, str(path.parent.resolve()), outputs or BatchOutputs())
        doc = recipe.document()  # a damaged project fails here, in one line
        if not len(doc.layers):
            raise RecipeError(f"{path.name} has no layers to apply")
        return recipe.with_outputs(recipe.outputs.with_changes(**overrides))
    if suffix != ".toml":
        raise RecipeError(f"a recipe is a project (.scproj) or a TOML file (.toml), not {path.name}")
    base = Recipe(TOML, data, path.name, str(path.parent.resolve()), BatchOutputs())
    table = base.toml()
    layers = _toml_layers(table, path.name)
    out = _toml_outputs(table.get("output", {}), path.name)
    merged = (outputs or out).with_changes(**overrides)
    extras = {ref: _file_digest(Path(base.base_dir) / ref, path.name)
              for spec in layers for ref in _referenced_files(spec)}
    return dataclasses.replace(base, outputs=merged, extras=extras)


def _file_digest(path: Path, label: str) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise RecipeError(f"{label}: cannot read {path.name} ({exc.strerror or exc})") from None


def _referenced_files(spec: Mapping[str, Any]) -> list[str]:
    from styleclip_desktop.methods.regions import REGION_NAMES

    refs = []
    if "mask" in spec and str(spec["mask"]) not in REGION_NAMES:
        refs.append(str(spec["mask"]))
    if spec.get("method") == "domain":
        refs.append(str(spec["domain"]))
    if spec.get("method") == "mapper" and str(spec["mapper"]).lower().endswith((".pt", ".pth")):
        refs.append(str(spec["mapper"]))
    return refs


def _toml_layers(table: Mapping[str, Any], label: str) -> list[dict[str, Any]]:
    unknown = set(table) - {"layer", "output"}
    if unknown:
        raise RecipeError(f"{label}: unknown section {sorted(unknown)[0]!r} (a recipe has [[layer]] and [output])")
    layers = table.get("layer")
    if not isinstance(layers, list) or not layers or not all(isinstance(x, dict) for x in layers):
        raise RecipeError(f"{label} has no [[layer]] tables to apply")
    for i, spec in enumerate(layers, 1):
        method = spec.get("method")
        if method not in _METHOD_KEYS:
            hint = " (latent optimization is per photo: run it in the editor and use the project as the recipe)" \
                if method in ("optimize", "optimization") else ""
            raise RecipeError(f"{label}, layer {i}: method must be one of {', '.join(_METHOD_KEYS)}, "
                              f"not {method!r}{hint}")
        extra = set(spec) - _COMMON_KEYS - _METHOD_KEYS[method]
        if extra:
            raise RecipeError(f"{label}, layer {i}: {method} layers take no {sorted(extra)[0]!r}")
        need = {"global": "target", "mapper": "mapper", "domain": "domain"}[method]
        if not spec.get(need):
            raise RecipeError(f"{label}, layer {i}: a {method} layer needs {need} = ...")
        if method == "domain" and "mask" in spec:
            raise RecipeError(f"{label}, layer {i}: a domain layer moves the whole generator, so it takes no mask")
    return layers


_OUTPUT_KEYS = {f.name for f in dataclasses.fields(BatchOutputs)}


def _toml_outputs(section: Any, label: str) -> BatchOutputs:
    if not isinstance(section, dict):
        raise RecipeError(f"{label}: [output] must be a table")
    extra = set(section) - _OUTPUT_KEYS
    if extra:
        raise RecipeError(f"{label}: [output] takes no {sorted(extra)[0]!r}; it takes {', '.join(sorted(_OUTPUT_KEYS))}")
    values = {k: (None if v in ("none", "") and k in ("still", "animation") else v) for k, v in section.items()}
    try:
        return BatchOutputs(**{**dataclasses.asdict(BatchOutputs()), **values})
    except TypeError as exc:
        raise RecipeError(f"{label}: [output] {exc}") from None


class RecipeLayers:
    """A recipe made into layers for one worker's models, ready to stack on each face.

    Built once per worker: a project recipe's layers are read once; a TOML recipe's
    domain files are read and fitted to this generator once. Region masks are found
    per face, since each face has its own hair and lips."""

    def __init__(self, recipe: Recipe, G: Any, generator_identity: str = "") -> None:
        from styleclip_desktop.document import Timeline

        self.recipe = recipe
        self.regions: dict[str, tuple[str, dict[str, Any]]] = {}  # layer id -> region, mask settings
        if recipe.kind == PROJECT:
            doc = recipe.document()
            self.layers: list[Layer] = list(doc.layers)
            tl = doc.timeline
            self.timeline = (tl.duration, tl.fps, tl.tracks)
        else:
            self.layers = [self._toml_layer(spec, i, G, generator_identity)
                           for i, spec in enumerate(recipe.toml()["layer"], 1)]
            tl = Timeline()
            self.timeline = (tl.duration, tl.fps, {})

    @property
    def has_keyframes(self) -> bool:
        return bool(self.timeline[2])

    def _toml_layer(self, spec: Mapping[str, Any], i: int, G: Any, identity: str) -> Layer:
        from styleclip_desktop.document import GlobalDirectionParams, Layer, LayerParams, MapperParams

        label = f"{self.recipe.label}, layer {i}"
        method = spec["method"]
        base = Path(self.recipe.base_dir)
        try:
            params: LayerParams
            if method == "global":
                keep = spec.get("keep", ())
                params = GlobalDirectionParams(target=str(spec["target"]), neutral=str(spec.get("neutral", "a face")),
                                               beta=spec.get("beta", 0.15),
                                               keep=tuple(keep) if isinstance(keep, list) else keep)
            elif method == "mapper":
                ref = str(spec["mapper"])
                checkpoint = str(base / ref) if ref in self.recipe.extras else ref
                params = MapperParams(checkpoint=checkpoint, coarse=spec.get("coarse", True),
                                      medium=spec.get("medium", True), fine=spec.get("fine", True))
            else:
                from styleclip_desktop.methods.domain_file import load_domain_layer

                params = load_domain_layer(base / str(spec["domain"]), G, identity)
                if spec.get("paste_back"):
                    params = params.with_changes(paste_back=True)
            mask, region = self._mask(spec, base, label)
            fields: dict[str, Any] = {"visible": spec.get("visible", True), "mask": mask}
            if "name" in spec:
                fields["name"] = spec["name"]
            if "alpha" in spec:
                fields["alpha"] = spec["alpha"]
            layer = Layer(params, **fields)
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"{label}: {exc}") from None
        if region is not None:
            self.regions[layer.id] = region
        return layer

    def _mask(self, spec: Mapping[str, Any], base: Path,
              label: str) -> tuple[Any, tuple[str, dict[str, Any]] | None]:
        """The layer's mask, and (region, mask settings) when it is a region to find on each face."""
        from styleclip_desktop.document import LayerMask
        from styleclip_desktop.document.masks import DEFAULT_START_RES
        from styleclip_desktop.methods.regions import REGION_NAMES

        ref = spec.get("mask")
        if ref is None:
            if any(k in spec for k in ("mask_feather", "mask_invert", "mask_start")):
                raise RecipeError(f"{label}: mask_feather, mask_invert and mask_start go with mask = ...")
            return None, None
        is_region = str(ref) in REGION_NAMES
        settings = {"feather": float(spec.get("mask_feather", 6.0 if is_region else 0.0)),
                    "inverted": bool(spec.get("mask_invert", False)),
                    "start_res": int(spec.get("mask_start", DEFAULT_START_RES))}
        if is_region:
            # A stand-in until the region is found on each face (`apply`).
            return LayerMask.filled(255, **settings), (str(ref), settings)
        from styleclip_desktop.document.mask_ops import read_mask_image

        path = base / str(ref)
        if not path.is_file():
            raise RecipeError(f"{label}: mask {ref!r} is neither a region ({', '.join(REGION_NAMES)}) nor a file")
        return LayerMask.from_coverage(read_mask_image(path), **settings), None

    def copies(self) -> list[Layer]:
        """New copies of the recipe's layers (same ids, so the timeline's tracks still name them)."""
        return [layer.copy(id=layer.id, name=layer.name) for layer in self.layers]

    def apply(self, doc: Document, renderer: Any) -> Document:
        """`doc` (a freshly inverted face) with the recipe's layers and timeline."""
        from styleclip_desktop.methods.regions import region_mask

        duration, fps, tracks = self.timeline
        for layer in self.copies():
            doc.layers.append(layer)
        for layer_id, (region, settings) in self.regions.items():
            layer = doc.layers.get(layer_id)
            layer.set("mask", region_mask(renderer, doc, region, **settings))
        doc.timeline.set("duration", duration)
        doc.timeline.set("fps", fps)
        for layer_id, keys in tracks.items():
            doc.timeline.set_track(layer_id, keys)
        return doc
