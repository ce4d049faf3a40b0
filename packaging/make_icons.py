"""Render the app icon (icons/styleclip-desktop.svg) to PNG sizes, a Windows ICO and a macOS ICNS.

The SVG is the only drawn source; everything else here is derived from it, so an icon
change is one edit and one run:

    python packaging/make_icons.py      (needs PySide6 and Pillow)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent / "icons"
SVG = ICONS / "styleclip-desktop.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def png_path(size: int) -> Path:
    return ICONS / "png" / f"styleclip-desktop-{size}.png"


def outputs() -> list[Path]:
    return [*(png_path(s) for s in SIZES), ICONS / "styleclip-desktop.ico", ICONS / "styleclip-desktop.icns"]


def up_to_date() -> bool:
    src = SVG.stat().st_mtime
    return all(p.is_file() and p.stat().st_mtime >= src for p in outputs())


def render_pngs() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG")
    png_path(16).parent.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        # Each size is rendered from the vector, not scaled down from 512: small sizes stay sharp.
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        if not image.save(str(png_path(size))):
            raise SystemExit(f"could not write {png_path(size)}")
    del app


def write_ico_icns() -> None:
    from PIL import Image

    images = {s: Image.open(png_path(s)).convert("RGBA") for s in SIZES}
    biggest = images[max(ICO_SIZES)]
    biggest.save(ICONS / "styleclip-desktop.ico", sizes=[(s, s) for s in ICO_SIZES],
                 append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)])
    # Pillow writes ICNS on every platform; it picks the standard sizes it needs from these.
    images[512].save(ICONS / "styleclip-desktop.icns", append_images=[images[s] for s in (16, 32, 64, 128, 256)])


def main() -> int:
    render_pngs()
    write_ico_icns()
    print(f"icons: {len(SIZES)} PNG sizes, ICO and ICNS in {ICONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
