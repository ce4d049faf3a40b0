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


def test_the_renderer_projects_and_caches_by_keep(synthetic_models: dict[str, Path], clip) -> None:  # type: ignore[no-untyped-def]
    import torch

    from styleclip_desktop.methods import global_directions as gd
    from styleclip_desktop.render.pipeline import ModelSet, Renderer
    from styleclip_desktop.weights.formats import load_generator

    G = load_generator(synthetic_models["stylegan2-ada-pkl"])
    conv = gd.conv_channel_index(G)
    rng = np.random.RandomState(1)
    fs3 = rng.randn(len(conv), clip.embed_dim).astype(np.float32)
    fs3 /= np.linalg.norm(fs3, axis=1, keepdims=True)
    with torch.no_grad():
        s = torch.cat(G.w_to_s(G.sample_w(64, seed=2)), 1).double().numpy()
    stats = gd.StyleStats(s.mean(0), s.std(0) + 1e-3, 64)
    r = Renderer(ModelSet(G=G, clip=clip, fs3=fs3, stats=stats), "cpu")
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
    assert main([*base, "--method", "optimize", "--keep", "age", "-o", str(tmp_path / "y.png")]) == 2
