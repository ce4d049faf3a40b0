"""CLIP wrapper: loading through one safe path, QuickGELU, preprocessing, text embeddings and their cache."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in these tests may reach the network

import pickle  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg  # noqa: E402
from open_clip.transformer import QuickGELU  # noqa: E402
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from styleclip_desktop.errors import ModelFileError, UnsafePickleError, UserError  # noqa: E402
from styleclip_desktop.nets import clip as C  # noqa: E402


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clip")
    sd = C.tiny_clip_state_dict(seed=0)
    save_file(sd, d / "tiny.safetensors")
    torch.save(sd, d / "tiny.bin")
    return {"safetensors": d / "tiny.safetensors", "bin": d / "tiny.bin"}


@pytest.fixture(scope="module")
def tiny(tiny_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> C.ClipModel:
    return C.load_clip(tiny_files["safetensors"], cache_dir=tmp_path_factory.mktemp("text-cache"))


def count_text_forwards(model: C.ClipModel, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts passes through the text tower (its final layer norm runs once per batch)."""
    calls = [0]
    inner: Callable[..., torch.Tensor] = model.model.ln_final.forward

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls[0] += 1
        return inner(*args, **kwargs)

    monkeypatch.setattr(model.model.ln_final, "forward", counted)
    return calls


def tiny_gelu_model(quick_gelu: bool) -> CLIP:
    model = CLIP(
        512,
        vision_cfg=CLIPVisionCfg(layers=2, width=64, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
        quick_gelu=quick_gelu,
    )
    model.load_state_dict(C.tiny_clip_state_dict(seed=0))
    return model.eval()


# -- loading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_tiny_checkpoint_loads_and_embeds(kind: str, tiny_files: dict[str, Path], tmp_path: Path) -> None:
    m = C.load_clip(tiny_files[kind], cache_dir=tmp_path)
    assert (m.image_size, m.embed_dim) == (32, 512)
    assert len(m.model_hash) == 64
    assert not any(p.requires_grad for p in m.model.parameters()) and not m.model.training
    e = m.encode_text(["a face", "a face", "a dog with a hat"])
    assert e.shape == (3, 512)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert torch.equal(e[0], e[1])
    assert (e[0] - e[2]).abs().max() > 1e-3
    imgs = m.encode_image(torch.rand(2, 3, 48, 40) * 2 - 1)
    assert imgs.shape == (2, 512)
    torch.testing.assert_close(imgs.norm(dim=-1), torch.ones(2))


def test_both_formats_give_identical_embeddings(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    a = C.load_clip(tiny_files["safetensors"], cache_dir=tmp_path)
    b = C.load_clip(tiny_files["bin"], cache_dir=tmp_path)
    assert torch.equal(a.encode_text(["grey hair"]), b.encode_text(["grey hair"]))


def test_openai_torchscript_archive_is_read_without_running_it(tiny: C.ClipModel, tmp_path: Path) -> None:
    tokens = tiny.tokenize(["a face"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace_module(tiny.model, {"forward": (torch.zeros(1, 3, 32, 32), tokens)})
        torch.jit.save(scripted, str(tmp_path / "ViT-B-32.pt"))
    m = C.load_clip(tmp_path / "ViT-B-32.pt", cache_dir=tmp_path)
    torch.testing.assert_close(m.encode_text(["grey hair"]), tiny.encode_text(["grey hair"]), rtol=0, atol=0)


def test_torchscript_archive_asking_for_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ViT-B-32/data.pkl", pickle.dumps(Payload(), protocol=2))
        zf.writestr("ViT-B-32/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(UnsafePickleError):
        C.load_clip(path, cache_dir=tmp_path)
    assert not marker.exists()


def test_pickle_asking_for_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "clip.bin"
    path.write_bytes(pickle.dumps({"visual.proj": Payload()}, protocol=2))
    with pytest.raises(UnsafePickleError):
        C.load_clip(path, cache_dir=tmp_path)
    assert not marker.exists()


def test_openai_tag_goes_through_open_clip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: list[tuple[Any, ...]] = []

    def fake(name: str, pretrained: str, device: Any) -> tuple[CLIP, None, None]:
        asked.append((name, pretrained))
        return tiny_gelu_model(quick_gelu=True), None, None

    monkeypatch.setattr(C.open_clip, "create_model_and_transforms", fake)
    m = C.load_clip("openai", cache_dir=tmp_path)
    assert asked == [("ViT-B-32-quickgelu", "openai")] and m.model_hash == "openai"

    def offline(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Failed to download weights for tag 'openai'")

    monkeypatch.setattr(C.open_clip, "create_model_and_transforms", offline)
    with pytest.raises(ModelFileError, match="Failed to download"):
        C.load_clip("openai", cache_dir=tmp_path)


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_truncated_file_raises(kind: str, tiny_files: dict[str, Path], tmp_path: Path) -> None:
    data = tiny_files[kind].read_bytes()
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="damaged|truncated"):
        C.load_clip(path, cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["noise.bin", "noise.safetensors", "noise.pt"])
def test_random_bytes_raise(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ModelFileError):
        C.load_clip(path, cache_dir=tmp_path)


def test_missing_file_and_wrong_weights_raise(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        C.load_clip(tmp_path / "absent.safetensors")
    save_file({"generator.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="not an OpenAI-layout CLIP"):
        C.load_clip(tmp_path / "other.safetensors")
    sd = C.tiny_clip_state_dict()
    del sd["visual.ln_post.weight"]
    save_file(sd, tmp_path / "partial.safetensors")
    with pytest.raises(ModelFileError, match="ln_post"):
        C.load_clip(tmp_path / "partial.safetensors")


# -- QuickGELU -------------------------------------------------------------------------------------

def test_quick_gelu_is_pinned(tiny: C.ClipModel) -> None:
    quick, plain = tiny_gelu_model(quick_gelu=True), tiny_gelu_model(quick_gelu=False)
    tokens = tiny.tokenize(["a face with grey hair"])
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        loaded = tiny.model.encode_text(tokens)
        torch.testing.assert_close(loaded, quick.encode_text(tokens))
        # Same weights, other activation: the embedding moves, which is why the loader never uses GELU.
        assert (plain.encode_text(tokens) - loaded).abs().max() > 1e-2
        assert (plain.encode_image(image) - quick.encode_image(image)).abs().max() > 1e-3
    n_quick = sum(isinstance(m, QuickGELU) for m in tiny.model.modules())
    assert n_quick == 4 and not any(isinstance(m, torch.nn.GELU) for m in tiny.model.modules())
    assert C.uses_quick_gelu(tiny.model) and not C.uses_quick_gelu(plain)
    with pytest.raises(ModelFileError, match="QuickGELU"):
        C.ClipModel(plain, "x")


# -- images ----------------------------------------------------------------------------------------

def test_encode_image_is_differentiable(tiny: C.ClipModel) -> None:
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    loss = (tiny.encode_image(images) @ torch.from_numpy(tiny.text_embedding("a face"))).sum()
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_pil_and_tensor_preprocessing_agree(tiny: C.ClipModel) -> None:
    # A smooth image away from 0 and 255, so PIL's uint8 clipping plays no part.
    yy, xx = np.mgrid[0:45, 0:60]
    noise = np.random.default_rng(0).normal(0, 8, (45, 60, 1))
    pixels = np.stack([128 + 60 * np.sin(xx / 5 + c) * np.cos(yy / 7) for c in range(3)], -1) + noise
    pixels = np.clip(pixels, 20, 235).astype(np.uint8)

    from_pil = tiny.preprocess_pil(Image.fromarray(pixels))
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    from_tensor = tiny.preprocess(tensor)[0]
    assert from_pil.shape == from_tensor.shape == (3, 32, 32)
    std = torch.tensor(C.OPENAI_DATASET_STD).view(3, 1, 1)
    # In pixel units [0, 1]: PIL rounds to uint8 after resizing, the tensor path does not.
    assert ((from_pil - from_tensor) * std).abs().max() < 1e-2
    assert (from_pil - from_tensor).abs().mean() < 1e-2
    torch.testing.assert_close(
        tiny.encode_preprocessed(from_pil[None]), tiny.encode_image(tensor), atol=1e-2, rtol=0
    )


def test_preprocess_crops_the_centre_of_the_short_side(tiny: C.ClipModel) -> None:
    images = torch.zeros(1, 3, 32, 48)
    images[..., 8:40] = 1.0  # the centre 32 columns white, the margins black
    x = tiny.preprocess(images) * torch.tensor(C.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    x = x + torch.tensor(C.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(x, torch.ones_like(x))


# -- text ------------------------------------------------------------------------------------------

def test_templates_are_openais_without_many() -> None:
    openai = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert len(openai) == 80 and len(C.IMAGENET_TEMPLATES) == 79
    assert [t for t in openai if t not in C.IMAGENET_TEMPLATES] == ["a photo of many {}."]
    assert list(C.IMAGENET_TEMPLATES) == [t for t in openai if t != "a photo of many {}."]


def test_text_embedding_is_one_batched_forward_of_79_prompts(
    tiny: C.ClipModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = C.ClipModel(tiny.model, tiny.model_hash, cache_dir=tmp_path)
    calls = count_text_forwards(m, monkeypatch)
    e = m.text_embedding("a face with a beard")
    assert calls[0] == 1
    assert e.shape == (512,) and e.dtype == np.float32
    assert abs(np.linalg.norm(e) - 1) < 1e-5
    per = m.encode_text([t.format("a face with a beard") for t in C.IMAGENET_TEMPLATES])
    expected = torch.nn.functional.normalize(per.mean(0), dim=0).numpy()
    np.testing.assert_allclose(e, expected, atol=1e-6)


def test_text_direction_unit_antisymmetric_and_cached(
    tiny: C.ClipModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = C.ClipModel(tiny.model, tiny.model_hash, cache_dir=tmp_path)
    calls = count_text_forwards(m, monkeypatch)
    d = m.text_direction("a face with grey hair", "a face")
    assert d.shape == (512,) and d.dtype == np.float32
    assert abs(np.linalg.norm(d) - 1) < 1e-5
    assert calls[0] == 2
    np.testing.assert_array_equal(m.text_direction("a face", "a face with grey hair"), -d)
    assert calls[0] == 2  # in-memory hit
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not list(tmp_path.glob("*.tmp"))

    fresh = C.ClipModel(tiny.model, tiny.model_hash, cache_dir=tmp_path)
    np.testing.assert_array_equal(fresh.text_direction("a face with grey hair"), d)
    assert calls[0] == 2  # disk hit: the fresh instance shares the wrapped module

    for f in tmp_path.glob("*.npy"):
        f.write_bytes(b"\x93NUMPY garbage")
    broken = C.ClipModel(tiny.model, tiny.model_hash, cache_dir=tmp_path)
    np.testing.assert_array_equal(broken.text_direction("a face with grey hair"), d)
    assert calls[0] == 4
    assert all(np.load(f).shape == (512,) for f in tmp_path.glob("*.npy"))  # rewritten


def test_cache_is_keyed_by_model(tiny: C.ClipModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    C.ClipModel(tiny.model, "model-a", cache_dir=tmp_path).text_embedding("smiling")
    m = C.ClipModel(tiny.model, "model-b", cache_dir=tmp_path)
    calls = count_text_forwards(m, monkeypatch)
    m.text_embedding("smiling")
    assert calls[0] == 1 and len(list(tmp_path.glob("*.npy"))) == 2


def test_same_meaning_and_empty_text_are_user_errors(tiny: C.ClipModel) -> None:
    with pytest.raises(UserError, match="mean the same"):
        tiny.text_direction("a face", "a face")
    with pytest.raises(UserError, match="empty"):
        tiny.text_embedding("   ")


def test_unwritable_cache_does_not_fail(tiny: C.ClipModel, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    m = C.ClipModel(tiny.model, tiny.model_hash, cache_dir=blocker / "text")
    assert m.text_embedding("curly hair").shape == (512,)


# -- real size -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_random_vit_b32_has_the_real_shape(tmp_path: Path) -> None:
    m = C.random_vit_b32("cpu", cache_dir=tmp_path)
    assert (m.image_size, m.embed_dim) == (224, 512)
    assert C.uses_quick_gelu(m.model)
    assert m.model.visual.positional_embedding.shape == (50, 768)
    assert m.encode_text(["a face"]).shape == (1, 512)


def test_truncated_text_tower_matches_the_full_one() -> None:
    """Cutting the padding after end-of-text must not change any embedding."""
    import torch

    from styleclip_desktop.nets.clip import ClipModel, build_clip, tiny_clip_state_dict

    clip = ClipModel(build_clip(tiny_clip_state_dict(3)), "t", "cpu")
    texts = ["a", "a face with grey hair", "a photo of a robot with a very long description of many things"]
    tokens = clip.tokenize(texts)
    with torch.no_grad():
        full = clip.model.encode_text(tokens)
        cut = clip._encode_tokens(tokens)
    assert int((tokens != 0).sum(1).max()) < tokens.shape[1]
    assert torch.allclose(full, cut, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_openai_fallback_loads_through_open_clip_from_the_hub_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real call open_clip makes for the `openai` tag, served from a hub-layout cache.

    The weights are a random full-size ViT-B/32 (the file's layout, key names and shapes are
    what the hub serves); HF_HUB_OFFLINE keeps huggingface_hub from any network access.
    """
    import open_clip

    hub = tmp_path / "hub"
    repo = hub / "models--timm--vit_base_patch32_clip_224.openai"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "snapshots" / rev).mkdir(parents=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-B-32-quickgelu")
    save_file({k: v.half().contiguous() for k, v in ref.state_dict().items()},
              str(repo / "snapshots" / rev / "open_clip_model.safetensors"))
    import huggingface_hub.constants as hub_constants

    # huggingface_hub reads its environment once, at import.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    m = C.load_clip("openai", cache_dir=tmp_path / "text")
    assert C.uses_quick_gelu(m.model)
    want = ref.state_dict()["visual.proj"].half().float()
    assert torch.equal(m.model.state_dict()["visual.proj"].float(), want)
