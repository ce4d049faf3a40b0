"""Which model files the editor uses: the user's models directory, explicit paths from the
command line, or the synthetic demo set.

Nothing here imports torch: the choice is made on the UI thread before the window shows,
and the files are loaded later, in the background (`loader`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from styleclip_desktop import paths

if TYPE_CHECKING:
    from styleclip_desktop.render.session import ModelPaths

log = logging.getLogger(__name__)
ProgressCallback = Callable[[int, int, str], None]

DEMO_LABEL = "synthetic demo — random weights, not faces"


def demo_dir() -> Path:
    return paths.demo_models_dir()


@dataclass(frozen=True)
class ModelSource:
    """Where each model comes from; None means "find it in `models_dir`"."""

    models_dir: Path
    generator: Path | None = None
    clip: str | None = None
    fs3: Path | None = None
    e4e: Path | None = None
    device: str = "auto"
    demo: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace | None) -> ModelSource:
        def arg(name: str) -> str | None:
            value = getattr(args, name, None) if args is not None else None
            return str(value) if value else None

        generator, fs3 = arg("generator"), arg("fs3")
        return cls(paths.models_dir(arg("models_dir")), Path(generator) if generator else None, arg("clip"),
                   Path(fs3) if fs3 else None, device=arg("device") or "auto")

    @classmethod
    def demo_in(cls, folder: Path, device: str = "auto") -> ModelSource:
        """The synthetic models directory: an ordinary models directory, found through the
        catalog like any other, so the command line reads it with `--models-dir`."""
        return cls(folder, device=device, demo=True)

    @property
    def explicit(self) -> bool:
        return self.generator is not None

    def with_device(self, device: str) -> ModelSource:
        return replace(self, device=device)

    def model_paths(self) -> ModelPaths:
        from styleclip_desktop.render.session import ModelPaths

        return ModelPaths(self.models_dir, self.generator, self.clip, self.fs3)

    def has_generator(self) -> bool:
        if self.generator is not None:
            return self.generator.is_file()
        return _locate(self.models_dir, "generator") is not None

    def e4e_path(self) -> Path | None:
        if self.e4e is not None:
            return self.e4e if self.e4e.is_file() else None
        return _locate(self.models_dir, "e4e")

    def detector_path(self) -> Path | None:
        return None if self.demo else _locate(self.models_dir, "detector")


def demo_ready(folder: Path) -> bool:
    """A complete synthetic directory: its manifest and every file it lists."""
    from styleclip_desktop.weights.store import read_synthetic_manifest

    manifest = read_synthetic_manifest(folder)
    files = [str(f.get("filename", "")) for f in manifest.get("files", {}).values() if isinstance(f, dict)]
    extra = [str(v) for k, v in (manifest.get("directions") or {}).items() if k in ("fs3", "stats")]
    return bool(files) and all(name and (folder / name).is_file() for name in files + extra)


def _locate(models_dir: Path, group: str) -> Path | None:
    from styleclip_desktop.weights import catalog, store

    try:
        cat = catalog.load_catalog()
    except Exception as exc:  # a broken catalog must not stop the editor from starting
        log.warning("cannot read the model catalog: %s", exc)
        return None
    for entry in cat.resolve(group):
        found = store.locate(entry, models_dir)
        if found is not None:
            return found
    return None


def choose_source(args: argparse.Namespace | None, use_demo: bool) -> ModelSource:
    """Explicit paths first, then the models directory; the demo set when the user chose it
    and no real generator is installed."""
    source = ModelSource.from_args(args)
    if source.explicit or source.has_generator() or not use_demo:
        return source
    folder = demo_dir()
    if demo_ready(folder):
        return ModelSource.demo_in(folder, source.device)
    return source


def create_demo_models(folder: Path, resolution: int | None = None, seed: int = 0,
                       progress: ProgressCallback | None = None,
                       cancelled: Callable[[], bool] | None = None) -> ModelSource:
    """Write the synthetic models directory (the same one `models synthesize` writes).
    Runs on a background thread (imports torch)."""
    from styleclip_desktop.render.demo_models import DEFAULT_RESOLUTION, write_demo_models

    write_demo_models(folder, resolution=resolution or DEFAULT_RESOLUTION, seed=seed, progress=progress,
                      cancelled=cancelled)
    return ModelSource.demo_in(folder)
