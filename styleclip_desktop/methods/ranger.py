"""Ranger: RAdam + Lookahead + gradient centralisation, the optimizer the published mapper
trainer uses by default.

One step, for every parameter with a gradient:

1. gradient centralisation: a gradient with more than one dimension (the weight matrix of
   a linear layer, a conv kernel) has its mean over all but the first dimension removed,
   so each output unit's incoming gradient sums to zero; biases (1-D) are left alone;
2. a rectified-Adam update (PyTorch's own `RAdam`): while the variance estimate is too
   young (rho_t <= 5) the step is plain bias-corrected momentum, after that the
   rectified adaptive step;
3. Lookahead: every k-th update of a parameter, its slow copy (first set to the starting
   weights) moves alpha of the way to the fast weights, and the fast weights restart there.

The defaults are the published trainer's: beta1 0.95 (more momentum than Adam's 0.9),
eps 1e-5, k 6, alpha 0.5, no weight decay, the rectification threshold of 5 (RAdam's).
Everything lives in the optimizer state, so `state_dict()` / `load_state_dict()` resume a
run exactly and the state loads with `weights_only`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

DEFAULT_BETAS = (0.95, 0.999)
DEFAULT_EPS = 1e-5
DEFAULT_LOOKAHEAD_K = 6
DEFAULT_LOOKAHEAD_ALPHA = 0.5
SLOW_KEY = "lookahead_slow"


def centralize_(grad: Tensor) -> Tensor:
    """Remove the mean over every dimension but the first, in place, for tensors of 2+ dims."""
    if grad.dim() > 1:
        grad.sub_(grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True))
    return grad


class Ranger(torch.optim.RAdam):
    """`torch.optim.RAdam` with gradient centralisation before and Lookahead after each step."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, *, alpha: float = DEFAULT_LOOKAHEAD_ALPHA,
                 k: int = DEFAULT_LOOKAHEAD_K, betas: tuple[float, float] = DEFAULT_BETAS,
                 eps: float = DEFAULT_EPS, weight_decay: float = 0.0, centralize: bool = True) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"the Lookahead rate must be in [0, 1], got {alpha}")
        if k < 1:
            raise ValueError(f"the Lookahead interval must be at least 1, got {k}")
        # foreach=False: the per-tensor path, whose arithmetic is the published formula
        # term by term (the mapper has 24 tensors; fusing them gains nothing).
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
        for group in self.param_groups:
            group.setdefault("lookahead_alpha", alpha)
            group.setdefault("lookahead_k", k)
            group.setdefault("centralize", centralize)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        starting: dict[int, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["centralize"]:
                    centralize_(p.grad)
                if SLOW_KEY not in self.state[p]:
                    # Added after RAdam's step: RAdam initialises a parameter whose state is empty.
                    starting[id(p)] = p.detach().clone()
        super().step()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if id(p) in starting:
                    state[SLOW_KEY] = starting[id(p)]
                if int(state["step"]) % group["lookahead_k"] == 0:
                    slow = state[SLOW_KEY]
                    slow.add_(p.detach() - slow, alpha=group["lookahead_alpha"])
                    p.copy_(slow)
        return loss
