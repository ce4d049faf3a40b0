"""Finding and loading the models a session needs, for the CLI and the GUI alike.

Explicit paths win; otherwise the catalog says which files in the models directory (or,
for CLIP, the Hugging Face cache) provide each role.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from styleclip_desktop import paths
from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.methods import global_directions as gd
from styleclip_desktop.nets.stylegan2 import Generator
from styleclip_desktop.render.pipeline import MapperFn, ModelSet

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelPaths:
    """Explicit choices (None = find it): what `--generator/--clip/--fs3` give on the CLI."""

    models_dir: Path
    generator: Path | None = None
    clip: str | None = None  # a path, or "openai"
    fs3: Path | None = None

    @classmethod
    def from_env(cls, models_dir: str | os.PathLike[str] | None = None, generator: str | None = None,
                 clip: str | None = None, fs3: str | None = None) -> ModelPaths:
        return cls(paths.models_dir(models_dir), Path(generator) if generator else None, clip,
                   Path(fs3) if fs3 else None)


def locate(models_dir: Path, group_or_id: str) -> Path | None:
    from styleclip_desktop.weights import catalog, store

    cat = catalog.load_catalog()
    for entry in cat.resolve(group_or_id):
        found = store.locate(entry, models_dir)
        if found is not None:
            return found
    return None


def generator_path(mp: ModelPaths) -> Path:
    if mp.generator is not None:
        return mp.generator
    found = locate(mp.models_dir, "generator")
    if found is None:
        raise ModelFileError(
            f"no StyleGAN2 generator in {mp.models_dir}: run `styleclip-desktop models download "
            "stylegan2-ffhq-ada`, import one with `models import PATH`, or pass --generator PATH")
    return found


def clip_source(mp: ModelPaths) -> str:
    if mp.clip:
        return mp.clip
    found = locate(mp.models_dir, "clip-vit-b-32")
    return str(found) if found else "openai"


def generator_key(G: Generator) -> str:
    return str(getattr(G, "source_sha256", "unknown"))[:16]


def directions_dir(models_dir: Path, G: Generator) -> Path:
    """Where a models directory keeps what was computed for one generator of its own
    (fs3 and style statistics; `models synthesize` writes both there)."""
    return models_dir / "directions" / generator_key(G)


def fs3_path(mp: ModelPaths, G: Generator) -> Path:
    if mp.fs3 is not None:
        return mp.fs3
    own = directions_dir(mp.models_dir, G) / "fs3.npy"
    if own.is_file():
        return own
    found = locate(mp.models_dir, "fs3-ffhq")
    if found is None:
        raise ModelFileError(
            "no global-direction matrix (fs3) for this generator: download the official FFHQ one with "
            "`styleclip-desktop models download fs3-ffhq`, compute one with `directions precompute`, "
            "or pass --fs3 PATH")
    return found


def resolve_mapper(models_dir: Path, ref: str) -> Path:
    """A mapper file from a path, or from a catalog id (`afro`, `mapper-afro`) in the models folder."""
    from styleclip_desktop.errors import UserError
    from styleclip_desktop.weights.catalog import MAPPER_GROUP, load_catalog

    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise UserError(f"mapper path is not a file: {path}")
    entries = load_catalog().group(MAPPER_GROUP)
    key = ref.strip().lower()
    match = [e for e in entries if key in (e.id.lower(), (e.mapper_name or "").lower(),
                                           (e.mapper_name or "").lower().replace("_", "-"))]
    if not match:
        if path.suffix or "/" in ref or "\\" in ref:
            raise UserError(f"mapper file not found: {path}")
        known = ", ".join(sorted(e.mapper_name or e.id for e in entries))
        raise UserError(f"no mapper file or catalog mapper named '{ref}' (catalog mappers: {known})")
    entry = match[0]
    for name in entry.filenames:
        if (models_dir / name).is_file():
            return models_dir / name
    raise UserError(f"mapper '{entry.mapper_name or entry.id}' is not in {models_dir}: run "
                    f"`styleclip-desktop models download {entry.id}`, or pass --mapper PATH")


def mapper_loader(models_dir: Path, device: torch.device | str = "cpu") -> Callable[[str], MapperFn]:
    """checkpoint id or path -> a function applying that mapper to W+ (loaded once each)."""
    loaded: dict[str, MapperFn] = {}

    def get(ref: str) -> MapperFn:
        if ref not in loaded:
            # Imported on first use: the mapper code brings CLIP's libraries with it.
            from styleclip_desktop.methods.mapper import mapper_function
            from styleclip_desktop.nets.mapper import load_mapper

            ckpt = load_mapper(resolve_mapper(models_dir, ref), device=device)
            loaded[ref] = mapper_function(ckpt.mapper)
        return loaded[ref]

    return get


def stats_path(G: Generator, models_dir: Path | None = None) -> Path:
    """The models directory's statistics for G when it has them, else the cached ones."""
    if models_dir is not None:
        own = directions_dir(models_dir, G) / "stats.npz"
        if own.is_file():
            return own
    return paths.cache_dir() / "directions" / generator_key(G) / "stats.npz"


def load_generator(mp: ModelPaths, device: torch.device | str = "cpu") -> Generator:
    from styleclip_desktop.weights.formats import load_generator as _load

    return _load(generator_path(mp), device=device, cache_dir=paths.cache_dir())


def load_clip(mp: ModelPaths, device: torch.device | str = "cpu"):  # type: ignore[no-untyped-def]
    from styleclip_desktop.nets.clip import load_clip as _load

    return _load(clip_source(mp), device=device)


def ensure_stats(G: Generator, progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None, models_dir: Path | None = None) -> gd.StyleStats:
    """Style statistics for G: cached per generator, computed once (about a minute at 1024px)."""
    path = stats_path(G, models_dir)
    if path.is_file():
        try:
            return gd.StyleStats.load(path, G)
        except ModelFileError as exc:
            log.warning("recomputing style statistics: %s", exc)
    stats = gd.compute_style_stats(G, progress=progress, cancelled=cancelled)
    stats.save(path)
    return stats


def load_model_set(mp: ModelPaths, device: torch.device | str = "cpu", *, need_directions: bool = True,
                   progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> ModelSet:
    """Generator always; CLIP, fs3 and statistics when global directions are wanted."""
    from styleclip_desktop.weights.synthetic import is_synthetic_generator

    G = load_generator(mp, device)
    models = ModelSet(G=G, identities={"generator": str(getattr(G, "source_sha256", ""))},
                      synthetic=is_synthetic_generator(G), mapper_loader=mapper_loader(mp.models_dir, device))
    if need_directions:
        load_directions(models, mp, device, progress=progress, cancelled=cancelled)
    return models


def load_directions(models: ModelSet, mp: ModelPaths, device: torch.device | str = "cpu", *,
                    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> None:
    """Add fs3, statistics and CLIP to `models`: for callers that learn only once the
    generator is loaded whether they need them (a project whose layers carry their ds)."""
    G = models.G
    models.fs3 = gd.load_fs3(fs3_path(mp, G), G)
    models.stats = ensure_stats(G, progress, cancelled, mp.models_dir)
    models.clip = load_clip(mp, device)
    models.identities["clip"] = str(models.clip.model_hash)
