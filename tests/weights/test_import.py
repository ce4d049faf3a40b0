"""`models import`: files are recognised by content (never by name) and placed safely."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from styleclip_desktop.errors import ModelFileError, UserError
from styleclip_desktop.nets.clip import tiny_clip_state_dict
from styleclip_desktop.nets.e4e import write_synthetic_e4e
from styleclip_desktop.nets.irse import write_synthetic_arcface
from styleclip_desktop.nets.mapper import write_synthetic_mapper
from styleclip_desktop.weights import catalog as cat_mod
from styleclip_desktop.weights import store
from styleclip_desktop.weights.catalog import load_catalog
from styleclip_desktop.weights.identify import identify_file
from styleclip_desktop.weights.importer import import_model

T = torch.zeros(2, 2)


@pytest.fixture(scope="module")
def catalog() -> cat_mod.Catalog:
    return load_catalog(cat_mod.default_catalog_path())


# Real (tiny, synthetic) files of each kind: identification loads a file as the app
# would, so a file with the right key names but nothing loadable behind them is refused
# (tests/weights/test_hostile_files.py has those).
def _e4e(path: Path, seed: int = 0) -> Path:
    return write_synthetic_e4e(path, seed=seed)


def _arcface(path: Path, legacy: bool = False) -> Path:
    write_synthetic_arcface(path)
    if legacy:
        torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    return path


def _mapper(path: Path, description: str = "") -> Path:
    return write_synthetic_mapper(path, description=description)


def _fs3(path: Path) -> Path:
    with open(path, "wb") as f:  # np.save would append ".npy" to a misleading name
        np.save(f, np.random.default_rng(0).standard_normal((96, 512)).astype(np.float32))
    return path


def _onnx(path: Path, seed: int = 0) -> Path:
    """A small self-contained ONNX model (one conv, ~37 KB of weights) in YuNet's slot."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(seed).standard_normal((64, 3, 7, 7)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["input", "w"], ["out"], strides=[8, 8])
    graph = helper.make_graph([node], "yunet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 3, 640, 640])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 64, 80, 80])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    path.write_bytes(model.SerializeToString())
    return path


def _clip_zip(path: Path) -> Path:
    torch.save(tiny_clip_state_dict(), path)
    return path


def test_synthetic_generators_and_clip_are_recognised_by_content(
        synthetic_models: dict[str, Path], catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    misleading = {"stylegan2-ada-pkl": "weights.pt", "stylegan2-tf-pkl": "model.onnx",
                  "stylegan2-rosinality-pt": "generator.pkl", "clip": "clip.npy"}
    expected_id = {"stylegan2-ada-pkl": "stylegan2-ffhq-ada", "stylegan2-tf-pkl": "stylegan2-ffhq-tf",
                   "stylegan2-rosinality-pt": "stylegan2-ffhq-rosinality", "clip": "clip-vit-b-32"}
    models = tmp_path / "models"
    for kind, name in misleading.items():
        src = tmp_path / name
        src.write_bytes(synthetic_models[kind].read_bytes())
        found = identify_file(src)
        assert found is not None and found.kind == kind
        res = import_model(src, models, catalog)
        assert res.entry.id == expected_id[kind] and res.identified_by == "content"
        assert res.path == models / res.entry.filename and res.method == "copied"
        assert res.path.read_bytes() == src.read_bytes()
        assert "no published checksum; recorded sha256" in res.note
    known = store.read_known_hashes(models)
    assert set(known) == set(expected_id.values())
    assert all(store.quick_status(catalog.get(i), models).usable for i in expected_id.values())


@pytest.mark.parametrize("make,model_id", [
    (_e4e, "e4e-ffhq"), (_arcface, "arcface-ir-se50"), (_fs3, "fs3-ffhq"), (_onnx, "yunet"),
    (_clip_zip, "clip-vit-b-32"), (lambda p: _arcface(p, legacy=True), "arcface-ir-se50"),
])
def test_other_models_are_recognised_by_content(make: object, model_id: str, catalog: cat_mod.Catalog,
                                                tmp_path: Path) -> None:
    src = make(tmp_path / "download (3).bin")  # type: ignore[operator]
    if model_id == "yunet":  # its catalog entry has a published checksum our fake cannot match
        catalog = catalog.replace_entries([e if e.id != "yunet" else
                                           type(e)(**{**e.__dict__, "sha256": None, "size": None})
                                           for e in catalog])
    res = import_model(src, tmp_path / "models", catalog)
    assert res.entry.id == model_id
    assert res.path.exists()


def test_clip_bin_keeps_a_name_that_matches_its_container(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    res = import_model(_clip_zip(tmp_path / "c.safetensors"), tmp_path / "m", catalog)
    assert res.path.name == "open_clip_pytorch_model.bin"
    assert store.quick_status(res.entry, tmp_path / "m").usable


def test_mapper_needs_a_name_and_finds_it(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    anon = _mapper(tmp_path / "checkpoint.pt")
    with pytest.raises(UserError, match="pass --as with one of: mapper-afro"):
        import_model(anon, models, catalog)
    assert import_model(anon, models, catalog, as_id="mapper-depp").entry.id == "mapper-depp"
    assert import_model(_mapper(tmp_path / "purple_hair.pt"), models, catalog).entry.id == "mapper-purple_hair"
    prompt = _mapper(tmp_path / "best.pt", description="a man with a mohawk hairstyle")
    assert import_model(prompt, models, catalog).entry.id == "mapper-mohawk"
    with pytest.raises(UserError, match="not e4e-ffhq"):
        import_model(anon, models, catalog, as_id="e4e-ffhq")


def test_unknown_and_unsafe_files_are_refused(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a model")
    with pytest.raises(UserError, match="not a model file this app recognises"):
        import_model(junk, models, catalog)
    torch.save({"something": T}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a model file"):
        import_model(tmp_path / "other.pt", models, catalog)
    objs = tmp_path / "objs.npy"
    np.save(objs, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match="run code"):
        import_model(objs, models, catalog)
    lfs = tmp_path / "face.onnx"
    lfs.write_text("version lfs-spec-v1\noid sha256:" + "0" * 64 + "\nsize 232589\n")
    with pytest.raises(ModelFileError, match="LFS pointer"):
        import_model(lfs, models, catalog)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ViT-B-32/code/__torch__.py", "def forward(): pass")
        z.writestr("ViT-B-32/data.pkl", b"\x80\x02}q\x00.")
    (tmp_path / "ViT-B-32.pt").write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match="TorchScript"):
        import_model(tmp_path / "ViT-B-32.pt", models, catalog)
    with pytest.raises(UserError, match="no such file"):
        import_model(tmp_path / "missing.pt", models, catalog)
    assert not models.exists() or not any(models.iterdir())


def test_pickles_are_scanned_never_run(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    # A pickle that would create `marker` if anything ever unpickled it.
    evil.write_bytes(b"\x80\x02cbuiltins\nopen\nq\x00X" + len(str(marker)).to_bytes(4, "little")
                     + str(marker).encode() + b"X\x01\x00\x00\x00w\x86R.")
    with pytest.raises(UserError):
        import_model(evil, tmp_path / "models", catalog)
    assert not marker.exists()


def test_identified_by_checksum(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    src = _onnx(tmp_path / "x.bin")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    entries = [type(e)(**{**e.__dict__, "sha256": digest, "size": src.stat().st_size}) if e.id == "yunet" else e
               for e in catalog]
    res = import_model(src, tmp_path / "models", catalog.replace_entries(entries))
    assert res.identified_by == "checksum" and res.entry.id == "yunet" and res.note == ""


def test_link_replace_and_already_present(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    src = _e4e(tmp_path / "e.pt")
    res = import_model(src, models, catalog, link=True)
    assert res.method in ("hard link", "symlink")
    assert os.path.samefile(res.path, src)
    again = import_model(src, models, catalog)
    assert again.method == "already present"
    other = _e4e(tmp_path / "e2.pt", seed=1)
    with pytest.raises(UserError, match="--force"):
        import_model(other, models, catalog)
    assert import_model(other, models, catalog, force=True).method == "copied"
    assert src.read_bytes() != res.path.read_bytes()  # the linked original was not overwritten
