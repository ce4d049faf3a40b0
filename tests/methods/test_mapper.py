"""The levels mapper: official key layout, files, sub-mapper switches, training, resume and cancel."""

from __future__ import annotations

import argparse
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from styleclip_desktop.errors import ModelFileError, UserError
from styleclip_desktop.methods import mapper as mm
from styleclip_desktop.nets.clip import ClipModel
from styleclip_desktop.nets.irse import load_arcface, write_synthetic_arcface
from styleclip_desktop.nets.mapper import (
    MAPPER_SCALE,
    GroupPixelNorm,
    LevelsMapper,
    MapperCheckpoint,
    load_mapper,
    save_mapper,
    write_synthetic_mapper,
)
from styleclip_desktop.nets.stylegan2 import Generator
from styleclip_desktop.weights.catalog import MAPPER
from styleclip_desktop.weights.identify import identify_file
from styleclip_desktop.weights.synthetic import rosinality_state_dict

PROMPT = "a face with purple hair"




@pytest.fixture(scope="module")
def latents(tiny_G: Generator) -> torch.Tensor:
    return mm.sample_latents(tiny_G, 8, seed=0)


def _wplus(seed: int, rows: int = 18, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, rows, 512, generator=torch.Generator().manual_seed(seed))


# --- architecture and files ---------------------------------------------------------------


def test_state_dict_keys_and_shapes_match_the_official_mapper() -> None:
    sd = LevelsMapper().state_dict()
    expected = {f"{sub}.mapping.{i}.{p}" for sub in ("course_mapping", "medium_mapping", "fine_mapping")
                for i in range(1, 5) for p in ("weight", "bias")}
    assert set(sd) == expected
    assert all(v.shape == ((512, 512) if k.endswith("weight") else (512,)) for k, v in sd.items())
    assert set(LevelsMapper(("coarse", "medium")).state_dict()) == {k for k in expected if "fine" not in k}


def test_pixel_norm_runs_over_the_rows_of_a_level() -> None:
    x = _wplus(0, rows=4)
    y = GroupPixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(2, 512))


def test_switches_alpha_and_row_ranges() -> None:
    # Seeded: with random weights some row's smallest change is ~1e-6, and for an unlucky
    # global RNG state (whatever the tests before left it in) one rounds to exactly 0.
    torch.manual_seed(0)
    mapper = LevelsMapper()
    ws = _wplus(1)
    full = mm.apply_mapper(mapper, ws)
    torch.testing.assert_close(full, ws + MAPPER_SCALE * mapper(ws))
    assert all(float((full - ws)[:, a:b].abs().min()) > 0 for a, b in ((0, 4), (4, 8), (8, 18)))
    no_fine = mm.apply_mapper(mapper, ws, enabled=mm.enabled_levels(fine=False))
    torch.testing.assert_close(no_fine[:, 8:], ws[:, 8:], rtol=0, atol=0)
    torch.testing.assert_close(no_fine[:, :8], full[:, :8])
    only_fine = mm.apply_mapper(mapper, ws, enabled=mm.enabled_levels(coarse=False, medium=False))
    torch.testing.assert_close(only_fine[:, :8], ws[:, :8], rtol=0, atol=0)
    torch.testing.assert_close(mm.mapper_delta(mapper, ws, 2.5), 2.5 * mm.mapper_delta(mapper, ws, 1.0))
    torch.testing.assert_close(mm.apply_mapper(mapper, ws, 0.0), ws)
    torch.testing.assert_close(mm.mapper_function(mapper)(ws, True, True, False), no_fine)
    # Levels a file does not have act as switched off.
    coarse_only = LevelsMapper(("coarse",))
    assert float((mm.apply_mapper(coarse_only, ws) - ws)[:, 4:].abs().max()) == 0.0
    # A small generator with fewer than 9 rows: the fine level has nothing to do, and no NaN.
    assert torch.isfinite(mapper(_wplus(2, rows=8))).all()


def test_save_load_round_trip(tmp_path: Path) -> None:
    mapper = write_and_load(tmp_path / "synthetic.pt", seed=3).mapper
    opts = {"description": PROMPT, "stylegan_size": 1024}
    path = save_mapper(tmp_path / "mine.pt", mapper, opts, extra={"note": "kept"})
    ckpt = load_mapper(path)
    assert ckpt.opts == opts and ckpt.description == PROMPT and not ckpt.has_decoder
    assert ckpt.extra == {"note": "kept"}
    ws = _wplus(4)
    torch.testing.assert_close(ckpt.mapper(ws), mapper(ws), rtol=0, atol=0)
    assert identify_file(path) is not None and identify_file(path).kind == MAPPER  # type: ignore[union-attr]
    assert not list(tmp_path.glob(".*partial"))


def write_and_load(path: Path, seed: int) -> MapperCheckpoint:
    return load_mapper(write_synthetic_mapper(path, seed))


def test_official_layout_with_and_without_decoder(tmp_path: Path, tiny_G: Generator) -> None:
    decoder = rosinality_state_dict(tiny_G)
    with_dec = write_synthetic_mapper(tmp_path / "mapper-afro.pt", seed=0, decoder_state=decoder)
    raw = torch.load(with_dec, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "opts"} and isinstance(raw["opts"], dict)
    assert "mapper.course_mapping.mapping.1.weight" in raw["state_dict"]
    assert "mapper.fine_mapping.mapping.4.bias" in raw["state_dict"]
    assert "decoder.style.1.weight" in raw["state_dict"]
    assert raw["opts"]["mapper_type"] == "LevelsMapper" and raw["opts"]["latent_l2_lambda"] == 0.8
    ckpt = load_mapper(with_dec, keep_decoder=True)
    assert ckpt.has_decoder and ckpt.decoder_state is not None and set(ckpt.decoder_state) == set(decoder)
    assert ckpt.mapper.levels == ("coarse", "medium", "fine")
    assert load_mapper(with_dec).decoder_state is None  # only kept on request

    bare = load_mapper(write_synthetic_mapper(tmp_path / "bare.pt", seed=0))
    assert not bare.has_decoder
    ws = _wplus(5)
    torch.testing.assert_close(bare.mapper(ws), ckpt.mapper(ws), rtol=0, atol=0)

    no_fine = load_mapper(write_synthetic_mapper(tmp_path / "nofine.pt", seed=1, levels=("coarse", "medium")))
    assert no_fine.mapper.levels == ("coarse", "medium") and no_fine.opts["no_fine_mapper"] is True
    ns = load_mapper(write_synthetic_mapper(tmp_path / "ns.pt", seed=0, opts_as_namespace=True))
    assert ns.opts["description"] == "synthetic mapper"


class _Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_mappers(tmp_path: Path, synthetic_models: dict[str, Path]) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_mapper(tmp_path / "missing.pt")
    with pytest.raises(ModelFileError, match="not a StyleCLIP mapper"):
        load_mapper(synthetic_models["stylegan2-rosinality-pt"])
    with pytest.raises(ModelFileError, match="StyleCLIP mapper"):
        load_mapper(synthetic_models["clip"])
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_mapper(text)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": {}, "opts": _Evil()}))
    with pytest.raises(ModelFileError):
        load_mapper(evil)
    single = tmp_path / "single.pt"
    torch.save({"state_dict": {"mapper.mapping.mapping.1.weight": torch.zeros(512, 512)},
                "opts": vars(argparse.Namespace(mapper_type="SingleMapper"))}, single)
    with pytest.raises(ModelFileError, match="only the levels mapper"):
        load_mapper(single)


# --- training --------------------------------------------------------------------------


def _cfg(**kw: object) -> mm.MapperTrainConfig:
    base: dict[str, object] = {"prompt": PROMPT, "steps": 12, "checkpoint_every": 100}
    base.update(kw)
    return mm.MapperTrainConfig(**base)  # type: ignore[arg-type]


def test_training_lowers_the_loss(tiny_G: Generator, clip: ClipModel, latents: torch.Tensor) -> None:
    # Adam: Ranger's rectification keeps its first steps tiny (RAdam's warm-up; see
    # test_ranger.py for its updates), so in 12 steps only Adam moves the loss measurably.
    cfg = _cfg(optimizer="adam")
    result = mm.train_mapper(tiny_G, clip, latents, cfg)
    assert result.step == 12 and len(result.history) == 12 and not result.cancelled
    ws = tiny_G.broadcast_w(latents)
    text = mm.prompt_features(clip, PROMPT)
    with torch.no_grad():
        before, rec_before = mm.mapper_loss(tiny_G, clip, mm.new_mapper(cfg.levels, cfg.seed), ws, text, cfg)
        after, rec_after = mm.mapper_loss(tiny_G, clip, result.mapper, ws, text, cfg)
    assert float(after) < float(before) - 0.003, (float(before), float(after))
    assert rec_after.l2 < rec_before.l2
    losses = result.losses
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def _state(out: Path) -> dict:  # type: ignore[type-arg]
    return torch.load(mm.state_path(out), map_location="cpu", weights_only=True)


def test_resume_matches_an_uninterrupted_run(tmp_path: Path, tiny_G: Generator, clip: ClipModel,
                                             latents: torch.Tensor) -> None:
    # 6 steps: Ranger's Lookahead syncs at step 6, after the resume.
    whole = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=6, checkpoint_every=4), out_path=tmp_path / "a.pt")
    first = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=3), out_path=tmp_path / "b.pt")
    assert first.step == 3 and _state(tmp_path / "b.pt")["step"] == 3
    assert mm.state_path(tmp_path / "b.pt") == tmp_path / "b.train-state.pt"
    resumed = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=6), out_path=tmp_path / "b.pt", resume=True)
    assert resumed.step == 6 and [h.step for h in resumed.history] == list(range(1, 7))
    assert resumed.losses == whole.losses
    for (k, a), (_, b) in zip(whole.mapper.state_dict().items(), resumed.mapper.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    saved = load_mapper(tmp_path / "b.pt")
    assert _state(tmp_path / "b.pt")["step"] == 6 and saved.opts["optim_name"] == "ranger"
    assert saved.description == PROMPT and saved.opts["clip_input"] == "published"
    # The training state lives beside the mapper file, not in it.
    assert mm.TRAINING_KEY not in saved.extra and not saved.has_decoder
    assert any("lookahead_slow" in s for s in _state(tmp_path / "b.pt")["optimizer"]["state"].values())
    with pytest.raises(UserError, match="other settings"):
        mm.train_mapper(tiny_G, clip, latents, _cfg(prompt="a bald face", steps=8), out_path=tmp_path / "b.pt",
                        resume=True)
    with pytest.raises(UserError, match="other settings"):
        mm.train_mapper(tiny_G, clip, latents, _cfg(optimizer="adam", steps=8), out_path=tmp_path / "b.pt",
                        resume=True)
    with pytest.raises(UserError, match="another latent set"):
        mm.train_mapper(tiny_G, clip, latents[:4], _cfg(steps=8), out_path=tmp_path / "b.pt", resume=True)


def test_resume_from_a_file_of_an_earlier_version(tmp_path: Path, tiny_G: Generator, clip: ClipModel,
                                                  latents: torch.Tensor) -> None:
    """Earlier versions kept the state inside the mapper file and trained with Adam on CLIP's own input."""
    legacy = {"optimizer": "adam", "clip_input": "exact"}
    whole = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=4, **legacy), out_path=tmp_path / "a.pt")
    mm.train_mapper(tiny_G, clip, latents, _cfg(steps=2, **legacy), out_path=tmp_path / "old.pt")
    state = _state(tmp_path / "old.pt")
    config = {k: v for k, v in state["config"].items() if k not in legacy}
    old_state = {"step": 2, "optimizer": state["optimizer"], "config": config, "latents": state["latents"],
                 "history": state["history"]}
    save_mapper(tmp_path / "old.pt", load_mapper(tmp_path / "old.pt").mapper, {}, extra={mm.TRAINING_KEY: old_state})
    mm.state_path(tmp_path / "old.pt").unlink()
    resumed = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=4, **legacy), out_path=tmp_path / "old.pt",
                              resume=True)
    assert resumed.losses == whole.losses


def test_cancel_stops_within_one_step_and_saves(tmp_path: Path, tiny_G: Generator, clip: ClipModel,
                                                latents: torch.Tensor) -> None:
    stop = threading.Event()

    def on_step(rec: mm.TrainStep) -> None:
        if rec.step == 2:
            stop.set()

    out = tmp_path / "cancelled.pt"
    result = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=1000), out_path=out, on_step=on_step, cancel=stop)
    assert result.cancelled and result.step == 2 and result.checkpoint == out
    saved = load_mapper(out)
    assert _state(out)["step"] == 2
    ws = _wplus(6, rows=tiny_G.num_ws)
    torch.testing.assert_close(saved.mapper(ws), result.mapper(ws), rtol=0, atol=0)


def test_training_with_arcface(tmp_path: Path, tiny_G: Generator, clip: ClipModel, latents: torch.Tensor) -> None:
    arcface = load_arcface(write_synthetic_arcface(tmp_path / "af.pth", seed=2))
    result = mm.train_mapper(tiny_G, clip, latents, _cfg(steps=2), arcface=arcface)
    assert result.history[0].identity > 0.0  # the mapper changes the face from its first step


def test_latent_sets_and_batches(tmp_path: Path, tiny_G: Generator) -> None:
    L = tiny_G.num_ws
    np.save(tmp_path / "set.npy", np.zeros((5, L, 512), np.float32))
    assert mm.load_latent_set(tmp_path / "set.npy", L, 512).shape == (5, L, 512)
    np.save(tmp_path / "one.npy", np.zeros((L, 512), np.float32))
    assert mm.load_latent_set(tmp_path / "one.npy", L, 512).shape == (1, L, 512)
    with pytest.raises(UserError, match="not found"):
        mm.load_latent_set(tmp_path / "none.npy", L, 512)
    epoch = torch.cat([mm.batch_indices(10, 2, s, seed=1) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(10))  # one epoch sees every latent once
    assert torch.equal(mm.batch_indices(10, 2, 7, 1), mm.batch_indices(10, 2, 7, 1))
    with pytest.raises(UserError, match="fewer than one batch"):
        mm.batch_indices(1, 2, 0, 0)


# --- the training set and the optimizer --------------------------------------------------


def test_default_training_latents_have_distinct_rows(tiny_G: Generator) -> None:
    n, sources, L = 32, 4, tiny_G.num_ws
    lat = mm.sample_latents(tiny_G, n, seed=3)
    assert lat.shape == (n, L, 512)
    # Level by level (coarse 0-3, medium 4-7, fine 8+), no code has all its rows equal.
    for start, stop in ((0, 4), (4, min(8, L)), (8, L)):
        if stop - start > 1:
            spread = (lat[:, start:stop] - lat[:, start:start + 1]).abs().amax(dim=(1, 2))
            assert float(spread.min()) > 0.0, (start, stop)
    # Style mixing: every row is one of the code's own truncated (psi 0.7) w, drawn from the seed.
    z = torch.from_numpy(np.random.RandomState(3).randn(n * sources, 512).astype(np.float32))
    with torch.no_grad():
        w = tiny_G.w_avg + 0.7 * (tiny_G.mapping(z) - tiny_G.w_avg)
    w = w.reshape(n, sources, 512)
    dist = (lat[:, :, None, :] - w[:, None, :, :]).abs().amax(dim=-1)  # (n, L, sources)
    assert float(dist.amin(dim=-1).max()) < 1e-5
    assert float((dist.argmin(dim=-1)[:, None, :] != dist.argmin(dim=-1)[:, :, None]).float().mean()) > 0.3
    assert torch.equal(mm.sample_latents(tiny_G, n, seed=3), lat)


def test_latents_of_the_wrong_shape_give_a_one_line_error(tmp_path: Path, tiny_G: Generator) -> None:
    L = tiny_G.num_ws
    for name, shape in (("rows.npy", (5, 3, 512)), ("w.npy", (5, 512)), ("wide.npy", (2, L, 256))):
        np.save(tmp_path / name, np.zeros(shape, np.float32))
        with pytest.raises(UserError) as err:
            mm.load_latent_set(tmp_path / name, L, 512)
        message = str(err.value)
        assert "\n" not in message and name in message and f"(N, {L}, 512)" in message, message
    np.save(tmp_path / "a.npy", np.ones((L, 512), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((3, L, 512), np.float32))
    both = mm.load_latent_sets([tmp_path / "a.npy", tmp_path / "b.npy"], L, 512)
    assert both.shape == (4, L, 512) and float(both[0].min()) == 1.0


def test_cli_train_notes_the_stand_in_and_refuses_bad_latents(tmp_path: Path, synthetic_models: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from styleclip_desktop.cli import main

    base = ["--generator", str(synthetic_models["stylegan2-ada-pkl"]), "--clip", str(synthetic_models["clip"]),
            "--models-dir", str(tmp_path / "models"), "mapper", "train", "--prompt", PROMPT]
    np.save(tmp_path / "w.npy", np.zeros((5, 512), np.float32))
    assert main([*base, "--out", str(tmp_path / "bad.pt"), "--latents", str(tmp_path / "w.npy")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "(N, 8, 512)" in err and "w.npy" in err, err
    assert main([*base, "--out", str(tmp_path / "m.pt"), "--samples", "4", "--steps", "1",
                 "--optimizer", "adam", "--clip-input", "exact"]) == 0
    err = capsys.readouterr().err
    assert "style-mixed samples of the generator stand in for inverted faces" in err
    saved = load_mapper(tmp_path / "m.pt")
    assert saved.opts["optim_name"] == "adam" and saved.opts["clip_input"] == "exact"
    assert mm.state_path(tmp_path / "m.pt").is_file()


def test_training_uses_ranger_by_default(tiny_G: Generator) -> None:
    from styleclip_desktop.methods.ranger import Ranger

    cfg = _cfg()
    assert cfg.optimizer == "ranger" and cfg.clip_input == "published"
    mapper = mm.new_mapper(cfg.levels, 0)
    assert isinstance(mm.make_optimizer(mapper, cfg), Ranger)
    assert type(mm.make_optimizer(mapper, _cfg(optimizer="adam"))) is torch.optim.Adam
    with pytest.raises(UserError, match="optimizer"):
        _cfg(optimizer="sgd")
