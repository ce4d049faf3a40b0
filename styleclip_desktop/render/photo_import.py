"""Opening a photo: load -> detect -> align -> invert (-> refine) -> a new `Document`.

One function serves the GUI's File > Open and the CLI's `invert` / `edit PHOTO`.
Steps report progress as (done, total, message) and can be cancelled between steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from styleclip_desktop.document import Alignment as DocAlignment
from styleclip_desktop.document import Document, SourcePhoto
from styleclip_desktop.errors import Cancelled, UserError

ProgressFn = Callable[[int, int, str], None]
METHODS = ("e4e", "project", "pti")


@dataclass
class PhotoFaces:
    """A loaded photo and the faces found in it, in the order to offer them (`rank_faces`)."""

    path: Path
    data: bytes
    pixels: np.ndarray  # HxWx3 uint8, upright
    faces: list[np.ndarray]  # each (K, 2) landmarks in photo pixels
    low_confidence: list[bool] = field(default_factory=list)  # per face: the detector was unsure
    fallback: bool = False  # found by the approximate offline detector (Haar), not YuNet

    @property
    def count(self) -> int:
        return len(self.faces)

    def is_low_confidence(self, index: int) -> bool:
        return index < len(self.low_confidence) and self.low_confidence[index]


# A face enlarged more than this many times to fill the generator's crop looks soft.
SOFT_UPSCALE = 4.0


def face_size_px(alignment: DocAlignment) -> float:
    """The side of the aligned crop in photo pixels (the crop covers the face and a margin)."""
    linear = np.asarray(alignment.matrix, np.float64)[:2, :2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))  # crop pixels per photo pixel
    return alignment.crop_size / scale if scale > 0 else float("inf")


def soft_face_notice(alignment: DocAlignment | None, upscale: float = SOFT_UPSCALE) -> str | None:
    """One sentence when the face is so small in the photo that the generator's picture of
    it is an enlargement of more than `upscale` times; None when it is large enough."""
    if alignment is None:
        return None
    size = face_size_px(alignment)
    limit = alignment.crop_size / upscale
    if size >= limit:
        return None
    return (f"The face is about {size:.0f} px across in the photo; below {limit:.0f} px it is enlarged "
            f"more than {upscale:g}x to the generator's {alignment.crop_size} px, so the edit will look soft.")


def find_faces(path: str | os.PathLike[str], detector_path: Path | None,
               landmarks: np.ndarray | None = None, *, data: bytes | None = None,
               min_side: int | None = None) -> PhotoFaces:
    """Load the photo (from `data` when given, else from `path`) and find faces; manual
    `landmarks` (4 points) replace detection. A photo whose shorter side is below
    `min_side` pixels is refused as too small."""
    from styleclip_desktop.faces.detect import detect_faces
    from styleclip_desktop.faces.imaging import load_image

    p = Path(path)
    img = load_image(p if data is None else data, name=p.name)
    if min_side is not None and min(img.pixels.shape[:2]) < min_side:
        h, w = img.pixels.shape[:2]
        raise UserError(f"{p.name} is too small: {w}x{h} px (a face needs a photo at least {min_side} px on "
                        "its shorter side)")
    if landmarks is not None:
        pts = np.asarray(landmarks, np.float64).reshape(-1, 2)
        return PhotoFaces(p, img.data, img.pixels, [pts])
    faces = detect_faces(img.pixels, detector_path, photo_name=p.name)
    return PhotoFaces(p, img.data, img.pixels, [f.landmarks for f in faces],
                      low_confidence=[f.low_confidence for f in faces],
                      fallback=any(f.approximate for f in faces))


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
    if cancelled is not None and cancelled():
        raise Cancelled()  # a job cancelled during its last step still leaves no document
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
