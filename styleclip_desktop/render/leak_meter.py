"""The leak meter on the engine: one layer's report from two renders at the preview size.

`measure` renders the stack as shown and with the layer at strength 0 (both from the
frame cache when the sweep or a drag already made them), embeds the two pictures with
CLIP on the engine's backend, and hands the numbers to `methods.leak.report`. Text
directions come from the renderer's text cache, so after the first report only the two
image embeddings are new work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from styleclip_desktop.document import GlobalDirectionParams, OptimizationParams, SliderParams
from styleclip_desktop.errors import UserError
from styleclip_desktop.methods import leak


def _target(params: Any, neutral: str) -> tuple[str, str] | None:
    """(target text, its neutral) the layer was asked to move towards, when it has one."""
    if isinstance(params, GlobalDirectionParams):
        return params.target, params.neutral
    if isinstance(params, OptimizationParams):
        return params.prompt, neutral
    if isinstance(params, SliderParams) and params.name != "unnamed":
        from styleclip_desktop.methods.keep import shorthands  # the slider vocabulary, read once

        prompt = shorthands().get(params.name)
        return (prompt, neutral) if prompt else None
    return None


def to_images(faces: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 faces -> (B, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def measure(engine: Any, doc: Any, layer_id: str, alphas: Mapping[str, float] | None = None,
            panel: leak.LeakPanel | None = None) -> leak.LeakReport:
    state = engine.snapshot(doc)
    layer = next((la for la in state.layers if la.id == layer_id), None)
    if layer is None:
        raise UserError("that layer is not in the document")
    renderer = engine.renderer
    if renderer.models.clip is None:
        raise UserError("the leak meter needs CLIP: download it with `models download clip-vit-b32`")
    panel = panel or leak.default_panel()
    shown = dict(alphas or {})
    with_layer, without = engine.faces(state, [shown, {**shown, layer_id: 0.0}], preview=True)
    images = to_images([with_layer, without])
    emb = np.asarray(engine.backend.encode_image(images), np.float64)

    def encode_text(texts: list[str]) -> np.ndarray:
        return np.stack([renderer.text_embedding(t) for t in texts])

    names = list(panel.attributes)
    dirs = leak.unit_directions(encode_text, panel.neutral, list(panel.attributes.values()))
    target = _target(layer.params, panel.neutral)
    t_dir = None if target is None else leak.unit_directions(encode_text, target[1], [target[0]])[0]
    identity = None
    arcface = getattr(renderer.models, "arcface", None)
    if arcface is not None:
        with torch.no_grad():
            ids = arcface.identity_features(images.to(next(arcface.parameters()).device)).cpu().numpy()
        identity = (ids[1], ids[0])
    return leak.report(emb[1], emb[0], names, dirs, None if target is None else target[0], t_dir, identity)
