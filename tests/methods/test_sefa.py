"""Closed-form sliders (SeFa): the arithmetic, checked against independent recomputations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import sefa
from styleclip_desktop.nets.stylegan2 import Generator
from styleclip_desktop.weights.synthetic import tiny_config


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(4)
    return Generator(tiny_config(64)).eval().requires_grad_(False)


def test_groups_split_the_conv_rows_by_resolution(G: Generator) -> None:
    # 64 px: convs at 4 (row 0), 8 (1, 2), 16 (3, 4), 32 (5, 6), 64 (7, 8)
    assert sefa.group_rows(G, "coarse") == (0, 1, 2)
    assert sefa.group_rows(G, "middle") == (3, 4, 5, 6)
    assert sefa.group_rows(G, "fine") == (7, 8)
    with pytest.raises(UserError, match="unknown layer group"):
        sefa.group_rows(G, "everything")


@pytest.mark.parametrize("group", ["coarse", "middle", "fine"])
def test_directions_are_unit_orthogonal_and_match_an_independent_factorization(G: Generator, group: str) -> None:
    basis = sefa.factorize(G, group)
    V = basis.vectors
    assert V.shape == (G.config.w_dim, G.config.w_dim)
    np.testing.assert_allclose(V @ V.T, np.eye(len(V)), atol=1e-10)
    assert np.all(np.diff(basis.values) <= 1e-12)  # descending
    # Independently: the conv affine weights from the state dict, runtime gain applied,
    # each channel's row unit length, then an SVD (right singular vectors, values squared).
    sd = G.state_dict()
    lo, hi = sefa.GROUPS[group]
    blocks = [sd[f"convs.{i}.affine.weight"].double().numpy() / np.sqrt(G.config.w_dim)
              for i, conv in enumerate(G.convs) if lo <= conv.resolution <= hi]
    A = np.concatenate(blocks)
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    _, sv, vt = np.linalg.svd(A, full_matrices=True)
    k = min(len(sv), 16)
    np.testing.assert_allclose(basis.values[:k], sv[:k] ** 2, rtol=1e-8)
    distinct = [i for i in range(k - 1) if sv[i] - sv[i + 1] > 1e-6 * sv[0] and (i == 0 or sv[i - 1] - sv[i] > 1e-6 * sv[0])]
    assert distinct
    for i in distinct:
        assert abs(float(vt[i] @ V[i])) == pytest.approx(1.0, abs=1e-8)


def test_the_sign_of_each_direction_is_fixed(G: Generator) -> None:
    V = sefa.factorize(G, "coarse").vectors
    assert np.all(V[np.arange(len(V)), np.abs(V).argmax(1)] > 0)


def test_the_style_delta_is_exactly_the_w_plus_edit(G: Generator) -> None:
    basis = sefa.factorize(G, "middle")
    n = basis.vectors[2]
    ds = sefa.style_delta(G, n, basis.rows)
    wplus = G.broadcast_w(G.sample_w(2, seed=9)).double()
    moved = wplus.clone()
    for r in basis.rows:
        moved[:, r] += 2.5 * torch.from_numpy(n)
    Gd = G.double()
    try:
        before = torch.cat(Gd.w_to_s(wplus), 1)
        after = torch.cat(Gd.w_to_s(moved), 1)
    finally:
        G.float()
    np.testing.assert_allclose((after - before).numpy(), np.broadcast_to(2.5 * ds, after.shape), atol=1e-5)
    untouched = [s for s in G.slots if s.w_row not in basis.rows]
    offsets = np.cumsum([0, *G.style_dims])
    assert untouched and all(not ds[offsets[s.index]: offsets[s.index + 1]].any() for s in untouched)


def test_the_cache_round_trips_and_refuses_another_generator(G: Generator, tmp_path: Path) -> None:
    path = tmp_path / "sefa.npz"
    bases = sefa.cached_bases(G, path)
    assert path.is_file()
    again = sefa.load_bases(path, G)
    assert again.keys() == bases.keys()
    assert all(np.array_equal(again[g].vectors, bases[g].vectors) for g in bases)
    other = Generator(tiny_config(32))
    with pytest.raises(Exception, match="another generator"):
        sefa.load_bases(path, other)
    recomputed = sefa.cached_bases(other, path)  # a cache that does not fit is recomputed, not trusted
    assert "fine" not in recomputed and recomputed["coarse"].rows == sefa.group_rows(other, "coarse")
    path.write_bytes(b"not an npz")
    assert sefa.cached_bases(G, path).keys() == bases.keys()


def test_names_are_the_best_matching_prompt_by_an_independent_recomputation(G: Generator) -> None:
    rng = np.random.RandomState(0)
    proj = torch.from_numpy(rng.randn(3 * 16 * 16, 6))

    def render(s: torch.Tensor) -> torch.Tensor:
        return G.synthesize(list(torch.split(s, G.style_dims, 1)), out_res=16)

    def encode(images: torch.Tensor) -> np.ndarray:
        e = images.reshape(len(images), -1).double() @ proj
        return (e / e.norm(dim=1, keepdim=True)).numpy()

    vocab = sefa.Vocabulary("a face", {f"p{i}": f"prompt {i}" for i in range(6)}, min_score=0.3)
    text = np.eye(6)[[0, 1, 2, 3, 4, 5]] * 1.0
    bases = {"coarse": sefa.factorize(G, "coarse")}
    named = sefa.name_directions(G, bases, render, encode, text, vocab, top=3, faces=2, seed=1, alpha=3.0)
    assert [d.index for d in named] == [0, 1, 2]
    with torch.no_grad():
        s = torch.cat(G.w_to_s(G.sample_w(2, seed=1)), 1)
        for d in named:
            ds = torch.from_numpy(sefa.style_delta(G, bases["coarse"].vectors[d.index], bases["coarse"].rows))
            diff = (encode(render(s + 3 * ds)) - encode(render(s - 3 * ds))).mean(0)
            cos = text @ (diff / np.linalg.norm(diff))
            best = int(np.abs(cos).argmax())
            assert d.score == pytest.approx(abs(cos[best]), abs=1e-9)
            assert d.sign == (1 if cos[best] >= 0 else -1)
            assert d.name == (f"p{best}" if abs(cos[best]) >= 0.3 else sefa.UNNAMED)
            assert (d.prompt is None) == (d.name == sefa.UNNAMED)


def test_text_directions_are_unit_differences_from_the_neutral_prompt() -> None:
    vocab = sefa.Vocabulary("n", {"a": "x", "b": "y"}, 0.1)
    emb = {"n": [1.0, 0.0, 0.0], "x": [0.0, 1.0, 0.0], "y": [1.0, 0.0, 2.0]}
    d = sefa.text_directions(lambda texts: np.array([emb[t] for t in texts]), vocab)
    np.testing.assert_allclose(d, [[-1 / np.sqrt(2), 1 / np.sqrt(2), 0.0], [0.0, 0.0, 1.0]])


def test_the_built_in_vocabulary_loads_and_a_broken_one_is_a_clear_error(tmp_path: Path) -> None:
    vocab = sefa.load_vocabulary()
    assert vocab.neutral and "smile" in vocab.prompts and 0 < vocab.min_score < 1
    bad = tmp_path / "bad.toml"
    bad.write_text("prompts = [")
    with pytest.raises(UserError, match="not usable"):
        sefa.load_vocabulary(bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("[prompts]\n")
    with pytest.raises(UserError, match="lists no prompts"):
        sefa.load_vocabulary(empty)


def test_the_command_lists_and_names_directions(synthetic_models: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    from styleclip_desktop.cli import main

    base = ["--generator", str(synthetic_models["stylegan2-ada-pkl"]), "--clip", str(synthetic_models["clip"])]
    assert main([*base, "directions", "sefa", "--top", "2", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["group"], d["index"]) for d in listed["directions"]] == [("coarse", 0), ("coarse", 1),
                                                                        ("middle", 0), ("middle", 1)]
    assert main([*base, "--quiet", "directions", "sefa", "--group", "middle", "--top", "1", "--name", "--faces", "1",
                 "--json"]) == 0
    named = json.loads(capsys.readouterr().out)["directions"]
    assert len(named) == 1 and named[0]["group"] == "middle" and "score" in named[0] and named[0]["sign"] in (1, -1)
    assert main([*base, "directions", "sefa", "--group", "fine"]) == 2  # a 32 px generator has no fine layers
    assert "no fine layers" in capsys.readouterr().err


def test_a_slider_layer_moves_its_rows_and_survives_the_project_file(G: Generator, tmp_path: Path) -> None:
    from styleclip_desktop.document import Document, SliderParams, actions
    from styleclip_desktop.document.project_file import load_project, save_project
    from styleclip_desktop.render.pipeline import ModelSet, Renderer

    basis = sefa.factorize(G, "middle")
    params = sefa.slider_params(basis, 1, "smile", sign=-1)
    assert isinstance(params, SliderParams) and params.default_name() == "smile"
    np.testing.assert_array_equal(params.direction, (-basis.vectors[1]).astype(np.float32))
    latent = G.broadcast_w(G.sample_w(1, seed=2))[0].numpy()
    doc = Document(latent, models={"generator": "a" * 64})
    actions.add_layer(doc, params, alpha=2.0).do()
    path = tmp_path / "slider.scproj"
    save_project(doc, path)
    again = load_project(path)
    assert again.layers[0].params == params
    r = Renderer(ModelSet(G=G), "cpu")
    ws = r.wplus(again)
    want = torch.from_numpy(latent).clone()[None]
    for row in basis.rows:
        want[0, row] += 2.0 * torch.from_numpy(np.array(params.direction))
    torch.testing.assert_close(ws, want)
    other = Renderer(ModelSet(G=Generator(tiny_config(32))), "cpu")  # 8 W+ rows: rows 3-6 exist, 512 wide
    bad = Document(np.zeros((8, 512), np.float32), models={"generator": "a" * 64})
    actions.add_layer(bad, SliderParams("x", "fine", 0, (7, 9), np.ones(512, np.float32)), alpha=1.0).do()
    with pytest.raises(UserError, match="made for another generator"):
        other.wplus(bad)
