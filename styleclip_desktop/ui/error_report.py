"""Errors the user sees: one clear line in a dialog; the traceback goes to the log file.

Every unhandled exception (UI thread or any other thread) and every `state.error`
message ends up here. The log lives in `data_dir()/logs`, so a bug report can attach it.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtWidgets import QMessageBox, QWidget

from styleclip_desktop import paths
from styleclip_desktop.errors import Cancelled, UserError

log = logging.getLogger("styleclip_desktop.ui")
TITLE = "StyleCLIP Desktop"
REPEAT_QUIET_S = 5.0


def log_dir() -> Path:
    return paths.data_dir() / "logs"


def setup_logging(folder: Path | None = None, level: int = logging.INFO) -> Path | None:
    """Log to `folder/styleclip-desktop.log` (rotated); returns the file, or None if unwritable."""
    folder = folder or log_dir()
    path = folder / "styleclip-desktop.log"
    root = logging.getLogger()
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    except OSError as exc:
        log.warning("cannot write the log file %s: %s", path, exc)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    handler.setLevel(level)
    handler.addFilter(_quiet_libraries)
    if root.level > level or root.level == logging.NOTSET:
        # The console keeps the verbosity it had; only the file gets more detail.
        for existing in root.handlers:
            if existing.level == logging.NOTSET:
                existing.setLevel(root.level)
        root.setLevel(level)
    root.addHandler(handler)
    return path


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Our own INFO lines, but only warnings from libraries (the ONNX exporter is chatty)."""
    return record.name.startswith("styleclip_desktop") or record.levelno >= logging.WARNING


def user_message(exc: BaseException) -> str:
    """One line a person can act on; never a traceback."""
    if isinstance(exc, UserError):
        text = str(exc)
    elif isinstance(exc, OSError):
        from styleclip_desktop.cli import describe_os_error

        text = describe_os_error(exc)
    elif isinstance(exc, MemoryError):
        text = "Out of memory: close other programs or lower the resolution, then try again."
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        text = f"Something went wrong ({type(exc).__name__}{': ' + first if first else ''})."
        text += " Details are in the log file."
    return " ".join(text.split()) or "Something went wrong."


def sentence(text: str) -> str:
    """`text` as a sentence for a status line: a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class ErrorPresenter:
    """Shows messages in a modal dialog, one at a time, without repeating itself. A message
    an action applies to (`add_action`) gets that action's button beside Close."""

    def __init__(self, parent: Callable[[], QWidget | None] = lambda: None) -> None:
        self._parent = parent
        self._showing = False
        self._recent: dict[str, float] = {}
        self._actions: list[tuple[str, Callable[[str], bool], Callable[[str], None]]] = []
        self.shown: list[str] = []
        # Views that show a kind of problem in place, beside what it is about (a layer's β),
        # claim those messages: a dialog would interrupt typing and undoing for something
        # the view already says.
        self.claims: list[Callable[[str], bool]] = []

    def add_claim(self, claim: Callable[[str], bool] | None) -> None:
        """`claim(message)` returns True when it shows the message itself (no dialog then)."""
        if claim is not None:
            self.claims.append(claim)

    def _claimed(self, message: str) -> bool:
        for claim in list(self.claims):
            try:
                if claim(message):
                    log.info("shown in place: %s", message)
                    return True
            except RuntimeError:  # the claiming view is gone (its window closed)
                self.claims.remove(claim)
        return False

    def add_action(self, label: str, applies: Callable[[str], bool], run: Callable[[str], None]) -> None:
        """Offer a button `label` with every message `applies` accepts; clicking it calls `run(message)`."""
        self._actions.append((label, applies, run))

    def show(self, message: str) -> None:
        message = " ".join(str(message).split())
        if self._claimed(message):
            return
        now = time.monotonic()
        if self._showing or now - self._recent.get(message, -1e9) < REPEAT_QUIET_S:
            log.info("not shown again: %s", message)
            return
        self._recent[message] = now
        self.shown.append(message)
        self._showing = True
        action = next((a for a in self._actions if a[1](message)), None)
        chosen: Callable[[str], None] | None = None
        try:
            if action is None:
                QMessageBox.critical(self._parent(), TITLE, message)
            else:
                box = QMessageBox(QMessageBox.Icon.Critical, TITLE, message, QMessageBox.StandardButton.Close,
                                  self._parent())
                button = box.addButton(action[0], QMessageBox.ButtonRole.AcceptRole)
                box.setDefaultButton(button)
                box.exec()
                chosen = action[2] if box.clickedButton() is button else None
        finally:
            self._showing = False
            self._recent[message] = time.monotonic()
        if chosen is not None:
            chosen(message)

    def show_exception(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            return
        if not isinstance(exc, UserError):
            log.error("unexpected error", exc_info=exc)
        else:
            log.info("error shown to the user: %s", exc)
        self.show(user_message(exc))


def install_excepthook(presenter: ErrorPresenter) -> Callable[[], None]:
    """Route unhandled exceptions to the log and the presenter; returns an uninstaller."""
    from styleclip_desktop.ui.jobs import call_in_ui

    old_hook, old_thread_hook = sys.excepthook, threading.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            old_hook(kind, exc, tb)
            return
        if exc.__traceback__ is None and tb is not None:
            exc = exc.with_traceback(tb)
        if threading.current_thread() is threading.main_thread():
            presenter.show_exception(exc)
        else:
            call_in_ui(lambda: presenter.show_exception(exc))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook

    def uninstall() -> None:
        sys.excepthook, threading.excepthook = old_hook, old_thread_hook

    return uninstall
