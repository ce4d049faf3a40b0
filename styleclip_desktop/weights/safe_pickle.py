"""Reading NVIDIA's pickled checkpoints without running anything inside them.

NVIDIA's `.pkl` files rebuild their network classes from Python source stored in the
file: plain `pickle.load` executes that source. Here every global a pickle asks for is
looked up in an allow-list; the persistent-class hook and the TensorFlow network class
are replaced by inert stand-ins that only keep the data (tensors, arrays, constructor
kwargs). Anything else is refused before it is called.

Nothing a file declares is allocated before it is checked against the bytes the file
really holds: every length-prefixed opcode is measured against what is left of the file
before the C unpickler (which allocates first and reads after) sees it; numpy arrays,
dtypes and torch storages are rebuilt by guarded stand-ins that compare the declared
shape with the data present; tensors may not claim more elements than their storage.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import struct
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from styleclip_desktop.errors import ModelFileError, UnsafePickleError, UserError
from styleclip_desktop.nets.checkpoint import MALFORMED, check_pickle_lengths, describe, one_line

# NVIDIA's generator nests its modules about 5 deep; anything near this is crafted (or a cycle).
MAX_MODULE_DEPTH = 64
# numpy's pickles reconstruct an empty (0,) array and then fill it from BUILD's data; a
# bigger placeholder would be allocated with nothing behind it.
_MAX_PLACEHOLDER_BYTES = 1024
_MAX_NDIM = 32
_MAX_ITEMSIZE = 1024
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_TORCH_PROTOCOL = 1001

_STORAGE_DTYPES = ("Float", "Half", "Double", "Long", "Int", "Short", "Char", "Bool", "Byte", "BFloat16")


def _damaged(what: str) -> ModelFileError:
    return ModelFileError(f"the checkpoint is damaged or crafted: {what}")


class PersistentObject:
    """Stand-in for an object of a class whose source code travels in the pickle."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.class_name = str(meta.get("class_name", "?"))[:100]
        src = meta.get("module_src", "")
        self.module_src_len = len(src) if isinstance(src, str) else 0
        state = meta.get("state") or {}
        self.state: dict[str, Any] = dict(state) if isinstance(state, dict) else {}

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kw = self.state.get("_init_kwargs")
        if kw is None:
            return {}
        if not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw):
            raise _damaged(f"the {self.class_name}'s constructor arguments (_init_kwargs) are a "
                           f"{type(kw).__name__}, not a dictionary of names")
        return dict(kw)

    def _group(self, group: str) -> dict[str, Any]:
        entries = self.state.get(group)
        if entries is None:
            return {}
        if not isinstance(entries, dict) or not all(isinstance(k, str) for k in entries):
            raise _damaged(f"the {self.class_name}'s {group} are a {type(entries).__name__}, "
                           "not a dictionary of names")
        return entries

    def tensors(self, prefix: str = "", depth: int = 0) -> dict[str, Any]:
        """Flatten parameters and buffers like `nn.Module.state_dict()` would."""
        if depth > MAX_MODULE_DEPTH:
            raise _damaged(f"its modules nest more than {MAX_MODULE_DEPTH} levels deep (or contain themselves)")
        out: dict[str, Any] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in self._group(group).items():
                if value is not None:
                    out[prefix + name] = value
        for name, child in self._group("_modules").items():
            if isinstance(child, PersistentObject):
                out.update(child.tensors(f"{prefix}{name}.", depth + 1))
        return out


class TFNetworkStub(dict):  # type: ignore[type-arg]
    """Stand-in for dnnlib.tflib.network.Network: keeps its pickled state as a dict."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _damaged(f"a TensorFlow network's state is a {type(state).__name__}, not a dictionary")
        self.update(state)


class EasyDictStub(dict):  # type: ignore[type-arg]
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""


def _reconstruct_persistent(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict):
        raise UnsafePickleError("malformed persistent object in the checkpoint")
    return PersistentObject(meta)


# --- sizes declared against bytes present ----------------------------------------------


def _count(shape: Any, what: str) -> int:
    """The element count of a declared shape, refusing anything that is not a short tuple
    of non-negative ints (computed in Python ints, so it cannot overflow)."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if (not isinstance(shape, tuple | list) or len(shape) > _MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise _damaged(f"{what} has an invalid shape {_short(shape)}")
    return math.prod(shape)


def _short(value: Any) -> str:
    """A declared value for a message, never huge (str() of a 10^5000 int even raises)."""
    if isinstance(value, tuple | list) and len(value) > 8:
        return f"({len(value)} dimensions)"
    try:
        text = repr(value)
    except ValueError:
        return "(an enormous number)"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_dtype(dtype: Any) -> np.dtype:
    """Plain numbers and short strings only: no objects (they would be unpickled), no
    records or sub-arrays (a 'f4 x 10^9' sub-array makes one element 4 GB)."""
    if not isinstance(dtype, np.dtype):
        if not isinstance(dtype, str | bytes):
            raise _damaged(f"an array's element type is a {type(dtype).__name__}")
        try:
            dtype = np.dtype(dtype.decode("latin-1") if isinstance(dtype, bytes) else dtype)
        except (TypeError, ValueError) as exc:
            raise _damaged(f"an array has an invalid element type ({one_line(exc)})") from None
    if (dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None
            or dtype.kind not in "biufcSU" or dtype.itemsize > _MAX_ITEMSIZE):
        raise _damaged(f"an array has element type {dtype.str!r}, which model files do not use")
    return dtype


def _check_data(data: Any, count: int, dtype: np.dtype, what: str) -> None:
    if not isinstance(data, bytes | bytearray):
        raise _damaged(f"{what} holds a {type(data).__name__} where its bytes should be")
    need = count * dtype.itemsize
    if len(data) != need:
        raise _damaged(f"{what} declares {count:,} elements ({need:,} bytes) but holds {len(data):,} bytes")


class _CheckedArray(np.ndarray):
    """What numpy's `_reconstruct` makes here: its BUILD state is checked before numpy
    fills it, so a declared shape must match the bytes that come with it."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _damaged("an array's pickled state is malformed")
        shape, dtype, data = state[-4], state[-3], state[-1]
        dt = _check_dtype(dtype)
        _check_data(data, _count(shape, "an array"), dt, f"an array of shape {_short(shape)}")
        super().__setstate__(state)


def _numpy_module() -> Any:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _numpy_reconstruct() -> Callable[..., Any]:
    real = _numpy_module()._reconstruct

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not np.ndarray:
            raise _damaged("an array of an unexpected class")
        dt = _check_dtype(dtype)
        if _count(shape, "an array") * dt.itemsize > _MAX_PLACEHOLDER_BYTES:
            raise _damaged(f"an array placeholder declares shape {_short(shape)} with no data behind it")
        return real(_CheckedArray, tuple(shape), dt)  # type: ignore[no-any-return]

    return reconstruct


def _numpy_scalar() -> Callable[..., Any]:
    real = _numpy_module().scalar

    def scalar(dtype: Any, obj: Any = None) -> Any:
        dt = _check_dtype(dtype)
        _check_data(obj, 1, dt, "a number")
        return real(dt, obj)

    return scalar


def _numpy_frombuffer() -> Callable[..., Any]:
    def frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        dt = _check_dtype(dtype)
        count = _count(shape, "an array")
        _check_data(buf, count, dt, f"an array of shape {_short(shape)}")
        arr = np.frombuffer(buf, dtype=dt)
        return arr.reshape(tuple(shape), order="F" if order == "F" else "C").copy()

    return frombuffer


def _numpy_dtype(obj: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(obj, str | bytes):
        raise _damaged(f"an array's element type is a {type(obj).__name__}")
    try:
        # Always a copy: BUILD then sets its state, which must never reach numpy's shared
        # float32 (or other) instance. Its size is checked again where an array uses it,
        # because that BUILD can still change it.
        dt = np.dtype(obj.decode("latin-1") if isinstance(obj, bytes) else obj, bool(align), True)
    except (TypeError, ValueError) as exc:
        raise _damaged(f"an array has an invalid element type ({one_line(exc)})") from None
    return _check_dtype(dt)


# --- torch tensors, without torch.load -------------------------------------------------


class _StorageType:
    """What a storage class such as torch.FloatStorage stands for: only its dtype."""

    def __init__(self, name: str) -> None:
        import torch

        self.name = name
        self.dtype = getattr(torch, {"Float": "float32", "Half": "float16", "Double": "float64",
                                     "Long": "int64", "Int": "int32", "Short": "int16", "Char": "int8",
                                     "Bool": "bool", "Byte": "uint8", "BFloat16": "bfloat16"}[name])

    def __call__(self, data: Any = None) -> Any:
        # Torch before 1.0 pickled a storage as FloatStorage(list of numbers); an int here
        # would instead ask for that many uninitialised elements.
        import torch

        if not isinstance(data, list | tuple) or not all(isinstance(x, int | float) for x in data):
            raise _damaged(f"a {self.name}Storage is built from a {type(data).__name__}, not a list of numbers")
        return torch.tensor(list(data), dtype=self.dtype)


class _StorageRef:
    def __init__(self, kind: _StorageType, key: str, numel: int) -> None:
        self.kind, self.key, self.numel = kind, key, numel


class _StorageBlobUnpickler(pickle.Unpickler):
    """The pickles inside one `torch.storage._load_from_bytes` record (torch's pre-1.6
    format holding a single storage): plain data and storage types only."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("torch", "torch.cuda") and name.endswith("Storage") and name[:-7] in _STORAGE_DTYPES:
            return _StorageType(name[:-7])
        raise UnsafePickleError(f"refused to load: a tensor record asks for '{module}.{name}', which a model "
                                "file never needs. Nothing from it was run.")

    def persistent_load(self, pid: Any) -> Any:
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or isinstance(pid[4], bool) or pid[4] < 0
                or (len(pid) == 6 and pid[5] is not None)):
            raise _damaged("a tensor record has a malformed storage reference")
        return _StorageRef(pid[1], pid[2], pid[4])


def _load_storage_bytes(data: Any) -> Any:
    """A flat tensor from the bytes torch's Storage.__reduce__ wrote: its size is checked
    against the bytes present before anything is allocated."""
    import torch

    if not isinstance(data, bytes | bytearray):
        raise _damaged("a tensor record is not bytes")
    f = io.BytesIO(data)

    def next_pickle() -> Any:
        check_pickle_lengths(f, len(data))
        return _StorageBlobUnpickler(f).load()

    try:
        if next_pickle() != _LEGACY_TORCH_MAGIC or next_pickle() != _LEGACY_TORCH_PROTOCOL:
            raise _damaged("a tensor record is not in PyTorch's storage format")
        info = next_pickle()
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise _damaged("a tensor record is not little-endian")
        ref = next_pickle()
        if not isinstance(ref, _StorageRef) or next_pickle() != [ref.key]:
            raise _damaged("a tensor record holds something other than one storage")
    except UserError:
        raise
    except MALFORMED as exc:
        raise _damaged(f"a tensor record is unreadable ({one_line(exc)})") from None
    head = f.read(8)
    if len(head) != 8 or struct.unpack("<q", head)[0] != ref.numel:
        raise _damaged("a tensor record's size does not match its index")
    itemsize = torch.empty((), dtype=ref.kind.dtype).element_size()
    need, start = ref.numel * itemsize, f.tell()
    if need > len(data) - start:
        raise _damaged(f"a tensor declares {ref.numel:,} elements ({need:,} bytes) but only "
                       f"{len(data) - start:,} bytes are stored")
    if need == 0:
        return torch.empty(0, dtype=ref.kind.dtype)
    return torch.frombuffer(bytearray(memoryview(data)[start:start + need]), dtype=ref.kind.dtype)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *state: Any) -> Any:
    import torch

    if not isinstance(data, torch.Tensor):
        raise _damaged(f"a parameter holds a {type(data).__name__}, not a tensor")
    return data


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> Any:
    """A view of `storage`, refused unless every element it names lies in the storage and
    it names no more elements than the storage holds (no stride-0 expansion)."""
    import torch

    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise _damaged("a tensor has no storage")
    count = _count(size, "a tensor")
    if (not isinstance(offset, int) or isinstance(offset, bool) or offset < 0
            or not isinstance(stride, tuple | list) or len(stride) != len(size)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in stride)):
        raise _damaged(f"a tensor of shape {_short(size)} has an invalid layout")
    if count == 0:
        return torch.empty(tuple(size), dtype=storage.dtype)
    extent = offset + sum((d - 1) * s for d, s in zip(size, stride, strict=True)) + 1
    if count > storage.numel() or extent > storage.numel():
        raise _damaged(f"a tensor declares shape {_short(size)} ({count:,} elements) over a storage of "
                       f"{storage.numel():,}")
    return storage.as_strided(tuple(size), tuple(stride), offset)


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
        ("numpy", "dtype"): lambda: _numpy_dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _numpy_reconstruct
        table[(mod, "scalar")] = _numpy_scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numpy_frombuffer
    for mod in ("torch", "torch.cuda"):
        for kind in _STORAGE_DTYPES:
            table[(mod, f"{kind}Storage")] = lambda kind=kind: _StorageType(kind)  # type: ignore[misc]
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


def _stream_end(file: IO[bytes]) -> int:
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pos = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(pos)
        return end


def restricted_load(file: IO[bytes]) -> Any:
    """Unpickle `file` (seekable) with the allow-list. Every failure is a `ModelFileError`
    with one line saying why; nothing in the file is run."""
    check_pickle_lengths(file, _stream_end(file))
    try:
        return RestrictedUnpickler(file).load()
    except UserError:
        raise
    except MALFORMED as exc:
        raise ModelFileError(f"the checkpoint is damaged or truncated ({describe(exc)})") from None


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
