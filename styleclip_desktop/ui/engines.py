"""Building the render engine for the editor, and reading what it holds.

torch is imported only inside these functions: the UI modules import this one at start-up,
before the window shows.
"""

from __future__ import annotations

from typing import Any


def make_engine(models: Any, device: Any, backend: str = "auto", **options: Any) -> Any:
    from styleclip_desktop.render.engine import Engine

    return Engine(models, device, backend, **options)


def generator_of(engine: Any) -> Any:
    """The engine's StyleGAN2 generator (for seeds, text-to-face and photo import)."""
    for holder in (getattr(engine, "models", None), getattr(engine, "renderer", None), engine):
        G = getattr(holder, "G", None)
        if G is not None:
            return G
    raise AttributeError("the engine does not expose its generator")


def clip_of(engine: Any) -> Any:
    return getattr(getattr(engine, "models", None), "clip", None)


def identities_of(engine: Any) -> dict[str, str]:
    """role -> sha256 of the loaded models (what a new document records it was made with)."""
    for holder in (engine, getattr(engine, "models", None)):
        ids = getattr(holder, "identities", None)
        if ids:
            return {str(k): str(v) for k, v in dict(ids).items() if v}
    return {}


def is_synthetic(engine: Any) -> bool:
    return bool(getattr(getattr(engine, "models", None), "synthetic", False))
