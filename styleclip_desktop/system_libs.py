"""The system libraries the editor's window needs on Linux, checked before Qt loads.

Qt's libraries come with PySide6, but its X11 ("xcb") platform plugin and its OpenGL,
font and keyboard support use libraries of the system. When one is missing, Qt aborts
with a message about plugins that does not say what to install. `check_gui_libraries()`
finds the missing ones first and names the packages that provide them, in one line.
No Qt is imported here.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Library file (soname) -> the Debian/Ubuntu package that provides it.
CORE_LIBRARIES: dict[str, str] = {  # every Qt window, whatever the platform
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}
XCB_LIBRARIES: dict[str, str] = {  # the X11 platform plugin
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
}

Finder = Callable[[str], bool]


def library_present(soname: str) -> bool:
    """Whether the dynamic loader finds this library (as Qt's plugin would), or PySide6 bundles it."""
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        pass
    try:
        import importlib.util

        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(p) / "Qt" / "lib" / soname).is_file() for p in spec.submodule_search_locations)


def qt_platform(env: Mapping[str, str]) -> str | None:
    """The platform plugin Qt will start with: 'xcb', 'wayland', another forced one, or None
    when there is no display at all."""
    forced = env.get("QT_QPA_PLATFORM", "").strip()
    if forced:
        return forced.split(";")[0].split(":")[0].lower()
    wayland = bool(env.get("WAYLAND_DISPLAY"))
    if wayland and (not env.get("DISPLAY") or env.get("XDG_SESSION_TYPE", "").lower() == "wayland"):
        return "wayland"
    if env.get("DISPLAY"):
        return "xcb"
    return None


def missing_gui_libraries(env: Mapping[str, str] | None = None, finder: Finder | None = None) -> list[str]:
    """The sonames the window needs on this platform that the loader cannot find."""
    env = os.environ if env is None else env
    finder = finder or library_present
    wanted = dict(CORE_LIBRARIES)
    if qt_platform(env) == "xcb":
        wanted.update(XCB_LIBRARIES)
    return [soname for soname in wanted if not finder(soname)]


def install_hint(missing: list[str]) -> str:
    packages = []
    for soname in missing:
        package = CORE_LIBRARIES.get(soname) or XCB_LIBRARIES.get(soname) or soname
        if package not in packages:
            packages.append(package)
    return (f"the editor's window needs system libraries that are missing ({', '.join(missing)}); "
            f"on Debian or Ubuntu install them with: sudo apt install {' '.join(packages)}")


def gui_problem(env: Mapping[str, str] | None = None, finder: Finder | None = None,
                platform: str | None = None) -> str | None:
    """One sentence saying why the editor's window cannot open here, or None when it can."""
    if not (platform or sys.platform).startswith("linux"):
        return None
    env = os.environ if env is None else env
    kind = qt_platform(env)
    if kind is None:
        return ("no display to open the editor's window on (neither DISPLAY nor WAYLAND_DISPLAY is set); "
                "start it from a desktop session, or use the commands: styleclip-desktop --help")
    missing = missing_gui_libraries(env, finder)
    return install_hint(missing) if missing else None


def check_gui_libraries(env: Mapping[str, str] | None = None, finder: Finder | None = None) -> int:
    """0 when the window can open; otherwise the reason on stderr in one line, and 1."""
    problem = gui_problem(env, finder)
    if problem is None:
        return 0
    print(f"styleclip-desktop: error: {problem}", file=sys.stderr)
    return 1
