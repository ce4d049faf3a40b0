"""Pivotal tuning as published (danielroich/PTI) on the tiny generator, checked against an
independent implementation written here from the published description: LPIPS (the
`lpips` package's own wiring, on a synthetic AlexNet in torchvision's layout) + L2 with
weights 1 and 1, Adam at 3e-4 on every weight, stop once LPIPS <= 0.06, and the locality
regulariser (alpha 30, truncation 0.5, 0.1 x MSE + 0.1 x LPIPS, no per-layer noise)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

lpips = pytest.importorskip("lpips")
torchvision = pytest.importorskip("torchvision")

from styleclip_desktop.errors import ModelFileError  # noqa: E402
from styleclip_desktop.methods.inversion import apply_weight_delta, pti  # noqa: E402
from styleclip_desktop.methods.pti import PTIConfig  # noqa: E402
from styleclip_desktop.nets import lpips_net  # noqa: E402

RES = 32


@pytest.fixture(scope="module")
def G() -> Any:
    from styleclip_desktop.weights.synthetic import tiny_generator

    return tiny_generator(resolution=RES, seed=0)


@pytest.fixture(scope="module")
def target() -> np.ndarray:
    """A photo far from anything the tiny generator renders, so LPIPS starts above 0.06."""
    return np.random.default_rng(7).integers(0, 256, (RES, RES, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pivot(G: Any) -> np.ndarray:
    return G.w_avg.detach().repeat(G.num_ws, 1).numpy().astype(np.float32)


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    return lpips_net.write_synthetic_alexnet(models / lpips_net.FILENAME, seed=3)


@pytest.fixture(scope="module")
def ours(alexnet_file: Path) -> Any:
    return lpips_net.load_lpips(alexnet_file)


@pytest.fixture(scope="module")
def reference(alexnet_file: Path) -> Any:
    """lpips.LPIPS built the package's own way (heads from its wheel, trunk from
    torchvision's AlexNet), with torchvision's constructor handing over the synthetic file."""
    state = torch.load(alexnet_file, weights_only=True)
    tv = torchvision.models.alexnet(weights=None)
    tv.load_state_dict(state, strict=False)  # features only; the classifier is unused by LPIPS
    original = lpips.pretrained_networks.tv.alexnet
    lpips.pretrained_networks.tv.alexnet = lambda *a, **k: tv
    try:
        net = lpips.LPIPS(net="alex", verbose=False)
    finally:
        lpips.pretrained_networks.tv.alexnet = original
    return net.eval().requires_grad_(False)


def _photo(target: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(target.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0


def _ref_loss(img: torch.Tensor, photo: torch.Tensor, ref: Any) -> tuple[torch.Tensor, torch.Tensor]:
    dist = torch.squeeze(ref(img, photo))
    return 1.0 * F.mse_loss(img, photo) + 1.0 * dist, dist


def _no_noise(model: Any) -> Any:
    m = copy.deepcopy(model)
    for module in m.modules():
        if hasattr(module, "noise_const"):
            module.noise_const.zero_()
    return m


def _ref_locality(tuned: Any, frozen: Any, pivot: torch.Tensor, z: np.ndarray, ref: Any) -> float:
    total = 0.0
    with torch.no_grad():
        w = frozen.mapping(torch.from_numpy(z.astype(np.float32)))
        w = frozen.w_avg + 0.5 * (w - frozen.w_avg)
        for row in w:
            code = row[None, None].repeat(1, frozen.num_ws, 1)
            d = code - pivot
            code = pivot + 30.0 * d / torch.sqrt((d * d).sum())
            new, old = _no_noise(tuned)(code), _no_noise(frozen)(code)
            total += 0.1 * float(F.mse_loss(old, new)) + 0.1 * float(ref(old, new).mean())
    return total / len(z)


def test_lpips_matches_the_package_and_never_downloads(ours: Any, reference: Any, alexnet_file: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*a: Any, **k: Any) -> Any:
        raise AssertionError("LPIPS asked torchvision to download its backbone")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", no_download)
    net = lpips_net.load_lpips(alexnet_file)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    want = reference(a, b)
    assert float(want.min()) > 0
    torch.testing.assert_close(net(a, b), want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours(a, b), want, rtol=1e-5, atol=1e-7)


def test_step_zero_loss_and_first_update_match_the_published(G: Any, target: np.ndarray, pivot: np.ndarray,
                                                             ours: Any, reference: Any) -> None:
    res = pti(G, target, pivot, steps=1, lpips_model=ours)
    photo, w = _photo(target), torch.from_numpy(pivot)[None]
    ref_G = copy.deepcopy(G).requires_grad_(True)
    loss, dist = _ref_loss(ref_G(w), photo, reference)
    assert float(dist.detach()) > 0.06, "the test needs a pivot the early stop does not accept at once"
    assert res.procedure == "published" and res.steps_done == 1 and not res.stopped_early
    assert res.losses[0] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert res.lpips[0] == pytest.approx(float(dist.detach()), rel=1e-5)
    opt = torch.optim.Adam(ref_G.parameters(), lr=3e-4)  # as published: all weights, torch defaults
    loss.backward()
    opt.step()
    tuned = apply_weight_delta(G, res.delta)
    worst = max(float((a - b.detach()).abs().max()) for a, b in zip(tuned.parameters(), ref_G.parameters(), strict=True))
    assert worst < 1e-6
    assert res.delta and not any(n.startswith("mapping.") for n in res.delta)


def test_default_procedure_is_published_with_its_settings() -> None:
    cfg = PTIConfig()
    assert (cfg.steps, cfg.lr, cfg.l2_lambda, cfg.lpips_lambda, cfg.lpips_threshold) == (350, 3e-4, 1.0, 1.0, 0.06)
    assert (cfg.locality, cfg.locality_alpha, cfg.locality_l2_lambda, cfg.locality_lpips_lambda,
            cfg.locality_samples, cfg.locality_psi) == (False, 30.0, 0.1, 0.1, 1, 0.5)


def test_stops_once_lpips_reaches_the_threshold(G: Any, target: np.ndarray, pivot: np.ndarray, ours: Any) -> None:
    free = pti(G, target, pivot, lpips_model=ours, config=PTIConfig(steps=6, lpips_threshold=0.0, lr=3e-3))
    assert free.steps_done == 6 and not free.stopped_early and len(free.lpips) == 6
    threshold = sorted(free.lpips)[2]
    first = next(i for i, v in enumerate(free.lpips) if v <= threshold)
    res = pti(G, target, pivot, lpips_model=ours, config=PTIConfig(steps=6, lpips_threshold=threshold, lr=3e-3))
    assert res.stopped_early and res.steps_done == first and res.lpips == free.lpips[:first + 1]
    at_once = pti(G, target, pivot, lpips_model=ours, config=PTIConfig(lpips_threshold=10.0))
    assert at_once.stopped_early and at_once.steps_done == 0 and at_once.delta == {}


def test_locality_regulariser_matches_an_independent_one(G: Any, target: np.ndarray, pivot: np.ndarray,
                                                         ours: Any, reference: Any) -> None:
    cfg = PTIConfig(steps=2, lpips_threshold=0.0, lr=3e-3, locality=True)
    res = pti(G, target, pivot, seed=5, lpips_model=ours, config=cfg)
    plain = pti(G, target, pivot, seed=5, lpips_model=ours, config=PTIConfig(steps=2, lpips_threshold=0.0, lr=3e-3))
    photo, w = _photo(target), torch.from_numpy(pivot)[None]
    rng = np.random.RandomState(5)
    z0, z1 = rng.randn(1, G.config.z_dim), rng.randn(1, G.config.z_dim)
    # Step 0: the tuned copy equals the original, so the term is 0 and so is its gradient.
    ref_G = copy.deepcopy(G).requires_grad_(True)
    assert _ref_locality(ref_G, G, w, z0, reference) == 0.0
    loss, _ = _ref_loss(ref_G(w), photo, reference)
    opt = torch.optim.Adam(ref_G.parameters(), lr=3e-3)
    loss.backward()
    opt.step()
    with torch.no_grad():
        recon, _ = _ref_loss(ref_G(w), photo, reference)
    term = _ref_locality(ref_G, G, w, z1, reference)
    assert term > 0
    assert res.losses[0] == pytest.approx(plain.losses[0], rel=1e-6)
    assert res.losses[1] == pytest.approx(float(recon) + term, rel=1e-4)
    assert res.losses[1] - plain.losses[1] == pytest.approx(term, rel=1e-3)


def test_cancel_keeps_the_last_iterate(G: Any, target: np.ndarray, pivot: np.ndarray, ours: Any) -> None:
    import threading

    stop = threading.Event()

    def after_two(step: int, total: int, loss: float) -> None:
        if step == 2:
            stop.set()

    cfg = PTIConfig(steps=20, lpips_threshold=0.0)
    res = pti(G, target, pivot, lpips_model=ours, config=cfg, progress=after_two, cancel=stop)
    two = pti(G, target, pivot, lpips_model=ours, config=PTIConfig(steps=2, lpips_threshold=0.0))
    assert res.cancelled and res.steps_done == 2 and len(res.losses) == 2
    assert res.delta.keys() == two.delta.keys()
    assert all(np.array_equal(res.delta[n], two.delta[n]) for n in two.delta)


def test_missing_backbone_says_how_to_get_it(G: Any, target: np.ndarray, pivot: np.ndarray,
                                             tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as info:
        pti(G, target, pivot)
    message = str(info.value)
    assert "\n" not in message and "styleclip-desktop models download lpips-alexnet" in message
    with pytest.raises(ModelFileError, match="models download lpips-alexnet") as found:
        lpips_net.find_lpips(tmp_path)
    assert "\n" not in str(found.value)


def test_backbone_file_is_identified_and_checked(alexnet_file: Path, tmp_path: Path) -> None:
    from styleclip_desktop.weights.catalog import ALEXNET, load_catalog
    from styleclip_desktop.weights.identify import identify_file

    assert identify_file(alexnet_file).kind == ALEXNET  # type: ignore[union-attr]
    entry = load_catalog().get(lpips_net.MODEL_ID)
    assert entry.format == ALEXNET and entry.filename == lpips_net.FILENAME and entry.download_urls
    assert lpips_net.find_lpips(alexnet_file.parent) == alexnet_file
    state = torch.load(alexnet_file, weights_only=True)
    state["features.3.weight"] = state["features.3.weight"][:, :32]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelFileError, match=r"features\.3\.weight"):
        lpips_net.load_lpips(tmp_path / "bad.pth")
    vgg = {f"features.{i}.weight": torch.zeros(1) for i in range(0, 30, 2)}
    vgg |= {f"features.{i}.bias": torch.zeros(1) for i in range(0, 30, 2)}
    torch.save(vgg, tmp_path / "vgg.pth")
    found = identify_file(tmp_path / "vgg.pth")
    assert found is None or found.kind != ALEXNET


def test_cli_invert_pti_uses_the_published_procedure(tmp_path: Path, synthetic_models: dict[str, Path],
                                                     alexnet_file: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from styleclip_desktop.cli import main
    from styleclip_desktop.methods import inversion
    from styleclip_desktop.nets.e4e import write_synthetic_e4e

    e4e = write_synthetic_e4e(tmp_path / "e4e.pt", num_ws=8, seed=0)
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (240, 200, 3)).astype(np.uint8)).save(tmp_path / "p.png")
    base = ["--generator", str(synthetic_models["stylegan2-ada-pkl"]), "invert", str(tmp_path / "p.png"),
            "--landmarks", "80,110,130,110,88,170,124,170", "--e4e", str(e4e), "--method", "pti"]
    rc = main([*base, "-o", str(tmp_path / "a.scproj"), "--models-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 1 and "styleclip-desktop models download lpips-alexnet" in err and "Traceback" not in err
    seen: list[Any] = []
    real = inversion.pti

    def spy(*a: Any, **k: Any) -> Any:
        res = real(*a, **k)
        seen.append((k, res))
        return res

    monkeypatch.setattr(inversion, "pti", spy)
    assert main([*base, "-o", str(tmp_path / "b.scproj"), "--models-dir", str(alexnet_file.parent),
                 "--steps", "2", "--pti-locality"]) == 0
    kwargs, res = seen[-1]
    assert kwargs["procedure"] == "published" and kwargs["config"].locality and res.procedure == "published"
    assert kwargs["lpips_model"] is not None and len(res.losses) <= 2
    assert main([*base, "-o", str(tmp_path / "c.scproj"), "--models-dir", str(tmp_path / "empty"),
                 "--steps", "2", "--pti-loss", "mse-identity"]) == 0
    assert seen[-1][0]["procedure"] == "mse-identity" and seen[-1][1].steps_done == 2
