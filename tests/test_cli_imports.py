"""One-shot commands import only the libraries they use, so they start quickly.

Each command runs in a fresh interpreter that then lists which heavy libraries it holds;
what is checked is which modules were imported, never how long anything took."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "open_clip", "onnxruntime", "onnx", "onnxscript", "torchvision", "timm", "huggingface_hub")

_PROBE = """
import contextlib, io, json, sys
from styleclip_desktop.cli import main
argv = json.loads(sys.argv[1])
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
print(json.dumps({"rc": rc, "modules": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def _imports_after(argv: list[str]) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY)],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return int(report["rc"] or 0), set(report["modules"])


def test_help_imports_no_torch() -> None:
    rc, heavy = _imports_after(["--help"])
    assert rc == 0 and heavy == set()


def test_generate_seed_imports_neither_clip_nor_onnx_runtime(synthetic_models: dict[str, Path],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "face.png"
    rc, heavy = _imports_after(["--models-dir", str(tmp_path / "models"), "--device", "cpu", "--quiet",
                                "--generator", str(synthetic_models["stylegan2-rosinality-pt"]),
                                "generate", "--seed", "1", "-o", str(out)])
    assert rc == 0 and out.is_file()
    assert "torch" in heavy  # it did render
    assert not heavy & {"open_clip", "onnxruntime"}, f"generate --seed imported {sorted(heavy)}"
