"""The model manager: what each feature needs, what is missing, and three ways to get it.

Shown on first run (no generator), whenever a feature finds its model missing, and from
Models > Model Manager…. It reads `weights.readiness` (the same answer the CLI's
`models list` gives) and offers to download a model (progress, Cancel), to import a file
the user already has, or to write the synthetic demo set (random weights, not faces) so
the editor can be toured without downloading gigabytes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.errors import Cancelled
from styleclip_desktop.ui.error_report import user_message
from styleclip_desktop.ui.jobs import call_in_ui
from styleclip_desktop.ui.model_source import (
    DEMO_LABEL,
    ModelSource,
    create_demo_models,
    demo_dir,
    demo_ready,
)

log = logging.getLogger(__name__)
MODEL_ROLE = Qt.ItemDataRole.UserRole + 1


def model_mentioned(text: str) -> str | None:
    """The catalog id a message names ("... models download mapper-afro"), longest match first."""
    from styleclip_desktop.weights.catalog import load_catalog

    try:
        ids = [e.id for e in load_catalog()]
    except Exception:
        return None
    found = [i for i in ids if i in text]
    return max(found, key=len) if found else None


def _size(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return ""


class ModelWizard(QDialog):
    models_changed = Signal()  # a model was downloaded or imported
    demo_chosen = Signal(object)  # the ModelSource of the synthetic demo set
    real_chosen = Signal()  # back from the demo set to the models folder

    def __init__(self, models_dir: Path, parent: QWidget | None = None, reason: str = "",
                 demo_resolution: int | None = None, demo_in_use: bool = False,
                 focus: str | None = None) -> None:
        super().__init__(parent)
        self.models_dir = Path(models_dir)
        self.demo_resolution = demo_resolution
        self.demo_in_use = demo_in_use
        self.focus = focus
        self.setWindowTitle("Model Manager — StyleCLIP Desktop")
        self.resize(760, 520)
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.readiness: Any = None

        self.reason = QLabel(reason)
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet("color: #e0a040; font-weight: bold;")
        self.reason.setVisible(bool(reason))
        self.demo_banner = QWidget()
        self.demo_banner.setObjectName("demoBanner")
        self.demo_banner.setStyleSheet("#demoBanner { background: rgba(224, 160, 64, 40); border-radius: 4px; }")
        self.demo_text = QLabel()
        self.demo_text.setWordWrap(True)
        self.real_button = QPushButton("Use My Models")
        self.real_button.setToolTip("Switch from the synthetic demo set back to the models in your models folder")
        self.real_button.clicked.connect(self.use_real)
        banner = QHBoxLayout(self.demo_banner)
        banner.addWidget(self.demo_text, 1)
        banner.addWidget(self.real_button)
        intro = QLabel(
            "StyleCLIP Desktop runs on model files published by their authors; none are shipped with the app. "
            f"Models folder: <code>{self.models_dir}</code>")
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.features = QTreeWidget()
        self.features.setHeaderLabels(["Feature", "Status"])
        self.features.setRootIsDecorated(False)
        self.models = QTreeWidget()
        self.models.setHeaderLabels(["Model", "Status", "Size", "License"])
        self.models.setRootIsDecorated(False)
        self.models.itemSelectionChanged.connect(self._update_buttons)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download_selected)
        self.import_button = QPushButton("Import File…")
        self.import_button.setToolTip("Use a model file you already have (it is recognised by its content)")
        self.import_button.clicked.connect(self.import_file)
        self.demo_button = QPushButton("Use Synthetic Demo Models")
        self.demo_button.setToolTip(f"Tiny generated models to try the editor offline: {DEMO_LABEL}")
        self.demo_button.clicked.connect(self.use_demo)
        self.progress = QProgressBar()
        self.progress.hide()
        self.progress_text = QLabel("")
        # A long error wraps inside room kept for it, so the dialog never changes size.
        self.progress_text.setWordWrap(True)
        self.progress_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress_text.setMinimumHeight(3 * self.progress_text.fontMetrics().lineSpacing())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)

        lay = QVBoxLayout(self)
        lay.addWidget(self.reason)
        lay.addWidget(self.demo_banner)
        lay.addWidget(intro)
        lay.addWidget(QLabel("<b>What you can do</b>"))
        lay.addWidget(self.features, 2)
        lay.addWidget(QLabel("<b>Models</b>"))
        lay.addWidget(self.models, 3)
        row = QHBoxLayout()
        for w in (self.download_button, self.import_button):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.demo_button)
        lay.addLayout(row)
        prog = QHBoxLayout()
        prog.addWidget(self.progress_text, 1)
        prog.addWidget(self.progress, 2)
        prog.addWidget(self.cancel_button)
        lay.addLayout(prog)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(close)
        lay.addLayout(bottom)
        self.refresh()

    # -- listing ---------------------------------------------------------------------

    def refresh(self) -> None:
        from styleclip_desktop.weights.readiness import check_readiness

        try:
            self.readiness = r = check_readiness(self.models_dir)
        except Exception as exc:  # e.g. an unreadable catalog: say so instead of an empty list
            self.progress_text.setText(user_message(exc))
            return
        self.features.clear()
        for f in r.features.values():
            status = "Ready" if f.ready else "Missing: " + ", ".join(f.missing)
            item = QTreeWidgetItem([f.title, status])
            item.setForeground(1, Qt.GlobalColor.darkGreen if f.ready else Qt.GlobalColor.darkRed)
            if f.notes:
                item.setToolTip(1, "\n".join(f.notes))
            self.features.addTopLevelItem(item)
        self.models.clear()
        for entry in r.catalog:
            st = r.models[entry.id]
            item = QTreeWidgetItem([entry.title, str(st.state), _size(entry.size or st.size), entry.license])
            item.setData(0, MODEL_ROLE, entry.id)
            item.setToolTip(0, f"{entry.id}\n{entry.notes}".strip())
            item.setToolTip(3, entry.license_url)
            self.models.addTopLevelItem(item)
        for col in range(2):
            self.features.resizeColumnToContents(col)
            self.models.resizeColumnToContents(col)
        self._update_buttons()
        self._update_demo_banner()
        if self.focus:
            self.select_model(self.focus)

    def select_model(self, model_id: str) -> bool:
        """Select and show the row of `model_id`, ready for Download."""
        self.focus = model_id
        for i in range(self.models.topLevelItemCount()):
            item = self.models.topLevelItem(i)
            if item is not None and item.data(0, MODEL_ROLE) == model_id:
                self.models.setCurrentItem(item)
                self.models.scrollToItem(item)
                return True
        return False

    # -- the demo set ----------------------------------------------------------------

    def set_demo_in_use(self, on: bool) -> None:
        self.demo_in_use = on
        self._update_demo_banner()

    def _update_demo_banner(self) -> None:
        self.demo_banner.setVisible(self.demo_in_use)
        if not self.demo_in_use:
            return
        has_real = ModelSource(self.models_dir).has_generator()
        self.real_button.setEnabled(has_real)
        head = f"<b>The synthetic demo models are in use</b> ({DEMO_LABEL}). The lists below show your own models folder"
        if has_real:
            self.demo_text.setText(head + ", which has a generator: <b>Use My Models</b> switches back to it.")
        else:
            self.demo_text.setText(head + ", which has no StyleGAN2 generator yet: download or import one below "
                                          "and the editor switches to your models once it is installed.")

    def use_real(self) -> None:
        if ModelSource(self.models_dir).has_generator():
            self.real_chosen.emit()
            self.accept()

    def missing_ids(self) -> list[str]:
        """Ids of required models with nothing usable in their group."""
        if self.readiness is None:
            return []
        return [e.id for e in self.readiness.missing_required()]

    def _selected_id(self) -> str | None:
        items = self.models.selectedItems()
        return str(items[0].data(0, MODEL_ROLE)) if items else None

    def _update_buttons(self) -> None:
        busy = self._thread is not None and self._thread.is_alive()
        self.download_button.setEnabled(not busy and self._selected_id() is not None)
        self.import_button.setEnabled(not busy)
        self.demo_button.setEnabled(not busy)

    # -- background work -------------------------------------------------------------

    def _run(self, title: str, work: Callable[[Callable[[int, int | None], None], threading.Event], Any],
             done: Callable[[Any], None]) -> None:
        cancel = self._cancel = threading.Event()
        self.progress_text.setText(title)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()

        def report(n: int, total: int | None) -> None:
            def show() -> None:
                if total:
                    self.progress.setRange(0, 1000)
                    self.progress.setValue(int(1000 * n / total))
            call_in_ui(show)

        def run() -> None:
            try:
                result = work(report, cancel)
            except Cancelled:
                call_in_ui(lambda: self._finished(f"{title} cancelled."))
            except Exception as exc:
                log.info("%s failed: %s", title, exc, exc_info=exc)
                message = user_message(exc)
                call_in_ui(lambda: self._finished(message))
            else:
                def finish() -> None:
                    self._finished("")
                    done(result)

                call_in_ui(finish)

        self._thread = threading.Thread(target=run, name="model-wizard", daemon=True)
        self._thread.start()
        self._update_buttons()

    def _finished(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.progress_text.setText(message)
        self._thread = None
        self.refresh()

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def busy(self) -> bool:
        return self._thread is not None

    def download_selected(self) -> None:
        model_id = self._selected_id()
        if model_id is None or self.readiness is None:
            return
        entry = self.readiness.catalog.get(model_id)

        def work(report: Callable[[int, int | None], None], cancel: threading.Event) -> Any:
            from styleclip_desktop.weights.install import download_model

            return download_model(entry, self.models_dir, progress=report, cancel=cancel)

        self._run(f"Downloading {entry.title}", work, lambda _r: self.models_changed.emit())

    def import_file(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import a Model File", str(Path.home()),
                                                  "Model files (*.pkl *.pt *.pth *.safetensors *.bin *.npy *.onnx);;"
                                                  "All files (*)")
            if not path:
                return
        source = Path(path)

        def work(report: Callable[[int, int | None], None], cancel: threading.Event) -> Any:
            from styleclip_desktop.weights.catalog import load_catalog
            from styleclip_desktop.weights.importer import import_model

            return import_model(source, self.models_dir, load_catalog(), progress=report, cancel=cancel)

        def done(result: Any) -> None:
            self.progress_text.setText(f"Imported {result.entry.title} ({result.method}).")
            self.models_changed.emit()

        self._run(f"Importing {source.name}", work, done)

    def use_demo(self) -> None:
        folder = demo_dir()
        if demo_ready(folder):
            self.demo_chosen.emit(ModelSource.demo_in(folder))
            self.accept()
            return
        resolution = self.demo_resolution

        def work(report: Callable[[int, int | None], None], cancel: threading.Event) -> Any:
            def step(done: int, total: int, message: str) -> None:
                if cancel.is_set():
                    raise Cancelled()
                report(done, total)
                call_in_ui(lambda: self.progress_text.setText(f"Synthetic demo models: {message}"))

            return create_demo_models(folder, resolution=resolution, progress=step, cancelled=cancel.is_set)

        def done(source: ModelSource) -> None:
            self.demo_chosen.emit(source)
            self.accept()

        self._run("Writing the synthetic demo models", work, done)
