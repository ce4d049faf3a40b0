"""Building and loading generators: the tensor list from the config alone, loads without copies."""

import subprocess
import sys

import pytest
import torch

from styleclip_desktop.nets.stylegan2 import EqualLinear, Generator, GeneratorConfig, state_shapes
from styleclip_desktop.weights.synthetic import tiny_config


@pytest.mark.parametrize("config", [
    tiny_config(16), tiny_config(32),
    GeneratorConfig(resolution=64, z_dim=64, w_dim=32, mapping_layers=2, channel_base=256, channel_max=48,
                    img_channels=1),
    GeneratorConfig(resolution=32, channels=((4, 24), (8, 20), (16, 12), (32, 8)), w_dim=16, z_dim=16),
])
def test_state_shapes_list_every_tensor_in_order_with_its_shape(config: GeneratorConfig) -> None:
    built = {k: tuple(v.shape) for k, v in Generator(config).state_dict().items()}
    assert state_shapes(config) == built


def test_a_loaded_generator_uses_the_checked_tensors_themselves() -> None:
    from styleclip_desktop.weights.formats import build_generator

    config = tiny_config(16)
    source = Generator(config)
    sd = {k: v.clone() for k, v in source.state_dict().items()}
    G = build_generator(sd, config)
    assert G.convs[1].weight.data_ptr() == sd["convs.1.weight"].data_ptr()  # no second copy
    for k, v in G.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k


def test_half_precision_tensors_are_widened_on_load() -> None:
    from styleclip_desktop.weights.formats import build_generator

    config = tiny_config(16)
    sd = {k: v.half() for k, v in Generator(config).state_dict().items()}
    G = build_generator(sd, config)
    assert all(p.dtype == torch.float32 for p in G.parameters())
    assert torch.equal(G.const, sd["const"].float())


def test_seeded_weights_do_not_change_with_the_loading_path() -> None:
    torch.manual_seed(3)
    a = Generator(tiny_config(16)).state_dict()
    torch.manual_seed(3)
    layer = EqualLinear(512, 512, lr_mul=0.01)
    torch.manual_seed(3)
    assert torch.equal(layer.weight, torch.randn(512, 512) / 0.01)
    torch.manual_seed(3)
    b = Generator(tiny_config(16)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_size_check_on_the_meta_device_stays_cheap() -> None:
    """A mapper's size check builds it without storage; random draws or out-of-place ops
    there would load torch's symbolic-shape machinery (seconds and ~150 MB on first use)."""
    code = ("import sys, torch\n"
            "from styleclip_desktop.nets.mapper import SubMapper\n"
            "from styleclip_desktop.nets.stylegan2 import Generator\n"
            "from styleclip_desktop.weights.synthetic import tiny_config\n"
            "with torch.device('meta'):\n"
            "    SubMapper(512); Generator(tiny_config(16))\n"
            "print('sympy' in sys.modules, 'torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"], out.stderr[-1000:]
