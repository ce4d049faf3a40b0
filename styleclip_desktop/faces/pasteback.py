"""Putting an edited face back into the user's photo at the photo's own resolution.

The generator only ever sees the aligned square; the user wants their whole photo back.
The generated face is warped with the inverse of the alignment and blended in through a
soft elliptical mask, so hair and background at the square's edge stay the photo's own and
no seam shows where the two meet.
"""

from __future__ import annotations

import cv2
import numpy as np

from styleclip_desktop.faces.align import Alignment

# The face region of an FFHQ crop, as fractions of its side: the eyes sit near y = 0.47 and
# the mouth near y = 0.74, so this ellipse spans brow to chin and cheek to cheek.
FACE_CENTER = (0.5, 0.54)
FACE_AXES = (0.34, 0.40)
FEATHER = 0.04


def face_mask(
    size: int,
    *,
    center: tuple[float, float] = FACE_CENTER,
    axes: tuple[float, float] = FACE_AXES,
    feather: float = FEATHER,
) -> np.ndarray:
    """A (size, size) float32 mask in [0, 1]: 1 on the face, fading to 0 outside the ellipse.

    The hard ellipse is shrunk by two feather widths before blurring, so the fade finishes
    inside the given axes and the mask is exactly zero at the crop's edges."""
    if size < 1:
        raise ValueError("mask size must be positive")
    sigma = max(feather * size, 0.5)
    ax = max(axes[0] * size - 2 * sigma, 1.0)
    ay = max(axes[1] * size - 2 * sigma, 1.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = center[0] * size - 0.5, center[1] * size - 0.5
    inside = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0
    mask = inside.astype(np.float32)
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma), 0.0, 1.0)


def _translation(dx: float, dy: float) -> np.ndarray:
    t = np.eye(3)
    t[0, 2], t[1, 2] = dx, dy
    return t


def paste_back(
    photo: np.ndarray,
    face: np.ndarray,
    alignment: Alignment,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Blend `face` (a crop in `alignment`'s square, any resolution) into a copy of `photo`.

    `mask` is in crop coordinates at the face's resolution (default: `face_mask`)."""
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError("photo must be an HxWx3 uint8 array")
    if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1]:
        raise ValueError("face must be a square HxWx3 image")
    face_size = int(face.shape[0])
    if mask is None:
        mask = face_mask(face_size)
    if mask.shape != (face_size, face_size):
        raise ValueError(f"mask must be {face_size}x{face_size}, got {mask.shape}")
    face_f: np.ndarray = face.astype(np.float32)
    mask_f: np.ndarray = mask.astype(np.float32)

    # When the face is much smaller in the photo than the crop, shrink the crop first with
    # area averaging: a direct warp would alias fine detail such as hair into moire.
    target = max(1, round(alignment.quad_size))
    if target < face_size * 0.9:
        face_f = cv2.resize(face_f, (target, target), interpolation=cv2.INTER_AREA)
        mask_f = cv2.resize(mask_f, (target, target), interpolation=cv2.INTER_AREA)
        face_size = target
    al = alignment.resized(face_size) if face_size != alignment.size else alignment

    h, w = photo.shape[:2]
    q = al.quad
    x0 = max(int(np.floor(q[:, 0].min())) - 2, 0)
    y0 = max(int(np.floor(q[:, 1].min())) - 2, 0)
    x1 = min(int(np.ceil(q[:, 0].max())) + 3, w)
    y1 = min(int(np.ceil(q[:, 1].max())) + 3, h)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out  # the square lies outside the photo: nothing of the face is visible
    region_to_crop = al.matrix @ _translation(x0, y0)
    dsize = (x1 - x0, y1 - y0)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(face_f, region_to_crop[:2], dsize, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(
        mask_f, region_to_crop[:2], dsize, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    alpha = np.clip(alpha, 0.0, 1.0)[:, :, None]
    base = photo[y0:y1, x0:x1].astype(np.float32)
    blended = base + (warped - base) * alpha
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
