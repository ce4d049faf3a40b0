"""A rehearsal of a real user's first start: `models download --all-required` into an empty
models directory from the real catalog, every host answering the way it does today (on
127.0.0.1, see real_hosts.py), then editing and exporting a photo with what came down.
Then the same with the first source of each file broken, to show the fall-through.

The files are format-faithful synthetic ones in the official layouts. YuNet is the one
file with a published checksum, which binds every source, so its synthetic stand-in is
refused by all three of its sources: the rehearsal shows that refusal (and the editor
falls back to OpenCV's bundled detector), not a YuNet download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleclip_desktop.cli import main
from styleclip_desktop.weights import store
from styleclip_desktop.weights.catalog import load_catalog

from .real_hosts import RealHosts

pytestmark = pytest.mark.slow


def _yunet_like_onnx() -> bytes:
    """An ONNX model in YuNet's place: its input name and shape, a conv, float weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 3, 7, 7)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["input", "w"], ["cls_8"], strides=[8, 8])
    graph = helper.make_graph([node], "yunet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 3, 640, 640])],
                              [helper.make_tensor_value_info("cls_8", TensorProto.FLOAT, None)], [w])
    return bytes(onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString())


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes each host publishes, by catalog id (and hub file name for CLIP)."""
    from safetensors.torch import load_file

    from styleclip_desktop.render.demo_models import write_demo_models
    from styleclip_desktop.weights.formats import load_generator
    from styleclip_desktop.weights.synthetic import write_rosinality_pt, write_tf_pkl

    src = tmp_path_factory.mktemp("published")
    written = write_demo_models(src, resolution=32, seed=3)
    G = load_generator(written["stylegan2-ffhq-ada"])
    files = {k: written[k].read_bytes() for k in ("stylegan2-ffhq-ada", "e4e-ffhq", "arcface-ir-se50",
                                                  "mapper-afro")}
    files["stylegan2-ffhq-tf"] = write_tf_pkl(G, src / "tf.pkl").read_bytes()
    files["stylegan2-ffhq-rosinality"] = write_rosinality_pt(G, src / "legacy.pt", legacy=True).read_bytes()
    files["fs3-ffhq"] = written["fs3"].read_bytes()
    files["yunet"] = _yunet_like_onnx()
    files["hub:open_clip_model.safetensors"] = written["clip-vit-b-32"].read_bytes()
    torch.save(load_file(str(written["clip-vit-b-32"])), src / "open_clip_pytorch_model.bin")
    files["hub:open_clip_pytorch_model.bin"] = (src / "open_clip_pytorch_model.bin").read_bytes()
    return files


@pytest.fixture
def hosts(published: dict[str, bytes]) -> Iterator[RealHosts]:
    with RealHosts() as h:
        h.publish(load_catalog(), {k: v for k, v in published.items() if not k.startswith("hub:")},
                  lfs=("yunet",), hf_files={k[4:]: v for k, v in published.items() if k.startswith("hub:")})
        yield h


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path / "astronaut.jpg"  # NASA's public-domain portrait, shipped with scikit-image
    Image.fromarray(skimage_data.astronaut()).save(path, quality=92)
    return path


def _cli(hosts: RealHosts, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh process, as a user runs it: real environment, no test hooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STYLECLIP_", "HF_"))}
    env.update(STYLECLIP_DOWNLOAD_MIRROR=hosts.mirror, HF_ENDPOINT=hosts.hf_endpoint,
               HF_HUB_CACHE=str(tmp / "hub"), HF_HUB_DISABLE_TELEMETRY="1",
               STYLECLIP_CACHE_DIR=str(tmp / "cache"), STYLECLIP_DATA_DIR=str(tmp / "data"),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run([sys.executable, "-m", "styleclip_desktop", "--models-dir", str(tmp / "models"), *args],
                          env=env, capture_output=True, text=True, timeout=600)


def _edit_and_export(tmp: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the user does next, with only `--models-dir` (CLIP is found in the hub cache)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp / "hub"))
    base = ["--models-dir", str(tmp / "models")]
    project, still = tmp / "me.scproj", tmp / "me.png"
    assert main([*base, "edit", str(photo), "--target", "a smiling face", "--alpha", "3", "-o", str(project)]) == 0
    assert main([*base, "export", str(project), "-o", str(still)]) == 0
    out = np.asarray(Image.open(still))
    assert out.shape == np.asarray(Image.open(photo)).shape  # pasted back into the whole photo


def _yunet_refused_everywhere(err: str) -> None:
    lines = err[err.index("every source for YuNet"):].splitlines()
    assert "(3 tried)" in lines[0]
    assert [line.split(":")[0].strip() for line in lines[1:4]] == [
        "huggingface.co", "github.com", "media.githubusercontent.com"]


def _exercised(hosts: RealHosts) -> dict[str, tuple[int, int]]:
    return {k: (c.requests, c.served) for k, c in hosts.copies.items() if c.requests}


def test_first_start_from_the_real_hosts(hosts: RealHosts, published: dict[str, bytes], photo: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = _cli(hosts, tmp_path, "models", "download", "--all-required")
    assert r.returncode == 1, r.stderr
    assert "1 of 5 downloads failed: yunet" in r.stderr, r.stderr
    _yunet_refused_everywhere(r.stderr)
    models = tmp_path / "models"
    catalog = load_catalog()
    for model_id in ("stylegan2-ffhq-ada", "e4e-ffhq", "fs3-ffhq"):
        assert (models / catalog.get(model_id).filename).read_bytes() == published[model_id]
    hub = list((tmp_path / "hub").glob("models--timm--vit_base_patch32_clip_224.openai/snapshots/*/*"))
    assert [p.name for p in hub] == ["open_clip_model.safetensors"]
    assert hub[0].read_bytes() == published["hub:open_clip_model.safetensors"]
    known = store.read_known_hashes(models)
    assert set(known["e4e-ffhq"].by_source) == {"gdrive:1cUv_reLE6k3604or78EranS7XzuVMWeO"}
    assert set(known["fs3-ffhq"].by_source) == {
        "github.com/orpatashnik/StyleCLIP/raw/f87a47f7fc39e19a1f6c88293875692b303bf168/global_torch/npy/ffhq/fs3.npy"}
    r = _cli(hosts, tmp_path, "models", "download", "stylegan2-ffhq-tf", "stylegan2-ffhq-rosinality",
             "arcface-ir-se50", "mapper-afro")
    assert r.returncode == 0, r.stderr
    r = _cli(hosts, tmp_path, "models", "list", "--json")
    states = {k: v["state"] for k, v in json.loads(r.stdout)["models"].items()}
    assert [k for k, v in states.items() if v == "present"] == [
        "stylegan2-ffhq-ada", "stylegan2-ffhq-tf", "stylegan2-ffhq-rosinality", "clip-vit-b-32", "e4e-ffhq",
        "fs3-ffhq", "arcface-ir-se50", "mapper-afro"]
    r = _cli(hosts, tmp_path, "models", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    print("\nexercised (requests, bodies served):", json.dumps(_exercised(hosts), indent=1))
    _edit_and_export(tmp_path, photo, monkeypatch)


def test_first_start_with_the_first_source_of_each_file_broken(
        hosts: RealHosts, published: dict[str, bytes], photo: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog()

    def first(model_id: str) -> str:
        return catalog.get(model_id).download_sources[0].url

    hosts.copy_for(first("stylegan2-ffhq-ada")).mode = "truncated"  # its only source: the TF pickle stands in
    hosts.copies["huggingface.co/timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors"].mode = "missing"
    hosts.copy_for(first("e4e-ffhq")).mode = "quota"
    hosts.copy_for(first("fs3-ffhq")).mode = "pointer"
    hosts.copy_for(first("yunet")).mode = "wrong"
    hosts.copy_for(catalog.get("yunet").download_sources[1].url).mode = "pointer"
    r = _cli(hosts, tmp_path, "models", "download", "--all-required")
    assert r.returncode == 1, r.stderr
    assert "1 of 5 downloads failed: yunet" in r.stderr, r.stderr
    _yunet_refused_everywhere(r.stderr)
    assert "trying stylegan2-ffhq-tf, which stands in for it" in r.stderr
    models = tmp_path / "models"
    assert not (models / "ffhq.pkl").exists()
    assert (models / "stylegan2-ffhq-config-f.pkl").read_bytes() == published["stylegan2-ffhq-tf"]
    assert (models / "e4e_ffhq_encode.pt").read_bytes() == published["e4e-ffhq"]
    assert (models / "fs3-ffhq.npy").read_bytes() == published["fs3-ffhq"]
    hub = list((tmp_path / "hub").glob("models--timm--vit_base_patch32_clip_224.openai/snapshots/*/*"))
    assert [p.name for p in hub] == ["open_clip_pytorch_model.bin"]
    known = store.read_known_hashes(models)
    assert set(known["e4e-ffhq"].by_source) == {"gdrive:1O8OLrVNOItOJoNGMyQ8G8YRTeTYEfs0P"}
    assert set(known["fs3-ffhq"].by_source) == {
        "raw.githubusercontent.com/orpatashnik/StyleCLIP/f87a47f7fc39e19a1f6c88293875692b303bf168/global_torch/npy/ffhq/fs3.npy"}
    quarantined = sorted(p.name.split(".")[0] for p in (models / "quarantine").iterdir())
    assert quarantined == ["face_detection_yunet_2023mar"] * 3 + ["ffhq", "fs3-ffhq"]
    print("\nexercised (requests, bodies served):", json.dumps(_exercised(hosts), indent=1))
    _edit_and_export(tmp_path, photo, monkeypatch)
