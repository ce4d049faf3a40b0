"""Slider benchmark: how long a dragged alpha slider waits for the canvas, through the real widgets.

A real `MainWindow` (offscreen unless QT_QPA_PLATFORM says otherwise) on the render
engine with ONNX Runtime: a seeded face is opened, a global-direction layer is added from
the Layers panel's prompt field, and the engine sweeps that layer's alpha axis ahead at
the preview resolution. Once the sweep is complete, the layer's own `QSlider` is pressed,
moved step by step at a mouse's pace with every move processed through the event loop,
and released. Each move's latency runs from the slider's new value until the canvas has
painted a frame of that position (or of a later one): a blend of the nearest swept
frames, shown at once, or the exact frame. Reported: p50 and p95 over the drag (goal:
p95 at most 50 ms), how many moves were first shown blended, exactly from the cache, or
only once the exact frame rendered, how long the exact frame took to replace the blend
after the last move, and the time from the layer's creation until its sweep was complete.

At full size: a config-f 1024 generator and ViT-B/32 with random weights (they cost what
trained weights cost); the ONNX graphs are cached in the "onnx-bench" folder of the cache
directory (exporting a 1024 graph takes minutes on a CPU). `quick` uses a small generator
and a tiny CLIP, for a smoke test of the benchmark itself.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Stages, peak_rss_mb

GOAL_P95_MS = 50.0
PROMPT = "a face with grey hair"
BETA = 0.1
MOVE_INTERVAL_S = 0.02  # a mouse reports about 50-60 positions a second while dragging
MOVES = 60
STEP = 2  # slider positions per move: 0.1 alpha units for a global direction


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _app() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _pump_until(done: Callable[[], bool], timeout_s: float) -> bool:
    from PySide6.QtCore import QCoreApplication, QEventLoop

    end = time.perf_counter() + timeout_s
    while not done():
        if time.perf_counter() > end:
            return False
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.002)
    return True


def _idle(engine: Any, state: Any, timeout_s: float) -> bool:
    worker = engine.worker
    return _pump_until(lambda: worker.pending() == 0 and worker.current is None and len(state.tasks) == 0,
                       timeout_s)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 2)


class _CanvasClock:
    """Times each canvas update: connected after the canvas's own slot, it paints the new
    picture at once and notes when that finished, which request it shows and whether it
    was a blended stand-in."""

    def __init__(self, window: Any) -> None:
        self.window, self.state = window, window.state
        self.events: list[tuple[float, int, bool]] = []
        self.state.render_ready.connect(self._shown)

    def _shown(self, _image: Any, _preview: bool) -> None:
        self.window.canvas.repaint()
        self.events.append((time.perf_counter(), self.state._shown_seq, bool(self.state.showing_stand_in)))


def _drag(window: Any, slider: Any, clock: _CanvasClock, moves: int, timeout_s: float) -> dict[str, Any]:
    from PySide6.QtTest import QTest

    from styleclip_desktop.ui.panels.widgets import SLIDER_STEPS_PER_UNIT

    state = window.state
    start = slider.value()
    values = [start + STEP * (i + 1) for i in range(moves // 2)]
    values += [values[-1] - STEP * (i + 1) for i in range(moves - len(values))]  # and partly back
    sent: list[tuple[float, float, int, int]] = []  # (moved, move handled, request seq, events before it)
    slider.setSliderDown(True)
    for v in values:
        seen = len(clock.events)
        t0 = time.perf_counter()
        slider.setValue(v)
        sent.append((t0, time.perf_counter(), state._render_seq, seen))
        left_ms = int((t0 + MOVE_INTERVAL_S - time.perf_counter()) * 1000)
        if left_ms > 0:
            QTest.qWait(left_ms)
    last_seq = state._render_seq
    t_last = sent[-1][0]
    _pump_until(lambda: any(seq >= last_seq and not blended for _t, seq, blended in clock.events), timeout_s)
    exact_after = next((t for t, seq, blended in clock.events if seq >= last_seq and not blended), None)
    slider.setSliderDown(False)

    latencies: list[float] = []
    kinds = {"blended": 0, "exact_cached": 0, "exact_rendered": 0, "never": 0}
    for t0, handled, seq, seen in sent:
        first = next(((t, b) for t, s, b in clock.events[seen:] if s >= seq), None)
        if first is None:
            kinds["never"] += 1
            continue
        latencies.append((first[0] - t0) * 1000.0)
        if first[1]:
            kinds["blended"] += 1
        elif first[0] <= handled:  # shown while the move was handled: from the cache
            kinds["exact_cached"] += 1
        else:
            kinds["exact_rendered"] += 1
    updates = clock.events[sent[0][3]:]
    return {
        "moves": len(sent), "move_interval_ms": MOVE_INTERVAL_S * 1000, "alpha_from": start / SLIDER_STEPS_PER_UNIT,
        "alpha_turn": values[moves // 2 - 1] / SLIDER_STEPS_PER_UNIT,
        "p50_ms": _percentile(latencies, 50) if latencies else None,
        "p95_ms": _percentile(latencies, 95) if latencies else None,
        "max_ms": round(max(latencies), 2) if latencies else None,
        "first_frame_per_move": kinds,
        "blended_fraction": round(kinds["blended"] / len(sent), 3),
        "exact_fraction": round((kinds["exact_cached"] + kinds["exact_rendered"]) / len(sent), 3),
        "canvas_updates": len(updates),
        "canvas_updates_blended_fraction": round(sum(b for _t, _s, b in updates) / max(1, len(updates)), 3),
        "exact_frame_after_last_move_ms": round((exact_after - t_last) * 1000.0, 1) if exact_after else None,
        "latencies_ms": [round(x, 1) for x in latencies],
    }


def run(device: Any, repeats: int = 3, quick: bool = False,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    app = _app()
    from PySide6.QtCore import QSettings

    from bench.render import _models
    from styleclip_desktop import paths
    from styleclip_desktop.document import Document
    from styleclip_desktop.render.engine import Engine
    from styleclip_desktop.ui import dialogs
    from styleclip_desktop.ui.main_window import MainWindow
    from styleclip_desktop.ui.model_source import ModelSource
    from styleclip_desktop.ui.panels.editing import remember_beta

    stage = Stages(progress, 2 + repeats)
    res = 64 if quick else 1024
    timeout_s = 120.0 if quick else 1800.0
    out: dict[str, Any] = {"load_average_start": _load(), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(res, quick, Path(tmp) / "text")
        t0 = time.perf_counter()
        engine = Engine(models, device, backend="onnx", onnx_dir=paths.cache_dir() / "onnx-bench", clip_graphs=False)
        out["onnx_ready_s"] = round(time.perf_counter() - t0, 1)
        out["generator"] = f"{'narrow' if quick else 'config-f'} {res}px, random weights"
        out["backend"], out["notices"] = engine.backend_label, list(engine.notices)
        out["preview_resolution"] = engine.preview_resolution
        out["sweep_frames"] = engine.sweeps.frame_limit()
        stage()
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        ask_save = dialogs.ask_save_changes
        dialogs.ask_save_changes = lambda parent, title: dialogs.DISCARD  # type: ignore[assignment]
        window = MainWindow(settings, ModelSource(Path(tmp) / "models", device=str(device)))
        try:
            window.resize(1400, 900)
            window.show()
            window.state.set_engine(engine)
            G = models.G
            latent = G.broadcast_w(G.sample_w(1, seed=3))[0].numpy().astype(np.float32)
            window.projects.replace_document(Document(latent, seed=3, synthetic=True, description="seed 3"))
            _idle(engine, window.state, timeout_s)
            clock = _CanvasClock(window)
            layers = window.panels["layersDock"]
            drags, sweeps = [], []
            for i in range(repeats):
                remember_beta(window.state, BETA + 0.01 * i)  # a new direction each time: nothing cached
                layers.prompt.setText(PROMPT)
                t_add = time.perf_counter()
                layers.prompt.returnPressed.emit()
                layer_id = window.state.current_layer_id

                def swept(layer_id: str = layer_id) -> bool:
                    s = engine.sweeps.status()
                    return bool(s and s["layer_id"] == layer_id and s["finished"] and s["done"] == s["planned"])

                if not _pump_until(swept, timeout_s):
                    out["error"] = "the sweep did not finish in time"
                    break
                sweeps.append(round(time.perf_counter() - t_add, 2))
                _idle(engine, window.state, timeout_s)
                drags.append(_drag(window, layers.rows[layer_id].alpha.slider, clock, MOVES, timeout_s))
                _idle(engine, window.state, timeout_s)
                stage()
            out["layer_to_sweep_complete_s"] = sweeps
            out["drags"] = drags
            if drags:
                p95 = max(d["p95_ms"] for d in drags if d["p95_ms"] is not None)
                out["goals"] = {"drag_p95_ms": {"measured": p95, "goal": GOAL_P95_MS, "met": p95 <= GOAL_P95_MS,
                                                "note": "worst p95 over the drags"}}
        finally:
            window.close()
            dialogs.ask_save_changes = ask_save  # type: ignore[assignment]
            engine.shutdown()
            app.processEvents()
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_average_end"] = _load()
    return out
