"""The export dialogs' shared frame, and File > Export Image….

Each dialog gathers its options and the file to write, runs the export as a job on the
engine's worker (a progress bar and Cancel in the dialog, the task in the status bar too)
and ends with a notice naming the file, with a button that opens its folder. A cancelled
or failed export writes nothing and never touches the document.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.errors import UserError
from styleclip_desktop.ui import exporting as ex
from styleclip_desktop.ui.state import EditorState

log = logging.getLogger(__name__)
PASTED_BACK, FACE_CROP = "Pasted back into the photo", "Face crop only"


def row_of(main: QWidget, *others: QWidget) -> QWidget:
    """Widgets side by side as one form field; its label's shortcut focuses `main`."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(main, 1)
    for widget in others:
        layout.addWidget(widget)
    row.setFocusProxy(main)
    return row


class ExportDialog(QDialog):
    """What both export dialogs share: format, file, progress, Cancel and the finished notice."""

    progressed = Signal(int, int)

    TITLE = "Export"
    FORMATS: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (label, suffixes; the first is the default)
    FILTER = ""
    ENDING = ""

    def __init__(self, state: EditorState, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.TITLE)
        self.setMinimumWidth(520)
        self.state, self.settings = state, settings
        self.job: Any = None
        self.written: Path | None = None
        self._confirmed: Path | None = None  # a path the file dialog already asked to replace
        self._for_doc: Any = None

        self.options_panel = QWidget(self)
        self.form = QFormLayout(self.options_panel)
        self.format_box = QComboBox()
        for label, suffixes in self.FORMATS:
            self.format_box.addItem(label, suffixes)
        self.path_edit = QLineEdit()
        self.browse_button = QPushButton("Browse…")
        self.form.addRow("&Format:", self.format_box)
        self.form.addRow("F&ile:", row_of(self.path_edit, self.browse_button))
        self.picture_box = QComboBox()
        self.picture_box.addItem(PASTED_BACK, False)
        self.picture_box.addItem(FACE_CROP, True)
        self.size_box = QSpinBox()
        self.size_box.setSuffix(" px")
        self.size_box.setSpecialValueText("As rendered")
        self.size_box.setToolTip("The longer side of the exported picture")
        self.quality_box = QSpinBox()
        self.quality_box.setRange(1, 100)
        self.add_options()

        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box = QDialogButtonBox()
        self.open_folder_button = box.addButton("Open &Folder", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button = box.addButton("&Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = box.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.close_button = box.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.setDefault(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.options_panel)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.message)
        layout.addWidget(box)

        self.export_button.clicked.connect(self.export)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.open_folder_button.clicked.connect(self.open_folder)
        self.browse_button.clicked.connect(self.browse)
        self.format_box.currentIndexChanged.connect(self._format_changed)
        self.path_edit.textEdited.connect(self._path_edited)
        self.progressed.connect(self._show_progress)
        self._set_running(False)
        self.open_folder_button.setVisible(False)

    # -- what each dialog adds -------------------------------------------------------------

    def add_options(self) -> None:
        raise NotImplementedError

    def reset_options(self, doc: Any) -> None:
        """Options that follow the document: picked again for each new document."""
        has_photo = doc is not None and doc.source is not None
        self.picture_box.setCurrentIndex(0 if has_photo and self.state.paste_back else 1)
        self.picture_box.setEnabled(has_photo)
        self.picture_box.setToolTip("" if has_photo else "There is no photo: the face is the whole picture.")

    def options(self) -> Any:
        raise NotImplementedError

    def make_job(self, path: Path, options: Any) -> Any:
        raise NotImplementedError

    def finished_text(self, path: Path, result: Any) -> str:
        return f"Exported to {path}."

    def format_changed(self) -> None:
        """Enable what the chosen format uses."""

    # -- showing -----------------------------------------------------------------------

    @property
    def suffixes(self) -> tuple[str, ...]:
        return tuple(self.format_box.currentData())

    @property
    def crop(self) -> bool:
        return bool(self.picture_box.currentData())

    def present(self) -> None:
        if self.job is None:
            doc = self.state.document
            if doc is not self._for_doc or not self.path_edit.text().strip():
                self._for_doc = doc
                self.reset_options(doc)
                name = ex.suggested_name(self.state, self.ENDING + self.suffixes[0])
                self.path_edit.setText(str(ex.start_folder(self.state, self.settings) / name))
            self.message.clear()
            self.open_folder_button.setVisible(False)
            self.progress_bar.setVisible(False)
        self.format_changed()
        self.show()
        self.raise_()
        self.activateWindow()

    def _format_changed(self) -> None:
        text = self.path_edit.text().strip()
        if text and Path(text).suffix.lower() not in self.suffixes:
            path = Path(text)
            self.path_edit.setText(str(path.with_suffix(self.suffixes[0]) if path.suffix else
                                       path.with_name(path.name + self.suffixes[0])))
        self.format_changed()

    def _path_edited(self, text: str) -> None:
        suffix = Path(text.strip()).suffix.lower()
        for i in range(self.format_box.count()):
            if suffix in self.format_box.itemData(i) and i != self.format_box.currentIndex():
                self.format_box.blockSignals(True)
                self.format_box.setCurrentIndex(i)
                self.format_box.blockSignals(False)
                self.format_changed()

    def browse(self) -> None:
        start = self.path_edit.text().strip() or str(ex.start_folder(self.state, self.settings))
        name, _ = QFileDialog.getSaveFileName(self, self.TITLE, start, self.FILTER)
        if name:
            self.path_edit.setText(name)
            self._path_edited(name)
            self._confirmed = self.target()

    def target(self) -> Path:
        text = self.path_edit.text().strip()
        if not text:
            raise UserError("choose the file to export to")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = ex.start_folder(self.state, self.settings) / path
        if path.suffix.lower() not in self.suffixes:
            path = path.with_name(path.name + self.suffixes[0])
        return path

    # -- running -----------------------------------------------------------------------

    def export(self) -> None:
        if self.job is not None:
            return
        self.open_folder_button.setVisible(False)
        try:
            path = self.target()
            fn = self.make_job(path, self.options())
        except UserError as exc:
            self._show_failure(ex.failure_text(exc, Path(self.path_edit.text())))
            return
        if path.exists() and path != self._confirmed:
            answer = QMessageBox.question(self, self.TITLE, f'"{path.name}" already exists in {path.parent}. '
                                          "Replace it?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                          QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.path_edit.setText(str(path))
        try:
            job = self.state.run_job(fn, f"Exporting {path.name}…", on_result=lambda r: self._finished(path, r),
                                     on_error=lambda e: self._failed(path, e), on_cancel=self._cancelled)
        except UserError as exc:
            self._show_failure(ex.failure_text(exc, path))
            return
        self.job = job
        self._set_running(True)
        self.progress_bar.setRange(0, 0)
        self.message.setStyleSheet("")
        self.message.setText(f"Exporting {path.name}…")
        job.on_progress(lambda done, total, _message: self.progressed.emit(done, total))

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.message.setText("Cancelling…")

    def reject(self) -> None:
        self.cancel()  # closing the dialog stops its export: nothing is written
        super().reject()

    def open_folder(self) -> None:
        if self.written is not None and not ex.open_folder(self.written):
            self._show_failure(f"Could not open the folder {self.written.parent}.")

    def _show_progress(self, done: int, total: int) -> None:
        if self.job is None or total <= 0:
            return
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        if total > 1:
            self.message.setText(f"Frame {done} of {total}")

    def _finished(self, path: Path, result: Any) -> None:
        self.job = None
        self._set_running(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.written = path
        self._confirmed = None
        self.settings.setValue("dirs/export", str(path.parent))
        self.message.setStyleSheet("")
        self.message.setText(self.finished_text(path, result))
        self.open_folder_button.setVisible(True)
        bar = getattr(self.parent(), "statusBar", None)
        if callable(bar):
            bar().showMessage(f"Exported {path}", 15000)

    def _failed(self, path: Path, exc: BaseException) -> None:
        self.job = None
        self._set_running(False)
        if not isinstance(exc, UserError | OSError):
            log.error("export failed", exc_info=exc)
        self._show_failure(ex.failure_text(exc, path))

    def _cancelled(self) -> None:
        self.job = None
        self._set_running(False)
        self.message.setStyleSheet("")
        self.message.setText("Export cancelled; nothing was written.")

    def _show_failure(self, text: str) -> None:
        self.progress_bar.setVisible(False)
        self.message.setStyleSheet("color: #c0392b;")
        self.message.setText(text)

    def _set_running(self, running: bool) -> None:
        self.options_panel.setEnabled(not running)
        self.export_button.setEnabled(not running)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.close_button.setVisible(not running)
        if running:
            self.progress_bar.setVisible(True)
            self.open_folder_button.setVisible(False)


class ExportImageDialog(ExportDialog):
    TITLE = "Export Image"
    FORMATS = (("PNG", (".png",)), ("JPEG", (".jpg", ".jpeg")), ("WebP", (".webp",)))
    FILTER = ex.IMAGE_FILTER
    ENDING = "-edited"

    def add_options(self) -> None:
        self.size_box.setRange(0, 16384)
        self.size_box.setValue(0)
        self.quality_box.setValue(95)
        self.quality_box.setToolTip("JPEG and WebP quality: higher keeps more detail in a larger file")
        self.form.addRow("&Picture:", self.picture_box)
        self.form.addRow("&Size:", self.size_box)
        self.form.addRow("&Quality:", self.quality_box)

    def format_changed(self) -> None:
        self.quality_box.setEnabled(self.suffixes[0] != ".png")

    def options(self) -> Any:
        stills = ex.stills_module()
        if stills is None:
            raise UserError("still export is not available in this installation")
        return stills.StillOptions(size=self.size_box.value() or None, crop=self.crop,
                                   quality=self.quality_box.value())

    def make_job(self, path: Path, options: Any) -> Any:
        return ex.still_job(self.state, path, options)

    def finished_text(self, path: Path, result: Any) -> str:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        return f"Exported a {w}×{h} picture to {path}."
