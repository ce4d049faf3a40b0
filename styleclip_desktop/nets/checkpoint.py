"""Reading PyTorch checkpoint files that may be hostile or broken.

Every loader of a torch file (CLIP, e4e, ArcFace, mappers, rosinality generators, and the
identification of all of them) goes through `torch_load`, so they share one set of rules:

- `weights_only=True`: nothing in the file runs;
- zip files are memory-mapped, so tensor bytes are only paged in when used, and torch
  checks each storage record against the size its index declares before any tensor exists;
- no tensor may claim more elements than its storage holds (a stride-0 "expanded" tensor of
  10^12 elements over 16 bytes would otherwise be materialised by the first `.float()`);
- whatever goes wrong becomes one `ModelFileError` line that names the file. torch's own
  text about turning `weights_only` off is never shown: that advice would disable the
  protection that just refused the file.
"""

from __future__ import annotations

import errno
import os
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import torch

from styleclip_desktop.errors import ModelFileError, UnsafePickleError
from styleclip_desktop.nets import adoption

# What broken or crafted content raises inside loaders that trust its structure: the one
# list every "this file is malformed" handler catches. OSError stays out (a disk problem is
# not a bad file), and so do KeyboardInterrupt and SystemExit.
MALFORMED: tuple[type[BaseException], ...] = (
    ArithmeticError, AssertionError, AttributeError, EOFError, LookupError, MemoryError,
    RuntimeError, SystemError, TypeError, ValueError, pickle.UnpicklingError, struct.error,
    zipfile.BadZipFile,
)

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)



def from_content(exc: OSError) -> bool:
    """An OSError a file's content causes rather than the disk: a zip directory that
    points before the start of the file makes the seek fail with EINVAL."""
    return exc.errno == errno.EINVAL


def is_malformed(exc: BaseException) -> bool:
    """Whether `exc` is what broken or crafted content makes a loader raise."""
    return isinstance(exc, MALFORMED) or (isinstance(exc, OSError) and from_content(exc))


# Nesting deeper than any checkpoint has (a state dict is 2-3 levels, NVIDIA's modules ~8).
MAX_DEPTH = 100

# Sentences of torch's error texts that advise loading with the protection off, or point
# to its documentation: dropped from anything we show.
_ADVICE = ("weights only load failed", "weights_only", "safe_globals", "trusted source", "if you trust",
           "documentation of torch.load", "arbitrary code execution", "pytorch.org")


def one_line(exc: BaseException | str, limit: int = 240) -> str:
    """`exc` as a single line for a user: torch's safety-off advice removed, whitespace
    collapsed, cut at `limit` characters. Empty messages fall back to the type name."""
    text = exc if isinstance(exc, str) else str(exc)
    kept = [s for line in text.splitlines() for s in re.split(r"(?<=[.!?])\s+", line.strip())
            if s and not any(a in s.lower() for a in _ADVICE)]
    text = " ".join(" ".join(kept).split()).strip(" ;:")
    if not text and not isinstance(exc, str):
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def describe(exc: BaseException) -> str:
    """'TypeError: what it said', on one line (just the type when it said nothing)."""
    text = one_line(exc)
    name = type(exc).__name__
    return name if text == name else f"{name}: {text}"


def refused_global(exc: BaseException) -> str | None:
    """The global a weights-only unpickler refused (e.g. 'posix.system'), if that is what
    `exc` reports."""
    m = re.search(r"(?:unsupported|not an allowed)\s+GLOBAL\s+([\w.]+)|GLOBAL\s+([\w.]+)\s+was not an allowed",
                  str(exc), re.IGNORECASE)
    return (m.group(1) or m.group(2)) if m else None


def load_error(name: str, exc: BaseException, what: str = "model file") -> ModelFileError:
    """The one-line error for a torch file that failed to load."""
    ref = refused_global(exc)
    if ref is not None:
        return UnsafePickleError(f"{name} asks to run '{ref}', which a {what} never needs; it was refused "
                                 "and nothing from it was run")
    return ModelFileError(f"{name} is not a readable {what}: it is damaged, truncated or of another kind "
                          f"({one_line(exc)})")


class BoundedReader:
    """A read-only view of a stream that refuses to read past `end` before reading (and so
    before `pickletools` allocates a buffer of the length a pickle declares)."""

    def __init__(self, f: IO[bytes], end: int) -> None:
        self._f, self._end = f, end

    def tell(self) -> int:
        return self._f.tell()

    def left(self) -> int:
        return self._end - self._f.tell()

    def read(self, n: int | None = -1) -> bytes:
        left = self.left()
        if n is None or n < 0:
            n = left
        if n > left:
            raise ModelFileError(f"the file is damaged or crafted: an entry declares {n:,} bytes where only "
                                 f"{max(left, 0):,} remain")
        return self._f.read(n)

    def readline(self) -> bytes:
        return self._f.readline(max(self.left(), 0))


def check_pickle_lengths(f: IO[bytes], end: int) -> None:
    """Walk one pickle's opcodes from the current position without building anything,
    refusing any length (bytes, strings, frames) longer than what is left before `end`;
    the position is restored. The C unpickler allocates a declared length before it
    reads, so this is what keeps a 100-byte file from asking for gigabytes."""
    start = f.tell()
    bounded = BoundedReader(f, end)
    try:
        for op, arg, _pos in pickletools.genops(bounded):  # type: ignore[arg-type]
            if op.name == "FRAME" and isinstance(arg, int) and arg > bounded.left():
                raise ModelFileError(f"the file is damaged or crafted: a frame declares {arg:,} bytes where "
                                     f"only {bounded.left():,} remain")
    except ModelFileError:
        raise
    except MALFORMED as exc:
        raise ModelFileError(f"the file is truncated or not a pickle ({one_line(exc)})") from None
    finally:
        f.seek(start)


_STORAGE_ITEMSIZE = {"Float": 4, "Half": 2, "BFloat16": 2, "Double": 8, "Long": 8, "Int": 4, "Short": 2,
                     "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "Untyped": 1}
# A state dict's index is a few MB even for a 1.2 GB encoder.
MAX_INDEX = 256 << 20


class _Inert:
    """Whatever a global stands for while an index is only being measured: accepts any
    call, state and items, does nothing. Nothing the file names is ever looked up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _StorageKind:
    def __init__(self, name: str) -> None:
        self.name = name
        self.itemsize = _STORAGE_ITEMSIZE.get(name[:-7])


class _IndexScanner(pickle.Unpickler):
    """Reads a torch zip file's data.pkl only for its storage records (key, element size,
    element count); every global becomes `_Inert`, so nothing runs."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.records: list[tuple[str, int, int]] = []

    def find_class(self, module: str, name: str) -> Any:
        if module in ("torch", "torch.cuda") and name.endswith("Storage"):
            return _StorageKind(name)
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        if (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageKind)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and not isinstance(pid[4], bool)):
            if pid[1].itemsize is None:
                raise ModelFileError(f"it stores tensors as {pid[1].name[:40]}, which model files do not use")
            self.records.append((pid[2], pid[1].itemsize, pid[4]))
            return _Inert()
        raise ModelFileError(f"a storage reference in the index is malformed ({type(pid).__name__})")


def check_zip_records(path: Path) -> None:
    """Refuse a torch zip file unless every storage its index declares is a record of
    exactly that many bytes. torch's memory-mapped load does not compare them: a short
    record gives a tensor that reads on into the rest of the file."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            index = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(index) != 1:
                return  # not a torch.save archive; torch.load says what it is
            info = infos[index[0]]
            prefix = index[0].rsplit("/", 1)[0]
            if info.file_size > MAX_INDEX:
                raise ModelFileError(f"{name}: its index is {info.file_size:,} bytes; no checkpoint's is near that")
            with zf.open(info) as f:
                check_pickle_lengths(f, info.file_size)  # type: ignore[arg-type]
                scanner = _IndexScanner(f)  # type: ignore[arg-type]
                scanner.load()
    except ModelFileError as exc:
        raise named(exc, name) from None
    except OSError as exc:
        if not from_content(exc):
            raise
        raise ModelFileError(f"{name} is not a readable PyTorch archive ({one_line(exc)})") from None
    except MALFORMED as exc:
        raise ModelFileError(f"{name} is not a readable PyTorch archive ({one_line(exc)})") from None
    for key, itemsize, numel in scanner.records:
        record = infos.get(f"{prefix}/data/{key}")
        need = numel * itemsize
        if record is None:
            raise ModelFileError(f"{name} lacks the data of storage {key[:40]!r} its index refers to")
        if record.file_size != need or record.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(f"{name}: storage {key[:40]!r} declares {numel:,} elements ({need:,} bytes) but "
                                 f"its record holds {record.file_size:,}; the file is damaged or crafted")


def named(exc: ModelFileError, name: str) -> ModelFileError:
    """`exc` with the file's name in front, unless its message already names it."""
    return exc if name in str(exc) else type(exc)(f"{name}: {exc}")


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def torch_load(path: str | os.PathLike[str], *, what: str = "model file", extra_globals: Iterable[Any] = (),
               mmap: bool = True) -> Any:
    """`torch.load(weights_only=True)` on CPU, every tensor checked against its storage.

    Zip files are memory-mapped unless `mmap` is False (for files the caller rewrites in
    place while holding their tensors: Windows cannot replace a mapped file). Either way
    torch compares each storage record with the size the index declares before building
    any tensor on it. `extra_globals` are plain-data classes a format needs
    (argparse.Namespace for options saved by argparse)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{what} not found: {p}")
    try:
        # torch.load given a path ending in ".safetensors" hands it to safetensors whatever
        # it holds, and only a path can be mapped: such a name is read through a file object.
        by_name = p.name.lower().endswith(".safetensors")
        zipped = is_zip(p)
        if zipped:
            check_zip_records(p)
        with torch.serialization.safe_globals(list(extra_globals)):
            if mmap and zipped and not by_name:
                obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            else:  # the pre-1.6 format cannot be mapped; it is read whole, as torch must
                with open(p, "rb") as f:
                    obj = torch.load(f, map_location="cpu", weights_only=True)
    except ModelFileError:
        raise
    except OSError as exc:
        if not from_content(exc):
            raise
        raise load_error(p.name, exc, what) from None
    except MALFORMED as exc:
        raise load_error(p.name, exc, what) from None
    check_tensors(obj, p.name)
    return obj


def build_checked(factory: Callable[[], ModuleT], state: Mapping[str, Any], part: str = "", *,
                  adopt: bool = False, fill: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> ModuleT:
    """`factory()` with `state` loaded strictly (into its submodule `part`, if given), after
    the same load on a copy without storage (the meta device): the sizes a file claims are
    allocated only once its tensors have proved they hold that many numbers. Raises
    load_state_dict's RuntimeError.

    With `adopt`, the network is built without storage and `state`'s tensors become its
    weights, so a file's weights are never held twice: each one that is a plain CPU tensor
    of the network's dtype, contiguous and alone on its storage is used as it is, any other
    is copied as `load_state_dict` would copy it. Only for tensors read into memory (never
    memory-mapped ones: the file would stay mapped while the network lives). `fill` gives
    the values of what the state does not hold (non-persistent buffers, tensors outside
    `part`), by their names in the whole network; anything else is taken from a network
    built for real."""
    def target(model: ModuleT) -> torch.nn.Module:
        return model.get_submodule(part) if part else model

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "copying into a meta parameter is a no-op": the point
        target(factory()).load_state_dict(state, strict=True)
    if not adopt:
        model = factory()
        target(model).load_state_dict(state, strict=True)
        return model
    with torch.device("meta"):
        model = factory()
    inner = target(model)
    inner.load_state_dict(adoption.adoptable(state, inner.state_dict()), strict=True, assign=True)
    adoption.fill_meta(model, dict(fill() if fill is not None else {}), factory)
    return model


def walk(obj: Any, name: str, max_depth: int = MAX_DEPTH) -> Iterator[tuple[str, Any]]:
    """(key path, value) for every value in nested dicts, lists, tuples and objects with a
    `__dict__` (argparse.Namespace), depth first, refusing nesting deeper than `max_depth`.

    Iterative, with a visited set, so a cycle or a 200,000-deep nest costs no recursion."""
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    seen: set[int] = set()
    while stack:
        key, value, depth = stack.pop()
        yield key, value
        if isinstance(value, torch.Tensor | str | bytes | int | float | bool) or value is None:
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Mapping):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list | tuple | set | frozenset):
            children = enumerate(value)
        elif hasattr(value, "__dict__") and isinstance(vars(value), dict):
            children = vars(value).items()
        else:
            continue
        if depth >= max_depth:
            raise ModelFileError(f"{name} nests its contents more than {max_depth} levels deep; "
                                 "no model file does, so it is damaged or crafted")
        for k, v in children:
            stack.append((f"{key}.{k}" if key else str(k), v, depth + 1))


def check_tensor(t: torch.Tensor, name: str, key: str = "") -> None:
    """Refuse a tensor that claims more elements than the bytes behind it."""
    try:
        have = t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without a plain storage
        raise ModelFileError(f"{name}: tensor {key or '?'} is not a plain tensor") from None
    need = t.numel() * t.element_size()
    if need > have:
        raise ModelFileError(f"{name}: tensor {key or '?'} declares shape {tuple(t.shape)} "
                             f"({need:,} bytes) over {have:,} bytes of data; the file is damaged or crafted")


def check_tensors(obj: Any, name: str) -> None:
    for key, value in walk(obj, name):
        if isinstance(value, torch.Tensor):
            check_tensor(value, name, key)
