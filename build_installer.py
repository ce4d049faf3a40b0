#!/usr/bin/env python3
"""Build the StyleCLIP Desktop installer: a one-folder PyInstaller bundle and the platform's package.

    python3 build_installer.py --variant cpu     # runs everywhere, no CUDA inside
    python3 build_installer.py --variant gpu     # NVIDIA GPUs: torch's and ONNX Runtime's CUDA libraries

Everything goes under build/: the build venv (build/installer-venv/<variant>, never the
development .venv), PyInstaller's work and dist folders and the packages
(build/installer/<variant>/), with SHA256SUMS beside them. The build fails unless the
frozen app passes its own `--self-test`. No model weights are ever bundled: the first-run
wizard downloads or imports them.

Why the CPU variant has its own torch
-------------------------------------
PyPI's Linux torch wheels are CUDA builds: libtorch.so links libtorch_cuda.so, which links
libcudart, cuBLAS, cuDNN and the rest as hard ELF dependencies (no lazy loading for the
libraries themselves), so `import torch` fails ("libcudnn.so.9: cannot open shared object
file") as soon as the nvidia-* packages are left out; keeping them costs about 3 GB. So on
Linux the CPU variant installs the CPU build of torch (`--cpu-torch`, default
torch==2.13.0+cpu, found through pip's find-links or an extra index) with the torchvision
release made for that torch. PyPI's torchvision is itself a CUDA build whose compiled ops
(nms, roi_align, GPU JPEG decoding) cannot load beside CPU torch: the spec leaves them out
and a runtime hook (packaging/rthooks/torchvision_without_ops.py) lets torchvision import
without them. The editor only needs torchvision's Python transforms, through open_clip.
When an index with torchvision's own CPU build is given (download.pytorch.org/whl/cpu),
its ops stay in and the hook steps aside. On Windows and macOS PyPI's torch is already a
CPU build and is used as is. ONNX Runtime: `onnxruntime` (CPU) instead of `onnxruntime-gpu`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "packaging"))

import formats  # noqa: E402
from metadata import AppMetadata, read_metadata  # noqa: E402

BUILD = ROOT / "build"
SPEC = ROOT / "packaging" / "styleclip-desktop.spec"
# The CPU build of torch for Linux and the torchvision release paired with it.
DEFAULT_CPU_TORCH = "torch==2.13.0+cpu"
TORCHVISION_FOR = {"2.13": "torchvision==0.28.*", "2.14": "torchvision==0.29.*"}
PYINSTALLER = "pyinstaller>=6.11"  # 6.11: hooks can keep torch's libraries out of the top folder
SELF_TEST_TIMEOUT_S = 1200
# File names that must never appear in the CPU bundle (a leak would mean gigabytes and a
# bundle that depends on a driver it does not need).
CUDA_NAME = re.compile(r"(^|/)(nvidia/|libcudart|libcublas|libcudnn|libcufft|libcurand|libcusolver|libcusparse|"
                       r"libnccl|libnvrtc|libnvjitlink|libnvJitLink|libnvjpeg|libnvshmem|libtorch_cuda|libc10_cuda|"
                       r"libonnxruntime_providers_cuda|libonnxruntime_providers_tensorrt|cudart64|cublas64|cudnn)")


NATIVE_LIB = re.compile(r"\.(so(\.\d+)*|dll|dylib)$")


def log(msg: str) -> None:
    print(f"[build_installer] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


# --- the build venv ----------------------------------------------------------------------


def _req_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1).lower().replace("_", "-") if m else ""


def requirements(meta: AppMetadata, variant: str, cpu_torch: str) -> list[str]:
    """pyproject's dependencies, with the CPU variant's substitutions (see the module docstring)."""
    reqs: list[str] = []
    for req in meta.dependencies:
        name = _req_name(req)
        if variant == "cpu" and name == "onnxruntime-gpu":
            req = re.sub(r"^\s*onnxruntime-gpu", "onnxruntime", req)
        elif variant == "cpu" and sys.platform.startswith("linux") and name in ("torch", "torchvision"):
            continue
        reqs.append(req)
    if variant == "cpu" and sys.platform.startswith("linux"):
        m = re.search(r"==\s*(\d+\.\d+)", cpu_torch)
        # Every torchvision release pins one torch release, so an unknown pairing still
        # resolves, just with pip searching for it.
        reqs += [cpu_torch, TORCHVISION_FOR.get(m.group(1), "torchvision") if m else "torchvision"]
    return [*reqs, PYINSTALLER]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def ensure_venv(venv: Path, reqs: list[str], pip_args: list[str], fresh: bool) -> Path:
    """A venv with exactly these requirements; reused while they (and this Python) stay the same."""
    stamp_data = json.dumps({"reqs": reqs, "pip": pip_args, "python": sys.version}, sort_keys=True)
    stamp = hashlib.sha256(stamp_data.encode()).hexdigest()
    stamp_file = venv / ".styleclip-installer-stamp"
    py = venv_python(venv)
    if not fresh and py.is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        log(f"build venv up to date: {venv}")
        return py
    if venv.exists():
        shutil.rmtree(venv)
    # The interpreter that runs this script (not .venv's): the bundle carries its libpython.
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
    run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(py), "-m", "pip", "install", *pip_args, *reqs])
    stamp_file.write_text(stamp + "\n")
    return py


# --- build, check, package -----------------------------------------------------------------


def ensure_icons(py: Path) -> None:
    sys.path.insert(0, str(ROOT / "packaging"))
    import make_icons

    if not make_icons.up_to_date():
        run([str(py), str(ROOT / "packaging" / "make_icons.py")])


def pyinstaller(py: Path, meta: AppMetadata, variant: str, out: Path) -> Path:
    dist = out / "dist"
    args = ["--variant", variant]
    if sys.platform == "win32":
        args += ["--version-file", str(formats.windows_version_file(meta, out / "version_info.txt"))]
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    run([str(py), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", str(dist),
         "--workpath", str(out / "work"), str(SPEC), "--", *args], cwd=ROOT, env=env)
    return dist


def frozen_executable(meta: AppMetadata, dist: Path) -> Path:
    if sys.platform == "darwin":
        return dist / f"{meta.display_name}.app" / "Contents" / "MacOS" / meta.name
    return dist / meta.name / (meta.name + (".exe" if sys.platform == "win32" else ""))


def check_no_cuda(bundle: Path) -> None:
    leaks = [str(p.relative_to(bundle)) for p in bundle.rglob("*")
             if p.is_file() and NATIVE_LIB.search(p.name) and CUDA_NAME.search(p.relative_to(bundle).as_posix())]
    if leaks:
        raise SystemExit("the CPU bundle contains CUDA libraries:\n  " + "\n  ".join(sorted(leaks)[:40]))
    log("no CUDA library in the CPU bundle")


def self_test(exe: Path) -> str:
    """Run the frozen app's --self-test in a clean environment; exit the build if it fails."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")
           and not k.startswith("STYLECLIP_")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    with tempfile.TemporaryDirectory(prefix="styleclip-selftest-") as home:
        # Models and settings of whoever runs the build stay out of the test.
        env["STYLECLIP_MODELS_DIR"] = str(Path(home) / "models")
        log(f"$ {exe} --self-test")
        try:
            proc = subprocess.run([str(exe), "--self-test"], env=env, capture_output=True, text=True,
                                  timeout=SELF_TEST_TIMEOUT_S, cwd=home)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"the frozen app's self-test did not finish in {SELF_TEST_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            detail = subprocess.run([str(exe), "--debug", "--self-test"], env=env, capture_output=True, text=True,
                                    timeout=SELF_TEST_TIMEOUT_S, cwd=home)
            sys.stderr.write(detail.stderr[-6000:])
            raise SystemExit(f"the frozen app's self-test failed (exit {proc.returncode}): the bundle is broken")
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(line, flush=True)
    return line


def write_sha256sums(files: list[Path], out_dir: Path) -> Path:
    lines = []
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        lines.append(f"{h.hexdigest()}  {f.name}\n")
    sums = out_dir / "SHA256SUMS"
    sums.write_text("".join(lines))
    return sums


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--variant", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: no CUDA inside, runs everywhere; gpu: carries torch's and ONNX Runtime's CUDA "
                        "libraries (default: cpu)")
    parser.add_argument("--cpu-torch", default=DEFAULT_CPU_TORCH,
                        help=f"the CPU torch requirement for the Linux cpu variant (default: {DEFAULT_CPU_TORCH})")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for pip in the build venv, e.g. "
                        "--pip-arg=--extra-index-url=https://download.pytorch.org/whl/cpu (repeatable)")
    parser.add_argument("--fresh-venv", action="store_true", help="rebuild the build venv even if it is up to date")
    parser.add_argument("--venv-only", action="store_true",
                        help="only create or update the build venv (e.g. to cache it in CI)")
    parser.add_argument("--no-package", action="store_true", help="stop after the bundle and its self-test")
    args = parser.parse_args(argv)

    started = time.monotonic()
    meta = read_metadata()
    out = BUILD / "installer" / args.variant
    out.mkdir(parents=True, exist_ok=True)
    log(f"{meta.display_name} {meta.version}, {args.variant} variant -> {out}")

    py = ensure_venv(BUILD / "installer-venv" / args.variant, requirements(meta, args.variant, args.cpu_torch),
                     args.pip_arg, args.fresh_venv)
    if args.venv_only:
        return 0
    ensure_icons(py)
    for old in out.glob(f"{meta.name}-*"):  # last build's packages: never checksum a stale one
        if old.is_file():
            old.unlink()
    dist = pyinstaller(py, meta, args.variant, out)
    bundle = frozen_executable(meta, dist).parent if sys.platform != "darwin" else dist / f"{meta.display_name}.app"
    if args.variant == "cpu":
        check_no_cuda(bundle)
    report = self_test(frozen_executable(meta, dist))

    packages: list[Path] = []
    if not args.no_package:
        packages = formats.package(meta, args.variant, dist, out)
        sums = write_sha256sums(packages, out)
        log(f"checksums: {sums}")

    log(f"self-test: {report}")
    log(f"bundle: {bundle} = {human(tree_size(bundle))}")
    for p in packages:
        log(f"package: {p} = {human(p.stat().st_size)}")
    log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
