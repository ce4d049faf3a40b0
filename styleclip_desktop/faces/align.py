"""FFHQ-style face alignment: landmarks -> an oriented square -> a crop the generator knows.

StyleGAN2's FFHQ model only reproduces faces framed the way its training set was framed, so
the crop follows the FFHQ recipe exactly: the square is centred a tenth of the way from the
eye midpoint to the mouth midpoint, its half-side is the larger of twice the eye distance
and 1.8 times the eye-to-mouth distance, and its x axis blends the eye line with the
perpendicular of the eye-to-mouth line so that a tilted head is straightened.

Coordinates everywhere in faces/ are pixel-centre coordinates: pixel (row i, column j) sits
at (x=j, y=i). The same convention holds in the photo and in the crop, so `Alignment.matrix`
maps a landmark in the photo straight to where it lands in the crop, and `inverse` maps back
for paste-back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

# The shapes of landmark sets we know: (4,2) manual (eye, eye, mouth corner, mouth corner),
# (5,2) detector order (eye, eye, nose, mouth corner, mouth corner), (68,2) the iBUG layout.
_IBUG_EYES = (slice(36, 42), slice(42, 48))
_IBUG_MOUTH = (48, 54)


def _rot90(v: np.ndarray) -> np.ndarray:
    """Rotate by +90 degrees in image coordinates (y down): the eye line's right-hand normal."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def split_landmarks(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (two eye centres, two mouth corners) from any landmark layout we accept."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2:
        raise ValueError(f"landmarks must be an (N, 2) array, got shape {lm.shape}")
    if lm.shape[0] == 4:
        return lm[0:2].copy(), lm[2:4].copy()
    if lm.shape[0] == 5:
        return lm[0:2].copy(), lm[3:5].copy()
    if lm.shape[0] == 68:
        eyes = np.stack([lm[_IBUG_EYES[0]].mean(axis=0), lm[_IBUG_EYES[1]].mean(axis=0)])
        return eyes, lm[list(_IBUG_MOUTH)].copy()
    raise ValueError(f"expected 4, 5 or 68 landmarks, got {lm.shape[0]}")


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The oriented crop square in photo coordinates: (4, 2) corners, in the order
    top-left, bottom-left, bottom-right, top-right of the upright face."""
    eyes, mouth = split_landmarks(landmarks)
    if not (np.all(np.isfinite(eyes)) and np.all(np.isfinite(mouth))):
        raise ValueError("landmarks contain NaN or infinite values")
    eye_avg = eyes.mean(axis=0)
    mouth_avg = mouth.mean(axis=0)
    eye_to_mouth = mouth_avg - eye_avg
    eye_to_eye = eyes[1] - eyes[0]
    # Detectors disagree on whose "left" eye is meant; the one orientation in which the eye
    # line's normal points at the mouth is the upright one, whatever the labels say.
    if float(np.dot(_rot90(eye_to_eye), eye_to_mouth)) < 0:
        eye_to_eye = -eye_to_eye
    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = float(np.hypot(*x))
    if norm < 1e-6:
        raise ValueError("the landmarks are degenerate (eyes and mouth coincide)")
    x = x / norm * max(float(np.hypot(*eye_to_eye)) * 2.0, float(np.hypot(*eye_to_mouth)) * 1.8)
    y = _rot90(x)
    c = eye_avg + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@dataclass(frozen=True)
class Alignment:
    """Where the crop sits in the photo. `matrix` maps photo points to crop points (3x3,
    homogeneous, pixel-centre coordinates); `inverse` maps crop points back."""

    matrix: np.ndarray
    inverse: np.ndarray
    size: int
    quad: np.ndarray  # (4, 2) crop corners in the photo: TL, BL, BR, TR

    @property
    def quad_size(self) -> float:
        """Side length of the crop square, in photo pixels."""
        return float(np.hypot(*(self.quad[3] - self.quad[0])))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        return _apply(self.matrix, points)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        return _apply(self.inverse, points)

    def resized(self, size: int) -> Alignment:
        """The same crop square rendered at another resolution (e.g. the generator's)."""
        return alignment_from_quad(self.quad, size)

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "quad": self.quad.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Alignment:
        quad = np.asarray(d["quad"], dtype=np.float64)
        size = d["size"]
        if not isinstance(size, int | float):
            raise ValueError("alignment size must be a number")
        return alignment_from_quad(quad, int(size))


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    flat = p.reshape(-1, 2)
    out = flat @ m[:2, :2].T + m[:2, 2]
    return out.reshape(p.shape)


def alignment_from_quad(quad: np.ndarray, size: int) -> Alignment:
    """The affine map taking the quad's corners to the corners of a `size` square crop."""
    if size < 1:
        raise ValueError("crop size must be positive")
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    # The quad's outer corners are pixel edges: they land half a pixel outside the first and
    # last pixel centres of the crop, exactly as the square's edges do.
    lo, hi = -0.5, size - 0.5
    dst = np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]], dtype=np.float64)
    src_h = np.concatenate([q, np.ones((4, 1))], axis=1)
    sol, *_ = np.linalg.lstsq(src_h, dst, rcond=None)
    m = np.eye(3)
    m[:2, :] = sol.T
    return Alignment(matrix=m, inverse=np.linalg.inv(m), size=int(size), quad=q.copy())


def alignment_from_landmarks(landmarks: np.ndarray, size: int = 1024) -> Alignment:
    return alignment_from_quad(ffhq_quad(landmarks), size)


class AlignedFace(NamedTuple):
    alignment: Alignment
    image: np.ndarray  # (size, size, 3) uint8


def align_face(photo: np.ndarray, landmarks: np.ndarray, size: int = 1024) -> AlignedFace:
    """Crop and straighten the face in `photo` (HxWx3 uint8) to a `size` x `size` FFHQ crop."""
    alignment = alignment_from_landmarks(landmarks, size)
    return AlignedFace(alignment, warp_to_crop(photo, alignment))


def _translation(dx: float, dy: float) -> np.ndarray:
    t = np.eye(3)
    t[0, 2], t[1, 2] = dx, dy
    return t


def _scaling(sx: float, sy: float) -> np.ndarray:
    # Scaling about pixel edges, written for pixel-centre coordinates.
    return _translation(sx * 0.5 - 0.5, sy * 0.5 - 0.5) @ np.diag([sx, sy, 1.0])


def _feather_padding(img: np.ndarray, pads: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Blur the reflected border and fade it towards the picture's median colour, so that
    the made-up area reads as out-of-focus background instead of a mirrored face."""
    left, top, right, bottom = pads
    h, w = img.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    mask = np.full((h, w), -np.inf, dtype=np.float32)
    # 1 at the outer edge of the padding, 0 at the photo's edge, negative inside the photo.
    if left > 0:
        mask = np.maximum(mask, 1.0 - xs / left)
    if right > 0:
        mask = np.maximum(mask, 1.0 - (w - 1 - xs) / right)
    if top > 0:
        mask = np.maximum(mask, 1.0 - ys / top)
    if bottom > 0:
        mask = np.maximum(mask, 1.0 - (h - 1 - ys) / bottom)
    f = img.astype(np.float32)
    sigma = max(qsize * 0.02, 0.5)
    blurred = cv2.GaussianBlur(f, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    blur_w = np.clip(mask * 3.0 + 1.0, 0.0, 1.0)[:, :, None]
    f += (blurred - f) * blur_w
    median = np.median(f.reshape(-1, f.shape[2]), axis=0)
    f += (median[None, None, :] - f) * np.clip(mask, 0.0, 1.0)[:, :, None]
    return f


def warp_to_crop(photo: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Resample the photo into the alignment's crop, padding where the square leaves it."""
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError("photo must be an HxWx3 uint8 array")
    h, w = photo.shape[:2]
    size = alignment.size
    quad = alignment.quad
    qsize = alignment.quad_size
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0 = int(np.floor(quad[:, 0].min())) - border
    y0 = int(np.floor(quad[:, 1].min())) - border
    x1 = int(np.ceil(quad[:, 0].max())) + border + 1
    y1 = int(np.ceil(quad[:, 1].max())) + border + 1
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError("the face square lies entirely outside the photo")
    region = photo[cy0:cy1, cx0:cx1]
    # photo -> work coordinates, built up step by step as the region is cut, shrunk, padded.
    to_work = _translation(-cx0, -cy0)
    scale = min(1.0, size / qsize)
    if scale < 0.9:
        # Shrinking first with area averaging avoids the aliasing a direct warp would cause.
        rw = max(1, round(region.shape[1] * scale))
        rh = max(1, round(region.shape[0] * scale))
        sx, sy = rw / region.shape[1], rh / region.shape[0]
        region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        to_work = _scaling(sx, sy) @ to_work
    else:
        sx = sy = 1.0
    pads = (
        int(np.ceil((cx0 - x0) * sx)),
        int(np.ceil((cy0 - y0) * sy)),
        int(np.ceil((x1 - cx1) * sx)),
        int(np.ceil((y1 - cy1) * sy)),
    )
    work: np.ndarray = region
    if any(pads):
        left, top, right, bottom = pads
        mode = "reflect" if min(region.shape[:2]) > 1 else "edge"
        padded = np.pad(region, ((top, bottom), (left, right), (0, 0)), mode=mode)  # type: ignore[call-overload]
        work = _feather_padding(padded, pads, qsize * min(sx, sy))
        to_work = _translation(left, top) @ to_work
    crop_to_work = to_work @ alignment.inverse
    out = cv2.warpAffine(
        work.astype(np.float32),
        crop_to_work[:2].astype(np.float64),
        (size, size),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
