"""Hostile and broken project files and latents (issue #14): each one is refused with a
one-line error, in bounded memory, and left exactly as it was.

The crafted files are small (a few MB at most) but would unpack to gigabytes: deflate
bombs with honest sizes, directories that understate or overstate them, entries that
overlap, bombs nested inside arrays.npz, compression methods zipfile inflates without
bound. Each entry point reads all of them in one child process whose address space is
capped, so that a reader that inflates a bomb fails with MemoryError instead of taking the
machine down, and whose peak resident memory is measured.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from styleclip_desktop.document import (
    Document,
    Layer,
    OptimizationParams,
    SourcePhoto,
    canonical_state,
    load_project_bytes,
    write_project,
)

from .zipcraft import Member, MiB, build, deflated, npy_bomb, npy_header, stored, zero_bomb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="peak memory is measured with Linux's RLIMIT_AS and ru_maxrss")

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
GiB = 1 << 30
# What reading any one crafted file may add to the reader's peak resident memory. A
# reader that inflates them needs 0.5 to 4 GB.
MEMORY_BOUND = 96 * MiB
# The child's address space beyond what it has mapped after imports: room for the
# bounded reads, none for gigabytes.
ADDRESS_HEADROOM = 768 * MiB


def _doc() -> Document:
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((18, 16)).astype(np.float32)
    layer = Layer(OptimizationParams("smile", delta=rng.standard_normal((18, 16)).astype(np.float32)), id="smile")
    return Document(latent, source=SourcePhoto.from_bytes("me.png", b"not really a png " * 10), layers=[layer])


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    path = tmp_path_factory.mktemp("good") / "good.scproj"
    write_project(_doc(), path, thumbnail=PNG)
    return _members(path.read_bytes())


def _project(good: dict[str, bytes], **replace: Member) -> bytes:
    """The good project with some members replaced by crafted ones (same names)."""
    members = [replace.get(key, stored(name, data))
               for key, (name, data) in zip(("manifest", "arrays", "photo", "thumbnail"), _ordered(good), strict=True)]
    return build(members)


def _ordered(good: dict[str, bytes]) -> list[tuple[str, bytes]]:
    return [(name, good[name]) for name in ("manifest.json", "arrays.npz", "source.png", "thumbnail.png")]


def _npz(*members: Member, aliases: tuple[tuple[str, int], ...] = ()) -> bytes:
    return build(list(members), aliases=aliases)


def _good_arrays(good: dict[str, bytes]) -> list[Member]:
    return [stored(name, data) for name, data in _members(good["arrays.npz"]).items()]


def _inner(good: dict[str, bytes], latent: Member, *, aliases: tuple[tuple[str, int], ...] = ()) -> Member:
    """arrays.npz, stored, with its latent.npy replaced."""
    rest = [m for m in _good_arrays(good) if m.name != "latent.npy"]
    return stored("arrays.npz", _npz(latent, *rest, aliases=aliases))


def _listed_many_times(good: dict[str, bytes], extra: Member, times: int) -> Member:
    """arrays.npz, stored, with `extra` added and listed again under `times` other names."""
    members = [*_good_arrays(good), extra]
    aliases = tuple((f"copy{i}.npy", len(members) - 1) for i in range(times))
    return stored("arrays.npz", _npz(*members, aliases=aliases))


@dataclass(frozen=True)
class Case:
    build: Callable[[dict[str, bytes]], bytes]
    error: str  # the error class the library raises
    message: str  # a regex its message matches
    entry: str = "load"  # load (load_project) | thumbnail (read_thumbnail) | manifest (read_manifest) | latent


def _bomb_member(name: str, size: int) -> Member:
    return zero_bomb(name, size)


PROJECT_CASES: dict[str, Case] = {
    # The audit's file: 2 MB whose arrays.npz inflates to 2 GB.
    "arrays.npz deflate bomb, honest sizes": Case(
        lambda g: _project(g, arrays=_bomb_member("arrays.npz", 2 * GiB)),
        "OversizedProjectError", r"arrays\.npz would unpack to 2\.0 GB, over the 1\.0 GB limit"),
    "arrays.npz bomb under the size limit, 1000:1": Case(
        lambda g: _project(g, arrays=_bomb_member("arrays.npz", 512 * MiB)),
        "OversizedProjectError", r"arrays\.npz would unpack to 512\.0 MB from .* \(\d+:1\)"),
    "arrays.npz directory says 4 MB, the stream inflates to 2 GB": Case(
        lambda g: _project(g, arrays=_bomb_member("arrays.npz", 2 * GiB).lying(file_size=4 * MiB)),
        "CorruptProjectError", r"arrays\.npz is damaged"),
    "arrays.npz directory says 4 MB, local header says 2 GB": Case(
        lambda g: _project(g, arrays=(m := _bomb_member("arrays.npz", 2 * GiB)).lying(
            file_size=4 * MiB, local_sizes=(len(m.data), 2 * GiB))),
        "CorruptProjectError", r"arrays\.npz is damaged"),
    "arrays.npz stored, directory claims 900 MB of a small file": Case(
        lambda g: _project(g, arrays=stored("arrays.npz", g["arrays.npz"]).lying(
            file_size=900 * MiB, compress_size=900 * MiB)),
        "OversizedProjectError", r"claim 900\.0 MB, more than the whole"),
    "arrays.npz packed with bzip2": Case(
        lambda g: _project(g, arrays=stored("arrays.npz", g["arrays.npz"]).lying(method=zipfile.ZIP_BZIP2)),
        "CorruptProjectError", r"compression method"),
    "arrays.npz packed with LZMA": Case(
        lambda g: _project(g, arrays=stored("arrays.npz", g["arrays.npz"]).lying(method=zipfile.ZIP_LZMA)),
        "CorruptProjectError", r"compression method"),
    "arrays.npz encrypted": Case(
        lambda g: _project(g, arrays=stored("arrays.npz", g["arrays.npz"]).lying(flags=1)),
        "CorruptProjectError", r"encrypted"),
    "manifest.json deflate bomb": Case(
        lambda g: _project(g, manifest=zero_bomb("manifest.json", GiB, prefix=b'{"schema": 1, "pad": "')),
        "OversizedProjectError", r"manifest\.json would unpack to 1\.0 GB, over the 16\.0 MB limit"),
    "manifest.json directory says 1 MB, the stream inflates to 1 GB": Case(
        lambda g: _project(g, manifest=zero_bomb("manifest.json", GiB, prefix=b'{"schema": 1}').lying(
            file_size=MiB)),
        "CorruptProjectError", r"manifest\.json is damaged"),
    "manifest.json bomb, read for the project list": Case(
        lambda g: _project(g, manifest=zero_bomb("manifest.json", GiB, prefix=b'{"schema": 1, "pad": "')),
        "OversizedProjectError", r"manifest\.json would unpack", entry="manifest"),
    "source photo deflate bomb": Case(
        lambda g: _project(g, photo=_bomb_member("source.png", 2 * GiB)),
        "OversizedProjectError", r"source\.png would unpack to 2\.0 GB"),
    "source photo bomb under the size limit, 1000:1": Case(
        lambda g: _project(g, photo=_bomb_member("source.png", 256 * MiB)),
        "OversizedProjectError", r"source\.png would unpack to 256\.0 MB from .* \(\d+:1\)"),
    "thumbnail deflate bomb, read for the open dialog": Case(
        lambda g: _project(g, thumbnail=_bomb_member("thumbnail.png", GiB)),
        "OversizedProjectError", r"thumbnail\.png would unpack", entry="thumbnail"),
    "a directory of 60 000 entries": Case(
        lambda g: build([stored(n, d) for n, d in _ordered(g)], aliases=tuple((f"x{i}", 3) for i in range(60_000))),
        "OversizedProjectError", r"directory of the project is .* over the 1\.0 MB limit"),
    "overlapping entries: a 1 MB member listed 50 times": Case(
        lambda g: build([stored(n, d) for n, d in _ordered(g)] + [stored("big", bytes(MiB))],
                        aliases=tuple((f"copy{i}", 4) for i in range(50))),
        "OversizedProjectError", r"overlap"),
    "manifest.json listed twice": Case(
        lambda g: build([stored(n, d) for n, d in _ordered(g)] + [stored("manifest.json", b'{"schema": 1}')]),
        "CorruptProjectError", r"names one member twice"),
    # Bombs nested in arrays.npz.
    "latent.npy deflate bomb inside arrays.npz": Case(
        lambda g: _project(g, arrays=_inner(g, npy_bomb("latent.npy", 2 * GiB))),
        "OversizedProjectError", r"would unpack to 2\.0 GB"),
    "latent.npy bomb under the size limit, 1000:1, inside arrays.npz": Case(
        lambda g: _project(g, arrays=_inner(g, npy_bomb("latent.npy", 512 * MiB))),
        "OversizedProjectError", r"would unpack to .* \(\d+:1\)"),
    "latent.npy directory says 1 KB, the stream inflates to 2 GB": Case(
        lambda g: _project(g, arrays=_inner(g, npy_bomb("latent.npy", 2 * GiB).lying(
            file_size=len(npy_header((18, 16))) + 18 * 16 * 4))),
        "ArrayDataError", r"array 'latent'"),
    "500 arrays of 1 MB each, 1000:1, each under the ratio floor": Case(
        lambda g: _project(g, arrays=stored("arrays.npz", _npz(
            *_good_arrays(g), *(npy_bomb(f"pad{i}.npy", MiB - 128) for i in range(500))))),
        "OversizedProjectError", r"the arrays in arrays\.npz would unpack to .* \(\d+:1\)"),
    "one stored array listed under 3000 names": Case(
        lambda g: _project(g, arrays=_listed_many_times(g, stored("big.npy", npy_header((MiB // 4,)) + bytes(MiB)),
                                                        3000)),
        "OversizedProjectError", r"overlap"),
    "arrays.npz with a directory of 200 000 entries": Case(
        lambda g: _project(g, arrays=stored("arrays.npz", _npz(
            *_good_arrays(g), aliases=tuple((f"{i}.npy", 0) for i in range(200_000))))),
        "OversizedProjectError", r"directory of arrays\.npz is .* over the 4\.0 MB limit"),
    "latent.npy with a 2 GB header": Case(
        lambda g: _project(g, arrays=_inner(g, zero_bomb("latent.npy", 512 * 1024,
                                                         prefix=b"\x93NUMPY\x02\x00\x00\x00\x00\x80"))),
        "ArrayDataError", r"damaged header"),
    "latent.npy packed with bzip2 inside arrays.npz": Case(
        lambda g: _project(g, arrays=_inner(g, stored("latent.npy", _members(g["arrays.npz"])["latent.npy"]).lying(
            method=zipfile.ZIP_BZIP2))),
        "ArrayDataError", r"compression method"),
    "an npz bomb named latent.npy inside arrays.npz": Case(
        lambda g: _project(g, arrays=_inner(g, stored("latent.npy", build([npy_bomb("w.npy", 2 * GiB)])))),
        "ArrayDataError", r"not a \.npy array"),
    # Small enough to pass as a deflated member, so it is unpacked to a temporary file
    # before its own directory is read.
    "a deflated arrays.npz of 0.5 MB holding a latent.npy bomb": Case(
        lambda g: _project(g, arrays=deflated("arrays.npz", _npz(
            npy_bomb("latent.npy", 512 * MiB), *[m for m in _good_arrays(g) if m.name != "latent.npy"]))),
        "OversizedProjectError", r"the arrays in arrays\.npz would unpack to 512\.0 MB"),
}

LATENT_CASES: dict[str, Case] = {
    "latent .npz deflate bomb": Case(
        lambda g: build([npy_bomb("w.npy", 2 * GiB)]), "UserError", r"would unpack to 2\.0 GB", entry="latent"),
    "latent .npz directory says 36 KB, the stream inflates to 2 GB": Case(
        lambda g: build([npy_bomb("w.npy", 2 * GiB).lying(file_size=len(npy_header((18, 512))) + 18 * 512 * 4)]),
        "UserError", r"array .w. has 36864 bytes", entry="latent"),
    "latent .npz of 3000 overlapping entries": Case(
        lambda g: build([stored("w.npy", npy_header((MiB // 4,)) + bytes(MiB))],
                        aliases=tuple((f"c{i}.npy", 0) for i in range(3000))),
        "UserError", r"overlap", entry="latent"),
    "latent .npy whose header claims 4 GB": Case(
        lambda g: npy_header((GiB,)) + bytes(100), "UserError", r"bytes of data", entry="latent"),
}

CASES = {**PROJECT_CASES, **LATENT_CASES}

_CHILD = r"""
import json, os, resource, sys, time, traceback
from pathlib import Path

from styleclip_desktop.document import load_project, read_manifest, read_thumbnail
from styleclip_desktop.errors import UserError
from styleclip_desktop.export.projects_cli import new_document

ENTRIES = {"load": load_project, "manifest": read_manifest, "thumbnail": read_thumbnail,
           "latent": lambda p: new_document(Path(p))}
cases, good, headroom = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
load_project(good)  # everything a read needs is imported and warm

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

mapped = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + headroom, resource.RLIM_INFINITY))
base = peak()
out = {}
for name, entry, path in cases:
    start = time.monotonic()
    try:
        ENTRIES[entry](path)
        result = {"outcome": "accepted"}
    except UserError as exc:
        result = {"outcome": "refused", "error": type(exc).__name__,
                  "classes": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    except BaseException as exc:
        result = {"outcome": "crashed", "error": type(exc).__name__, "message": traceback.format_exc()}
    result.update(grew=peak() - base, seconds=time.monotonic() - start)
    out[name] = result
print(json.dumps(out))
"""


def _fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "", st.st_mtime_ns, st.st_size


@pytest.fixture(scope="module")
def crafted(good: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for i, (name, case) in enumerate(CASES.items()):
        suffix = ".scproj" if case.entry != "latent" else (".npy" if "npy" in name else ".npz")
        path = folder / f"case{i}{suffix}"
        path.write_bytes(case.build(good))
        paths[name] = path
    sparse = folder / "huge.npy"
    with open(sparse, "wb") as f:  # a real 100 MB latent file, sparse on disk
        f.write(npy_header((25 * MiB,)))
        f.truncate(len(npy_header((25 * MiB,))) + 100 * MiB)
    paths["latent .npy of 100 MB"] = sparse
    return paths


EXTRA_CASES = {
    "latent .npy of 100 MB": Case(lambda g: b"", "UserError", r"over the 64\.0 MB", entry="latent"),
}
ALL_CASES = {**CASES, **EXTRA_CASES}
CLI_CASES = [name for name, case in PROJECT_CASES.items() if case.entry == "load"]


@pytest.fixture(scope="module")
def library_results(crafted: dict[str, Path], good: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, Any]:
    good_path = tmp_path_factory.mktemp("warm") / "good.scproj"
    good_path.write_bytes(build([stored(n, d) for n, d in _ordered(good)]))
    before = {name: _fingerprint(path) for name, path in crafted.items()}
    cases = [[name, ALL_CASES[name].entry, str(path)] for name, path in crafted.items()]
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases), str(good_path), str(ADDRESS_HEADROOM)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results: dict[str, Any] = json.loads(proc.stdout)
    for name, path in crafted.items():
        results[name]["unchanged"] = _fingerprint(path) == before[name]
    return results


@pytest.mark.parametrize("name", list(ALL_CASES))
def test_each_crafted_file_is_refused_in_one_line_in_bounded_memory(name: str, library_results: dict[str, Any]
                                                                    ) -> None:
    case, result = ALL_CASES[name], library_results[name]
    assert result["outcome"] == "refused", result
    assert case.error in result["classes"], result
    message = result["message"]
    assert "\n" not in message and "Traceback" not in message
    assert re.search(case.message, message), message
    assert result["grew"] < MEMORY_BOUND, f"peak memory grew by {result['grew'] / MiB:.0f} MiB: {message}"
    assert result["unchanged"], "the refused file was changed"


def test_a_fifo_named_like_a_project_is_refused_not_waited_on(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until something writes to it: forever, here.
    fifo = tmp_path / "fifo.scproj"
    os.mkfifo(fifo)
    code = ("import sys; from styleclip_desktop.document import load_project, ProjectReadError\n"
            "try: load_project(sys.argv[1])\nexcept ProjectReadError as exc: print(exc)")
    proc = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "cannot open fifo.scproj: it is not a file\n", proc.stderr


def test_the_audits_project_file_is_small(good: dict[str, bytes]) -> None:
    # The crafted files are what the audit describes, not something easier to refuse.
    data = PROJECT_CASES["arrays.npz deflate bomb, honest sizes"].build(good)
    assert len(data) < 3 * MiB
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("arrays.npz").file_size == 2 * GiB


# -- the command line ------------------------------------------------------------------------

_CLI_CHILD = r"""
import contextlib, io, json, os, resource, sys
from styleclip_desktop.cli import main

cases, good, out, headroom = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
with contextlib.redirect_stderr(io.StringIO()):
    main(["export", good, "-o", out])  # fails for want of models, having imported what export needs

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

mapped = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + headroom, resource.RLIM_INFINITY))
base = peak()
results = {}
for name, path in cases:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main(["export", path, "-o", out])
    except BaseException as exc:
        rc = repr(exc)
    results[name] = {"rc": rc, "stderr": err.getvalue(), "grew": peak() - base}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def cli_results(crafted: dict[str, Path], good: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("cli")
    good_path = folder / "good.scproj"
    good_path.write_bytes(build([stored(n, d) for n, d in _ordered(good)]))
    out = folder / "out" / "still.png"
    out.parent.mkdir()
    cases = [[name, str(crafted[name])] for name in CLI_CASES]
    env = {**os.environ, "STYLECLIP_MODELS_DIR": str(folder / "no-models")}
    proc = subprocess.run([sys.executable, "-c", _CLI_CHILD, json.dumps(cases), str(good_path), str(out),
                           str(ADDRESS_HEADROOM)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results: dict[str, Any] = json.loads(proc.stdout)
    results["__out__"] = sorted(p.name for p in out.parent.iterdir())
    return results


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_export_refuses_each_crafted_project_in_one_line(name: str, cli_results: dict[str, Any],
                                                             crafted: dict[str, Path]) -> None:
    result = cli_results[name]
    assert result["rc"] == 1, result
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    assert lines[0].startswith(f"styleclip-desktop: error: cannot open {crafted[name].name}: "), lines[0]
    assert re.search(ALL_CASES[name].message, lines[0]), lines[0]
    assert result["grew"] < MEMORY_BOUND, f"peak memory grew by {result['grew'] / MiB:.0f} MiB"
    assert cli_results["__out__"] == [], "an export of a refused project left files behind"


# -- what must still open ---------------------------------------------------------------------


def test_a_project_rezipped_with_deflate_still_opens(good: dict[str, bytes]) -> None:
    # An archiver may repack a project (deflating arrays.npz, as np.savez_compressed would
    # its arrays): bounded reading must not refuse it.
    inner = build([deflated(name, data) for name, data in _members(good["arrays.npz"]).items()])
    data = build([deflated("manifest.json", good["manifest.json"]), deflated("arrays.npz", inner),
                  deflated("source.png", good["source.png"]), deflated("thumbnail.png", good["thumbnail.png"])])
    original = load_project_bytes(build([stored(n, d) for n, d in _ordered(good)]))
    assert canonical_state(load_project_bytes(data)) == canonical_state(original)


def test_a_large_real_array_is_read_whole(tmp_path: Path) -> None:
    # 24 MB of random floats (a PTI delta is this kind of array, larger): over the ratio
    # floor, stored as the app stores it, read back exactly.
    rng = np.random.default_rng(2)
    delta = {"synthesis.w": rng.standard_normal((6 * MiB,)).astype(np.float32)}
    doc = Document(np.ones((2, 2), np.float32), generator_delta=delta)
    path = tmp_path / "big.scproj"
    write_project(doc, path)
    loaded = load_project_bytes(path.read_bytes())
    assert loaded.generator_delta is not None
    assert np.array_equal(loaded.generator_delta["synthesis.w"], delta["synthesis.w"])
