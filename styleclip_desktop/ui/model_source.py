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
DEMO_GENERATOR = "synthetic-stylegan2-ada.pkl"
DEMO_CLIP = "synthetic-clip-vit.safetensors"
DEMO_FS3 = "synthetic-fs3.npy"
DEMO_E4E = "synthetic-e4e.pt"


def demo_dir() -> Path:
    return paths.data_dir() / "demo-models"


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
        return cls(folder, folder / DEMO_GENERATOR, str(folder / DEMO_CLIP), folder / DEMO_FS3, folder / DEMO_E4E,
                   device, demo=True)

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
    return all((folder / name).is_file() for name in (DEMO_GENERATOR, DEMO_CLIP, DEMO_FS3, DEMO_E4E))


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


def create_demo_models(folder: Path, resolution: int = 256, seed: int = 0,
                       progress: ProgressCallback | None = None) -> ModelSource:
    """Write the synthetic demo set: a tiny random generator, a tiny CLIP, an e4e encoder
    and a relevance matrix, all random. Runs on a background thread (imports torch)."""
    import numpy as np

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.e4e import write_synthetic_e4e
    from styleclip_desktop.render import session
    from styleclip_desktop.weights.synthetic import synthesize_all

    report = progress or (lambda done, total, message: None)
    folder.mkdir(parents=True, exist_ok=True)
    report(0, 4, "writing the synthetic generator and CLIP")
    written = synthesize_all(folder, resolution=resolution, seed=seed)
    for kind, path in written.items():
        if kind not in ("stylegan2-ada-pkl", "clip"):
            path.unlink(missing_ok=True)  # the demo needs one generator format
    source = ModelSource.demo_in(folder)
    report(1, 4, "writing the synthetic photo encoder")
    G = session.load_generator(source.model_paths())
    write_synthetic_e4e(folder / DEMO_E4E, num_ws=G.num_ws, seed=seed)
    report(2, 4, "style statistics")
    stats = gd.compute_style_stats(G, samples=4000)
    stats.save(session.stats_path(G))
    report(3, 4, "relevance matrix")
    # A random relevance matrix: the demo CLIP and generator are random too, so a
    # precomputed one would mean no more, and this takes no time.
    rng = np.random.default_rng(seed)
    fs3 = rng.standard_normal((len(gd.conv_channel_index(G)), 512)).astype(np.float32)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    np.save(folder / DEMO_FS3, fs3)
    report(4, 4, "done")
    return source
