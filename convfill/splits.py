"""The held-out split every module uses (Talker training and evaluation, the judge's ConvFill pairs).

A conversation is held out by a seeded hash of its content, so the split depends only on the data and the
seed, never on file order: `training.validate_corpus --split-out`, `training.nli_pairs` and the Talker
evaluation all cut the same conversations.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

HELDOUT_FRAC = 0.1


def split_key(obj: dict[str, Any], seed: int) -> str:
    """Seeded content hash: the split depends only on the conversation and the seed, not on file order."""
    canon = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{seed}\n{canon}".encode()).hexdigest()


def split(conversations: list[dict[str, Any]], seed: int = 0, frac: float = HELDOUT_FRAC
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, heldout): the `round(frac * n)` conversations with the smallest seeded hash are held out
    (at least one when n >= 2); both keep input order."""
    n = len(conversations)
    k = round(frac * n)
    if n >= 2:
        k = max(1, k)
    order = sorted(range(n), key=lambda i: split_key(conversations[i], seed))
    held = set(order[:k])
    return ([c for i, c in enumerate(conversations) if i not in held],
            [c for i, c in enumerate(conversations) if i in held])


def write_split(conversations: list[dict[str, Any]], out_dir: str | Path, seed: int = 0,
                frac: float = HELDOUT_FRAC) -> tuple[int, int]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, held = split(conversations, seed, frac)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", held)):
        with open(out / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(train), len(held)
