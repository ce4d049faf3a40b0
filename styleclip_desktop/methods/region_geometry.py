"""Face regions from the five landmarks alone: where eyes, brows, nose, lips, beard and the
face lie in the aligned-face square.

Every shape is laid out in the face's own frame: its origin is the eye midpoint, its unit
is the eye distance, `a` runs along the eye line (towards the image-right eye) and `b`
down its normal (towards the mouth). The proportions are those of an average frontal face,
so the shapes scale and turn with the face. Shapes are drawn hard, then softened by a
Gaussian of finite support: a few pixels of smooth falloff, and exactly 0 (or 1) a little
further away.

`template_landmarks` is where FFHQ alignment puts an average face's five points: the
layout used when no face is found. `plausible_face` picks the detection that is the
document's face, and `refine_mouth` moves mouth corners that the offline detector only
estimated onto the mouth OpenCV's smile cascade finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from styleclip_desktop.document.masks import MASK_SIZE
from styleclip_desktop.faces.align import alignment_from_landmarks
from styleclip_desktop.faces.detect import estimate_five_points

# Softening: a Gaussian of this sigma (in MASK_SIZE pixels), cut off at 3 sigma.
SOFT_SIGMA = MASK_SIZE / 256.0
_KSIZE = 2 * int(np.ceil(3 * SOFT_SIGMA)) + 1

# Shapes in face units (a along the eye line, b down towards the mouth; 1 = eye distance).
EYE_AXES = (0.30, 0.16)
BROW_RISE, BROW_OUT, BROW_AXES = 0.27, 0.03, (0.36, 0.09)
LIPS_WIDEN, LIPS_HALF_HEIGHT = 1.2, 0.17
NOSE_BRIDGE = 0.08
FACE_CENTRE, FACE_AXES = (0.0, 0.42), (1.0, 1.42)
HEAD_CENTRE, HEAD_AXES = (0.0, 0.10), (1.45, 1.75)
OUTSIDE_DILATE = 1.08  # "everything but the face" leaves this much margin round the face
BEARD_BELOW_NOSE = 0.12  # the beard area starts this far under the nose tip (the moustache)


def template_landmarks(size: int = MASK_SIZE) -> np.ndarray:
    """The five points (detector order) of an average upright face after FFHQ alignment
    into a `size` square: alignment maps a face's points to exactly these places."""
    points = estimate_five_points(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    return alignment_from_landmarks(points, size).to_crop(points)


def soften(hard: np.ndarray) -> np.ndarray:
    """A hard (0/1) mask with a few pixels of smooth falloff; exactly 0 beyond 3 sigma."""
    c = cv2.GaussianBlur(np.asarray(hard, np.float32), (_KSIZE, _KSIZE), SOFT_SIGMA,
                         borderType=cv2.BORDER_REPLICATE)
    c = np.clip(c, 0.0, 1.0)
    c[c < 1e-4] = 0.0
    c[c > 1.0 - 1e-4] = 1.0
    return c


@dataclass(frozen=True, eq=False)
class FaceFrame:
    """The face's frame over the MASK_SIZE square, built from five landmarks (detector order)."""

    landmarks: np.ndarray  # (5, 2) pixels
    size: int = MASK_SIZE

    @cached_property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(origin, u, n, eye distance): u along the eye line, n its normal towards the mouth."""
        lm = np.asarray(self.landmarks, np.float64)
        eyes = lm[0:2] if lm[0, 0] <= lm[1, 0] else lm[1::-1]
        v = eyes[1] - eyes[0]
        d = max(float(np.hypot(*v)), 1.0)
        u = v / d
        n = np.array([-u[1], u[0]])
        if float(np.dot(lm[3:5].mean(axis=0) - eyes.mean(axis=0), n)) < 0:  # upside down
            n = -n
        return eyes.mean(axis=0), u, n, d

    @property
    def eye_distance(self) -> float:
        return self.axes[3]

    @cached_property
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Every pixel's (a, b) face coordinates, each (size, size) float32."""
        o, u, n, d = self.axes
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float64)
        dx, dy = xs - o[0], ys - o[1]
        return ((dx * u[0] + dy * u[1]) / d).astype(np.float32), ((dx * n[0] + dy * n[1]) / d).astype(np.float32)

    def local(self, points: np.ndarray) -> np.ndarray:
        """Pixel points -> (a, b) face coordinates."""
        o, u, n, d = self.axes
        p = np.asarray(points, np.float64).reshape(-1, 2) - o
        return np.stack([p @ u, p @ n], axis=1) / d

    def pixels(self, ab: np.ndarray) -> np.ndarray:
        """(a, b) face coordinates -> pixel points."""
        o, u, n, d = self.axes
        ab = np.asarray(ab, np.float64).reshape(-1, 2)
        return o + d * (ab[:, :1] * u + ab[:, 1:] * n)

    def ellipse(self, centre: tuple[float, float] | np.ndarray, axes: tuple[float, float],
                scale: float = 1.0) -> np.ndarray:
        """A hard ellipse (axes along the eye line and its normal), as float32 0/1."""
        a, b = self.grid
        ca, cb = float(centre[0]), float(centre[1])
        r = ((a - ca) / (axes[0] * scale)) ** 2 + ((b - cb) / (axes[1] * scale)) ** 2
        return (r <= 1.0).astype(np.float32)

    def polygon(self, ab: np.ndarray) -> np.ndarray:
        """A hard polygon given in face coordinates, as float32 0/1."""
        out = np.zeros((self.size, self.size), np.uint8)
        pts = np.rint(self.pixels(ab) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=4)
        return out.astype(np.float32)

    # --- the shapes (hard) -----------------------------------------------------------

    @cached_property
    def points(self) -> np.ndarray:
        """The landmarks in face coordinates, eyes image-left first."""
        lm = self.local(self.landmarks)
        if lm[0, 0] > lm[1, 0]:
            lm[[0, 1]] = lm[[1, 0]]
        if lm[3, 0] > lm[4, 0]:
            lm[[3, 4]] = lm[[4, 3]]
        return lm

    def eyes(self) -> np.ndarray:
        p = self.points
        return np.maximum(self.ellipse(p[0], EYE_AXES), self.ellipse(p[1], EYE_AXES))

    def brows(self) -> np.ndarray:
        p = self.points
        out = np.zeros((self.size, self.size), np.float32)
        for eye, side in ((p[0], -1.0), (p[1], 1.0)):
            centre = (eye[0] + side * BROW_OUT, eye[1] - BROW_RISE)
            out = np.maximum(out, self.ellipse(centre, BROW_AXES))
        return out * (1.0 - self.eyes())

    def nose(self) -> np.ndarray:
        """From the bridge between the eyes down to the nose tip and the nostrils round it."""
        p = self.points
        ta, tb = float(p[2, 0]), max(float(p[2, 1]), NOSE_BRIDGE + 0.2)

        def centre(b: float) -> float:  # the nose's centre line leans towards its tip
            return ta * min(max((b - NOSE_BRIDGE) / (tb - NOSE_BRIDGE), 0.0), 1.0)

        half = [(0.09, NOSE_BRIDGE), (0.12, tb - 0.2), (0.25, tb + 0.02), (0.16, tb + 0.14)]
        outline = [(centre(b) + w, b) for w, b in half] + [(centre(b) - w, b) for w, b in reversed(half)]
        return self.polygon(np.array(outline)) * (1.0 - self.eyes())

    def lips(self) -> np.ndarray:
        p = self.points
        centre = (p[3] + p[4]) / 2 + np.array([0.0, 0.02])
        half_width = max(0.15, float(np.hypot(*(p[4] - p[3]))) / 2 * LIPS_WIDEN)
        return self.ellipse(centre, (half_width, LIPS_HALF_HEIGHT))

    def face(self, scale: float = 1.0) -> np.ndarray:
        """The face oval (forehead to chin, cheek to cheek); `scale` grows or shrinks it."""
        return self.ellipse(FACE_CENTRE, FACE_AXES, scale)

    def head(self) -> np.ndarray:
        """The face oval and the skull around it, where hair grows."""
        return self.ellipse(HEAD_CENTRE, HEAD_AXES)

    def beard(self) -> np.ndarray:
        """The lower face under the nose (moustache, chin, jaw, a little below the chin), minus the lips."""
        _, b = self.grid
        below = (b >= self.points[2, 1] + BEARD_BELOW_NOSE).astype(np.float32)
        return below * self.face(1.06) * (1.0 - self.lips())

    # --- evidence for labelling clusters ------------------------------------------------

    def features(self) -> np.ndarray:
        """Eyes, brows, nose and lips together."""
        return np.maximum.reduce([self.eyes(), self.brows(), self.nose(), self.lips()])

    def skin_evidence(self) -> np.ndarray:
        """The inner face: cheeks, nose, chin, without the eyes, brows and lips."""
        inner = self.ellipse((FACE_CENTRE[0], FACE_CENTRE[1] + 0.1), FACE_AXES, 0.7)
        return inner * (1.0 - np.maximum.reduce([self.eyes(), self.brows(), self.lips()]))

    def hair_evidence(self) -> np.ndarray:
        """The skull round the face, at and above the eye line: where hair usually is."""
        _, b = self.grid
        return self.head() * (1.0 - self.face()) * (b <= 0.1).astype(np.float32)

    def background_evidence(self, border: float = 0.05) -> np.ndarray:
        """The crop's border beside and above the head (the bottom shows the neck and clothes)."""
        ring = np.ones((self.size, self.size), np.float32)
        w = max(1, int(round(border * self.size)))
        ring[w:-w, w:-w] = 0.0
        _, b = self.grid
        low = self.points[3:5, 1].mean() + 0.2
        return ring * (b <= low).astype(np.float32) * (1.0 - self.head())

    def hair_exclusion(self) -> np.ndarray:
        """Where hair cannot be: the face below the brows, and the facial features."""
        _, b = self.grid
        lower_face = self.face(0.92) * (b >= -BROW_RISE + 0.05).astype(np.float32)
        return np.maximum(lower_face, self.features())


# --- landmarks ------------------------------------------------------------------------------


def plausible_face(faces: list[Any], template: np.ndarray) -> Any | None:
    """The detected face where alignment put the document's face: about the template's
    size, near its place (an aligned crop holds one face; others are bystanders or noise)."""
    t_mid, t_d = template[0:2].mean(axis=0), float(np.hypot(*(template[1] - template[0])))
    best, best_off = None, 0.5
    for face in faces:
        lm = np.asarray(face.landmarks, np.float64)
        d = float(np.hypot(*(lm[1] - lm[0])))
        off = float(np.hypot(*(lm[0:2].mean(axis=0) - t_mid))) / t_d
        if 0.6 <= d / t_d <= 1.6 and off < best_off:
            best, best_off = face, off
    return best


def refine_mouth(picture: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Move estimated mouth corners onto a mouth OpenCV's smile cascade finds where the
    mouth should be (the offline detector only estimates them); unchanged otherwise."""
    lm = np.asarray(landmarks, np.float64).copy()
    path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".") / "haarcascade_smile.xml"
    if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
        return lm
    frame = FaceFrame(lm)
    d = frame.eye_distance
    corners = frame.pixels(np.array([[-1.0, 0.55], [1.0, 0.55], [-1.0, 1.7], [1.0, 1.7]]))
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, None)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), picture.shape[1::-1])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return lm
    grey = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(picture[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY))
    cascade: Any = cv2.CascadeClassifier(str(path))  # type: ignore[attr-defined,unused-ignore]
    found = np.asarray(cascade.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=20,
                                                minSize=(max(8, int(0.5 * d)), max(4, int(0.18 * d))))).reshape(-1, 4)
    expected = frame.points[3:5].mean(axis=0)
    best, best_off = None, 0.35
    for x, y, w, h in found:
        centre = np.array([x0 + x + w / 2, y0 + y + h / 2], np.float64)
        a, b = frame.local(centre)[0]
        off = float(np.hypot(a - expected[0], b - expected[1]))
        if abs(a) < 0.3 and 0.75 <= b <= 1.45 and 0.6 <= w / d <= 1.6 and off < best_off:
            best, best_off = (centre, float(w)), off
    if best is None:
        return lm
    centre, width = best
    u = frame.axes[1]
    lm[3], lm[4] = centre - 0.41 * width * u, centre + 0.41 * width * u
    return lm
