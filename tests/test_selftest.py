"""`--self-test` is what the installer runs on every built bundle: it must pass on the source tree."""

from __future__ import annotations

import pytest

from styleclip_desktop.cli import main


def test_self_test_passes(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--self-test"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    line = out.strip()
    assert line.startswith("styleclip-desktop self-test OK:") and "\n" not in line
    assert "changed" in line and "torch" in line and "onnxruntime" in line
