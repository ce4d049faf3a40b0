"""`styleclip-desktop batch`: one recipe over many photos, on this machine or a Ray cluster."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from styleclip_desktop.batch.recipe import ANIMATION_FORMATS, FACE_MODES, INVERSIONS, STILL_FORMATS

    p = sub.add_parser(
        "batch", help="apply a recipe (a project's layers, or a TOML file) to many photos",
        description="For each photo: find the faces, align and invert each, apply the recipe's layers, paste the "
                    "result back and write a still and/or an animation into OUTDIR. OUTDIR/manifest.jsonl records "
                    "every photo (status, faces, timings, outputs, models; the reason when it failed). Running the "
                    "same command again resumes: photos already done with the same recipe are skipped. Ctrl+C "
                    "stops after the photos under way. Exit status: 0 when every photo is done, 1 when some "
                    "failed, 130 when stopped.")
    p.add_argument("recipe", type=Path, help="a project (.scproj: its layers, masks and keyframes, not its photo) "
                   "or a TOML recipe (.toml)")
    p.add_argument("photos", nargs="+", type=Path, help="photos, or folders of photos")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="where the results go")
    o = p.add_argument_group("outputs (default: the recipe's [output], else a PNG per face)")
    o.add_argument("--still", choices=(*STILL_FORMATS, "none"), help="still format, or none")
    o.add_argument("--animation", choices=(*ANIMATION_FORMATS, "none"),
                   help="also an animation of the edits sweeping in (or the recipe's keyframes)")
    o.add_argument("--name", metavar="TEMPLATE",
                   help="output name without extension; fields {stem} {parent} {hash} {index} {face} "
                        "(default {stem}; with --faces all, _face{face} is added)")
    o.add_argument("--faces", choices=FACE_MODES, help="edit the largest face (default) or every face")
    o.add_argument("--method", choices=INVERSIONS, dest="inversion",
                   help="how each face is inverted: e4e (default, seconds), project or pti (minutes each)")
    o.add_argument("--crop", action="store_true", default=None, help="write the aligned face, not the whole photo")
    o.add_argument("--size", type=int, help="the still's longer side in pixels (default: as rendered)")
    o.add_argument("--animation-size", type=int, help="the animation's longer side (default 512)")
    o.add_argument("--fps", type=float, help="animation frame rate (default 60 for a sweep, else the recipe's)")
    o.add_argument("--seconds", type=float, help="animation length (default: the recipe's timeline)")
    o.add_argument("--quality", type=int, help="JPEG/WebP quality 1-100 (default 95)")
    r = p.add_argument_group("running")
    r.add_argument("--workers", type=int, metavar="N",
                   help="worker processes on this machine (default 1), or actors on the Ray cluster "
                        "(default: one per GPU, else one per --cpus-per-worker cores)")
    r.add_argument("--ray", metavar="auto|ADDRESS",
                   help="run on a Ray cluster: auto joins the one this machine is part of (or starts one here), "
                        "ADDRESS joins that one (needs `pip install 'styleclip-desktop[cluster]'`)")
    r.add_argument("--cpus-per-worker", type=int, metavar="N", help="Ray: CPU cores per worker (default 4)")
    r.add_argument("--ship-files", action="store_true",
                   help="Ray: send photos and results through Ray's object store, for workers that do not see "
                        "this machine's files (the models must still be at the same path on every machine)")
    r.add_argument("--retry-failed", action="store_true", help="redo photos that failed in an earlier run")
    r.add_argument("--e4e", type=Path, metavar="PATH", help="e4e encoder file (default: from the models dir)")
    r.add_argument("--detector", type=Path, metavar="PATH", help="YuNet face detector (default: from the models dir)")
    p.set_defaults(func=run)


def outputs_from(args: argparse.Namespace) -> dict[str, Any]:
    """The output settings the command line gives (None: the recipe's)."""
    return {"name": args.name, "faces": args.faces, "inversion": args.inversion, "crop": args.crop,
            "size": args.size, "animation_size": args.animation_size, "fps": args.fps, "seconds": args.seconds,
            "quality": args.quality}


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from styleclip_desktop.batch.recipe import load_recipe
    from styleclip_desktop.batch.runner import prepare, run_batch

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.cpus_per_worker is not None and args.cpus_per_worker < 1:
        raise UsageError("--cpus-per-worker must be at least 1")
    if args.ray is None and (args.cpus_per_worker is not None or args.ship_files):
        raise UsageError("--cpus-per-worker and --ship-files go with --ray")
    for opt, path in (("--e4e", args.e4e), ("--detector", args.detector)):
        if path is not None and not path.is_file():
            raise UsageError(f"{opt}: file not found: {path}")
    recipe = load_recipe(args.recipe, **outputs_from(args))
    # "none" turns a format off, so these two are not simply left out when unset.
    formats: dict[str, Any] = {k: None if v == "none" else v
                               for k, v in (("still", args.still), ("animation", args.animation)) if v is not None}
    if formats:
        recipe = recipe.with_outputs(dataclasses.replace(recipe.outputs, **formats))
    outdir: Path = args.output
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"-o {outdir} is a file; the batch writes into a folder")
    with common.progress.stage("reading the photos"):
        items = prepare(recipe, args.photos)
    config = worker_config(args, outdir)
    factory = executor_factory(args, config, recipe)
    bar = common.progress_bar("batch", unit="photo")

    def report(record: dict[str, Any]) -> None:
        if record["status"] != "done":
            common.note(f"{Path(str(record['input'])).name}: {record.get('reason')}")

    with common.ctrl_c_cancels("the photos under way") as stopping:
        summary = run_batch(recipe, items, outdir, factory, stop=stopping.is_set, retry_failed=args.retry_failed,
                            progress=bar, on_record=report)
    bar.close()
    print(summary.line(outdir))
    if summary.halted:
        common.note(f"error: {summary.halted}")
        return 1
    if summary.stopped:
        return 130
    return 1 if summary.failed or summary.skipped_failed else 0


def worker_config(args: argparse.Namespace, outdir: Path) -> Any:
    from styleclip_desktop.batch.worker import WorkerConfig

    threads = None
    if args.ray:
        # On a cluster the workers' machines decide: GPUs there are used unless --device cpu
        # (and the Ray executor sets each worker's threads).
        device = "cpu" if args.device == "cpu" else "auto"
    else:
        device = str(common.pick_device(args))
        if (args.workers or 1) > 1:  # local workers share this machine's cores
            threads = max(1, (os.cpu_count() or 1) // args.workers)
    return WorkerConfig(models_dir=str(common.models_dir(args)), generator=_absolute(args.generator),
                        clip=args.clip if args.clip == "openai" else _absolute(args.clip), fs3=_absolute(args.fs3),
                        e4e=_absolute(args.e4e), detector=_absolute(args.detector), device=device,
                        backend=args.backend, threads=threads, outdir=str(outdir.resolve()),
                        return_files=bool(args.ship_files))


def _absolute(value: Any) -> str | None:
    """A path as every worker finds it (workers may start in other folders)."""
    return None if value is None else str(Path(value).resolve())


def executor_factory(args: argparse.Namespace, config: Any, recipe: Any) -> Any:
    from styleclip_desktop.batch.runner import InProcess, LocalPool

    if args.ray:
        def ray_executor() -> Any:
            from styleclip_desktop.cluster.ray_batch import RayExecutor

            with common.progress.stage("starting the Ray workers"):
                return RayExecutor(config, recipe, address=args.ray, workers=args.workers,
                                   cpus_per_worker=args.cpus_per_worker, ship_files=args.ship_files)

        return ray_executor
    if (args.workers or 1) > 1:
        return lambda: LocalPool(config, recipe, args.workers)

    def in_process() -> Any:
        with common.progress.stage("loading the models"):
            return InProcess(config, recipe)

    return in_process
