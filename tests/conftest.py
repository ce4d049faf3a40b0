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


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny format-faithful files (32 px generator in three formats, tiny CLIP)."""
    from styleclip_desktop.weights.synthetic import synthesize_all

    return synthesize_all(tmp_path_factory.mktemp("synthetic"), resolution=32, seed=0)


@pytest.fixture(scope="session")
def tiny_G():  # type: ignore[no-untyped-def]
    from styleclip_desktop.weights.synthetic import tiny_generator

    return tiny_generator(32, seed=0)
