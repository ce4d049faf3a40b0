"""Shared fixtures: an isolated environment and one set of synthetic model files per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a model hub


@pytest.fixture(autouse=True, scope="session")
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("appdirs")
    for var, sub in (("STYLECLIP_CACHE_DIR", "cache"), ("STYLECLIP_DATA_DIR", "data"),
                     ("STYLECLIP_MODELS_DIR", "models")):
        os.environ[var] = str(root / sub)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # The models in tests are tiny: threads gain nothing, and on a shared 2-core machine the
    # threads of concurrent processes spin against each other (ten times slower, measured).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny format-faithful files (32 px generator in three formats, tiny CLIP)."""
    from styleclip_desktop.weights.synthetic import synthesize_all

    return synthesize_all(tmp_path_factory.mktemp("synthetic"), resolution=32, seed=0)


@pytest.fixture(scope="session")
def tiny_G():  # type: ignore[no-untyped-def]
    from styleclip_desktop.weights.synthetic import tiny_generator

    return tiny_generator(32, seed=0)


@pytest.fixture(scope="session")
def clip(synthetic_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The tiny synthetic CLIP, with its own text-embedding cache."""
    from styleclip_desktop.nets.clip import load_clip

    return load_clip(synthetic_models["clip"], cache_dir=tmp_path_factory.mktemp("text-cache"))
