#!/usr/bin/env python3
"""Cross-check our loaders against the official StyleGAN2-ADA, StyleCLIP and e4e code.

    python tools/peer_check.py --ada DIR --styleclip DIR --e4e DIR [--json] [--threads N]

Each DIR is a local checkout of NVlabs/stylegan2-ada-pytorch, orpatashnik/StyleCLIP or
omertov/encoder4editing; any subset may be given. For each one a child process puts DIR on
sys.path (nothing of it is copied here), builds small random networks with the official
classes, saves them the way the official training code saves its checkpoints, loads those
files with styleclip_desktop's loaders, runs both on the same inputs and reports the largest
absolute difference. Every file either side writes goes to a temporary directory (also the
child's working directory) that is deleted afterwards.

The official code is run unchanged except for what cannot run on a CPU-only machine without
a compiler: rosinality's compiled `op` package (e4e builds it from CUDA sources at import;
StyleCLIP's fused_leaky_relu moves its input to the GPU) is replaced by small pure-torch
equivalents written here, StyleCLIP's IDLoss is kept from calling `.cuda()`, and e4e's
`import matplotlib` (a plotting backend choice only) gets a stand-in when matplotlib is not
installed. Results say which checks ran on such a stand-in.

A check is `ok` when max|ours - official| <= atol + rtol * max|official|; the exit status is
1 if any check mismatched or failed, 0 otherwise (skipped checks do not fail the run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_MARK = "PEER_CHECK_RESULTS "
REPOS = {
    "ada": ("NVlabs/stylegan2-ada-pytorch", ("training/networks.py", "torch_utils/persistence.py", "legacy.py")),
    "styleclip": ("orpatashnik/StyleCLIP", ("mapper/latent_mappers.py", "models/stylegan2/model.py",
                                            "criteria/id_loss.py")),
    "e4e": ("omertov/encoder4editing", ("models/encoders/psp_encoders.py", "models/encoders/model_irse.py",
                                        "models/psp.py")),
}


@dataclass
class Result:
    repo: str
    check: str
    status: str  # ok | mismatch | skipped | error
    max_abs_diff: float | None = None
    ref_max_abs: float | None = None
    note: str = ""


# --- the parent: one child process per repository -------------------------------------------


def _git_head(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git work tree)"


def _run_child(name: str, repo: Path, args: argparse.Namespace) -> list[Result]:
    missing = [f for f in REPOS[name][1] if not (repo / f).is_file()]
    if missing:
        return [Result(name, "*", "skipped", note=f"{repo} is not a {REPOS[name][0]} checkout (no {missing[0]})")]
    with tempfile.TemporaryDirectory(prefix=f"peer-check-{name}-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(repo.resolve()),
               "--threads", str(args.threads), "--rtol", str(args.rtol), "--atol", str(args.atol)]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no __pycache__ left in the checkouts
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return [Result(**r) for r in json.loads(line[len(RESULT_MARK):])]
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return [Result(name, "*", "error", note=f"the check process exited with {proc.returncode}: {tail}")]


def _format_table(results: list[Result]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3g}"

    rows = [("repo", "check", "status", "max|diff|", "max|ref|", "note")]
    rows += [(r.repo, r.check, r.status, num(r.max_abs_diff), num(r.ref_max_abs), r.note) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(row)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, (github, _) in REPOS.items():
        ap.add_argument(f"--{name}", type=Path, metavar="DIR", help=f"a checkout of {github}")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in each check process (default 2)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="tolerance relative to max|official| (1e-4)")
    ap.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance (1e-6)")
    ap.add_argument("--child", nargs=2, metavar=("REPO", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child[0], Path(args.child[1]), args)
    chosen = [(name, getattr(args, name)) for name in REPOS if getattr(args, name) is not None]
    if not chosen:
        ap.error("give at least one of --ada, --styleclip, --e4e")
    results: list[Result] = []
    commits: dict[str, str] = {}
    for name, repo in chosen:
        commits[REPOS[name][0]] = _git_head(repo)
        print(f"checking {REPOS[name][0]} at {repo} ...", file=sys.stderr, flush=True)
        results += _run_child(name, repo, args)
    if args.json:
        print(json.dumps({"commits": commits, "results": [asdict(r) for r in results]}, indent=2))
    else:
        for github, commit in commits.items():
            print(f"{github}: {commit}")
        print(_format_table(results))
    return 1 if any(r.status in ("mismatch", "error") for r in results) else 0


# --- the child: runs the official code ------------------------------------------------------


class _Checks:
    """Collects one Result per comparison; an exception in one group of checks is recorded
    as an error (or a skip, for a missing dependency) without stopping the others."""

    def __init__(self, repo: str, rtol: float, atol: float) -> None:
        self.repo, self.rtol, self.atol = repo, rtol, atol
        self.results: list[Result] = []

    def compare(self, check: str, official: Any, ours: Any, note: str = "") -> None:
        import torch

        a, b = official.detach().double().cpu(), ours.detach().double().cpu()
        if a.shape != b.shape:
            self.results.append(Result(self.repo, check, "mismatch",
                                       note=f"shapes differ: official {tuple(a.shape)}, ours {tuple(b.shape)}"))
            return
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        ref = float(a.abs().max()) if a.numel() else 0.0
        finite = bool(torch.isfinite(a).all() and torch.isfinite(b).all())
        ok = finite and diff <= self.atol + self.rtol * ref
        self.results.append(Result(self.repo, check, "ok" if ok else "mismatch", diff, ref,
                                   note if finite else f"non-finite values; {note}".rstrip("; ")))

    @contextlib.contextmanager
    def group(self, label: str) -> Iterator[None]:
        try:
            yield
        except ModuleNotFoundError as exc:
            self.results.append(Result(self.repo, label, "skipped",
                                       note=f"the official code needs the module '{exc.name}', which is not installed"))
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.results.append(Result(self.repo, label, "error",
                                       note=f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"))


def _child(name: str, repo: Path, args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    sys.path.insert(0, str(repo))
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    checks = _Checks(name, args.rtol, args.atol)
    tmp = Path.cwd()
    # The official code prints progress; keep stdout for the results line.
    with contextlib.redirect_stdout(sys.stderr):
        {"ada": _check_ada, "styleclip": _check_styleclip, "e4e": _check_e4e}[name](repo, tmp, checks)
    print(RESULT_MARK + json.dumps([asdict(r) for r in checks.results]), flush=True)
    return 0


# --- random weights -------------------------------------------------------------------------


def _randn(shape: Any, gen: Any, scale: float = 1.0) -> Any:
    import torch

    return scale * torch.randn(shape, generator=gen)


def _perturb_constants_(module: Any, seed: int, is_constant: Callable[[str], bool]) -> None:
    """Official inits leave biases, noise strengths and similar at constants (0 or 1), which
    would let a loader that drops or mixes them up pass; add noise to those. Weights keep
    their official random init. Equalised-lr layers scale their bias at run time, so the
    noise is divided by that gain to matter as much everywhere."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            gain = float(getattr(mod, "bias_gain", getattr(mod, "lr_mul", 1.0)) or 1.0)
            for p_name, p in mod.named_parameters(recurse=False):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                if is_constant(full):
                    p.add_(_randn(p.shape, gen, 0.1 / gain))


def _randomize_norms_(module: Any, seed: int) -> None:
    """Batch-norm statistics and affine terms, PReLU slopes: random but tame, so inference-mode
    batch norm is really exercised."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.copy_(_randn(mod.running_mean.shape, gen, 0.1))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=gen))
                if mod.affine:
                    mod.weight.copy_(0.75 + 0.5 * torch.rand(mod.weight.shape, generator=gen))
                    mod.bias.copy_(_randn(mod.bias.shape, gen, 0.1))
            elif isinstance(mod, nn.PReLU):
                mod.weight.copy_(0.25 + 0.1 * torch.rand(mod.weight.shape, generator=gen))


def _rosinality_constant(name: str) -> bool:
    return name.endswith("bias") or name.endswith("noise.weight")


# --- stand-ins for rosinality's compiled ops ------------------------------------------------


def _pure_torch_op_module() -> types.ModuleType:
    """`models.stylegan2.op` with the same three names, in plain torch (CPU and GPU alike)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def fused_leaky_relu(input: Any, bias: Any, negative_slope: float = 0.2, scale: float = 2 ** 0.5) -> Any:
        # The bias runs along dim 1 (channels), except for 3-D input, where StyleCLIP's
        # version adds it along the last dim: its mappers feed (B, rows, 512) slices of W+.
        shape = [1, 1, -1] if input.ndim == 3 else [1, -1] + [1] * (input.ndim - 2)
        return F.leaky_relu(input + bias.view(*shape), negative_slope) * scale

    class FusedLeakyReLU(nn.Module):
        def __init__(self, channel: int, negative_slope: float = 0.2, scale: float = 2 ** 0.5) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(channel))
            self.negative_slope, self.scale = negative_slope, scale

        def forward(self, input: Any) -> Any:
            return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)

    def upfirdn2d(input: Any, kernel: Any, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Any:
        # Zero-stuff by `up`, pad both axes by (pad0, pad1) (negative crops), convolve every
        # channel with the kernel (true convolution, hence the flip), keep every `down`-th pixel.
        b, c, h, w = input.shape
        x = input.reshape(b * c, 1, h, w)
        if up > 1:
            x = F.pad(x.reshape(b * c, 1, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b * c, 1, h * up, w * up)
        p0, p1 = pad
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
        k = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None]
        x = F.conv2d(x, k)[:, :, ::down, ::down]
        return x.reshape(b, c, x.shape[2], x.shape[3])

    mod = types.ModuleType("models.stylegan2.op")
    mod.__dict__.update(FusedLeakyReLU=FusedLeakyReLU, fused_leaky_relu=fused_leaky_relu, upfirdn2d=upfirdn2d)
    return mod


def _install_rosinality_ops(replace_all: bool) -> str:
    """Make rosinality's model.py importable on a CPU. `replace_all` swaps the whole op
    package (e4e's compiles CUDA sources at import); otherwise only fused_leaky_relu is
    replaced and the official pure-torch upfirdn2d is kept (StyleCLIP's)."""
    stand_in = _pure_torch_op_module()
    if replace_all:
        import models.stylegan2  # noqa: F401  (the parent package, so the stand-in attaches to it)

        sys.modules["models.stylegan2.op"] = stand_in
        sys.modules["models.stylegan2"].op = stand_in  # type: ignore[attr-defined]
        import models.stylegan2.model  # noqa: F401

        return "rosinality ops: pure-torch stand-ins (fused_leaky_relu, upfirdn2d)"
    import models.stylegan2.model as model
    import models.stylegan2.op as op
    import models.stylegan2.op.fused_act as fused_act

    for target in (model, op, fused_act):
        target.fused_leaky_relu = stand_in.fused_leaky_relu  # type: ignore[attr-defined]
    return "rosinality ops: official upfirdn2d, pure-torch fused_leaky_relu"


@contextlib.contextmanager
def _cuda_is_a_no_op() -> Iterator[None]:
    from torch import nn

    saved = nn.Module.cuda
    nn.Module.cuda = lambda self, device=None: self  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.cuda = saved  # type: ignore[method-assign]


# --- NVlabs/stylegan2-ada-pytorch ----------------------------------------------------------

ADA_RES, ADA_CHANNEL_BASE, ADA_CHANNEL_MAX = 64, 4096, 128


def _ada_generator(networks: Any, seed: int, conv_clamp: float | None, num_fp16_res: int) -> Any:
    import torch

    torch.manual_seed(seed)
    G = networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=ADA_RES, img_channels=3,
                           mapping_kwargs=dict(num_layers=8),
                           synthesis_kwargs=dict(channel_base=ADA_CHANNEL_BASE, channel_max=ADA_CHANNEL_MAX,
                                                 num_fp16_res=num_fp16_res, conv_clamp=conv_clamp))
    _perturb_constants_(G, seed, lambda n: n.endswith("noise_strength") or n.endswith("bias"))
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(512, 512), None)[:, 0].mean(0))
    return G.eval().requires_grad_(False)


def _check_ada(repo: Path, tmp: Path, checks: _Checks) -> None:
    import copy
    import dataclasses

    import numpy as np
    import torch

    from styleclip_desktop.nets.stylegan2 import Generator as OurGenerator
    from styleclip_desktop.weights import formats, synthetic

    z = torch.from_numpy(np.random.RandomState(1).randn(3, 512).astype(np.float32))
    for label, clamp, fp16 in (("ada", None, 0), ("ada conv_clamp=0.5 fp16", 0.5, 2)):
        with checks.group(f"{label}: build and pickle"):
            from torch_utils import misc
            from training import networks
            from training.augment import AugmentPipe

            # Different weights, so a loader that read G instead of G_ema would show.
            G, G_ema = _ada_generator(networks, 10, clamp, fp16), _ada_generator(networks, 11, clamp, fp16)
            D = networks.Discriminator(c_dim=0, img_resolution=ADA_RES, img_channels=3,
                                       channel_base=ADA_CHANNEL_BASE, channel_max=ADA_CHANNEL_MAX,
                                       num_fp16_res=fp16, conv_clamp=clamp)
            augment = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                                  brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
            # As training_loop.py writes network-snapshot-*.pkl.
            snapshot: dict[str, Any] = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset",
                                                                     resolution=ADA_RES, use_labels=False))
            for key, module in (("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment)):
                snapshot[key] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
            official = snapshot["G_ema"]
            note = ""
            if clamp is not None:
                free = _ada_generator(networks, 11, None, fp16)
                misc.copy_params_and_buffers(official, free, require_all=True)
                with torch.no_grad():
                    ws = official.mapping(z, None)
                    effect = (official.synthesis(ws, noise_mode="const", force_fp32=True)
                              - free.synthesis(ws, noise_mode="const", force_fp32=True)).abs().max()
                note = f"the clamp changes the official image by up to {float(effect):.3g}"
            for protocol in (pickle.DEFAULT_PROTOCOL, 2):
                path = tmp / f"snapshot-p{protocol}.pkl"
                with open(path, "wb") as f:
                    pickle.dump(snapshot, f, protocol=protocol)
                with checks.group(f"{label}, pickle protocol {protocol}: load"):
                    ours = formats.load_generator(path)
                    with torch.no_grad():
                        ws_off = official.mapping(z, None, truncation_psi=0.7)
                        checks.compare(f"{label}, protocol {protocol}: mapping z -> W+ (psi 0.7)", ws_off,
                                       ours.broadcast_w(ours.mapping_forward(z, 0.7)))
                        checks.compare(f"{label}, protocol {protocol}: synthesis W+ -> image",
                                       official.synthesis(ws_off, noise_mode="const", force_fp32=True),
                                       ours(ws_off), note)
                path.unlink()

    with checks.group("ada legacy.py TF conversion"):
        import legacy

        tiny = synthetic.tiny_generator(ADA_RES, seed=3)
        clamped = OurGenerator(dataclasses.replace(tiny.config, conv_clamp=0.5))
        clamped.load_state_dict(tiny.state_dict())
        path = synthetic.write_tf_pkl(clamped.eval(), tmp / "tf.pkl")
        with open(path, "rb") as f:
            _tf_G, _tf_D, tf_Gs = legacy._LegacyUnpickler(f).load()
        official = legacy.convert_tf_generator(tf_Gs)
        ours = formats.load_generator(path)
        note = "our synthetic TF writer, converted by NVIDIA's legacy.py"
        with torch.no_grad():
            ws_off = official.mapping(z, None, truncation_psi=0.7)
            checks.compare("TF pkl via legacy.py: mapping z -> W+ (psi 0.7)", ws_off,
                           ours.broadcast_w(ours.mapping_forward(z, 0.7)), note)
            checks.compare("TF pkl via legacy.py: synthesis W+ -> image (conv_clamp 0.5)",
                           official.synthesis(ws_off, noise_mode="const", force_fp32=True), ours(ws_off), note)


# --- rosinality generator (as vendored by StyleCLIP and e4e) ---------------------------------


def _rosinality_generator(size: int, seed: int, channel_multiplier: int = 2) -> Any:
    import torch
    from models.stylegan2.model import Generator

    torch.manual_seed(seed)
    g = Generator(size, 512, 8, channel_multiplier=channel_multiplier)
    _perturb_constants_(g, seed, _rosinality_constant)
    return g.eval().requires_grad_(False)


def _check_rosinality_files(checks: _Checks, tmp: Path, note: str) -> None:
    import numpy as np
    import torch

    from styleclip_desktop.weights import formats

    g = _rosinality_generator(64, seed=20)
    with torch.no_grad():
        latent_avg = g.mean_latent(4096)
    z = torch.from_numpy(np.random.RandomState(2).randn(3, 512).astype(np.float32))
    for legacy in (False, True):
        kind = "legacy (pre-1.6) .pt" if legacy else "zip .pt"
        with checks.group(f"rosinality {kind}"):
            path = tmp / f"g-{'legacy' if legacy else 'zip'}.pt"
            # As rosinality's train.py saves (g_ema) plus the latent_avg its users add.
            torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg}, path,
                       _use_new_zipfile_serialization=not legacy)
            detected = formats.detect_generator_format(path)
            if detected != formats.ROSINALITY_PT:
                raise RuntimeError(f"detected as {detected!r}")
            ours = formats.load_generator(path)
            with torch.no_grad():
                checks.compare(f"rosinality {kind}: mapping z -> w", g.style(z), ours.mapping_forward(z))
                ws = g.style(z).unsqueeze(1).repeat(1, g.n_latent, 1)
                ws = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(5))  # distinct rows
                img, _ = g([ws], input_is_latent=True, randomize_noise=False)
                checks.compare(f"rosinality {kind}: synthesis W+ -> image", img, ours(ws), note)
                img, _ = g([z], truncation=0.7, truncation_latent=latent_avg, randomize_noise=False)
                checks.compare(f"rosinality {kind}: z -> image (psi 0.7)", img,
                               ours(ours.broadcast_w(ours.mapping_forward(z, 0.7))), note)


# --- orpatashnik/StyleCLIP ------------------------------------------------------------------


def _check_styleclip(repo: Path, tmp: Path, checks: _Checks) -> None:
    import torch

    with checks.group("rosinality op stand-ins"):
        note = _install_rosinality_ops(replace_all=False)
    _check_rosinality_files(checks, tmp, note)

    for levels_off in ((), ("--no_fine_mapper",)):
        label = "levels mapper" + (" (no fine mapper)" if levels_off else "")
        with checks.group(label):
            from mapper.options.train_options import TrainOptions
            from mapper.styleclip_mapper import StyleCLIPMapper

            from styleclip_desktop.nets.mapper import apply_levels, load_mapper

            decoder_file = tmp / "stylegan2-ffhq-config-f.pt"
            if not decoder_file.exists():
                torch.save({"g_ema": _rosinality_generator(1024, seed=30).state_dict()}, decoder_file)
            opts = TrainOptions().parser.parse_args(
                ["--exp_dir", str(tmp), "--description", "a face with purple hair",
                 "--stylegan_weights", str(decoder_file), *levels_off])
            net = StyleCLIPMapper(opts).eval()
            _perturb_constants_(net.mapper, 31, _rosinality_constant)
            path = tmp / "mapper.pt"
            torch.save({"state_dict": net.state_dict(), "opts": vars(opts)}, path)  # coach.py's layout
            ckpt = load_mapper(path, keep_decoder=True)
            w = torch.randn(3, 18, 512, generator=torch.Generator().manual_seed(6))
            with torch.no_grad():
                checks.compare(f"{label}: M(w)", net.mapper(w), ckpt.mapper(w))
                # mapper/scripts/inference.py's edit.
                checks.compare(f"{label}: w + 0.1 M(w)", w + 0.1 * net.mapper(w), apply_levels(ckpt.mapper, w))
            decoder = ckpt.decoder_state or {}
            own = net.decoder.state_dict()
            if set(decoder) != set(own):
                raise RuntimeError("the embedded decoder's keys differ")
            checks.compare(f"{label}: embedded decoder tensors", torch.cat([own[k].flatten() for k in own]),
                           torch.cat([decoder[k].flatten() for k in own]))

    with checks.group("IR-SE50 (StyleCLIP IDLoss)"):
        from criteria.id_loss import IDLoss
        from models.facial_recognition.model_irse import Backbone

        from styleclip_desktop.nets.irse import load_arcface

        torch.manual_seed(40)
        facenet = Backbone(input_size=112, num_layers=50, drop_ratio=0.6, mode="ir_se")
        _randomize_norms_(facenet, 40)
        path = tmp / "model_ir_se50.pth"
        torch.save(facenet.state_dict(), path)  # the released file is a bare state dict
        with _cuda_is_a_no_op():
            id_loss = IDLoss(argparse.Namespace(ir_se50_weights=str(path))).eval()
        ours = load_arcface(path)
        x = torch.rand(2, 3, 1024, 1024, generator=torch.Generator().manual_seed(7)) * 2 - 1
        with torch.no_grad():
            checks.compare("IR-SE50: identity features of a 1024px image (IDLoss.extract_feats)",
                           id_loss.extract_feats(x), ours.identity_features(x), "IDLoss kept off .cuda()")
            crop = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(8)) * 2 - 1
            checks.compare("IR-SE50: Backbone forward, 112px", id_loss.facenet(crop), ours(crop))


# --- omertov/encoder4editing ----------------------------------------------------------------


def _check_e4e(repo: Path, tmp: Path, checks: _Checks) -> None:
    import torch

    with checks.group("rosinality op stand-ins"):
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            stand_in = types.ModuleType("matplotlib")
            stand_in.use = lambda *a, **k: None  # type: ignore[attr-defined]
            sys.modules["matplotlib"] = stand_in
        note = _install_rosinality_ops(replace_all=True)

    with checks.group("e4e encoder"):
        from models.encoders import psp_encoders
        from models.psp import pSp
        from options.train_options import TrainOptions

        from styleclip_desktop.nets.e4e import load_e4e
        from styleclip_desktop.weights import formats

        opts = TrainOptions().parser.parse_args(["--exp_dir", str(tmp), "--start_from_latent_avg"])
        opts.device = "cpu"
        torch.manual_seed(50)
        encoder = psp_encoders.Encoder4Editing(50, "ir_se", opts)
        _randomize_norms_(encoder, 50)
        _perturb_constants_(encoder, 51, lambda n: n.startswith("styles.") and n.endswith("linear.bias"))
        decoder = _rosinality_generator(opts.stylegan_size, seed=52)
        with torch.no_grad():
            latent_avg = decoder.mean_latent(4096).repeat(encoder.style_count, 1)
        state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
        staged = tmp / "staged.pt"
        torch.save({"state_dict": state, "opts": vars(opts), "latent_avg": latent_avg}, staged)
        del encoder, decoder, state
        # The official pSp reads it back with strict=True, then it is saved as coach.py does.
        opts.checkpoint_path = str(staged)
        net = pSp(opts).eval()
        path = tmp / "e4e_ffhq_encode.pt"
        torch.save({"state_dict": net.state_dict(), "opts": vars(opts), "latent_avg": net.latent_avg}, path)
        staged.unlink()
        ours = load_e4e(path, keep_decoder=True)
        x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(9)) * 2 - 1
        with torch.no_grad():
            images, codes = net(x, resize=False, randomize_noise=False, return_latents=True)
            checks.compare("e4e: aligned face -> W+ (pSp, latent_avg added)", codes, ours(x))
            g_path = tmp / "decoder.pt"
            torch.save({"g_ema": ours.decoder_state}, g_path)
            G = formats.load_generator(g_path)
            checks.compare("e4e: embedded decoder, W+ -> 1024px image", images, G(codes), note)

    with checks.group("IR-SE50 backbone"):
        import configs.paths_config as paths_config
        from models.encoders.model_irse import Backbone

        from styleclip_desktop.nets.irse import load_arcface

        crop = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(10)) * 2 - 1
        face = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(11)) * 2 - 1
        for affine in (True, False):
            torch.manual_seed(60)
            facenet = Backbone(input_size=112, num_layers=50, mode="ir_se", drop_ratio=0.6, affine=affine).eval()
            _randomize_norms_(facenet, 60)
            path = tmp / f"model_ir_se50-{affine}.pth"
            torch.save(facenet.state_dict(), path)  # the released file is a bare state dict
            ours = load_arcface(path)
            with torch.no_grad():
                checks.compare(f"IR-SE50 (affine={affine}): Backbone forward, 112px", facenet(crop), ours(crop))
            if affine:  # e4e's IDLoss builds the affine variant, from the path in paths_config
                from criteria.id_loss import IDLoss

                paths_config.model_paths["ir_se50"] = str(path)
                id_loss = IDLoss().eval()
                with torch.no_grad():
                    checks.compare("IR-SE50: identity features of a 256px face (IDLoss.extract_feats)",
                                   id_loss.extract_feats(face), ours.identity_features(face))


if __name__ == "__main__":
    sys.exit(main())
