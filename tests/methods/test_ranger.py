"""Ranger against an independent implementation of the published algorithm.

The reference below is written from the algorithm's description (RAdam's rectification with
the threshold rho_t > 5, Lookahead every k steps, gradient centralisation of tensors with
more than one dimension), in float64 and plain tensor arithmetic, sharing no code with the
optimizer under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from styleclip_desktop.methods.ranger import Ranger

LR, BETA1, BETA2, EPS, K, ALPHA = 0.05, 0.95, 0.999, 1e-5, 6, 0.5
STEPS = 14  # past the un-rectified start (rho_t <= 5 for t <= 5) and two Lookahead syncs (6, 12)


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randn(16, 3, generator=g, dtype=torch.float64) + 2.0  # an offset: the gradients are not centred
    w0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b0 = torch.randn(3, generator=g, dtype=torch.float64)
    return x, y, w0, b0


def _loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ w.T + b - y) ** 2).mean()


def _reference(steps: int, centralize: bool = True, lookahead: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y, w0, b0 = _problem()
    params = [w0.clone(), b0.clone()]
    slow = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    rho_inf = 2.0 / (1.0 - BETA2) - 1.0
    out = []
    for t in range(1, steps + 1):
        w, b = (p.clone().requires_grad_(True) for p in params)
        grads = list(torch.autograd.grad(_loss(w, b, x, y), (w, b)))
        if centralize:  # the weight matrix only: each row's gradient minus its mean
            grads[0] = grads[0] - grads[0].mean(dim=1, keepdim=True)
        rho_t = rho_inf - 2.0 * t * BETA2 ** t / (1.0 - BETA2 ** t)
        for i, g in enumerate(grads):
            m[i] = BETA1 * m[i] + (1 - BETA1) * g
            v[i] = BETA2 * v[i] + (1 - BETA2) * g * g
            m_hat = m[i] / (1 - BETA1 ** t)
            if rho_t > 5.0:
                r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                params[i] = params[i] - LR * r * m_hat * math.sqrt(1 - BETA2 ** t) / (v[i].sqrt() + EPS)
            else:
                params[i] = params[i] - LR * m_hat
            if lookahead and t % K == 0:
                slow[i] = slow[i] + ALPHA * (params[i] - slow[i])
                params[i] = slow[i].clone()
        out.append((params[0].clone(), params[1].clone()))
    return out


def _ours(steps: int, state: dict | None = None, start: int = 0,  # type: ignore[type-arg]
          params: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict]:  # type: ignore[type-arg]
    x, y, w0, b0 = (t.float() for t in _problem())
    w = torch.nn.Parameter((params[0] if params else w0).clone())
    b = torch.nn.Parameter((params[1] if params else b0).clone())
    opt = Ranger([w, b], lr=LR)
    if state is not None:
        opt.load_state_dict(state)
    out = []
    for _ in range(start, steps):
        opt.zero_grad()
        _loss(w, b, x, y).backward()
        opt.step()
        out.append((w.detach().double().clone(), b.detach().double().clone()))
    return out, opt.state_dict()


def test_first_steps_equal_the_published_algorithm() -> None:
    ref = _reference(STEPS)
    ours, _ = _ours(STEPS)
    worst = 0.0
    for (rw, rb), (ow, ob) in zip(ref, ours, strict=True):
        worst = max(worst, float((rw - ow).abs().max()), float((rb - ob).abs().max()))
    assert worst < 2e-5, worst
    # The check can tell: without centralisation the weights take another path.
    plain = _reference(STEPS, centralize=False)
    assert float((plain[-1][0] - ref[-1][0]).abs().max()) > 1e-2
    # ... and without Lookahead they part at step 6, its first sync.
    no_lookahead = _reference(STEPS, lookahead=False)
    assert float((no_lookahead[4][0] - ref[4][0]).abs().max()) == 0.0
    assert float((no_lookahead[5][0] - ref[5][0]).abs().max()) > 1e-2


def test_the_defaults_are_the_published_ones() -> None:
    opt = Ranger([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.5)
    group = opt.param_groups[0]
    assert group["betas"] == (0.95, 0.999) and group["eps"] == 1e-5 and group["weight_decay"] == 0.0
    assert group["lookahead_k"] == 6 and group["lookahead_alpha"] == 0.5 and group["centralize"]


def test_state_dict_resumes_exactly() -> None:
    whole, _ = _ours(STEPS)
    first, state = _ours(4)
    rest, _ = _ours(STEPS, state=state, start=4, params=(first[-1][0].float(), first[-1][1].float()))
    for (aw, ab), (bw, bb) in zip(whole[4:], rest, strict=True):
        assert torch.equal(aw, bw) and torch.equal(ab, bb)


def test_bad_settings_are_refused() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError):
        Ranger(p, alpha=1.5)
    with pytest.raises(ValueError):
        Ranger(p, k=0)
