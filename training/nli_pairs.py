"""NLI training pairs from ConvFill conversations, so the offline judge learns the pairs it will label.

Why: the judge is trained on MNLI/SNLI, where a negation word in the hypothesis ("not", "no", "without",
"few") is a strong contradiction cue. ConvFill knowledge phrases are spoken paraphrases of their chunk
and use exactly such words ("Not many foods are rich in it." for "Few foods are rich in vitamin D."), so
the MNLI-trained judge calls some of them contradictions. Curated ConvFill data gives labelled pairs of
the workbench's own shape (premise rule: `convfill.nli.judge.premise_for`):

* knowledge phrase of a curated turn -> **entailment** (the corpus validator checks it restates its chunk);
* filler (`<sil>`) -> **neutral** (it may echo the question but adds no knowledge);
* a knowledge phrase with one number changed ("1813" -> "1816", "three" -> "five") -> **contradiction**,
  so the judge does not learn that a paraphrase-shaped pair is never a contradiction.

`--heldout` writes the pairs of the held-out 10% instead (`convfill.splits.split`, seed 0), for
measuring the judge on conversations it never saw. The split hashes each conversation's turns only, not its
`domain` tag, so it is not the Talker evaluation's split (which hashes the whole line); the shipped judge
was trained on this one, and keeping it keeps its held-out pairs unseen.

    python -m training.nli_pairs data/seed/part_*.jsonl --out runs/nli_convfill_train.jsonl
    python -m training.nli_pairs data/seed/part_*.jsonl --heldout --out runs/nli_convfill_heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from convfill.conversations import is_sil
from convfill.conversations import read as read_conversations
from convfill.errors import InputError

from convfill.nli import premise_for
from convfill.splits import split

SOURCE = "convfill"
_WORD_NUMBERS = ("two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty "
                 "fifty sixty hundred thousand").split()
_NUMBER = re.compile(r"\b(\d+(?:[.,]\d+)?|" + "|".join(_WORD_NUMBERS) + r")\b", re.IGNORECASE)


def change_a_number(text: str, rng: random.Random) -> str | None:
    """`text` with one number replaced by a different one, or None when it has no number."""
    found = list(_NUMBER.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    old = m.group(0)
    if old[0].isdigit():
        digits = old.replace(",", "")
        whole = digits.split(".")[0]
        new = str(int(whole) + rng.choice((1, 2, 3, 5, 10)))
    else:
        new = rng.choice([w for w in _WORD_NUMBERS if w != old.lower()])
        new = new.capitalize() if old[0].isupper() else new
    return text[:m.start()] + new + text[m.end():]


def pairs_of(turns: list[dict], rng: random.Random) -> Iterator[dict]:
    """The labelled NLI pairs of one conversation's turns (see the module docstring)."""
    for turn in turns:
        earlier: list[str] = []
        for thought, phrase in zip(turn["thoughts"], turn["response"]):
            knowledge = None if is_sil(thought) else thought
            p = premise_for(phrase, user=turn["user"], knowledge=knowledge, earlier=earlier)
            yield {"premise": p.premise, "hypothesis": p.hypothesis,
                   "label": "neutral" if p.filler else "entailment", "source": f"{SOURCE}_{'filler' if p.filler else 'knowledge'}"}
            if not p.filler:
                changed = change_a_number(p.hypothesis, rng)
                if changed is not None:
                    yield {"premise": p.premise, "hypothesis": changed, "label": "contradiction",
                           "source": f"{SOURCE}_number"}
            earlier.append(phrase)


def build(paths: Iterable[str | Path], heldout: bool = False, seed: int = 0) -> list[dict]:
    """All pairs of the train (or held-out) split of the conversations in `paths`."""
    # Turns only (see the module docstring): the split the shipped judge was trained with.
    convs = [{"conversation": turns} for path in paths for _, turns in read_conversations(path)]
    if not convs:
        raise InputError("no conversations given")
    train, held = split(convs, seed=seed)
    rng = random.Random(seed)
    return [pair for c in (held if heldout else train) for pair in pairs_of(c["conversation"], rng)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.nli_pairs", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="ConvFill JSONL files (curated: their phrases are trusted)")
    ap.add_argument("--out", required=True, help="NLI JSONL to write {premise, hypothesis, label, source}")
    ap.add_argument("--heldout", action="store_true", help="write the held-out split's pairs instead")
    ap.add_argument("--seed", type=int, default=0, help="split seed (0: the shipped judge's split)")
    ns = ap.parse_args(argv)
    try:
        pairs = build(ns.files, ns.heldout, ns.seed)
    except InputError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    counts = Counter(p["label"] for p in pairs)
    print(json.dumps({"out": str(out), "pairs": len(pairs), **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
