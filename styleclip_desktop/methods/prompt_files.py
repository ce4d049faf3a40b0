"""The editable prompt lists in resources/: a `neutral` text and one table of `name = "prompt"`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from styleclip_desktop.errors import UserError


def read_prompt_table(name: str, table: str, what: str, path: Path | None = None) -> tuple[str, dict[str, str], Any]:
    """(neutral, {name: prompt}, the whole file) from resources/`name` or `path`; a clear
    error names the file when it cannot be read or its table is empty."""
    from styleclip_desktop import paths

    p = path or paths.resources_dir() / name
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
        prompts = {str(k): str(v) for k, v in dict(data[table]).items()}
        neutral = str(data.get("neutral", "a face"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{what} {p} is not usable ({exc})") from None
    if not prompts:
        raise UserError(f"{what} {p} lists no {table}")
    return neutral, prompts, data
