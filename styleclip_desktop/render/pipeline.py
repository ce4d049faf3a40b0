"""The one render path: document + layer stack -> W+ deltas -> S -> S deltas -> image.

The GUI, the CLI, export and tests all ask a `Renderer` for pixels. Stack semantics are
the document's (see `styleclip_desktop.document.layers`): visible W-space layers
(optimization, mapper) add their alpha-scaled deltas to W+ in stack order, then W+
becomes S, then visible S-space layers (global directions) add alpha * ds in stack
order, then synthesis, then optional paste-back into the source photo.

Every method takes a `Document` or a `RenderState` snapshot of one (they read the same
attributes). Each stage is cached by content: text -> CLIP embedding,
(text, neutral, beta) -> ds, W+ -> S, and (S, resolution) -> frame, so moving one
layer's alpha recomputes only that layer's term and the synthesis. A global-direction
layer that carries its ds, resolved with these models, skips CLIP and fs3 altogether
(see `stored_directions`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch

from styleclip_desktop.document import (
    DomainParams,
    GlobalDirectionParams,
    MapperParams,
    OptimizationParams,
    SliderParams,
)
from styleclip_desktop.errors import ModelFileError, UserError
from styleclip_desktop.methods import global_directions as gd
from styleclip_desktop.methods import keep as keep_mod
from styleclip_desktop.nets.stylegan2 import Generator, pack_styles, to_uint8, unpack_styles
from styleclip_desktop.render import stored_directions
from styleclip_desktop.render.state import delta_key

if TYPE_CHECKING:
    from styleclip_desktop.render.backends import Backend

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Applies a mapper to W+ (1, L, w_dim) with sub-mapper switches; returns the mapped W+.
MapperFn = Callable[[torch.Tensor, bool, bool, bool], torch.Tensor]
# A Document or a RenderState: the renderer reads latent, layers, generator_delta, source, alignment.
DocLike = Any


class LRUCache(Generic[K, V]):
    """A small thread-safe LRU bounded by entry count and an optional byte budget."""

    def __init__(self, max_items: int = 128, max_bytes: int | None = None,
                 size_of: Callable[[V], int] | None = None) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._size_of = size_of or (lambda v: 0)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def peek(self, key: K) -> bool:
        """Whether `key` is cached, without counting a hit or a miss."""
        with self._lock:
            return key in self._data

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key in self._data:
                self._bytes -= self._size_of(self._data.pop(key))
            self._data[key] = value
            self._bytes += self._size_of(value)
            while len(self._data) > self.max_items or (self.max_bytes is not None and self._bytes > self.max_bytes
                                                       and len(self._data) > 1):
                _, old = self._data.popitem(last=False)
                self._bytes -= self._size_of(old)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "items": len(self._data), "bytes": self._bytes}

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class ModelSet:
    """The loaded models a renderer needs. Only the generator is mandatory."""

    G: Generator
    clip: Any | None = None  # styleclip_desktop.nets.clip.ClipModel
    fs3: np.ndarray | None = None
    stats: gd.StyleStats | None = None
    mapper_loader: Callable[[str], MapperFn] | None = None
    identities: dict[str, str] = field(default_factory=dict)  # role -> sha256
    synthetic: bool = False


MASKED_ON_TORCH = "masked layers render with PyTorch: the exported ONNX graphs take no masks"
DOMAIN_ON_TORCH = "domain layers render with PyTorch: the exported ONNX graphs hold the loaded generator's weights"


@dataclass(frozen=True)
class RenderPlan:
    """One frame to synthesize: a flat S (1, S), or with masked layers one S per branch
    (branch k has the first k masked layers) and the masks; `key` names the frame."""

    branches: tuple[torch.Tensor, ...]
    masks: tuple[Any, ...]  # LayerMask, one per masked layer
    start_res: int
    key: str
    alphas: Mapping[str, float] | None = None  # what it was planned for (domain layers pick the generator)


def array_key(a: np.ndarray | torch.Tensor) -> str:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    h = hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16)
    h.update(str(arr.shape).encode())
    return h.hexdigest()


def doc_alignment_to_faces(alignment: Any) -> Any:
    """The document stores photo->crop as a matrix; faces/ works with the crop's quad."""
    from styleclip_desktop.faces.align import alignment_from_quad

    inv = np.linalg.inv(np.asarray(alignment.matrix, dtype=np.float64))
    lo, hi = -0.5, alignment.crop_size - 0.5
    corners = np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]])
    quad = corners @ inv[:2, :2].T + inv[:2, 2]
    return alignment_from_quad(quad, alignment.crop_size)


def _alpha(layer: Any, alphas: Mapping[str, float] | None) -> float:
    return float(alphas.get(layer.id, layer.alpha)) if alphas is not None else float(layer.alpha)


class Renderer:
    """Renders documents with one set of models; safe to call from the UI and worker threads."""

    def __init__(self, models: ModelSet, device: torch.device | str = "cpu", backend: Backend | None = None,
                 frame_cache_bytes: int = 512 * 2**20) -> None:
        from styleclip_desktop.render.backends import TorchBackend

        self.models = models
        self.device = torch.device(device)
        self.G = models.G.to(self.device).eval().requires_grad_(False)
        self.backend: Backend = backend or TorchBackend(self.G, models.clip, self.device)
        self.texts: LRUCache[str, np.ndarray] = LRUCache(512)
        self.directions: LRUCache[tuple[str, str, float, tuple[str, ...]], gd.StyleDirection] = LRUCache(256)
        self.slider_cache: LRUCache[tuple[Any, ...], np.ndarray] = LRUCache(64)
        self.styles: LRUCache[str, torch.Tensor] = LRUCache(64)
        self.frames: LRUCache[tuple[str, int, str], np.ndarray] = LRUCache(
            4096, frame_cache_bytes, lambda a: int(a.nbytes))
        self.photos: LRUCache[str, np.ndarray] = LRUCache(2)
        self._tuned: LRUCache[str, Generator] = LRUCache(2)  # fine-tuned / domain-moved generators
        self._delta_keys: OrderedDict[int, tuple[Any, str]] = OrderedDict()
        self._digests: tuple[tuple[int, int, int], dict[str, str]] | None = None
        self._lock = threading.RLock()

    # --- pieces --------------------------------------------------------------------------

    def text_embedding(self, text: str) -> np.ndarray:
        """CLIP's template-averaged unit embedding of `text` (memory LRU over the model's disk cache)."""
        hit = self.texts.get(text)
        if hit is not None:
            return hit
        if self.models.clip is None:
            raise ModelFileError("global directions need CLIP: download it with `models download clip-vit-b32`")
        emb = np.asarray(self.models.clip.text_embedding(text), np.float32)
        self.texts.put(text, emb)
        return emb

    def text_direction(self, target: str, neutral: str) -> np.ndarray:
        """dt: the unit vector from `neutral` to `target` in CLIP space."""
        d = self.text_embedding(target).astype(np.float64) - self.text_embedding(neutral)
        norm = float(np.linalg.norm(d))
        if norm < 1e-6:
            raise UserError(f"Target and neutral text mean the same to CLIP ({target!r} vs {neutral!r}).")
        return (d / norm).astype(np.float32)

    def direction(self, target: str, neutral: str, beta: float, keep: Sequence[str] = ()) -> gd.StyleDirection:
        """ds for a global-direction layer (cached by text, neutral, beta and kept attributes)."""
        key = (target, neutral, float(beta), tuple(keep))
        hit = self.directions.get(key)
        if hit is not None:
            return hit
        m = self.models
        if m.clip is None:
            raise ModelFileError("global directions need CLIP: download it with `models download clip-vit-b32`")
        if m.fs3 is None or m.stats is None:
            raise ModelFileError("global directions need this generator's fs3 matrix and style statistics")
        if keep:
            free = self.direction(target, neutral, beta)
            d = dataclasses.replace(free, ds=keep_mod.orthogonalize(free.ds, self.kept_directions(keep, neutral),
                                                                    m.stats.std))
        else:
            conv = gd.conv_channel_index(self.G)
            d = gd.style_direction(m.fs3, self.text_direction(target, neutral), m.stats.std, conv, beta)
        self.directions.put(key, d)
        return d

    def kept_directions(self, keep: Sequence[str], neutral: str) -> list[np.ndarray]:
        """Each kept attribute's full style direction (every channel, β = 0), for `methods.keep`."""
        m = self.models
        if m.clip is None or m.fs3 is None or m.stats is None:
            raise ModelFileError("keeping attributes needs CLIP, this generator's fs3 matrix and style statistics")
        conv = gd.conv_channel_index(self.G)
        return [gd.style_direction(m.fs3, self.text_direction(prompt, neutral), m.stats.std, conv, 0.0).ds
                for prompt in keep_mod.kept_prompts(keep, keep_mod.shorthands())]

    def slider_direction(self, p: SliderParams) -> np.ndarray:
        """A slider that keeps attributes, as a style-space ds: its exact S image made
        orthogonal to the kept ones (a slider without keep moves W+ rows instead)."""
        from styleclip_desktop.methods.sefa import style_delta

        key = ("slider", array_key(p.direction), p.rows, p.keep)
        hit = self.slider_cache.get(key)
        if hit is not None:
            return hit
        self._check_slider(p)
        ds = style_delta(self.G, p.direction, p.rows)
        kept = self.kept_directions(p.keep, "a face")
        assert self.models.stats is not None  # kept_directions checked it
        out = keep_mod.orthogonalize(ds, kept, self.models.stats.std)
        self.slider_cache.put(key, out)
        return out

    def can_resolve(self) -> bool:
        """Whether these models can compute a global direction (CLIP, fs3 and statistics)."""
        m = self.models
        return m.clip is not None and m.fs3 is not None and m.stats is not None

    def direction_digests(self) -> dict[str, str]:
        """The loaded models' digests that a stored ds is checked against (computed once
        per set of loaded models: hashing a 1024 px fs3 takes a few tens of ms)."""
        m = self.models
        loaded = (id(m.fs3), id(m.stats), id(m.clip))
        with self._lock:
            if self._digests is None or self._digests[0] != loaded:
                self._digests = (loaded, stored_directions.model_digests(m))
            return self._digests[1]

    def layer_direction(self, p: GlobalDirectionParams) -> np.ndarray:
        """A global-direction layer's ds: the stored one while it fits these models and the
        layer's inputs, else computed (which needs CLIP and fs3)."""
        if p.ds is not None:  # hashing the models is only worth it when there is a ds to check
            digests, size = self.direction_digests(), stored_directions.style_size(self.models)
            if stored_directions.check(p, digests, size).usable:
                return p.ds.copy()  # the document's arrays are read-only, which torch warns about
        return self.direction(p.target, p.neutral, p.beta, p.keep).ds

    def _fine_tune_key(self, doc: DocLike) -> str:
        """Content hash of the document's generator delta ("" without one), hashed once per delta object."""
        delta = doc.generator_delta
        if not delta:
            return ""
        with self._lock:
            known = self._delta_keys.get(id(delta))
            if known is not None and known[0] is delta:
                return known[1]
            key = delta_key(delta)
            self._delta_keys[id(delta)] = (delta, key)  # the reference keeps id(delta) from being reused
            while len(self._delta_keys) > 4:
                self._delta_keys.popitem(last=False)
            return key

    def domain_layers(self, doc: DocLike, alphas: Mapping[str, float] | None = None) -> list[tuple[Any, float]]:
        """The visible domain layers with a nonzero alpha, as (params, alpha), in stack order."""
        out = []
        for layer in doc.layers:
            if layer.visible and isinstance(layer.params, DomainParams):
                alpha = _alpha(layer, alphas)
                if alpha != 0.0:
                    out.append((layer.params, alpha))
        return out

    def generator_key(self, doc: DocLike, alphas: Mapping[str, float] | None = None, domains: bool = True) -> str:
        """What the weights of `generator_for` are made of ("" for the loaded generator as it is):
        the document's fine-tune, then each domain layer's delta at its alpha."""
        key = self._fine_tune_key(doc)
        if domains:
            parts = [f"{p.delta_key}*{a!r}" for p, a in self.domain_layers(doc, alphas)]
            if parts:
                key = "+".join([key, *parts])
        return key

    def generator_for(self, doc: DocLike, alphas: Mapping[str, float] | None = None,
                      domains: bool = True) -> Generator:
        """The generator the document renders with: fine-tuned by its weight delta
        (high-fidelity inversion) if any, then moved by its domain layers (base + alpha x
        delta each). Built once per combination and cached."""
        key = self.generator_key(doc, alphas, domains)
        if not key:
            return self.G
        with self._lock:
            hit = self._tuned.get(key)
            if hit is not None:
                return hit
            G = self.G
            if doc.generator_delta:
                from styleclip_desktop.methods.inversion import apply_weight_delta

                try:
                    G = apply_weight_delta(G, doc.generator_delta)  # type: ignore[assignment]
                except (KeyError, RuntimeError) as exc:
                    raise UserError("the project's fine-tuned generator does not fit this generator") from exc
            if domains:
                from styleclip_desktop.methods.nada_layers import apply_delta

                for p, alpha in self.domain_layers(doc, alphas):
                    G = apply_delta(G, p.delta, alpha)
            assert isinstance(G, Generator)
            G.eval().requires_grad_(False)
            self._tuned.put(key, G)
            return G

    def wplus(self, doc: DocLike, alphas: Mapping[str, float] | None = None) -> torch.Tensor:
        """Base W+ plus the visible W-space layers, in stack order: (1, L, w_dim)."""
        ws = torch.from_numpy(np.array(doc.latent, np.float32)).to(self.device)[None]
        if ws.shape[1:] != (self.G.num_ws, self.G.config.w_dim):
            raise UserError(f"the project's latent has shape {tuple(ws.shape[1:])}, this generator needs "
                            f"({self.G.num_ws}, {self.G.config.w_dim})")
        for layer in doc.layers:
            alpha = _alpha(layer, alphas)
            if not layer.visible or alpha == 0.0:
                continue
            p = layer.params
            if isinstance(p, OptimizationParams):
                if p.delta is not None:
                    ws = ws + alpha * torch.from_numpy(np.array(p.delta, np.float32)).to(self.device)
            elif isinstance(p, MapperParams):
                if self.models.mapper_loader is None:
                    from styleclip_desktop.render.mapper_install import not_installed

                    raise not_installed(p.checkpoint)
                mapped = self.models.mapper_loader(p.checkpoint)(ws, p.coarse, p.medium, p.fine)
                ws = ws + alpha * (mapped - ws)
            elif isinstance(p, SliderParams) and not p.keep:
                ws = ws + alpha * self._slider_delta(p, ws)
        return ws

    def _check_slider(self, p: SliderParams) -> None:
        if p.direction.shape[0] != self.G.config.w_dim or max(p.rows) >= self.G.num_ws:
            raise UserError(f"the slider {p.default_name()!r} was made for another generator "
                            f"(W+ of {max(p.rows) + 1}+ rows of {p.direction.shape[0]})")

    def _slider_delta(self, p: SliderParams, ws: torch.Tensor) -> torch.Tensor:
        """A closed-form slider's unit W+ offset: its direction on its rows, zero elsewhere."""
        self._check_slider(p)
        delta = torch.zeros_like(ws)
        delta[:, list(p.rows)] = torch.from_numpy(np.array(p.direction, np.float32)).to(ws.device)
        return delta

    def styles_for(self, doc: DocLike, alphas: Mapping[str, float] | None = None) -> torch.Tensor:
        """Flat S (1, S) with every visible layer applied."""
        G = self.generator_for(doc, alphas)
        ws = self.wplus(doc, alphas)
        key = array_key(ws) + self.generator_key(doc, alphas)
        s = self.styles.get(key)
        if s is None:
            with torch.no_grad():
                s = pack_styles(G.w_to_s(ws))
            self.styles.put(key, s)
        for layer in doc.layers:
            alpha = _alpha(layer, alphas)
            p = layer.params
            if layer.visible and alpha != 0.0 and isinstance(p, GlobalDirectionParams):
                s = gd.apply_direction(s, self.layer_direction(p), alpha)
            elif layer.visible and alpha != 0.0 and isinstance(p, SliderParams) and p.keep:
                s = gd.apply_direction(s, self.slider_direction(p), alpha)
        return s

    # --- masks --------------------------------------------------------------------------

    def masked_layers(self, doc: DocLike, alphas: Mapping[str, float] | None = None) -> list[Any]:
        """The visible layers whose enabled mask confines them, in stack order (a mask
        that reveals everything changes nothing, so its layer renders as usual; a domain
        layer moves the whole generator, so it is never masked)."""
        return [layer for layer in doc.layers
                if layer.visible and _alpha(layer, alphas) != 0.0 and getattr(layer, "mask", None) is not None
                and layer.mask.active() and not isinstance(layer.params, DomainParams)]

    def torch_only_notice(self, doc: DocLike) -> str | None:
        """What to tell a user whose masked or domain layers bypass the ONNX graphs, if they do."""
        if self.backend.kind != "onnx":
            return None
        if self.masked_layers(doc):
            return MASKED_ON_TORCH
        return DOMAIN_ON_TORCH if self.domain_layers(doc) else None

    def plan(self, doc: DocLike, alphas: Mapping[str, float] | None = None) -> RenderPlan:
        """What to synthesize for one alpha setting: one S, or (with masked layers) the
        style branches and masks of a masked synthesis."""
        masked = self.masked_layers(doc, alphas)
        hidden = [layer for layer in masked if layer.mask.extent == "none"]  # masked out entirely
        masked = [layer for layer in masked if layer.mask.extent != "none"]
        base = dict(alphas or {})
        base.update({layer.id: 0.0 for layer in hidden})
        if not masked:
            s = self.styles_for(doc, base if hidden else alphas)
            return RenderPlan((s,), (), 0, array_key(s), alphas)
        branches = []
        for k in range(len(masked) + 1):
            off = {layer.id: 0.0 for layer in masked[k:]}
            branches.append(self.styles_for(doc, {**base, **off}))
        masks = tuple(layer.mask for layer in masked)
        start = max(m.start_res for m in masks)
        h = hashlib.blake2b(digest_size=16)
        for b in branches:
            h.update(array_key(b).encode())
        for m in masks:
            h.update(m.key.encode())
        h.update(str(start).encode())
        return RenderPlan(tuple(branches), masks, start, "masked-" + h.hexdigest(), alphas)

    def frame_key(self, doc: DocLike, alphas: Mapping[str, float] | None, res: int) -> tuple[str, int, str]:
        """The frame cache's key for this document at these alphas and this size."""
        return (self.plan(doc, alphas).key, res, self.generator_key(doc, alphas))

    def synthesize_masked(self, doc: DocLike, plans: Sequence[RenderPlan], res: int) -> np.ndarray:
        """Masked plans that share their masks, as one batch (B, H, W, 3) uint8. Always
        PyTorch: the exported ONNX graphs take no masks."""
        first = plans[0]
        G = self.generator_for(doc, first.alphas)
        start = min(first.start_res, G.config.resolution)  # a start beyond the output blends the pictures
        with torch.no_grad():
            branches = [unpack_styles(torch.cat([p.branches[k] for p in plans]).to(self.device), G.style_dims)
                        for k in range(len(first.branches))]
            masks = [torch.from_numpy(np.array(m.coverage(), np.float32))[None, None].to(self.device)
                     for m in first.masks]
            return to_uint8(G.synthesize_masked(branches, masks, start, out_res=res))

    def synthesize(self, doc: DocLike, s_flat: torch.Tensor, out_res: int | None = None,
                   alphas: Mapping[str, float] | None = None) -> np.ndarray:
        """(B, S) -> (B, H, W, 3) uint8, on the backend (torch for a fine-tuned or
        domain-moved generator: the exported graphs hold the loaded weights)."""
        G = self.generator_for(doc, alphas)
        res = out_res or G.config.resolution
        if G is self.G:
            return self.backend.synthesize(s_flat, res)
        # Exported graphs bake the checkpoint's weights in; a per-project fine-tune runs on torch.
        with torch.no_grad():
            return to_uint8(G.synthesize(unpack_styles(s_flat.to(self.device), G.style_dims), out_res=res))

    def faces(self, doc: DocLike, alphas_list: Sequence[Mapping[str, float] | None],
              out_res: int | None = None) -> list[np.ndarray]:
        """Aligned faces for several alpha settings: frame-cache hits are reused, the misses
        synthesized together in one batch. Cached frames are read-only."""
        res = out_res or self.G.config.resolution
        plans = [self.plan(doc, a) for a in alphas_list]
        keys = [(p.key, res, self.generator_key(doc, a)) for p, a in zip(plans, alphas_list, strict=True)]
        out: list[np.ndarray | None] = [self.frames.get(k) for k in keys]
        todo: dict[tuple[str, int, str], int] = {}
        for i, (k, f) in enumerate(zip(keys, out, strict=True)):
            if f is None and k not in todo:
                todo[k] = i
        # Plain frames go to the backend in one batch; masked ones in batches that share masks.
        groups: dict[tuple[str, ...], list[tuple[str, int, str]]] = {}
        for k, i in todo.items():  # frames that share their generator (and masks) render together
            groups.setdefault((k[2], *(m.key for m in plans[i].masks)), []).append(k)
        for group_key, group in groups.items():
            chosen = [plans[todo[k]] for k in group]
            if len(group_key) > 1:
                images = self.synthesize_masked(doc, chosen, res)
            else:
                images = self.synthesize(doc, torch.cat([p.branches[0] for p in chosen]), res, chosen[0].alphas)
            for k, img in zip(group, images, strict=True):
                img = np.ascontiguousarray(img)
                img.setflags(write=False)
                self.frames.put(k, img)
                for j, kj in enumerate(keys):
                    if kj == k:
                        out[j] = img
        return [f for f in out if f is not None]

    def photo(self, doc: DocLike) -> np.ndarray | None:
        src = doc.source
        if src is None or src.data is None:
            return None
        hit = self.photos.get(src.sha256)
        if hit is None:
            from styleclip_desktop.faces.imaging import load_image

            hit = load_image(bytes(src.data)).pixels
            self.photos.put(src.sha256, hit)
        return hit

    def composite(self, doc: DocLike, face: np.ndarray) -> np.ndarray:
        """Paste an aligned face back into the document's photo (the face itself if there is none)."""
        photo = self.photo(doc)
        if photo is None or doc.alignment is None or self.crop_only(doc):
            return face
        from styleclip_desktop.faces.pasteback import paste_back

        return paste_back(photo, face, doc_alignment_to_faces(doc.alignment))

    def crop_only(self, doc: DocLike) -> bool:
        """Whether a visible domain layer keeps the face from being pasted back (a domain
        changes the whole crop's look, so it is not pasted back unless its layer says so)."""
        return any(not p.paste_back for p, _ in self.domain_layers(doc))

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {"text": self.texts.stats(), "ds": self.directions.stats(), "styles": self.styles.stats(),
                "frames": self.frames.stats()}

    # --- front door ------------------------------------------------------------------------

    def render(self, doc: DocLike, alphas: Mapping[str, float] | None = None, out_res: int | None = None,
               paste_back: bool = False) -> np.ndarray:
        face = self.faces(doc, [alphas], out_res)[0]
        return self.composite(doc, face) if paste_back else np.array(face)
