"""`styleclip-desktop models ...`: see, fetch, import and check the model files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from styleclip_desktop.cli import progress
from styleclip_desktop.errors import UserError
from styleclip_desktop.paths import demo_models_dir, models_dir


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="list, download, import and verify model files",
                              description="Manage the model files the editor needs.")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    p.set_defaults(func=_list)

    ls = sub.add_parser("list", help="what is present, missing or damaged, and what each model enables")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--all", action="store_true", help="show each missing latent mapper too")
    ls.set_defaults(func=_list)

    dl = sub.add_parser("download", help="download models from their official sources")
    dl.add_argument("ids", nargs="*", metavar="ID", help="model ids (see `models list`)")
    dl.add_argument("--all-required", action="store_true", help="every required model not yet present")
    dl.set_defaults(func=_download)

    im = sub.add_parser("import", help="bring in a model file you already have (recognised by content)")
    im.add_argument("path", metavar="PATH")
    im.add_argument("--link", action="store_true",
                    help="hard-link (or symlink) instead of copying, to save disk space")
    im.add_argument("--as", dest="as_id", metavar="ID", help="which model it is, when the content can't tell")
    im.add_argument("--force", action="store_true", help="replace a different file already in place")
    im.set_defaults(func=_import)

    ve = sub.add_parser("verify", help="re-hash present files; exit 1 if any is damaged")
    ve.add_argument("ids", nargs="*", metavar="ID")
    ve.set_defaults(func=_verify)

    pa = sub.add_parser("path", help="print the models directory")
    pa.set_defaults(func=_path)

    sy = sub.add_parser("synthesize", help="write a models directory of tiny random-weight models, to tour offline",
                        description="Write a complete models directory of synthetic files (random weights, "
                                    "official formats): use it with --models-dir DIR. Without --out it is the "
                                    "folder the editor's synthetic demo models use.")
    sy.add_argument("--out", metavar="DIR", help=f"where to write it (default: {demo_models_dir()})")
    sy.add_argument("--resolution", type=int, default=None, help="generator resolution in pixels (default 64)")
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(func=_synthesize)


def _dir(args: argparse.Namespace) -> Path:
    return models_dir(args.models_dir)


def _bytes_bar(desc: str) -> progress.Progress:
    """Bytes downloaded or hashed: a bar on a terminal, plain lines otherwise (see cli/progress.py)."""
    return progress.bar(desc, unit="B", unit_scale=True)


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n} B"


def _feature_list(names: tuple[str, ...]) -> str:
    plain = [n for n in names if not n.startswith("mapper:")]
    if len(plain) < len(names):
        mappers = [n for n in names if n.startswith("mapper:")]
        plain += mappers if len(mappers) == 1 else ["mapper:*"]
    return ", ".join(plain) or "-"


def _overrides(args: argparse.Namespace) -> dict[str, str | None]:
    clip = args.clip if args.clip and args.clip != "openai" else None
    return {"generator": args.generator, "clip": clip, "directions": args.fs3}


def _list(args: argparse.Namespace) -> int:
    from styleclip_desktop.weights.catalog import MAPPER_GROUP
    from styleclip_desktop.weights.readiness import check_readiness
    from styleclip_desktop.weights.store import SYNTHETIC_NOTE, State, read_synthetic_manifest

    mdir = _dir(args)
    manifest = read_synthetic_manifest(mdir)
    overrides = _overrides(args)
    own_fs3 = (manifest.get("directions") or {}).get("fs3")
    if own_fs3 and not overrides.get("directions") and (mdir / own_fs3).is_file():
        overrides["directions"] = str(mdir / own_fs3)  # computed for the synthetic generator
    r = check_readiness(mdir, overrides=overrides)
    if getattr(args, "json", False):
        data = r.to_dict()
        for model_id, st in r.models.items():
            data["models"][model_id]["synthetic"] = st.synthetic or None
        print(json.dumps(data, indent=2))
        return 0
    print(f"Models directory: {mdir}")
    if manifest:
        print(f"This is a synthetic models directory ({SYNTHETIC_NOTE}); written by "
              "`styleclip-desktop models synthesize`.")
    groups = r.catalog.required_groups()
    hidden = []
    for e in r.catalog:
        st = r.models[e.id]
        if e.group == MAPPER_GROUP and st.state is State.MISSING and not getattr(args, "all", False):
            hidden.append(e.id)
            continue
        enables = _feature_list(r.enables(e.id))
        if st.synthetic:  # never the official title: this is not that file
            print(f"\n{'present':<8} {e.id}  SYNTHETIC: {st.synthetic}")
            print(f"         stands in for: {e.id}; {'required for' if e.required else 'enables'}: {enables}")
            print(f"         {_size(st.size)} · {st.path}")
            continue
        print(f"\n{st.state.value:<8} {e.id}  {e.title}")
        others = [m.id for m in groups.get(e.group, ()) if m.id != e.id] if e.required else []
        alt = f" (any one of: {', '.join([e.id, *others])})" if others else ""
        print(f"         {'required for' if e.required else 'enables'}: {enables}{alt}")
        facts = [_size(st.size if st.size is not None else e.size)]
        facts += [str(st.path)] if st.path else []
        facts += [st.detail] if st.detail else []
        facts += [e.notes] if e.notes and st.state is not State.PRESENT else []
        print(f"         {' · '.join(facts)}")
        print(f"         license: {e.license} <{e.license_url}>")
    if hidden:
        print(f"\nmissing  {len(hidden)} latent mappers ({', '.join(h.removeprefix('mapper-') for h in hidden)});"
              " `models list --all` shows each, `models download mapper-NAME` fetches one")
    print("\nFeatures:")
    mappers = [f for n, f in r.features.items() if n.startswith("mapper:")]
    for name, f in r.features.items():
        if name.startswith("mapper:"):
            continue
        needs = [" or ".join(ids) for ref, ids in f.alternatives.items()
                 if any(i in f.missing for i in ids) or ref in f.missing]
        print(f"  {name:<11} {'ready' if f.ready else 'not ready: needs ' + '; '.join(needs)}")
        for note in f.notes:
            print(f"              note: {note}")
    if mappers:
        ready = [f.name.removeprefix("mapper:") for f in mappers if f.ready]
        print(f"  {'mapper:*':<11} {len(ready)} of {len(mappers)} mappers ready"
              + (f" ({', '.join(ready)})" if ready else ""))
    if manifest:
        print("\nThe synthetic directory has no face detector: photos are opened with OpenCV's bundled one. "
              "For real models, use another models directory.")
    elif r.missing_required():
        print("\nGet the required models with `styleclip-desktop models download --all-required`, "
              "or bring files you already have with `styleclip-desktop models import FILE`.")
    return 0


def _download(args: argparse.Namespace) -> int:
    from styleclip_desktop.weights.catalog import load_catalog
    from styleclip_desktop.weights.install import download_model, required_to_fetch

    mdir = _dir(args)
    catalog = load_catalog()
    if not args.ids and not args.all_required:
        print("styleclip-desktop models download: name the models (see `models list`) "
              "or pass --all-required", file=sys.stderr)
        return 2
    # Each item is a list of models that stand in for one another: the first that downloads wins.
    wanted = [[catalog.get(i)] for i in args.ids]
    if args.all_required:
        named = {e.id for group in wanted for e in group}
        for first in required_to_fetch(catalog, mdir):
            if first.id not in named:
                wanted.append([m for m in catalog.group(first.group) if m.required])
        if not wanted:
            print("every required model is already present", file=sys.stderr)
            return 0
    failed = []
    for group in wanted:
        for n, e in enumerate(group):
            print(f"{e.id}: {e.title}\n  license: {e.license} <{e.license_url}>", file=sys.stderr)
            bar = _bytes_bar(e.id)
            try:
                res = download_model(e, mdir, progress=bar)
            except UserError as exc:
                bar.close()
                print(f"styleclip-desktop: error: {exc}", file=sys.stderr)
                if n + 1 < len(group):
                    print(f"  trying {group[n + 1].id}, which stands in for it", file=sys.stderr)
                    continue
                failed.append(group[0].id if len(group) == 1 else "/".join(m.id for m in group))
                break
            bar.close()
            print(f"{e.id}: {'already present' if res.reused else 'downloaded'}: {res.path}")
            if res.note:
                print(f"  {res.note}", file=sys.stderr)
            break
    if failed:
        raise UserError(f"{len(failed)} of {len(wanted)} downloads failed: {', '.join(failed)}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from styleclip_desktop.weights.catalog import load_catalog
    from styleclip_desktop.weights.importer import import_model

    bar = _bytes_bar("hashing")
    try:
        res = import_model(args.path, _dir(args), load_catalog(), link=args.link, as_id=args.as_id,
                           force=args.force, progress=bar)
    finally:
        bar.close()
    print(f"{res.entry.id}: {res.method} ({res.entry.title}, recognised by {res.identified_by}): {res.path}")
    if res.note:
        print(f"  {res.note}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from styleclip_desktop.weights import store
    from styleclip_desktop.weights.catalog import load_catalog

    mdir = _dir(args)
    catalog = load_catalog()
    entries = [catalog.get(i) for i in args.ids] if args.ids else list(catalog)
    known = store.read_known_hashes(mdir)
    bad = checked = 0
    for e in entries:
        quick = store.quick_status(e, mdir, known)
        if quick.state in (store.State.MISSING, store.State.PARTIAL):
            if args.ids:
                print(f"{e.id}: {quick.state.value}")
            continue
        bar = _bytes_bar(e.id)
        try:
            st, note = store.deep_status(e, mdir, known, progress=bar)
        finally:
            bar.close()
        checked += 1
        if st.state is store.State.CORRUPT:
            bad += 1
            print(f"{e.id}: CORRUPT ({st.detail}): {st.path}")
        else:
            print(f"{e.id}: ok: {st.path}")
        if note:
            print(f"  {note}", file=sys.stderr)
    if checked == 0:
        print("no model files to verify", file=sys.stderr)
    if bad:
        print(f"styleclip-desktop: error: {bad} damaged model file(s); download or import them again",
              file=sys.stderr)
        return 1
    return 0


def _path(args: argparse.Namespace) -> int:
    print(_dir(args))
    return 0


def _synthesize(args: argparse.Namespace) -> int:
    from styleclip_desktop.cli.common import progress_bar
    from styleclip_desktop.render.demo_models import DEFAULT_RESOLUTION, write_demo_models
    from styleclip_desktop.weights.store import SYNTHETIC_NOTE

    resolution = args.resolution or DEFAULT_RESOLUTION
    if resolution < 8 or resolution & (resolution - 1) or resolution > 1024:
        raise UserError("--resolution must be a power of two from 8 to 1024")
    out = Path(args.out).expanduser() if args.out else demo_models_dir()
    bar = progress_bar("synthetic models")
    written = write_demo_models(out, resolution=resolution, seed=args.seed,
                                progress=lambda done, total, _msg: bar(done, total))
    for key, path in written.items():
        print(f"{key}\t{path}")
    print(f"note: {SYNTHETIC_NOTE}", file=sys.stderr)
    print(f"use it with: styleclip-desktop --models-dir {out} ...", file=sys.stderr)
    return 0
