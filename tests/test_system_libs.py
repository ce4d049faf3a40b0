"""Starting the editor without the system libraries its window needs: one line naming the
packages to install, exit status 1, and Qt never loaded (it would abort unexplained)."""

from __future__ import annotations

import sys

import pytest

from styleclip_desktop import system_libs
from styleclip_desktop.cli import main


def _missing(*names: str):  # type: ignore[no-untyped-def]
    return lambda soname: soname not in names


@pytest.fixture
def x11(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    return monkeypatch


def test_a_missing_xcb_library_names_its_package_and_exits_1_before_qt(
        x11: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    x11.setattr(system_libs, "library_present", _missing("libxcb-cursor.so.0"))
    # Were Qt's widgets imported, this would fail with an ImportError instead.
    x11.setitem(sys.modules, "PySide6.QtWidgets", None)
    assert main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0] == ("styleclip-desktop: error: the editor's window needs system libraries that are missing "
                        "(libxcb-cursor.so.0); on Debian or Ubuntu install them with: sudo apt install libxcb-cursor0")


def test_every_missing_library_is_named_once_by_package(x11: pytest.MonkeyPatch) -> None:
    finder = _missing("libxcb-icccm.so.4", "libxkbcommon-x11.so.0", "libEGL.so.1")
    problem = system_libs.gui_problem(finder=finder)
    assert problem is not None and "\n" not in problem
    assert problem.endswith("sudo apt install libegl1 libxcb-icccm4 libxkbcommon-x11-0")
    assert "libxcb-icccm.so.4" in problem and "libxkbcommon-x11.so.0" in problem


def test_no_display_at_all_is_said_in_one_line(x11: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    x11.delenv("DISPLAY")
    x11.setattr(system_libs, "library_present", _missing())
    x11.setitem(sys.modules, "PySide6.QtWidgets", None)
    assert main([]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no display" in err and "DISPLAY" in err and "WAYLAND_DISPLAY" in err


def test_only_the_platform_in_use_needs_its_libraries(x11: pytest.MonkeyPatch) -> None:
    no_xcb = _missing(*system_libs.XCB_LIBRARIES)
    assert system_libs.gui_problem(finder=no_xcb) is not None  # X11: the xcb plugin's libraries
    assert system_libs.gui_problem({"WAYLAND_DISPLAY": "wayland-0"}, finder=no_xcb) is None
    assert system_libs.gui_problem({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland"},
                                   finder=no_xcb) is None
    assert system_libs.gui_problem({"QT_QPA_PLATFORM": "offscreen"}, finder=no_xcb) is None
    assert system_libs.gui_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, finder=no_xcb) is not None
    # What every Qt window needs counts on any platform.
    problem = system_libs.gui_problem({"QT_QPA_PLATFORM": "offscreen"}, finder=_missing("libGL.so.1"))
    assert problem is not None and problem.endswith("sudo apt install libgl1")
    assert system_libs.gui_problem(finder=_missing()) is None
    assert system_libs.check_gui_libraries(finder=_missing()) == 0


def test_other_systems_are_not_checked(x11: pytest.MonkeyPatch) -> None:
    assert system_libs.gui_problem({}, finder=_missing("libGL.so.1"), platform="darwin") is None
    assert system_libs.gui_problem({}, finder=_missing("libGL.so.1"), platform="win32") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux library names")
def test_the_loader_is_asked() -> None:
    assert system_libs.library_present("libc.so.6")
    assert not system_libs.library_present("libstyleclip-no-such-library.so.9")
