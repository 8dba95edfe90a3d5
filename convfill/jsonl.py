"""Reading JSONL files: the one loop every data reader shares (QA items, NLI pairs, ConvFill conversations).

Why one place: each reader must skip blank lines, name `file:line` for bad JSON and say clearly when the file
is missing; written once, every CLI gives the same message shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConvFillError, InputError


def read_jsonl(path: str | os.PathLike, error: type[ConvFillError] = InputError,
               missing: str | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of `path`.

    Raises `error` (the caller's error class, so its CLI edge reports it) with `missing` (or "no such file")
    when the file is absent, and with `file:line` when a line is not JSON. Checking the objects' fields is
    the caller's job.
    """
    p = Path(path)
    if not p.is_file():
        raise error(missing or f"no such file: {p}")
    with p.open(encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{p}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
                yield n, obj
        except UnicodeDecodeError:
            # Decoding runs ahead in blocks, so the failing line is not known here: name the file.
            raise error(f"{p}: not UTF-8 text") from None
