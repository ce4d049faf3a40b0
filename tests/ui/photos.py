"""Photos for the GUI tests: an 81x61 gradient with the demo's 32 px face pasted 1:1 at
(24, 14), and the seed's face scaled up to a 128 px photo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from styleclip_desktop.document import Alignment, Document, Layer, SourcePhoto

PASTE_AT = np.array([[1.0, 0.0, -24.0], [0.0, 1.0, -14.0], [0.0, 0.0, 1.0]])  # photo -> 32 px crop


def write_gradient_photo(folder: Path) -> Path:
    """An 81x61 gradient "photo" in a folder of its own."""
    folder.mkdir()
    yy, xx = np.mgrid[0:61, 0:81]
    rgb = np.stack([xx * 255 // 81, yy * 255 // 61, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    path = folder / "portrait.png"
    Image.fromarray(rgb).save(path)
    return path


def write_face_photo(path: Path, engine: Any, doc: Document) -> Path:
    """A 128 px "photo": `doc`'s render, scaled up."""
    Image.fromarray(engine.render(doc)).resize((128, 128), Image.Resampling.BICUBIC).save(path)
    return path


def pasted_into(doc: Document, photo: Path, layers: Sequence[Layer] = ()) -> Document:
    """`doc`'s face in `photo` (pasted 1:1 at (24, 14)), with `layers`."""
    return Document(doc.latent, layers=list(layers), source=SourcePhoto.from_file(photo),
                    alignment=Alignment(PASTE_AT, 32), synthetic=True)
