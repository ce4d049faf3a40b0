"""`domain train|info` and `edit --method domain`, on the synthetic models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main
from styleclip_desktop.document import DomainParams, load_project


def _base(env: dict[str, Path]) -> list[str]:
    return ["--generator", str(env["gen"]), "--clip", str(env["clip"]), "--models-dir", str(env["models"])]


def _img(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


@pytest.fixture(scope="module")
def domain(env: dict[str, Path]) -> Path:
    out = env["dir"] / "sketch.domain"
    assert main([*_base(env), "domain", "train", "--target", "a pencil sketch", "--iterations", "2",
                 "--seed", "1", "-o", str(out)]) == 0
    return out


def test_train_then_describe_a_domain(env: dict[str, Path], domain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert domain.is_file()
    capsys.readouterr()
    assert main(["domain", "info", str(domain)]) == 0
    out = capsys.readouterr().out
    assert "'photo' -> 'a pencil sketch': 2 steps" in out and "tensors" in out


def test_edit_stacks_a_domain_with_a_text_edit(env: dict[str, Path], domain: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    d = env["dir"]
    assert main([*_base(env), "edit", str(env["w"]), "--method", "domain", "--domain", str(domain),
                 "-o", str(d / "sketch.png")]) == 0
    assert main([*_base(env), "edit", str(env["w"]), "--method", "domain", "--domain", str(domain),
                 "--alpha", "0", "-o", str(d / "zero.png")]) == 0
    assert np.array_equal(_img(d / "zero.png"), _img(env["plain"]))
    assert np.abs(_img(d / "sketch.png") - _img(env["plain"])).max() > 0
    proj = d / "sketch.scproj"
    assert main([*_base(env), "edit", str(env["w"]), "--method", "domain", "--domain", str(domain),
                 "-o", str(proj)]) == 0
    assert main([*_base(env), "edit", str(proj), "--method", "mapper", "--mapper", "afro", "--alpha", "2",
                 "-o", str(proj)]) == 0
    doc = load_project(proj)
    assert [layer.kind for layer in doc.layers] == ["domain", "mapper"]
    assert isinstance(doc.layers[0].params, DomainParams) and doc.layers[0].params.steps == 2
    assert main([*_base(env), "export", str(proj), "-o", str(d / "stacked.png")]) == 0
    assert not np.array_equal(_img(d / "stacked.png"), _img(d / "sketch.png"))


@pytest.mark.parametrize(("args", "message"), [
    (["edit", "W", "--method", "domain", "-o", "OUT.png"], "--method domain needs it"),
    (["edit", "W", "--domain", "DOMAIN", "-o", "OUT.png"], "--domain FILE goes with --method domain"),
    (["edit", "W", "--method", "domain", "--domain", "DOMAIN", "--mask", "hair", "-o", "OUT.png"], "no --mask"),
    (["edit", "W", "--method", "domain", "--domain", "MISSING", "-o", "OUT.png"], "domain file not found"),
    (["domain", "train", "--target", "x", "-o", "OUT.png"], "-o must name a .domain file"),
])
def test_bad_domain_options_fail_in_one_line(env: dict[str, Path], domain: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    names = {"W": str(env["w"]), "DOMAIN": str(domain), "MISSING": str(env["dir"] / "nope.domain"),
             "OUT.png": str(env["dir"] / "bad.png")}
    capsys.readouterr()
    rc = main([*_base(env), *[names.get(a, a) for a in args]])
    err = capsys.readouterr().err
    assert rc != 0 and message in err and "Traceback" not in err
    assert not (env["dir"] / "bad.png").exists()
