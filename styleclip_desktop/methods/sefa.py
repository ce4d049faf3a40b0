"""Sliders without a prompt or a download: closed-form directions from the generator's weights.

SeFa (Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs"): every style
vector is an affine map of a W+ row, s = A w + b, so the W directions that move the
styles most are the leading eigenvectors of AᵀA, with A the stacked affine weights of the
chosen layers (each output channel's row scaled to unit length, as published). We factorize
the conv layers of three groups of resolutions separately — coarse (4-8 px: pose, face
shape), middle (16-32 px: features, expression) and fine (64 px up: colour, light) — and
apply a direction to that group's W+ rows only.

Because the map is affine, a W+ edit is exactly a style-space edit: moving rows R by a·n
moves every style slot fed by a row in R by a·(A_slot n). `style_delta` returns that ds,
so a SeFa slider renders through the same S-space path as a global direction.

Directions carry no names of their own; `name_directions` asks CLIP which prompt of a
vocabulary (resources/slider_vocabulary.toml) each one's rendered change matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from styleclip_desktop.errors import Cancelled, ModelFileError, UserError
from styleclip_desktop.nets.stylegan2 import Generator, StyledConv, ToRGB

GROUPS: dict[str, tuple[int, int]] = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}
UNNAMED = "unnamed"


@dataclass(frozen=True)
class SefaBasis:
    """One group's directions: unit rows of `vectors` (k, w_dim), eigenvalues descending."""

    group: str
    rows: tuple[int, ...]  # the W+ rows a direction moves
    values: np.ndarray  # (k,)
    vectors: np.ndarray  # (k, w_dim)

    def share(self) -> np.ndarray:
        """Each direction's fraction of the total eigenvalue mass."""
        return self.values / max(float(self.values.sum()), 1e-30)


def _affine(layer: StyledConv | ToRGB) -> np.ndarray:
    """The layer's effective affine matrix (channels, w_dim), its runtime gain applied."""
    a = layer.affine
    return (a.weight.detach().double().cpu() * a.weight_gain).numpy()


def group_rows(G: Generator, group: str) -> tuple[int, ...]:
    """The W+ rows of the group's conv layers."""
    if group not in GROUPS:
        raise UserError(f"unknown layer group {group!r}; use one of {', '.join(GROUPS)}")
    lo, hi = GROUPS[group]
    return tuple(sorted({s.w_row for s in G.slots if not s.is_torgb and lo <= s.resolution <= hi}))


def stacked_weights(G: Generator, group: str) -> np.ndarray:
    """The group's conv affine matrices stacked (Σ channels, w_dim), each row unit length."""
    lo, hi = GROUPS[group]
    blocks = [_affine(layer) for slot, layer in zip(G.slots, G._styled_layers(), strict=True)
              if not slot.is_torgb and lo <= slot.resolution <= hi]
    if not blocks:
        raise UserError(f"this generator has no {group} layers")
    A = np.concatenate(blocks, 0)
    return A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-30)


def factorize(G: Generator, group: str) -> SefaBasis:
    A = stacked_weights(G, group)
    values, vectors = np.linalg.eigh(A.T @ A)  # symmetric: real, orthonormal eigenvectors
    order = np.argsort(values)[::-1]
    vecs = vectors[:, order].T.copy()
    # An eigenvector's sign is arbitrary: fix it (largest component positive) so a slider's
    # "+" means the same thing on every machine.
    flip = np.sign(vecs[np.arange(len(vecs)), np.abs(vecs).argmax(1)])
    vecs *= flip[:, None]
    return SefaBasis(group, group_rows(G, group), np.clip(values[order], 0.0, None), vecs)


def factorize_all(G: Generator) -> dict[str, SefaBasis]:
    return {g: factorize(G, g) for g in GROUPS if group_rows(G, g)}


def style_delta(G: Generator, direction: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """ds (S,) such that s + a·ds is exactly the styles of W+ with `rows` moved by a·direction."""
    n = np.asarray(direction, dtype=np.float64)
    if n.shape != (G.config.w_dim,):
        raise UserError(f"a direction must have {G.config.w_dim} numbers, not {n.shape}")
    wanted = set(rows)
    parts = [(_affine(layer) @ n) if slot.w_row in wanted else np.zeros(slot.dim)
             for slot, layer in zip(G.slots, G._styled_layers(), strict=True)]
    return np.concatenate(parts).astype(np.float32)


# --- cache ----------------------------------------------------------------------------------


def save_bases(bases: Mapping[str, SefaBasis], path: Path) -> None:
    from styleclip_desktop.document.atomic import atomic_write

    arrays: dict[str, np.ndarray] = {}
    for g, b in bases.items():
        arrays[f"{g}_values"], arrays[f"{g}_vectors"] = b.values, b.vectors
        arrays[f"{g}_rows"] = np.asarray(b.rows, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load_bases(path: Path, G: Generator) -> dict[str, SefaBasis]:
    """Cached bases for `G`; a file that does not fit it raises ModelFileError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for g in GROUPS:
                if f"{g}_vectors" not in z:
                    continue
                b = SefaBasis(g, tuple(int(r) for r in z[f"{g}_rows"]), z[f"{g}_values"], z[f"{g}_vectors"])
                if b.vectors.shape[1:] != (G.config.w_dim,) or b.rows != group_rows(G, g):
                    raise ModelFileError(f"{path.name} was computed for another generator")
                out[g] = b
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path.name} is not a readable SeFa cache ({exc})") from None
    return out


def cached_bases(G: Generator, path: Path) -> dict[str, SefaBasis]:
    """The bases from `path` when it fits `G`, else computed (a second at most) and saved there."""
    if path.is_file():
        try:
            return load_bases(path, G)
        except ModelFileError:
            pass  # recomputed below: the cache is only a convenience
    bases = factorize_all(G)
    try:
        save_bases(bases, path)
    except OSError:
        pass  # a read-only cache costs the recomputation next time, nothing else
    return bases


# --- names from CLIP --------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    neutral: str
    prompts: dict[str, str]  # slider name -> prompt
    min_score: float

    def digest(self) -> str:
        text = repr((self.neutral, sorted(self.prompts.items()), self.min_score))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_vocabulary(path: Path | None = None) -> Vocabulary:
    from styleclip_desktop.methods.prompt_files import read_prompt_table

    neutral, prompts, data = read_prompt_table("slider_vocabulary.toml", "prompts", "the slider vocabulary", path)
    try:
        return Vocabulary(neutral, prompts, float(data.get("min_score", 0.15)))
    except (TypeError, ValueError) as exc:
        raise UserError(f"the slider vocabulary's min_score is not a number ({exc})") from None


@dataclass(frozen=True)
class NamedDirection:
    group: str
    index: int  # rank within its group (0: the largest eigenvalue)
    name: str  # a vocabulary name, or UNNAMED
    prompt: str | None
    score: float  # cosine of the rendered CLIP change with the prompt's text direction
    sign: int  # +1 or -1: which way along the eigenvector moves towards the name
    share: float  # fraction of the group's eigenvalue mass
    scores: dict[str, float] = field(default_factory=dict, compare=False)


Renderer = Callable[[torch.Tensor], torch.Tensor]  # flat S (B, S) -> images (B, 3, H, W) in [-1, 1]
Encoder = Callable[[torch.Tensor], np.ndarray]  # images -> (B, D) unit embeddings


def text_directions(encode_text: Callable[[list[str]], np.ndarray], vocab: Vocabulary) -> np.ndarray:
    """(P, D) unit vectors: each prompt's embedding minus the neutral one's."""
    e = np.asarray(encode_text([vocab.neutral, *vocab.prompts.values()]), dtype=np.float64)
    d = e[1:] - e[0]
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def image_direction(render: Renderer, encode: Encoder, s: torch.Tensor, ds: np.ndarray, alpha: float) -> np.ndarray:
    """Unit CLIP direction of an edit: the mean of E(s + a·ds) - E(s - a·ds) over the faces in `s`."""
    delta = torch.from_numpy(ds).to(s.dtype).to(s.device) * alpha
    plus = np.asarray(encode(render(s + delta)), dtype=np.float64)
    minus = np.asarray(encode(render(s - delta)), dtype=np.float64)
    d = (plus - minus).mean(0)
    return d / max(float(np.linalg.norm(d)), 1e-12)


def name_directions(G: Generator, bases: Mapping[str, SefaBasis], render: Renderer, encode: Encoder,
                    text_dirs: np.ndarray, vocab: Vocabulary, *, top: int = 8, alpha: float = 3.0,
                    faces: int = 4, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    cancelled: Callable[[], bool] = lambda: False) -> list[NamedDirection]:
    """The `top` directions of each group, each with its best-matching vocabulary name."""
    names = list(vocab.prompts)
    with torch.no_grad():
        s = torch.cat(G.w_to_s(G.sample_w(faces, seed=seed)), 1)
    todo = [(g, i) for g, b in bases.items() for i in range(min(top, len(b.vectors)))]
    out: list[NamedDirection] = []
    for done, (g, i) in enumerate(todo):
        if cancelled():
            raise Cancelled("naming the sliders was cancelled")
        b = bases[g]
        d = image_direction(render, encode, s, style_delta(G, b.vectors[i], b.rows), alpha)
        cos = text_dirs @ d
        best = int(np.abs(cos).argmax())
        score = float(abs(cos[best]))
        named = score >= vocab.min_score
        out.append(NamedDirection(g, i, names[best] if named else UNNAMED, vocab.prompts[names[best]] if named else None,
                                  score, 1 if cos[best] >= 0 else -1, float(b.share()[i]),
                                  {n: float(c) for n, c in zip(names, cos, strict=True)}))
        if progress is not None:
            progress(done + 1, len(todo))
    return out


def name_with_clip(G: Generator, clip: Any, bases: Mapping[str, SefaBasis], vocab: Vocabulary, *,
                   top: int = 8, faces: int = 4, progress: Callable[[int, int], None] | None = None,
                   cancelled: Callable[[], bool] = lambda: False) -> list[NamedDirection]:
    """`name_directions` with `G` rendering (at most 256 px: CLIP sees 224) and `clip`
    (a `nets.clip.ClipModel`) encoding, as the Sliders panel and `directions sefa` name them."""
    from styleclip_desktop.nets.stylegan2 import unpack_styles

    device = next(G.parameters()).device
    out_res = min(G.config.resolution, 256)

    def render(s: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return G.synthesize(unpack_styles(s.to(device), G.style_dims), out_res=out_res)

    def encode(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return clip.encode_image(images).cpu().numpy()  # type: ignore[no-any-return]

    text = text_directions(lambda t: clip.encode_text(t).cpu().numpy(), vocab)
    return name_directions(G, bases, render, encode, text, vocab, top=top, faces=faces, progress=progress,
                           cancelled=cancelled)


# --- what the Sliders panel and the command line share ------------------------------------------


def bases_path(G: Generator) -> Path:
    from styleclip_desktop import paths
    from styleclip_desktop.render.session import generator_key

    return paths.cache_dir() / "directions" / generator_key(G) / "sefa.npz"


def names_path(G: Generator, clip_hash: str, vocab: Vocabulary) -> Path:
    """Where the names found for `G`'s directions by one CLIP and one vocabulary are kept."""
    return bases_path(G).with_name(f"sefa-names-{str(clip_hash)[:12]}-{vocab.digest()}.json")


def save_names(named: Sequence[NamedDirection], path: Path) -> None:
    import json

    from styleclip_desktop.document.atomic import atomic_write

    rows = [{"group": d.group, "index": d.index, "name": d.name, "prompt": d.prompt, "score": d.score,
             "sign": d.sign, "share": d.share} for d in named]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(rows).encode()

    def write(f: Any) -> None:
        f.write(data)

    atomic_write(path, write)


def load_names(path: Path) -> list[NamedDirection]:
    """Names saved earlier; [] when there are none or the file is not readable."""
    import json

    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [NamedDirection(str(r["group"]), int(r["index"]), str(r["name"]),
                               None if r["prompt"] is None else str(r["prompt"]), float(r["score"]),
                               1 if int(r["sign"]) >= 0 else -1, float(r["share"])) for r in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def slider_params(basis: SefaBasis, index: int, name: str = UNNAMED, sign: int = 1) -> Any:
    """A Slider layer's parameters for one direction (`sign` -1: the named way is negative)."""
    from styleclip_desktop.document import SliderParams

    return SliderParams(name=name, group=basis.group, index=index, rows=basis.rows,
                        direction=(basis.vectors[index] * (1 if sign >= 0 else -1)).astype(np.float32))
