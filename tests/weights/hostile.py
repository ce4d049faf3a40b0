"""Crafted model files: hostile or broken in one way each, small on disk.

Every builder takes a folder and returns the file it wrote there. Sizes that would
exhaust memory are only declared (a header, a length, a shape); the bytes behind them
are a hundred or so. `CASES` lists them all with the CLI path that reads each one.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
from styleclip_desktop.weights import synthetic

HUGE = 10**12  # elements: 4 TB of float32
MARKER = "pwned"  # a file the crafted payloads would create if anything ever ran them


def small_generator() -> Generator:
    """Smaller than synthetic's tiny generator (z/w 32, 8 px), so a crafted file is ~60 KB."""
    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=32, w_dim=32, resolution=8, mapping_layers=2, channel_base=128, channel_max=16)
    return Generator(cfg).eval().requires_grad_(False)


class Reduce:
    """Pickles as `fn(*args)` (then BUILD `state`, if given): how a crafted pickle calls things."""

    def __init__(self, fn: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _system(folder: Path) -> Reduce:
    return Reduce(os.system, (f"touch {folder / MARKER}",))


def _fake() -> Any:
    return synthetic._fake_modules({
        "torch_utils": {}, "torch_utils.persistence": {"_reconstruct_persistent_obj": synthetic._reconstruct_persistent_obj},
        "dnnlib": {}, "dnnlib.util": {"EasyDict": synthetic.EasyDict}})


def _module(obj: Any, *path: str) -> dict[str, Any]:
    """The pickled state of a nested module of a synthetic `_Persistent` generator."""
    for name in path:
        obj = obj.state["_modules"][name]
    return obj.state  # type: ignore[no-any-return]


def _deep(fn: Callable[[], Any]) -> Any:
    """fn() for nests thousands deep: picklers recurse per level, so it runs in a thread
    with a large stack and a raised recursion limit."""
    import sys
    import threading

    out: list[Any] = []
    limit = sys.getrecursionlimit()
    old_stack = threading.stack_size(512 << 20)
    try:
        sys.setrecursionlimit(100_000)
        t = threading.Thread(target=lambda: out.append(fn()))
        t.start()
        t.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(limit)
    return out[0]


def _deep_dump(obj: Any, protocol: int) -> bytes:
    return _deep(lambda: pickle.dumps(obj, protocol=protocol))  # type: ignore[no-any-return]


def ada(path: Path, edit: Callable[[Any], None] | None = None, extra: dict[str, Any] | None = None,
        protocol: int = 4) -> Path:
    """An NVIDIA stylegan2-ada pickle of `small_generator`, its G_ema edited by `edit`,
    with `extra` entries after G_ema."""
    g = synthetic._ada_generator_object(small_generator())
    if edit is not None:
        edit(g)
    with _fake():
        path.write_bytes(_deep_dump({"G_ema": g, **(extra or {})}, protocol))
    return path


def _tf(path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A TensorFlow (G, D, Gs) pickle of `small_generator`, Gs's state changed by `edit`."""
    G = small_generator()
    cfg = G.config
    mapping_vars, synth_vars = synthetic.tf_variables(G)
    kwargs = {"num_channels": 3, "resolution": cfg.resolution, "label_size": 0}

    def g_net(name: str) -> Any:
        return synthetic._tf_net(name, "G_main", [("dlatent_avg", G.w_avg.numpy().astype(np.float32))], {
            "mapping": synthetic._tf_net("G_mapping", "G_mapping", mapping_vars),
            "synthesis": synthetic._tf_net("G_synthesis", "G_synthesis_stylegan2", synth_vars,
                                           static_kwargs=dict(kwargs)),
        }, kwargs)

    gs = g_net("Gs")
    if edit is not None:
        edit(gs._state)
    with synthetic._fake_modules({"dnnlib": {}, "dnnlib.tflib": {},
                                  "dnnlib.tflib.network": {"Network": synthetic.Network}}):
        path.write_bytes(_deep_dump((g_net("G"), g_net("D"), gs), 4))
    return path


def _splice(data: bytes, placeholder: str, raw: bytes) -> bytes:
    """Protocol-2 pickle `data` with the string `placeholder` replaced by the opcodes `raw`."""
    encoded = placeholder.encode()
    op = b"X" + len(encoded).to_bytes(4, "little") + encoded
    assert data.count(op) == 1
    return data.replace(op, raw)


def _storage_blob(numel: int, data: bytes, payload: Any = None) -> bytes:
    """What torch.storage._load_from_bytes reads: torch's pre-1.6 format for one storage,
    declaring `numel` float32 elements, followed by `data`. With `payload`, the storage's
    pickle is `payload` instead."""
    out = io.BytesIO()
    for obj in (torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION,
                {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(obj, out, protocol=2)
    mark = object()

    class P(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is mark else None

    P(out, protocol=2).dump(mark if payload is None else payload)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", numel) + data)
    return out.getvalue()


def _tensor(storage: Any, size: tuple[int, ...], stride: tuple[int, ...]) -> Reduce:
    return Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, size, stride, False, collections.OrderedDict()))


def _stored(blob: bytes) -> Reduce:
    return Reduce(torch.storage._load_from_bytes, (blob,))


def _set_param(g: Any, value: Any, *path: str, name: str = "weight") -> None:
    _module(g, *path)["_parameters"][name] = value


def _raw_ada(tail: bytes) -> bytes:
    """A pickle that starts as NVIDIA's do (the persistent-class global), then `tail`."""
    mod, name = b"torch_utils.persistence", b"_reconstruct_persistent_obj"
    return (b"\x80\x04\x8c" + bytes([len(mod)]) + mod + b"\x8c" + bytes([len(name)]) + name + b"\x93\x94" + tail)


def _npy(path: Path, shape: tuple[int, ...], data: bytes, descr: str = "<f4") -> Path:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(data)
    return path


def _safetensors(path: Path, header: bytes, data: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _clip_header(offsets: list[tuple[int, int]]) -> bytes:
    names = ["visual.conv1.weight", "token_embedding.weight"]
    shapes = [[64, 3, 8, 8], [49408, 64]]
    return json.dumps({n: {"dtype": "F32", "shape": s, "data_offsets": list(o)}
                       for n, s, o in zip(names, shapes, offsets, strict=True)}).encode()


def _rezip(src: Path, dst: Path, edit: Callable[[bytes], bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, edit(data) if name.endswith("data.pkl") else data)
    return dst


def _numel_after_cpu(pkl: bytes, numel: int) -> bytes:
    """`pkl` with the storage element count written after the 'cpu' location replaced."""
    ops = list(pickletools.genops(pkl))
    for i, (_op, arg, _pos) in enumerate(ops):
        if arg == "cpu":
            j = i + 1
            while ops[j][0].name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
                j += 1
            start = ops[j][2]
            end = ops[j + 1][2]
            assert ops[j][0].name in ("BININT1", "BININT2", "BININT")
            return pkl[:start] + b"\x8a\x06" + numel.to_bytes(6, "little") + pkl[end:]
    raise AssertionError("no storage record in this pickle")


# --- builders -------------------------------------------------------------------------


def ada_os_system(d: Path) -> Path:
    return ada(d / "ffhq.pkl", extra={"augment_pipe": _system(d)})


def tf_os_system(d: Path) -> Path:
    return _tf(d / "tf.pkl", lambda gs: gs.__setitem__("build_module_src", _system(d)))


def ada_nested_torch_os_system(d: Path) -> Path:
    blob = _storage_blob(4, bytes(16), payload=_system(d))
    return ada(d / "nested.pkl", lambda g: _set_param(g, _tensor(_stored(blob), (4,), (1,)), "mapping", "fc0"))


def safetensors_offsets_past_the_end(d: Path) -> Path:
    return _safetensors(d / "clip.safetensors", _clip_header([(0, 49152), (49152, 49152 + 49408 * 256)]), bytes(100))


def safetensors_offsets_overlap(d: Path) -> Path:
    header = json.dumps({"visual.conv1.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                         "token_embedding.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})
    return _safetensors(d / "clip.safetensors", header.encode(), bytes(16))


def torch_zip_os_system(d: Path) -> Path:
    path = d / "mapper-afro.pt"
    torch.save({"state_dict": {"mapper.course_mapping.mapping.1.weight": torch.zeros(2)},
                "opts": _system(d)}, path)
    return path


def ada_numpy_reconstruct_huge(d: Path) -> Path:
    from numpy._core.multiarray import _reconstruct

    arr = Reduce(_reconstruct, (np.ndarray, (HUGE,), b"f"))
    return ada(d / "np-reconstruct.pkl", lambda g: _set_param(g, arr, "mapping", "fc0"))


def ada_numpy_setstate_huge(d: Path) -> Path:
    from numpy._core.multiarray import _reconstruct

    arr = Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (HUGE,), np.dtype("f4"), False, bytes(100)))
    return ada(d / "np-setstate.pkl", lambda g: _set_param(g, arr, "mapping", "fc0"))


def ada_numpy_frombuffer_huge(d: Path) -> Path:
    from numpy._core.numeric import _frombuffer

    arr = Reduce(_frombuffer, (bytes(100), np.dtype("f4"), (HUGE,), "C"))
    return ada(d / "np-frombuffer.pkl", lambda g: _set_param(g, arr, "mapping", "fc0"))


def ada_numpy_subarray_dtype(d: Path) -> Path:
    from numpy._core.multiarray import _reconstruct

    arr = Reduce(_reconstruct, (np.ndarray, (1,), "(1000000000,)f4"))
    return ada(d / "np-subarray.pkl", lambda g: _set_param(g, arr, "mapping", "fc0"))


def ada_torch_storage_huge(d: Path) -> Path:
    tensor = _tensor(_stored(_storage_blob(HUGE, bytes(100))), (HUGE,), (1,))
    return ada(d / "storage.pkl", lambda g: _set_param(g, tensor, "mapping", "fc0"))


def ada_tensor_stride0(d: Path) -> Path:
    tensor = _tensor(_stored(_storage_blob(4, bytes(16))), (10**6, 10**6), (0, 0))
    return ada(d / "stride0.pkl", lambda g: _set_param(g, tensor, "mapping", "fc0"))


def ada_storage_from_int(d: Path) -> Path:
    tensor = _tensor(Reduce(torch.FloatStorage, (HUGE,)), (HUGE,), (1,))
    return ada(d / "storage-int.pkl", lambda g: _set_param(g, tensor, "mapping", "fc0"))


def ada_bytearray8_huge(d: Path) -> Path:
    path = d / "bytearray8.pkl"
    path.write_bytes(_raw_ada(b"\x96" + (2**62).to_bytes(8, "little") + bytes(100) + b"."))
    return path


def ada_binbytes_4gb(d: Path) -> Path:
    path = d / "binbytes.pkl"
    path.write_bytes(_raw_ada(b"B" + (2**32 - 1).to_bytes(4, "little") + bytes(100) + b"."))
    return path


def ada_frame_huge(d: Path) -> Path:
    path = d / "frame.pkl"
    path.write_bytes(_raw_ada(b"\x95" + (2**40).to_bytes(8, "little") + bytes(100) + b"."))
    return path


def ada_z_dim_too_large(d: Path) -> Path:
    big = torch.zeros(32, 5000)  # 640 KB of real data: a z dimension of 5000
    return ada(d / "zdim.pkl", lambda g: _set_param(g, big, "mapping", "fc0"))


def ada_claimed_channels(d: Path) -> Path:
    # The 8 px toRGB claims 4096 input channels (a small tensor); the generator built from
    # that claim would need 600 MB of convolutions the file does not have.
    claim = torch.zeros(3, 4096, 1, 1)
    return ada(d / "channels.pkl", lambda g: _set_param(g, claim, "synthesis", "b8", "torgb"))


def rosinality_stride0(d: Path) -> Path:
    path = d / "rosinality.pt"
    sd = synthetic.rosinality_state_dict(small_generator())
    sd["style.1.weight"] = torch.zeros(1).expand(10**6, 10**6)
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(32)}, path)
    return path


def torch_zip_short_record(d: Path) -> Path:
    src = d / "ok.pt"
    sd = synthetic.rosinality_state_dict(small_generator())
    torch.save({"g_ema": {"input.input": sd["input.input"], "style.1.weight": torch.zeros(4)}}, src)
    out = _rezip(src, d / "short.pt", lambda pkl: _numel_after_cpu(pkl, HUGE))
    src.unlink()
    return out


def legacy_torch_huge_numel(d: Path) -> Path:
    path = d / "legacy.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4)}}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    f = io.BytesIO(data)
    for _ in range(3):  # magic, protocol, sys info
        pickle.load(f)
    start = f.tell()
    end = start + max(pos for _op, _arg, pos in pickletools.genops(data[start:])) + 1
    path.write_bytes(data[:start] + _numel_after_cpu(data[start:end], HUGE) + data[end:])
    return path


def fs3_npy_huge_shape(d: Path) -> Path:
    return _npy(d / "fs3.npy", (10**9, 512), bytes(100))


def latent_npy_huge_shape(d: Path) -> Path:
    return _npy(d / "face.npy", (HUGE,), bytes(100))


def latent_npz_two_arrays(d: Path) -> Path:
    path = d / "face.npz"
    np.savez(path, a=np.zeros((8, 32), np.float32), b=np.zeros((8, 32), np.float32))
    return path


def mapper_claimed_width(d: Path) -> Path:
    path = d / "mapper-afro.pt"
    state = {f"mapper.{lvl}.mapping.1.weight": torch.zeros(1, 100_000)
             for lvl in ("course_mapping", "medium_mapping", "fine_mapping")}
    torch.save({"state_dict": state, "opts": {}}, path)
    return path


def clip_claimed_context(d: Path) -> Path:
    from styleclip_desktop.nets.clip import tiny_clip_state_dict

    path = d / "clip.bin"
    sd = tiny_clip_state_dict()
    sd["positional_embedding"] = torch.zeros(5000, sd["positional_embedding"].shape[1])
    torch.save(sd, path)
    return path


def ada_init_kwargs_not_a_dict(d: Path) -> Path:
    return ada(d / "kwargs-list.pkl", lambda g: g.state.__setitem__("_init_kwargs", [1, 2, 3]))


def ada_c_dim_is_a_string(d: Path) -> Path:
    return ada(d / "c-dim.pkl", lambda g: g.state["_init_kwargs"].__setitem__("c_dim", "ten"))


def ada_c_dim_is_enormous(d: Path) -> Path:
    return ada(d / "c-dim-big.pkl", lambda g: g.state["_init_kwargs"].__setitem__("c_dim", 10**5000))


def ada_mapping_kwargs_is_a_string(d: Path) -> Path:
    return ada(d / "mapping-kwargs.pkl", lambda g: g.state["_init_kwargs"].__setitem__("mapping_kwargs", "fast"))


def ada_lr_multiplier_is_a_string(d: Path) -> Path:
    return ada(d / "lr.pkl", lambda g: g.state["_init_kwargs"]["mapping_kwargs"].__setitem__("lr_multiplier", "x"))


def ada_parameters_is_a_list(d: Path) -> Path:
    return ada(d / "params-list.pkl", lambda g: _module(g, "mapping", "fc0").__setitem__("_parameters", [1, 2]))


def ada_tensor_is_a_string(d: Path) -> Path:
    return ada(d / "param-str.pkl", lambda g: _set_param(g, "not a tensor", "mapping", "fc0"))


def ada_modules_nested_2000_deep(d: Path) -> Path:
    def nest(g: Any) -> None:
        inner = _module(g, "mapping", "fc0")
        child = synthetic._Persistent("Deep", {"_modules": {}})
        inner["_modules"] = {"deep": child}
        for _ in range(2000):
            child = synthetic._Persistent("Deep", {"_modules": {"deep": child}})
        inner["_modules"] = {"deep": child}

    return ada(d / "deep.pkl", nest)


def ada_kwargs_nested_lists(d: Path) -> Path:
    """A 100,000-deep nest of lists in the kwargs (written as raw opcodes: MARK ... LIST)."""
    path = ada(d / "deep-list.pkl", lambda g: g.state["_init_kwargs"].__setitem__("extra", "DEEP"), protocol=2)
    n = 100_000
    path.write_bytes(_splice(path.read_bytes(), "DEEP", b"(" * n + b"]" + b"l" * n))
    return path


def ada_complex_overflow(d: Path) -> Path:
    return ada(d / "complex.pkl", extra={"augment_pipe": Reduce(complex, (10**400,))})


def ada_without_g_ema(d: Path) -> Path:
    path = d / "no-g-ema.pkl"
    with _fake():
        path.write_bytes(pickle.dumps({"G": synthetic._ada_generator_object(small_generator())}, protocol=4))
    return path


def tf_variables_not_a_list(d: Path) -> Path:
    return _tf(d / "tf-vars.pkl", lambda gs: gs.__setitem__("variables", 5))


def tf_components_nested_2000_deep(d: Path) -> Path:
    def nest(gs: dict[str, Any]) -> None:
        comp: dict[str, Any] = {"variables": []}
        for _ in range(2000):
            comp = {"variables": [], "components": {"c": comp}}
        gs["components"]["extra"] = comp

    return _tf(d / "tf-deep.pkl", nest)


def rosinality_g_ema_is_a_list(d: Path) -> Path:
    path = d / "g-ema-list.pt"
    torch.save({"g_ema": [torch.zeros(2)], "latent_avg": torch.zeros(32)}, path)
    return path


def mapper_opts_nested_2000_deep(d: Path) -> Path:
    from styleclip_desktop.nets.mapper import LevelsMapper, mapper_file_dict

    opts: dict[str, Any] = {}
    for _ in range(2000):
        opts = {"o": opts}
    data = mapper_file_dict(LevelsMapper(("coarse",)), {})
    data["opts"] = opts
    path = d / "mapper-afro.pt"
    _deep(lambda: torch.save(data, path))
    return path


def safetensors_deep_json(d: Path) -> Path:
    header = b'{"visual.conv1.weight": ' + b"[" * 200_000 + b"]" * 200_000 + b', "token_embedding.weight": 1}'
    return _safetensors(d / "deep.safetensors", header, bytes(8))


def safetensors_non_object_entries(d: Path) -> Path:
    header = b'{"visual.conv1.weight": 5, "token_embedding.weight": "x", "__metadata__": [1]}'
    return _safetensors(d / "entries.safetensors", header, bytes(8))


def onnx_external_data(d: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((1, 4), np.float32), "secret")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    pad = numpy_helper.from_array(np.zeros((64, 3, 7, 7), np.float32), "pad")  # YuNet-sized file
    node = helper.make_node("Add", ["input", "secret"], ["out"])
    graph = helper.make_graph([node], "yunet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], [w, pad])
    path = d / "face_detection_yunet_2023mar.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    kind: str  # "trust", "bounded" or "clean": the audit's classes
    via: str  # the CLI path: "import" (models import), "generator" (edit --generator), "latent" (edit SOURCE)
    huge: bool = False  # declares a size that would exhaust memory if believed
    loads: bool = False  # odd but harmless: it must load, without a traceback

    @property
    def name(self) -> str:
        return self.build.__name__


CASES: tuple[Case, ...] = (
    Case(ada_os_system, "trust", "import"),
    Case(tf_os_system, "trust", "import"),
    Case(ada_nested_torch_os_system, "trust", "import"),
    Case(safetensors_offsets_past_the_end, "trust", "import"),
    Case(safetensors_offsets_overlap, "trust", "import"),
    Case(torch_zip_os_system, "trust", "import"),
    Case(ada_numpy_reconstruct_huge, "bounded", "import", huge=True),
    Case(ada_numpy_setstate_huge, "bounded", "import", huge=True),
    Case(ada_numpy_frombuffer_huge, "bounded", "import", huge=True),
    Case(ada_numpy_subarray_dtype, "bounded", "import", huge=True),
    Case(ada_torch_storage_huge, "bounded", "import", huge=True),
    Case(ada_tensor_stride0, "bounded", "import", huge=True),
    Case(ada_storage_from_int, "bounded", "import", huge=True),
    Case(ada_bytearray8_huge, "bounded", "import", huge=True),
    Case(ada_binbytes_4gb, "bounded", "import", huge=True),
    Case(ada_frame_huge, "bounded", "import", huge=True),
    Case(ada_z_dim_too_large, "bounded", "generator"),
    Case(ada_claimed_channels, "bounded", "generator", huge=True),
    Case(rosinality_stride0, "bounded", "generator", huge=True),
    Case(torch_zip_short_record, "bounded", "generator", huge=True),
    Case(legacy_torch_huge_numel, "bounded", "generator", huge=True),
    Case(fs3_npy_huge_shape, "bounded", "import", huge=True),
    Case(latent_npy_huge_shape, "bounded", "latent", huge=True),
    Case(mapper_claimed_width, "bounded", "import", huge=True),
    Case(clip_claimed_context, "bounded", "import"),
    Case(ada_init_kwargs_not_a_dict, "clean", "generator"),
    Case(ada_c_dim_is_a_string, "clean", "generator"),
    Case(ada_c_dim_is_enormous, "clean", "generator"),
    Case(ada_mapping_kwargs_is_a_string, "clean", "generator"),
    Case(ada_lr_multiplier_is_a_string, "clean", "generator"),
    Case(ada_parameters_is_a_list, "clean", "generator"),
    Case(ada_tensor_is_a_string, "clean", "generator"),
    Case(ada_modules_nested_2000_deep, "clean", "generator"),
    Case(ada_kwargs_nested_lists, "clean", "generator", loads=True),
    Case(ada_complex_overflow, "clean", "generator"),
    Case(ada_without_g_ema, "clean", "generator"),
    Case(tf_variables_not_a_list, "clean", "generator"),
    Case(tf_components_nested_2000_deep, "clean", "generator"),
    Case(rosinality_g_ema_is_a_list, "clean", "generator"),
    Case(mapper_opts_nested_2000_deep, "clean", "import"),
    Case(safetensors_deep_json, "clean", "import"),
    Case(safetensors_non_object_entries, "clean", "import"),
    Case(latent_npz_two_arrays, "clean", "latent"),
    Case(onnx_external_data, "trust", "import"),
)
