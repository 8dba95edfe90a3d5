"""The NLI pair: what a judge sees for a Talker phrase, and the names of its three labels. One home for
every judge path (the workbench, evaluation, the data generator's gate, the corpus validator, the trainer).

The premise rule is the ConvFill paper's: a knowledge phrase is judged against its knowledge chunk followed
by the earlier phrases of the turn; a filler (from `<sil>`) against the user utterance followed by the
earlier phrases. Models and data files spell labels many ways; `normalize_label` is the one mapping.
How a pair becomes token ids (truncation included) is `convfill.nli.encode.encode_pairs`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .encode import MAX_LENGTH, encode_pairs  # noqa: F401 - the pair's token ids, one rule for every path

LABELS = ("entailment", "neutral", "contradiction")


@dataclass(frozen=True)
class NLIPair:
    """What the judge sees for one phrase.

    Parameters:
        premise: knowledge chunk (or, for fillers, the user utterance) followed by the earlier phrases.
        hypothesis: the phrase.
        filler: True when the phrase came from `<sil>` (no knowledge chunk).
    """

    premise: str
    hypothesis: str
    filler: bool


def premise_for(phrase: str, *, user: str, knowledge: str | None, earlier: Sequence[str] = ()) -> NLIPair:
    """The premise/hypothesis pair of a phrase, as in the ConvFill paper.

    Args:
        phrase: the Talker phrase (the hypothesis).
        user: the user utterance of the turn.
        knowledge: the knowledge chunk the phrase was generated from, or None for a `<sil>` filler.
        earlier: the phrases the Talker said before this one in the same turn, in order.
    """
    filler = knowledge is None or knowledge.strip() in ("", "<sil>")
    head = user if filler else knowledge
    premise = " ".join(s.strip() for s in [head or "", *earlier] if s and s.strip())
    return NLIPair(premise=premise, hypothesis=phrase.strip(), filler=filler)


def normalize_label(name: str) -> str:
    """Map a model's or a data file's label name to entailment/neutral/contradiction.

    Accepts any case and the common spellings ("ENTAILMENT", "entails", "E", "Contradiction", "not_entailment"
    from 2-way heads, which counts as neutral: not entailed, not contradicted). Raises ValueError otherwise.
    """
    n = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    n = {"e": "entailment", "n": "neutral", "c": "contradiction"}.get(n, n)  # one-letter labels in data files
    if n in ("not_entailment", "non_entailment", "not_entailed"):
        return "neutral"
    if n.startswith("entail"):
        return "entailment"
    if n.startswith("neutral"):
        return "neutral"
    if n.startswith("contradict"):
        return "contradiction"
    raise ValueError(f"not an NLI label: {name!r} (expected entailment, neutral or contradiction)")
