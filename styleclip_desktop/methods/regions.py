"""Automatic face regions: one click gives a mask for the hair, the skin, the eyes, ...

No face-parsing network is needed. Facial features (eyes, brows, nose, lips, the beard
area) are shapes laid out from the five landmarks (`region_geometry`). Hair and background
come from a segmentation of the document's base render: the generator's feature maps at
32 and 64 px are strongly region-specific, so they are clustered (a seeded k-means) and
each cluster is named by where it lies: round the skull above the eyes (hair), along the
crop's border (background) or inside the face (skin). For a document made from a photo
the aligned photo's colours join the features, since they are evidence of their own.

The landmarks come from the face detector run on the aligned photo (or, for a document
without one, on the base render); when no face is found the average face's layout is
used and a note says so. Results are cached per document content, so asking again for
another region is instant.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import torch

from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods.region_geometry import (
    FaceFrame,
    plausible_face,
    refine_mouth,
    soften,
    template_landmarks,
)

REGION_NAMES: tuple[str, ...] = ("hair", "skin", "eyes", "brows", "nose", "lips", "beard", "background",
                                 "outside-face")
REGION_LABELS: dict[str, str] = {
    "hair": "Hair", "skin": "Skin", "eyes": "Eyes", "brows": "Eyebrows", "nose": "Nose", "lips": "Lips",
    "beard": "Beard area", "background": "Background", "outside-face": "Everything but the face",
}

CLUSTERS = 12
FEATURE_RESOLUTIONS = (32, 64)
PCA_COMPONENTS = 8
POSITION_WEIGHT = 0.5  # pixel position as a weaker feature: clusters stay in one piece
DETECT_RES = 128  # the base render is drawn this large (at most) to look for a face in it

TEMPLATE_NOTE = "No face was found, so the regions follow an average face's layout; check them before editing."
APPROXIMATE_NOTE = ("The face points come from the basic offline detector; install the face detector "
                    "in the model manager for closer regions.")
SYNTHETIC_PHOTO_NOTE = "The demo generator's features mean nothing, so hair and background follow the photo's colours."
SYNTHETIC_NOTE = "The demo generator's features mean nothing, so hair and background are rough guesses."


@dataclass(frozen=True)
class RegionSet:
    """Every automatic region of one document, in the aligned-face square."""

    masks: Mapping[str, np.ndarray]  # name -> float32 (MASK_SIZE, MASK_SIZE) coverage in [0, 1]
    landmarks: np.ndarray  # (5, 2) MASK_SIZE pixels, detector order (see faces/detect.py)
    source: str  # "detector" or "template"
    notes: tuple[str, ...]  # one line each, for the user


def region_name(name: str) -> str:
    """The canonical region name for `name` ("Outside_Face" -> "outside-face"), or a UserError."""
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    aliases = {"eyebrows": "brows", "mouth": "lips", "outside": "outside-face", "everything-but-the-face":
               "outside-face"}
    key = aliases.get(key, key)
    if key not in REGION_NAMES:
        raise UserError(f"There is no automatic region {name!r}; choose one of {', '.join(REGION_NAMES)}.")
    return key


def region_mask(renderer: Any, doc: Any, name: str, **mask_settings: Any) -> LayerMask:
    """A layer mask covering region `name` of the document (settings as `LayerMask`'s)."""
    key = region_name(name)
    return LayerMask.from_coverage(document_regions(renderer, doc).masks[key], **mask_settings)


# --- cache ---------------------------------------------------------------------------------

_caches: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()
CACHE_ITEMS = 4


def _cache_for(renderer: Any) -> Any:
    from styleclip_desktop.render.pipeline import LRUCache

    with _caches_lock:
        cache = _caches.get(renderer)
        if cache is None:
            cache = LRUCache(CACHE_ITEMS)
            _caches[renderer] = cache
        return cache


def clear_region_cache(renderer: Any) -> None:
    """Forget the regions computed with this renderer."""
    with _caches_lock:
        _caches.pop(renderer, None)


def default_detector_path() -> Path | None:
    """The installed YuNet face detector, if any (else the offline fallback is used)."""
    from styleclip_desktop.faces.detect import YUNET_FILENAME
    from styleclip_desktop.paths import models_dir

    path = models_dir() / YUNET_FILENAME
    return path if path.is_file() else None


def _content_key(renderer: Any, doc: Any, detector: Path | None) -> tuple[str, ...]:
    from styleclip_desktop.render.pipeline import array_key

    src, al = doc.source, doc.alignment
    photo = src.sha256 if src is not None and src.data is not None else ""
    alignment = "" if al is None else f"{array_key(np.asarray(al.matrix, np.float64))}/{al.crop_size}"
    return (array_key(np.asarray(doc.latent, np.float32)), renderer.generator_key(doc, domains=False), photo, alignment,
            str(detector or ""))


def document_regions(renderer: Any, doc: Any, *, detector_path: Path | None = None) -> RegionSet:
    """Every automatic region of `doc` (a Document or RenderState) for `renderer`'s models.

    `detector_path` is a YuNet file (default: the installed one, else the offline detector)."""
    detector = detector_path if detector_path is not None else default_detector_path()
    cache = _cache_for(renderer)
    key = _content_key(renderer, doc, detector)
    hit = cache.get(key)
    if hit is None:
        hit = compute_regions(renderer, doc, detector)
        cache.put(key, hit)
    return hit  # type: ignore[no-any-return]


# --- computing -------------------------------------------------------------------------------


def compute_regions(renderer: Any, doc: Any, detector: Path | None = None) -> RegionSet:
    """`document_regions` without the cache."""
    photo = aligned_photo(renderer, doc)
    features, render = base_features(renderer, doc, picture=photo is None)
    picture = photo if photo is not None else render
    landmarks, source, notes = find_landmarks(picture, detector)
    frame = FaceFrame(landmarks)
    groups = [_feature_group(f, _grid(photo)) for f in features.values()]
    if photo is not None:
        groups.append(_photo_group(photo, _grid(photo)))
    if getattr(renderer.G, "synthetic", False) or getattr(renderer.models, "synthetic", False):
        notes += (SYNTHETIC_PHOTO_NOTE if photo is not None else SYNTHETIC_NOTE,)
    labels = kmeans(_stack(groups, _grid(photo)), CLUSTERS, seed=0)
    masks = assemble(frame, labels.reshape(_grid(photo), _grid(photo)))
    return RegionSet(MappingProxyType(masks), _frozen(landmarks), source, notes)


def _grid(photo: np.ndarray | None) -> int:
    """The clustering grid: finer where a photo gives real detail to follow."""
    return 128 if photo is not None else 64


def aligned_photo(renderer: Any, doc: Any) -> np.ndarray | None:
    """The document's photo warped into the aligned-face square (MASK_SIZE), or None."""
    if doc.alignment is None:
        return None
    photo = renderer.photo(doc)
    if photo is None:
        return None
    from styleclip_desktop.faces.align import warp_to_crop
    from styleclip_desktop.render.pipeline import doc_alignment_to_faces

    return warp_to_crop(photo, doc_alignment_to_faces(doc.alignment).resized(MASK_SIZE))


def base_features(renderer: Any, doc: Any, picture: bool) -> tuple[dict[int, torch.Tensor], np.ndarray | None]:
    """The base render's feature maps (C, r, r) at 32 and 64 px (the finest below 32 on a
    smaller generator) and, if `picture`, the render itself resized to MASK_SIZE."""
    from styleclip_desktop.nets.stylegan2 import to_uint8

    G = renderer.generator_for(doc, domains=False)
    ws = renderer.wplus(doc, {layer.id: 0.0 for layer in doc.layers})
    resolutions = G.config.resolutions
    wanted = [r for r in FEATURE_RESOLUTIONS if r in resolutions] or [resolutions[-1]]
    out_res = max(r for r in resolutions if r <= max(DETECT_RES, wanted[-1])) if picture else wanted[-1]
    taps: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        img = G.synthesize(G.w_to_s(ws), out_res=out_res, taps=taps)
    features = {r: taps[r][0].detach().float().cpu() for r in wanted}
    if not picture:
        return features, None
    render = to_uint8(img)[0]
    return features, cv2.resize(render, (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_LINEAR)


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.float32 if a.dtype != np.float64 else np.float64, copy=True)
    out.setflags(write=False)
    return out


# --- landmarks -------------------------------------------------------------------------------


def find_landmarks(picture: np.ndarray | None, detector: Path | None) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """(five points in MASK_SIZE px, "detector" or "template", notes) for an aligned picture."""
    from styleclip_desktop.faces.detect import detect_faces

    template = template_landmarks()
    if picture is None:
        return template, "template", (TEMPLATE_NOTE,)
    try:
        faces = detect_faces(picture, detector, photo_name="the picture")
    except UserError:
        faces = []
    face = plausible_face(faces, template)
    if face is None:
        return template, "template", (TEMPLATE_NOTE,)
    if face.approximate:
        return refine_mouth(picture, face.landmarks), "detector", (APPROXIMATE_NOTE,)
    return np.asarray(face.landmarks, np.float64), "detector", ()


# --- clustering ------------------------------------------------------------------------------


def _normalised(x: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Centred, scaled so that the group's total variance is `weight` squared."""
    x = x - x.mean(axis=0)
    total = float(np.sqrt((x * x).sum() / max(len(x), 1)))
    return x * (weight / total) if total > 1e-12 else x * 0.0


def _feature_group(feature: torch.Tensor, grid: int) -> np.ndarray:
    """A (C, r, r) feature map -> (grid*grid, PCA_COMPONENTS) principal components of its
    standardised channels, resampled to the grid."""
    c, r, _ = feature.shape
    x = feature.reshape(c, r * r).T.double().numpy()
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    x = x[:, std > 1e-8] / std[std > 1e-8]
    if x.shape[1] == 0:
        return np.zeros((grid * grid, 1))
    comps = x @ top_components(x.T @ x / len(x), PCA_COMPONENTS)
    maps = comps.reshape(r, r, -1).astype(np.float32)
    maps = cv2.resize(maps, (grid, grid), interpolation=cv2.INTER_LINEAR if grid > r else cv2.INTER_AREA)
    return _normalised(maps.reshape(grid * grid, -1).astype(np.float64))


def top_components(cov: np.ndarray, k: int, iterations: int = 16) -> np.ndarray:
    """The `k` leading eigenvectors (C, k) of a covariance matrix, by seeded subspace
    iteration: a full eigendecomposition of 512 channels costs far more, for no gain here."""
    c = len(cov)
    if c <= 2 * k:
        _, vecs = np.linalg.eigh(cov)
        return vecs[:, ::-1][:, :k]
    q = np.random.default_rng(0).standard_normal((c, 2 * k))
    for _ in range(iterations):
        q, _ = np.linalg.qr(cov @ q)
    _, vecs = np.linalg.eigh(q.T @ cov @ q)
    return q @ vecs[:, ::-1][:, :k]


def _photo_group(photo: np.ndarray, grid: int) -> np.ndarray:
    small = cv2.resize(photo, (grid, grid), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return _normalised(lab.reshape(grid * grid, 3).astype(np.float64))


def _stack(groups: list[np.ndarray], grid: int) -> np.ndarray:
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float64)
    position = _normalised(np.stack([xs.ravel(), ys.ravel()], axis=1), POSITION_WEIGHT)
    return np.concatenate([*groups, position], axis=1)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """Seeded k-means (k-means++ start, Lloyd steps): a label per row, the same every run."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = min(k, n)
    centres = [x[int(rng.integers(n))]]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = float(d2.sum())
        i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(axis=1))
    c = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(iterations):
        dist = (x * x).sum(axis=1)[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None, :]
        new = dist.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                c[j] = x[members].mean(axis=0)
            else:  # an emptied cluster restarts at the point worst served
                c[j] = x[int(dist.min(axis=1).argmax())]
    return labels


# --- assembling the regions ------------------------------------------------------------------


def _on_grid(mask: np.ndarray, grid: int) -> np.ndarray:
    return cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)


def _to_mask_size(mask: np.ndarray) -> np.ndarray:
    """A 0/1 map on the grid -> a hard MASK_SIZE mask with smooth (not blocky) outlines."""
    up = cv2.resize(mask.astype(np.float32), (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_LINEAR)
    return (up >= 0.5).astype(np.float32)


def _touching(mask: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """The connected parts of a hard mask that overlap the evidence."""
    count, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(parts[(evidence > 0) & (mask > 0)])
    return np.isin(parts, keep[keep > 0]).astype(np.float32) if count > 1 else mask * 0.0


def _fill_holes(mask: np.ndarray, open_where: np.ndarray) -> np.ndarray:
    """Fill the gaps a hard mask encloses, except those reaching into `open_where`."""
    count, parts = cv2.connectedComponents((mask <= 0).astype(np.uint8), connectivity=4)
    if count <= 1:
        return mask
    edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    kept_open = np.unique(parts[open_where > 0])
    holes = np.setdiff1d(np.arange(1, count), np.union1d(edge, kept_open))
    return np.maximum(mask, np.isin(parts, holes).astype(np.float32))


def label_clusters(labels: np.ndarray, evidence: Mapping[str, np.ndarray]) -> dict[int, str]:
    """Each cluster's region: the evidence it is most concentrated in (its share of that
    evidence over its share of the picture), "other" where it is in none more than by chance."""
    names = {}
    for j in np.unique(labels):
        members = labels == j
        share = members.mean()
        lifts = {name: float(ev[members].sum() / max(ev.sum(), 1e-9)) / share for name, ev in evidence.items()}
        best = max(lifts, key=lambda name: lifts[name])
        names[int(j)] = best if lifts[best] > 1.0 else "other"
    return names


def assemble(frame: FaceFrame, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every region's coverage from the face frame and the cluster labels (grid x grid)."""
    grid = labels.shape[0]
    eyes, brows, nose, lips = frame.eyes(), frame.brows(), frame.nose(), frame.lips()
    face = frame.face()
    hair_ev, bg_ev = frame.hair_evidence(), frame.background_evidence()
    evidence = {"hair": _on_grid(hair_ev, grid), "background": _on_grid(bg_ev, grid),
                "skin": _on_grid(frame.skin_evidence(), grid)}
    named = label_clusters(labels, evidence)
    lookup = np.array([named[int(j)] for j in range(int(labels.max()) + 1)], dtype=object)
    kinds = lookup[labels]
    hair = _to_mask_size(kinds == "hair") * (1.0 - frame.hair_exclusion())
    hair = _fill_holes(_touching(hair, hair_ev), frame.hair_exclusion())
    background = _to_mask_size(kinds == "background") * (1.0 - frame.face(1.04)) * (1.0 - hair)
    background = _touching(background, bg_ev)
    features = np.maximum.reduce([eyes, brows, lips])
    skin = face * (1.0 - hair) * (1.0 - background) * (1.0 - features)
    soft_eyes = soften(eyes)
    masks = {
        "hair": soften(hair) * (soft_eyes == 0),
        "skin": soften(skin),
        "eyes": soft_eyes,
        "brows": soften(brows),
        "nose": soften(nose),
        "lips": soften(lips),
        "beard": soften(frame.beard() * (1.0 - background)),
        "background": soften(background) * (soft_eyes == 0),
        "outside-face": 1.0 - soften(frame.face(1.08)),
    }
    out = {}
    for name in REGION_NAMES:
        m = np.ascontiguousarray(masks[name], dtype=np.float32)
        m.setflags(write=False)
        out[name] = m
    return out
