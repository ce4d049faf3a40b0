"""Turn a built one-folder bundle into the platform's package.

Linux: a tar.gz (the bundle, a desktop entry, icons, install.sh), plus an AppImage when
appimagetool is installed. Windows: an Inno Setup installer when ISCC is installed.
macOS: the .app from the spec, in a .dmg when hdiutil is there (a .zip otherwise).
Standard library only, like the rest of what build_installer.py imports before the build
venv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from metadata import ICONS, PACKAGING, WINDOWS_APP_ID, AppMetadata

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def package(meta: AppMetadata, variant: str, dist: Path, out_dir: Path) -> list[Path]:
    """Build every package this machine can build; return their paths."""
    if sys.platform.startswith("linux"):
        return package_linux(meta, variant, dist, out_dir)
    if sys.platform == "win32":
        return package_windows(meta, variant, dist, out_dir)
    if sys.platform == "darwin":
        return package_macos(meta, variant, dist, out_dir)
    raise SystemExit(f"no package format for {sys.platform}")


# --- Linux ------------------------------------------------------------------------------


def _linux_tree(meta: AppMetadata, bundle: Path, top: Path) -> None:
    """The archive's layout: the bundle folder next to freedesktop files and the installer script."""
    if top.exists():
        shutil.rmtree(top)
    top.mkdir(parents=True)
    shutil.copytree(bundle, top / meta.name, symlinks=True)
    apps = top / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy2(PACKAGING / "linux" / f"{meta.name}.desktop", apps)
    hicolor = top / "share" / "icons" / "hicolor"
    for size in ICON_SIZES:
        d = hicolor / f"{size}x{size}" / "apps"
        d.mkdir(parents=True)
        shutil.copy2(ICONS / "png" / f"{meta.name}-{size}.png", d / f"{meta.name}.png")
    (hicolor / "scalable" / "apps").mkdir(parents=True)
    shutil.copy2(ICONS / f"{meta.name}.svg", hicolor / "scalable" / "apps")
    shutil.copy2(PACKAGING / "linux" / "install.sh", top / "install.sh")
    os.chmod(top / "install.sh", 0o755)


def package_linux(meta: AppMetadata, variant: str, dist: Path, out_dir: Path) -> list[Path]:
    stem = meta.package_stem(variant)
    staging = out_dir / "staging"
    top = staging / stem
    _linux_tree(meta, dist / meta.name, top)
    archive = out_dir / f"{stem}.tar.gz"
    print(f"packing {archive.name} ...", flush=True)
    # Level 6 is nearly as small as 9 on native libraries and twice as fast.
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(top, arcname=stem)
    made = [archive]
    appimage = _appimage(meta, variant, top, out_dir)
    if appimage is not None:
        made.append(appimage)
    shutil.rmtree(staging)
    return made


def _appimage(meta: AppMetadata, variant: str, top: Path, out_dir: Path) -> Path | None:
    tool = shutil.which("appimagetool")
    if tool is None:
        print("appimagetool not found: skipping the AppImage (the tar.gz is complete on its own)")
        return None
    appdir = out_dir / "staging" / "AppDir"
    shutil.copytree(top / meta.name, appdir / "usr" / "lib" / meta.name, symlinks=True)
    shutil.copy2(PACKAGING / "linux" / f"{meta.name}.desktop", appdir)
    shutil.copy2(ICONS / "png" / f"{meta.name}-256.png", appdir / f"{meta.name}.png")
    apprun = appdir / "AppRun"
    apprun.write_text(f'#!/bin/sh\nexec "$APPDIR/usr/lib/{meta.name}/{meta.name}" "$@"\n')
    apprun.chmod(0o755)
    target = out_dir / f"{meta.package_stem(variant)}.AppImage"
    env = {**os.environ, "ARCH": os.uname().machine}
    subprocess.run([tool, "--no-appstream", str(appdir), str(target)], check=True, env=env)
    return target


# --- Windows ----------------------------------------------------------------------------


def windows_version_file(meta: AppMetadata, path: Path) -> Path:
    """PyInstaller's version resource (Explorer's Details tab), filled from pyproject.toml."""
    nums = meta.numeric_version
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={nums}, prodvers={nums}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
      StringStruct('CompanyName', {meta.publisher!r}),
      StringStruct('FileDescription', {meta.display_name!r}),
      StringStruct('FileVersion', {meta.version!r}),
      StringStruct('InternalName', {meta.name!r}),
      StringStruct('OriginalFilename', {meta.name + '.exe'!r}),
      StringStruct('ProductName', {meta.display_name!r}),
      StringStruct('ProductVersion', {meta.version!r})])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
""", encoding="utf-8")
    return path


def iscc_defines(meta: AppMetadata, variant: str, dist: Path, out_dir: Path) -> list[str]:
    values = {
        "AppName": meta.display_name,
        "AppVersion": meta.version,
        "AppNumericVersion": ".".join(str(n) for n in meta.numeric_version),
        "AppPublisher": meta.publisher,
        "AppDescription": meta.description,
        "AppExeName": f"{meta.name}.exe",
        "AppGuid": WINDOWS_APP_ID,
        "SourceDir": str(dist / meta.name),
        "SetupIconFile": str(ICONS / f"{meta.name}.ico"),
        "OutputDir": str(out_dir),
        "OutputBaseFilename": f"{meta.package_stem(variant)}-setup",
    }
    return [f"/D{k}={v}" for k, v in values.items()]


def package_windows(meta: AppMetadata, variant: str, dist: Path, out_dir: Path) -> list[Path]:
    script = PACKAGING / "windows" / f"{meta.name}.iss"
    defines = iscc_defines(meta, variant, dist, out_dir)
    iscc = shutil.which("iscc") or shutil.which("ISCC") or next(
        (str(p) for p in (Path(os.environ.get("ProgramFiles(x86)", r"C:\Program Files (x86)")) / "Inno Setup 6"
                          / "ISCC.exe",) if p.is_file()), None)
    zipped = Path(shutil.make_archive(str(out_dir / meta.package_stem(variant)), "zip", dist, meta.name))
    if iscc is None:
        print("Inno Setup (ISCC.exe) not found: made the portable .zip only. To make the installer run:\n  iscc "
              + " ".join(f'"{d}"' for d in defines) + f' "{script}"')
        return [zipped]
    subprocess.run([iscc, *defines, str(script)], check=True)
    return [out_dir / f"{meta.package_stem(variant)}-setup.exe", zipped]


# --- macOS ------------------------------------------------------------------------------


def package_macos(meta: AppMetadata, variant: str, dist: Path, out_dir: Path) -> list[Path]:
    app = dist / f"{meta.display_name}.app"
    if not app.is_dir():
        raise SystemExit(f"{app} was not built")
    stem = meta.package_stem(variant)
    hdiutil = shutil.which("hdiutil")
    if hdiutil is None:
        print("hdiutil not found: packing the .app into a .zip instead of a .dmg")
        return [Path(shutil.make_archive(str(out_dir / stem), "zip", dist, app.name))]
    staging = out_dir / "staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copytree(app, staging / app.name, symlinks=True)
    # The usual drag-to-install window: the app beside a link to /Applications.
    (staging / "Applications").symlink_to("/Applications")
    dmg = out_dir / f"{stem}.dmg"
    subprocess.run([hdiutil, "create", "-volname", meta.display_name, "-srcfolder", str(staging),
                    "-ov", "-format", "UDZO", str(dmg)], check=True)
    shutil.rmtree(staging)
    return [dmg]
