"""Alignment math and the align -> paste-back round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from styleclip_desktop.faces.align import (
    Alignment,
    align_face,
    alignment_from_landmarks,
    ffhq_quad,
    split_landmarks,
)
from styleclip_desktop.faces.pasteback import face_mask, paste_back

# An upright canonical face: eyes, nose, mouth corners (image-left eye first).
CANONICAL = np.array([[100.0, 100.0], [160.0, 100.0], [130.0, 135.0], [108.0, 168.0], [152.0, 168.0]])


def _smooth_photo(h: int = 480, w: int = 640) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 41) * np.cos(yy / 57)
    g = 128 + 90 * np.cos(xx / 33 + yy / 47)
    b = 128 + 80 * np.sin((xx + yy) / 67)
    return np.clip(np.stack([r, g, b], -1).round(), 0, 255).astype(np.uint8)


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty], [0, 0, 1.0]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:2, :2].T + m[:2, 2]


def test_ffhq_quad_of_upright_face() -> None:
    # Eyes 60 apart, mouth 68 below: half-side = max(2 * 60, 1.8 * 68) = 122.4.
    quad = ffhq_quad(CANONICAL)
    centre = np.array([130.0, 100.0 + 0.1 * 68.0])
    np.testing.assert_allclose(quad.mean(axis=0), centre, atol=1e-9)
    half = max(2 * 60.0, 1.8 * 68.0)
    np.testing.assert_allclose(quad[0], centre + [-half, -half], atol=1e-9)  # top-left
    np.testing.assert_allclose(quad[1], centre + [-half, half], atol=1e-9)  # bottom-left
    np.testing.assert_allclose(quad[2], centre + [half, half], atol=1e-9)
    np.testing.assert_allclose(quad[3], centre + [half, -half], atol=1e-9)


def test_landmark_layouts_agree() -> None:
    four = CANONICAL[[0, 1, 3, 4]]
    np.testing.assert_allclose(ffhq_quad(four), ffhq_quad(CANONICAL))
    ibug = np.zeros((68, 2))
    ibug[36:42] = CANONICAL[0]
    ibug[42:48] = CANONICAL[1]
    ibug[48], ibug[54] = CANONICAL[3], CANONICAL[4]
    np.testing.assert_allclose(ffhq_quad(ibug), ffhq_quad(CANONICAL))
    eyes, mouth = split_landmarks(CANONICAL)
    assert eyes.shape == mouth.shape == (2, 2)
    with pytest.raises(ValueError):
        split_landmarks(np.zeros((3, 2)))


def test_eye_labels_do_not_matter() -> None:
    swapped = CANONICAL[[1, 0, 2, 4, 3]]
    np.testing.assert_allclose(ffhq_quad(swapped), ffhq_quad(CANONICAL), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    angle=st.floats(-math.pi, math.pi),
    scale=st.floats(0.2, 8.0),
    tx=st.floats(-2000, 2000),
    ty=st.floats(-2000, 2000),
    size=st.sampled_from([64, 256, 1024]),
)
def test_alignment_undoes_similarity_transforms(
    angle: float, scale: float, tx: float, ty: float, size: int
) -> None:
    reference = alignment_from_landmarks(CANONICAL, size).to_crop(CANONICAL)
    moved = _apply(_similarity(angle, scale, tx, ty), CANONICAL)
    al = alignment_from_landmarks(moved, size)
    np.testing.assert_allclose(al.to_crop(moved), reference, atol=1e-6 * size)
    np.testing.assert_allclose(al.to_photo(al.to_crop(moved)), moved, atol=1e-6 * max(1.0, scale) * size)
    np.testing.assert_allclose(al.matrix @ al.inverse, np.eye(3), atol=1e-9)


def test_canonical_crop_positions_are_ffhq_like() -> None:
    crop = alignment_from_landmarks(CANONICAL, 1024).to_crop(CANONICAL)
    # Eyes level and symmetric about the centre line, mouth below them.
    assert abs(crop[0, 1] - crop[1, 1]) < 1e-6
    assert abs((crop[0, 0] + crop[1, 0]) / 2 - 511.5) < 1e-6
    assert 400 < crop[0, 1] < 520 and crop[3, 1] > crop[0, 1] + 150


def test_resized_alignment_and_serialisation() -> None:
    al = alignment_from_landmarks(CANONICAL, 256)
    big = al.resized(1024)
    np.testing.assert_allclose(big.to_crop(CANONICAL), (al.to_crop(CANONICAL) + 0.5) * 4 - 0.5, atol=1e-9)
    back = Alignment.from_dict(al.to_dict())
    np.testing.assert_allclose(back.matrix, al.matrix)
    assert back.size == 256


def test_warp_puts_a_marked_point_where_the_matrix_says() -> None:
    h, w = 400, 500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    lm = _apply(_similarity(0.3, 1.2, 60, 40), CANONICAL)
    spot = lm[2]  # the nose
    blob = 255 * np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / (2 * 4.0**2))
    photo = np.repeat(blob.round().astype(np.uint8)[:, :, None], 3, axis=2)
    al, crop = align_face(photo, lm, 256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    wgt = crop[:, :, 0].astype(np.float64)
    cy, cx = np.mgrid[0:256, 0:256]
    centroid = np.array([(wgt * cx).sum(), (wgt * cy).sum()]) / wgt.sum()
    np.testing.assert_allclose(centroid, al.to_crop(spot), atol=0.15)


def test_quad_outside_photo_is_padded_smoothly() -> None:
    photo = _smooth_photo(200, 200)
    lm = CANONICAL - [120, 110]  # the square hangs over the top-left corner
    al, crop = align_face(photo, lm, 128)
    assert crop.shape == (128, 128, 3)
    assert 20 < crop.mean() < 235  # reflected and blurred, not black
    corner = crop[:12, :12].astype(np.float64)
    assert corner.std(axis=(0, 1)).max() < 25  # fades towards a flat median colour


@pytest.mark.parametrize("size", [128, 512])
def test_align_then_paste_back_reproduces_photo(size: int) -> None:
    photo = _smooth_photo()
    lm = _apply(_similarity(0.25, 1.1, 200, 120), CANONICAL)
    al, crop = align_face(photo, lm, size)
    out = paste_back(photo, crop, al)
    assert out.shape == photo.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - photo.astype(int))
    # Inside the face the crop is the photo resampled twice; outside it is untouched.
    assert diff.max() <= 4
    assert diff.mean() < 0.2


def test_paste_back_replaces_the_face_only() -> None:
    photo = _smooth_photo()
    lm = _apply(_similarity(-0.2, 1.0, 250, 150), CANONICAL)
    al = alignment_from_landmarks(lm, 256)
    white = np.full((1024, 1024, 3), 255, np.uint8)  # a generator-sized face, different size
    out = paste_back(photo, white, al)
    nose = np.rint(lm[2]).astype(int)
    assert (out[nose[1], nose[0]] >= 250).all()
    far = (5, 5)
    np.testing.assert_array_equal(out[far], photo[far])
    corner = np.rint(al.quad[0]).astype(int)  # crop corner: outside the face mask
    if 0 <= corner[0] < photo.shape[1] and 0 <= corner[1] < photo.shape[0]:
        np.testing.assert_array_equal(out[corner[1], corner[0]], photo[corner[1], corner[0]])


def test_face_mask_shape_and_edges() -> None:
    m = face_mask(256)
    assert m.shape == (256, 256) and m.dtype == np.float32
    assert m.max() == pytest.approx(1.0, abs=1e-3)
    assert m[0].max() < 1e-3 and m[-1].max() < 1e-3 and m[:, 0].max() < 1e-3
    assert m[140, 128] > 0.99
