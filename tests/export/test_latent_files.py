"""Latent files given to `edit` (and `new_document`): .npy, or .npz holding one array,
read within bounds and without pickles. The hostile ones (bombs) are in
tests/document/test_hostile_projects.py, with the memory they may take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from styleclip_desktop.errors import UserError
from styleclip_desktop.export.projects_cli import new_document

W_PLUS = np.arange(18 * 8, dtype=np.float32).reshape(18, 8) / 7


def _savez(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as f:  # np.savez given a path would add ".npz" to it
        np.savez(f, **arrays)


def test_npy_in_any_float_layout(tmp_path: Path) -> None:
    for i, array in enumerate([W_PLUS, W_PLUS[None], W_PLUS.astype(">f8"), np.asfortranarray(W_PLUS),
                               W_PLUS.astype(np.float16)]):
        path = tmp_path / f"w{i}.npy"
        np.save(path, array)
        latent = new_document(path).latent
        assert latent.dtype == np.float32 and np.allclose(latent, W_PLUS, atol=1e-2), i


def test_npz_of_one_array_or_one_named_w(tmp_path: Path) -> None:
    # NVIDIA's projector writes projected_w.npz with "w" of shape (1, L, w_dim).
    np.savez(tmp_path / "projected_w.npz", w=W_PLUS[None])
    np.savez_compressed(tmp_path / "one.npz", latent=W_PLUS)
    np.savez(tmp_path / "several.npz", noise=np.zeros(3, np.float32), w=W_PLUS)
    for name in ("projected_w.npz", "one.npz", "several.npz"):
        assert np.array_equal(new_document(tmp_path / name).latent, W_PLUS), name


@pytest.mark.parametrize("make,message", [
    (lambda p: _savez(p, a=W_PLUS, b=W_PLUS), r"holds arrays a, b; a latent \.npz holds one"),
    (lambda p: np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True), r"should hold float"),
    (lambda p: np.save(p, np.zeros((18, 8), np.int32)), r"should hold float"),
    (lambda p: np.save(p, np.full((18, 8), np.nan, np.float32)), r"must be finite"),
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), r"not a readable latent"),
    (lambda p: p.write_bytes(b"hello"), r"expected a \.npy array or an \.npz"),
    (lambda p: p.write_bytes(np.lib.format.magic(1, 0) + b"\x10\x00{'descr': '<f4'"), r"truncated"),
])
def test_what_is_not_a_latent_is_one_line(tmp_path: Path, make: object, message: str) -> None:
    path = tmp_path / "bad.npy"
    make(path)  # type: ignore[operator]
    with pytest.raises(UserError, match=message) as info:
        new_document(path)
    assert "\n" not in str(info.value)


def test_a_missing_or_folder_latent(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="latent file not found"):
        new_document(tmp_path / "nope.npy")
    with pytest.raises(UserError, match="is not a file"):
        new_document(tmp_path)
