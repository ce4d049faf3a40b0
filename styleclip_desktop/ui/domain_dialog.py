"""Train Domain: move the generator to a new look described by text (StyleGAN-NADA).

The user gives a source text ("photo") and a target text ("a pencil sketch"); training
runs on the engine's worker, making way for the editor's renders between steps, with a
progress bar (step, loss, time left) and preview frames as they arrive. Cancel stops
after the current step and keeps the best weights seen so far. The result can be saved
as a `.domain` file, added to the document as a layer (one undo step), or both.

Training is slow without a GPU: at full size one step takes minutes on a processor, so
the dialog says so and suggests fewer steps there; after the first step it shows the
estimate measured on this computer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.ui import dialogs
from styleclip_desktop.ui.engines import generator_of
from styleclip_desktop.ui.images import to_qimage
from styleclip_desktop.ui.panels.domain_actions import (
    DOMAIN_SUFFIX,
    add_domain_layer,
    base_identity,
)
from styleclip_desktop.ui.panels.engine_link import EngineLink, user_message
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)

PUBLISHED_ITERATIONS = 301
CPU_ITERATIONS = 10  # a first look at full size on a processor (each step takes minutes there)
SLOW_RESOLUTION = 256  # from this size up, a processor needs minutes per step
PREVIEW_HEIGHT = 128
ERROR_STYLE = "color: #c0392b;"


def duration_text(seconds: float) -> str:
    """3725 -> "1 h 2 min"; 95 -> "1 min 35 s"; 12 -> "12 s"."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def progress_text(step: int, total: int, loss: float, elapsed: float) -> str:
    """"Step 3 of 10 · loss 0.812 · about 35 min left" (the time from the steps so far)."""
    text = f"Step {step} of {total} · loss {loss:.4f}"
    if step > 0 and total > step:
        text += f" · about {duration_text(elapsed / step * (total - step))} left"
    if step == 1 and total > 1:
        text += f" (one step takes {duration_text(elapsed)} here)"
    return text


def preview_strip(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 frames side by side: (H, N*W, 3)."""
    frames = np.asarray(images, dtype=np.uint8)
    if frames.ndim == 3:
        return np.ascontiguousarray(frames)
    return np.ascontiguousarray(np.concatenate(list(frames), axis=1))


def _device_of(G: Any) -> str:
    try:
        return str(next(G.parameters()).device)
    except (StopIteration, AttributeError, TypeError):
        return "cpu"


class DomainDialog(QDialog):
    """Non-modal: the editor stays usable while a domain trains."""

    layer_added = Signal(str)
    trained = Signal(object)  # the DomainParams of a finished (or cancelled) run

    def __init__(self, state: EditorState, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.settings = settings
        self.link = EngineLink.of(state)
        self.setWindowTitle("Train Domain")
        self.setModal(False)
        self.job: Any = None
        self.result_params: Any = None  # DomainParams once a run has ended with weights
        self._started = 0.0
        self._run_id = 0

        engine = state.engine
        G = generator_of(engine) if engine is not None else None
        self.resolution = int(getattr(getattr(G, "config", None), "resolution", 0) or 0)
        self.on_gpu = G is not None and _device_of(G).startswith("cuda")

        self.source = QLineEdit("photo")
        self.source.setToolTip("What the pictures look like now; \"photo\" as published")
        self.target = QLineEdit()
        self.target.setPlaceholderText("e.g. a pencil sketch, a 3D render in the style of Pixar")
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 100_000)
        slow = not self.on_gpu and self.resolution >= SLOW_RESOLUTION
        self.iterations.setValue(CPU_ITERATIONS if slow else PUBLISHED_ITERATIONS)
        self.iterations.setToolTip(f"The published setting is {PUBLISHED_ITERATIONS} steps")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.include_face = QCheckBox("Include my photo's face in training")
        self.include_face.setToolTip("Train on this document's face as well as on random faces")
        doc = state.document
        has_latent = doc is not None and getattr(doc, "latent", None) is not None
        self.include_face.setEnabled(has_latent)
        self.include_face.setChecked(has_latent)
        self.speed_note = QLabel(self._speed_text(slow))
        self.speed_note.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Source text", self.source)
        form.addRow("Target text", self.target)
        form.addRow("Steps", self.iterations)
        form.addRow("Seed", self.seed)
        form.addRow("", self.include_face)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Type a target text and press Train.")
        self.status.setWordWrap(True)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(PREVIEW_HEIGHT)
        self.preview.setText("Preview frames appear here during training.")

        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel (keep the best so far)")
        self.save_button = QPushButton("Save as .domain…")
        self.add_button = QPushButton("Add as layer")
        self.close_button = QPushButton("Close")
        self.train_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(lambda: self.save_result())
        self.add_button.clicked.connect(self.add_result)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.train_button, self.cancel_button, self.save_button, self.add_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.speed_note)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.preview, 1)
        layout.addLayout(buttons)
        self.target.textChanged.connect(lambda _t: self._update_buttons())
        self._update_buttons()
        self.resize(640, 460)

    def _speed_text(self, slow: bool) -> str:
        if self.on_gpu:
            return (f"Training runs on this GPU ({PUBLISHED_ITERATIONS} steps published); the time left is shown "
                    "after the first step.")
        if slow:
            return (f"Without a GPU each step takes minutes at {self.resolution} px (about 5 minutes at 1024 px "
                    f"on a 2-core processor): the published {PUBLISHED_ITERATIONS} steps would take a day, so "
                    f"{CPU_ITERATIONS} steps are suggested for a first look. The time left is shown after the "
                    "first step.")
        return "Without a GPU training runs on the processor; the time left is shown after the first step."

    def running(self) -> bool:
        return self.job is not None

    def _update_buttons(self) -> None:
        running = self.running()
        for w in (self.source, self.target, self.iterations, self.seed):
            w.setEnabled(not running)
        self.include_face.setEnabled(not running and self.state.document is not None)
        self.train_button.setEnabled(not running and bool(self.target.text().strip()))
        self.cancel_button.setEnabled(running)
        done = self.result_params is not None and not running
        self.save_button.setEnabled(done)
        self.add_button.setEnabled(done and self.state.document is not None)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else "")

    # -- training ---------------------------------------------------------------------

    def config(self) -> Any:
        from styleclip_desktop.methods.nada import NadaConfig

        return NadaConfig(target=self.target.text().strip(), source=self.source.text().strip() or "photo",
                          iterations=int(self.iterations.value()), seed=int(self.seed.value()))

    def start(self) -> bool:
        engine, doc = self.state.engine, self.state.document
        if self.running():
            return False
        if engine is None:
            self._say("The models are still loading; try again in a moment.", True)
            return False
        clip = getattr(getattr(engine, "models", None), "clip", None)
        if clip is None:
            self._say("Training a domain needs CLIP: install it with Models > Model Manager.", True)
            return False
        try:
            from styleclip_desktop.methods import nada

            cfg = self.config()
            cfg.check()
        except Exception as exc:
            self._say(user_message(exc, "Training"), True)
            return False
        G = generator_of(engine)
        extra = None
        if self.include_face.isChecked() and doc is not None and getattr(doc, "latent", None) is not None:
            extra = np.array(doc.latent, dtype=np.float32)
        identity = base_identity(engine)
        self._run_id += 1
        run = self._run_id
        link = self.link

        def work(ctx: Any) -> Any:
            def progress(step: int, total: int, loss: float) -> None:
                link.call_in_ui(lambda: self._progressed(run, step, total, loss))
                yield_to = getattr(ctx, "yield_to_higher", None)
                if callable(yield_to):  # the editor's renders go first between steps
                    yield_to()

            def preview(step: int, images: np.ndarray) -> None:
                strip = preview_strip(images)
                link.call_in_ui(lambda: self._show_preview(run, step, strip))

            result = nada.train_domain(G, clip, cfg, extra_ws=extra, progress=progress, preview=preview,
                                       cancel=lambda: bool(ctx.cancelled()), device=_device_of(G))
            return result, self._params(result, cfg, identity)

        worker = getattr(engine, "worker", None)
        if worker is None:
            self._say("This engine cannot train domains.", True)
            return False
        from styleclip_desktop.render.worker import Priority

        self.result_params = None
        self.job = worker.submit(work, Priority.EXPORT, key="train-domain")
        self._started = time.monotonic()
        self.progress.setRange(0, cfg.iterations)
        self.progress.setValue(0)
        self._say(f"Training {cfg.source!r} → {cfg.target!r}: preparing the first step…")
        self.link.watch(self.job, lambda value: self._done(run, value), lambda exc: self._failed(run, exc),
                        lambda: self._stopped(run))
        self.state.busy.emit("Training a domain", 0, cfg.iterations)
        self._update_buttons()
        return True

    @staticmethod
    def _params(result: Any, cfg: Any, identity: str) -> Any:
        """The layer parameters of a run (None when it ended before any step)."""
        if not result.delta:
            return None
        from styleclip_desktop.methods import domain_file

        return domain_file.params_from_result(result, cfg, identity)

    def cancel(self) -> None:
        if self.job is not None:
            self._say("Stopping after this step; the best weights so far are kept…")
            self.job.cancel()

    def _progressed(self, run: int, step: int, total: int, loss: float) -> None:
        if run != self._run_id or self.job is None:
            return
        self.progress.setRange(0, total)
        self.progress.setValue(step)
        self._say(progress_text(step, total, loss, time.monotonic() - self._started))
        self.state.busy.emit("Training a domain", step, total)

    def _show_preview(self, run: int, step: int, strip: np.ndarray) -> None:
        if run != self._run_id:
            return
        pix = QPixmap.fromImage(to_qimage(strip))
        if pix.height() != PREVIEW_HEIGHT:
            pix = pix.scaledToHeight(PREVIEW_HEIGHT, Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pix)
        self.preview.setToolTip(f"After step {step}")

    def _finish(self) -> None:
        self.job = None
        self.state.busy.emit("", 1, 1)
        self._update_buttons()

    def _done(self, run: int, value: Any) -> None:
        if run != self._run_id:
            return
        result, params = value
        self.result_params = params
        self._finish()
        steps = int(getattr(result, "steps_done", 0))
        if params is None:
            self._say("Cancelled before the first step finished: nothing was trained.")
            return
        size = f"{params.size_bytes() / 2**20:.1f} MB"
        if getattr(result, "cancelled", False):
            best = int(getattr(result, "best_step", steps))
            self._say(f"Cancelled after {steps} step{'' if steps == 1 else 's'}: kept the best weights so far (step {best}, {size}). "
                      "Save it or add it as a layer.")
        else:
            self._say(f"Finished {steps} step{'' if steps == 1 else 's'} ({size}). Save it or add it as a layer.")
        self.trained.emit(params)

    def _failed(self, run: int, exc: BaseException) -> None:
        if run != self._run_id:
            return
        log.info("domain training failed: %s", exc, exc_info=exc)
        self._finish()
        self._say(user_message(exc, "Training"), True)

    def _stopped(self, run: int) -> None:
        if run == self._run_id:
            self._finish()
            self._say("Cancelled before training began: nothing was trained.")

    # -- results ----------------------------------------------------------------------

    def save_result(self, path: Path | None = None) -> Path | None:
        params = self.result_params
        if params is None:
            return None
        if path is None:
            suggested = "".join(c if c.isalnum() or c in "-_" else "_" for c in params.target)[:40] or "domain"
            path = dialogs.save_path(self, self.settings, "Save Domain", suggested + DOMAIN_SUFFIX,
                                     f"StyleCLIP domains (*{DOMAIN_SUFFIX})", DOMAIN_SUFFIX, kind="domain")
            if path is None:
                return None
        try:
            from styleclip_desktop.methods import domain_file

            written = Path(domain_file.save_domain(path, params))
        except Exception as exc:
            self._say(user_message(exc, "Saving the domain"), True)
            return None
        self._say(f"Saved {written.name}.")
        return written

    def add_result(self) -> str | None:
        if self.result_params is None:
            return None
        layer_id = add_domain_layer(self.state, self.result_params)
        if layer_id:
            self._say("Added as a layer on top of the stack.")
            self.layer_added.emit(layer_id)
        return layer_id

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        if self.job is not None:  # closing stops the run; nothing is added
            self._run_id += 1
            self.job.cancel()
            self._finish()
        super().closeEvent(event)
