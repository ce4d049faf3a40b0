"""File > Batch Apply…: the open document's layers applied to many photos.

The user lists photos (files, folders, or dropped onto the dialog), picks an output folder
and what each face becomes, and presses Start. Each photo goes through the same batch the
command line's `batch` runs: its faces are found, aligned and inverted, the layers are
stacked on and the result written, with `manifest.jsonl` in the output folder recording
every photo. Running again into the same folder resumes: photos already done are skipped.

The batch loads its own copy of the editor's models and runs on a thread of its own, not
on the engine's worker, so the editor stays usable (renders, sliders, exports) while it
runs. Cancel stops after the photo under way; a second Cancel, or closing the dialog,
abandons that photo too. Every photo finished before the stop stays recorded.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.errors import UserError
from styleclip_desktop.ui import exporting as ex
from styleclip_desktop.ui.dialogs import PHOTO_SUFFIXES
from styleclip_desktop.ui.domain_dialog import duration_text
from styleclip_desktop.ui.error_report import sentence, user_message
from styleclip_desktop.ui.export_dialogs import row_of
from styleclip_desktop.ui.jobs import Task, call_in_ui, watch
from styleclip_desktop.ui.state import EditorState

if TYPE_CHECKING:
    from styleclip_desktop.batch.recipe import BatchOutputs, Recipe
    from styleclip_desktop.batch.runner import BatchSummary
    from styleclip_desktop.batch.worker import WorkerConfig
    from styleclip_desktop.ui.model_source import ModelSource

log = logging.getLogger(__name__)

TITLE = "Batch Apply"
ERROR_STYLE = "color: #c0392b;"
PHOTO_FILTER = "Photos (" + " ".join(f"*{s}" for s in PHOTO_SUFFIXES) + ");;All files (*)"
STILLS = (("PNG", "png"), ("JPEG", "jpg"), ("WebP", "webp"), ("None", None))
ANIMATIONS = (("None", None), ("MP4 video", "mp4"), ("GIF", "gif"), ("WebP", "webp"))
FACES = (("The largest face", "largest"), ("Every face", "all"))
SETTINGS_OUTDIR = "batch/outdir"


def worker_config(source: ModelSource, engine: Any, outdir: Path, backend: str = "auto") -> WorkerConfig:
    """The batch worker's settings: the models the editor was loaded from (its models
    folder or explicit files, its e4e encoder and face detector) on the editor's device."""
    from styleclip_desktop.batch.worker import WorkerConfig

    device = getattr(engine, "device", None)
    if device is None:
        from styleclip_desktop.ui.loader import pick_device

        device = pick_device(source.device)
    e4e, detector = source.e4e_path(), source.detector_path()
    return WorkerConfig(models_dir=str(source.models_dir),
                        generator=str(source.generator) if source.generator is not None else None,
                        clip=source.clip, fs3=str(source.fs3) if source.fs3 is not None else None,
                        e4e=str(e4e) if e4e is not None else None,
                        detector=str(detector) if detector is not None else None,
                        device=str(device), backend=backend, outdir=str(Path(outdir).resolve()))


def progress_text(done: int, total: int, processed: int, elapsed: float) -> str:
    """"3 of 10 photos, about 1 min 5 s left" (the time from the photos done in this run)."""
    text = f"{done} of {total} photo{'s' if total != 1 else ''}"
    if processed > 0 and total > done:
        text += f", about {duration_text(elapsed / processed * (total - done))} left"
    return text


def summary_text(summary: BatchSummary, outdir: Path) -> str:
    """What a finished (or stopped) batch did, in a sentence or two."""
    n = summary.total
    parts = [f"{summary.done} done", f"{summary.failed} failed"]
    if summary.skipped:
        earlier = f", {summary.skipped_failed} of them failed" if summary.skipped_failed else ""
        parts.append(f"{summary.skipped} finished in an earlier batch{earlier}")
    text = f"{n} photo{'s' if n != 1 else ''}: {', '.join(parts)}."
    if summary.stopped:
        text += f" Stopped with {summary.remaining} not started: press Start again to resume."
    return text + f" Results and manifest.jsonl in {outdir}."


@dataclass
class _Run:
    """One press of Start: its stop switches and what it has done so far."""

    outdir: Path
    total: int
    stop: threading.Event
    abandon: threading.Event
    started: float = 0.0  # when the models were loaded and the first photo began
    first_done: int = 0  # photos finished by an earlier batch, counted before this one began
    done: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (photo's name, reason)
    task: Task | None = None


class BatchDialog(QDialog):
    """Non-modal: the editor stays usable while a batch runs."""

    def __init__(self, state: EditorState, settings: QSettings, recipe: Recipe,
                 source: Callable[[], ModelSource], parent: QWidget | None = None, backend: str = "auto") -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setModal(False)
        self.setAcceptDrops(True)
        self.setMinimumWidth(560)
        self.state, self.settings = state, settings
        self.recipe = recipe
        self.source = source
        self.backend = backend
        self.job: concurrent.futures.Future[BatchSummary] | None = None
        self.run: _Run | None = None
        self.summary: BatchSummary | None = None
        self.outdir: Path | None = None  # the folder of the last batch, for Open Folder

        self.recipe_label = QLabel()
        self.recipe_label.setWordWrap(True)

        self.photos = QListWidget()
        self.photos.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.photos.setMinimumHeight(120)
        self.add_photos_button = QPushButton("Add &Photos…")
        self.add_folder_button = QPushButton("Add F&older…")
        self.remove_button = QPushButton("&Remove")
        self.count_label = QLabel()
        photo_buttons = QHBoxLayout()
        for b in (self.add_photos_button, self.add_folder_button, self.remove_button):
            photo_buttons.addWidget(b)
        photo_buttons.addStretch(1)
        photo_buttons.addWidget(self.count_label)
        photos_box = QGroupBox("Photos (or drop files and folders here)")
        photos_layout = QVBoxLayout(photos_box)
        photos_layout.addWidget(self.photos)
        photos_layout.addLayout(photo_buttons)

        self.options_panel = QWidget()
        form = QFormLayout(self.options_panel)
        form.setContentsMargins(0, 0, 0, 0)
        self.outdir_edit = QLineEdit(self._default_outdir())
        self.browse_button = QPushButton("Browse…")
        self.still_box = QComboBox()
        for label, value in STILLS:
            self.still_box.addItem(label, value)
        self.animation_box = QComboBox()
        for label, value in ANIMATIONS:
            self.animation_box.addItem(label, value)
        self.animation_box.setToolTip("An animation of the layers sweeping in (or the document's keyframes)")
        self.faces_box = QComboBox()
        for label, value in FACES:
            self.faces_box.addItem(label, value)
        self.crop_box = QCheckBox("Write the aligned face only (not pasted back into the photo)")
        form.addRow("Output &folder:", row_of(self.outdir_edit, self.browse_button))
        form.addRow("&Still:", self.still_box)
        form.addRow("&Animation:", self.animation_box)
        form.addRow("Fa&ces:", self.faces_box)
        form.addRow("", self.crop_box)

        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.failures = QListWidget()
        self.failures.setVisible(False)
        self.failures.setToolTip("The photos that failed, each with the reason")

        self.start_button = QPushButton("&Start")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.open_folder_button = QPushButton("Open &Folder")
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_folder_button)
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addWidget(self.recipe_label)
        layout.addWidget(photos_box, 1)
        layout.addWidget(self.options_panel)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.message)
        layout.addWidget(self.failures)
        layout.addLayout(buttons)

        self.add_photos_button.clicked.connect(self.browse_photos)
        self.add_folder_button.clicked.connect(self.browse_folder)
        self.remove_button.clicked.connect(self.remove_selected)
        self.browse_button.clicked.connect(self.browse_outdir)
        self.photos.itemSelectionChanged.connect(self._update_buttons)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_folder_button.clicked.connect(self.open_folder)
        self.close_button.clicked.connect(self.close)
        self.set_recipe(recipe)
        self._update_buttons()
        self.open_folder_button.setVisible(False)
        self.resize(640, 600)

    # -- the inputs ---------------------------------------------------------------------

    def _default_outdir(self) -> str:
        saved = self.settings.value(SETTINGS_OUTDIR, "")
        if saved:
            return str(saved)
        return str(ex.start_folder(self.state, self.settings) / "batch-results")

    def set_recipe(self, recipe: Recipe) -> None:
        """The layers to apply (File > Batch Apply… hands in the current document's)."""
        from styleclip_desktop.batch.recipe import PROJECT

        self.recipe = recipe
        try:
            n = len(recipe.document().layers) if recipe.kind == PROJECT else len(recipe.toml().get("layer", []))
        except UserError as exc:
            self._say(sentence(user_message(exc)), error=True)
            n = 0
        self.recipe_label.setText(f"Applies the {n} layer{'s' if n != 1 else ''} of {recipe.label} to each photo, "
                                  "as they are when you press Start.")

    def photo_paths(self) -> list[str]:
        return [self.photos.item(i).text() for i in range(self.photos.count())]

    def add_photos(self, paths: list[str | Path]) -> int:
        """Add files, and the photos directly inside folders; each photo once. Returns how
        many were added."""
        from styleclip_desktop.batch.manifest import collect_photos

        have = {str(Path(p).resolve()) for p in self.photo_paths()}
        added = 0
        missing: list[str] = []
        for raw in paths:
            p = Path(raw)
            if p.is_dir():
                try:
                    found = [str(q) for q in collect_photos([p])]
                except UserError:
                    missing.append(p.name or str(p))
                    continue
            else:
                found = [str(p)]
            for q in found:
                key = str(Path(q).resolve())
                if key not in have:
                    have.add(key)
                    self.photos.addItem(q)
                    added += 1
        if missing:
            self._say(f"No photos in {', '.join(missing)}.", error=True)
        self._update_buttons()
        return added

    def browse_photos(self) -> None:
        start = str(self.settings.value("dirs/batch-photos", "") or ex.start_folder(self.state, self.settings))
        names, _ = QFileDialog.getOpenFileNames(self, "Add Photos", start, PHOTO_FILTER)
        if names:
            self.settings.setValue("dirs/batch-photos", str(Path(names[0]).parent))
            self.add_photos(list(names))

    def browse_folder(self) -> None:
        start = str(self.settings.value("dirs/batch-photos", "") or ex.start_folder(self.state, self.settings))
        name = QFileDialog.getExistingDirectory(self, "Add a Folder of Photos", start)
        if name:
            self.settings.setValue("dirs/batch-photos", name)
            self.add_photos([name])

    def remove_selected(self) -> None:
        for item in self.photos.selectedItems():
            self.photos.takeItem(self.photos.row(item))
        self._update_buttons()

    def browse_outdir(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Output Folder", self.outdir_edit.text().strip())
        if name:
            self.outdir_edit.setText(name)

    def outputs(self) -> BatchOutputs:
        """What each face becomes, from the dialog (a RecipeError when it writes nothing)."""
        from styleclip_desktop.batch.recipe import BatchOutputs

        return BatchOutputs(still=self.still_box.currentData(), animation=self.animation_box.currentData(),
                            faces=str(self.faces_box.currentData()), crop=self.crop_box.isChecked())

    def target(self) -> Path:
        text = self.outdir_edit.text().strip()
        if not text:
            raise UserError("choose the folder the results go to")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path(ex.start_folder(self.state, self.settings)) / path
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file; the batch writes into a folder")
        return path

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt's name)
        if self.job is None and event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt's name)
        files: list[str | Path] = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files and self.job is None:
            event.acceptProposedAction()
            self.add_photos(files)

    # -- running ------------------------------------------------------------------------

    def running(self) -> bool:
        return self.job is not None

    def _current_recipe(self, outputs: BatchOutputs) -> Recipe:
        """The open document's layers as they are now (the recipe handed in when the
        document has been closed since)."""
        from styleclip_desktop.batch.recipe import recipe_from_document

        doc = self.state.document
        if doc is not None and len(doc.layers):
            from styleclip_desktop.ui.main_window import display_name

            return recipe_from_document(doc, outputs, display_name(doc))
        return self.recipe.with_outputs(outputs)

    def start(self) -> bool:
        """Check the inputs, then run the batch on its own thread. False when it could not start
        (the reason is shown)."""
        if self.job is not None:
            return False
        from styleclip_desktop.batch.runner import prepare

        try:
            outputs = self.outputs()
            outdir = self.target()
            recipe = self._current_recipe(outputs)
            items = prepare(recipe, self.photo_paths()) if self.photos.count() else None
            if items is None:
                raise UserError("add the photos to apply the layers to (Add Photos…, Add Folder… or drop them here)")
            config = worker_config(self.source(), self.state.engine, outdir, self.backend)
        except UserError as exc:
            self._say(sentence(user_message(exc)), error=True)
            return False
        self.set_recipe(recipe)
        self.settings.setValue(SETTINGS_OUTDIR, str(outdir))
        run = self.run = _Run(outdir, len(items), threading.Event(), threading.Event())
        run.task = self.state.tasks.begin("Batch: loading the models…", cancel=self.cancel)
        self.summary = None
        self.outdir = outdir
        self.failures.clear()
        self.failures.setVisible(False)
        self.progress_bar.setVisible(True)
        self.progress_bar.setRange(0, 0)
        self._say("Loading the models for the batch…")
        self.job = self._launch(lambda: self._work(run, recipe, items, config))
        watch(self.job, lambda s: self._finished(run, s), lambda e: self._failed(run, e),
              lambda: self._abandoned(run), owner=self)
        self._update_buttons()
        return True

    @staticmethod
    def _launch(fn: Callable[[], BatchSummary]) -> concurrent.futures.Future[BatchSummary]:
        """Run `fn` on a daemon thread of its own (quitting the editor never waits for a batch:
        the manifest already holds every photo finished)."""
        future: concurrent.futures.Future[BatchSummary] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="batch-apply", daemon=True).start()
        return future

    def _work(self, run: _Run, recipe: Recipe, items: Any, config: WorkerConfig) -> BatchSummary:
        """On the batch thread: load the models, then photo after photo."""
        from styleclip_desktop.batch.runner import InProcess, run_batch
        from styleclip_desktop.errors import Cancelled

        def executor() -> InProcess:
            if run.abandon.is_set():
                raise Cancelled()
            made = InProcess(config, recipe, cancelled=run.abandon.is_set)
            run.started = time.monotonic()
            self._in_ui(lambda: self._models_ready(run))
            return made

        def progress(done: int, total: int) -> None:
            if not run.started:
                run.first_done = done  # the photos an earlier batch finished
            self._in_ui(lambda: self._progressed(run, done, total))

        def record(rec: dict[str, Any]) -> None:
            if rec.get("status") == "done":
                run.done += 1
            else:
                run.failed += 1
                run.failures.append((Path(str(rec.get("input", "?"))).name, str(rec.get("reason", "?"))))

        return run_batch(recipe, items, run.outdir, executor,
                         stop=lambda: run.stop.is_set() or run.abandon.is_set(),
                         progress=progress, on_record=record)

    def _in_ui(self, fn: Callable[[], None]) -> None:
        call_in_ui(lambda: fn() if shiboken6.isValid(self) else None)

    def _models_ready(self, run: _Run) -> None:
        if run is self.run and self.job is not None and not run.stop.is_set():
            self._progressed(run, run.first_done, run.total)

    def _progressed(self, run: _Run, done: int, total: int) -> None:
        if run is not self.run or self.job is None:
            return
        if not run.started:  # still loading the models: the bar keeps saying so
            return
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        text = progress_text(done, total, done - run.first_done, time.monotonic() - run.started)
        if run.task is not None:
            self.state.tasks.update(run.task, done, total, f"Batch: {text}")
        if run.abandon.is_set():
            return
        if run.stop.is_set():
            text += ". Stopping after the photo under way (Cancel again to abandon it)"
        self._say(text + ".")

    def cancel(self) -> None:
        """The first Cancel stops after the photo under way; the second abandons it."""
        run = self.run
        if self.job is None or run is None:
            return
        if not run.stop.is_set():
            run.stop.set()
            self.cancel_button.setText("Stop Now")
            self.cancel_button.setToolTip("Abandon the photo under way as well")
            self._say("Stopping after the photo under way (Cancel again to abandon it)…")
        else:
            self.abandon()

    def abandon(self) -> None:
        """Stop now, leaving the photo under way unfinished (it is redone by the next batch)."""
        run = self.run
        if self.job is None or run is None:
            return
        run.stop.set()
        run.abandon.set()
        self.cancel_button.setEnabled(False)
        self._say("Stopping now…")

    def _end(self, run: _Run) -> bool:
        if run is not self.run:
            return False
        self.job = None
        if run.task is not None:
            self.state.tasks.end(run.task)
            run.task = None
        self.progress_bar.setRange(0, max(1, run.total))
        self._update_buttons()
        return True

    def _finished(self, run: _Run, summary: BatchSummary) -> None:
        if not self._end(run):
            return
        self.summary = summary
        self._update_buttons()
        self.progress_bar.setValue(summary.total - summary.remaining)
        self._say(summary_text(summary, run.outdir))
        self._show_failures([(Path(path).name, reason) for path, reason in summary.failures])
        self.open_folder_button.setVisible(True)
        bar = getattr(self.parent(), "statusBar", None)
        if callable(bar):
            bar().showMessage(f"Batch: {summary.done} done, {summary.failed} failed", 15000)

    def _failed(self, run: _Run, exc: BaseException) -> None:
        if not self._end(run):
            return
        if not isinstance(exc, UserError | OSError):
            log.error("the batch failed", exc_info=exc)
        self.progress_bar.setVisible(False)
        self._say(sentence(user_message(exc)), error=True)
        self._show_failures(run.failures)
        self.open_folder_button.setVisible(run.done + run.failed > 0)

    def _abandoned(self, run: _Run) -> None:
        if not self._end(run):
            return
        left = run.total - run.first_done - run.done - run.failed
        self._say(f"Stopped: {run.done} done, {run.failed} failed, {left} not finished. Press Start again "
                  "to resume; the photos already done are skipped.")
        self._show_failures(run.failures)
        self.open_folder_button.setVisible(run.done + run.failed > 0)

    def _show_failures(self, failures: list[tuple[str, str]]) -> None:
        self.failures.clear()
        for name, reason in failures:
            self.failures.addItem(f"{name}: {reason}")
        if failures:  # as tall as its lines, up to five (then it scrolls)
            rows = min(len(failures), 5)
            self.failures.setFixedHeight(self.failures.sizeHintForRow(0) * rows + 2 * self.failures.frameWidth() + 4)
        self.failures.setVisible(bool(failures))

    def open_folder(self) -> None:
        if self.outdir is not None and not ex.open_folder(self.outdir / "manifest.jsonl"):
            self._say(f"Could not open the folder {self.outdir}.", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet(ERROR_STYLE if error else "")
        self.message.setText(text)

    def _update_buttons(self) -> None:
        running = self.job is not None
        self.options_panel.setEnabled(not running)
        for b in (self.add_photos_button, self.add_folder_button):
            b.setEnabled(not running)
        self.remove_button.setEnabled(not running and bool(self.photos.selectedItems()))
        n = self.photos.count()
        self.count_label.setText(f"{n} photo{'s' if n != 1 else ''}")
        self.start_button.setEnabled(not running)
        self.start_button.setText("&Start" if self.summary is None or not self.summary.stopped else "&Resume")
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.cancel_button.setText("Cancel")
            self.cancel_button.setToolTip("Stop after the photo under way")
        self.close_button.setVisible(not running)
        if running:
            self.open_folder_button.setVisible(False)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.abandon()  # closing stops the batch at once; what it finished stays recorded
        super().closeEvent(event)

    def reject(self) -> None:  # Escape and the Close button
        self.abandon()
        super().reject()


def open_batch_dialog(window: Any, recipe: Recipe) -> BatchDialog:
    """The window's Batch Apply dialog (one per window), showing `recipe` unless a batch runs."""
    dialog = window.findChild(BatchDialog)
    if dialog is None:
        backend = str(getattr(getattr(window, "loader", None), "engine_options", {}).get("backend", "auto"))
        dialog = BatchDialog(window.state, window.settings, recipe, lambda: window.source, window, backend=backend)
    elif not dialog.running():
        dialog.set_recipe(recipe)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog

