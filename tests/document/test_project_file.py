"""The .scproj file: round trips, atomic saves, and damaged files becoming clear errors."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from styleclip_desktop.document import (
    Alignment,
    ArrayDataError,
    CorruptProjectError,
    DirectionSource,
    Document,
    GlobalDirectionParams,
    Keyframe,
    Layer,
    ManifestError,
    MapperParams,
    MissingMemberError,
    NewerSchemaError,
    OptimizationParams,
    ProjectFileError,
    ProjectReadError,
    SourcePhoto,
    SourcePhotoError,
    Timeline,
    canonical_state,
    load_project,
    load_project_bytes,
    read_thumbnail,
    save_project,
    write_project,
)
from styleclip_desktop.errors import UserError

from .strategies import DOC_SETTINGS, documents, fast

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def sample_document() -> Document:
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((18, 16)).astype(np.float32)
    grey = DirectionSource("a face with grey hair", "a face", 0.15, {"generator": "ab" * 32, "fs3": "ef" * 32})
    layers = [
        Layer(GlobalDirectionParams("a face with grey hair", ds=rng.standard_normal(40).astype(np.float32),
                                    ds_source=grey), alpha=3.0, id="grey"),
        Layer(MapperParams("mohawk", fine=False), id="mohawk", visible=False),
        Layer(OptimizationParams("a smiling face", delta=rng.standard_normal((18, 16)).astype(np.float32)),
              id="smile", locked=True),
        Layer(GlobalDirectionParams("robot"), alpha=-4.0, id="anti"),
    ]
    timeline = Timeline(2.0, 12.0, {"grey": [Keyframe(0.0, 0.0), Keyframe(2.0, 3.0, "ease-in-out")]})
    return Document(
        latent,
        source=SourcePhoto.from_bytes("/home/me/Photos/portrait.JPG", b"\xff\xd8 not really a jpeg"),
        alignment=Alignment(np.array([[0.5, 0.1, -3.0], [-0.1, 0.5, 7.0], [0.0, 0.0, 1.0]]), 1024),
        generator_delta={"synthesis.b4.conv1.weight": rng.standard_normal((2, 3, 3)).astype(np.float32)},
        layers=layers,
        timeline=timeline,
        models={"generator": "ab" * 32, "clip": "cd" * 32},
        synthetic=True,
    )


def project_bytes(doc: Document, tmp_path: Path, thumbnail: bytes | None = PNG) -> bytes:
    path = tmp_path / "sample.scproj"
    write_project(doc, path, thumbnail=thumbnail)
    return path.read_bytes()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(parts: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return buf.getvalue()


def with_manifest(data: bytes, change: Any) -> bytes:
    parts = members(data)
    manifest = json.loads(parts["manifest.json"])
    change(manifest)
    parts["manifest.json"] = json.dumps(manifest).encode()
    return rezip(parts)


@pytest.fixture(scope="module")
def sample_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return project_bytes(sample_document(), tmp_path_factory.mktemp("sample"))


# -- round trips ----------------------------------------------------------------------------


def test_save_and_load_the_sample(tmp_path: Path) -> None:
    doc = sample_document()
    path = save_project(doc, tmp_path / "me.scproj", thumbnail=PNG)
    assert doc.file_path == path and not doc.dirty
    loaded = load_project(path)
    assert canonical_state(loaded) == canonical_state(doc)
    assert loaded.file_path == path and not loaded.dirty
    assert read_thumbnail(path) == PNG
    names = set(members(path.read_bytes()))
    assert names == {"manifest.json", "arrays.npz", "source.jpg", "thumbnail.png"}
    manifest = json.loads(members(path.read_bytes())["manifest.json"])
    assert manifest["schema"] == 1 and isinstance(manifest["app_version"], str)
    assert not loaded.latent.flags.writeable


@fast(60)
@given(doc=documents())
def test_save_then_load_is_identity(doc: Document, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("roundtrip") / "doc.scproj"
    write_project(doc, path)
    assert canonical_state(load_project(path)) == canonical_state(doc)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "me.scproj"
    save_project(sample_document(), path)
    before = path.read_bytes()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        save_project(sample_document(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.scproj"]


def test_thumbnail_must_be_png(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PNG"):
        write_project(sample_document(), tmp_path / "x.scproj", thumbnail=b"GIF89a")


def test_stored_directions_round_trip_in_the_arrays(tmp_path: Path) -> None:
    doc = sample_document()
    path = save_project(doc, tmp_path / "me.scproj")
    parts = members(path.read_bytes())
    manifest = json.loads(parts["manifest.json"])
    grey, anti = manifest["document"]["layers"][0], manifest["document"]["layers"][3]
    # The ds is an array beside the manifest; the manifest only names it and its source.
    assert grey["arrays"] == {"ds": "layer0_ds"} and "layer0_ds.npy" in members(parts["arrays.npz"])
    assert grey["params"]["ds_source"]["models"] == {"generator": "ab" * 32, "fs3": "ef" * 32}
    assert anti["arrays"] == {"ds": None} and anti["params"]["ds_source"] is None
    loaded = load_project(path).layers.get("grey").params
    assert isinstance(loaded, GlobalDirectionParams) and loaded == doc.layers.get("grey").params
    stored = loaded.stored_direction()
    assert stored is not None and np.array_equal(stored[0], doc.layers.get("grey").params.ds)
    assert not stored[0].flags.writeable


def test_projects_from_before_stored_directions_still_load(sample_bytes: bytes) -> None:
    def old_format(manifest: dict[str, Any]) -> None:
        for layer in manifest["document"]["layers"]:
            if layer["kind"] == "global_direction":
                layer["params"] = {k: layer["params"][k] for k in ("target", "neutral", "beta")}
                layer["arrays"] = {}

    parts = members(with_manifest(sample_bytes, old_format))
    inner = members(parts["arrays.npz"])
    del inner["layer0_ds.npy"]
    parts["arrays.npz"] = rezip(inner)
    doc = load_project_bytes(rezip(parts))
    grey = doc.layers.get("grey").params
    assert isinstance(grey, GlobalDirectionParams) and grey.ds is None and grey.ds_source is None
    assert (grey.target, grey.neutral, grey.beta) == ("a face with grey hair", "a face", 0.15)


def test_damaged_stored_directions_are_clear_errors(sample_bytes: bytes) -> None:
    with pytest.raises(ArrayDataError, match="flat style vector"):
        load_project_bytes(_replace_array(sample_bytes, "layer0_ds", np.zeros((18, 16), np.float32)))
    with pytest.raises(ArrayDataError, match="flat style vector of at most 1048576"):
        load_project_bytes(_replace_array(sample_bytes, "layer0_ds", np.zeros((1 << 20) + 1, np.float32)))
    with pytest.raises(ArrayDataError, match="NaN"):
        load_project_bytes(_replace_array(sample_bytes, "layer0_ds", np.full(40, np.inf, np.float32)))
    with pytest.raises(ArrayDataError, match="float32"):
        load_project_bytes(_replace_array(sample_bytes, "layer0_ds", np.zeros(40, np.float16)))
    data = with_manifest(sample_bytes, lambda m: m["document"]["layers"][0]["params"].update(ds_source=None))
    with pytest.raises(ManifestError, match="go together"):
        load_project_bytes(data)
    data = with_manifest(sample_bytes, lambda m: m["document"]["layers"][0]["params"]["ds_source"]["models"].pop(
        "generator"))
    with pytest.raises(ManifestError, match="must record the generator"):
        load_project_bytes(data)
    data = with_manifest(sample_bytes, lambda m: m["document"]["layers"][0]["params"]["ds_source"].update(beta="x"))
    with pytest.raises(ManifestError, match=r"layers\[0\]\.params"):
        load_project_bytes(data)


def test_no_thumbnail_and_no_photo(tmp_path: Path) -> None:
    doc = Document(np.ones((2, 2), np.float32), seed=42, description="random face, psi 0.7")
    path = save_project(doc, tmp_path / "seed.scproj")
    assert read_thumbnail(path) is None
    assert set(members(path.read_bytes())) == {"manifest.json", "arrays.npz"}
    assert load_project(path).seed == 42


# -- specific errors -------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(ProjectFileError, UserError)
    for cls in (ProjectReadError, CorruptProjectError, MissingMemberError, NewerSchemaError,
                ManifestError, ArrayDataError, SourcePhotoError):
        assert issubclass(cls, ProjectFileError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectReadError, match="cannot open nope.scproj"):
        load_project(tmp_path / "nope.scproj")


def test_not_a_zip_and_truncated() -> None:
    with pytest.raises(CorruptProjectError, match="not a StyleCLIP Desktop project"):
        load_project_bytes(b"hello, world")
    with pytest.raises(CorruptProjectError):
        load_project_bytes(b"")


def test_truncated_file(sample_bytes: bytes) -> None:
    with pytest.raises(CorruptProjectError):
        load_project_bytes(sample_bytes[: len(sample_bytes) // 2])


def test_newer_schema(sample_bytes: bytes) -> None:
    data = with_manifest(sample_bytes, lambda m: m.update(schema=2, app_version="9.0"))
    with pytest.raises(NewerSchemaError, match="StyleCLIP Desktop 9.0 .* update"):
        load_project_bytes(data)


@pytest.mark.parametrize("member,error", [
    ("manifest.json", MissingMemberError),
    ("arrays.npz", MissingMemberError),
    ("source.jpg", MissingMemberError),
])
def test_missing_members(sample_bytes: bytes, member: str, error: type[Exception]) -> None:
    parts = members(sample_bytes)
    del parts[member]
    with pytest.raises(error, match=member.replace(".", r"\.")):
        load_project_bytes(rezip(parts))


def test_a_missing_thumbnail_is_fine(sample_bytes: bytes) -> None:
    parts = members(sample_bytes)
    del parts["thumbnail.png"]
    load_project_bytes(rezip(parts))


def test_bad_json(sample_bytes: bytes) -> None:
    parts = members(sample_bytes)
    parts["manifest.json"] = b'{"schema": 1, '
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_project_bytes(rezip(parts))
    parts["manifest.json"] = b'{"schema": 1, "x": NaN}'
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_project_bytes(rezip(parts))


def test_wrong_types_name_the_field(sample_bytes: bytes) -> None:
    data = with_manifest(sample_bytes, lambda m: m["document"]["layers"][0].update(alpha="3"))
    with pytest.raises(ManifestError, match=r"layers\[0\]\.alpha should be a number"):
        load_project_bytes(data)
    data = with_manifest(sample_bytes, lambda m: m["document"]["layers"][0]["params"].update(beta=7))
    with pytest.raises(ManifestError, match="beta must be between 0 and 1"):
        load_project_bytes(data)
    data = with_manifest(sample_bytes, lambda m: m["document"]["layers"][1].update(kind="hologram"))
    with pytest.raises(ManifestError, match="'hologram' edit"):
        load_project_bytes(data)


def _replace_array(data: bytes, key: str, array: np.ndarray) -> bytes:
    parts = members(data)
    inner = members(parts["arrays.npz"])
    buf = io.BytesIO()
    np.save(buf, array)
    inner[f"{key}.npy"] = buf.getvalue()
    parts["arrays.npz"] = rezip(inner)
    return rezip(parts)


def test_wrong_dtype_and_shape(sample_bytes: bytes) -> None:
    with pytest.raises(ArrayDataError, match="float32"):
        load_project_bytes(_replace_array(sample_bytes, "latent", np.zeros((18, 16), np.float64)))
    with pytest.raises(ArrayDataError, match="shape"):
        load_project_bytes(_replace_array(sample_bytes, "layer2_delta", np.zeros((18, 15), np.float32)))
    with pytest.raises(ArrayDataError, match="2-D"):
        load_project_bytes(_replace_array(sample_bytes, "latent", np.zeros((18,), np.float32)))
    with pytest.raises(ArrayDataError, match="NaN"):
        load_project_bytes(_replace_array(sample_bytes, "latent", np.full((18, 16), np.nan, np.float32)))
    with pytest.raises(ArrayDataError, match="float32"):
        load_project_bytes(_replace_array(sample_bytes, "latent", np.array([{"a": 1}], dtype=object)))


def test_truncated_array_is_caught_before_numpy_reads_it(sample_bytes: bytes) -> None:
    parts = members(sample_bytes)
    inner = members(parts["arrays.npz"])
    inner["latent.npy"] = inner["latent.npy"][:-7]
    parts["arrays.npz"] = rezip(inner)
    with pytest.raises(ArrayDataError, match="bytes of data"):
        load_project_bytes(rezip(parts))


def test_photo_checksum_is_verified(sample_bytes: bytes) -> None:
    parts = members(sample_bytes)
    parts["source.jpg"] = b"another photo"
    with pytest.raises(SourcePhotoError, match="checksum"):
        load_project_bytes(rezip(parts))


# -- fuzzing --------------------------------------------------------------------------------


def _load_or_project_error(data: bytes) -> None:
    try:
        load_project_bytes(data)
    except ProjectFileError:
        pass


@fast(200)
@given(data=st.data())
def test_random_byte_flips_only_raise_project_errors(sample_bytes: bytes, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(sample_bytes) - 1), st.integers(1, 255)),
                               min_size=1, max_size=8))
    damaged = bytearray(sample_bytes)
    for position, xor in flips:
        damaged[position] ^= xor
    _load_or_project_error(bytes(damaged))


@fast(200)
@given(data=st.data())
def test_truncation_anywhere_raises_a_project_error(sample_bytes: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(sample_bytes) - 1))
    with pytest.raises(ProjectFileError):
        load_project_bytes(sample_bytes[:cut])


def test_truncation_at_every_point_of_a_small_project(tmp_path: Path) -> None:
    small = project_bytes(Document(np.ones((1, 1), np.float32)), tmp_path, thumbnail=None)
    for cut in range(len(small)):
        with pytest.raises(ProjectFileError):
            load_project_bytes(small[:cut])


@fast(100)
@given(data=st.data())
def test_removed_or_renamed_members_only_raise_project_errors(sample_bytes: bytes, data: st.DataObject) -> None:
    parts = members(sample_bytes)
    changed = {}
    for name, content in parts.items():
        action = data.draw(st.sampled_from(["keep", "drop", "rename"]), label=name)
        if action == "keep":
            changed[name] = content
        elif action == "rename":
            changed[data.draw(st.sampled_from(["x/" + name, name.upper(), name + ".bak"]))] = content
    _load_or_project_error(rezip(changed))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


@fast(200)
@given(data=st.data())
def test_manifests_with_wrong_values_only_raise_project_errors(sample_bytes: bytes, data: st.DataObject) -> None:
    manifest = json.loads(members(sample_bytes)["manifest.json"])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(manifest)))
        target = manifest
        for step in path[:-1]:
            target = target[step]
        if data.draw(st.booleans()) and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = data.draw(json_values)
    parts = members(sample_bytes)
    parts["manifest.json"] = json.dumps(manifest).encode()
    _load_or_project_error(rezip(parts))


@DOC_SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_project_errors(data: bytes) -> None:
    _load_or_project_error(data)
