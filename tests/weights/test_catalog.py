"""The shipped catalog is complete and self-consistent; the parser refuses bad catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from styleclip_desktop.weights import catalog as cat_mod
from styleclip_desktop.weights.catalog import CatalogError, load_catalog, parse_catalog

MAPPERS = {
    "afro": "1i5vAqo4z0I-Yon3FNft_YZOq7ClWayQJ", "angry": "1g82HEH0jFDrcbCtn3M22gesWKfzWV_ma",
    "beyonce": "1KJTc-h02LXs4zqCyo7pzCp0iWeO6T9fz", "bobcut": "1IvyqjZzKS-vNdq_OhwapAcwrxgLAY8UF",
    "bowlcut": "1xwdxI2YCewSt05dEHgkpmmzoauPjEnnZ", "curly_hair": "1xZ7fFB12Ci6rUbUfaHPpo44xUFzpWQ6M",
    "depp": "1FPiJkvFPG_y-bFanxLLP91wUKuy-l3IV", "hilary_clinton": "1X7U2zj2lt0KFifIsTfOOzVZXqYyCWVll",
    "mohawk": "1oMMPc8iQZ7dhyWavZ7VNWLwzf9aX4C09", "purple_hair": "14H0CGXWxePrrKIYmZnDD2Ccs65EEww75",
    "surprised": "1F-mPrhO-UeWrV1QYMZck63R43aLtPChI", "taylor_swift": "10jHuHsKKJxuf3N0vgQbX_SMEQgFHDrZa",
    "trump": "14v8D0uzy4tOyfBU3ca9T0AzTt3v-dNyh", "zuckerberg": "1NjDcMUL8G-pO3i_9N6EPpQNXeMc3Ar1r",
}


@pytest.fixture(scope="module")
def catalog() -> cat_mod.Catalog:
    return load_catalog(cat_mod.default_catalog_path())


def test_shipped_catalog_loads_with_every_official_asset(catalog: cat_mod.Catalog) -> None:
    ids = catalog.ids()
    assert len(ids) == len(set(ids))
    gens = catalog.group("generator")
    assert sorted(e.format for e in gens) == sorted(cat_mod.GENERATOR_KINDS)
    assert {e.format for e in catalog} == set(cat_mod.KINDS)
    mappers = catalog.group("mapper")
    assert {e.mapper_name: e.gdrive_ids[0] for e in mappers} == MAPPERS
    assert all(e.purpose == (f"mapper:{e.mapper_name}",) for e in mappers)
    for e in catalog:
        assert e.title and e.license and e.license_url.partition(":")[0] == "https"
        assert e.download_urls or e.via_huggingface, e.id
        assert e.sha256 is None or len(e.sha256) == 64


def test_generator_formats_match_the_format_detector(catalog: cat_mod.Catalog) -> None:
    formats = pytest.importorskip("styleclip_desktop.weights.formats")
    assert set(cat_mod.GENERATOR_KINDS) == set(formats.GENERATOR_FORMATS)


def test_specific_entries(catalog: cat_mod.Catalog) -> None:
    clip = catalog.get("clip-vit-b-32")
    assert clip.via_huggingface and clip.hf_repo == "timm/vit_base_patch32_clip_224.openai"
    assert (clip.open_clip_model, clip.open_clip_pretrained) == ("ViT-B-32-quickgelu", "openai")
    e4e = catalog.get("e4e-ffhq")
    assert e4e.gdrive_ids[0] == "1cUv_reLE6k3604or78EranS7XzuVMWeO"
    assert all(u.startswith((cat_mod.GDRIVE_DOWNLOAD, cat_mod.GDRIVE_UC)) for u in e4e.download_urls)
    assert len(e4e.download_urls) == 4  # two ids x two endpoints
    assert catalog.get("arcface-ir-se50").filename == "model_ir_se50.pth"
    yunet = catalog.get("yunet")
    assert yunet.filename == "face_detection_yunet_2023mar.onnx" and yunet.size == 232589
    assert catalog.get("fs3-ffhq").download_urls[0].endswith("global_torch/npy/ffhq/fs3.npy")
    assert catalog.get("stylegan2-ffhq-rosinality").gdrive_ids == ("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",)


def test_required_groups_cover_the_core_features(catalog: cat_mod.Catalog) -> None:
    groups = catalog.required_groups()
    assert set(groups) == {"generator", "clip", "e4e", "detector", "directions"}
    assert groups["generator"][0].id == "stylegan2-ffhq-ada"  # the default of the three
    assert not catalog.get("arcface-ir-se50").required
    assert not any(e.required for e in catalog.group("mapper"))


def test_features_and_purposes_agree(catalog: cat_mod.Catalog) -> None:
    features = catalog.all_features()
    assert {"edit", "generate", "invert", "identity", "detect", "directions"} <= set(features)
    assert {f"mapper:{m}" for m in MAPPERS} <= set(features)
    assert features["edit"].needs == ("generator", "clip") and features["edit"].uses == ("directions",)
    assert features["invert"].needs == ("e4e", "detector")
    assert features["mapper:afro"].needs == ("mapper-afro", "generator")
    for name, f in features.items():
        for ref in (*f.needs, *f.uses):
            members = catalog.resolve(ref)
            assert members, f"{name} needs unknown {ref}"
            for e in members:
                generic = "mapper" if name.startswith("mapper:") else name
                assert name in e.purpose or generic in e.purpose, (name, e.id)
    for e in catalog:
        for p in e.purpose:
            assert p in features or p == "mapper", (e.id, p)


def test_parser_refuses_bad_catalogs(tmp_path: Path) -> None:
    good = {"id": "x", "title": "X", "format": "yunet-onnx", "filename": "x.onnx"}
    assert parse_catalog({"model": [good]}).get("x").group == "x"
    with pytest.raises(CatalogError, match="unknown format"):
        parse_catalog({"model": [{**good, "format": "zip"}]})
    with pytest.raises(CatalogError, match="twice"):
        parse_catalog({"model": [good, good]})
    with pytest.raises(CatalogError, match="plain"):
        parse_catalog({"model": [{**good, "filename": "../x.onnx"}]})
    with pytest.raises(CatalogError, match="sha256"):
        parse_catalog({"model": [{**good, "sha256": "abc"}]})
    with pytest.raises(CatalogError, match="malformed"):
        parse_catalog({"model": [{"id": "y"}]})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\n")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="missing"):
        load_catalog(tmp_path / "nope.toml")


def test_catalog_path_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alt = tmp_path / "mirror.toml"
    alt.write_text('[[model]]\nid = "yunet"\ntitle = "Y"\nformat = "yunet-onnx"\n'
                   'filename = "y.onnx"\nurl = "http://127.0.0.1:9/y.onnx"\n')
    monkeypatch.setenv("STYLECLIP_CATALOG", str(alt))
    c = load_catalog()
    assert c.ids() == ("yunet",) and c.get("yunet").download_urls == ("http://127.0.0.1:9/y.onnx",)
    with pytest.raises(Exception, match="unknown model 'nope'"):
        c.get("nope")
