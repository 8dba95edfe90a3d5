"""The ConvFill conversation format (JSONL): the one validator every reader and writer uses.

One JSON object per line: `{"conversation": [{"user": str, "thoughts": [str], "response": [str]}, ...]}`
with `len(thoughts) == len(response)`; `thoughts[i]` is a knowledge chunk or the literal `"<sil>"`, and
`response[i]` the Talker phrase produced from it.

Why one place: the labeling workbench imports and exports this format, `training/` learns from it and
`convfill.eval.talker` replays it. With one checker a file one of them writes is exactly what the others
read, and every tool rejects the same bad line with the same message. Callers pass their own error class
so their CLI edge reports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from .errors import ConvFillError, InputError
from .jsonl import read_jsonl
from .prompt import SIL


def is_sil(thought: str) -> bool:
    """True for a silence thought: `<sil>`, or an empty string, which the prompt renders as `<sil>`."""
    return thought.strip() in ("", SIL)


def validate(obj: object, where: str = "line", error: type[ConvFillError] = InputError) -> list[dict]:
    """Check one decoded line and return its turns; `error` names what is wrong, where, and in which turn."""
    if not isinstance(obj, dict) or not isinstance(obj.get("conversation"), list):
        raise error(f"{where}: expected an object with a \"conversation\" list")
    turns = obj["conversation"]
    if not turns:
        raise error(f"{where}: \"conversation\" has no turns")
    for t, turn in enumerate(turns):
        w = f"{where}, turn {t}"
        if not isinstance(turn, dict):
            raise error(f"{w}: expected an object with user/thoughts/response")
        missing = [k for k in ("user", "thoughts", "response") if k not in turn]
        if missing:
            raise error(f"{w}: missing {', '.join(missing)}")
        if not isinstance(turn["user"], str) or not turn["user"].strip():
            raise error(f"{w}: \"user\" must be a non-empty string")
        th, rs = turn["thoughts"], turn["response"]
        if not isinstance(th, list) or not isinstance(rs, list):
            raise error(f"{w}: \"thoughts\" and \"response\" must be lists")
        if not all(isinstance(x, str) for x in th + rs):
            raise error(f"{w}: thoughts and responses must be strings")
        if len(th) != len(rs):
            raise error(f"{w}: {len(th)} thoughts but {len(rs)} responses (they must pair up one to one)")
    return turns


def parse_line(line: str, where: str = "line", error: type[ConvFillError] = InputError) -> list[dict]:
    """Parse and validate one JSONL line; returns the list of turns."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg})") from e
    return validate(obj, where, error)


def read(path: str | os.PathLike, error: type[ConvFillError] = InputError,
         missing: str | None = None) -> Iterator[tuple[int, list[dict]]]:
    """(line number, turns) for every non-blank line of a ConvFill JSONL file; errors say `file:line`."""
    for n, obj in read_jsonl(path, error, missing):
        yield n, validate(obj, f"{path}:{n}", error)
