"""Automatic face regions: shapes from the landmarks, hair and background from clustering,
cached per document."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.document import Alignment as DocAlignment
from styleclip_desktop.document import Document, SourcePhoto
from styleclip_desktop.document.masks import MASK_SIZE, LayerMask
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import regions as R
from styleclip_desktop.methods.region_geometry import FaceFrame, plausible_face, soften, template_landmarks
from styleclip_desktop.render.pipeline import ModelSet, Renderer
from styleclip_desktop.weights.synthetic import tiny_generator


@pytest.fixture(scope="module")
def G():  # type: ignore[no-untyped-def]
    return tiny_generator(32, seed=0)


def _renderer(G) -> Renderer:  # type: ignore[no-untyped-def]
    return Renderer(ModelSet(G=G, synthetic=True))


def _doc(G, seed: int = 0) -> Document:  # type: ignore[no-untyped-def]
    w = G.sample_w(1, seed)[0]
    return Document(w[None].repeat(G.num_ws, 1).numpy())


def test_every_region_is_a_coverage_map(G) -> None:  # type: ignore[no-untyped-def]
    rs = R.document_regions(_renderer(G), _doc(G))
    assert tuple(rs.masks) == R.REGION_NAMES
    assert set(R.REGION_LABELS) == set(R.REGION_NAMES)
    for name, m in rs.masks.items():
        assert m.shape == (MASK_SIZE, MASK_SIZE) and m.dtype == np.float32, name
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0, name
        assert not m.flags.writeable, name
    for name in ("eyes", "brows", "nose", "lips", "beard", "skin", "outside-face"):
        assert (rs.masks[name] == 1.0).any() and (rs.masks[name] == 0.0).any(), name
    assert rs.landmarks.shape == (5, 2)
    # A 32 px render holds no face a detector can find: the template is used, and said so.
    assert rs.source == "template" and R.TEMPLATE_NOTE in rs.notes
    np.testing.assert_allclose(rs.landmarks, template_landmarks())


def test_regions_are_deterministic_for_a_fixed_document(G) -> None:  # type: ignore[no-untyped-def]
    doc = _doc(G, seed=3)
    a = R.document_regions(_renderer(G), doc)
    b = R.document_regions(_renderer(G), doc)  # another renderer: a fresh cache
    assert a is not b
    for name in R.REGION_NAMES:
        np.testing.assert_array_equal(a.masks[name], b.masks[name])


def test_second_call_comes_from_the_cache(G) -> None:  # type: ignore[no-untyped-def]
    renderer = _renderer(G)
    doc = _doc(G, seed=1)
    first = R.document_regions(renderer, doc)
    assert R.document_regions(renderer, doc) is first
    other = _doc(G, seed=2)  # another latent is other content
    assert R.document_regions(renderer, other) is not first
    R.clear_region_cache(renderer)
    assert R.document_regions(renderer, doc) is not first


def test_layers_do_not_change_the_regions(G) -> None:  # type: ignore[no-untyped-def]
    from styleclip_desktop.document import Layer, OptimizationParams

    renderer = _renderer(G)
    doc = _doc(G)
    plain = R.compute_regions(renderer, doc)
    delta = np.random.RandomState(0).randn(G.num_ws, 512).astype(np.float32) * 3
    doc.layers.append(Layer(OptimizationParams(prompt="a smile", delta=delta)))
    edited = R.compute_regions(renderer, doc)
    for name in R.REGION_NAMES:
        np.testing.assert_array_equal(plain.masks[name], edited.masks[name])


def test_region_mask_and_unknown_names(G) -> None:  # type: ignore[no-untyped-def]
    renderer = _renderer(G)
    doc = _doc(G)
    mask = R.region_mask(renderer, doc, "lips", feather=2.0, start_res=16)
    assert isinstance(mask, LayerMask) and mask.feather == 2.0 and mask.start_res == 16
    assert mask.extent == "some"
    lips = R.document_regions(renderer, doc).masks["lips"]
    assert np.abs(mask.pixels / 255.0 - lips).max() <= 0.5 / 255 + 1e-6
    assert R.region_mask(renderer, doc, "Outside_Face") == LayerMask.from_coverage(
        R.document_regions(renderer, doc).masks["outside-face"])
    with pytest.raises(UserError, match="hair, skin, eyes.*outside-face"):
        R.region_mask(renderer, doc, "ears")


def test_template_layout_is_an_upright_face() -> None:
    lm = template_landmarks()
    right_eye, left_eye, nose, mouth_r, mouth_l = lm
    assert right_eye[0] < MASK_SIZE / 2 < left_eye[0]
    assert abs(right_eye[1] - left_eye[1]) < 1e-6
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_r[1], mouth_l[1])
    assert mouth_r[0] < nose[0] < mouth_l[0]
    # FFHQ framing: the eyes a little above the middle, about a quarter of the crop apart.
    assert 0.42 < right_eye[1] / MASK_SIZE < 0.5
    assert 0.2 < (left_eye[0] - right_eye[0]) / MASK_SIZE < 0.28
    # Alignment of the template points gives the template again (it is where alignment puts them).
    from styleclip_desktop.faces.align import alignment_from_landmarks

    np.testing.assert_allclose(alignment_from_landmarks(lm, MASK_SIZE).to_crop(lm), lm, atol=1e-6)


def test_shapes_follow_the_landmarks() -> None:
    lm = template_landmarks()
    frame = FaceFrame(lm)
    eyes, lips, brows, nose = frame.eyes(), frame.lips(), frame.brows(), frame.nose()
    for p in lm[0:2]:
        assert eyes[int(round(p[1])), int(round(p[0]))] == 1.0
    for p in lm[3:5]:
        assert lips[int(round(p[1])), int(round(p[0]))] == 1.0
    assert nose[int(round(lm[2, 1])), int(round(lm[2, 0]))] == 1.0
    ys = np.nonzero(brows.any(axis=1))[0]
    assert ys.max() < lm[0, 1], "the brows sit above the eyes"
    assert not (eyes * brows).any()
    # A face shifted and turned moves its shapes with it.
    moved = lm + np.array([40.0, -20.0])
    np.testing.assert_array_equal(FaceFrame(moved).eyes()[:-20, 40:], eyes[20:, :-40])
    turned = np.stack([lm[:, 1], MASK_SIZE - 1 - lm[:, 0]], axis=1)  # a quarter turn, as np.rot90
    differ = FaceFrame(turned).lips() != np.rot90(lips)
    assert differ.sum() <= 0.01 * lips.sum()


def test_only_a_face_where_alignment_put_it_is_used() -> None:
    from styleclip_desktop.faces.detect import Face

    lm = template_landmarks()
    here = Face((0, 0, 1, 1), 0.99, lm + 3.0)
    small = Face((0, 0, 1, 1), 0.99, (lm - lm.mean(0)) * 0.3 + lm.mean(0))
    aside = Face((0, 0, 1, 1), 0.99, lm + np.array([150.0, 0.0]))
    assert plausible_face([small, aside, here], lm) is here
    assert plausible_face([small, aside], lm) is None


def test_softening_has_a_smooth_edge_and_exact_zeros() -> None:
    hard = np.zeros((MASK_SIZE, MASK_SIZE), np.float32)
    hard[200:300, 200:300] = 1.0
    soft = soften(hard)
    assert soft[250, 250] == 1.0 and soft[250, 120] == 0.0
    edge = soft[250, 185:215]
    assert ((edge > 0) & (edge < 1)).sum() >= 4, "a few pixels of falloff"
    assert np.all(np.diff(edge) >= 0)
    # Exactly 0 a little away from the shape, exactly 1 a little inside it.
    assert soft[:190].max() == 0.0 and soft[:, :190].max() == 0.0 and soft[:, 310:].max() == 0.0
    assert soft[210:290, 210:290].min() == 1.0


def test_kmeans_is_seeded_and_separates_clear_groups() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    a, b = R.kmeans(x, 2, seed=0), R.kmeans(x, 2, seed=0)
    np.testing.assert_array_equal(a, b)
    assert len(set(a[:50])) == 1 and len(set(a[50:])) == 1 and a[0] != a[50]


def test_clusters_are_named_by_their_evidence() -> None:
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
    hair = (labels == 1).astype(np.float32)
    bg = np.zeros_like(hair)
    bg[0, 0] = 1.0
    names = R.label_clusters(labels, {"hair": hair, "background": bg})
    assert names == {0: "background", 1: "hair", 2: "other"}


# --- the real portrait -----------------------------------------------------------------------

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut(G):  # type: ignore[no-untyped-def]
    from styleclip_desktop.faces.align import align_face
    from styleclip_desktop.faces.detect import detect_faces, haar_available

    if not haar_available():
        pytest.skip("this OpenCV build has no Haar cascades")
    photo = np.asarray(skimage_data.astronaut(), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    face = detect_faces(photo, None)[0]
    aligned = align_face(photo, face.landmarks, G.config.resolution)
    doc = Document(_doc(G).latent, source=SourcePhoto.from_bytes("astronaut.png", buf.getvalue()),
                   alignment=DocAlignment(aligned.alignment.matrix, G.config.resolution))
    return R.document_regions(_renderer(G), doc)


def _at(mask: np.ndarray, x: float, y: float) -> float:
    return float(mask[int(round(y)), int(round(x))])


def test_portrait_features_cover_the_detected_points(astronaut) -> None:  # type: ignore[no-untyped-def]
    rs = astronaut
    assert rs.source == "detector" and R.APPROXIMATE_NOTE in rs.notes
    lm = rs.landmarks
    for x, y in lm[0:2]:
        assert _at(rs.masks["eyes"], x, y) == 1.0
    for x, y in lm[3:5]:
        assert _at(rs.masks["lips"], x, y) > 0.5
    # Where the eyes and mouth of this portrait really are in its 512 px aligned crop
    # (read off the picture): the regions cover them.
    for x, y in ((197, 241), (318, 242)):
        assert _at(rs.masks["eyes"], x, y) == 1.0
    assert _at(rs.masks["lips"], 258, 356) == 1.0
    assert _at(rs.masks["nose"], 256, 300) == 1.0


def test_portrait_hair_and_background(astronaut) -> None:  # type: ignore[no-untyped-def]
    rs = astronaut
    hair, bg, eyes, skin = rs.masks["hair"], rs.masks["background"], rs.masks["eyes"], rs.masks["skin"]
    assert (hair > 0.5).mean() > 0.05 and (bg > 0.5).mean() > 0.05
    assert not ((hair > 0) & (eyes > 0)).any() and not ((bg > 0) & (eyes > 0)).any()
    assert not ((hair > 0.5) & (bg > 0.5)).any()
    # Points read off the aligned photo: her hair on both sides of the head, the plain
    # backdrop at the upper corners and beside her hair, her cheeks and nose.
    assert _at(hair, 100, 200) == 1.0 and _at(hair, 420, 200) == 1.0 and _at(hair, 110, 250) == 1.0
    assert _at(bg, 480, 60) == 1.0 and _at(bg, 25, 150) == 1.0 and _at(bg, 490, 300) == 1.0
    assert _at(skin, 190, 300) == 1.0 and _at(skin, 256, 300) == 1.0 and _at(skin, 320, 300) == 1.0
