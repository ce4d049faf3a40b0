"""Latent mapper: apply a trained mapper to W+, and train a new one for a prompt.

Applying: delta = alpha * 0.1 * M(w) with any sub-mapper switched off, so a mapper layer is
one more W+ offset in the stack (alpha 1 is the edit the mapper was trained for).

Training follows the published recipe: loss = CLIP loss + 0.8 * mean((w_hat - w)^2) + 0.1 *
ID loss (the ID term only with an ArcFace network), batch 2, lr 0.5, Ranger (RAdam +
Lookahead + gradient centralisation, `methods.ranger`), the published trainer's default;
Adam, its other choice, is an option. The mapper's equalized-lr parameters are stored at
1/0.01 scale, which is why a step of 0.5 is small for them. CLIP sees the image through the
published loss's input by default (`methods.clip_input`).

The training set is W+ codes whose rows differ, as the published mappers were trained on
(e4e inversions of real faces): the user's inverted latents, or style-mixed samples of the
generator standing in for them (`methods.mapper_data`).

Batches are a pure function of (seed, step): a resumed run draws exactly the batches the
uninterrupted run would have, so, with the optimizer state in the training-state file
beside the mapper (`NAME.train-state.pt`), it ends with identical weights.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from styleclip_desktop.errors import ModelFileError, UserError
from styleclip_desktop.methods.clip_input import check_clip_input, encode_for_loss
from styleclip_desktop.methods.mapper_data import (
    MIX_SOURCES,
    STAND_IN_NOTE,
    batch_indices,
    latent_batch,
    latents_fingerprint,
    load_latent_set,
    load_latent_sets,
    sample_latents,
)
from styleclip_desktop.methods.optimization import (
    CancelCheck,
    IdentityNet,
    Progress,
    identity_loss,
    is_cancelled,
    keep_loss,
    kept_features,
    prompt_features,
)
from styleclip_desktop.methods.optimization_settings import (
    CLIP_INPUT_EXACT,
    DEFAULT_CLIP_INPUT,
    DEFAULT_LAMBDA_KEEP,
)
from styleclip_desktop.methods.ranger import Ranger
from styleclip_desktop.nets.clip import ClipModel
from styleclip_desktop.nets.mapper import (
    LEVEL_NAMES,
    MAPPER_SCALE,
    LevelsMapper,
    load_mapper,
    official_opts,
    save_mapper,
)
from styleclip_desktop.nets.stylegan2 import Generator

DEFAULT_LR = 0.5
DEFAULT_LAMBDA_CLIP = 1.0
DEFAULT_LAMBDA_L2 = 0.8
DEFAULT_LAMBDA_ID = 0.1
DEFAULT_BATCH = 2
DEFAULT_STEPS = 50_000
DEFAULT_SAMPLES = 5000  # the published size of a sampled training set
OPTIMIZER_RANGER = "ranger"
OPTIMIZER_ADAM = "adam"
OPTIMIZERS = (OPTIMIZER_RANGER, OPTIMIZER_ADAM)
DEFAULT_OPTIMIZER = OPTIMIZER_RANGER  # the published trainer's default (its `--optim_name`)
TRAINING_KEY = "styleclip_desktop_training"  # the resume state inside mapper files of earlier versions
STATE_SUFFIX = ".train-state.pt"
STATE_FORMAT = "styleclip-desktop mapper training state 1"
# What a resume state written before these settings existed was trained with.
LEGACY_SETTINGS = {"optimizer": OPTIMIZER_ADAM, "clip_input": CLIP_INPUT_EXACT, "keep": [],
                   "lambda_keep": DEFAULT_LAMBDA_KEEP}

# The training-data helpers live in `mapper_data`; callers of this module get them here too.
__all__ = ["MIX_SOURCES", "STAND_IN_NOTE", "batch_indices", "latent_batch", "latents_fingerprint",
           "load_latent_set", "load_latent_sets", "sample_latents"]


def enabled_levels(coarse: bool = True, medium: bool = True, fine: bool = True) -> dict[str, bool]:
    return {"coarse": coarse, "medium": medium, "fine": fine}


def mapper_delta(mapper: LevelsMapper, ws: Tensor, alpha: float = 1.0,
                 enabled: Mapping[str, bool] | None = None) -> Tensor:
    """The W+ offset alpha * 0.1 * M(w), without gradients."""
    with torch.no_grad():
        return (alpha * MAPPER_SCALE) * mapper(ws.to(next(mapper.parameters()).device), enabled)


def apply_mapper(mapper: LevelsMapper, ws: Tensor, alpha: float = 1.0,
                 enabled: Mapping[str, bool] | None = None) -> Tensor:
    """The edited W+: w + alpha * 0.1 * M(w)."""
    return ws + mapper_delta(mapper, ws, alpha, enabled).to(ws.device)


def mapper_function(mapper: LevelsMapper) -> Callable[[Tensor, bool, bool, bool], Tensor]:
    """The renderer's shape of a mapper: (W+, coarse, medium, fine) -> mapped W+ at alpha 1;
    a layer then adds alpha * (mapped - w), which is alpha * 0.1 * M(w)."""

    def mapped(ws: Tensor, coarse: bool, medium: bool, fine: bool) -> Tensor:
        return apply_mapper(mapper, ws, 1.0, enabled_levels(coarse, medium, fine))

    return mapped


# --- training -------------------------------------------------------------------------


@dataclass(frozen=True)
class MapperTrainConfig:
    prompt: str
    steps: int = DEFAULT_STEPS
    batch: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    lambda_clip: float = DEFAULT_LAMBDA_CLIP
    lambda_l2: float = DEFAULT_LAMBDA_L2
    lambda_id: float = DEFAULT_LAMBDA_ID
    levels: tuple[str, ...] = LEVEL_NAMES
    seed: int = 0
    checkpoint_every: int = 500
    out_res: int | None = None  # render at a lower resolution (early exit) to save time
    optimizer: str = DEFAULT_OPTIMIZER
    clip_input: str = DEFAULT_CLIP_INPUT  # how CLIP sees the image: the published loss's by default
    keep: tuple[str, ...] = ()  # attributes held at each face's starting CLIP similarity
    lambda_keep: float = DEFAULT_LAMBDA_KEEP

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise UserError("The prompt is empty: type what the mapper should do to a face.")
        if self.lambda_keep < 0:
            raise UserError("lambda_keep must not be negative")
        object.__setattr__(self, "keep", tuple(self.keep))
        if self.steps < 1 or self.batch < 1 or self.checkpoint_every < 1:
            raise UserError("steps, batch and the checkpoint interval must be at least 1")
        if not self.levels or set(self.levels) - set(LEVEL_NAMES):
            raise UserError(f"levels must be a non-empty subset of {', '.join(LEVEL_NAMES)}")
        object.__setattr__(self, "levels", tuple(n for n in LEVEL_NAMES if n in self.levels))
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"the optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        check_clip_input(self.clip_input)

    def resume_key(self) -> dict[str, Any]:
        """What must match for a checkpoint to be continued (steps and the interval may change)."""
        d = asdict(self)
        for k in ("steps", "checkpoint_every"):
            d.pop(k)
        d["levels"] = list(self.levels)
        d["keep"] = list(self.keep)
        return d


@dataclass(frozen=True)
class TrainStep:
    step: int  # 1-based: the number of updates done
    total: float
    clip: float
    l2: float
    identity: float
    keep: float = 0.0  # sum of |change| of the kept attributes' CLIP similarities


@dataclass
class MapperTrainResult:
    mapper: LevelsMapper
    step: int
    cancelled: bool
    checkpoint: Path | None
    history: list[TrainStep] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [h.total for h in self.history]


def new_mapper(levels: tuple[str, ...], seed: int, device: torch.device | str = "cpu") -> LevelsMapper:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mapper = LevelsMapper(levels)
    return mapper.to(device)


def make_optimizer(mapper: LevelsMapper, cfg: MapperTrainConfig) -> torch.optim.Optimizer:
    """The published trainer's choices: Ranger with its own defaults, or plain Adam, at cfg.lr."""
    if cfg.optimizer == OPTIMIZER_ADAM:
        return torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    return Ranger(mapper.parameters(), lr=cfg.lr)


def state_path(out_path: str | os.PathLike[str]) -> Path:
    """Where the resume state of the mapper file `out_path` lives: `NAME.train-state.pt` beside it."""
    p = Path(out_path)
    return p.with_name(p.stem + STATE_SUFFIX)


def mapper_loss(G: Generator, clip: ClipModel, mapper: LevelsMapper, ws: Tensor, text: Tensor,
                cfg: MapperTrainConfig, arcface: IdentityNet | None = None,
                kept: Tensor | None = None) -> tuple[Tensor, TrainStep]:
    """The training loss on one W+ batch: lambda_clip * CLIP + lambda_l2 * MSE + lambda_id * ID,
    plus lambda_keep * the kept attributes' similarity changes when `kept` (K, D) is given."""
    use_id = arcface is not None and cfg.lambda_id > 0
    with torch.no_grad():
        start = G(ws, out_res=cfg.out_res) if use_id or kept is not None else None
        reference = arcface.identity_features(start) if use_id and start is not None else None  # type: ignore[union-attr]
        kept_start = encode_for_loss(clip, start, cfg.clip_input) @ kept.T \
            if kept is not None and start is not None else None
    w_hat = ws + MAPPER_SCALE * mapper(ws)
    x_hat = G(w_hat, out_res=cfg.out_res)
    feats = encode_for_loss(clip, x_hat, cfg.clip_input)
    c = (1.0 - feats @ text.to(clip.device)).mean()
    l2 = F.mse_loss(w_hat, ws)
    idl = identity_loss(arcface, x_hat, reference).mean() if use_id else torch.zeros((), device=x_hat.device)  # type: ignore[arg-type]
    kl = keep_loss(feats, kept, kept_start) if kept is not None and kept_start is not None \
        else torch.zeros((), device=x_hat.device)
    total = cfg.lambda_clip * c + cfg.lambda_l2 * l2 + cfg.lambda_id * idl + cfg.lambda_keep * kl
    return total, TrainStep(0, float(total.detach()), float(c.detach()), float(l2.detach()), float(idl.detach()),
                            float(kl.detach()))


def _opts(G: Generator, cfg: MapperTrainConfig, n_latents: int, use_id: bool) -> dict[str, Any]:
    return official_opts(
        cfg.prompt, cfg.levels, stylegan_size=G.config.resolution, optim_name=cfg.optimizer, learning_rate=cfg.lr,
        batch_size=cfg.batch, clip_lambda=cfg.lambda_clip, latent_l2_lambda=cfg.lambda_l2,
        id_lambda=cfg.lambda_id if use_id else 0.0, max_steps=cfg.steps, save_interval=cfg.checkpoint_every,
        train_dataset_size=n_latents, trained_with="StyleCLIP Desktop", clip_input=cfg.clip_input,
        generator_sha256=str(getattr(G, "source_sha256", "")))


def _read_state(path: Path) -> Mapping[str, Any]:
    """The resume state: the side file, or (mapper files of earlier versions) inside the mapper file."""
    side = state_path(path)
    if side.is_file():
        from styleclip_desktop.nets.checkpoint import torch_load

        state = torch_load(side, what="mapper training state", mmap=False)
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ModelFileError(f"{side.name} is not a mapper training state written by this app")
        return state
    legacy = load_mapper(path).extra.get(TRAINING_KEY)
    if not isinstance(legacy, Mapping):
        raise UserError(f"{path.name} has no training state to resume ({side.name} is missing)")
    return legacy


def _resume(path: Path, mapper: LevelsMapper, opt: torch.optim.Optimizer, cfg: MapperTrainConfig,
            fingerprint: str) -> tuple[int, list[TrainStep]]:
    state = _read_state(path)
    stored = state.get("config")
    if isinstance(stored, Mapping):
        stored = {**LEGACY_SETTINGS, **stored}
    if stored != cfg.resume_key():
        raise UserError(f"{path.name} was trained with other settings (prompt, batch, lr, lambdas, levels, "
                        "seed, optimizer or CLIP input); resume with the same ones or choose a new output file")
    if state.get("latents") != fingerprint:
        raise UserError(f"{path.name} was trained on another latent set; resume with the same latents")
    weights = state.get("mapper")
    try:
        if isinstance(weights, Mapping):  # the side file keeps the weights its optimizer state belongs to
            mapper.load_state_dict(weights)
        else:
            mapper.load_state_dict(load_mapper(path).mapper.state_dict())
        opt.load_state_dict(state["optimizer"])
    except (KeyError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ModelFileError(f"{path.name}: the training state is damaged ({detail})") from None
    return int(state["step"]), _history_list(state.get("history"))


def _save_state(path: Path, state: Mapping[str, Any]) -> None:
    side = state_path(path)
    tmp = side.with_name(f".{side.name}.partial")
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, side)
    finally:
        tmp.unlink(missing_ok=True)


# A tensor, not a list of dicts: 50,000 steps of history stay small and load fast.
def _history_tensor(history: list[TrainStep]) -> Tensor:
    rows = [[h.step, h.total, h.clip, h.l2, h.identity, h.keep] for h in history]
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 6)


def _history_list(t: Any) -> list[TrainStep]:
    if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[1] not in (5, 6):  # 5: states from before keep
        return []
    return [TrainStep(int(r[0]), *(float(x) for x in r[1:])) for r in t.tolist()]


def train_mapper(G: Generator, clip: ClipModel, latents: Tensor, config: MapperTrainConfig, *,
                 arcface: IdentityNet | None = None, out_path: str | os.PathLike[str] | None = None,
                 resume: bool = False, progress: Progress | None = None,
                 on_step: Callable[[TrainStep], None] | None = None,
                 cancel: CancelCheck = None) -> MapperTrainResult:
    """Train (or, with `resume`, continue training) a levels mapper for `config.prompt`.

    `latents` is (N, L, w_dim) W+ codes with distinct rows, as `sample_latents` and
    `load_latent_set` give them ((N, w_dim) w vectors are broadcast, all rows equal). With
    `out_path`, the mapper file and its resume state (`state_path`) are written every
    `checkpoint_every` steps and when training ends or is cancelled; `cancel` is checked
    before every step, so a cancel stops within one step and the latest weights are saved.
    """
    cfg = config
    device = G.const.device
    use_id = arcface is not None and cfg.lambda_id > 0
    latents = latents.detach().float().cpu()
    fingerprint = latents_fingerprint(latents)
    text = prompt_features(clip, cfg.prompt)
    kept = kept_features(clip, cfg.keep) if cfg.keep and cfg.lambda_keep > 0 else None
    mapper = new_mapper(cfg.levels, cfg.seed, device).train()
    opt = make_optimizer(mapper, cfg)
    path = Path(out_path) if out_path is not None else None
    step = 0
    history: list[TrainStep] = []
    if resume and path is not None and path.exists():
        step, history = _resume(path, mapper, opt, cfg, fingerprint)
    opts = _opts(G, cfg, len(latents), use_id)
    saved_at = step

    def save() -> None:
        nonlocal saved_at
        if path is None:
            return
        # The state first: a crash between the two writes leaves a state one checkpoint ahead
        # of the mapper file, and a resume continues from the state, which holds its own weights.
        _save_state(path, {"format": STATE_FORMAT, "step": step, "mapper": mapper.state_dict(),
                           "optimizer": opt.state_dict(), "config": cfg.resume_key(),
                           "latents": fingerprint, "history": _history_tensor(history)})
        save_mapper(path, mapper, {**opts, "trained_steps": step})
        saved_at = step

    cancelled = False
    while step < cfg.steps:
        if is_cancelled(cancel):
            cancelled = True
            break
        ws = latent_batch(G, latents, batch_indices(len(latents), cfg.batch, step, cfg.seed))
        total, rec = mapper_loss(G, clip, mapper, ws, text, cfg, arcface, kept)
        if not math.isfinite(rec.total):
            # Stop before the update: the last checkpoint keeps the last good weights.
            raise UserError(f"training diverged at step {step + 1} (the loss is not finite); "
                            "try a lower learning rate")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        step += 1
        rec = TrainStep(step, rec.total, rec.clip, rec.l2, rec.identity, rec.keep)
        history.append(rec)
        if on_step is not None:
            on_step(rec)
        if progress is not None:
            progress(step, cfg.steps)
        if step % cfg.checkpoint_every == 0:
            save()
    if step != saved_at or (path is not None and not path.exists()):
        save()
    return MapperTrainResult(mapper.eval(), step, cancelled, path, history)
