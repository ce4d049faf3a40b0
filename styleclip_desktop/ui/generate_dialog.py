"""File > New from Prompt…: a face generated from text, with live frames and Cancel.

Text-to-face optimizes a latent against CLIP (`methods.optimization.generate_from_text`),
starting from the face of the chosen seed. Without that method, or without CLIP, the
dialog can still start a new document from the seed alone.

Cancel while a face forms stops the job and leaves the open document as it was; the dialog
stays open for another try. Generate is enabled again whenever no job runs: after a
cancel, a failure, or a "Save the changes?" prompt the user backed out of.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import Document
from styleclip_desktop.errors import Cancelled
from styleclip_desktop.methods.optimization_settings import TEXT_TO_FACE
from styleclip_desktop.ui.engines import clip_of, generator_of, identities_of
from styleclip_desktop.ui.images import to_qimage
from styleclip_desktop.ui.jobs import call_in_ui
from styleclip_desktop.ui.projects import ProjectController
from styleclip_desktop.ui.state import EditorState

PREVIEW_SIDE = 256


def text_to_face() -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("styleclip_desktop.methods.optimization")
    except ImportError:
        return None
    fn = getattr(module, "generate_from_text", None)
    return fn if callable(fn) else None


class GenerateDialog(QDialog):
    def __init__(self, state: EditorState, projects: ProjectController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.projects = projects
        self.job: Any = None
        self.setWindowTitle("New from Prompt")
        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("e.g. a smiling woman with curly red hair")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(np.random.default_rng().integers(0, 100000)))
        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.steps.setValue(TEXT_TO_FACE.steps)  # the published text-to-face default
        self.steps.setToolTip(f"Published text-to-face defaults: {TEXT_TO_FACE.summary()}")
        self.preview = QLabel("The face appears here while it forms.")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.progress = QProgressBar()
        self.progress.hide()
        form = QFormLayout()
        form.addRow("Prompt:", self.prompt)
        form.addRow("Seed:", self.seed)
        form.addRow("Steps:", self.steps)
        self.buttons = QDialogButtonBox()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.seed_button = QPushButton("From Seed Only")
        self.seed_button.setToolTip("A new document with the random face of this seed, without the prompt")
        self.cancel_button = QPushButton("Cancel")
        self.buttons.addButton(self.generate_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.seed_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.generate_button.clicked.connect(self.generate)
        self.seed_button.clicked.connect(self.from_seed)
        self.cancel_button.clicked.connect(self.cancel)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.preview, 1)
        lay.addWidget(self.progress)
        lay.addWidget(self.buttons)
        if text_to_face() is None or clip_of(state.engine) is None:
            self.generate_button.setEnabled(False)
            self.generate_button.setToolTip("Text-to-face needs CLIP and the optimization method")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)  # until the job has stopped (within one step)
        else:
            self.reject()

    def reject(self) -> None:
        if self.job is not None:
            self.job.cancel()  # closing the dialog (Esc, the title bar) stops the job too
        super().reject()

    def _idle(self) -> None:
        self.job = None
        self.progress.hide()
        self.cancel_button.setEnabled(True)
        self.seed_button.setEnabled(True)
        self.generate_button.setEnabled(text_to_face() is not None and clip_of(self.state.engine) is not None)

    def from_seed(self) -> None:
        self.accept()
        self.projects.new_from_seed(self.seed.value())

    def _show_frame(self, image: np.ndarray) -> None:
        pix = QPixmap.fromImage(to_qimage(image)).scaled(PREVIEW_SIDE, PREVIEW_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                                         Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pix)

    def generate(self) -> Any:
        fn, engine = text_to_face(), self.state.engine
        prompt, seed, steps = self.prompt.text().strip(), self.seed.value(), self.steps.value()
        if fn is None or engine is None or not prompt:
            return None

        def progress(ctx: Any, done: int, total: int) -> None:
            ctx.progress(done, total, f"Generating: step {done} of {total}")
            call_in_ui(lambda: self.progress.setValue(done))

        def run(ctx: Any) -> Any:
            G, clip = generator_of(engine), clip_of(engine)
            result = fn(G, clip, prompt, seed=seed, steps=steps, start="sample", frame_every=max(1, steps // 20),
                        progress=lambda d, t: progress(ctx, d, t),
                        on_frame=lambda f: call_in_ui(lambda: self._show_frame(f.image)), cancel=ctx.cancelled)
            if ctx.cancelled() or getattr(result, "cancelled", False):
                raise Cancelled()  # a half-formed face is not a result
            return result

        def done(result: Any) -> None:
            self._idle()
            if not self.projects.maybe_close():
                return  # the user kept the open document: the dialog stays for another try
            G = generator_of(engine)
            self.projects.replace_document(Document(
                np.asarray(result.latent(), np.float32), seed=seed, synthetic=bool(getattr(G, "synthetic", False)),
                models=identities_of(engine), description=f'generated from "{prompt}" (seed {seed})'))
            notice = str(getattr(result, "notice", "") or "")
            if notice:  # the seed's face came back as it was: say so rather than pass it off as generated
                self.state.error.emit(notice)
            self.accept()

        def ended(exc: BaseException | None = None) -> None:
            self._idle()
            if exc is not None:
                self.state._render_failed(exc)

        self.generate_button.setEnabled(False)
        self.seed_button.setEnabled(False)
        self.progress.show()
        self.progress.setRange(0, steps)
        self.job = self.state.run_job(run, f'Generating "{prompt}"…', key="generate", on_result=done,
                                      on_error=ended, on_cancel=ended)
        return self.job
