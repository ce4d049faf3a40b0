"""Long commands report progress on stderr and keep stdout for results.

Under pytest stderr is not a terminal: each stage then prints a few plain lines (its start,
each tenth, its end). `--quiet` prints one line per stage. On a terminal a tqdm bar with
rate and time left; that path is checked with a stream that says it is a terminal.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleclip_desktop.cli import main, progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _default_progress(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Lines and bars wait a second before reporting each tenth; here every tenth counts.
    monkeypatch.setattr(progress, "BAR_DELAY_S", 0.0)
    progress.configure()
    yield
    progress.configure()


@pytest.fixture(scope="module")
def env(synthetic_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-progress")
    models = d / "models"
    models.mkdir()
    return {"dir": d, "models": models, "gen": synthetic_models["stylegan2-ada-pkl"], "clip": synthetic_models["clip"]}


def _base(env: dict[str, Path]) -> list[str]:
    return ["--generator", str(env["gen"]), "--clip", str(env["clip"]), "--models-dir", str(env["models"])]


def _lines(err: str, prefix: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(prefix)]


def test_mapper_train_prints_a_line_per_tenth_when_stderr_is_not_a_terminal(
        env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = env["dir"] / "m.pt"
    assert main([*_base(env), "mapper", "train", "--prompt", "a face with purple hair", "--out", str(out),
                 "--samples", "4", "--steps", "20", "--lambda-id", "0"]) == 0
    stdout, err = capsys.readouterr()
    assert stdout.splitlines() == [stdout.strip()] and "trained 20 steps" in stdout  # stdout: the result only
    lines = _lines(err, "mapper train: training mapper ")
    # One line per tenth (10 tenths, plus the first step): not one per step.
    assert 3 <= len(lines) <= 11, err
    assert lines[0].startswith("mapper train: training mapper 1/20 steps (5%")
    assert re.search(r"^mapper train: training mapper 2/20 steps \(10%, (about \S+|a moment) left\)$", err, re.M), err
    assert lines[-1].startswith("mapper train: training mapper 20/20 steps (100%, ")


def test_quiet_prints_one_line_per_stage(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = env["dir"] / "quiet.pt"
    assert main([*_base(env), "mapper", "train", "--prompt", "a face with grey hair", "--out", str(out),
                 "--samples", "4", "--steps", "6", "--lambda-id", "0", "--quiet"]) == 0
    stdout, err = capsys.readouterr()
    assert "trained 6 steps" in stdout
    assert _lines(err, "mapper train: ") == ["mapper train: training mapper, 6 steps"]
    # On a terminal too, --quiet means no bar: the one line per stage.
    stream = FakeTerminal()
    progress.configure(quiet=True, label="x", stream=stream, delay=0)
    step = progress.bar("rendering", "frame")
    for i in range(1, 11):
        step(i, 10)
    assert stream.getvalue() == "x: rendering, 10 frames\n"


def test_directions_stats_and_precompute_report_their_stages(env: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = _base(env)
    assert main([*base, "directions", "stats", "--samples", "300"]) == 0
    _, err = capsys.readouterr()
    assert _lines(err, "directions stats: style statistics ")[-1].startswith(
        "directions stats: style statistics 300/300 (100%")
    fs3 = env["dir"] / "fs3.npy"
    assert main([*base, "directions", "precompute", "--out", str(fs3), "--images", "1", "--batch", "16"]) == 0
    stdout, err = capsys.readouterr()
    assert stdout.startswith("fs3 ") and len(stdout.splitlines()) == 1
    lines = _lines(err, "directions precompute: fs3 relevance ")
    assert 2 <= len(lines) <= 11, err
    assert re.fullmatch(r"directions precompute: fs3 relevance (\d+)/\1 ch \(100%, .+\)", lines[-1]), lines[-1]


def test_bench_keeps_its_json_on_stdout_and_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--json", "--quick", "--suite", "core", "--repeats", "1"]) == 0
    stdout, err = capsys.readouterr()
    assert json.loads(stdout)["core"]["peak_rss_mb"] > 0
    lines = _lines(err, "bench: core on cpu ")
    assert lines[0] == "bench: core on cpu 0/4 measurements (0%)"
    assert lines[-1].startswith("bench: core on cpu 4/4 measurements (100%, ")
    assert len(lines) == 5


def test_invert_reports_the_refinement_steps(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from styleclip_desktop.nets.e4e import write_synthetic_e4e

    d = env["dir"]
    e4e = write_synthetic_e4e(d / "e4e.pt", num_ws=8, seed=0)
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(240, 200, 3) * 255).astype(np.uint8)).save(d / "photo.png")
    assert main(["--generator", str(env["gen"]), "invert", str(d / "photo.png"), "--landmarks",
                 "80,110,130,110,88,170,124,170", "--e4e", str(e4e), "--method", "project", "--steps", "10",
                 "-o", str(d / "w.npy")]) == 0
    stdout, err = capsys.readouterr()
    assert "inverted with project" in stdout and len(stdout.splitlines()) == 1
    assert _lines(err, "invert: importing the photo ")[-1].startswith("invert: importing the photo 4/4 stages (100%")
    steps = _lines(err, "invert: projection ")
    assert steps[-1].startswith("invert: projection 10/10 steps (100%") and len(steps) <= 11


def test_a_terminal_gets_a_bar_with_rate_and_time_left(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeTerminal()
    progress.configure(label="mapper train", stream=stream, delay=0, mininterval=0)
    step = progress.bar("training mapper", "step")
    for i in range(1, 5):
        step(i, 10)
    shown = stream.getvalue()
    # tqdm's own fields: done/total [elapsed<left, rate]
    assert re.search(r"training mapper:\s+\d+%.*\| *4/10 \[\d\d:\d\d<\d\d:\d\d, +[\d.?]+ *(step/s|s/step)\]", shown), shown
    assert "mapper train: " not in shown  # no plain lines on a terminal

    # A real command on a terminal stderr: the bar, and stdout unchanged.
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    out = env["dir"] / "tty.pt"
    assert main([*_base(env), "mapper", "train", "--prompt", "a face", "--out", str(out), "--samples", "4",
                 "--steps", "5", "--lambda-id", "0"]) == 0
    err = terminal.getvalue()
    assert "training mapper:" in err and "/5 [" in err and ("step/s" in err or "s/step" in err), err
    assert "mapper train: training mapper" not in err


def test_plain_lines_of_bytes_and_of_stages_of_unknown_size() -> None:
    stream = io.StringIO()
    progress.configure(label="models download", stream=stream)
    with progress.bar("ffhq", "B", unit_scale=True) as got:  # every tenth: BAR_DELAY_S is 0 here
        got(0, 2_000_000)
        got(1_000_000, 2_000_000)
        got(2_000_000, 2_000_000)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "models download: ffhq 0 B/2.0 MB (0%)"
    assert lines[1].startswith("models download: ffhq 1.0 MB/2.0 MB (50%, ") and lines[1].endswith(" left)")
    assert lines[2].startswith("models download: ffhq 2.0 MB/2.0 MB (100%, ")
    stream.truncate(0), stream.seek(0)
    with progress.bar("hashing", "B", unit_scale=True) as unknown:
        for n in range(5):
            unknown(n * 1000, None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "models download: hashing 0 B" and lines[1].startswith(
        "models download: hashing 4.0 KB (")


def test_a_stage_of_unknown_length_shows_its_clock_on_a_terminal_only() -> None:
    terminal = FakeTerminal()
    progress.configure(label="generate", stream=terminal, delay=0)
    with progress.stage("loading the models") as spinner:
        assert spinner is not None
        assert spinner.drawn.wait(30)
        # A counted bar inside it takes over the line.
        inner = progress.bar("style statistics")
        inner(1, 2)
        inner(2, 2)
    shown = terminal.getvalue()
    assert re.search(r"loading the models… \d\d:\d\d", shown), shown
    assert not spinner.is_alive() or spinner.stopped.is_set()
    plain = io.StringIO()
    progress.configure(label="generate", stream=plain, delay=0)
    with progress.stage("loading the models") as none:
        assert none is None
    progress.configure(label="generate", stream=terminal, quiet=True, delay=0)
    with progress.stage("loading the models") as none:
        assert none is None
    assert plain.getvalue() == ""


def test_a_stage_done_within_the_delay_prints_nothing() -> None:
    """A quick step (hashing a small file before an error) adds no line in front of the error."""
    stream = io.StringIO()
    progress.configure(label="models verify", stream=stream, delay=3600)
    step = progress.bar("ffhq", "B", unit_scale=True)
    for n in range(1, 21):
        step(n * 1_000_000, 20_000_000)
    with progress.bar("unknown size") as unknown:
        unknown(5)
    assert stream.getvalue() == ""
