"""Fuzzing the model-file readers with mutated synthetic files (issue #14).

Each base file is a small, valid file of one format (NVIDIA pickles in both protocols,
TensorFlow pickle, rosinality .pt in zip and legacy form, CLIP safetensors and zip, a
mapper, an fs3 .npy). Hypothesis mutates it (byte flips, cuts, insertions, and
boundary integers written where lengths and counts live) and feeds it to
`identify_file` and to the loader the app uses for that kind. The only acceptable
outcomes are success or a `UserError` whose message is one line, without a traceback or
torch's advice to turn `weights_only` off. Anything else (an uncaught exception, a
multi-line message) fails the test with the mutation that caused it.

The budget is small so that `make test` stays fast and deterministic;
STYLECLIP_FUZZ_EXAMPLES=500 runs a thorough, randomised search.
"""

from __future__ import annotations

import io
import os
import pickletools
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from styleclip_desktop.errors import UserError
from styleclip_desktop.weights.identify import identify_file

from . import hostile

_THOROUGH = os.environ.get("STYLECLIP_FUZZ_EXAMPLES")
settings.register_profile(
    "styleclip-fuzz-models",
    max_examples=int(_THOROUGH or "15"),
    deadline=None,
    database=None,  # write nothing into the source tree
    derandomize=_THOROUGH is None,  # the same examples on every `make test`
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("styleclip-fuzz-models")

# Values that break length and count fields: zero, one, sign and width boundaries, huge.
BOUNDARY = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**32 - 1, 2**40, 2**62, 2**63 - 1, 2**64 - 1)
ADVICE = ("weights_only", "trusted source", "safe_globals", "Traceback")


@st.composite
def mutations(draw: st.DrawFn, hot: list[int], size: int) -> list[tuple[Any, ...]]:
    """1-4 edits, aimed mostly at `hot` offsets (where opcodes, headers and lengths are)."""
    where = st.one_of(st.sampled_from(hot), st.integers(0, max(size - 1, 0))) if hot else st.integers(0, size - 1)
    edit = st.one_of(
        st.tuples(st.just("byte"), where, st.integers(0, 255)),
        st.tuples(st.just("int"), where, st.sampled_from((1, 2, 4, 8)), st.sampled_from(BOUNDARY)),
        st.tuples(st.just("cut"), where),
        st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), where, st.integers(1, 64)),
    )
    return draw(st.lists(edit, min_size=1, max_size=4))


def mutate(data: bytes, edits: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(data)
    for e in edits:
        pos = min(e[1], max(len(out) - 1, 0))
        if e[0] == "byte" and out:
            out[pos] = e[2]
        elif e[0] == "int":
            out[pos:pos + e[2]] = (e[3] % (1 << (8 * e[2]))).to_bytes(e[2], "little")
        elif e[0] == "cut":
            del out[pos:]
        elif e[0] == "insert":
            out[pos:pos] = e[2]
        elif e[0] == "delete":
            del out[pos:pos + e[2]]
    return bytes(out)


def pickle_offsets(data: bytes, start: int = 0) -> list[int]:
    """The offset of every opcode and of the byte after it (its argument)."""
    out: list[int] = []
    try:
        for _op, _arg, pos in pickletools.genops(data[start:]):
            out += [start + pos, start + pos + 1]
    except ValueError:
        pass
    return out


def accept_or_refuse(fn: Callable[[Path], Any], path: Path) -> None:
    try:
        fn(path)
    except UserError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert not any(word in message for word in ADVICE), message


# --- base files -------------------------------------------------------------------------


def _identify_and_load(path: Path) -> None:
    from styleclip_desktop.weights.formats import load_generator

    accept_or_refuse(identify_file, path)
    accept_or_refuse(load_generator, path)


def _clip(path: Path) -> None:
    from styleclip_desktop.nets.clip import build_clip, read_clip_state_dict

    accept_or_refuse(identify_file, path)
    accept_or_refuse(lambda p: build_clip(read_clip_state_dict(p), p.name), path)


def _mapper(path: Path) -> None:
    from styleclip_desktop.nets.mapper import load_mapper

    accept_or_refuse(identify_file, path)
    accept_or_refuse(load_mapper, path)


def _npy(path: Path) -> None:
    from styleclip_desktop.weights.npy import read_npy

    accept_or_refuse(identify_file, path)
    accept_or_refuse(read_npy, path)


class Base:
    def __init__(self, data: bytes, hot: list[int], check: Callable[[Path], None], suffix: str) -> None:
        self.data, self.hot, self.check, self.suffix = data, hot, check, suffix


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def bases(work: Path) -> dict[str, Base]:
    from safetensors.torch import save_file

    from styleclip_desktop.nets.clip import tiny_clip_state_dict
    from styleclip_desktop.nets.mapper import LevelsMapper, save_mapper
    from styleclip_desktop.weights import synthetic

    G = hostile.small_generator()
    out: dict[str, Base] = {}
    for protocol in (2, 4):
        data = hostile.ada(work / f"base-ada{protocol}.pkl", protocol=protocol).read_bytes()
        out[f"ada-protocol{protocol}"] = Base(data, pickle_offsets(data), _identify_and_load, ".pkl")
    data = hostile._tf(work / "base-tf.pkl").read_bytes()
    out["tf"] = Base(data, pickle_offsets(data), _identify_and_load, ".pkl")
    data = synthetic.write_rosinality_pt(G, work / "base-ros.pt", legacy=True).read_bytes()
    out["rosinality-legacy"] = Base(data, _legacy_offsets(data), _identify_and_load, ".pt")
    data = synthetic.write_rosinality_pt(G, work / "base-rosz.pt").read_bytes()
    out["rosinality-zip"] = Base(data, _zip_offsets(data), _identify_and_load, ".pt")
    sd = {k: v.contiguous() for k, v in tiny_clip_state_dict().items()}
    save_file(sd, str(work / "base-clip.safetensors"))
    data = (work / "base-clip.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    out["clip-safetensors"] = Base(data, list(range(0, 8 + n)), _clip, ".safetensors")
    torch.save(sd, work / "base-clip.bin")
    data = (work / "base-clip.bin").read_bytes()
    out["clip-zip"] = Base(data, _zip_offsets(data), _clip, ".bin")
    data = save_mapper(work / "base-mapper.pt", LevelsMapper(("coarse",)), {"description": "a face"}).read_bytes()
    out["mapper-zip"] = Base(data, _zip_offsets(data), _mapper, ".pt")
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).standard_normal((16, 512)).astype(np.float32))
    out["fs3-npy"] = Base(buf.getvalue(), list(range(0, 128)), _npy, ".npy")
    return out


def _zip_offsets(data: bytes) -> list[int]:
    """Opcodes of the index pickle, local headers and the central directory of a torch zip."""
    hot: list[int] = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            hot += list(range(info.header_offset, info.header_offset + 30))
            if info.filename.endswith("data.pkl"):
                hot += pickle_offsets(data[start:start + info.file_size], start)
    eocd = data.rfind(b"PK\x05\x06")
    return hot + list(range(eocd, len(data)))


def _legacy_offsets(data: bytes) -> list[int]:
    hot: list[int] = []
    pos = 0
    for _ in range(5):  # magic, protocol, sys info, the index, the storage keys
        ops = pickle_offsets(data, pos)
        if not ops:
            break
        hot += ops
        pos = ops[-1]
    return hot + list(range(pos, min(pos + 64, len(data))))


KINDS = ("ada-protocol2", "ada-protocol4", "tf", "rosinality-legacy", "rosinality-zip", "clip-safetensors",
         "clip-zip", "mapper-zip", "fs3-npy")
# The CLIP and mapper bases are megabytes and build a network per example: fewer of them.
SLOW = {"clip-safetensors", "clip-zip", "mapper-zip"}


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_files_load_or_are_refused_in_one_line(kind: str, bases: dict[str, Base], work: Path) -> None:
    base = bases[kind]
    base.check(_write(work, kind, 0, base.data, base.suffix))  # the unmutated file is fine

    budget = max(3, FUZZ.max_examples // 3) if kind in SLOW else FUZZ.max_examples
    counter = iter(range(1, 1 << 30))

    @settings(FUZZ, max_examples=budget)
    @given(edits=mutations(base.hot, len(base.data)))
    def run(edits: list[tuple[Any, ...]]) -> None:
        base.check(_write(work, kind, next(counter), mutate(base.data, edits), base.suffix))

    run()


@pytest.mark.parametrize("kind", ["rosinality-zip", "clip-zip", "mapper-zip"])
def test_mutated_zip_indexes_load_or_are_refused_in_one_line(kind: str, bases: dict[str, Base], work: Path) -> None:
    """The index pickle itself mutated, inside a well-formed zip (raw flips mostly break
    the zip's own checksums first)."""
    base = bases[kind]
    with zipfile.ZipFile(io.BytesIO(base.data)) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    index = next(i for i, (name, _) in enumerate(members) if name.endswith("data.pkl"))
    pkl = members[index][1]
    counter = iter(range(1, 1 << 30))

    @settings(FUZZ, max_examples=max(3, FUZZ.max_examples // 2))
    @given(edits=mutations(pickle_offsets(pkl), len(pkl)))
    def run(edits: list[tuple[Any, ...]]) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
            for i, (name, data) in enumerate(members):
                out.writestr(name, mutate(data, edits) if i == index else data)
        base.check(_write(work, kind + "-index", next(counter), buf.getvalue(), base.suffix))

    run()


def _write(work: Path, kind: str, n: int, data: bytes, suffix: str) -> Path:
    path = work / f"{kind}-{n}{suffix}"
    path.write_bytes(data)
    return path
