"""The render benchmark's yardstick: NVIDIA's generator gets exactly our weights."""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import reference  # noqa: E402
from styleclip_desktop.nets.stylegan2 import Generator  # noqa: E402
from styleclip_desktop.weights.formats import _ada_to_canonical  # noqa: E402
from styleclip_desktop.weights.synthetic import tiny_config  # noqa: E402


def test_official_names_map_back_to_every_weight_of_ours() -> None:
    G = Generator(tiny_config(32))
    back = _ada_to_canonical(reference.official_state(G))
    ours = {k: v for k, v in G.state_dict().items() if not k.endswith("filter")}
    assert back.keys() == ours.keys()
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def test_without_a_checkout_there_is_no_reference(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(reference.ENV, str(tmp_path))  # a folder without NVIDIA's code
    assert reference.checkout() is None
    assert reference.synthesis(Generator(tiny_config(16))) is None
    monkeypatch.delenv(reference.ENV)
    assert reference.checkout() is None


def test_onnx_runtime_sessions_take_the_settings_asked_for(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from styleclip_desktop.render.backends import OrtSession, OrtSettings

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    options = OrtSession(path, False, OrtSettings(threads=1, arena=False, optimization="basic")).session \
        .get_session_options()
    assert options.intra_op_num_threads == 1 and not options.enable_cpu_mem_arena
    assert str(options.graph_optimization_level).endswith("ORT_ENABLE_BASIC")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = OrtSession(path, False, OrtSettings(spinning=True)).session.get_session_options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    # The product's defaults: no spinning, the arena, and no ahead-planned buffer (about 1 GB at 1024 px).
    default = OrtSession(path, False).session.get_session_options()
    assert default.enable_cpu_mem_arena and not default.enable_mem_pattern
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"
