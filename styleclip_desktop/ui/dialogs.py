"""The small modal questions the shell asks, in one place (tests replace these functions).

File dialogs remember the last folder per kind in QSettings.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

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


def ask_recover(parent: QWidget | None, found: RecoverableProject) -> bool:
    when = datetime.datetime.fromtimestamp(found.saved_at).strftime("%Y-%m-%d %H:%M")
    answer = QMessageBox.question(
        parent, TITLE,
        f'StyleCLIP Desktop did not close properly last time. Recover "{found.title}" (autosaved {when})?',
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
    return answer == QMessageBox.StandardButton.Yes


def inform(parent: QWidget | None, text: str) -> None:
    QMessageBox.information(parent, TITLE, text)


def _last_dir(settings: QSettings, kind: str) -> str:
    value = settings.value(f"dirs/{kind}", "")
    return str(value) if value else str(Path.home())


def open_path(parent: QWidget | None, settings: QSettings, caption: str = "Open",
              file_filter: str = OPEN_FILTER, kind: str = "open") -> Path | None:
    name, _ = QFileDialog.getOpenFileName(parent, caption, _last_dir(settings, kind), file_filter)
    if not name:
        return None
    settings.setValue(f"dirs/{kind}", str(Path(name).parent))
    return Path(name)


def save_path(parent: QWidget | None, settings: QSettings, caption: str, suggested: str,
              file_filter: str = PROJECT_FILTER, suffix: str = PROJECT_SUFFIX, kind: str = "save") -> Path | None:
    start = str(Path(_last_dir(settings, kind)) / suggested)
    name, _ = QFileDialog.getSaveFileName(parent, caption, start, file_filter)
    if not name:
        return None
    path = Path(name)
    if suffix and not path.suffix:
        path = path.with_suffix(suffix)
    settings.setValue(f"dirs/{kind}", str(path.parent))
    return path
