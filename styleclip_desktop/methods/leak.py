"""The leak meter: what a layer changes besides what it was asked to change.

Render the stack with and without the layer, embed both pictures with CLIP, and read the
change along a fixed panel of attribute directions (resources/leak_panel.toml: age,
gender presentation, smile, glasses, hair colour, skin tone, head pose, lighting,
background), beside the change along the layer's own target. Each number is the CLIP
image change projected on that text direction, (E(with) - E(without)) · t, so the target's
and the attributes' numbers share one scale. Identity is the cosine of the two pictures'
ArcFace embeddings when ArcFace is loaded, else of their CLIP image embeddings, labelled
as such: 1.0 means unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARCFACE = "ArcFace"
CLIP_IMAGE = "CLIP image"


@dataclass(frozen=True)
class LeakPanel:
    neutral: str
    attributes: dict[str, str]  # name -> prompt


def load_panel(path: Path | None = None) -> LeakPanel:
    from styleclip_desktop.methods.prompt_files import read_prompt_table

    neutral, attributes, _ = read_prompt_table("leak_panel.toml", "attributes", "the leak meter's attribute list",
                                               path)
    return LeakPanel(neutral, attributes)


@functools.lru_cache(maxsize=1)
def default_panel() -> LeakPanel:
    """The built-in attribute list, read once per session (the meter runs after every render)."""
    return load_panel()


@dataclass(frozen=True)
class LeakReport:
    target: str | None  # the layer's own text, when it has one
    target_change: float | None  # change along the target's direction
    attributes: dict[str, float]  # name -> change along its direction
    identity: float  # cosine similarity of the two pictures (1.0: the same person)
    identity_by: str  # ARCFACE or CLIP_IMAGE

    def lines(self) -> list[str]:
        out = []
        if self.target is not None and self.target_change is not None:
            out.append(f"target  {self.target_change:+.3f}  {self.target}")
        out += [f"{name:<12} {value:+.3f}" for name, value in self.attributes.items()]
        out.append(f"identity {self.identity:.3f}  ({self.identity_by} cosine)")
        return out


def unit_directions(encode_text: Callable[[list[str]], np.ndarray], neutral: str,
                    prompts: Sequence[str]) -> np.ndarray:
    """(P, D): each prompt's unit text direction away from `neutral`."""
    e = np.asarray(encode_text([neutral, *prompts]), np.float64)
    d = e[1:] - e[0]
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), 1e-12)


def report(without: np.ndarray, with_layer: np.ndarray, names: Sequence[str], directions: np.ndarray,
           target: str | None = None, target_direction: np.ndarray | None = None,
           identity: tuple[np.ndarray, np.ndarray] | None = None) -> LeakReport:
    """The leak numbers from the two pictures' CLIP embeddings (D,), the panel's unit text
    directions (P, D), and, optionally, ArcFace embeddings of the two pictures."""
    change = np.asarray(with_layer, np.float64) - np.asarray(without, np.float64)
    attrs = {n: float(change @ d) for n, d in zip(names, directions, strict=True)}
    tc = None if target_direction is None else float(change @ np.asarray(target_direction, np.float64))
    if identity is not None:
        cos, by = float(_unit(np.asarray(identity[0], np.float64)) @ _unit(np.asarray(identity[1], np.float64))), ARCFACE
    else:
        cos, by = float(_unit(np.asarray(without, np.float64)) @ _unit(np.asarray(with_layer, np.float64))), CLIP_IMAGE
    return LeakReport(target, tc, attrs, cos, by)
