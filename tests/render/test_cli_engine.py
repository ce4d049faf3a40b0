"""The CLI's door to the engine: `--backend` and `build_engine`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from styleclip_desktop.cli import _GLOBAL_DEFAULTS, add_global_options
from styleclip_desktop.cli.common import build_engine
from styleclip_desktop.document import Document


def test_backend_is_a_global_option_defaulting_to_auto() -> None:
    parser = argparse.ArgumentParser()
    add_global_options(parser)
    assert parser.parse_args(["--backend", "torch"]).backend == "torch"
    assert not hasattr(parser.parse_args([]), "backend") and _GLOBAL_DEFAULTS["backend"] == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "tensorrt"])


def test_build_engine_loads_the_models_and_renders(synthetic_models: dict[str, Path], tmp_path: Path) -> None:
    args = argparse.Namespace(models_dir=str(tmp_path), generator=str(synthetic_models["stylegan2-rosinality-pt"]),
                              clip=None, fs3=None, backend="torch")
    engine = build_engine(args, torch.device("cpu"), need_directions=False)
    try:
        assert engine.backend_label == "torch CPU" and engine.resolution == 32
        G = engine.renderer.G
        with torch.no_grad():
            latent = G.broadcast_w(G.sample_w(1, seed=0))[0].numpy()
        assert engine.render(Document(latent)).shape == (32, 32, 3)
    finally:
        engine.shutdown()
