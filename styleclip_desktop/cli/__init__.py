"""The `styleclip-desktop` command line.

Unix conventions: results go to the named output file or stdout, messages to stderr,
exit 0 on success, 2 on a usage error, 1 on a runtime error with a one-line message
(the traceback only with --debug). With no subcommand the desktop editor starts.

Each subcommand lives in its own module with a `register(subparsers)` function that
adds its parser and sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from styleclip_desktop import __version__
from styleclip_desktop.errors import Cancelled, UsageError, UserError

# Subcommand modules, in the order their help is listed.
_COMMAND_MODULES = (
    "styleclip_desktop.cli.edit_cmd",
    "styleclip_desktop.cli.generate_cmd",
    "styleclip_desktop.cli.mapper_cmd",
    "styleclip_desktop.cli.domain_cmd",
    "styleclip_desktop.cli.invert_cmd",
    "styleclip_desktop.cli.export_cmd",
    "styleclip_desktop.cli.batch_cmd",
    "styleclip_desktop.cli.directions_cmd",
    "styleclip_desktop.cli.models_cmd",
    "styleclip_desktop.cli.bench_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="styleclip-desktop",
        description="Edit portraits with text: StyleGAN2 + CLIP, locally. "
        "Run without a command to open the desktop editor.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation on tiny built-in models (no GPU, network or weights needed) "
                        "and exit 0 if it works")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    # Global options are accepted after the command too (`edit ... --device cpu`,
    # `mapper train ... --quiet`).
    _add_global_options_below(sub)
    return parser


def _add_global_options_below(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for subparser in sub.choices.values():
        add_global_options(subparser)
        for action in subparser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_global_options_below(action)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("global options")
    g.add_argument("--models-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="where model files live (default: platform data dir, or $STYLECLIP_MODELS_DIR)")
    g.add_argument("--generator", metavar="PATH", default=argparse.SUPPRESS,
                   help="StyleGAN2 checkpoint (.pkl from NVIDIA, .pt from rosinality)")
    g.add_argument("--clip", metavar="PATH", default=argparse.SUPPRESS,
                   help="CLIP ViT-B/32 weights (open_clip .safetensors/.bin), or 'openai'")
    g.add_argument("--fs3", metavar="PATH", default=argparse.SUPPRESS, help="global-direction relevance matrix (fs3.npy)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS,
                   help="where to compute (default: auto)")
    g.add_argument("--backend", choices=("auto", "onnx", "torch"), default=argparse.SUPPRESS,
                   help="render engine: ONNX Runtime or torch (default: auto = ONNX when its graphs are ready)")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks and debug logging")
    g.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars: one line on stderr as each long stage starts")


_GLOBAL_DEFAULTS = {"models_dir": None, "generator": None, "clip": None, "fs3": None, "device": "auto",
                    "backend": "auto", "debug": False, "quiet": False}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in _GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.self_test:
        from styleclip_desktop.selftest import run_self_test

        return run_self_test(debug=args.debug)
    if args.command is None:
        return _start_gui(parser, args)
    from styleclip_desktop.cli import progress

    progress.configure(quiet=bool(args.quiet), label=progress.label_for(args))
    try:
        return int(args.func(args) or 0)
    except Cancelled:
        print("styleclip-desktop: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("styleclip-desktop: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"styleclip-desktop: error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        if args.debug:
            raise
        print(f"styleclip-desktop: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"styleclip-desktop: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1


def describe_os_error(exc: OSError) -> str:
    import errno

    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full{where}; free some space and try again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}"
    if exc.errno == errno.ENOENT:
        return f"no such file or directory{where}"
    return f"{exc.strerror or exc}{where}"


def _start_gui(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        from styleclip_desktop.ui.app import run_app  # type: ignore[import-not-found]
    except ModuleNotFoundError:
        parser.print_help()
        return 0
    return int(run_app(args))
