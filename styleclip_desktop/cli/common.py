"""What the CLI commands share: device choice, model resolution, progress, output files."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from styleclip_desktop import paths
from styleclip_desktop.cli import progress

# Commands check their outputs and write them atomically exactly as exports do.
from styleclip_desktop.export.source import check_target as check_writable  # noqa: F401
from styleclip_desktop.export.source import staged_file as atomic_output  # noqa: F401

if TYPE_CHECKING:
    import torch

    from styleclip_desktop.methods.global_directions import StyleStats
    from styleclip_desktop.nets.clip import ClipModel
    from styleclip_desktop.nets.stylegan2 import Generator
    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.render.session import ModelPaths


def note(msg: str) -> None:
    progress.note(msg)


def pick_device(args: argparse.Namespace) -> torch.device:
    import torch

    want = getattr(args, "device", "auto") or "auto"
    if want == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if want == "cuda":
        note("notice: CUDA was requested but no usable NVIDIA GPU was found; running on the CPU")
    return torch.device("cpu")


def model_paths(args: argparse.Namespace) -> ModelPaths:
    from styleclip_desktop.render.session import ModelPaths

    return ModelPaths.from_env(args.models_dir, args.generator, args.clip, args.fs3)


def models_dir(args: argparse.Namespace) -> Path:
    return paths.models_dir(getattr(args, "models_dir", None))


def load_generator(args: argparse.Namespace, device: torch.device) -> Generator:
    from styleclip_desktop.render import session

    with progress.stage("loading the generator"):
        return session.load_generator(model_paths(args), device)


def load_clip(args: argparse.Namespace, device: torch.device) -> ClipModel:
    from styleclip_desktop.render import session

    with progress.stage("loading CLIP"):
        return session.load_clip(model_paths(args), device)  # type: ignore[no-any-return]


def fs3_path(args: argparse.Namespace, G: Generator) -> Path:
    from styleclip_desktop.render import session

    return session.fs3_path(model_paths(args), G)


def stats_path(G: Generator, args: argparse.Namespace | None = None) -> Path:
    from styleclip_desktop.render import session

    return session.stats_path(G, models_dir(args) if args is not None else None)


def ensure_stats(G: Generator, args: argparse.Namespace | None = None) -> StyleStats:
    from styleclip_desktop.methods.global_directions import STATS_SAMPLES
    from styleclip_desktop.render import session

    mdir = models_dir(args) if args is not None else None
    if not session.stats_path(G, mdir).is_file():
        note(f"computing style statistics for this generator ({STATS_SAMPLES:,} samples, once)")
    return session.ensure_stats(G, progress_bar("style statistics"), models_dir=mdir)


def build_engine(args: argparse.Namespace, device: torch.device, need_directions: bool = True) -> Engine:
    """The render engine for a command, its models found as `--generator/--clip/--fs3` say.

    `--backend auto` uses ONNX Runtime when this generator's graphs are already exported
    (the desktop app or `--backend onnx` exports them once); a one-shot command does not
    wait minutes for an export it would use for one image."""
    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.render.session import load_model_set

    # The statistics bar only appears if they are computed (once per generator).
    with progress.stage("loading the models"):
        models = load_model_set(model_paths(args), device, need_directions=need_directions,
                                progress=progress_bar("style statistics"))
    backend = getattr(args, "backend", None) or "auto"
    if backend == "onnx":
        note("ONNX Runtime: exporting its graphs first if this generator has none yet (minutes at 1024 px on a CPU)")
    bar = progress_bar("ONNX export")
    # Commands render; none needs the CLIP encoders as graphs, so they are not exported here.
    with progress.stage("preparing the renderer"):
        engine = Engine(models, device, backend=backend, background_export=False, clip_graphs=False,
                        export_progress=lambda done, total, _msg: bar(done, total))
    for message in engine.notices:
        note(f"notice: {message}")
    return engine


def progress_bar(desc: str, unit: str = "it") -> progress.Progress:
    """The progress callback of one stage: a bar on a terminal, plain lines otherwise (see cli/progress.py)."""
    return progress.bar(desc, unit)


@contextlib.contextmanager
def ctrl_c_cancels(what: str = "this step") -> Iterator[threading.Event]:
    """While inside, the first Ctrl+C sets the event (the job stops after `what` and keeps its
    work); a second one interrupts at once."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()
        note(f"stopping after {what} (Ctrl+C again to abort at once)")
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)
