"""The one readiness answer: per feature, ready or not, and exactly what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.nets.irse import write_synthetic_arcface
from styleclip_desktop.weights import catalog as cat_mod
from styleclip_desktop.weights import hfcache, store
from styleclip_desktop.weights.catalog import load_catalog
from styleclip_desktop.weights.readiness import check_readiness
from styleclip_desktop.weights.store import State


@pytest.fixture(scope="module")
def catalog() -> cat_mod.Catalog:
    return load_catalog(cat_mod.default_catalog_path())


@pytest.fixture(autouse=True)
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.delenv("STYLECLIP_CATALOG", raising=False)
    return hub


def put_in_hub(hub: Path, repo: str, filename: str, data: bytes) -> Path:
    """Lay a file out the way huggingface_hub's cache does."""
    root = hub / ("models--" + repo.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(rev)
    snap = root / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (snap / filename).write_bytes(data)
    return snap / filename


def test_empty_directory_nothing_is_ready(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    r = check_readiness(tmp_path / "models", catalog)
    assert all(not f.ready for f in r.features.values())
    edit = r.feature("edit")
    assert edit.missing == ("stylegan2-ffhq-ada", "clip-vit-b-32")
    assert edit.alternatives["generator"] == ("stylegan2-ffhq-ada", "stylegan2-ffhq-tf",
                                              "stylegan2-ffhq-rosinality")
    assert edit.optional_missing == ("fs3-ffhq",)
    assert any("precomputed" in n for n in edit.notes)
    assert r.feature("invert").missing == ("e4e-ffhq", "yunet")
    assert r.feature("identity").missing == ("arcface-ir-se50",)
    assert r.feature("mapper:afro").missing == ("mapper-afro", "stylegan2-ffhq-ada")
    assert {e.id for e in r.missing_required()} >= {"stylegan2-ffhq-tf", "clip-vit-b-32", "e4e-ffhq",
                                                    "yunet", "fs3-ffhq"}
    assert all(m.state is State.MISSING for m in r.models.values())
    assert "edit" in r.enables("stylegan2-ffhq-tf") and "mapper:afro" in r.enables("stylegan2-ffhq-tf")
    json.dumps(r.to_dict())


def test_edit_becomes_ready_with_any_generator_and_cached_clip(
        catalog: cat_mod.Catalog, tmp_path: Path, empty_hub: Path, synthetic_models: dict[str, Path]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "stylegan2-ffhq-config-f.pt").write_bytes(synthetic_models["stylegan2-rosinality-pt"].read_bytes())
    put_in_hub(empty_hub, "timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors",
               synthetic_models["clip"].read_bytes())
    r = check_readiness(models, catalog)
    edit = r.feature("edit")
    assert edit.ready and edit.present == ("stylegan2-ffhq-rosinality", "clip-vit-b-32")
    assert edit.optional_missing == ("fs3-ffhq",)
    assert r.models["clip-vit-b-32"].path is not None and empty_hub in r.models["clip-vit-b-32"].path.parents
    assert r.feature("generate").ready and not r.feature("invert").ready
    with open(models / "fs3.npy", "wb") as f:  # an alternative name users save it under
        np.save(f, np.zeros((8, 512), np.float32))
    r = check_readiness(models, catalog)
    assert r.feature("edit").optional_missing == () and not r.feature("edit").notes
    assert r.feature("directions").ready


def test_user_given_files_count(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    gen = tmp_path / "my-generator.pkl"
    gen.write_bytes(b"x")
    clip = tmp_path / "clip.safetensors"
    clip.write_bytes(b"x")
    r = check_readiness(tmp_path / "models", catalog, overrides={"generator": gen, "clip": clip, "fs3": None})
    assert r.feature("edit").ready and r.feature("edit").present == (str(gen), str(clip))
    assert not r.feature("mapper:afro").ready


def test_damaged_partial_and_mapper_states(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "e4e_ffhq_encode.pt").write_bytes(b"12345")
    store.record_hash(models, "e4e-ffhq", "0" * 64, 99, "download", "e4e_ffhq_encode.pt")
    (models / "face_detection_yunet_2023mar.onnx.part").write_bytes(b"abc")
    (models / "mapper-afro.pt").write_bytes(b"m")
    (models / "ffhq.pkl").write_bytes(b"g")
    r = check_readiness(models, catalog)
    assert r.models["e4e-ffhq"].state is State.CORRUPT
    assert r.models["yunet"].state is State.PARTIAL
    inv = r.feature("invert")
    assert not inv.ready and inv.corrupt == ("e4e-ffhq",) and inv.missing == ("e4e-ffhq", "yunet")
    assert any("damaged" in n for n in inv.notes) and any("resumes" in n for n in inv.notes)
    assert r.feature("mapper:afro").ready and not r.feature("mapper:mohawk").ready


def test_offline_mode_is_reported_not_attempted(catalog: cat_mod.Catalog, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = check_readiness(tmp_path / "models", catalog)
    assert any("HF_HUB_OFFLINE" in n for n in r.feature("edit").notes)
    with pytest.raises(UserError, match="offline mode is on"):
        hfcache.download_to_cache(catalog.get("clip-vit-b-32"))


def test_cached_clip_is_found_without_network(catalog: cat_mod.Catalog, empty_hub: Path) -> None:
    entry = catalog.get("clip-vit-b-32")
    assert hfcache.cached_file(entry) is None
    path = put_in_hub(empty_hub, entry.hf_repo or "", "open_clip_pytorch_model.bin", b"weights")
    assert hfcache.cached_file(entry) == path
    assert hfcache.download_to_cache(entry) == path  # already there: no download attempted


def test_progress_bridge_forwards_and_cancels() -> None:
    seen: list[tuple[int, int | None]] = []
    stop = [False]
    bar_cls = hfcache.progress_bridge(lambda d, t: seen.append((d, t)), lambda: stop[0])
    bar = bar_cls(total=100, initial=10, unit="B")
    bar.update(40)
    assert seen == [(50, 100)]
    stop[0] = True
    with pytest.raises(Cancelled):
        bar.update(1)
    bar.close()


def test_deep_status_hashes_and_records(catalog: cat_mod.Catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    entry = catalog.get("arcface-ir-se50")
    write_synthetic_arcface(models / entry.filename)
    st, note = store.deep_status(entry, models)
    assert st.state is State.PRESENT and note is not None and "recorded sha256" in note
    assert store.read_known_hashes(models)["arcface-ir-se50"].source == "verify"
    with open(models / entry.filename, "r+b") as f:  # same size, different bytes
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    st, _ = store.deep_status(entry, models)
    assert st.state is State.CORRUPT and "expected" in st.detail
    assert check_readiness(models, catalog, deep=True).models["arcface-ir-se50"].state is State.CORRUPT
