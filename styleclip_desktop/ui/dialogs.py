"""The small modal questions the shell asks, in one place (tests replace these functions).

File dialogs start where the open document lives (`start_folder`: the project's folder,
or the photo's for a photo not yet saved as a project), else in the last folder used for
that kind of file, which QSettings remembers.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from styleclip_desktop.document import PROJECT_SUFFIX, RecoverableProject

TITLE = "StyleCLIP Desktop"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic")
OPEN_FILTER = (f"Projects and photos (*{PROJECT_SUFFIX} " + " ".join(f"*{s}" for s in PHOTO_SUFFIXES) + ");;"
               f"StyleCLIP projects (*{PROJECT_SUFFIX});;"
               "Photos (" + " ".join(f"*{s}" for s in PHOTO_SUFFIXES) + ");;All files (*)")
PROJECT_FILTER = f"StyleCLIP projects (*{PROJECT_SUFFIX})"

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def ask_save_changes(parent: QWidget | None, title: str) -> str:
    """SAVE, DISCARD or CANCEL for a document with unsaved changes."""
    box = QMessageBox(QMessageBox.Icon.Warning, TITLE, f'Save the changes to "{title}"?', parent=parent)
    box.setInformativeText("Your changes will be lost if you don't save them.")
    box.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                           | QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    return {QMessageBox.StandardButton.Save: SAVE, QMessageBox.StandardButton.Discard: DISCARD}.get(
        QMessageBox.StandardButton(answer), CANCEL)


def _when(found: RecoverableProject) -> str:
    return datetime.datetime.fromtimestamp(found.saved_at).strftime("%Y-%m-%d %H:%M")


def ask_recover(parent: QWidget | None, found: RecoverableProject) -> bool:
    """Yes: open the autosave; No: the caller deletes it, so it is never offered again."""
    answer = QMessageBox.question(
        parent, TITLE,
        f'StyleCLIP Desktop did not close properly last time. Recover "{found.title}" (autosaved '
        f"{_when(found)})? No deletes the autosaved changes.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
    return answer == QMessageBox.StandardButton.Yes


class RecoverDialog(QDialog):
    """Several documents had unsaved work: list them, newest first. Recover opens the
    selected one (the editor holds one document at a time); Discard deletes the selected
    autosave; Discard All deletes every one left; Later closes, keeping the rest for the
    next start."""

    def __init__(self, parent: QWidget | None, found: list[RecoverableProject]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Recover Unsaved Work")
        self.resize(600, 320)
        self.remaining = list(found)
        self.chosen: RecoverableProject | None = None
        self.discarded: list[RecoverableProject] = []
        intro = QLabel(f"StyleCLIP Desktop did not close properly last time. {len(found)} documents have "
                       "unsaved changes. Recover opens the selected one; the others are offered again at the "
                       "next start unless you discard them.")
        intro.setWordWrap(True)
        self.list = QListWidget()
        for item in found:
            where = str(item.project_path) if item.project_path is not None else "never saved"
            self.list.addItem(f"{item.title} — {where} — autosaved {_when(item)}")
        self.list.setCurrentRow(0)
        self.list.itemDoubleClicked.connect(lambda _item: self._recover())
        buttons = QDialogButtonBox()
        self.recover_button = QPushButton("Recover")
        self.recover_button.setDefault(True)
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Delete the selected document's autosaved changes")
        self.discard_all_button = QPushButton("Discard All")
        self.later_button = QPushButton("Later")
        self.later_button.setToolTip("Keep them all and ask at the next start")
        buttons.addButton(self.recover_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.discard_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        buttons.addButton(self.discard_all_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        buttons.addButton(self.later_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.recover_button.clicked.connect(self._recover)
        self.discard_button.clicked.connect(self._discard)
        self.discard_all_button.clicked.connect(self._discard_all)
        self.later_button.clicked.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.list, 1)
        lay.addWidget(buttons)

    def _selected(self) -> int:
        row = self.list.currentRow()
        return row if 0 <= row < len(self.remaining) else -1

    def _recover(self) -> None:
        row = self._selected()
        if row >= 0:
            self.chosen = self.remaining[row]
            self.accept()

    def _discard(self) -> None:
        row = self._selected()
        if row < 0:
            return
        self.discarded.append(self.remaining.pop(row))
        self.list.takeItem(row)
        if not self.remaining:
            self.accept()

    def _discard_all(self) -> None:
        self.discarded += self.remaining
        self.remaining = []
        self.list.clear()
        self.accept()


def ask_recover_many(parent: QWidget | None,
                     found: list[RecoverableProject]) -> tuple[RecoverableProject | None, list[RecoverableProject]]:
    """(the autosave to open or None, the autosaves to delete); the rest are kept."""
    dialog = RecoverDialog(parent, found)
    dialog.exec()
    return dialog.chosen, dialog.discarded


def inform(parent: QWidget | None, text: str) -> None:
    QMessageBox.information(parent, TITLE, text)


def _last_dir(settings: QSettings, kind: str) -> str:
    value = settings.value(f"dirs/{kind}", "")
    return str(value) if value else str(Path.home())


def start_folder(state_or_doc: Any, settings: QSettings, *, kind: str = "save") -> str:
    """Where a file dialog about the open document starts: the project's folder, else the
    folder of the photo it was opened from, else the last folder used for `kind` (the home
    folder the first time). Takes the editor state or the document itself."""
    doc = getattr(state_or_doc, "document", state_or_doc)
    file_path = getattr(doc, "file_path", None)
    if file_path is not None and Path(file_path).parent.is_dir():
        return str(Path(file_path).parent)
    source = getattr(doc, "source", None)
    photo = getattr(source, "path", None)
    if isinstance(photo, str) and photo:
        folder = Path(photo).parent
        if folder.is_absolute() and folder.is_dir():
            return str(folder)
    return _last_dir(settings, kind)


def open_path(parent: QWidget | None, settings: QSettings, caption: str = "Open",
              file_filter: str = OPEN_FILTER, kind: str = "open", start: str | None = None) -> Path | None:
    """`start`: the folder to start in (default: the last one used for `kind`)."""
    name, _ = QFileDialog.getOpenFileName(parent, caption, start or _last_dir(settings, kind), file_filter)
    if not name:
        return None
    settings.setValue(f"dirs/{kind}", str(Path(name).parent))
    return Path(name)


def save_path(parent: QWidget | None, settings: QSettings, caption: str, suggested: str,
              file_filter: str = PROJECT_FILTER, suffix: str = PROJECT_SUFFIX, kind: str = "save",
              start: str | None = None) -> Path | None:
    """`start`: the folder to start in (default: the last one used for `kind`)."""
    initial = str(Path(start or _last_dir(settings, kind)) / suggested)
    name, _ = QFileDialog.getSaveFileName(parent, caption, initial, file_filter)
    if not name:
        return None
    path = Path(name)
    if suffix and not path.suffix:
        path = path.with_suffix(suffix)
    settings.setValue(f"dirs/{kind}", str(path.parent))
    return path
