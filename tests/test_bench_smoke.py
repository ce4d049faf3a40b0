"""The benchmark command runs and prints JSON (numbers are for bench/, never asserted here)."""

from __future__ import annotations

import json

import pytest

from styleclip_desktop.cli import main


def test_bench_quick_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--json", "--quick", "--suite", "core", "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    core = report["core"]
    assert report["quick"] is True and report["environment"]["device"] == "cpu"
    for key in ("wplus_to_s", "synthesis_64_batch1", "synthesis_16_early_exit_batch1", "dt_ds_new_prompt_tiny_clip"):
        assert core[key]["median_ms"] > 0
    assert core["peak_rss_mb"] > 0
