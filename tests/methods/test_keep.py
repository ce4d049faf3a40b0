"""Keep constraints on global directions: the projection's arithmetic, the project, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.document import GlobalDirectionParams
from styleclip_desktop.document.params import DirectionSource
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import keep


def _case(seed: int = 0, n: int = 300, kept: int = 3) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.RandomState(seed)
    std = rng.uniform(0.05, 2.0, n)
    ds = (rng.randn(n) * std * (rng.rand(n) < 0.3)).astype(np.float32)  # sparse, as β leaves it
    return ds, [(rng.randn(n) * std).astype(np.float32) for _ in range(kept)], std


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_kept_ds_are_sigma_orthogonal_to_the_result(k: int) -> None:
    ds, kept, std = _case(kept=k)
    out = keep.orthogonalize(ds, kept, std)
    scale = np.sqrt(keep.sigma_dot(ds, ds, std))
    for kd in kept:
        rel = abs(keep.sigma_dot(out, kd, std)) / (scale * np.sqrt(keep.sigma_dot(kd, kd, std)))
        assert rel < 1e-6
    # and it is a projection: what was orthogonal already stays, and the change is minimal
    assert keep.sigma_dot(out, ds - out, std) == pytest.approx(0.0, abs=1e-4 * scale**2)


def test_keeping_nothing_leaves_ds_bit_for_bit() -> None:
    ds, _, std = _case()
    assert keep.orthogonalize(ds, [], std) is ds


def test_only_the_channels_beta_kept_are_changed() -> None:
    ds, kept, std = _case()
    out = keep.orthogonalize(ds, kept, std)
    assert not out[ds == 0].any() and out.dtype == ds.dtype


def test_gram_schmidt_is_in_the_order_given_and_drops_dependent_directions() -> None:
    ds, (a, b, _), std = _case()
    twice = keep.orthogonalize(ds, [a, b, a + 2 * b], std)
    once = keep.orthogonalize(ds, [a, b], std)
    np.testing.assert_allclose(twice, once, rtol=1e-5, atol=1e-7)
    assert len(keep.keep_basis([a, b, a + 2 * b], std)) == 2
    # Independently: least squares removes the span of the (restricted, σ-scaled) kept directions.
    mask = ds != 0
    K = np.stack([np.where(mask, a, 0) / std, np.where(mask, b, 0) / std], 1)
    u = ds / std
    coef, *_ = np.linalg.lstsq(K, u, rcond=None)
    np.testing.assert_allclose(once, ((u - K @ coef) * std).astype(np.float32), rtol=1e-4, atol=1e-6)


def test_shorthands_name_vocabulary_prompts_and_identity_is_refused() -> None:
    prompts = keep.kept_prompts(["age", "Glasses", "a face with a hat"], {"age": "old", "glasses": "specs"})
    assert prompts == ["old", "specs", "a face with a hat"]
    with pytest.raises(UserError, match="cannot keep identity"):
        keep.kept_prompts(["identity"], {})
    assert keep.shorthands()["age"]  # from the built-in slider vocabulary


def test_keep_round_trips_in_params_and_changes_what_a_stored_ds_describes() -> None:
    p = GlobalDirectionParams("a face with grey hair", keep=["age", " glasses ", "age"])
    assert p.keep == ("age", "glasses")
    again = GlobalDirectionParams.from_json(p.to_json(), p.arrays())
    assert again == p
    assert GlobalDirectionParams.from_json({"target": "x"}, {}).keep == ()  # projects from before keep
    src = DirectionSource("x", "a face", 0.15, {"generator": "a" * 64}, ("age",))
    assert DirectionSource.from_json(src.to_json()) == src
    assert "keep" not in DirectionSource("x", "a face", 0.15, {"generator": "a" * 64}).to_json()
    with_ds = GlobalDirectionParams("x", keep=("age",), ds=np.ones(4, np.float32), ds_source=src)
    assert with_ds.stored_direction() is not None
    assert with_ds.with_changes(keep=("gender",)).ds is None  # a new keep set drops the stored ds
    assert not src.describes(GlobalDirectionParams("x"))
    with pytest.raises(TypeError):
        GlobalDirectionParams("x", keep="age")
    with pytest.raises(ValueError):
        GlobalDirectionParams("x", keep=[""])


def _renderer(synthetic_models: dict[str, Path], clip, seed: int):  # type: ignore[no-untyped-def]
    """A renderer on the synthetic generator and CLIP, with a seeded unit fs3 and sampled statistics."""
    import torch

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.render.pipeline import ModelSet, Renderer
    from styleclip_desktop.weights.formats import load_generator

    G = load_generator(synthetic_models["stylegan2-ada-pkl"])
    fs3 = np.random.RandomState(seed).randn(len(gd.conv_channel_index(G)), clip.embed_dim).astype(np.float32)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    with torch.no_grad():
        s = torch.cat(G.w_to_s(G.sample_w(64, seed=2)), 1).double().numpy()
    stats = gd.StyleStats(s.mean(0), s.std(0) + 1e-3, 64)
    return Renderer(ModelSet(G=G, clip=clip, fs3=fs3, stats=stats), "cpu")


def test_the_renderer_projects_and_caches_by_keep(synthetic_models: dict[str, Path], clip) -> None:  # type: ignore[no-untyped-def]

    from styleclip_desktop.methods import global_directions as gd

    r = _renderer(synthetic_models, clip, 1)
    G, fs3, stats = r.G, r.models.fs3, r.models.stats
    conv = gd.conv_channel_index(G)
    free = r.direction("a face with grey hair", "a face", 0.1)
    held = r.direction("a face with grey hair", "a face", 0.1, ("age", "a face with a hat"))
    assert held.channels == free.channels and not np.array_equal(held.ds, free.ds)
    for prompt in (keep.shorthands()["age"], "a face with a hat"):
        kd = gd.style_direction(fs3, r.text_direction(prompt, "a face"), stats.std, conv, 0.0).ds
        rel = abs(keep.sigma_dot(held.ds, kd, stats.std)) / np.sqrt(
            keep.sigma_dot(held.ds, held.ds, stats.std) * keep.sigma_dot(kd, kd, stats.std))
        assert rel < 1e-6
    assert r.direction("a face with grey hair", "a face", 0.1) is free  # the unkept one is cached apart


def test_the_command_line_keeps_attributes_in_the_project(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from styleclip_desktop.cli import main
    from styleclip_desktop.document.project_file import load_project

    models = tmp_path / "models"
    assert main(["models", "synthesize", "--out", str(models), "--resolution", "32", "--quiet"]) == 0
    base = ["--models-dir", str(models), "--quiet", "edit", "--seed", "1", "--target", "a face with grey hair"]
    out = tmp_path / "kept.scproj"
    assert main([*base, "--keep", "age", "--keep", "a face with a hat", "-o", str(out)]) == 0
    assert "keeping age, a face with a hat" in capsys.readouterr().out
    layer = next(iter(load_project(out).layers))
    assert layer.params.keep == ("age", "a face with a hat")
    assert layer.params.stored_direction() is not None  # resolved with the keep set, and recorded so
    assert main([*base, "--keep", "age", "--report", "-o", str(tmp_path / "kept.png")]) == 0
    printed = capsys.readouterr().out
    assert "what else it changes" in printed and "a face with grey hair" in printed
    assert "glasses" in printed and "(CLIP image cosine)" in printed
    assert main([*base, "--keep", "identity", "-o", str(tmp_path / "x.png")]) == 1
    assert "cannot keep identity" in capsys.readouterr().err
    assert main([*base, "--method", "optimize", "--keep", "age", "--lambda-keep", "0.5", "--steps", "2",
                 "-o", str(tmp_path / "opt.scproj")]) == 0
    opt_layer = next(iter(load_project(tmp_path / "opt.scproj").layers))
    assert (opt_layer.params.keep, opt_layer.params.lambda_keep) == (("age",), 0.5)
    assert main([*base, "--method", "mapper", "--mapper", "afro", "--keep", "age", "-o", str(tmp_path / "y.png")]) == 2


def test_optimization_holds_kept_similarities_and_reports_the_term(tiny_G, clip) -> None:  # type: ignore[no-untyped-def]
    import torch

    from styleclip_desktop.methods import optimization as opt
    from styleclip_desktop.methods.clip_input import encode_for_loss

    ws0 = tiny_G.broadcast_w(tiny_G.sample_w(1, seed=4))
    cfg = opt.OptimizationConfig(steps=4, lambda_l2=0.01, lambda_id=0.0, keep=("age", "a face with a hat"),
                                 lambda_keep=2.0, result="last")
    res = opt.optimize_latent(tiny_G, clip, "a face with purple hair", ws0, cfg)
    first, last = res.history[0], res.history[-1]
    assert first.keep == 0.0 and last.keep > 0.0  # the start is the reference: nothing changed yet
    for rec in res.history:
        assert rec.total == pytest.approx(rec.clip + 0.01 * rec.l2 + 2.0 * rec.keep, rel=1e-5, abs=1e-6)
    # Independently, at the returned iterate: Σ |cos(image, kept) - cos(start, kept)|.
    kept = clip.encode_text([keep.shorthands()["age"], "a face with a hat"])
    with torch.no_grad():
        def sims(ws: torch.Tensor) -> torch.Tensor:
            return encode_for_loss(clip, tiny_G(ws), cfg.clip_input) @ kept.T

        want = float((sims(ws0 + torch.from_numpy(res.delta)) - sims(ws0)).abs().sum())
    assert res.history[res.step].keep == pytest.approx(want, rel=1e-4, abs=1e-6)
    without = opt.optimize_latent(tiny_G, clip, "a face with purple hair", ws0,
                                  opt.OptimizationConfig(steps=2, lambda_l2=0.01, lambda_id=0.0))
    assert all(rec.keep == 0.0 for rec in without.history)
    with pytest.raises(UserError, match="identity"):
        opt.optimize_latent(tiny_G, clip, "x", ws0, opt.OptimizationConfig(steps=1, keep=("identity",)))


def test_optimization_layers_store_keep_and_a_change_drops_the_result() -> None:
    from styleclip_desktop.document import OptimizationParams

    delta = np.zeros((8, 512), np.float32)
    p = OptimizationParams("a beard", keep=["age"], lambda_keep=0.5, delta=delta)
    again = OptimizationParams.from_json(p.to_json(), p.arrays())
    assert again == p and again.keep == ("age",) and again.lambda_keep == 0.5
    assert "keep" not in OptimizationParams("a beard").to_json()  # as before keep existed
    assert p.with_changes(keep=("gender",)).delta is None
    assert p.with_changes(lambda_keep=1.0).delta is None
    assert p.with_changes(keep=("age",)).delta is not None


def test_a_slider_that_keeps_attributes_moves_in_style_space_orthogonal_to_them(
        synthetic_models: dict[str, Path], clip) -> None:  # type: ignore[no-untyped-def]

    from styleclip_desktop.document import Document, Layer
    from styleclip_desktop.methods import sefa

    r = _renderer(synthetic_models, clip, 2)
    G, stats = r.G, r.models.stats
    basis = sefa.factorize(G, "coarse")
    free = sefa.slider_params(basis, 0)
    held = free.with_changes(keep=("age",))
    latent = G.broadcast_w(G.sample_w(1, seed=5))[0].numpy()
    plain = Document(latent, layers=[Layer(free, alpha=2.0, id="a")])
    kept = Document(latent, layers=[Layer(held, alpha=2.0, id="a")])
    base = r.styles_for(Document(latent)).double().numpy()
    # Without keep, the W+ edit equals its exact style-space image; with keep, that image
    # made σ-orthogonal to the kept attribute's direction.
    exact = sefa.style_delta(G, free.direction, free.rows)
    np.testing.assert_allclose(r.styles_for(plain).double().numpy() - base, 2.0 * exact[None], atol=1e-4)
    moved = (r.styles_for(kept).double().numpy() - base)[0] / 2.0
    kd = r.kept_directions(("age",), "a face")[0]
    rel = abs(keep.sigma_dot(moved, kd, stats.std)) / np.sqrt(
        keep.sigma_dot(moved, moved, stats.std) * keep.sigma_dot(kd, kd, stats.std))
    assert rel < 1e-5 and not np.allclose(moved, exact, atol=1e-6)


def test_mapper_training_holds_kept_similarities_and_resume_checks_them(tiny_G, clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from styleclip_desktop.methods import mapper as mm

    latents = mm.sample_latents(tiny_G, 4, seed=0)
    cfg = mm.MapperTrainConfig("a face with purple hair", steps=2, batch=2, keep=("age",), lambda_keep=3.0)
    result = mm.train_mapper(tiny_G, clip, latents, cfg, out_path=tmp_path / "m.pt")
    for rec in result.history:
        assert rec.keep > 0.0  # the mapper's first output already moves the faces
        assert rec.total == pytest.approx(cfg.lambda_clip * rec.clip + cfg.lambda_l2 * rec.l2 + 3.0 * rec.keep,
                                          rel=1e-5, abs=1e-7)
    assert all(rec.keep == 0.0 for rec in mm.train_mapper(
        tiny_G, clip, latents, mm.MapperTrainConfig("a face with purple hair", steps=1, batch=2)).history)
    other = mm.MapperTrainConfig("a face with purple hair", steps=3, batch=2, keep=("gender",), lambda_keep=3.0)
    with pytest.raises(UserError, match="other settings"):
        mm.train_mapper(tiny_G, clip, latents, other, out_path=tmp_path / "m.pt", resume=True)
    same = mm.MapperTrainConfig("a face with purple hair", steps=3, batch=2, keep=("age",), lambda_keep=3.0)
    assert mm.train_mapper(tiny_G, clip, latents, same, out_path=tmp_path / "m.pt", resume=True).step == 3
