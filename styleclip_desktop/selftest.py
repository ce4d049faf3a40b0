"""`styleclip-desktop --self-test`: prove that an installation works, without any real model.

An installed bundle can be broken in ways no unit test of the source tree sees: a missing
Qt platform plugin, a native library the freezer left out, a data file (open_clip's
tokenizer vocabulary, the model catalog) that was not copied. So this exercises the same
pieces the editor uses, end to end: Qt offscreen (and the main window when the GUI is
built), synthetic format-faithful model files written and loaded through the normal
loaders, one global-direction edit rendered through the one render path, and ONNX Runtime
running a tiny graph. It needs no network, no GPU and no downloaded weights, and it
leaves nothing behind: every file goes to a temporary directory.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from styleclip_desktop import __version__

# A 32 px generator keeps the whole test to a few seconds on a slow CPU.
_RESOLUTION = 32
_SEED = 0
_TARGET = "a face with grey hair"
_ALPHA = 8.0
# Low enough that the tiny synthetic CLIP always leaves some channels.
_BETA = 0.01
_STATS_SAMPLES = 200


class SelfTestError(Exception):
    """A check did not hold; the message says which and what was seen."""


class _Clock:
    """Named stage timings, and the stage currently running (for the failure message)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.stage = "start"

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.stage = stage
        t0 = time.perf_counter()
        yield
        self.times[stage] = time.perf_counter() - t0


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Temporarily set environment variables (the caller may be a long-lived test process)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_self_test(debug: bool = False) -> int:
    """Run every check; print one OK line to stdout and return 0, or one FAILED line to stderr and 1."""
    clock = _Clock()
    facts: dict[str, str] = {}
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="styleclip-selftest-") as tmp:
            root = Path(tmp)
            # Style statistics and text embeddings are cached under the cache dir; a self-test
            # must not leave synthetic entries among the user's real ones.
            with _env(STYLECLIP_CACHE_DIR=str(root / "cache"), STYLECLIP_DATA_DIR=str(root / "data"),
                      HF_HUB_OFFLINE="1"):
                _check_qt(root, clock, facts)
                _check_render(root, clock, facts)
                _check_onnxruntime(clock, facts)
    except Exception as exc:  # the whole point is to report any failure as a message
        if debug:
            traceback.print_exc()
        detail = " ".join(str(exc).split()) or type(exc).__name__
        print(f"styleclip-desktop self-test FAILED at {clock.stage}: {type(exc).__name__}: {detail}",
              file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in clock.times.items())
    print(f"styleclip-desktop self-test OK: {__version__}, Python {platform.python_version()}, "
          f"{facts['torch']}, {facts['onnxruntime']}, {facts['qt']}; {facts['render']}; "
          f"{timings}, total {total:.2f}s")
    return 0


def _check_qt(root: Path, clock: _Clock, facts: dict[str, str]) -> None:
    with clock("qt"):
        from PySide6 import QtCore
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if app is None:
            # Offscreen even on a desktop: the self-test must run headless (CI, a build
            # machine, ssh) and must not flash a window at the user.
            with _env(QT_QPA_PLATFORM="offscreen"):
                app = QApplication([sys.argv[0] if sys.argv else "styleclip-desktop"])
        window = _main_window_check(app, root)
        import PySide6

        facts["qt"] = (f"PySide6 {PySide6.__version__} (Qt {QtCore.qVersion()}, {QApplication.platformName()}, "
                       f"{window})")


def _main_window_check(app: Any, root: Path) -> str:
    """Build, show and close the editor's main window (models are not loaded: that is `start`)."""
    if importlib.util.find_spec("styleclip_desktop.ui.main_window") is None:
        return "main window not built"
    from PySide6.QtCore import QSettings

    from styleclip_desktop.ui.main_window import MainWindow
    from styleclip_desktop.ui.model_source import ModelSource

    # Settings in the temporary folder: the user's recent files and layout stay untouched.
    settings = QSettings(str(root / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings, ModelSource(root / "models"))
    window.show()
    app.processEvents()
    if not window.isVisible():
        raise SelfTestError("the main window did not show")
    window.close()
    window.deleteLater()
    app.processEvents()
    return "main window ok"


def _check_render(root: Path, clock: _Clock, facts: dict[str, str]) -> None:
    with clock("import torch"):
        import numpy as np
        import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = device.type
    if device.type == "cuda":
        backend = f"cuda {torch.version.cuda}, {torch.cuda.get_device_name(0)}"
    facts["torch"] = f"torch {torch.__version__} ({backend})"

    with clock("synthesize models"):
        from styleclip_desktop.weights.synthetic import synthesize_all

        files = synthesize_all(root / "models", resolution=_RESOLUTION, seed=_SEED)

    with clock("directions"):
        from styleclip_desktop.methods import global_directions as gd
        from styleclip_desktop.render import session

        fs3_file = root / "models" / "fs3.npy"
        mp = session.ModelPaths(models_dir=root / "models", generator=files["stylegan2-ada-pkl"],
                                clip=str(files["clip"]), fs3=fs3_file)
        G = session.load_generator(mp, device)
        gd.compute_style_stats(G, samples=_STATS_SAMPLES).save(session.stats_path(G))
        # A seeded random relevance matrix instead of `precompute_fs3`: precompute renders and
        # encodes hundreds of images (a minute here) and checks nothing the edit does not.
        rng = np.random.default_rng(_SEED)
        fs3 = rng.standard_normal((len(gd.conv_channel_index(G)), _clip_embed_dim(files["clip"])))
        np.save(fs3_file, (fs3 / np.linalg.norm(fs3, axis=1, keepdims=True)).astype(np.float32))

    with clock("load models"):
        models = session.load_model_set(mp, device)

    with clock("render"):
        from styleclip_desktop.document import Document, GlobalDirectionParams, Layer
        from styleclip_desktop.render.pipeline import Renderer

        renderer = Renderer(models, device)
        ws = G.broadcast_w(G.sample_w(1, _SEED, 0.7, device=device))
        layer = Layer(GlobalDirectionParams(target=_TARGET, beta=_BETA), alpha=_ALPHA)
        doc = Document(ws[0].cpu().numpy(), layers=[layer], synthetic=True)
        plain = renderer.render(doc, alphas={layer.id: 0.0})
        edited = renderer.render(doc)

    size = models.G.config.resolution
    want = (size, size, 3)
    for name, img in (("unedited", plain), ("edited", edited)):
        if img.shape != want or img.dtype != np.uint8:
            raise SelfTestError(f"the {name} render is {img.shape} {img.dtype}, expected {want} uint8")
    changed = int(np.any(plain != edited, axis=-1).sum())
    if changed == 0:
        raise SelfTestError(f"the edit {_TARGET!r} at alpha {_ALPHA} rendered the same image as alpha 0")
    facts["render"] = f"edit {size}x{size} changed {changed} px"


def _clip_embed_dim(clip_file: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(clip_file), "pt") as f:
        return int(f.get_slice("text_projection").get_shape()[1])


def _check_onnxruntime(clock: _Clock, facts: dict[str, str]) -> None:
    """Previews run on ONNX Runtime: its native libraries must load and run a graph."""
    with clock("onnxruntime"):
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
        graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "selftest", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8  # old enough for every ONNX Runtime we support
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"x": np.array([1.0, 2.0], np.float32)})[0]
        if not np.allclose(out, [2.0, 4.0]):
            raise SelfTestError(f"ONNX Runtime computed {out} for 2*[1, 2]")
        providers = [p.removesuffix("ExecutionProvider") for p in ort.get_available_providers()]
        facts["onnxruntime"] = f"onnxruntime {ort.__version__} ({'/'.join(providers)})"
