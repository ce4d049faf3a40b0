"""Tiny models for the engine tests: a 32 px generator, a tiny CLIP, random fs3 and seeded stats.

The ONNX graphs are exported once per test session into a session folder and shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from styleclip_desktop.render.pipeline import ModelSet


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.nets.clip import ClipModel, build_clip, tiny_clip_state_dict
    from styleclip_desktop.weights.synthetic import tiny_generator

    G = tiny_generator(32, seed=0)
    clip = ClipModel(build_clip(tiny_clip_state_dict(0)), "tiny-clip-0",
                     cache_dir=tmp_path_factory.mktemp("text-cache"))
    rng = np.random.RandomState(0)
    fs3 = rng.randn(len(gd.conv_channel_index(G)), clip.embed_dim).astype(np.float32)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    stats = gd.compute_style_stats(G, samples=400)
    return ModelSet(G=G, clip=clip, fs3=fs3, stats=stats)


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def onnx_engine(models: ModelSet, onnx_dir: Path) -> Iterator[Any]:
    from styleclip_desktop.render.engine import Engine

    engine = Engine(models, backend="onnx", onnx_dir=onnx_dir, clip_graphs=True)  # CPU default: torch CLIP
    yield engine
    engine.shutdown()


@pytest.fixture
def engine(models: ModelSet) -> Iterator[Any]:
    """A torch engine with fresh caches (no ONNX, so no export cost)."""
    from styleclip_desktop.render.engine import Engine

    e = Engine(models, backend="torch")
    yield e
    e.shutdown()
