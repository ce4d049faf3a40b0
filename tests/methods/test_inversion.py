"""Inversion: e4e on its synthetic checkpoint, then projection and PTI on the tiny generator."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from styleclip_desktop.methods.inversion import (
    apply_weight_delta,
    face_tensor,
    invert_e4e,
    project,
    pti,
)
from styleclip_desktop.nets.e4e import load_e4e, write_synthetic_e4e

HAVE_GENERATOR = importlib.util.find_spec("styleclip_desktop.weights.synthetic") is not None
needs_generator = pytest.mark.skipif(
    not HAVE_GENERATOR, reason="styleclip_desktop.weights.synthetic (the tiny generator) is not available yet"
)

RES = 32  # the tiny generator's resolution: 8 W+ rows


@pytest.fixture(scope="module")
def G() -> Any:
    from styleclip_desktop.weights.synthetic import tiny_generator

    return tiny_generator(resolution=RES, seed=0)


@pytest.fixture(scope="module")
def target(G: Any) -> np.ndarray:
    """A picture the generator can make exactly, from a latent far from the start point."""
    from styleclip_desktop.nets.stylegan2 import to_uint8

    with torch.no_grad():
        w = G.broadcast_w(G.sample_w(1, seed=7, psi=1.0))
        return to_uint8(G(w))[0]


@pytest.fixture(scope="module")
def w_start(G: Any) -> np.ndarray:
    return G.w_avg.detach().repeat(G.num_ws, 1).numpy().astype(np.float32)


def _face(seed: int = 0, size: int = 300) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_face_tensor_range_and_size() -> None:
    t = face_tensor(np.full((300, 300, 3), 255, np.uint8), 256)
    assert t.shape == (1, 3, 256, 256)
    assert float(t.min()) == pytest.approx(1.0) and float(t.max()) == pytest.approx(1.0)
    assert float(face_tensor(np.zeros((8, 8, 3), np.uint8), 8).max()) == pytest.approx(-1.0)


def test_invert_e4e_gives_wplus(tmp_path: Path) -> None:
    encoder = load_e4e(write_synthetic_e4e(tmp_path / "e4e.pt", num_ws=8, seed=0))
    face = _face()
    w = invert_e4e(encoder, face, "cpu")
    assert w.shape == (8, 512) and w.dtype == np.float32
    with torch.no_grad():
        expected = encoder.encoder(face_tensor(face, 256))[0] + encoder.latent_avg
    np.testing.assert_allclose(w, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(invert_e4e(encoder, face, "cpu"), w)  # deterministic


@needs_generator
def test_e4e_latent_renders_at_generator_resolution(tmp_path: Path, G: Any) -> None:
    encoder = load_e4e(write_synthetic_e4e(tmp_path / "e4e.pt", num_ws=G.num_ws, seed=1))
    w = invert_e4e(encoder, _face(1), "cpu")
    assert w.shape == (G.num_ws, G.config.w_dim)
    with torch.no_grad():
        img = G(torch.from_numpy(w)[None])
    assert img.shape == (1, 3, RES, RES)


@needs_generator
def test_project_lowers_loss_and_is_deterministic(G: Any, target: np.ndarray, w_start: np.ndarray) -> None:
    seen: list[tuple[int, int, float]] = []
    res = project(
        G, target, w_start, steps=4, lr=0.05, seed=0, progress=lambda s, n, v: seen.append((s, n, v))
    )
    assert not res.cancelled and res.steps_done == 4
    assert res.w.shape == (G.num_ws, 512) and res.w.dtype == np.float32
    assert res.losses[-1] < res.losses[0]
    assert res.loss == min(res.losses)
    assert [s for s, _, _ in seen] == list(range(1, 5)) and all(n == 4 for _, n, _ in seen)
    again = project(G, target, w_start, steps=4, lr=0.05, seed=0)
    np.testing.assert_array_equal(again.w, res.w)


@needs_generator
def test_project_cancel_returns_best_so_far(G: Any, target: np.ndarray, w_start: np.ndarray) -> None:
    stop = threading.Event()
    stop.set()
    res = project(G, target, w_start, steps=50, cancel=stop)
    assert res.cancelled and res.steps_done == 0
    np.testing.assert_array_equal(res.w, w_start)

    stop = threading.Event()

    def cancel_after_two(step: int, total: int, loss: float) -> None:
        if step == 2:
            stop.set()

    res = project(G, target, w_start, steps=50, lr=0.05, progress=cancel_after_two, cancel=stop)
    assert res.cancelled and res.steps_done == 2 and len(res.losses) == 2
    assert res.loss == min(res.losses)


@needs_generator
def test_pti_lowers_loss_and_returns_a_delta(G: Any, target: np.ndarray, w_start: np.ndarray) -> None:
    before = {n: p.detach().clone() for n, p in G.named_parameters()}
    res = pti(G, target, w_start, steps=4, lr=3e-3, seed=0, procedure="mse-identity")
    assert not res.cancelled and res.steps_done == 4
    assert res.losses[-1] < res.losses[0]
    assert res.delta and all(v.dtype == np.float32 for v in res.delta.values())
    names = dict(G.named_parameters())
    assert all(n in names and v.shape == tuple(names[n].shape) for n, v in res.delta.items())
    assert not any(n.startswith("mapping.") for n in res.delta)
    for n, p in G.named_parameters():  # the caller's generator is untouched
        assert torch.equal(p, before[n])
    tuned = apply_weight_delta(G, res.delta)
    with torch.no_grad():
        img = tuned(torch.from_numpy(w_start)[None])
        ref = face_tensor(target, RES)
        assert float(torch.nn.functional.mse_loss(img, ref)) == pytest.approx(res.loss, rel=1e-4)


@needs_generator
def test_pti_cancel_stops_within_a_step(G: Any, target: np.ndarray, w_start: np.ndarray) -> None:
    stop = threading.Event()

    def cancel_after_one(step: int, total: int, loss: float) -> None:
        stop.set()

    res = pti(G, target, w_start, steps=50, progress=cancel_after_one, cancel=stop, procedure="mse-identity")
    assert res.cancelled and res.steps_done == 1
    assert res.delta == {}  # the only evaluated state was the untouched generator


@needs_generator
def test_project_leaves_generator_weights_alone(G: Any, target: np.ndarray, w_start: np.ndarray) -> None:
    import copy

    trainable = copy.deepcopy(G).requires_grad_(True)
    project(trainable, target, w_start, steps=1)
    assert all(p.requires_grad and p.grad is None for p in trainable.parameters())


@needs_generator
def test_project_with_identity_term(tmp_path: Path, G: Any, target: np.ndarray, w_start: np.ndarray) -> None:
    from styleclip_desktop.nets.irse import load_arcface, write_synthetic_arcface

    arcface = load_arcface(write_synthetic_arcface(tmp_path / "arc.pth", seed=0))
    plain = project(G, target, w_start, steps=1)
    with_id = project(G, target, w_start, steps=1, id_model=arcface, id_weight=1.0)
    assert with_id.losses[0] > plain.losses[0]  # the identity term adds (1 - cos) > 0
