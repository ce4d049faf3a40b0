"""Latent optimization and text-to-face on synthetic models: losses, schedule, cancel, determinism."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import optimization as opt
from styleclip_desktop.nets.clip import ClipModel
from styleclip_desktop.nets.irse import ArcFace, load_arcface, write_synthetic_arcface
from styleclip_desktop.nets.stylegan2 import Generator, unpack_styles

PROMPT = "a face with purple hair"




@pytest.fixture(scope="module")
def arcface(tmp_path_factory: pytest.TempPathFactory) -> ArcFace:
    return load_arcface(write_synthetic_arcface(tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth", seed=1))


@pytest.fixture(scope="module")
def w_start(tiny_G: Generator) -> torch.Tensor:
    return tiny_G.broadcast_w(tiny_G.sample_w(1, seed=3))


def _clip_loss_of(G: Generator, clip: ClipModel, wplus: np.ndarray | torch.Tensor, prompt: str = PROMPT) -> float:
    with torch.no_grad():
        img = G(torch.as_tensor(wplus).reshape(1, G.num_ws, -1))
        return float(opt.clip_loss(clip, img, opt.prompt_features(clip, prompt))[0])


def test_lr_schedule_warms_up_and_ramps_down() -> None:
    lr = [opt.lr_at(i, 100, 0.1) for i in range(100)]
    assert lr[0] == 0.0  # as published: t = 0 gives no step
    assert lr[1] == pytest.approx(0.02)  # 1% of the way through a 5% warm-up
    assert lr[2] == pytest.approx(0.04)
    assert lr[5] == pytest.approx(0.1) and lr[50] == pytest.approx(0.1) and lr[75] == pytest.approx(0.1)
    assert lr[80] == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.8 * math.pi)))  # 0.0905
    assert lr[90] == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))  # 0.0345
    assert lr[99] == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.04 * math.pi)))  # 0.0004
    assert all(a <= b for a, b in zip(lr[:6], lr[1:6], strict=False))
    assert all(a >= b for a, b in zip(lr[75:], lr[76:], strict=False))
    assert opt.lr_at(10, 40, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        opt.lr_at(0, 0)


def test_identity_loss_zero_for_same_face_positive_for_another(tiny_G: Generator, arcface: ArcFace) -> None:
    with torch.no_grad():
        a = tiny_G(tiny_G.broadcast_w(tiny_G.sample_w(1, seed=1)))
        b = tiny_G(tiny_G.broadcast_w(tiny_G.sample_w(1, seed=2)))
        ref = arcface.identity_features(a)
        same = opt.identity_loss(arcface, a, ref)
        other = opt.identity_loss(arcface, b, ref)
    assert float(same[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(other[0]) > 1e-3


def test_optimization_lowers_clip_loss(tiny_G: Generator, clip: ClipModel, w_start: torch.Tensor) -> None:
    cfg = opt.OptimizationConfig(steps=30, lambda_l2=0.0, lambda_id=0.0)
    result = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg)
    assert result.space == opt.W_SPACE and result.delta.shape == (tiny_G.num_ws, 512)
    assert result.steps_done == 30 and not result.cancelled
    before = _clip_loss_of(tiny_G, clip, w_start)
    after = _clip_loss_of(tiny_G, clip, result.latent())
    assert after < before - 0.02, (before, after)
    assert result.loss == pytest.approx(after, abs=1e-4)
    assert result.step == 30 and result.result == opt.RESULT_LAST  # the last iterate, as published
    assert not result.unchanged and result.notice == ""
    np.testing.assert_array_equal(result.latent(0.0), w_start[0].numpy())
    # Scaling the delta scales the edit: half of it lands in between.
    assert after < _clip_loss_of(tiny_G, clip, result.latent(0.5)) < before


def test_large_l2_weight_keeps_the_latent_close(tiny_G: Generator, clip: ClipModel, w_start: torch.Tensor) -> None:
    def distance(lam: float) -> float:
        cfg = opt.OptimizationConfig(steps=15, lambda_l2=lam, lambda_id=0.0)
        return float(np.linalg.norm(opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg).delta))

    loose, tight = distance(0.0), distance(0.05)
    assert loose > 1.0
    assert tight < 0.2 * loose, (loose, tight)


def test_style_space_optimization(tiny_G: Generator, clip: ClipModel, w_start: torch.Tensor) -> None:
    cfg = opt.OptimizationConfig(steps=20, lambda_l2=0.0, lambda_id=0.0, space=opt.S_SPACE)
    result = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg)
    assert result.delta.shape == (sum(tiny_G.style_dims),)
    parts = unpack_styles(torch.from_numpy(result.delta)[None], tiny_G.style_dims)
    assert all(float(p.abs().max()) == 0.0 for p, s in zip(parts, tiny_G.slots, strict=True) if s.is_torgb)
    with torch.no_grad():
        text = opt.prompt_features(clip, PROMPT)
        after = tiny_G.synthesize(unpack_styles(torch.from_numpy(result.latent())[None], tiny_G.style_dims))
        before = tiny_G(w_start)
        assert float(opt.clip_loss(clip, after, text)[0]) < float(opt.clip_loss(clip, before, text)[0]) - 0.01


def test_identity_term_is_used_with_arcface(tiny_G: Generator, clip: ClipModel, arcface: ArcFace,
                                            w_start: torch.Tensor) -> None:
    cfg = opt.OptimizationConfig(steps=4, lambda_l2=0.0, lambda_id=0.5)
    result = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg, arcface=arcface)
    assert result.history[0].identity == pytest.approx(0.0, abs=1e-5)
    assert result.history[-1].identity > 0.0
    without = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg)  # no ArcFace: the term is skipped
    assert all(h.identity == 0.0 for h in without.history)


def test_frames_progress_and_determinism(tiny_G: Generator, clip: ClipModel, w_start: torch.Tensor) -> None:
    frames: list[opt.OptimizationFrame] = []
    calls: list[tuple[int, int]] = []
    cfg = opt.OptimizationConfig(steps=5, frame_every=2, lambda_id=0.0, seed=7)
    first = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg, on_frame=frames.append,
                                progress=lambda d, t: calls.append((d, t)))
    assert [f.step for f in frames] == [0, 2, 4, 5]
    assert all(f.image.shape == (32, 32, 3) and f.image.dtype == np.uint8 for f in frames)
    assert frames[-1].loss == pytest.approx(first.history[-1].total)
    assert calls == [(i, 5) for i in range(1, 6)]
    second = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg)
    np.testing.assert_array_equal(first.delta, second.delta)
    assert first.losses == second.losses


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_within_one_step_and_keeps_what_was_measured(kind: str, tiny_G: Generator, clip: ClipModel,
                                                                  w_start: torch.Tensor) -> None:
    event = threading.Event()
    cancel = event if kind == "event" else event.is_set

    def progress(done: int, total: int) -> None:
        if done == 6:
            event.set()

    for result_kind in (opt.RESULT_LAST, opt.RESULT_BEST):
        event.clear()
        cfg = opt.OptimizationConfig(steps=200, lambda_l2=0.0, lambda_id=0.0, result=result_kind)
        result = opt.optimize_latent(tiny_G, clip, PROMPT, w_start, cfg, progress=progress, cancel=cancel)
        assert result.cancelled and result.steps_done == 6 and len(result.history) == 6
        clips = [h.clip for h in result.history]
        # the last iterate measured, or the one with the lowest CLIP loss
        assert result.step == (5 if result_kind == opt.RESULT_LAST else clips.index(min(clips)))
        assert result.loss == result.history[result.step].total
        assert _clip_loss_of(tiny_G, clip, result.latent()) == pytest.approx(result.clip, abs=1e-4)


def test_generate_from_text(tiny_G: Generator, clip: ClipModel) -> None:
    mean = opt.generate_from_text(tiny_G, clip, PROMPT, steps=20)
    np.testing.assert_allclose(mean.start, np.repeat(tiny_G.w_avg.numpy()[None], tiny_G.num_ws, 0))
    assert mean.history[-1].clip < mean.history[0].clip - 0.02
    assert all(h.total == h.clip for h in mean.history)  # CLIP loss only: nothing ties it to the start
    a = opt.generate_from_text(tiny_G, clip, PROMPT, seed=1, steps=2, start="sample")
    b = opt.generate_from_text(tiny_G, clip, PROMPT, seed=2, steps=2, start="sample")
    assert not np.array_equal(a.start, b.start)
    np.testing.assert_allclose(a.start[0], tiny_G.sample_w(1, 1)[0].numpy())
    with pytest.raises(ValueError):
        opt.generate_from_text(tiny_G, clip, PROMPT, steps=1, start="nowhere")


def test_bad_inputs(tiny_G: Generator, clip: ClipModel, w_start: torch.Tensor) -> None:
    with pytest.raises(UserError, match="prompt is empty"):
        opt.optimize_latent(tiny_G, clip, "  ", w_start)
    with pytest.raises(UserError):
        opt.OptimizationConfig(steps=0)
    with pytest.raises(ValueError):
        opt.OptimizationConfig(space="z")
