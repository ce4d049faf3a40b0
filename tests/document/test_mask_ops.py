"""Brush dabs, strokes, fill, clear and invert on mask pixels."""

from __future__ import annotations

import numpy as np
import pytest

from styleclip_desktop.document import mask_ops
from styleclip_desktop.document.mask_ops import Brush, Stroke
from styleclip_desktop.document.masks import MASK_SIZE, LayerMask


def _empty() -> np.ndarray:
    return np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)


def _distance(x: float, y: float) -> np.ndarray:
    yy, xx = np.mgrid[0:MASK_SIZE, 0:MASK_SIZE]
    return np.hypot(xx - x, yy - y)


def test_a_hard_dab_is_a_disc_of_the_brush_radius() -> None:
    stroke = Stroke(_empty(), Brush(size=40, hardness=1.0, opacity=1.0))
    stroke.to(200.0, 150.0)
    d = _distance(200.0, 150.0)
    assert (stroke.pixels[d <= 19.5] == 255).all()
    assert (stroke.pixels[d >= 20.5] == 0).all()
    rim = (d > 19.5) & (d < 20.5)
    assert rim.any() and ((stroke.pixels[rim] > 0) & (stroke.pixels[rim] < 255)).any()  # antialiased
    area = float(stroke.pixels.sum()) / 255.0
    assert area == pytest.approx(np.pi * 20.0**2, rel=0.01)


def test_a_soft_dab_falls_off_from_the_centre() -> None:
    stroke = Stroke(_empty(), Brush(size=60, hardness=0.0))
    stroke.to(100.0, 100.0)
    row = stroke.pixels[100, 100:132].astype(int)
    assert row[0] == 255 and row[29] < 10 and (row[31:] == 0).all()
    assert (np.diff(row) <= 0).all() and 60 < row[15] < 200  # monotonic, half-way about half


def test_half_opacity_gives_half_coverage_in_one_dab_and_never_more_in_one_stroke() -> None:
    stroke = Stroke(_empty(), Brush(size=30, hardness=1.0, opacity=0.5))
    stroke.to(50.0, 50.0)
    assert stroke.pixels[50, 50] in (127, 128)
    for x in (52.0, 48.0, 50.0, 51.0):  # going back and forth over the same pixels
        stroke.to(x, 50.0)
    assert stroke.pixels[50, 50] in (127, 128)
    # A second stroke over the first builds on it: half of what is left.
    second = Stroke(stroke.pixels, Brush(size=30, hardness=1.0, opacity=0.5))
    second.to(50.0, 50.0)
    assert 189 <= second.pixels[50, 50] <= 192


def test_a_fast_stroke_between_far_pointer_positions_has_no_gaps() -> None:
    stroke = Stroke(_empty(), Brush(size=6, hardness=1.0))
    stroke.to(10.0, 10.0)
    box = stroke.to(400.0, 300.0)  # one pointer event, 490 px away
    assert box is not None
    t = np.linspace(0.0, 1.0, 2000)
    xs, ys = np.rint(10 + t * 390).astype(int), np.rint(10 + t * 290).astype(int)
    assert (stroke.pixels[ys, xs] == 255).all()
    y0, y1, x0, x1 = box
    assert (y0, x0) == (6, 6) and (y1, x1) == (305, 405)  # only the swept box is touched
    outside = stroke.pixels.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any()


def test_the_eraser_lowers_coverage_and_a_dab_off_the_mask_changes_nothing() -> None:
    full = np.full((MASK_SIZE, MASK_SIZE), 255, np.uint8)
    stroke = Stroke(full, Brush(size=20, hardness=1.0, opacity=1.0, erase=True))
    stroke.to(0.0, 0.0)
    assert stroke.pixels[0, 0] == 0 and stroke.pixels[30, 30] == 255
    assert Stroke(full, Brush(size=20)).to(-100.0, 900.0) is None


def test_strokes_leave_their_base_untouched() -> None:
    base = _empty()
    Stroke(base, Brush()).to(100.0, 100.0)
    assert not base.any()


@pytest.mark.parametrize("bad", [{"size": 0.0}, {"size": 600.0}, {"hardness": 1.5}, {"opacity": -0.1},
                                 {"size": float("nan")}, {"size": True}])
def test_brushes_refuse_bad_settings(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Brush(**bad)


def test_fill_clear_and_invert_keep_the_settings() -> None:
    mask = LayerMask.filled(0, feather=3.0, start_res=16)
    mask = mask.with_changes(pixels=np.pad(np.full((10, 10), 200, np.uint8), ((0, 502), (0, 502))))
    filled = mask_ops.fill(mask)
    assert (filled.pixels == 255).all() and (filled.feather, filled.start_res) == (3.0, 16)
    assert not mask_ops.clear(filled).pixels.any()
    inv = mask_ops.invert(mask)
    assert inv.pixels[0, 0] == 55 and inv.pixels[100, 100] == 255 and inv.feather == 3.0
    assert mask_ops.invert(inv) == mask


def test_a_stroke_on_no_mask_starts_empty_for_the_brush_and_full_for_the_eraser() -> None:
    assert not mask_ops.base_pixels(None, erase=False).any()
    assert (mask_ops.base_pixels(None, erase=True) == 255).all()
    mask = LayerMask.filled(7)
    assert mask_ops.base_pixels(mask, erase=True) is mask.pixels
