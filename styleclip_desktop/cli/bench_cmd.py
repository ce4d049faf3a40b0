"""`styleclip-desktop bench`: run the benchmark suites in bench/ and print their numbers."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from styleclip_desktop.cli import common
from styleclip_desktop.errors import UserError

SUITES = ("core", "methods", "export", "render", "fidelity", "startup", "sliders", "memory", "batch")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure speed and memory at the real model sizes",
                       description="Run benchmarks (random weights at the real architecture sizes) and print JSON.")
    p.add_argument("--json", action="store_true", help="print JSON only (the default output is JSON too, indented)")
    p.add_argument("--suite", action="append", choices=SUITES, help="suite to run (repeatable; default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default 3)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test of the benchmark itself")
    p.add_argument("--full-size", action="store_true",
                   help="fidelity: config-f 1024 px and the published 350 PTI steps (default: a tiny generator)")
    p.set_defaults(func=run)


def _import_suite(name: str) -> Any:
    root = Path(__file__).resolve().parents[2]
    if (root / "bench").is_dir() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        raise UserError(f"benchmark suite '{name}' is not available in this installation ({exc})") from exc


def run(args: argparse.Namespace) -> int:
    device = common.pick_device(args)
    harness = _import_suite("harness")
    report: dict[str, Any] = {"environment": harness.environment(device), "quick": bool(args.quick)}
    for name in args.suite or SUITES:
        suite = _import_suite(name)
        accepts = inspect.signature(suite.run).parameters
        extra: dict[str, Any] = {"full": True} if args.full_size and "full" in accepts else {}
        # Each suite counts its measurements: minutes each at the real sizes on a CPU.
        bar = common.progress_bar(f"{name} on {device}", unit="measurement")
        if "progress" in accepts:
            extra["progress"] = bar
        try:
            report[name] = suite.run(device, repeats=args.repeats, quick=args.quick, **extra)
        finally:
            bar.close()
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0
