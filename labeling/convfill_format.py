"""The ConvFill conversation format (JSONL), read and checked in one place.

One JSON object per line: `{"conversation": [{"user": str, "thoughts": [str], "response": [str]}, ...]}`
with `len(thoughts) == len(response)`; `thoughts[i]` is a knowledge chunk or the literal `"<sil>"`, and
`response[i]` the Talker phrase produced from it. Imports, exports and the tests all go through
`parse_line`, so a file this project writes is exactly what it (and `training/`) reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from convfill.errors import InputError
from convfill.jsonl import read_jsonl
from convfill.prompt import SIL


def validate(obj, where: str = "line") -> list[dict]:
    """Check one parsed line and return its turns; InputError names what is wrong and where."""
    if not isinstance(obj, dict) or not isinstance(obj.get("conversation"), list):
        raise InputError(f"{where}: expected an object with a \"conversation\" list")
    turns = obj["conversation"]
    for t, turn in enumerate(turns):
        w = f"{where}, turn {t}"
        if not isinstance(turn, dict):
            raise InputError(f"{w}: expected an object with user/thoughts/response")
        if not isinstance(turn.get("user"), str):
            raise InputError(f"{w}: \"user\" must be a string")
        th, rs = turn.get("thoughts"), turn.get("response")
        if not isinstance(th, list) or not isinstance(rs, list):
            raise InputError(f"{w}: \"thoughts\" and \"response\" must be lists")
        if len(th) != len(rs):
            raise InputError(f"{w}: {len(th)} thoughts but {len(rs)} responses (must be equal)")
        if not all(isinstance(x, str) for x in th + rs):
            raise InputError(f"{w}: thoughts and responses must be strings")
    return turns


def parse_line(line: str, where: str = "line") -> list[dict]:
    """Parse and validate one JSONL line; returns the list of turns."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg})") from e
    return validate(obj, where)


def read(path: str | Path) -> Iterator[tuple[int, list[dict]]]:
    """(line number, turns) for every non-empty line of a ConvFill JSONL file."""
    name = Path(path).name
    for n, obj in read_jsonl(path, InputError):
        yield n, validate(obj, f"{name}:{n}")


def is_sil(thought: str) -> bool:
    return thought.strip() == SIL
