"""Starting the desktop editor: `styleclip-desktop` with no command.

The window appears first; torch and the models load afterwards on a thread, with their
progress in the status bar. The event loop is qasync's, so code that prefers `await`
(e.g. `render.worker.await_job`) runs on the same loop as the widgets.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from styleclip_desktop import paths

log = logging.getLogger(__name__)
ORGANIZATION = "StyleCLIP Desktop"


def run_app(args: argparse.Namespace | None = None) -> int:
    from styleclip_desktop.system_libs import check_gui_libraries

    # Before Qt loads: a missing system library would abort inside Qt, unexplained.
    if check_gui_libraries() != 0:
        return 1
    from PySide6.QtCore import QCoreApplication, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from styleclip_desktop.ui.error_report import ErrorPresenter, install_excepthook, setup_logging
    from styleclip_desktop.ui.main_window import MainWindow
    from styleclip_desktop.ui.model_source import choose_source

    debug = bool(getattr(args, "debug", False))
    log_file = setup_logging(level=logging.DEBUG if debug else logging.INFO)
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(paths.APP_NAME)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationDisplayName(paths.APP_NAME)
    settings = QSettings()
    window: MainWindow | None = None
    presenter = ErrorPresenter(lambda: window)
    uninstall = install_excepthook(presenter)
    log.info("starting the editor (log: %s)", log_file)
    try:
        source = choose_source(args, use_demo=bool(settings.value("models/use_demo", False, type=bool)))
        window = MainWindow(settings, source, presenter=presenter)
        window.show()
        QTimer.singleShot(0, window.start)  # after the first paint: the window is up before torch loads
        return _run_loop(app)
    finally:
        uninstall()


def _run_loop(app: object) -> int:
    try:
        import qasync
    except ImportError:  # the widgets work without it; only `await`-style code needs it
        return int(app.exec())  # type: ignore[attr-defined]
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closing = asyncio.Event()
    app.aboutToQuit.connect(closing.set)  # type: ignore[attr-defined]
    with loop:
        loop.run_until_complete(closing.wait())
    return 0
