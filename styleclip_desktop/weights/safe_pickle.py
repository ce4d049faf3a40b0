"""Reading NVIDIA's pickled checkpoints without running anything inside them.

NVIDIA's `.pkl` files rebuild their network classes from Python source stored in the
file: plain `pickle.load` executes that source. Here every global a pickle asks for is
looked up in an allow-list; the persistent-class hook and the TensorFlow network class
are replaced by inert stand-ins that only keep the data (tensors, arrays, constructor
kwargs). Anything else is refused before it is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from styleclip_desktop.errors import ModelFileError, UnsafePickleError


class PersistentObject:
    """Stand-in for an object of a class whose source code travels in the pickle."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.class_name = str(meta.get("class_name", "?"))
        self.module_src_len = len(str(meta.get("module_src", "")))
        state = meta.get("state") or {}
        self.state: dict[str, Any] = dict(state) if isinstance(state, dict) else {}

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kw = self.state.get("_init_kwargs") or {}
        return dict(kw)

    def tensors(self, prefix: str = "") -> dict[str, Any]:
        """Flatten parameters and buffers like `nn.Module.state_dict()` would."""
        out: dict[str, Any] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                out.update(child.tensors(f"{prefix}{name}."))
        return out


class TFNetworkStub(dict):  # type: ignore[type-arg]
    """Stand-in for dnnlib.tflib.network.Network: keeps its pickled state as a dict."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state)


class EasyDictStub(dict):  # type: ignore[type-arg]
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""


def _reconstruct_persistent(meta: dict[str, Any]) -> PersistentObject:
    if not isinstance(meta, dict):
        raise UnsafePickleError("malformed persistent object in the checkpoint")
    return PersistentObject(meta)


def _load_storage_bytes(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _rebuild_parameter(data: Any, requires_grad: bool, backward_hooks: Any, *state: Any) -> Any:
    return data


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> Any:
    import torch._utils

    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # type: ignore[attr-defined]
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined,no-redef]
    return _reconstruct  # type: ignore[no-any-return]


def _numpy_scalar() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import scalar  # type: ignore[attr-defined]
    except ImportError:
        from numpy.core.multiarray import scalar  # type: ignore[attr-defined,no-redef]
    return scalar  # type: ignore[no-any-return]


def _numpy_frombuffer() -> Callable[..., Any]:
    def frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        arr = np.frombuffer(buf, dtype=dtype)
        return arr.reshape(shape, order="F" if order == "F" else "C").copy()

    return frombuffer


# Pickle protocols < 3 have no bytes opcode: they write bytes as
# _codecs.encode(<the bytes decoded as latin-1>, "latin1"). Only that exact call is allowed;
# another codec (zlib, bz2, base64, ...) would turn a small pickle into arbitrary work.
_PICKLE_BYTES_CODECS = frozenset({"latin1", "latin-1"})


def _encode_latin1(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if not isinstance(obj, str) or encoding not in _PICKLE_BYTES_CODECS or errors != "strict":
        raise UnsafePickleError(
            f"refused to load: the file asks for _codecs.encode with codec {encoding!r}; model files only "
            "use it to store bytes as latin-1. Nothing from it was run."
        )
    return obj.encode("latin-1")


def _torch_attr(name: str) -> Callable[[], Any]:
    def get() -> Any:
        import torch

        return getattr(torch, name)

    return get


def _allowed() -> dict[tuple[str, str], Callable[[], Any]]:
    """(module, name) -> factory returning the object to use. Factories defer imports."""
    table: dict[tuple[str, str], Callable[[], Any]] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): lambda: _reconstruct_persistent,
        ("dnnlib.tflib.network", "Network"): lambda: TFNetworkStub,
        ("dnnlib.util", "EasyDict"): lambda: EasyDictStub,
        ("dnnlib", "EasyDict"): lambda: EasyDictStub,
        ("torch.storage", "_load_from_bytes"): lambda: _load_storage_bytes,
        ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter,
        ("collections", "OrderedDict"): lambda: collections.OrderedDict,
        ("builtins", "set"): lambda: set,
        # Protocol-2 pickles name builtins by their Python 2 module; pickle's own find_class
        # would translate it, but ours sees the raw name.
        ("__builtin__", "set"): lambda: set,
        ("_codecs", "encode"): lambda: _encode_latin1,
        ("builtins", "frozenset"): lambda: frozenset,
        ("builtins", "slice"): lambda: slice,
        ("builtins", "complex"): lambda: complex,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _numpy_reconstruct
        table[(mod, "scalar")] = _numpy_scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numpy_frombuffer
    for mod in ("torch", "torch.cuda"):
        for kind in ("Float", "Half", "Double", "Long", "Int", "Bool", "Byte", "BFloat16"):
            table[(mod, f"{kind}Storage")] = _torch_attr(f"{kind}Storage")
    return table


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        factory = self._table.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"refused to load: the file asks for '{module}.{name}', which a model file never needs. "
                "Nothing from it was run. Download the model again from its official source."
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused to load: unexpected persistent reference in a plain pickle")


def restricted_load(file: IO[bytes]) -> Any:
    try:
        return RestrictedUnpickler(file).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RuntimeError, MemoryError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"the checkpoint is damaged or truncated ({type(exc).__name__}: {exc})") from exc


def pickle_globals(data: bytes | IO[bytes], limit: int = 200_000) -> set[tuple[str, str]]:
    """The (module, name) pairs a pickle stream refers to, found without unpickling.

    Reads at most `limit` opcodes; enough to see the classes near the top of a file.
    """
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    found: set[tuple[str, str]] = set()
    strings: list[str] = []
    try:
        for i, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
            if i >= limit:
                break
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                mod, _, name = arg.partition(" ")
                found.add((mod, name))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
                strings = strings[-2:]
            elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                found.add((strings[0], strings[1]))
    except Exception:  # a truncated stream still tells us what it referred to so far
        pass
    return found
