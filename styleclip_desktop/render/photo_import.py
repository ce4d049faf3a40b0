"""Opening a photo: load -> detect -> align -> invert (-> refine) -> a new `Document`.

One function serves the GUI's File > Open and the CLI's `invert` / `edit PHOTO`.
Steps report progress as (done, total, message) and can be cancelled between steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from styleclip_desktop.document import Alignment as DocAlignment
from styleclip_desktop.document import Document, SourcePhoto
from styleclip_desktop.errors import Cancelled, UserError

ProgressFn = Callable[[int, int, str], None]
METHODS = ("e4e", "project", "pti")


@dataclass
class PhotoFaces:
    """A loaded photo and the faces found in it (largest first)."""

    path: Path
    data: bytes
    pixels: np.ndarray  # HxWx3 uint8, upright
    faces: list[np.ndarray]  # each (K, 2) landmarks in photo pixels

    @property
    def count(self) -> int:
        return len(self.faces)


def find_faces(path: str | os.PathLike[str], detector_path: Path | None,
               landmarks: np.ndarray | None = None) -> PhotoFaces:
    """Load the photo and find faces; manual `landmarks` (4 points) replace detection."""
    from styleclip_desktop.faces.detect import detect_faces
    from styleclip_desktop.faces.imaging import load_image

    p = Path(path)
    img = load_image(p)
    if landmarks is not None:
        pts = np.asarray(landmarks, np.float64).reshape(-1, 2)
        return PhotoFaces(p, img.data, img.pixels, [pts])
    faces = detect_faces(img.pixels, detector_path, photo_name=p.name)
    return PhotoFaces(p, img.data, img.pixels, [f.landmarks for f in faces])


def import_photo(photo: PhotoFaces, G: object, encoder: object, *, face: int = 0, method: str = "e4e",
                 steps: int | None = None, seed: int = 0, progress: ProgressFn | None = None,
                 cancelled: Callable[[], bool] | None = None, pti_procedure: str = "published",
                 pti_config: object | None = None, lpips_model: object | None = None) -> Document:
    """Align face `face` of `photo`, invert it into W+ and return a new document.

    `steps` defaults to each refinement's own (projection 100; PTI as published 350, with
    its early stop). PTI as published needs `lpips_model` (`nets.lpips_net.load_lpips`)."""
    from styleclip_desktop.faces.align import align_face
    from styleclip_desktop.methods import inversion

    if method not in METHODS:
        raise UserError(f"unknown inversion method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 <= face < photo.count:
        raise UserError(f"{photo.path.name} has {photo.count} face(s); --face must be 0..{photo.count - 1}")
    total = 3 if method == "e4e" else 4
    report = progress or (lambda d, t, m: None)

    def step(i: int, msg: str) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled()
        report(i, total, msg)

    resolution = int(G.config.resolution)  # type: ignore[attr-defined]
    step(0, "aligning the face")
    aligned = align_face(photo.pixels, photo.faces[face], resolution)
    step(1, "inverting into the generator's latent space")
    w = inversion.invert_e4e(encoder, aligned.image, device=G.const.device)  # type: ignore[arg-type,attr-defined]
    generator_delta = None
    if method == "project":
        step(2, "refining the likeness (projection)")
        res = inversion.project(G, aligned.image, w, steps=steps or 100, seed=seed,  # type: ignore[arg-type]
                                progress=lambda d, t, *_: report(2, total, f"projection step {d}/{t}"),
                                cancel=cancelled)
        if res.cancelled:
            raise Cancelled()
        w = np.asarray(res.w, np.float32)
    elif method == "pti":
        step(2, "refining the likeness (pivotal tuning)")
        res2 = inversion.pti(G, aligned.image, w, steps=steps, seed=seed,  # type: ignore[arg-type]
                             progress=lambda d, t, *_: report(2, total, f"tuning step {d}/{t}"),
                             cancel=cancelled, procedure=pti_procedure, config=pti_config,
                             lpips_model=lpips_model)  # type: ignore[arg-type]
        if res2.cancelled:
            raise Cancelled()
        generator_delta = res2.delta
    report(total, total, "done")
    doc = Document(
        np.asarray(w, np.float32),
        source=SourcePhoto.from_bytes(photo.path, photo.data),
        alignment=DocAlignment(aligned.alignment.matrix, resolution),
        generator_delta=generator_delta,
        synthetic=bool(getattr(G, "synthetic", False)),
        description=f"{photo.path.name}, face {face + 1} of {photo.count}",
    )
    return doc
