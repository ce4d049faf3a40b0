"""Where the product keeps its files: models, caches, autosaves, settings.

Every location can be overridden by an environment variable so that tests, portable
installs and users with a big second disk can put things where they want.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "StyleCLIP Desktop"
APP_SLUG = "styleclip-desktop"


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The models directory: `override`, else $STYLECLIP_MODELS_DIR, else the platform's data dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("STYLECLIP_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_SLUG, appauthor=False)) / "models"


def cache_dir() -> Path:
    """Derived, re-creatable files (converted checkpoints, text embeddings, ONNX exports)."""
    env = os.environ.get("STYLECLIP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir(APP_SLUG, appauthor=False))


def data_dir() -> Path:
    """User data that is not a model: prompt history, autosaves of unsaved projects."""
    env = os.environ.get("STYLECLIP_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_SLUG, appauthor=False))


def demo_models_dir() -> Path:
    """Where the editor's "Use Synthetic Demo Models" and a bare `models synthesize` write
    the synthetic models directory (one folder for both, so projects move between them)."""
    return data_dir() / "demo-models"


def resources_dir() -> Path:
    """The read-only `resources/` folder, in a source checkout or inside a frozen bundle."""
    frozen = getattr(sys, "_MEIPASS", None)
    candidates = []
    if frozen:
        candidates.append(Path(frozen) / "resources")
    candidates.append(Path(__file__).resolve().parent.parent / "resources")
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]
