"""Latent optimization as published: CLIP input, loss, learning-rate schedule, result, defaults.

Every reference here is written from the published description with plain torch ops (nearest
upsampling x7 and average pooling; Adam's update by hand; the warm-up/ramp-down formula), not
with the product's functions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from styleclip_desktop.cli import main
from styleclip_desktop.document import OptimizationParams, load_project
from styleclip_desktop.methods import clip_input as ci
from styleclip_desktop.methods import optimization as opt
from styleclip_desktop.methods import optimization_settings as settings
from styleclip_desktop.nets.clip import ClipModel
from styleclip_desktop.nets.stylegan2 import Generator
from styleclip_desktop.weights.synthetic import tiny_generator

PROMPT = "a face with purple hair"


def _fixed_image(size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 1.2 * torch.randn(2, 3, size, size, generator=g)  # overshoots [-1, 1], as generators do


def _published_input(images: torch.Tensor, clip_size: int = 224) -> torch.Tensor:
    """Nearest upsampling x7, then average pooling (kernel 1024 // 32 = 32 at 1024 px for 224)."""
    kernel = images.shape[-1] * 7 // clip_size
    return F.avg_pool2d(F.interpolate(images, scale_factor=7, mode="nearest"), kernel_size=kernel)


def _text(clip: ClipModel, prompt: str = PROMPT) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(clip.model.encode_text(clip.tokenize([prompt])).float(), dim=-1)[0]


def _published_clip_loss(clip: ClipModel, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    x = _published_input(images, clip.image_size)  # no mean/std normalisation
    return 1 - F.normalize(clip.model.encode_image(x).float(), dim=-1) @ text


@pytest.fixture(scope="module")
def G64() -> Generator:
    # 64 px so the published input really resamples for the tiny 32 px CLIP (and for 224).
    return tiny_generator(64, seed=2)


@pytest.mark.parametrize("size", [32, 64, 96, 256])
def test_default_clip_input_is_the_published_one(size: int) -> None:
    image = _fixed_image(size)
    ours = ci.published_clip_input(image, 224)
    ref = _published_input(image, 224)
    assert ours.shape == ref.shape == (2, 3, 224, 224)
    assert float((ours - ref).abs().max()) < 1e-5
    assert float(ours.abs().max()) > 1.0  # neither clamped nor normalised


def test_box_filter_extends_the_published_input_to_other_sizes() -> None:
    small = _fixed_image(16)  # the published kernel 16 // 32 would be 0: nearest x14 is the same box filter
    np.testing.assert_allclose(ci.published_clip_input(small, 224).numpy(),
                               F.interpolate(small, scale_factor=14, mode="nearest").numpy(), atol=1e-6)
    m = ci.box_resize_matrix(100, 224)
    np.testing.assert_allclose(m.sum(dim=1).numpy(), 1.0, atol=1e-6)  # every output pixel is a mean


def test_clip_loss_defaults_to_the_published_input_and_keeps_the_exact_one(clip: ClipModel,
                                                                           G64: Generator) -> None:
    with torch.no_grad():
        images = G64(G64.broadcast_w(G64.sample_w(2, seed=5)))
        text = _text(clip)
        ours = opt.clip_loss(clip, images, text)
        ref = _published_clip_loss(clip, images, text)
        exact = opt.clip_loss(clip, images, text, settings.CLIP_INPUT_EXACT)
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        x = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
        exact_ref = 1 - F.normalize(clip.model.encode_image(((x + 1) / 2 - mean) / std), dim=-1) @ text
    assert float((ours - ref).abs().max()) < 1e-5
    assert float((exact - exact_ref).abs().max()) < 1e-5
    assert float((ours - exact).abs().max()) > 1e-3  # the two inputs really differ


def _published_lr(i: int, steps: int, lr: float = 0.1, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    t = i / steps
    ramp = 0.5 - 0.5 * math.cos(min(1.0, (1 - t) / rampdown) * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def _published_run(G: Generator, clip: ClipModel, w0: torch.Tensor, steps: int, l2_lambda: float
                   ) -> tuple[list[torch.Tensor], list[float], list[float]]:
    """The published edit loop with Adam written out: iterates, total and CLIP losses per step."""
    text = _text(clip)
    latent = w0.clone()
    m, v = torch.zeros_like(latent), torch.zeros_like(latent)
    b1, b2, eps = 0.9, 0.999, 1e-8
    iterates, totals, clips = [], [], []
    for i in range(steps + 1):
        x = latent.clone().requires_grad_(True)
        c = _published_clip_loss(clip, G(x), text).mean()
        loss = c + l2_lambda * ((w0 - x) ** 2).sum()
        iterates.append(latent.clone())
        totals.append(float(loss.detach()))
        clips.append(float(c.detach()))
        if i == steps:
            break
        (g,) = torch.autograd.grad(loss, x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        k = i + 1
        latent = latent - _published_lr(i, steps) * (m / (1 - b1 ** k)) / ((v / (1 - b2 ** k)).sqrt() + eps)
    return iterates, totals, clips


@pytest.fixture(scope="module")
def published(clip: ClipModel, G64: Generator) -> dict[str, object]:
    w0 = G64.broadcast_w(G64.sample_w(1, seed=3))
    iterates, totals, clips = _published_run(G64, clip, w0, steps=5, l2_lambda=0.008)
    return {"w0": w0, "iterates": iterates, "totals": totals, "clips": clips}


def test_update_equals_the_published_loss_and_schedule(clip: ClipModel, G64: Generator,
                                                       published: dict[str, object]) -> None:
    iterates, totals = published["iterates"], published["totals"]
    assert isinstance(iterates, list) and isinstance(totals, list)
    one = opt.optimize_latent(G64, clip, PROMPT, published["w0"], opt.OptimizationConfig(steps=2))  # type: ignore[arg-type]
    ref_one, _, _ = _published_run(G64, clip, published["w0"], steps=2, l2_lambda=0.008)  # type: ignore[arg-type]
    np.testing.assert_allclose(one.latent(), ref_one[-1][0].numpy(), atol=1e-5)  # step 0 at lr 0, one real step
    assert float(np.abs(one.delta).max()) > 1e-3
    five = opt.optimize_latent(G64, clip, PROMPT, published["w0"], opt.OptimizationConfig(steps=5))  # type: ignore[arg-type]
    assert five.step == 5 and five.result == settings.RESULT_LAST  # the last iterate, as published
    np.testing.assert_allclose(five.latent(), iterates[-1][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(five.losses, totals, atol=1e-5)
    assert [h.lr for h in five.history[:5]] == pytest.approx([_published_lr(i, 5) for i in range(5)])


def test_best_returns_the_step_with_the_lowest_clip_loss(clip: ClipModel, G64: Generator,
                                                         published: dict[str, object]) -> None:
    iterates, clips = published["iterates"], published["clips"]
    assert isinstance(iterates, list) and isinstance(clips, list)
    cfg = opt.OptimizationConfig(steps=5, result=settings.RESULT_BEST)
    best = opt.optimize_latent(G64, clip, PROMPT, published["w0"], cfg)  # type: ignore[arg-type]
    want = int(np.argmin(clips))
    assert best.step == want == int(np.argmin([h.clip for h in best.history]))
    np.testing.assert_allclose(best.latent(), iterates[want][0].numpy(), atol=1e-5)
    assert best.clip == pytest.approx(min(clips), abs=1e-5)


def test_an_unchanged_result_says_so(tiny_G: Generator, clip: ClipModel) -> None:
    w0 = tiny_G.broadcast_w(tiny_G.sample_w(1, seed=3))
    single = opt.optimize_latent(tiny_G, clip, PROMPT, w0, opt.OptimizationConfig(steps=1))
    assert single.unchanged and "learning rate 0" in single.notice  # the published warm-up starts at 0
    frozen = opt.optimize_latent(tiny_G, clip, PROMPT, w0, opt.OptimizationConfig(steps=3, lr=0.0))
    assert frozen.unchanged and frozen.notice.startswith("The optimization left the face unchanged")
    moved = opt.optimize_latent(tiny_G, clip, PROMPT, w0, opt.OptimizationConfig(steps=3))
    assert not moved.unchanged and moved.notice == ""
    start_best = opt.OptimizationResult(
        space=opt.W_SPACE, start=np.zeros((2, 4), np.float32), delta=np.zeros((2, 4), np.float32), step=0,
        loss=0.5, steps_done=3, cancelled=False, result=settings.RESULT_BEST,
        history=[opt.StepLoss(i, 0.5 + i, 0.5 + i, 0.0, 0.0, 0.1) for i in range(4)])
    assert "best latent is the start" in start_best.notice


def test_published_defaults_per_mode() -> None:
    # The published optimization script's defaults, its notebook's, and its free generation's.
    assert opt.OptimizationConfig() == opt.config_for(settings.MODE_EDIT)
    edit = opt.OptimizationConfig()
    assert (edit.steps, edit.lr, edit.lambda_l2, edit.lambda_id) == (300, 0.1, 0.008, 0.0)
    assert (edit.clip_input, edit.result) == ("published", "last")
    keep = opt.config_for(settings.MODE_EDIT_IDENTITY)
    assert (keep.steps, keep.lr, keep.lambda_l2, keep.lambda_id) == (40, 0.1, 0.008, 0.005)
    face = opt.config_for(settings.MODE_TEXT_TO_FACE)
    assert (face.steps, face.lr, face.lambda_l2, face.lambda_id) == (300, 0.1, 0.0, 0.0)
    assert "300 steps, lr 0.1, λ L2 0.008, λ ID 0" in settings.defaults_text()
    with pytest.raises(ValueError):
        opt.config_for("sculpt")
    with pytest.raises(ValueError):
        opt.OptimizationConfig(clip_input="bicubic")
    with pytest.raises(ValueError):
        opt.OptimizationConfig(result="first")


def test_layer_defaults_and_projects_from_before_the_options() -> None:
    new = OptimizationParams("a face with a beard")
    assert (new.steps, new.lambda_l2, new.lambda_id, new.clip_input, new.result) == (300, 0.008, 0.0,
                                                                                      "published", "last")
    # A project saved before these settings existed: its stored delta came from CLIP's own
    # preprocessing and the lowest-loss step, so that is what its layer says.
    old = OptimizationParams.from_json({"prompt": "a beard", "lambda_l2": 0.008, "lambda_id": 0.005,
                                        "steps": 100, "seed": 0}, {"delta": None})
    assert (old.clip_input, old.result, old.steps, old.lambda_id) == ("exact", "best", 100, 0.005)
    again = OptimizationParams.from_json(new.to_json(), new.arrays())
    assert again == new
    delta = np.ones((4, 512), np.float32)
    assert new.with_changes(delta=delta).with_changes(clip_input="exact").delta is None  # a different edit
    with pytest.raises(ValueError):
        OptimizationParams("x", clip_input="bicubic")


def test_command_line_shows_the_defaults_and_reports_an_empty_edit(
        synthetic_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command, expected in ((["edit"], "300 for edit, 40 for edit-identity"), (["generate"], "steps (default 300)")):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = "".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
        for want in (expected, "--clip-input{published,exact}", "--result{last,best}"):
            assert "".join(want.split()) in text
    base = ["--generator", str(synthetic_models["stylegan2-ada-pkl"]), "--clip", str(synthetic_models["clip"]),
            "--models-dir", str(tmp_path / "models"), "edit", "--seed", "3", "--method", "optimize",
            "--target", PROMPT]
    assert main([*base, "--steps", "1", "-o", str(tmp_path / "same.png")]) == 0
    assert "notice: The optimization left the face unchanged" in capsys.readouterr().err
    project = tmp_path / "edit.scproj"
    assert main([*base, "--steps", "2", "--clip-input", "exact", "--result", "best", "-o", str(project)]) == 0
    assert "best iterate" in capsys.readouterr().out
    params = load_project(project).layers[0].params
    assert isinstance(params, OptimizationParams)
    assert (params.clip_input, params.result, params.steps, params.lambda_id) == ("exact", "best", 2, 0.0)
