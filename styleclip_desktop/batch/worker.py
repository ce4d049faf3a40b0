"""One batch worker: the models loaded once, then photo after photo.

The same `BatchWorker` serves every way a batch runs: in the driving process, in each
process of a local pool, and as a Ray actor on a cluster, so a photo gives the same
images whichever path processed it. `process(item)` never raises for a bad photo: it
returns the photo's manifest record, with the one-line reason when it failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from styleclip_desktop.batch.manifest import DONE, FAILED, BatchItem, output_names
from styleclip_desktop.batch.recipe import Recipe, RecipeLayers
from styleclip_desktop.errors import Cancelled, UserError

# A photo whose shorter side is below this holds no face the generator can be fitted to.
MIN_SIDE = 64


@dataclass(frozen=True)
class WorkerConfig:
    """Where a worker finds its models and puts its files: plain data, sent to each worker."""

    models_dir: str
    generator: str | None = None
    clip: str | None = None
    fs3: str | None = None
    e4e: str | None = None
    detector: str | None = None
    device: str = "cpu"
    backend: str = "auto"
    threads: int | None = None  # torch threads in this worker (None: torch's default)
    outdir: str = "."
    # True: write into a private folder and return the files' bytes for the driver to
    # write (workers on machines that do not share OUTDIR).
    return_files: bool = False

    def model_paths(self) -> Any:
        from styleclip_desktop.render.session import ModelPaths

        return ModelPaths.from_env(self.models_dir, self.generator, self.clip, self.fs3)


class BatchWorker:
    """Models and recipe layers for one worker, loaded when it is made."""

    def __init__(self, config: WorkerConfig, recipe: Recipe) -> None:
        import torch

        from styleclip_desktop.render import stored_directions
        from styleclip_desktop.render.engine import Engine
        from styleclip_desktop.render.session import load_directions, load_model_set, locate

        t0 = time.perf_counter()
        if config.threads:
            torch.set_num_threads(int(config.threads))
        self.config = config
        self.recipe = recipe
        self.device = torch.device(config.device)
        mp = config.model_paths()
        models = load_model_set(mp, self.device, need_directions=False)
        self.layers = RecipeLayers(recipe, models.G, models.identities.get("generator", ""))
        probe = self._probe_document(models.G)
        if stored_directions.pending(probe, models):
            load_directions(models, mp, self.device)
        self.models = models
        self.engine = Engine(models, self.device, backend=config.backend, background_export=False,
                             clip_graphs=False, frame_cache_mb=8)
        e4e = Path(config.e4e) if config.e4e else locate(mp.models_dir, "e4e-ffhq")
        if e4e is None or not e4e.is_file():
            from styleclip_desktop.errors import ModelFileError

            raise ModelFileError("a batch inverts each photo with the e4e encoder: run `styleclip-desktop models "
                                 "download e4e-ffhq` or pass --e4e PATH")
        from styleclip_desktop.nets.e4e import load_e4e

        self.encoder = load_e4e(e4e, device=self.device)
        self.detector = Path(config.detector) if config.detector else locate(mp.models_dir, "yunet")
        self.identities = {k: v for k, v in models.identities.items() if v}
        from styleclip_desktop.weights.formats import sha256_file

        self.identities["e4e"] = sha256_file(e4e)
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.load_s = time.perf_counter() - t0

    def _probe_document(self, G: Any) -> Any:
        import numpy as np

        from styleclip_desktop.document import Document

        return Document(np.zeros((int(G.num_ws), int(G.config.w_dim)), np.float32), layers=self.layers.copies())

    def info(self) -> dict[str, Any]:
        return {"worker": self.where, "pid": os.getpid(), "load_s": self.load_s, "models": self.identities}

    def process(self, item: BatchItem, cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Do one photo; its manifest record (status done or failed, never an exception for a
        bad photo). `Cancelled` passes through: the photo is then not recorded at all."""
        t0 = time.perf_counter()
        record: dict[str, Any] = {"key": item.key, "input": item.path, "sha256": item.sha256,
                                  "recipe": self.recipe.label, "index": item.index, "worker": self.where,
                                  "models": self.identities}
        timings: dict[str, float] = {}
        private = Path(tempfile.mkdtemp(prefix="styleclip-batch-")) if self.config.return_files else None
        try:
            if item.error:
                raise UserError(item.error)
            faces, chosen = self._faces(item, timings, record)
            outdir = private or Path(self.config.outdir)
            record["faces"] = [self._face(item, faces, f, outdir, timings, cancelled) for f in chosen]
            record["status"] = DONE
            if private is not None:
                record["files"] = {p.name: p.read_bytes() for p in sorted(private.iterdir())}
        except Cancelled:
            raise
        except UserError as exc:
            from styleclip_desktop.nets.checkpoint import one_line

            record["status"] = FAILED
            record["reason"] = one_line(exc)
        except OSError as exc:
            import errno

            from styleclip_desktop.cli import describe_os_error

            record["status"] = FAILED
            record["reason"] = describe_os_error(exc)
            if exc.errno == errno.ENOSPC:
                # Not this photo's fault, and every later one would fail the same way.
                record["transient"] = "disk full"
        except MemoryError:
            record["status"] = FAILED
            record["reason"] = "out of memory on this photo"
            record["transient"] = "memory"
        except Exception as exc:  # an unforeseen failure on one photo must not end the batch
            record["status"] = FAILED
            if type(exc).__name__ == "OutOfMemoryError":  # torch's, on the GPU
                _free_gpu_memory()
                record["reason"] = "the GPU ran out of memory on this photo (fewer workers per GPU may help)"
                record["transient"] = "memory"
            else:
                import logging

                logging.getLogger(__name__).exception("batch item %s failed", item.path)
                record["reason"] = f"internal error ({type(exc).__name__}: {exc}); run with --debug for details"
        finally:
            if private is not None:
                shutil.rmtree(private, ignore_errors=True)
        timings["total"] = time.perf_counter() - t0
        record["timings"] = {k: round(v, 4) for k, v in timings.items()}
        return record

    def _faces(self, item: BatchItem, timings: dict[str, float], record: dict[str, Any]) -> tuple[Any, list[int]]:
        from styleclip_desktop.faces.detect import NoFaceError
        from styleclip_desktop.render.photo_import import find_faces

        t = time.perf_counter()
        try:
            faces = find_faces(Path(item.path), self.detector, data=item.data, min_side=MIN_SIDE)
        except NoFaceError:
            raise UserError("no face found") from None
        timings["detect"] = time.perf_counter() - t
        record["faces_found"] = faces.count
        if faces.fallback:
            record.setdefault("warnings", []).append("found by the approximate offline face detector")
        chosen = list(range(faces.count)) if self.recipe.outputs.faces == "all" else [0]
        return faces, chosen

    def _face(self, item: BatchItem, faces: Any, face: int, outdir: Path, timings: dict[str, float],
              cancelled: Callable[[], bool] | None) -> dict[str, Any]:
        from styleclip_desktop.export.animation import AnimationOptions, animate_document
        from styleclip_desktop.export.stills import StillOptions, export_still
        from styleclip_desktop.render.photo_import import import_photo, soft_face_notice

        out = self.recipe.outputs
        t = time.perf_counter()
        doc = import_photo(faces, self.models.G, self.encoder, face=face, method=out.inversion, cancelled=cancelled)
        _add(timings, "invert", time.perf_counter() - t)
        t = time.perf_counter()
        doc = self.layers.apply(doc, self.engine.renderer)
        _add(timings, "recipe", time.perf_counter() - t)
        names = output_names(item, out, face + 1)
        entry: dict[str, Any] = {"face": face + 1, "outputs": names}
        soft = soft_face_notice(doc.alignment)
        if soft:
            entry["warning"] = soft
        synthetic = bool(self.models.synthetic)
        crop = out.crop or self.engine.renderer.crop_only(doc)
        t = time.perf_counter()
        if out.still:
            export_still(self.engine, doc, outdir / names[0], StillOptions(size=out.size, crop=crop, quality=out.quality),
                         models=self.identities, synthetic=synthetic, cancelled=cancelled)
        _add(timings, "still", time.perf_counter() - t)
        if out.animation:
            t = time.perf_counter()
            morph = (not self.layers.has_keyframes) if out.morph is None else out.morph
            options = AnimationOptions(fps=out.fps if out.fps is not None else (None if self.layers.has_keyframes else 60.0),
                                       seconds=out.seconds, size=out.animation_size, crop=crop, morph=morph)
            animate_document(self.engine, doc, outdir / names[-1], options, models=self.identities,
                             synthetic=synthetic, cancelled=cancelled)
            _add(timings, "animation", time.perf_counter() - t)
        return entry

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.shutdown()


def _free_gpu_memory() -> None:
    with contextlib.suppress(Exception):
        import torch

        torch.cuda.empty_cache()


def _add(timings: dict[str, float], key: str, value: float) -> None:
    timings[key] = timings.get(key, 0.0) + value


