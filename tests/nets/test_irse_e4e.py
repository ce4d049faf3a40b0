"""IR-SE50 backbone, ArcFace and e4e: official key layouts, loaders, synthetic fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from styleclip_desktop.errors import ModelFileError
from styleclip_desktop.nets.e4e import (
    E4EConfig,
    Encoder4Editing,
    e4e_config_from_state_dict,
    load_e4e,
    write_synthetic_e4e,
)
from styleclip_desktop.nets.irse import (
    ArcFace,
    IRSEConfig,
    irse_config_from_state_dict,
    load_arcface,
    write_synthetic_arcface,
)


def _meta_state(module_factory: type[torch.nn.Module]) -> dict[str, torch.Tensor]:
    # Full-size networks are built on the meta device: real shapes, no memory, no time.
    with torch.device("meta"):
        return module_factory().state_dict()


def test_real_arcface_layout() -> None:
    sd = _meta_state(ArcFace)
    assert {k.split(".")[0] for k in sd} == {"input_layer", "body", "output_layer"}
    assert sum(1 for k in sd if k.endswith("res_layer.1.weight")) == 24  # 3 + 4 + 14 + 3 units
    assert sd["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert sd["input_layer.2.weight"].shape == (64,)  # PReLU
    assert sd["body.0.res_layer.5.fc1.weight"].shape == (4, 64, 1, 1)  # SE, reduction 16
    assert "body.0.shortcut_layer.0.weight" not in sd  # width unchanged: strided identity
    assert sd["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    assert sd["body.23.res_layer.3.weight"].shape == (512, 512, 3, 3)
    assert sd["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert "output_layer.4.running_var" in sd and "output_layer.4.weight" in sd
    n_params = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k)
    assert 43_000_000 < n_params < 44_500_000
    assert irse_config_from_state_dict(sd) == IRSEConfig()


def test_real_e4e_layout() -> None:
    sd = _meta_state(Encoder4Editing)
    assert {k.split(".")[0] for k in sd} == {"input_layer", "body", "styles", "latlayer1", "latlayer2"}
    assert sd["latlayer1.weight"].shape == (512, 256, 1, 1)
    assert sd["latlayer2.weight"].shape == (512, 128, 1, 1)
    assert sum(1 for k in sd if k.startswith("styles.") and k.endswith("linear.weight")) == 18
    assert sd["styles.0.linear.weight"].shape == (512, 512)
    assert "styles.0.convs.6.weight" in sd and "styles.0.convs.8.weight" not in sd  # 4 convs at 16px
    assert "styles.3.convs.8.weight" in sd and "styles.3.convs.10.weight" not in sd  # 5 convs at 32px
    assert "styles.17.convs.10.weight" in sd  # 6 convs at 64px
    cfg = e4e_config_from_state_dict(sd)
    assert cfg == E4EConfig()
    assert cfg.backbone.stage_ends == (2, 6, 20, 23)


def test_arcface_fixture_loads_and_embeds(tmp_path: Path) -> None:
    path = write_synthetic_arcface(tmp_path / "model_ir_se50.pth", seed=1)
    raw = torch.load(path, weights_only=True)
    assert {k.split(".")[0] for k in raw} == {"input_layer", "body", "output_layer"}
    net = load_arcface(path)
    assert not net.training
    gen = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1
    feats = net.identity_features(imgs)
    assert feats.shape == (2, 512)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    again = net.identity_features(imgs[:1].repeat(2, 1, 1, 1))
    cos = (again[0] * again[1]).sum()
    assert float(cos) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(again[0], feats[0], atol=1e-5, rtol=1e-5)
    assert float((feats[0] * feats[1]).sum()) < 0.9999
    # A 1024px render is pooled to 256 first: same face, same identity.
    big = torch.nn.functional.interpolate(imgs[:1], size=(1024, 1024), mode="nearest")
    torch.testing.assert_close(net.identity_features(big), feats[:1], atol=1e-4, rtol=1e-4)


def test_arcface_loader_accepts_wrapped_and_dataparallel_dicts(tmp_path: Path) -> None:
    path = write_synthetic_arcface(tmp_path / "a.pth", seed=2)
    sd = torch.load(path, weights_only=True)
    wrapped = tmp_path / "b.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    x = torch.zeros(1, 3, 112, 112)
    torch.testing.assert_close(load_arcface(wrapped)(x), load_arcface(path)(x))


def test_arcface_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_arcface(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ModelFileError, match="IR-SE"):
        load_arcface(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError):
        load_arcface(junk)


def test_e4e_fixture_has_official_structure(tmp_path: Path) -> None:
    decoder = {"style.1.weight": torch.randn(4, 4), "input.input": torch.randn(1, 8, 4, 4)}
    path = write_synthetic_e4e(tmp_path / "e4e_ffhq_encode.pt", num_ws=10, seed=0, decoder_state=decoder)
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {"state_dict", "latent_avg", "opts"}
    prefixes = {k.split(".")[0] for k in ckpt["state_dict"]}
    assert prefixes == {"encoder", "decoder"}
    enc_tops = {k.split(".")[1] for k in ckpt["state_dict"] if k.startswith("encoder.")}
    assert enc_tops == {"input_layer", "body", "styles", "latlayer1", "latlayer2"}
    assert ckpt["latent_avg"].shape == (10, 512)
    assert ckpt["opts"]["encoder_type"] == "Encoder4Editing"
    assert ckpt["opts"]["stylegan_size"] == 64

    model = load_e4e(path, keep_decoder=True)
    assert model.num_ws == 10 and model.has_decoder
    assert model.decoder_state is not None and set(model.decoder_state) == set(decoder)
    torch.testing.assert_close(model.latent_avg, ckpt["latent_avg"])
    assert load_e4e(path).decoder_state is None  # the decoder is only kept on request


def test_e4e_forward_is_progressive_and_adds_latent_avg(tmp_path: Path) -> None:
    model = load_e4e(write_synthetic_e4e(tmp_path / "e.pt", num_ws=8, seed=3))
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        w = model(x)
        assert w.shape == (1, 8, 512)
        offsets = w - model.latent_avg
        # Row 0 is the base; every other row is base + its own block's delta.
        enc = model.encoder
        _, c1, c2, c3 = enc.features(x)
        base = enc.styles[0](c3)
        p2 = torch.nn.functional.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True)
        p2 = p2 + enc.latlayer1(c2)
        torch.testing.assert_close(offsets[:, 0], base, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(offsets[:, 1], base + enc.styles[1](c3), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(offsets[:, 4], base + enc.styles[4](p2), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="256"):
        model(torch.zeros(1, 3, 128, 128))


def test_e4e_fixture_is_seeded(tmp_path: Path) -> None:
    a = torch.load(write_synthetic_e4e(tmp_path / "a.pt", num_ws=4, seed=5), weights_only=True)
    b = torch.load(write_synthetic_e4e(tmp_path / "b.pt", num_ws=4, seed=5), weights_only=True)
    c = torch.load(write_synthetic_e4e(tmp_path / "c.pt", num_ws=4, seed=6), weights_only=True)
    key = "encoder.styles.0.linear.weight"
    torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key])
    assert not torch.equal(a["state_dict"][key], c["state_dict"][key])


def test_psp_checkpoint_uses_independent_rows(tmp_path: Path) -> None:
    path = write_synthetic_e4e(tmp_path / "psp.pt", num_ws=4, seed=0)
    ckpt = torch.load(path, weights_only=True)
    ckpt["opts"]["encoder_type"] = "GradualStyleEncoder"
    torch.save(ckpt, path)
    model = load_e4e(path)
    assert not model.config.progressive
    x = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        _, _, _, c3 = model.encoder.features(x)
        torch.testing.assert_close(model.encoder(x)[:, 1], model.encoder.styles[1](c3))


def test_e4e_loader_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.pt"
    torch.save({"g_ema": {}}, p)
    with pytest.raises(ModelFileError, match="state_dict"):
        load_e4e(p)
    torch.save({"state_dict": {"decoder.style.1.weight": torch.zeros(2)}}, p)
    with pytest.raises(ModelFileError, match="encoder"):
        load_e4e(p)
    good = torch.load(write_synthetic_e4e(tmp_path / "g.pt", num_ws=4), weights_only=True)
    del good["latent_avg"]
    torch.save(good, p)
    with pytest.raises(ModelFileError, match="latent_avg"):
        load_e4e(p)
    model = load_e4e(p, latent_avg_fallback=torch.ones(512))
    torch.testing.assert_close(model.latent_avg, torch.ones(4, 512))
