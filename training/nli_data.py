"""The NLI trainer's data: labelled pairs read from JSONL, the validation slice, token ids, length-bucketed batches.

Why its own module: `training.train_nli` (the training loop) and `training.nli_calibrate` (threshold fitting on
the same validation slice) read and encode pairs identically.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from convfill.errors import InputError
from convfill.jsonl import read_jsonl
from convfill.nli import LABELS, MAX_LENGTH, encode_pairs

ID2LABEL = {i: n for i, n in enumerate(LABELS)}
LABEL2ID = {n: i for i, n in ID2LABEL.items()}


@dataclass
class Pair:
    premise: str
    hypothesis: str
    label: int
    source: str = ""


def read_pairs(path: str | os.PathLike, limit: int | None = None) -> list[Pair]:
    """Read ``{"premise","hypothesis","label"[,"source"]}`` JSONL; unknown labels are an error."""
    out: list[Pair] = []
    for n, d in read_jsonl(path, InputError):
        lab = d["label"]
        if isinstance(lab, str):
            if lab not in LABEL2ID:
                raise InputError(f"{path}:{n}: unknown label {lab!r} (want one of {LABELS})")
            lab = LABEL2ID[lab]
        out.append(Pair(d["premise"], d["hypothesis"], int(lab), d.get("source", "")))
        if limit and len(out) >= limit:
            break
    return out


def train_val_pairs(args) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, validation pairs) from `--train`, `--val`, `--val-size/-source/-seed`.

    Validation (checkpoint choice, calibration) is `--val` or a held-out slice of the training file
    (preferring MNLI pairs, the dev genre mix), never the gold file we report on. Its own seed keeps the
    same held-out set across continued runs and for `calibrate`.
    """
    pairs = read_pairs(args.train, limit=args.limit)
    if args.val:
        return pairs, read_pairs(args.val, limit=args.val_size)
    cand = [i for i, p in enumerate(pairs) if p.source.startswith(args.val_source)] or list(range(len(pairs)))
    random.Random(args.val_seed).shuffle(cand)
    held = set(cand[:args.val_size])
    return [p for i, p in enumerate(pairs) if i not in held], [pairs[i] for i in sorted(held)]


def encode(tokenizer, pairs: list[Pair], max_len: int = MAX_LENGTH) -> list[tuple[list[int], list[int], int]]:
    """Tokenise once up front: (input_ids, token_type_ids, label) per pair, no padding.

    The ids come from `convfill.nli.encode_pairs`, the function the served judge uses, so the judge trains on
    the inputs it will see (same truncation, same default length).
    """
    enc = encode_pairs(tokenizer, [p.premise for p in pairs], [p.hypothesis for p in pairs], max_length=max_len)
    return [(ids, tt, p.label) for ids, tt, p in zip(enc["input_ids"], enc["token_type_ids"], pairs)]


def collate(items, pad_id: int = 0):
    """Pad a batch to its own longest item (dynamic padding)."""
    import torch

    n = max(len(x[0]) for x in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    tt = torch.zeros((len(items), n), dtype=torch.long)
    am = torch.zeros((len(items), n), dtype=torch.long)
    for i, (a, t, _) in enumerate(items):
        ids[i, :len(a)] = torch.tensor(a)
        tt[i, :len(t)] = torch.tensor(t)
        am[i, :len(a)] = 1
    labels = torch.tensor([x[2] for x in items], dtype=torch.long)
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am}, labels


def weighted_order(weights: list[float], rng: random.Random) -> list[int]:
    """A random permutation where item i tends to come earlier the larger ``weights[i]`` is.

    Efraimidis-Spirakis keys ``u ** (1 / w)``: with equal weights this is a plain shuffle. Used so that a
    run that only gets through part of an epoch (time budget) sees the pairs closest to the target
    distribution first, while every batch still mixes sources.
    """
    keys = [rng.random() ** (1.0 / w) if w > 0 else -1.0 for w in weights]
    return sorted((i for i in range(len(weights)) if weights[i] > 0), key=lambda i: -keys[i])


def bucketed_batches(items, batch_size: int, rng: random.Random, pool_batches: int = 50,
                     weights: list[float] | None = None):
    """Shuffle, sort pools of ``pool_batches`` batches by length, cut into batches, shuffle within a window.

    Keeps each batch's lengths close (little padding); the batch order is shuffled inside windows of
    ``pool_batches`` batches so the weighted order (see :func:`weighted_order`) survives.
    """
    idx = weighted_order(weights or [1.0] * len(items), rng)
    pool = batch_size * pool_batches
    batches = []
    for s in range(0, len(idx), pool):
        chunk = sorted(idx[s:s + pool], key=lambda i: len(items[i][0]))
        window = [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
        rng.shuffle(window)
        batches += window
    return batches


def source_weights(pairs: list[Pair], spec: list[str]) -> list[float]:
    """``["mnli=3", "conjnli=0.5"]`` -> one weight per pair (first matching source prefix, else 1)."""
    rules = []
    for s in spec or []:
        k, _, v = s.partition("=")
        rules.append((k, float(v)))
    return [next((w for k, w in rules if p.source.startswith(k)), 1.0) for p in pairs]
