"""The offline tour the README promises: `models synthesize --out DIR`, then every command of
the README's command-line section, read from README.md itself, with only `--models-dir DIR`.

Only the counts that set how long a command runs are lowered (steps, seconds, fs3 images,
benchmark size); every command, argument and file name is the README's own.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
# Arguments added to a command so the tour takes seconds, not hours; see also `shortened`.
EXTRA = {"precompute": ["--images", "1"], "bench": ["--quick", "--suite", "core", "--repeats", "1"],
         "optimize": ["--steps", "3"],  # the published 300 steps add nothing on a synthetic generator
         "--animation": ["--seconds", "0.25", "--animation-size", "64"]}


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The command line"):]
    section = section[: section.index("\n## ", 5)]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "README's command-line section has no sh block"
    out = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if len(words) > 1 and words[0] == "styleclip-desktop":
            out.append(words[1:])  # the bare `styleclip-desktop` line starts the editor (tested in tests/ui)
    return out


def readme_recipe() -> str:
    """The TOML recipe of the README's Batches section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Batches"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None, "README's Batches section has no toml block"
    return block.group(1)


def shortened(args: list[str]) -> list[str]:
    out = list(args)
    for i, word in enumerate(out[:-1]):
        if word == "--steps":
            out[i + 1] = "3"
        elif word == "--seconds":
            out[i + 1] = "0.25"
    if out[:2] == ["domain", "train"]:
        out += ["--iterations", "2"]  # the published 301 steps take a day on a CPU
    for key, extra in EXTRA.items():
        if key in out:
            out += extra
    return out


def test_the_readme_lists_the_commands_this_test_walks() -> None:
    cmds = readme_commands()
    assert len(cmds) >= 18
    assert any(c[:1] == ["animate"] for c in cmds) and any(c[:2] == ["mapper", "train"] for c in cmds)


def test_every_readme_command_runs_on_a_synthesized_models_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    models = tmp_path / "models"
    assert main(["models", "synthesize", "--out", str(models), "--resolution", "32"]) == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    Image.fromarray(skimage_data.astronaut()).save(work / "photo.jpg", quality=92)  # a real, public-domain face
    lips = np.zeros((512, 512), np.uint8)  # a mask painted in any image editor: white where the edit acts
    lips[330:400, 180:330] = 255
    Image.fromarray(lips).save(work / "lips.png")
    (work / "look.toml").write_text(readme_recipe(), encoding="utf-8")  # the batch recipe, as the README shows it
    capsys.readouterr()
    failures = []
    for args in readme_commands():
        cmd = ["--models-dir", str(models), *shortened(args)]
        code = main(cmd)
        err = capsys.readouterr().err
        if code != 0:
            failures.append(f"styleclip-desktop {shlex.join(args)} -> exit {code}: {err.strip()[-300:]}")
    import sys

    if "ray" in sys.modules:  # the tour's --ray lines started a local cluster
        sys.modules["ray"].shutdown()
    assert not failures, "\n".join(failures)
    assert (work / "edited" / "photo.png").is_file()
    assert sorted(p.name for p in (work / "edited-all").glob("photo-look_face1.*")) == ["photo-look_face1.jpg",
                                                                                      "photo-look_face1.mp4"]
    assert (work / "edited-ray" / "photo-look.jpg").is_file()
    for name in ("face.png", "grey.png", "antiprompt.png", "smiling.jpg", "beard.png", "afro.png", "old.png",
                 "me.scproj", "me.png", "me.mp4", "me.npy", "purple.pt", "fs3.npy"):
        assert (work / name).is_file(), name
    assert Image.open(work / "smiling.jpg").size == Image.open(work / "photo.jpg").size  # pasted back
