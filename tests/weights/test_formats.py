from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from styleclip_desktop.errors import ModelFileError, UnsafePickleError
from styleclip_desktop.nets.stylegan2 import Generator
from styleclip_desktop.weights import formats, safe_pickle, synthetic
from styleclip_desktop.weights.safe_pickle import restricted_load

GEN_KINDS = ("stylegan2-ada-pkl", "stylegan2-tf-pkl", "stylegan2-rosinality-pt")


def test_three_formats_render_identically(synthetic_models: dict[str, Path], tiny_G) -> None:  # type: ignore[no-untyped-def]
    ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=5))
    with torch.no_grad():
        ref = tiny_G(ws)
        outs = {k: formats.load_generator(synthetic_models[k])(ws) for k in GEN_KINDS}
    for k, out in outs.items():
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() < 1e-5, k


@pytest.mark.parametrize("kind", GEN_KINDS)
def test_format_is_detected_from_content(synthetic_models: dict[str, Path], tmp_path: Path, kind: str) -> None:
    misleading = tmp_path / "model.safetensors"
    shutil.copy(synthetic_models[kind], misleading)
    assert formats.detect_generator_format(misleading) == kind


def test_non_generators_are_not_detected(synthetic_models: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(os.urandom(4096))
    assert formats.detect_generator_format(junk) is None
    assert formats.detect_generator_format(synthetic_models["clip"]) is None
    with pytest.raises(ModelFileError, match="not a StyleGAN2 checkpoint"):
        formats.load_generator(junk)


@pytest.mark.parametrize("kind", GEN_KINDS)
def test_truncated_checkpoint_is_a_clear_error(synthetic_models: dict[str, Path], tmp_path: Path, kind: str) -> None:
    data = synthetic_models[kind].read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        formats.load_generator(cut)


class _Evil:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.sentinel}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Evil(sentinel)}, protocol=4))
    with pytest.raises(UnsafePickleError, match="refused"):
        with open(evil, "rb") as f:
            restricted_load(f)
    # Dressed as an NVIDIA pickle, it still runs nothing.
    disguised = tmp_path / "disguised.pkl"
    disguised.write_bytes(pickle.dumps(_Evil(sentinel), protocol=4))
    with pytest.raises(ModelFileError):
        formats.load_generator(disguised)
    assert not sentinel.exists()


def test_embedded_source_code_is_never_executed(tmp_path: Path, tiny_G, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """NVIDIA pickles carry Python source for their classes; loading must not run it."""
    monkeypatch.chdir(tmp_path)
    sentinel = tmp_path / "ran"
    path = synthetic.write_ada_pkl(tiny_G, tmp_path / "g.pkl")
    payload = "open('ran', 'w').write('x')\n"
    data = path.read_bytes().replace(synthetic.SOURCE_PLACEHOLDER.encode(), payload.ljust(len(synthetic.SOURCE_PLACEHOLDER)).encode())
    assert payload.encode() in data
    path.write_bytes(data)
    G = formats.load_generator(path)
    assert G.config.resolution == 32
    assert not sentinel.exists()


def test_converted_copy_is_cached_by_hash(synthetic_models: dict[str, Path], tmp_path: Path, tiny_G) -> None:  # type: ignore[no-untyped-def]
    src = synthetic_models["stylegan2-tf-pkl"]
    G1 = formats.load_generator(src, cache_dir=tmp_path)
    cached = list((tmp_path / "generators").glob("*.safetensors"))
    assert [c.stem for c in cached] == [formats.sha256_file(src)]
    G2 = formats.load_generator(src, cache_dir=tmp_path)
    for (k, a), (_, b) in zip(G1.state_dict().items(), G2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    cached[0].write_bytes(b"damaged")  # a broken cache entry is rebuilt, never trusted
    G3 = formats.load_generator(src, cache_dir=tmp_path)
    assert torch.equal(G3.const, G1.const)


# --- pre-1.6 (non-zip) torch files -----------------------------------------------------


def test_legacy_torch_file_is_recognised_and_loads_like_the_zip_file(tmp_path: Path, tiny_G) -> None:  # type: ignore[no-untyped-def]
    from styleclip_desktop.weights.identify import identify_file

    zipped = synthetic.write_rosinality_pt(tiny_G, tmp_path / "g.pt")
    legacy = tmp_path / "model.safetensors"  # a misleading name: the content decides
    data = synthetic.rosinality_state_dict(tiny_G)
    torch.save({"g_ema": data, "latent_avg": tiny_G.w_avg.clone()}, legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:2] != b"PK"
    assert formats.detect_generator_format(legacy) == formats.ROSINALITY_PT
    found = identify_file(legacy)
    assert found is not None and found.kind == "stylegan2-rosinality-pt"
    ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=3))
    with torch.no_grad():
        assert torch.equal(formats.load_generator(legacy)(ws), formats.load_generator(zipped)(ws))


def test_legacy_writer_writes_the_legacy_format(tmp_path: Path, tiny_G) -> None:  # type: ignore[no-untyped-def]
    path = synthetic.write_rosinality_pt(tiny_G, tmp_path / "g.pt", legacy=True)
    assert not zipfile.is_zipfile(path)
    G = formats.load_generator(path)
    assert G.synthetic
    for k, v in tiny_G.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k


def test_rosinality_training_checkpoint_without_latent_avg_loads(tmp_path: Path, tiny_G) -> None:  # type: ignore[no-untyped-def]
    # rosinality's train.py saves g, d, g_ema and optimiser states, no latent_avg.
    path = tmp_path / "200000.pt"
    torch.save({"g_ema": synthetic.rosinality_state_dict(tiny_G), "g": synthetic.rosinality_state_dict(tiny_G)}, path)
    G = formats.load_generator(path)
    with torch.no_grad():
        z = torch.randn(4096, tiny_G.config.z_dim, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(G.w_avg, tiny_G.mapping(z).mean(0), atol=1e-5)
        ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=1))
        assert (G(ws) - tiny_G(ws)).abs().max().item() < 1e-5


def test_legacy_torch_file_without_a_generator_is_not_one(tmp_path: Path) -> None:
    other = tmp_path / "encoder.pt"
    torch.save({"state_dict": {"encoder.w": torch.zeros(2)}, "g": {}}, other, _use_new_zipfile_serialization=False)
    assert formats.detect_generator_format(other) is None
    with pytest.raises(ModelFileError, match="not a StyleGAN2 checkpoint"):
        formats.load_generator(other)


def test_truncated_legacy_file_is_a_clear_error(tmp_path: Path, tiny_G) -> None:  # type: ignore[no-untyped-def]
    data = synthetic.write_rosinality_pt(tiny_G, tmp_path / "g.pt", legacy=True).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        formats.load_generator(cut)


# --- protocol-2 NVIDIA pickles ---------------------------------------------------------


def test_protocol2_ada_pickle_loads_identically(tmp_path: Path, tiny_G) -> None:  # type: ignore[no-untyped-def]
    p4 = synthetic.write_ada_pkl(tiny_G, tmp_path / "p4.pkl", protocol=4)
    p2 = synthetic.write_ada_pkl(tiny_G, tmp_path / "p2.pkl", protocol=2)
    refs = safe_pickle.pickle_globals(p2.read_bytes())
    assert {("__builtin__", "set"), ("_codecs", "encode")} <= refs  # the file needs what was added
    ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=4))
    with torch.no_grad():
        assert torch.equal(formats.load_generator(p2)(ws), formats.load_generator(p4)(ws))


def _global_call(module: str, name: str, *args: str) -> bytes:
    """A protocol-2 pickle that calls module.name(*args)."""
    body = b"".join(b"X" + len(a.encode()).to_bytes(4, "little") + a.encode() for a in args)
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n(" + body + b"tR."


def test_protocol2_globals_are_allowed_only_as_pickle_uses_them() -> None:
    # Control: the hand-made pickles are well formed, so the refusals below are real refusals.
    assert restricted_load(io.BytesIO(_global_call("_codecs", "encode", "\xe9\x01", "latin1"))) == b"\xe9\x01"
    assert restricted_load(io.BytesIO(_global_call("_codecs", "encode", "ab", "latin-1"))) == b"ab"
    assert restricted_load(io.BytesIO(_global_call("__builtin__", "set", ""))) == set()


@pytest.mark.parametrize("args", [("abc",), ("abc", "zlib"), ("abc", "rot13"), ("abc", "utf-8"),
                                  ("abc", "base64"), ("abc", "latin1", "ignore")])
def test_codecs_encode_with_another_codec_is_refused(args: tuple[str, ...]) -> None:
    with pytest.raises(UnsafePickleError, match="refused"):
        restricted_load(io.BytesIO(_global_call("_codecs", "encode", *args)))


@pytest.mark.parametrize("ref", [("__builtin__", "eval"), ("__builtin__", "getattr"), ("__builtin__", "exec"),
                                 ("__builtin__", "frozenset"), ("_codecs", "decode"), ("codecs", "encode"),
                                 ("_codecs", "lookup"), ("builtins", "eval")])
def test_other_globals_stay_refused(ref: tuple[str, str]) -> None:
    with pytest.raises(UnsafePickleError, match="refused"):
        restricted_load(io.BytesIO(_global_call(*ref, "abc")))


# --- conv_clamp ------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [synthetic.write_tf_pkl, synthetic.write_ada_pkl], ids=["tf", "ada"])
def test_conv_clamp_reaches_the_config_and_the_outputs(tmp_path: Path, tiny_G, writer) -> None:  # type: ignore[no-untyped-def]
    clamped = Generator(dataclasses.replace(tiny_G.config, conv_clamp=0.5))
    clamped.load_state_dict(tiny_G.state_dict())
    clamped.eval()
    path = writer(clamped, tmp_path / "g.pkl")
    G = formats.load_generator(path)
    assert G.config.conv_clamp == 0.5
    ws = tiny_G.broadcast_w(tiny_G.sample_w(2, seed=6))
    with torch.no_grad():
        ref, out, unclamped = clamped(ws), G(ws), tiny_G(ws)
    assert (ref - unclamped).abs().max().item() > 0.1  # the clamp matters for these weights
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("kept_in", ["G_main", "G_synthesis_stylegan2"])
def test_tf_conv_clamp_is_read_from_gs_or_its_synthesis_network(tmp_path: Path, tiny_G, monkeypatch,  # type: ignore[no-untyped-def]
                                                               kept_in: str) -> None:
    real = synthetic._tf_net

    def only_one_copy(name, func, variables, components=None, static_kwargs=None):  # type: ignore[no-untyped-def]
        kw = dict(static_kwargs or {})
        if func in ("G_main", "G_synthesis_stylegan2") and func != kept_in:
            kw.pop("conv_clamp", None)
        return real(name, func, variables, components, kw)

    monkeypatch.setattr(synthetic, "_tf_net", only_one_copy)
    clamped = Generator(dataclasses.replace(tiny_G.config, conv_clamp=256))
    clamped.load_state_dict(tiny_G.state_dict())
    path = synthetic.write_tf_pkl(clamped, tmp_path / "g.pkl")
    with open(path, "rb") as f:
        gs = restricted_load(f)[2]
    where = gs if kept_in == "G_main" else gs["components"]["synthesis"]
    other = gs["components"]["synthesis"] if kept_in == "G_main" else gs
    assert where["static_kwargs"]["conv_clamp"] == 256 and "conv_clamp" not in other["static_kwargs"]
    assert formats.load_generator(path).config.conv_clamp == 256.0


# --- stored resampling filters ---------------------------------------------------------


def _write(kind: str, G: Generator, path: Path, taps: tuple[float, ...]) -> Path:
    if kind == "ada":
        return synthetic.write_ada_pkl(G, path, resample_filter=taps)
    if kind == "tf":
        return synthetic.write_tf_pkl(G, path, resample_kernel=taps)
    return synthetic.write_rosinality_pt(G, path, legacy=kind == "rosinality-legacy", blur_kernel=taps)


KINDS = ("ada", "tf", "rosinality", "rosinality-legacy")
FILTER_NAMES = {"ada": r"synthesis\.b8\.(conv0\.)?resample_filter", "tf": "resample_kernel",
                "rosinality": r"convs\.0\.conv\.blur\.kernel", "rosinality-legacy": r"convs\.0\.conv\.blur\.kernel"}


@pytest.mark.parametrize("taps", [(1.0, 2.0, 1.0), (1.0, 1.0, 1.0, 1.0)], ids=["3-tap", "box"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_non_standard_resampling_filter_is_refused(tmp_path: Path, tiny_G, kind: str,  # type: ignore[no-untyped-def]
                                                    taps: tuple[float, ...]) -> None:
    path = _write(kind, tiny_G, tmp_path / "g.bin", taps)
    with pytest.raises(ModelFileError, match="resampling filter") as info:
        formats.load_generator(path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(FILTER_NAMES[kind], message), message
    shown = "[1, 2, 1]" if len(taps) == 3 else "[1, 1, 1, 1]"
    assert shown in message


@pytest.mark.parametrize("kind", KINDS)
def test_the_standard_filter_loads_however_it_is_scaled(tmp_path: Path, tiny_G, kind: str) -> None:  # type: ignore[no-untyped-def]
    # Each format normalises the taps it was given, so a scaled [1, 3, 3, 1] is the same filter.
    path = _write(kind, tiny_G, tmp_path / "g.bin", (2.0, 6.0, 6.0, 2.0))
    ws = tiny_G.broadcast_w(tiny_G.sample_w(1, seed=2))
    with torch.no_grad():
        assert (formats.load_generator(path)(ws) - tiny_G(ws)).abs().max().item() < 1e-5
