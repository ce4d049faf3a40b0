from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from styleclip_desktop.errors import ModelFileError, UnsafePickleError
from styleclip_desktop.weights import formats, synthetic
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
