"""The resumable state of a domain training run: weights touched so far, optimizer moments,
random-number state, losses and the best weights seen, and its checkpoint file.

A checkpoint is written atomically (a temporary file, then a rename) and read back with
tensors-only unpickling. Resuming from it continues the run exactly: the result equals an
uninterrupted run with the same settings and seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from styleclip_desktop.document.atomic import atomic_write
from styleclip_desktop.errors import UserError

FORMAT = "styleclip-desktop/nada-checkpoint/1"


class Adam:
    """Adam with a step count per parameter, so a layer that sits out a step (not selected)
    keeps its moments and bias correction as they were."""

    def __init__(self, lr: float, betas: tuple[float, float], eps: float = 1e-8) -> None:
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m: dict[str, Tensor] = {}
        self.v: dict[str, Tensor] = {}
        self.t: dict[str, int] = {}

    @torch.no_grad()
    def step(self, params: dict[str, torch.nn.Parameter]) -> None:
        for name, p in params.items():
            g = p.grad
            if g is None:
                continue
            if name not in self.m:
                self.m[name], self.v[name], self.t[name] = torch.zeros_like(p), torch.zeros_like(p), 0
            m, v = self.m[name], self.v[name]
            self.t[name] += 1
            t = self.t[name]
            m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            denom = (v / (1.0 - self.b2**t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1.0 - self.b1**t))


@dataclass
class RunState:
    """Everything that changes while a run goes on."""

    step: int
    rng: torch.Generator
    adam: Adam
    rows: set[int] = field(default_factory=set)
    losses: list[float] = field(default_factory=list)
    best_loss: float = float("inf")
    best_step: int = 0
    best_rows: set[int] = field(default_factory=set)
    best_values: dict[str, Tensor] = field(default_factory=dict)


def fingerprint(G: Any, config: Any, extra_ws: Tensor | None) -> str:
    """What a checkpoint must match to be resumed: the base weights, the settings, the user's latents."""
    h = hashlib.sha256()
    h.update(repr(sorted(dataclasses.asdict(config).items())).encode())
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    if extra_ws is not None:
        h.update(np.ascontiguousarray(extra_ws.detach().float().cpu().numpy()).tobytes())
    return h.hexdigest()


def _cpu(values: dict[str, Tensor]) -> dict[str, Tensor]:
    return {n: t.detach().cpu().clone() for n, t in values.items()}


def save(path: Path, state: RunState, current: dict[str, Tensor], print_: str) -> None:
    """Write the run's state atomically; `current` holds the touched weights as they are now."""
    payload = {
        "format": FORMAT, "fingerprint": print_, "step": state.step, "rng": state.rng.get_state(),
        "rows": sorted(state.rows), "losses": list(state.losses), "values": _cpu(current),
        "adam_m": _cpu(state.adam.m), "adam_v": _cpu(state.adam.v), "adam_t": dict(state.adam.t),
        "best_loss": state.best_loss, "best_step": state.best_step, "best_rows": sorted(state.best_rows),
        "best_values": _cpu(state.best_values),
    }
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as e:
        raise UserError(f"Could not write the training checkpoint {path.name}: {e.strerror or e}.") from e


def load(path: Path, print_: str, adam: Adam, device: torch.device) -> tuple[RunState, dict[str, Tensor]]:
    """A saved run's state and its touched weights, after checking it belongs to this run."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise UserError(f"The training checkpoint {path.name} does not exist.") from e
    except Exception as e:  # a damaged or foreign file: any unpickling failure
        raise UserError(f"{path.name} is not a domain training checkpoint, or it is damaged.") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path.name} is not a domain training checkpoint.")
    if payload["fingerprint"] != print_:
        raise UserError(f"The checkpoint {path.name} belongs to another training run "
                        "(other texts, settings, seed or generator), so it cannot be resumed here.")
    rng = torch.Generator()
    rng.set_state(payload["rng"])
    adam.m = {n: t.to(device) for n, t in payload["adam_m"].items()}
    adam.v = {n: t.to(device) for n, t in payload["adam_v"].items()}
    adam.t = {n: int(t) for n, t in payload["adam_t"].items()}
    state = RunState(
        step=int(payload["step"]), rng=rng, adam=adam, rows=set(int(r) for r in payload["rows"]),
        losses=[float(x) for x in payload["losses"]], best_loss=float(payload["best_loss"]),
        best_step=int(payload["best_step"]), best_rows=set(int(r) for r in payload["best_rows"]),
        best_values={n: t.to(device) for n, t in payload["best_values"].items()},
    )
    return state, {n: t.to(device) for n, t in payload["values"].items()}
