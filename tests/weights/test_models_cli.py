"""`styleclip-desktop models ...` end to end, through `cli.main`, against a local server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.cli import main
from styleclip_desktop.weights import catalog as cat_mod
from styleclip_desktop.weights import store
from styleclip_desktop.weights.catalog import load_catalog
from styleclip_desktop.weights.store import SYNTHETIC_NOTE

from .http_server import FileServer


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.delenv("STYLECLIP_CATALOG", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as s:
        yield s


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def npy_bytes(seed: int = 0) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).standard_normal((16, 512)).astype(np.float32))
    return buf.getvalue()


def write_catalog(path: Path, models: list[dict[str, object]]) -> Path:
    lines = ['[features.directions]\ntitle = "Directions"\nneeds = ["directions"]\n']
    for m in models:
        lines.append("[[model]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in m.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def test_list_on_empty_dir_names_every_required_model_and_its_feature(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--models-dir", str(tmp_path / "models"), "models", "list")
    assert code == 0
    lines = out.splitlines()
    catalog = cat_mod.load_catalog()
    features = catalog.all_features()
    for e in catalog:
        if not e.required:
            continue
        i = next(n for n, line in enumerate(lines) if line.split()[:2] == ["missing", e.id])
        assert lines[i + 1].strip().startswith("required for:")
        named = [f for f in features if f in lines[i + 1]]
        assert named and set(named) <= set(e.purpose) | {"mapper:*"}, (e.id, lines[i + 1])
        assert "license:" in lines[i + 3] and e.license_url in lines[i + 3]
    assert "edit        not ready" in out and "--all-required" in out


def test_list_json_and_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--models-dir", str(tmp_path), "models", "list", "--json")
    data = json.loads(out)
    assert code == 0 and data["features"]["edit"]["ready"] is False
    assert data["models"]["yunet"]["state"] == "missing"
    code, out, _ = run(capsys, "--models-dir", str(tmp_path / "m"), "models", "path")
    assert code == 0 and out.strip() == str(tmp_path / "m")


def test_download_records_hash_then_reuses(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    body = npy_bytes()
    route = server.add("/fs3.npy", body)
    cat = write_catalog(tmp_path / "c.toml", [{
        "id": "fs3-ffhq", "title": "fs3", "group": "directions", "purpose": ["directions"], "required": True,
        "format": "fs3-npy", "filename": "fs3-ffhq.npy", "license": "MIT", "license_url": "http://127.0.0.1/license",
        "url": server.url("/fs3.npy")}])
    monkeypatch.setenv("STYLECLIP_CATALOG", str(cat))
    models = tmp_path / "models"
    code, out, err = run(capsys, "--models-dir", str(models), "models", "download", "--all-required")
    assert code == 0, err
    assert "fs3-ffhq: downloaded" in out
    digest = hashlib.sha256(body).hexdigest()
    label = server.label("/fs3.npy")
    assert f"no published checksum; recorded sha256 {digest} (from {label}) for future checks" in err
    assert (models / "fs3-ffhq.npy").read_bytes() == body
    known = store.read_known_hashes(models)["fs3-ffhq"]
    assert known.sha256 == digest and dict(known.by_source) == {label: digest}
    code, out, err = run(capsys, "--models-dir", str(models), "models", "download", "fs3-ffhq")
    assert code == 0 and "already present" in out and route.sent == len(body)
    code, _, err = run(capsys, "--models-dir", str(models), "models", "download", "--all-required")
    assert code == 0 and "already present" in err
    code, out, _ = run(capsys, "--models-dir", str(models), "models", "verify")
    assert code == 0 and "fs3-ffhq: ok" in out
    (models / "fs3-ffhq.npy").write_bytes(npy_bytes(seed=1))  # same size, other bytes
    code, out, err = run(capsys, "--models-dir", str(models), "models", "verify")
    assert code == 1 and "fs3-ffhq: CORRUPT" in out and "damaged" in err


def test_download_of_the_wrong_content_is_quarantined(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      server: FileServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server.add("/fs3.npy", b"<not a numpy file>" * 100)
    cat = write_catalog(tmp_path / "c.toml", [{
        "id": "fs3-ffhq", "title": "fs3", "group": "directions", "format": "fs3-npy",
        "filename": "fs3-ffhq.npy", "license": "MIT", "license_url": "http://127.0.0.1/license",
        "url": server.url("/fs3.npy")}])
    monkeypatch.setenv("STYLECLIP_CATALOG", str(cat))
    models = tmp_path / "models"
    code, _, err = run(capsys, "--models-dir", str(models), "models", "download", "fs3-ffhq")
    assert code == 1 and "not the expected file" in err and "quarantine" in err
    assert not (models / "fs3-ffhq.npy").exists() and any((models / "quarantine").iterdir())
    code, _, err = run(capsys, "--models-dir", str(models), "models", "download")
    assert code == 2 and "--all-required" in err
    code, _, err = run(capsys, "--models-dir", str(models), "models", "download", "nope")
    assert code == 1 and "unknown model 'nope'" in err


def test_import_and_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           synthetic_models: dict[str, Path]) -> None:
    models = tmp_path / "models"
    src = tmp_path / "definitely-not-a-generator.txt"
    src.write_bytes(synthetic_models["stylegan2-tf-pkl"].read_bytes())
    code, out, err = run(capsys, "--models-dir", str(models), "models", "import", str(src))
    assert code == 0, err
    assert out.startswith("stylegan2-ffhq-tf: copied") and "recorded sha256" in err
    code, out, _ = run(capsys, "--models-dir", str(models), "models", "import", str(src), "--link")
    assert code == 0 and "already present" in out
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"nothing")
    code, _, err = run(capsys, "--models-dir", str(models), "models", "import", str(junk))
    assert code == 1 and "not a model file this app recognises" in err
    code, out, _ = run(capsys, "--models-dir", str(models), "models", "list")
    assert "present  stylegan2-ffhq-tf" in out
    code, out, _ = run(capsys, "--models-dir", str(models), "models", "verify", "stylegan2-ffhq-tf", "yunet")
    assert code == 0 and "stylegan2-ffhq-tf: ok" in out and "yunet: missing" in out


def test_synthesize_writes_a_models_directory_that_says_it_is_synthetic(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "s"
    code, out, err = run(capsys, "models", "synthesize", "--out", str(out_dir), "--resolution", "32")
    assert code == 0
    written = dict(line.split("\t") for line in out.splitlines())
    assert {"stylegan2-ffhq-ada", "clip-vit-b-32", "e4e-ffhq", "arcface-ir-se50", "mapper-afro", "fs3",
            "stats"} <= set(written)
    assert all(Path(p).is_file() for p in written.values())
    assert SYNTHETIC_NOTE in err
    code, out, _ = run(capsys, "--models-dir", str(out_dir), "models", "list")
    assert code == 0 and "This is a synthetic models directory" in out
    assert "present  stylegan2-ffhq-ada  SYNTHETIC: Synthetic StyleGAN2 generator, 32 px" in out
    catalog = load_catalog()
    for model_id in ("stylegan2-ffhq-ada", "clip-vit-b-32", "e4e-ffhq", "arcface-ir-se50", "mapper-afro"):
        assert catalog.get(model_id).title not in out  # never the official file's name
    assert "edit        ready" in out and "directions  ready" in out
    code, out, _ = run(capsys, "--models-dir", str(out_dir), "models", "list", "--json")
    data = json.loads(out)
    assert data["models"]["e4e-ffhq"]["synthetic"] and data["models"]["yunet"]["synthetic"] is None
    # a real file put in place of a synthetic one is no longer called synthetic
    (out_dir / "mapper-afro.pt").write_bytes((out_dir / "mapper-afro.pt").read_bytes() + b"\0")
    code, out, _ = run(capsys, "--models-dir", str(out_dir), "models", "list")
    assert "SYNTHETIC: Synthetic latent mapper" not in out and "Latent mapper: afro" in out
    code, _, err = run(capsys, "models", "synthesize", "--out", str(tmp_path / "s2"), "--resolution", "48")
    assert code == 1 and "power of two" in err
