"""Fixtures for the GUI tests: QSettings in a temp folder, the synthetic demo models, a
real render engine on them, and editor states and windows that clean up after themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication

from styleclip_desktop.document import Document
from styleclip_desktop.ui.model_source import ModelSource

from .photos import write_face_photo, write_gradient_photo

# The tests' engine: torch only, no background ONNX export competing for the CPU.
ENGINE_OPTIONS: dict[str, Any] = {"backend": "torch", "background_export": False}


@pytest.fixture
def dialogs_shown(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Message boxes never block a test: their texts are collected here instead."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []

    def record(answer: QMessageBox.StandardButton) -> Any:
        def show(parent: Any, title: str, text: str, *args: Any, **kwargs: Any) -> QMessageBox.StandardButton:
            shown.append(text)
            return answer
        return staticmethod(show)

    for name in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, name, record(QMessageBox.StandardButton.Ok))
    monkeypatch.setattr(QMessageBox, "question", record(QMessageBox.StandardButton.No))
    return shown


@pytest.fixture
def ui_settings(tmp_path: Path) -> QSettings:
    """Settings in a file of this test's own, never the user's."""
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="session")
def demo_source() -> ModelSource:
    """The synthetic demo set (32 px), written where the model wizard looks for it."""
    from styleclip_desktop.ui.model_source import create_demo_models, demo_dir, demo_ready

    folder = demo_dir()
    if demo_ready(folder):
        return ModelSource.demo_in(folder, "cpu")
    return create_demo_models(folder, resolution=32).with_device("cpu")


@pytest.fixture(scope="session")
def engine(demo_source: ModelSource) -> Iterator[Any]:
    from styleclip_desktop.ui.loader import load_engine

    eng, _notices = load_engine(demo_source, lambda *a: None, lambda: False, **ENGINE_OPTIONS)
    yield eng
    eng.shutdown()


@pytest.fixture
def gradient_photo(tmp_path: Path) -> Path:
    return write_gradient_photo(tmp_path / "photos")


@pytest.fixture
def face_photo(tmp_path: Path, engine: Any, seed_document: Document) -> Path:
    return write_face_photo(tmp_path / "photo.png", engine, seed_document)


@pytest.fixture
def seed_document(engine: Any) -> Document:
    from styleclip_desktop.ui.engines import generator_of

    G = generator_of(engine)
    latent = G.broadcast_w(G.sample_w(1, 3, 0.7))[0].cpu().numpy().astype(np.float32)
    return Document(latent, seed=3, synthetic=True, description="seed 3")


@pytest.fixture
def make_window(qapp: QApplication, qtbot: Any, ui_settings: QSettings, demo_source: ModelSource,
                monkeypatch: pytest.MonkeyPatch, dialogs_shown: list[str]) -> Iterator[Any]:
    """Build main windows on the shared engine; closing them never prompts and never
    shuts the shared engine down."""
    from styleclip_desktop.ui import dialogs
    from styleclip_desktop.ui.main_window import MainWindow

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, title: dialogs.DISCARD)
    monkeypatch.setattr(dialogs, "ask_recover", lambda parent, found: False)
    monkeypatch.setattr(dialogs, "ask_recover_many", lambda parent, found: (None, []))
    windows: list[MainWindow] = []

    def make(engine: Any = None, source: ModelSource | None = None) -> MainWindow:
        w = MainWindow(ui_settings, source or demo_source, engine_options=ENGINE_OPTIONS)
        w.demo_resolution = 32
        qtbot.addWidget(w)
        if engine is not None:
            w.state.set_engine(engine)
        if ui_settings.value("window/geometry") is None:
            w.resize(1200, 800)
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.loader.cancel()
        w.loader.wait(30)
        if w.wizard is not None:
            w.wizard.close()
        w.close()  # shuts down the engine the window loaded itself, never the shared one
        w.state.undo_stack.blockSignals(True)


@pytest.fixture
def opened_folders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders the app asked the desktop to open (nothing is really opened)."""
    opened: list[str] = []

    def record(url: QUrl) -> bool:
        opened.append(url.toLocalFile())
        return True

    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(record))
    return opened
