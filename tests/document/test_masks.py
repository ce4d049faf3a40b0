"""Layer masks in the document: validation, undo, duplication, reordering and the project file."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.document import (
    MASK_SIZE,
    ArrayDataError,
    Document,
    GlobalDirectionParams,
    Layer,
    LayerMask,
    LockedLayerError,
    ManifestError,
    UndoStack,
    canonical_state,
    load_project,
    load_project_bytes,
    save_project,
)
from styleclip_desktop.document import actions as act


def _mask(value: int = 255, **settings: object) -> LayerMask:
    px = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
    px[100:300, 150:400] = value
    return LayerMask(px, **settings)  # type: ignore[arg-type]


def _doc() -> tuple[Document, UndoStack, str]:
    doc = Document(np.zeros((6, 8), np.float32))
    stack = UndoStack()
    stack.push(act.add_layer(doc, GlobalDirectionParams("grey hair"), alpha=2.0))
    stack.push(act.add_layer(doc, GlobalDirectionParams("smiling"), alpha=1.0))
    return doc, stack, doc.layers[0].id


def test_masks_validate_their_settings() -> None:
    with pytest.raises(ValueError, match="512x512"):
        LayerMask(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="feather"):
        _mask(feather=-1.0)
    with pytest.raises(ValueError, match="start resolution"):
        _mask(start_res=48)
    with pytest.raises(ValueError, match="finite"):
        LayerMask(np.full((MASK_SIZE, MASK_SIZE), np.nan))
    m = _mask()
    with pytest.raises(ValueError):
        m.pixels[0, 0] = 1  # read-only: the undo state cannot change under it
    assert m == _mask() and m != _mask(128) and m != _mask(feather=2.0)


def test_coverage_feathers_inverts_and_keeps_flat_areas_exact() -> None:
    m = _mask(feather=6.0)
    c = m.coverage()
    assert c.dtype == np.float32 and c.shape == (MASK_SIZE, MASK_SIZE)
    assert c[0, 0] == 0.0 and c[200, 275] == 1.0 and 0.0 < c[100, 275] < 1.0
    assert np.array_equal(m.with_changes(inverted=True).coverage(), 1.0 - c)
    assert m.coverage(64).shape == (64, 64)
    assert LayerMask.filled(255).extent == "all" and LayerMask.filled(0).extent == "none"
    assert not LayerMask.filled(255).active() and not _mask(enabled=False).active() and m.active()
    assert LayerMask.from_coverage(np.ones((100, 100), np.float32)).extent == "all"


def test_a_stroke_of_many_dabs_undoes_in_one_step() -> None:
    doc, stack, lid = _doc()
    stroke = object()
    pixels = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
    for i in range(5):
        pixels = pixels.copy()
        pixels[i * 10: i * 10 + 10, :] = 255
        stack.push(act.set_mask(doc, lid, LayerMask(pixels), merge_key=stroke))
    assert doc.layers[0].mask is not None and int(doc.layers[0].mask.pixels[45, 0]) == 255
    stack.undo()
    assert doc.layers[0].mask is None
    stack.redo()
    assert int(doc.layers[0].mask.pixels[45, 0]) == 255
    second = LayerMask(np.full((MASK_SIZE, MASK_SIZE), 9, np.uint8))
    stack.push(act.set_mask(doc, lid, second, merge_key=object()))
    stack.undo()
    assert int(doc.layers[0].mask.pixels[45, 0]) == 255  # the first stroke stays


def test_masks_survive_duplication_reordering_and_locks_refuse_changes() -> None:
    doc, stack, lid = _doc()
    stack.push(act.set_mask(doc, lid, _mask()))
    stack.push(act.duplicate_layer(doc, lid))
    assert doc.layers[1].mask == _mask() and doc.layers[1].id != lid
    stack.push(act.move_layer(doc, lid, 2))
    assert doc.layers[2].id == lid and doc.layers[2].mask == _mask()
    stack.push(act.set_locked(doc, lid, True))
    with pytest.raises(LockedLayerError):
        stack.push(act.set_mask(doc, lid, None))
    assert doc.layers.get(lid).mask == _mask()


def test_masks_round_trip_through_the_project_as_pngs(tmp_path: Path) -> None:
    doc, stack, lid = _doc()
    stack.push(act.set_mask(doc, lid, _mask(200, feather=3.5, inverted=True, enabled=False, start_res=64)))
    path = save_project(doc, tmp_path / "masked.scproj")
    back = load_project(path)
    assert canonical_state(back) == canonical_state(doc)
    m = back.layers.get(lid).mask
    assert m is not None and (m.feather, m.inverted, m.enabled, m.start_res) == (3.5, True, False, 64)
    assert back.layers[1].mask is None
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("masks/layer0_mask.png").compress_size < 8_000  # a PNG, a few KB
        assert "layer0_mask.npy" not in zipfile.ZipFile(io.BytesIO(zf.read("arrays.npz"))).namelist()


def _rewrite(path: Path, edit_manifest=None, members=None) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    with zipfile.ZipFile(path) as zf, zipfile.ZipFile(out, "w") as dst:
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename == "manifest.json" and edit_manifest:
                manifest = json.loads(data)
                edit_manifest(manifest)
                data = json.dumps(manifest).encode()
            data = (members or {}).get(info.filename, data)
            dst.writestr(info.filename, data)
    return out.getvalue()


def _png(array: np.ndarray, mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def test_damaged_masks_are_refused_in_one_line(tmp_path: Path) -> None:
    doc, stack, lid = _doc()
    stack.push(act.set_mask(doc, lid, _mask()))
    path = save_project(doc, tmp_path / "masked.scproj")
    member = "masks/layer0_mask.png"
    good = _png(_mask().pixels)

    def bad_start(m: dict) -> None:  # type: ignore[type-arg]
        m["document"]["layers"][0]["mask"]["start_res"] = 33

    def missing(m: dict) -> None:  # type: ignore[type-arg]
        m["document"]["layers"][0]["mask"]["array"] = "nothing"

    def odd_name(m: dict) -> None:  # type: ignore[type-arg]
        m["members"]["masks"] = ["../../etc/passwd"]

    with pytest.raises(ArrayDataError, match="512x512"):
        load_project_bytes(_rewrite(path, members={member: _png(np.zeros((10, 10), np.uint8))}))
    with pytest.raises(ArrayDataError, match="grayscale"):
        load_project_bytes(_rewrite(path, members={member: _png(_mask().pixels, "RGB")}))
    with pytest.raises(ArrayDataError, match="damaged PNG"):
        load_project_bytes(_rewrite(path, members={member: good[: len(good) // 2]}))
    with pytest.raises(ArrayDataError, match="not a PNG"):
        load_project_bytes(_rewrite(path, members={member: b"GIF89a" + good}))
    with pytest.raises(ManifestError, match="start resolution"):
        load_project_bytes(_rewrite(path, edit_manifest=bad_start))
    with pytest.raises(ArrayDataError, match="nothing"):
        load_project_bytes(_rewrite(path, edit_manifest=missing))
    with pytest.raises(ManifestError, match="members.masks"):
        load_project_bytes(_rewrite(path, edit_manifest=odd_name))


def test_projects_from_before_masks_open_without_them(tmp_path: Path) -> None:
    doc, _, _ = _doc()
    path = save_project(doc, tmp_path / "old.scproj")

    def drop(m: dict) -> None:  # type: ignore[type-arg]
        for layer in m["document"]["layers"]:
            del layer["mask"]

    back = load_project_bytes(_rewrite(path, edit_manifest=drop))
    assert all(layer.mask is None for layer in back.layers)


def test_a_layer_made_with_a_mask_keeps_it() -> None:
    layer = Layer(GlobalDirectionParams("grey hair"), mask=_mask())
    assert layer.copy().mask == _mask()
    with pytest.raises(TypeError):
        Layer(GlobalDirectionParams("grey hair"), mask=np.ones((4, 4)))  # type: ignore[arg-type]
