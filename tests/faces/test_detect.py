"""Face detection: YuNet output parsing (with a fake detector), fallbacks, manual points."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from styleclip_desktop.errors import ModelFileError, UserError
from styleclip_desktop.faces.align import alignment_from_landmarks
from styleclip_desktop.faces.detect import (
    LANDMARKS_HINT,
    Face,
    NoFaceError,
    detect_faces,
    detect_faces_haar,
    estimate_five_points,
    faces_from_yunet,
    haar_available,
    landmarks_from_points,
    rank_faces,
)


def _row(x: float, y: float, w: float, h: float, score: float) -> list[float]:
    """A YuNet row for an upright face filling the box."""
    lm = [
        x + 0.3 * w, y + 0.4 * h,  # right eye (image left)
        x + 0.7 * w, y + 0.4 * h,  # left eye (image right)
        x + 0.5 * w, y + 0.55 * h,  # nose tip
        x + 0.35 * w, y + 0.75 * h,  # right mouth corner
        x + 0.65 * w, y + 0.75 * h,  # left mouth corner
    ]  # fmt: skip
    return [x, y, w, h, *lm, score]


class FakeYuNet:
    """Answers like cv2.FaceDetectorYN: (retval, faces (N, 15) float32 or None)."""

    def __init__(self, rows: list[list[float]] | None) -> None:
        self.rows = rows
        self.input_size: tuple[int, int] | None = None
        self.seen_shape: tuple[int, ...] | None = None

    def setInputSize(self, input_size: tuple[int, int]) -> None:  # noqa: N802
        self.input_size = input_size

    def detect(self, image: np.ndarray) -> tuple[Any, np.ndarray | None]:
        self.seen_shape = image.shape
        if not self.rows:
            return 1, None
        return 1, np.asarray(self.rows, dtype=np.float32)


def test_parse_yunet_layout_sorted_by_size() -> None:
    raw = np.asarray([_row(10, 10, 50, 60, 0.95), _row(100, 40, 120, 140, 0.91)], np.float32)
    faces = faces_from_yunet(raw)
    assert [f.box[2] for f in faces] == [120, 50]
    big = faces[0]
    assert isinstance(big, Face) and not big.approximate
    assert big.landmarks.shape == (5, 2)
    np.testing.assert_allclose(big.landmarks[0], [136, 96])
    np.testing.assert_allclose(big.landmarks[4], [178, 145])
    assert big.score == pytest.approx(0.91)
    np.testing.assert_allclose(big.eyes, big.landmarks[:2])
    np.testing.assert_allclose(big.mouth, big.landmarks[3:])


def test_parse_empty_and_bad_rows() -> None:
    assert faces_from_yunet(None) == []
    assert faces_from_yunet(np.zeros((0, 15), np.float32)) == []
    bad = np.asarray([_row(0, 0, 0, 10, 0.9), _row(5, 5, 20, 20, 0.9)], np.float32)
    assert len(faces_from_yunet(bad)) == 1
    with pytest.raises(ValueError):
        faces_from_yunet(np.zeros((2, 7), np.float32))


def test_large_image_is_downscaled_and_coordinates_scaled_back() -> None:
    image = np.full((1920, 2560, 3), 120, np.uint8)
    fake = FakeYuNet([_row(100, 100, 200, 240, 0.97)])
    faces = detect_faces(image, None, detector=fake, max_side=1280)
    assert fake.input_size == (1280, 960)
    assert fake.seen_shape == (960, 1280, 3)
    assert faces[0].box == pytest.approx((200, 200, 400, 480))
    np.testing.assert_allclose(faces[0].landmarks[0], [2 * (100 + 60), 2 * (100 + 96)])


def test_small_image_is_passed_as_bgr() -> None:
    image = np.zeros((50, 60, 3), np.uint8)
    image[..., 0] = 200  # red in RGB

    class Spy(FakeYuNet):
        def detect(self, image: np.ndarray) -> tuple[Any, np.ndarray | None]:
            assert image[0, 0, 2] == 200 and image[0, 0, 0] == 0
            return super().detect(image)

    faces = detect_faces(image, None, detector=Spy([_row(5, 5, 30, 30, 0.9)]))
    assert len(faces) == 1


def test_several_faces_are_listed() -> None:
    rows = [_row(10 + 70 * i, 10, 40 + 10 * i, 50 + 10 * i, 0.9) for i in range(3)]
    faces = detect_faces(np.zeros((200, 300, 3), np.uint8), None, detector=FakeYuNet(rows))
    assert len(faces) == 3
    assert faces[0].area > faces[1].area > faces[2].area


def test_group_photo_ranks_confident_faces_first_and_drops_the_doubtful() -> None:
    # A large false detection (a poster, a pattern) scores lower than the two real faces.
    rows = [_row(0, 0, 150, 160, 0.83), _row(170, 20, 60, 70, 0.97), _row(240, 30, 70, 80, 0.93),
            _row(10, 170, 30, 30, 0.5)]
    faces = detect_faces(np.zeros((240, 320, 3), np.uint8), None, detector=FakeYuNet(rows))
    assert [f.score for f in faces] == pytest.approx([0.93, 0.97, 0.83])  # 0.5 is under the threshold
    assert [f.low_confidence for f in faces] == [False, False, True]
    assert faces[0].area > faces[1].area  # confident faces: largest first


def test_rank_faces_orders_by_confidence_then_size_then_score() -> None:
    lm = np.zeros((5, 2))

    def face(w: float, score: float, approximate: bool = False) -> Face:
        return Face(box=(0.0, 0.0, w, w), score=score, landmarks=lm, approximate=approximate)

    big_unsure, small_sure, mid_sure, tie_low = face(200, 0.85), face(50, 0.99), face(90, 0.91), face(90, 0.95)
    ranked = rank_faces([big_unsure, small_sure, mid_sure, tie_low], min_score=0.8)
    assert ranked == [tie_low, mid_sure, small_sure, big_unsure]
    assert rank_faces([face(10, 0.7), face(20, 0.95)], min_score=0.8) == [face(20, 0.95)]
    # Haar faces have no score: never dropped, never "unsure", ranked by size.
    haar = [face(40, 0.0, True), face(80, 0.0, True)]
    assert rank_faces(haar, min_score=0.8) == haar[::-1]
    assert not any(f.low_confidence for f in haar)


def test_no_face_error_says_whether_the_detector_is_missing(tmp_path: Path) -> None:
    grey = np.full((120, 160, 3), 128, np.uint8)
    with pytest.raises(NoFaceError) as info:
        detect_faces(grey, None, photo_name="holiday.jpg", detector=FakeYuNet(None))
    assert info.value.photo_name == "holiday.jpg" and not info.value.detector_missing
    with pytest.raises(NoFaceError) as info:
        detect_faces(grey, tmp_path / "missing.onnx", photo_name="grey.png")  # YuNet not installed
    assert info.value.detector_missing and "--landmarks" in str(info.value)  # the CLI keeps its hint


def test_no_face_message_offers_manual_landmarks() -> None:
    grey = np.full((120, 160, 3), 128, np.uint8)
    with pytest.raises(NoFaceError) as info:
        detect_faces(grey, None, photo_name="holiday.jpg", detector=FakeYuNet(None))
    msg = str(info.value)
    assert msg == f"No face found in holiday.jpg. Give the four points by hand: {LANDMARKS_HINT}"
    assert isinstance(info.value, UserError)


def test_no_detector_at_all_still_offers_landmarks(tmp_path: Path) -> None:
    grey = np.full((120, 160, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="--landmarks x_eye1,y_eye1"):
        detect_faces(grey, tmp_path / "missing.onnx", photo_name="grey.png")


def test_haar_fallback_on_synthetic_face() -> None:
    if not haar_available():
        pytest.skip("this OpenCV build ships no Haar cascades")
    import cv2

    img = np.full((300, 300, 3), 200, np.uint8)
    cv2.ellipse(img, (150, 160), (90, 120), 0, 0, 360, (180, 140, 120), -1)
    for cx in (115, 185):
        cv2.ellipse(img, (cx, 130), (18, 9), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (cx, 130), 7, (30, 20, 20), -1)
    cv2.ellipse(img, (150, 215), (35, 10), 0, 0, 360, (120, 40, 40), -1)
    faces = detect_faces_haar(img)
    if not faces:
        pytest.skip("the Haar cascade does not recognise the drawn face")
    assert all(f.approximate and f.landmarks.shape == (5, 2) for f in faces)


def test_estimated_points_align_like_a_face() -> None:
    pts = estimate_five_points(np.array([160.0, 100.0]), np.array([100.0, 100.0]))
    assert pts[0, 0] < pts[1, 0]  # image-left eye first
    assert pts[3, 1] > pts[2, 1] > pts[0, 1]  # mouth below nose below eyes
    al = alignment_from_landmarks(pts, 256)
    crop = al.to_crop(pts)
    assert abs(crop[0, 1] - crop[1, 1]) < 1e-6


def test_landmarks_from_points() -> None:
    pts = landmarks_from_points([100, 100, 160, 100, 108, 168, 152, 168])
    assert pts.shape == (4, 2)
    np.testing.assert_allclose(landmarks_from_points("100,100, 160,100,108,168,152,168"), pts)
    with pytest.raises(UserError, match="eight numbers"):
        landmarks_from_points([1, 2, 3])
    with pytest.raises(UserError, match="eight numbers"):
        landmarks_from_points("a,b,c,d,e,f,g,h")
    with pytest.raises(UserError, match="same place"):
        landmarks_from_points([100, 100, 100, 100, 108, 168, 152, 168])


@pytest.mark.skipif(
    not os.environ.get("STYLECLIP_YUNET") or not Path(os.environ["STYLECLIP_YUNET"]).is_file(),
    reason="set STYLECLIP_YUNET to face_detection_yunet_2023mar.onnx to run the real detector",
)
def test_real_yunet_on_grey_finds_nothing() -> None:
    grey = np.full((480, 640, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="--landmarks"):
        detect_faces(grey, os.environ["STYLECLIP_YUNET"])


def test_damaged_model_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "face_detection_yunet_2023mar.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelFileError, match="could not be loaded"):
        detect_faces(np.zeros((64, 64, 3), np.uint8), bad)
