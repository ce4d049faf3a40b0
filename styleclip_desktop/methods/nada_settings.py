"""The settings of a domain training run (StyleGAN-NADA), kept free of torch so the
command line can show their defaults without loading it (see `nada` for the method)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from styleclip_desktop.errors import UserError

REFERENCE_ROWS = 18  # W+ rows of the 1024 px generator that `layers_k` is given for


@dataclass(frozen=True)
class NadaConfig:
    """The published settings by default (README's train.py command and the notebook's
    adaptive-layer ("improve shape") setting)."""

    target: str
    source: str = "photo"
    iterations: int = 301
    lr: float = 0.002  # as given to the published trainer; Adam runs at lr * 4/5
    batch: int = 2
    # Rows trained per step at 1024 px (two thirds of 18); other sizes scale it the same
    # way, int(layers_k * rows / 18): 9 of 14 rows at 256 px, 5 of 8 at 32 px.
    layers_k: int = 12
    layer_select_iters: int = 1  # 0: no selection, every row trains
    layer_select_batch: int = 8
    psi: float = 1.0  # truncation of the training codes: none, as published
    seed: int = 0
    mixing: float = 0.9  # probability that a training batch is style-mixed
    preview_psi: float = 0.7  # truncation of the fixed preview codes
    preview_samples: int = 4
    micro_batch: int = 0  # samples per forward pass (0: the whole batch); saves memory, same math

    def summary(self) -> str:
        select = (f"top {self.layers_k}/18 rows, {self.layer_select_iters} step x {self.layer_select_batch}"
                  if self.layer_select_iters > 0 else "all rows")
        return (f"{self.source!r} -> {self.target!r}: {self.iterations} steps, batch {self.batch}, "
                f"lr {self.lr:g}, {select}, mixing {self.mixing:g}, seed {self.seed}")

    def check(self) -> None:
        if not self.target.strip() or not self.source.strip():
            raise UserError("Both the source and the target text are needed to train a domain.")
        if self.iterations < 0 or self.batch < 1 or self.layer_select_batch < 1 or self.layers_k < 1:
            raise UserError("Training steps must be 0 or more, and batch sizes and trained layers 1 or more.")
        if not self.lr > 0 or not 0.0 <= self.mixing <= 1.0 or self.micro_batch < 0:
            raise UserError("The learning rate must be positive and the mixing probability between 0 and 1.")


def layers_for(cfg: NadaConfig, num_ws: int) -> int:
    """How many W+ rows train per step for a generator with `num_ws` rows."""
    return max(1, min(num_ws, int(cfg.layers_k * num_ws / REFERENCE_ROWS)))


def config_from_dict(d: Mapping[str, Any]) -> NadaConfig:
    """A config back from `dataclasses.asdict`, ignoring keys it does not know."""
    names = {f.name for f in dataclasses.fields(NadaConfig)}
    return NadaConfig(**{k: v for k, v in d.items() if k in names})
