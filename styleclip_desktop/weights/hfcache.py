"""CLIP weights live in the Hugging Face cache, shared with open_clip and other tools.

open_clip's `pretrained='openai'` for ViT-B-32 resolves to a file in the hub repo
timm/vit_base_patch32_clip_224.openai; fetching that file with huggingface_hub puts it
exactly where `open_clip.create_model_and_transforms('ViT-B-32-quickgelu', pretrained='openai')`
will look, so a user who already has it pays nothing. Checking presence only reads the
cache folder (never the network), and offline mode (HF_HUB_OFFLINE=1) is respected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.weights.catalog import ModelEntry
from styleclip_desktop.weights.download import CancelToken, ProgressFn, is_cancelled

_TRUE = ("1", "true", "yes", "on")


def hub_cache_dir() -> Path:
    """The hub cache folder, read from the environment now rather than at import time."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hub_endpoint() -> str | None:
    """$HF_ENDPOINT, read now (huggingface_hub reads it once, at import), else the download
    mirror's copy of huggingface.co; None means huggingface_hub's default."""
    from styleclip_desktop.weights.download import mirror_base

    env = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if env:
        return env
    base = mirror_base()
    return f"{base}/huggingface.co" if base else None


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cached_file(entry: ModelEntry, cache_dir: Path | None = None) -> Path | None:
    """The entry's file in the hub cache, or None. Never touches the network."""
    if not entry.hf_repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    root = cache_dir or hub_cache_dir()
    for filename in entry.hf_filenames:
        try:
            found = try_to_load_from_cache(entry.hf_repo, filename, cache_dir=str(root))
        except Exception:  # a half-written or foreign cache folder is just "not there"
            continue
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def offline_hint(entry: ModelEntry) -> str:
    return (f"{entry.title} is not in the Hugging Face cache and offline mode is on "
            "(HF_HUB_OFFLINE=1), so it cannot be downloaded now. Unset HF_HUB_OFFLINE and run "
            f"`styleclip-desktop models download {entry.id}`, or copy the weights from another "
            f"machine and run `styleclip-desktop models import FILE` "
            f"({' or '.join(entry.hf_filenames)} from {entry.hf_repo})")


def download_to_cache(entry: ModelEntry, progress: ProgressFn | None = None,
                      cancel: CancelToken = None, cache_dir: Path | None = None) -> Path:
    """Fetch the entry into the hub cache (resumable by huggingface_hub itself)."""
    if not entry.hf_repo or not entry.hf_filenames:
        raise UserError(f"{entry.id} has no Hugging Face source in the catalog")
    have = cached_file(entry, cache_dir)
    if have is not None:
        return have
    if hf_offline():
        raise UserError(offline_hint(entry))
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in entry.hf_filenames:
        try:
            path = hf_hub_download(entry.hf_repo, filename, cache_dir=str(cache_dir or hub_cache_dir()),
                                   library_name="open_clip", tqdm_class=progress_bridge(progress, cancel),
                                   endpoint=hub_endpoint())
            return Path(str(path))
        except Cancelled:
            raise
        except Exception as exc:  # try the next file name (open_clip publishes two)
            errors.append(f"{filename}: {type(exc).__name__}: {exc}")
    raise UserError(f"could not download {entry.title} from the Hugging Face hub ({errors[-1]}); "
                    "check the network connection, or import the weights with `models import`")


def progress_bridge(progress: ProgressFn | None, cancel: CancelToken) -> Any:
    """A silent tqdm class that forwards huggingface_hub's progress to our callback.

    Raising `Cancelled` from `update` stops the transfer; huggingface_hub keeps its
    `.incomplete` file and resumes it next time.
    """
    from tqdm import tqdm

    class _Bridge(tqdm):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._done = int(kwargs.get("initial") or 0)
            self._total = kwargs.get("total")
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            if progress is not None:
                progress(self._done, int(self._total) if self._total else None)
            if is_cancelled(cancel):
                raise Cancelled("download cancelled; it resumes from where it stopped next time")
            return None

    return _Bridge
