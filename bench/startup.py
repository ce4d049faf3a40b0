"""Start-up benchmark: how long one-shot commands take, against the libraries they need.

In one run and in fresh processes each time, measured alternately so a busy machine slows
every case alike: `import torch`, `import open_clip`, `generate --seed` and a global-direction
`edit` on a synthetic models directory written to a temporary folder (tiny resolution).
A command's own cost is what it adds to the import it cannot avoid:

- `generate --seed` renders a seeded face: it needs torch, not CLIP; goal: within 1 s of
  torch's import time;
- `edit` with a global direction encodes text with CLIP; goal: within 1.5 s of open_clip's
  import time.

Both commands run once untimed first, so their one-off work (converting the generator,
style statistics, the direction) is cached as it is for a user's second command.

Beside them: loading a full-size NVIDIA pickle (random config-f 1024, G and G_ema) once
it has been converted, as every command after the first does; goal: under 2 s warm.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Stages

GENERATE_GOAL_S = 1.0  # over torch's import time
EDIT_GOAL_S = 1.5  # over open_clip's import time
WARM_LOAD_GOAL_S = 2.0  # a converted full-size generator
RESOLUTION = 32
PROMPT = "a face with grey hair"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from styleclip_desktop.cli import main; sys.exit(main())", *args]


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    return time.perf_counter() - t0


def _warm_generator_load(root: Path, repeats: int, quick: bool) -> dict[str, Any]:
    """Seconds to load an NVIDIA pickle whose converted copy is cached (the first load converts)."""
    import torch

    from styleclip_desktop.nets.stylegan2 import Generator, GeneratorConfig
    from styleclip_desktop.weights.formats import load_generator
    from styleclip_desktop.weights.synthetic import tiny_config, write_ada_pkl

    torch.manual_seed(0)
    config = tiny_config(64) if quick else GeneratorConfig()
    pkl = write_ada_pkl(Generator(config), root / "generator.pkl")
    cache = root / "generator-cache"
    t0 = time.perf_counter()
    load_generator(pkl, cache_dir=cache)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        G = load_generator(pkl, cache_dir=cache)
        times.append(time.perf_counter() - t0)
        del G
    warm = statistics.median(times)
    return {"generator": f"{'narrow 64' if quick else 'config-f 1024'} px, random weights",
            "file_mb": round(pkl.stat().st_size / 2**20, 1), "first_load_s": round(first, 3),
            "warm_median_s": round(warm, 3), "warm_min_s": round(min(times), 3), "runs": len(times),
            "goal_s": WARM_LOAD_GOAL_S, "met": warm <= WARM_LOAD_GOAL_S}


def run(device: Any, repeats: int = 3, quick: bool = False,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    repeats = max(1, repeats)
    with tempfile.TemporaryDirectory(prefix="styleclip-bench-startup-") as tmp:
        root = Path(tmp)
        models, out = root / "models", root / "out"
        out.mkdir()
        env = dict(os.environ, STYLECLIP_CACHE_DIR=str(root / "cache"), STYLECLIP_DATA_DIR=str(root / "data"))
        dev = ["--device", "cuda" if str(device).startswith("cuda") else "cpu", "--quiet"]
        cases = {
            "import_torch": [sys.executable, "-c", "import torch"],
            "import_open_clip": [sys.executable, "-c", "import open_clip"],
            "generate_seed": _cli("--models-dir", str(models), "generate", "--seed", "1",
                                  "-o", str(out / "generate.png"), *dev),
            "edit_global": _cli("--models-dir", str(models), "edit", "--seed", "1", "--target", PROMPT,
                                "-o", str(out / "edit.png"), *dev),
        }
        stages = Stages(progress, 4 + repeats * len(cases))
        subprocess.run(_cli("models", "synthesize", "--out", str(models), "--resolution", str(RESOLUTION), "--quiet"),
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        stages()
        for name in ("generate_seed", "edit_global"):  # one-off work, cached for the timed runs
            _wall(cases[name], env)
            stages()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, cmd in cases.items():
                times[name].append(_wall(cmd, env))
                stages()
        warm_load = _warm_generator_load(root, repeats, quick)
        stages()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    generate_over = med["generate_seed"] - med["import_torch"]
    edit_over = med["edit_global"] - med["import_open_clip"]
    return {
        **{name: {"median_s": round(med[name], 3), "min_s": round(min(ts), 3), "runs": len(ts)}
           for name, ts in times.items()},
        "resolution": RESOLUTION,
        "generate_over_torch_s": round(generate_over, 3),
        "generate_over_torch_ratio": round(med["generate_seed"] / med["import_torch"], 3),
        "generate_goal_over_torch_s": GENERATE_GOAL_S,
        "generate_meets_goal": generate_over <= GENERATE_GOAL_S,
        "edit_over_open_clip_s": round(edit_over, 3),
        "edit_over_open_clip_ratio": round(med["edit_global"] / med["import_open_clip"], 3),
        "edit_goal_over_open_clip_s": EDIT_GOAL_S,
        "edit_meets_goal": edit_over <= EDIT_GOAL_S,
        "warm_generator_load": warm_load,
    }
