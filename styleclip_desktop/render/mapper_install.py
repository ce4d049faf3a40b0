"""Whether a mapper layer's latent mapper is installed, and the error that says it is not.

A mapper layer names its mapper by catalog name ("afro") or by path. When the catalog
knows the name but the models folder lacks the file, rendering stops with
`MapperNotInstalledError`, which carries the catalog id so a front end can offer to
install exactly that model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from styleclip_desktop.errors import ModelFileError


class MapperNotInstalledError(ModelFileError):
    """The latent mapper a layer uses is not in the models folder."""

    def __init__(self, name: str, model_id: str | None = None) -> None:
        self.name, self.model_id = name, model_id
        where = (f"download it in Models > Model Manager\u2026 or with `styleclip-desktop models download {model_id}`"
                 if model_id else "download it in Models > Model Manager\u2026 or give the mapper file's path")
        super().__init__(f"The latent mapper \u201c{name}\u201d is not installed: {where}.")


def catalog_mapper(ref: str) -> Any | None:
    """The catalog entry of a mapper named `ref` ("afro", "mapper-afro"), or None."""
    from styleclip_desktop.weights.catalog import MAPPER_GROUP, load_catalog

    try:
        entries = load_catalog().group(MAPPER_GROUP)
    except Exception:  # an unreadable catalog: the name stays unresolved
        return None
    key = ref.strip().lower()
    for e in entries:
        name = (e.mapper_name or "").lower()
        if key in (e.id.lower(), name, name.replace("_", "-")):
            return e
    return None


def not_installed(ref: str) -> MapperNotInstalledError:
    entry = catalog_mapper(ref)
    if entry is None:
        return MapperNotInstalledError(ref)
    return MapperNotInstalledError((entry.mapper_name or ref).replace("_", " "), entry.id)


def installed_mapper_loader(models_dir: Path, device: Any = "cpu") -> Callable[[str], Any]:
    """`render.session.mapper_loader`, but a catalog mapper missing from `models_dir` is a
    `MapperNotInstalledError` naming the model to install."""
    from styleclip_desktop.render.session import mapper_loader

    load = mapper_loader(models_dir, device)

    def get(ref: str) -> Any:
        entry = catalog_mapper(ref)
        if (entry is not None and not Path(ref).expanduser().is_file()
                and not any((models_dir / name).is_file() for name in entry.filenames)):
            raise not_installed(ref)
        return load(ref)

    return get
