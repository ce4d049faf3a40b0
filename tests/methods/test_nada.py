"""Domain adaptation by text (StyleGAN-NADA) on the tiny 32 px generator and the tiny CLIP."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import nada
from styleclip_desktop.methods.nada import NadaConfig

CFG = NadaConfig(target="a pencil sketch", iterations=4, layer_select_batch=2, preview_samples=2)


@pytest.fixture(scope="module")
def G() -> Any:
    from styleclip_desktop.weights.synthetic import tiny_generator

    return tiny_generator(32, seed=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from styleclip_desktop.nets.clip import ClipModel, build_clip, tiny_clip_state_dict

    return ClipModel(build_clip(tiny_clip_state_dict(0)), "tiny-clip-0",
                     cache_dir=tmp_path_factory.mktemp("text-cache"))


@pytest.fixture(scope="module")
def base_state(G: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in G.state_dict().items()}


@pytest.fixture(scope="module")
def run(G: Any, clip: Any, base_state: dict[str, torch.Tensor]) -> nada.NadaResult:
    return nada.train_domain(G, clip, CFG)


def _render(G: Any, seed: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return G(G.broadcast_w(G.sample_w(2, seed=seed)))  # type: ignore[no-any-return]


def _same_result(a: nada.NadaResult, b: nada.NadaResult) -> None:
    assert a.losses == b.losses
    assert (a.rows, a.steps_done, a.best_step) == (b.rows, b.steps_done, b.best_step)
    assert set(a.delta) == set(b.delta)
    for k in a.delta:
        assert np.array_equal(a.delta[k], b.delta[k]), k


# --- the loss --------------------------------------------------------------------------


def test_directional_loss_equals_an_independent_computation() -> None:
    rng = np.random.RandomState(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    train, frozen, text = unit(rng.randn(3, 512)), unit(rng.randn(3, 512)), unit(rng.randn(512))
    d = train - frozen
    expected = np.mean([1.0 - d[i] @ text / np.linalg.norm(d[i]) for i in range(3)])
    got = nada.directional_loss(torch.from_numpy(train), torch.from_numpy(frozen), torch.from_numpy(text))
    assert float(got) == pytest.approx(expected, abs=1e-10)
    # Aligned with the text direction it is 0, opposite it is 2.
    step = torch.from_numpy(text).unsqueeze(0) * 0.3
    base = torch.from_numpy(frozen[:1])
    assert float(nada.directional_loss(base + step, base, torch.from_numpy(text))) == pytest.approx(0.0, abs=1e-9)
    assert float(nada.directional_loss(base - step, base, torch.from_numpy(text))) == pytest.approx(2.0, abs=1e-9)


def test_text_direction_runs_from_source_to_target_over_the_templates(clip: Any) -> None:
    t = nada.text_direction(clip, "photo", "a pencil sketch").numpy()
    d = clip.text_embedding("a pencil sketch").astype(np.float64) - clip.text_embedding("photo")
    assert np.allclose(t, d / np.linalg.norm(d), atol=1e-6)
    with pytest.raises(UserError):
        nada.text_direction(clip, "photo", "photo")


# --- layers ----------------------------------------------------------------------------


def test_rows_map_to_layers_as_published(G: Any) -> None:
    names = set(nada.row_parameters(G, [0]))
    assert names == {f"convs.0.{n}" for n in ("weight", "bias", "noise_strength", "affine.weight", "affine.bias")}
    assert set(nada.row_parameters(G, [1])) == {f"torgbs.0.{n}" for n in ("weight", "bias", "affine.weight",
                                                                        "affine.bias")}
    assert {n.rsplit(".", 1)[0] for n in nada.row_parameters(G, [2, 7])} >= {"convs.1", "convs.6"}
    every = nada.row_parameters(G, range(G.num_ws))
    assert not any(n.startswith(("mapping.", "const", "torgbs.1")) for n in every)
    with pytest.raises(ValueError):
        nada.row_parameters(G, [G.num_ws])


def test_layers_k_scales_with_the_generator_as_the_notebook_does() -> None:
    cfg = NadaConfig(target="x")
    # int(2 * (2 log2(size) - 2) / 3): 12 at 1024, 10 at 512, 9 at 256, 5 at 32.
    assert [nada.layers_for(cfg, n) for n in (18, 16, 14, 8)] == [12, 10, 9, 5]
    assert nada.layers_for(dataclasses.replace(cfg, layers_k=18), 8) == 8


def test_select_rows_picks_the_rows_whose_codes_move_most(G: Any, clip: Any) -> None:
    """An independent computation on a generator without noise (so the draw order does not
    matter): one gradient step on the global CLIP loss, mean |change| per row, top k."""
    quiet = copy.deepcopy(G)
    with torch.no_grad():
        for name, p in quiet.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    cfg = dataclasses.replace(CFG, layer_select_batch=3)
    ws = quiet.broadcast_w(quiet.sample_w(3, seed=11, psi=1.0))
    w = ws.clone().requires_grad_(True)
    text = clip.encode_text([cfg.target])[0]
    loss = (1.0 - clip.encode_image(quiet(w)) @ text).mean()
    (grad,) = torch.autograd.grad(loss, w)
    moved = (0.01 * grad).abs().mean(dim=-1).mean(dim=0).numpy()
    k = nada.layers_for(cfg, G.num_ws)
    expected = sorted(np.argsort(-moved)[:k].tolist())
    assert nada.select_rows(quiet, clip, cfg, ws, torch.Generator().manual_seed(0)) == expected
    assert nada.select_rows(quiet, clip, dataclasses.replace(cfg, layer_select_iters=0), ws) == list(range(8))
    assert all(not p.requires_grad for p in quiet.parameters())


# --- training --------------------------------------------------------------------------


def test_only_the_selected_rows_change_and_G_is_untouched(G: Any, run: nada.NadaResult,
                                                          base_state: dict[str, torch.Tensor]) -> None:
    assert run.steps_done == CFG.iterations and not run.cancelled and len(run.losses) == CFG.iterations
    assert run.rows and set(run.rows) < set(range(G.num_ws))
    allowed = set(nada.row_parameters(G, run.rows))
    assert run.delta and set(run.delta) <= allowed
    assert all(v.dtype == np.float16 for v in run.delta.values())
    adapted = run.adapted.state_dict()
    for name, value in adapted.items():
        if name not in allowed:
            assert torch.equal(value, base_state[name]), name
    assert any(not torch.equal(adapted[n], base_state[n]) for n in run.delta)
    for name, value in G.state_dict().items():
        assert torch.equal(value, base_state[name]), name


def test_training_is_deterministic_for_a_seed(G: Any, clip: Any, run: nada.NadaResult) -> None:
    _same_result(run, nada.train_domain(G, clip, CFG))
    other = nada.train_domain(G, clip, dataclasses.replace(CFG, seed=1, iterations=2))
    assert other.losses != run.losses[:2]


def test_micro_batches_change_memory_not_the_math(G: Any, clip: Any, run: nada.NadaResult) -> None:
    small = nada.train_domain(G, clip, dataclasses.replace(CFG, micro_batch=1))
    assert small.rows == run.rows
    assert np.allclose(small.losses, run.losses, atol=1e-5)
    # Only summation order differs. With Adam's beta1 = 0 an update is about lr x sign(grad),
    # so a weight whose gradient is near zero can move up to lr x 4/5 = 0.0016 differently;
    # nearly all agree to float16 rounding.
    diffs = np.concatenate([np.abs(small.delta[k].astype(np.float32) - v.astype(np.float32)).ravel()
                            for k, v in run.delta.items()])
    assert diffs.max() <= 2e-3
    assert np.quantile(diffs, 0.99) <= 1e-5


def test_resume_from_a_periodic_checkpoint_equals_the_uninterrupted_run(
        G: Any, clip: Any, run: nada.NadaResult, tmp_path: Path) -> None:
    ckpt, saved = tmp_path / "run.ckpt", tmp_path / "at-2.ckpt"

    def progress(step: int, total: int, loss: float) -> None:
        if step == 2:
            shutil.copy(ckpt, saved)

    full = nada.train_domain(G, clip, CFG, checkpoint=ckpt, checkpoint_every=2, progress=progress)
    _same_result(run, full)
    _same_result(run, nada.train_domain(G, clip, CFG, resume=saved))
    with pytest.raises(UserError, match="another training run"):
        nada.train_domain(G, clip, dataclasses.replace(CFG, target="a werewolf"), resume=saved)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a domain training checkpoint"):
        nada.train_domain(G, clip, CFG, resume=tmp_path / "junk.ckpt")


def test_cancel_keeps_the_best_so_far_and_can_be_resumed(G: Any, clip: Any, run: nada.NadaResult,
                                                          tmp_path: Path) -> None:
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 3

    ckpt = tmp_path / "cancelled.ckpt"
    result = nada.train_domain(G, clip, CFG, cancel=cancel, checkpoint=ckpt)
    assert result.cancelled and result.steps_done == 3 and result.losses == run.losses[:3]
    assert result.best_step == int(np.argmin(result.losses))
    # The kept weights are those after `best_step` updates: a shorter run from the same seed.
    if result.best_step == 0:
        assert result.delta == {}
    else:
        _same_delta = nada.train_domain(G, clip, dataclasses.replace(CFG, iterations=result.best_step))
        assert set(result.delta) == set(_same_delta.delta)
        for k, v in _same_delta.delta.items():
            assert np.array_equal(result.delta[k], v), k
    # The checkpoint written on cancel holds the current state, so the run continues exactly.
    _same_result(run, nada.train_domain(G, clip, CFG, resume=ckpt))


def test_preview_shows_the_fixed_codes_about_every_tenth(G: Any, clip: Any) -> None:
    shots: list[tuple[int, np.ndarray]] = []
    extra = G.broadcast_w(G.sample_w(1, seed=5)).numpy()
    cfg = dataclasses.replace(CFG, iterations=10, layers_k=5)
    result = nada.train_domain(G, clip, cfg, extra_ws=extra, preview=lambda s, im: shots.append((s, im)))
    assert [s for s, _ in shots] == list(range(1, 11))
    assert all(im.dtype == np.uint8 and im.shape == (2, 32, 32, 3) for _, im in shots)
    from styleclip_desktop.nets.stylegan2 import to_uint8

    with torch.no_grad():
        own = to_uint8(result.adapted(torch.from_numpy(extra)))
    assert np.array_equal(shots[-1][1][0], own[0])


def test_bad_settings_are_refused_in_one_sentence(G: Any, clip: Any) -> None:
    with pytest.raises(UserError):
        nada.train_domain(G, clip, NadaConfig(target="   "))
    with pytest.raises(UserError):
        nada.train_domain(G, clip, dataclasses.replace(CFG, batch=0))
    with pytest.raises(UserError, match="W\\+ codes"):
        nada.train_domain(G, clip, CFG, extra_ws=np.zeros((3, 7), np.float32))
    assert "'photo' -> 'a pencil sketch'" in CFG.summary()


# --- the delta -------------------------------------------------------------------------


def test_apply_delta_at_0_is_the_base_and_at_1_the_adapted_generator(G: Any, run: nada.NadaResult) -> None:
    base_img = _render(G)
    assert torch.equal(_render(nada.apply_delta(G, run.delta, 0.0)), base_img)
    adapted_img = _render(run.adapted)
    applied_img = _render(nada.apply_delta(G, run.delta, 1.0))
    change = float((adapted_img - base_img).abs().max())
    error = float((applied_img - adapted_img).abs().max())
    # float16 keeps 11 significant bits: each stored weight change is off by at most 2^-11
    # of itself. Those roundings are independent and mostly cancel, so the renders differ
    # by well under 2^-11 of the whole base-to-adapted change (about 30x under, here);
    # bfloat16 (2^-8) or a misapplied delta would not pass.
    assert change > 1e-3
    assert error <= change * 2.0**-11
    assert torch.equal(_render(G), base_img)


def test_apply_delta_refuses_a_delta_for_another_generator(G: Any) -> None:
    with pytest.raises(UserError, match="different generator"):
        nada.apply_delta(G, {"convs.0.weight": np.zeros((1, 2), np.float16)}, 1.0)


def test_delta_from_state_dict_recovers_a_known_delta(G: Any) -> None:
    rng = np.random.RandomState(0)
    params = nada.row_parameters(G, [0, 1, 4])
    known = {n: np.asarray(0.05 * rng.randn(*p.shape)).astype(np.float16) for n, p in params.items()}
    adapted = nada.apply_delta(G, known, 1.0)
    got = nada.delta_from_state_dict(G, adapted)
    assert set(got) == set(known)
    for n, v in known.items():
        assert got[n].dtype == np.float16
        assert np.allclose(got[n].astype(np.float32), v.astype(np.float32), rtol=2e-3, atol=1e-6), n
    assert nada.delta_from_state_dict(G, copy.deepcopy(G)) == {}


def test_delta_from_state_dict_refuses_another_base(G: Any) -> None:
    from styleclip_desktop.weights.synthetic import tiny_generator

    with pytest.raises(UserError, match="different base generator.*mapping network"):
        nada.delta_from_state_dict(G, tiny_generator(32, seed=1))
    with pytest.raises(UserError, match="different architecture"):
        nada.delta_from_state_dict(G, tiny_generator(64, seed=0))
    moved = copy.deepcopy(G)
    with torch.no_grad():
        moved.torgbs[2].weight.add_(0.1)
    with pytest.raises(UserError, match="different base generator"):
        nada.delta_from_state_dict(G, moved)
    with torch.no_grad():
        moved.torgbs[2].weight.sub_(0.1)
        moved.torgbs[2].weight.add_(1e-7)
    assert nada.delta_from_state_dict(G, moved, atol=1e-5) == {}
