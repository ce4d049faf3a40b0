"""Fixtures shared by the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from styleclip_desktop.cli import main
from styleclip_desktop.nets.irse import write_synthetic_arcface
from styleclip_desktop.nets.mapper import write_synthetic_mapper


@pytest.fixture(scope="module")
def env(synthetic_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic models, a catalog mapper "afro", ArcFace, and a generated face with its latent."""
    d = tmp_path_factory.mktemp("cli-methods")
    models = d / "models"
    models.mkdir()
    write_synthetic_mapper(models / "mapper-afro.pt", seed=0, description="afro")
    write_synthetic_arcface(d / "arcface.pth", seed=0)
    base = ["--generator", str(synthetic_models["stylegan2-ada-pkl"]), "--clip", str(synthetic_models["clip"]),
            "--models-dir", str(models)]
    assert main([*base, "generate", "--seed", "3", "-o", str(d / "plain.png"), "--save-latent", str(d / "w.npy")]) == 0
    return {"dir": d, "models": models, "plain": d / "plain.png", "w": d / "w.npy", "arcface": d / "arcface.pth",
            "gen": synthetic_models["stylegan2-ada-pkl"], "clip": synthetic_models["clip"]}
