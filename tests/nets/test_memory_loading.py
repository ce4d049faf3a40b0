"""The loaders hold each file's weights once: the tensors read from a file become the
network's weights (no second copy, no random start), files are read into memory rather
than left mapped, what the network never uses is not kept, and the numbers are exactly
those of a network built normally and loaded by copy."""

from __future__ import annotations

import ctypes
import sys
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from styleclip_desktop.nets import adoption, checkpoint, clip, e4e, irse
from styleclip_desktop.nets.e4e import E4E, load_e4e, write_synthetic_e4e
from styleclip_desktop.nets.irse import ArcFace, load_arcface, write_synthetic_arcface


def _storages(model: nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in model.state_dict().values() if t.numel()}


def _same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].is_contiguous(), k
        assert torch.equal(sa[k], sb[k]), k


def _capture(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[tuple[object, dict[str, object]]]:
    """Record what `module.name` returned and the keywords it was called with."""
    seen: list[tuple[object, dict[str, object]]] = []
    real = getattr(module, name)

    def spy(*args: object, **kwargs: object) -> object:
        out = real(*args, **kwargs)
        seen.append((out, kwargs))
        return out

    monkeypatch.setattr(module, name, spy)
    return seen


def _mapped(path: Path) -> bool:
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


linux_only = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/self/maps")


# --- e4e ---------------------------------------------------------------------------------


def _e4e_reference(path: Path) -> E4E:
    """The encoder as a normally built network loaded by copy (the loader before adoption)."""
    ckpt = torch.load(path, weights_only=True)
    enc = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    model = E4E(e4e.e4e_config_from_state_dict(enc))
    model.encoder.load_state_dict(enc, strict=True)
    model.latent_avg.copy_(ckpt["latent_avg"])  # type: ignore[operator]
    return model.eval()


def test_e4e_adopts_the_file_tensors_and_matches_a_copied_load(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = {"style.1.weight": torch.randn(8, 8), "input.input": torch.randn(1, 8, 4, 4)}
    path = write_synthetic_e4e(tmp_path / "e4e_ffhq_encode.pt", num_ws=10, seed=3, decoder_state=decoder)
    seen = _capture(monkeypatch, e4e, "torch_load")
    model = load_e4e(path)
    (ckpt, kwargs), = seen
    assert kwargs.get("mmap") is False  # read into memory: adopted tensors must not map the file
    file_encoder = {v.untyped_storage().data_ptr() for k, v in ckpt["state_dict"].items()  # type: ignore[index]
                    if k.startswith("encoder.") and v.numel()}
    file_decoder = {v.untyped_storage().data_ptr() for k, v in ckpt["state_dict"].items()  # type: ignore[index]
                    if k.startswith("decoder.")}
    assert _storages(model.encoder) == file_encoder  # the file's tensors are the weights: one copy
    assert not _storages(model) & file_decoder and model.decoder_state is None and model.has_decoder
    ref = _e4e_reference(path)
    _same_state(model, ref)
    face = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(face), ref(face))


def test_e4e_frees_the_decoder_and_returns_the_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = {"style.1.weight": torch.randn(8, 8), "input.input": torch.randn(1, 8, 4, 4)}
    path = write_synthetic_e4e(tmp_path / "e4e_ffhq_encode.pt", num_ws=10, seed=3, decoder_state=decoder)
    refs: list[weakref.ref[torch.Tensor]] = []
    real_load = e4e.torch_load

    def spy(*args: object, **kwargs: object) -> object:
        ckpt = real_load(*args, **kwargs)  # type: ignore[arg-type]
        refs.extend(weakref.ref(v) for k, v in ckpt["state_dict"].items() if k.startswith("decoder."))
        return ckpt

    released: list[bool] = []
    monkeypatch.setattr(e4e, "torch_load", spy)
    monkeypatch.setattr(adoption, "release_freed_memory", lambda: released.append(all(r() is None for r in refs)))
    model = load_e4e(path)
    assert refs and released == [True]  # the decoder was gone when the heap was trimmed
    assert model.has_decoder and model.decoder_state is None


def test_release_freed_memory_is_safe_to_call() -> None:
    adoption.release_freed_memory()


def test_e4e_without_latent_avg_starts_from_zeros(tmp_path: Path) -> None:
    path = write_synthetic_e4e(tmp_path / "e4e.pt", num_ws=10, seed=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["latent_avg"]
    torch.save(ckpt, path)
    model = load_e4e(path, require_latent_avg=False)
    avg = model.get_buffer("latent_avg")
    assert not avg.is_meta and torch.equal(avg, torch.zeros(10, 512))


@linux_only
def test_loaded_networks_leave_no_file_mapped(tmp_path: Path) -> None:
    paths = {"e4e": write_synthetic_e4e(tmp_path / "e4e.pt", num_ws=10, seed=0),
             "arcface": write_synthetic_arcface(tmp_path / "model_ir_se50.pth", seed=0),
             "clip": tmp_path / "clip.safetensors"}
    save_file(clip.tiny_clip_state_dict(0), str(paths["clip"]))
    models = [load_e4e(paths["e4e"]), load_arcface(paths["arcface"]), clip.load_clip(paths["clip"],
                                                                                      cache_dir=tmp_path / "t")]
    for name, p in paths.items():
        assert not _mapped(p), f"{name}: the file stays mapped while the network lives"
    assert all(m is not None for m in models)


# --- ArcFace -----------------------------------------------------------------------------


def test_arcface_adopts_the_file_tensors_and_matches_a_copied_load(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_synthetic_arcface(tmp_path / "model_ir_se50.pth", seed=2)
    seen = _capture(monkeypatch, irse, "torch_load")
    net = load_arcface(path)
    (sd, kwargs), = seen
    assert kwargs.get("mmap") is False
    assert _storages(net) == {v.untyped_storage().data_ptr() for v in sd.values() if v.numel()}  # type: ignore[attr-defined]
    ref = ArcFace(irse.TINY_IRSE)
    ref.load_state_dict(torch.load(path, weights_only=True))
    ref.eval()
    _same_state(net, ref)
    faces = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net.identity_features(faces), ref.identity_features(faces))


# --- CLIP --------------------------------------------------------------------------------


def test_clip_adopts_the_file_tensors_and_matches_a_copied_load(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sd = clip.tiny_clip_state_dict(4)
    path = tmp_path / "clip-vit-b32.safetensors"
    save_file(sd, str(path))
    seen = _capture(monkeypatch, clip, "_read_safetensors")
    model = clip.load_clip(path, cache_dir=tmp_path / "text").model
    (read, _), = seen
    assert _storages(model) - {model.attn_mask.untyped_storage().data_ptr()} == \
        {v.untyped_storage().data_ptr() for v in read.values()}  # type: ignore[attr-defined]
    ref = clip.ClipModel(clip.build_clip({k: v.clone() for k, v in sd.items()}), "ref",  # the copying path
                         cache_dir=tmp_path / "text-ref").model
    _same_state(model, ref)
    mask = model.get_buffer("attn_mask")
    assert not mask.is_meta and torch.equal(mask, ref.get_buffer("attn_mask"))
    tokens = clip._tokenizer(77)(["a face with grey hair", "a face"])
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model.encode_text(tokens), ref.encode_text(tokens))
        assert torch.equal(model.encode_image(pixels), ref.encode_image(pixels))


def test_build_clip_copies_unless_asked_to_adopt() -> None:
    sd = clip.tiny_clip_state_dict(0)
    model = clip.build_clip(sd)
    assert not _storages(model) & {v.untyped_storage().data_ptr() for v in sd.values()}


def test_safetensors_are_read_into_memory_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16)}, str(path))
    out = clip._read_safetensors(path)
    for v in out.values():
        assert v.untyped_storage().nbytes() == v.numel() * v.element_size() and v.data_ptr() % 64 == 0
    assert torch.equal(out["a"], torch.arange(6.0).reshape(2, 3)) and out["b"].dtype == torch.float16
    if sys.platform.startswith("linux"):
        assert not _mapped(path)


# --- build_checked -----------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)
        self.register_buffer("mask", torch.arange(5.0), persistent=False)
        self.register_buffer("count", torch.tensor(0))


def test_adoption_copies_what_it_cannot_own() -> None:
    shared = torch.randn(3, 4)
    state = {"a.weight": shared, "b.weight": shared,  # one storage for two weights
             "a.bias": torch.randn(6)[::2],  # strided
             "b.bias": torch.randn(3, dtype=torch.float16),  # another dtype
             "count": torch.tensor(7)}
    model = checkpoint.build_checked(_Net, state, adopt=True)
    assert model.a.weight.data_ptr() == shared.data_ptr()  # the first is adopted
    assert model.b.weight.data_ptr() != shared.data_ptr()  # the second is a copy of its own
    assert model.a.bias.is_contiguous() and model.b.bias.dtype == torch.float32
    ref = checkpoint.build_checked(_Net, state)
    _same_state(model, ref)
    assert torch.equal(model.get_buffer("mask"), torch.arange(5.0))  # not in the state: built for real
    assert all(isinstance(p, nn.Parameter) for p in (model.a.weight, model.b.weight, model.a.bias))


def test_adoption_copies_unaligned_tensors() -> None:
    buf = bytearray(256)
    addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    offset = next(o for o in (4, 8, 16, 32) if (addr + o) % 64)
    weight = torch.frombuffer(buf, dtype=torch.float32, offset=offset, count=12).view(3, 4)
    weight.copy_(torch.randn(3, 4))
    assert weight.storage_offset() == 0 and weight.untyped_storage().nbytes() == 48  # alone on its storage
    state = {**_Net().state_dict(), "a.weight": weight}
    model = checkpoint.build_checked(_Net, state, adopt=True)
    assert model.a.weight.data_ptr() % 64 == 0 and torch.equal(model.a.weight, weight)
    assert model.b.weight.data_ptr() == state["b.weight"].data_ptr()  # an aligned one is adopted


def test_adoption_fills_what_the_state_lacks_by_name() -> None:
    state = {k: v for k, v in _Net().state_dict().items()}
    model = checkpoint.build_checked(_Net, state, adopt=True, fill=lambda: {"mask": torch.full((5,), 2.0)})
    assert torch.equal(model.get_buffer("mask"), torch.full((5,), 2.0))
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_adoption_still_refuses_a_state_that_does_not_fit() -> None:
    state = dict(_Net().state_dict())
    state["a.weight"] = torch.randn(3, 5)
    with pytest.raises(RuntimeError):
        checkpoint.build_checked(_Net, state, adopt=True)


# --- the memory benchmark's files ----------------------------------------------------------


def test_benchmark_files_are_read_by_the_app_loaders(tmp_path: Path) -> None:
    pytest.importorskip("bench.memory_models")
    from bench.memory_models import write_all
    from styleclip_desktop.weights.formats import ADA_PKL, detect_generator_format, load_generator

    files = write_all(tmp_path, tiny=True)
    assert detect_generator_format(files["generator"]) == ADA_PKL
    G = load_generator(files["generator"])
    enc = load_e4e(files["e4e"])
    assert enc.num_ws == G.num_ws and enc.has_decoder
    load_arcface(files["arcface"])
    clip.load_clip(files["clip"], cache_dir=tmp_path / "text")
