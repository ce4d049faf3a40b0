"""The document package stays free of Qt and torch, so the CLI and tests load it fast."""

from __future__ import annotations

import subprocess
import sys


def test_document_imports_neither_qt_nor_torch() -> None:
    code = (
        "import styleclip_desktop.document, sys; "
        "assert 'torch' not in sys.modules and 'PySide6' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('torch', 'PySide6')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
