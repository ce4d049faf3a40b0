"""Finding faces and their five landmarks in the user's photo.

The detector is OpenCV's YuNet (`face_detection_yunet_2023mar.onnx`, about 230 KB, fetched
by the model manager). It returns, per face, a box and five points in this order:

    0  right eye         the person's right eye: on the image's LEFT in an upright photo
    1  left eye          the person's left eye: on the image's RIGHT
    2  nose tip
    3  right mouth corner (image left)
    4  left mouth corner  (image right)

Alignment does not rely on that labelling (it orients the eye line by where the mouth is),
so a mirrored or upside-down face still aligns.

Without the YuNet file the product still works offline where OpenCV ships its Haar cascades:
they find a face box and usually the eyes, and the mouth corners are estimated from the
proportions of an average face; such faces are marked `approximate`. When nothing is found
the error tells the user how to give the points by hand.

Candidates are ranked for the user: confident detections first, then by size. A detection
scoring under `LOW_CONFIDENCE` is kept but marked (it is often a pattern, not a face), and
one under the score threshold is dropped, whichever detector object produced it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from styleclip_desktop.errors import ModelFileError, UserError

YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
LANDMARKS_HINT = "--landmarks x_eye1,y_eye1,x_eye2,y_eye2,x_mouth1,y_mouth1,x_mouth2,y_mouth2"
DEFAULT_SCORE_THRESHOLD = 0.8
LOW_CONFIDENCE = 0.9  # YuNet scores real, clear faces above this; under it, ask the user to check
DEFAULT_MAX_SIDE = 1280  # detection runs on a copy no larger than this; faces scale back

# Proportions of an average frontal face, in units of the eye distance along the eye line
# (x) and its downward normal (y), measured from the eye midpoint. Taken from the standard
# 5-point face template used to crop faces for recognition networks.
_NOSE_DOWN = 0.57
_MOUTH_DOWN = 1.155
_MOUTH_HALF_WIDTH = 0.415


class NoFaceError(UserError):
    """No face could be found; the message says how to place the points by hand.

    `photo_name` and `detector_missing` (YuNet was not available to look) let a graphical front
    end say the same in its own words."""

    def __init__(self, message: str, photo_name: str = "the photo", detector_missing: bool = False) -> None:
        super().__init__(message)
        self.photo_name = photo_name
        self.detector_missing = detector_missing


class _Detector(Protocol):
    def setInputSize(self, input_size: tuple[int, int]) -> None: ...  # noqa: N802 (OpenCV's name)

    def detect(self, image: np.ndarray) -> tuple[Any, np.ndarray | None]: ...


@dataclass(frozen=True)
class Face:
    """One detected face in photo pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, width, height
    score: float
    landmarks: np.ndarray  # (5, 2): right eye, left eye, nose, right mouth corner, left mouth corner
    approximate: bool = False  # True when some points were estimated rather than detected

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    @property
    def low_confidence(self) -> bool:
        """A detector's guess the user should check (approximate Haar faces have no score)."""
        return not self.approximate and self.score < LOW_CONFIDENCE

    @property
    def eyes(self) -> np.ndarray:
        return self.landmarks[0:2]

    @property
    def mouth(self) -> np.ndarray:
        return self.landmarks[3:5]


def no_face_message(photo_name: str) -> str:
    return f"No face found in {photo_name}. Give the four points by hand: {LANDMARKS_HINT}"


def landmarks_from_points(values: Sequence[float] | str) -> np.ndarray:
    """Eight numbers (eye, eye, mouth corner, mouth corner as x,y pairs) -> a (4, 2) array."""
    if isinstance(values, str):
        parts = [p for p in values.replace(";", ",").replace(" ", ",").split(",") if p]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise UserError(f"--landmarks needs eight numbers: {LANDMARKS_HINT}") from None
    else:
        numbers = [float(v) for v in values]
    if len(numbers) != 8:
        raise UserError(f"--landmarks needs eight numbers, got {len(numbers)}: {LANDMARKS_HINT}")
    pts = np.asarray(numbers, dtype=np.float64).reshape(4, 2)
    if not np.all(np.isfinite(pts)):
        raise UserError("--landmarks values must be finite numbers")
    if np.hypot(*(pts[1] - pts[0])) < 1.0:
        raise UserError("--landmarks: the two eyes are at the same place")
    if np.hypot(*(pts[2:4].mean(axis=0) - pts[0:2].mean(axis=0))) < 1.0:
        raise UserError("--landmarks: the mouth is at the same place as the eyes")
    return pts


def estimate_five_points(eye_a: np.ndarray, eye_b: np.ndarray) -> np.ndarray:
    """Five landmarks from two eye centres, using average-face proportions.

    The eyes are put in detector order (image-left first) assuming an upright face."""
    a, b = np.asarray(eye_a, dtype=np.float64), np.asarray(eye_b, dtype=np.float64)
    if a[0] > b[0]:
        a, b = b, a
    v = b - a
    down = np.array([-v[1], v[0]])
    mid = (a + b) / 2
    mouth = mid + _MOUTH_DOWN * down
    return np.stack(
        [a, b, mid + _NOSE_DOWN * down, mouth - _MOUTH_HALF_WIDTH * v, mouth + _MOUTH_HALF_WIDTH * v]
    )


def faces_from_yunet(raw: np.ndarray | None, scale: float = 1.0, min_score: float = 0.0) -> list[Face]:
    """Parse YuNet's (N, 15) output (x, y, w, h, five x,y pairs, score), scaling coordinates
    by `scale` (photo pixels per detection pixel), ranked by `rank_faces`."""
    if raw is None:
        return []
    arr = np.asarray(raw, dtype=np.float64)
    if arr.size == 0:
        return []
    if arr.ndim != 2 or arr.shape[1] < 15:
        raise ValueError(f"unexpected detector output shape {arr.shape}")
    faces = []
    for row in arr:
        if not np.all(np.isfinite(row[:15])):
            continue
        x, y, w, h = (float(v) * scale for v in row[0:4])
        if w <= 0 or h <= 0:
            continue
        lm = row[4:14].reshape(5, 2) * scale
        faces.append(Face(box=(x, y, w, h), score=float(row[14]), landmarks=lm))
    return rank_faces(faces, min_score)


def rank_faces(faces: Sequence[Face], min_score: float = 0.0) -> list[Face]:
    """The order to offer faces in: confident detections before low-confidence ones, each
    group largest first (the subject of a portrait is usually its biggest face), then by
    score. Scored detections under `min_score` are dropped; approximate ones are kept."""
    kept = [f for f in faces if f.approximate or f.score >= min_score]
    return sorted(kept, key=lambda f: (f.low_confidence, -f.area, -f.score))


def _downscaled_bgr(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("image must be an HxWx3 uint8 RGB array")
    h, w = image.shape[:2]
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    longest = max(h, w)
    if longest <= max_side:
        return bgr, 1.0
    f = max_side / longest
    small = cv2.resize(bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1]


def check_onnx_model(path: Path) -> int:
    """Refuse an ONNX file that is unreadable, has no graph, or keeps tensors outside
    itself ("external data": a path of the file's choosing, which may point anywhere,
    ../../etc/passwd included). Returns the number of nodes in its main graph.

    YuNet is one self-contained file; nothing it needs lives beside it."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelFileError(f"{path.name} is not a readable ONNX model ({detail})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFileError(f"{path.name} is an ONNX file without a model graph")
    for tensor in _onnx_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise ModelFileError(f"{path.name} keeps tensor {tensor.name[:60]!r} in another file "
                                 f"({where[:80]!r}); refused: the face detector must be one self-contained file")
    return len(model.graph.node)


def _onnx_tensors(model: Any) -> list[Any]:
    """Every TensorProto in a model: initializers, sparse ones, node attributes, in every
    graph and subgraph (If/Loop bodies) and function. Iterative: nesting costs no recursion."""
    graphs = [model.graph]
    nodes = [n for f in model.functions for n in f.node]
    tensors: list[Any] = []
    while graphs or nodes:
        if graphs:
            g = graphs.pop()
            tensors += list(g.initializer)
            tensors += [t for s in g.sparse_initializer for t in (s.values, s.indices)]
            nodes += list(g.node)
            continue
        for attr in nodes.pop().attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors += list(attr.tensors)
            if attr.HasField("sparse_tensor"):
                tensors += [attr.sparse_tensor.values, attr.sparse_tensor.indices]
            tensors += [t for s in attr.sparse_tensors for t in (s.values, s.indices)]
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs += list(attr.graphs)
    return tensors


def _create_yunet(model_path: Path, size: tuple[int, int], score_threshold: float) -> _Detector:
    try:
        check_onnx_model(model_path)
    except ModelFileError as exc:
        raise ModelFileError(f"The face detector model {model_path} could not be loaded ({exc}). "
                             "Download it again from the model manager.") from None
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = log.getLogLevel() if log is not None else None
    try:
        if log is not None:  # OpenCV prints its own multi-line report to stderr; ours is one line
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        detector: _Detector = cv2.FaceDetectorYN.create(str(model_path), "", size, score_threshold, 0.3, 5000)
    except cv2.error as exc:
        # OpenCV's message carries source paths and line numbers; keep only its reason.
        found = re.search(r"error: \([^)]*\) (.+?) in function", str(exc))
        reason = f" ({found.group(1)})" if found else ""
        raise ModelFileError(
            f"The face detector model {model_path} could not be loaded; it may be damaged. "
            f"Download it again from the model manager.{reason}"
        ) from None
    finally:
        if log is not None and previous is not None:
            log.setLogLevel(previous)
    return detector


def run_detector(detector: _Detector, image: np.ndarray, max_side: int = DEFAULT_MAX_SIDE,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[Face]:
    """Run a YuNet-like detector object on an RGB image, downscaling large photos."""
    small, scale = _downscaled_bgr(image, max_side)
    detector.setInputSize((small.shape[1], small.shape[0]))
    _, raw = detector.detect(small)
    return faces_from_yunet(raw, scale, score_threshold)


def haar_available() -> bool:
    """Whether this OpenCV build still has the Haar cascades (newer builds dropped them)."""
    return hasattr(cv2, "CascadeClassifier") and all(p.is_file() for p in _haar_files())


def _haar_files() -> tuple[Path, Path]:
    root = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
    return root / "haarcascade_frontalface_default.xml", root / "haarcascade_eye.xml"


def detect_faces_haar(image: np.ndarray, max_side: int = 800) -> list[Face]:
    """The offline fallback: Haar face and eye cascades; every result is `approximate`."""
    if not haar_available():
        return []
    face_file, eye_file = _haar_files()
    cascade_cls: Any = cv2.CascadeClassifier  # type: ignore[attr-defined,unused-ignore]
    face_cc, eye_cc = cascade_cls(str(face_file)), cascade_cls(str(eye_file))
    small, scale = _downscaled_bgr(image, max_side)
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
    min_face = max(24, min(grey.shape) // 12)
    boxes = face_cc.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
    faces = []
    for x, y, w, h in np.asarray(boxes).reshape(-1, 4):
        eyes = _haar_eyes(eye_cc, grey, int(x), int(y), int(w), int(h))
        if eyes is None:
            # Where a typical frontal-face box puts the eyes.
            eyes = (np.array([x + 0.3 * w, y + 0.4 * h]), np.array([x + 0.7 * w, y + 0.4 * h]))
        lm = estimate_five_points(*eyes) * scale
        box = (float(x) * scale, float(y) * scale, float(w) * scale, float(h) * scale)
        faces.append(Face(box=box, score=0.0, landmarks=lm, approximate=True))
    return rank_faces(faces)


def _haar_eyes(
    eye_cc: Any, grey: np.ndarray, x: int, y: int, w: int, h: int
) -> tuple[np.ndarray, np.ndarray] | None:
    roi = grey[y : y + int(h * 0.6), x : x + w]
    found = np.asarray(eye_cc.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=4)).reshape(-1, 4)
    centres = [np.array([x + ex + ew / 2, y + ey + eh / 2]) for ex, ey, ew, eh in found]
    left = [c for c in centres if c[0] < x + w / 2]
    right = [c for c in centres if c[0] >= x + w / 2]
    if not left or not right:
        return None
    # Eyebrows and nostrils also trigger the eye cascade; prefer the candidate nearest the
    # height where a frontal-face box has its eyes.
    target_y = y + 0.4 * h
    best_l = min(left, key=lambda c: abs(c[1] - target_y))
    best_r = min(right, key=lambda c: abs(c[1] - target_y))
    return best_l, best_r


def detect_faces(
    image: np.ndarray,
    model_path: str | os.PathLike[str] | None,
    *,
    photo_name: str = "the photo",
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_side: int = DEFAULT_MAX_SIDE,
    detector: _Detector | None = None,
) -> list[Face]:
    """All faces in an RGB uint8 image, ranked by `rank_faces`; raise `NoFaceError` if there are none.

    `model_path` is the YuNet file; when it is missing the Haar fallback is tried.
    `detector` replaces YuNet with any object offering `setInputSize` and `detect`."""
    if detector is None and model_path is not None and Path(model_path).is_file():
        small_size = _downscaled_bgr(image, max_side)[0].shape[1::-1]
        detector = _create_yunet(Path(model_path), (int(small_size[0]), int(small_size[1])), score_threshold)
    if detector is not None:
        faces = run_detector(detector, image, max_side, score_threshold)
        if not faces:
            raise NoFaceError(no_face_message(photo_name), photo_name)
        return faces
    faces = detect_faces_haar(image)
    if faces:
        return faces
    if haar_available():  # only the basic offline detector looked
        raise NoFaceError(no_face_message(photo_name), photo_name, detector_missing=True)
    raise NoFaceError(
        f"No face found in {photo_name}: the face detector ({YUNET_FILENAME}) is not installed. "
        f"Download it from the model manager, or give the four points by hand: {LANDMARKS_HINT}",
        photo_name, detector_missing=True,
    )
