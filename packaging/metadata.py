"""The product's identity for every package format, read from pyproject.toml.

pyproject.toml is the one place the version lives; the spec, the Windows installer, the
macOS Info.plist and the archive names all read it through here, so a release bumps one
line. Standard library only: the build script imports this before any build venv exists.
"""

from __future__ import annotations

import platform
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
ICONS = PACKAGING / "icons"

DISPLAY_NAME = "StyleCLIP Desktop"
# Reverse-DNS id for macOS bundles and the Linux desktop file; never shown to users.
BUNDLE_ID = "io.github.styleclip-desktop"
PUBLISHER = "StyleCLIP Desktop contributors"
# Fixed forever: Windows recognises upgrades of the same product by this GUID.
WINDOWS_APP_ID = "8E6F3C2A-51B7-4C1D-9E0A-3F7D2B6A9C41"


@dataclass(frozen=True)
class AppMetadata:
    name: str  # the distribution and executable name, e.g. styleclip-desktop
    version: str
    description: str
    license: str
    dependencies: tuple[str, ...]
    entry_point: str  # module:function of the console script
    display_name: str = DISPLAY_NAME
    bundle_id: str = BUNDLE_ID
    publisher: str = PUBLISHER

    @property
    def numeric_version(self) -> tuple[int, int, int, int]:
        """Windows and macOS want four (or three) integers; "0.2.0rc1" becomes (0, 2, 0, 0)."""
        nums = [int(n) for n in re.findall(r"\d+", self.version.split("+")[0])[:4]]
        return tuple((nums + [0, 0, 0, 0])[:4])  # type: ignore[return-value]

    def package_stem(self, variant: str) -> str:
        """e.g. styleclip-desktop-0.1.0-linux-x86_64-cpu"""
        return f"{self.name}-{self.version}-{platform_tag()}-{variant}"


def platform_tag() -> str:
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{machine}"


def read_metadata(pyproject: Path = ROOT / "pyproject.toml") -> AppMetadata:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    scripts = project.get("scripts", {})
    name = project["name"]
    lic = project.get("license", {})
    return AppMetadata(
        name=name,
        version=project["version"],
        description=project.get("description", ""),
        license=lic.get("text", "") if isinstance(lic, dict) else str(lic),
        dependencies=tuple(project.get("dependencies", ())),
        entry_point=scripts.get(name, "styleclip_desktop.cli:main"),
    )
