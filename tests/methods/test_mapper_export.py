"""Mapper files in the layout the official StyleCLIP code loads (mapper + rosinality decoder + opts).

The expected key names and shapes are written here from the architecture of rosinality's
StyleGAN2 generator as the official loader builds it (`Generator(size, 512, 8)`), not taken
from our writer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from styleclip_desktop.cli import main
from styleclip_desktop.errors import UserError
from styleclip_desktop.nets.mapper import load_mapper, write_synthetic_mapper
from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
from styleclip_desktop.weights.formats import load_generator
from styleclip_desktop.weights.rosinality_export import (
    decoder_state,
    export_official_mapper,
    official_decoder_problems,
)


def _rosinality_generator_shapes(resolution: int, channels: dict[int, int], n_mlp: int = 8,
                                 style_dim: int = 512) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of rosinality's Generator, from its architecture:
    style = PixelNorm + n_mlp EqualLinear (style.1..n); a constant input; conv1 + to_rgb1 at
    4 px; per doubling two StyledConvs (the first upsamples, through a 4x4 blur) and a ToRGB
    (with a 4x4 upsampling kernel); one noise buffer per StyledConv."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"] = (style_dim, style_dim)
        shapes[f"style.{i}.bias"] = (style_dim,)

    def styled(name: str, cin: int, cout: int, up: bool) -> None:
        shapes[f"{name}.conv.weight"] = (1, cout, cin, 3, 3)
        shapes[f"{name}.conv.modulation.weight"] = (cin, style_dim)
        shapes[f"{name}.conv.modulation.bias"] = (cin,)
        if up:
            shapes[f"{name}.conv.blur.kernel"] = (4, 4)
        shapes[f"{name}.noise.weight"] = (1,)
        shapes[f"{name}.activate.bias"] = (cout,)

    def to_rgb(name: str, cin: int, up: bool) -> None:
        if up:
            shapes[f"{name}.upsample.kernel"] = (4, 4)
        shapes[f"{name}.conv.weight"] = (1, 3, cin, 1, 1)
        shapes[f"{name}.conv.modulation.weight"] = (cin, style_dim)
        shapes[f"{name}.conv.modulation.bias"] = (cin,)
        shapes[f"{name}.bias"] = (1, 3, 1, 1)

    shapes["input.input"] = (1, channels[4], 4, 4)
    styled("conv1", channels[4], channels[4], False)
    to_rgb("to_rgb1", channels[4], False)
    res, cin, i = 8, channels[4], 0
    while res <= resolution:
        styled(f"convs.{2 * i}", cin, channels[res], True)
        styled(f"convs.{2 * i + 1}", channels[res], channels[res], False)
        to_rgb(f"to_rgbs.{i}", channels[res], True)
        cin, res, i = channels[res], res * 2, i + 1
    for layer in range(2 * i + 1):
        size = 2 ** ((layer + 5) // 2)
        shapes[f"noises.noise_{layer}"] = (1, 1, size, size)
    return shapes


MAPPER_KEYS = {f"{sub}.mapping.{i}.{p}" for sub in ("course_mapping", "medium_mapping", "fine_mapping")
               for i in range(1, 5) for p in ("weight", "bias")}


def _channels(G: Generator) -> dict[int, int]:
    return {r: G.config.channels_at(r) for r in G.config.resolutions}


def test_export_has_the_official_key_set(tmp_path: Path, tiny_G: Generator) -> None:
    src = write_synthetic_mapper(tmp_path / "ours.pt", seed=4, description="purple hair")
    result = export_official_mapper(src, tiny_G, tmp_path / "official.pt")
    raw = torch.load(result.path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "opts"}
    state = raw["state_dict"]
    expected = {f"decoder.{k}": v for k, v in _rosinality_generator_shapes(32, _channels(tiny_G)).items()}
    expected.update({f"mapper.{k}": ((512, 512) if k.endswith("weight") else (512,)) for k in MAPPER_KEYS})
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    opts = raw["opts"]
    assert isinstance(opts, dict)
    assert opts["mapper_type"] == "LevelsMapper" and opts["work_in_stylespace"] is False
    assert (opts["no_coarse_mapper"], opts["no_medium_mapper"], opts["no_fine_mapper"]) == (False, False, False)
    assert opts["stylegan_size"] == 32 and opts["checkpoint_path"] is None and opts["description"] == "purple hair"


def test_our_loader_reads_the_export_back(tmp_path: Path, tiny_G: Generator) -> None:
    src = write_synthetic_mapper(tmp_path / "ours.pt", seed=5, levels=("coarse", "fine"))
    export_official_mapper(src, tiny_G, tmp_path / "official.pt")
    before, after = load_mapper(src), load_mapper(tmp_path / "official.pt", keep_decoder=True)
    assert after.has_decoder and after.mapper.levels == ("coarse", "fine")
    assert after.opts["no_medium_mapper"] is True and after.opts["no_fine_mapper"] is False
    ws = torch.randn(2, tiny_G.num_ws, 512, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(after.mapper(ws), before.mapper(ws), rtol=0, atol=0)
    # The decoder, read back through the rosinality reader, renders what the generator renders.
    assert after.decoder_state is not None
    torch.save({"g_ema": after.decoder_state, "latent_avg": tiny_G.w_avg.clone()}, tmp_path / "decoder.pt")
    G2 = load_generator(tmp_path / "decoder.pt")
    with torch.no_grad():
        torch.testing.assert_close(G2(ws), tiny_G(ws), rtol=0, atol=0)


def test_decoder_round_trip_on_a_config_f_shaped_generator() -> None:
    # 16 px with FFHQ config-f's channels (512): the shapes the official loader builds.
    G = Generator(GeneratorConfig(resolution=16)).eval()
    assert official_decoder_problems(G) == []
    state = decoder_state(G)
    assert {k: tuple(v.shape) for k, v in state.items()} == _rosinality_generator_shapes(16, dict.fromkeys((4, 8, 16), 512))


def test_problems_the_official_loader_would_have(tiny_G: Generator) -> None:
    assert any("channel counts" in p for p in official_decoder_problems(tiny_G))
    with torch.device("meta"):
        clamped = Generator(GeneratorConfig(resolution=16, conv_clamp=256.0))
        narrow = Generator(GeneratorConfig(resolution=16, mapping_layers=2))
    assert any("clamps" in p for p in official_decoder_problems(clamped))
    assert any("mapping layers" in p for p in official_decoder_problems(narrow))


def test_a_mapper_trained_on_another_generator_is_refused(tmp_path: Path) -> None:
    from styleclip_desktop.nets.mapper import save_mapper
    from styleclip_desktop.weights.synthetic import tiny_generator

    mapper = load_mapper(write_synthetic_mapper(tmp_path / "m.pt", seed=0)).mapper
    save_mapper(tmp_path / "trained.pt", mapper, {"description": "x", "generator_sha256": "a" * 64})
    G = tiny_generator(8, channel_max=8)
    G.source_sha256 = "b" * 64  # type: ignore[assignment]
    with pytest.raises(UserError, match="another generator"):
        export_official_mapper(tmp_path / "trained.pt", G, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    G.source_sha256 = "a" * 64  # type: ignore[assignment]
    assert export_official_mapper(tmp_path / "trained.pt", G, tmp_path / "out.pt").path.is_file()


def test_cli_export(tmp_path: Path, synthetic_models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    src = write_synthetic_mapper(tmp_path / "ours.pt", seed=1, description="afro")
    out = tmp_path / "official.pt"
    base = ["--generator", str(synthetic_models["stylegan2-ada-pkl"]), "--models-dir", str(tmp_path / "models")]
    # Global options are taken after the action too.
    assert main(["mapper", "export", str(src), "--official", str(out), *base]) == 0
    captured = capsys.readouterr()
    assert "exported ours.pt (afro" in captured.out and "32 px" in captured.out
    assert "channel counts" in captured.err  # the synthetic generator is narrower than config-f
    state = torch.load(out, map_location="cpu", weights_only=True)["state_dict"]
    assert {k for k in state if k.startswith("mapper.")} == {f"mapper.{k}" for k in MAPPER_KEYS}
    assert "decoder.noises.noise_6" in state and "decoder.noises.noise_7" not in state and "decoder.to_rgbs.2.upsample.kernel" in state
    assert main([*base, "mapper", "export", str(src), "--official", str(src)]) == 1
    assert "new file" in capsys.readouterr().err
