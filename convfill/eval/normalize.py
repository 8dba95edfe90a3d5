"""When does a spoken reply contain a gold answer? The one answer-matching rule of the evaluation.

Rule (NQ-open / SQuAD `normalize_answer`, then token-boundary containment):

1. Normalise both texts: lowercase; remove punctuation (every `string.punctuation` character is deleted,
   exactly as SQuAD does, so "U.S." -> "us", "1,813" -> "1813"); remove the articles a/an/the as whole
   words; collapse whitespace.
2. A reply is correct when any gold answer's normalised form occurs in the normalised reply *on word
   boundaries* (" x " in " reply "), so "one" does not match inside "someone". This is the "has answer"
   check used for open-domain QA over generated text (the reply is long; exact match would always fail).
3. Number words (cheap, one-way from the gold side): an integer gold token (0-9999) also matches its
   spelled-out cardinal ("1813" -> "one thousand eight hundred thirteen", "... and thirteen") and, for
   1100-2099, its year reading ("eighteen thirteen", "two thousand five", "nineteen oh five"); a gold
   token that is a single number word ("one" ... "ninety") also matches its digits. Hyphens between
   number words are read as spaces on the reply side for this check only ("twenty-one").
   Nothing else (ordinals, dates, units) is converted.

Reasoners are told to spell numbers out as they would be spoken (`KNOWLEDGE_SYSTEM_PROMPT`), so step 3 is
what keeps a correct "eighteen thirteen" from counting as wrong.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_TO_INT = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_NUMBER_WORDS = "|".join(sorted(_WORD_TO_INT, key=len, reverse=True))
_NUMBER_HYPHEN = re.compile(rf"\b({_NUMBER_WORDS})-(?=({_NUMBER_WORDS})\b)", re.IGNORECASE)
_MAX_SPELLED = 9999


def normalize_answer(text: str) -> str:
    """SQuAD/NQ normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _under_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def _under_1000(n: int, conj: str) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _under_100(rest)
    head = f"{_ONES[hundreds]} hundred"
    return head + (f" {conj}{_under_100(rest)}" if rest else "")


def spelled_numbers(n: int) -> set[str]:
    """The spoken forms of integer `n` (0-9999) that count as equal to it, e.g. 1813 -> cardinal + year."""
    if not 0 <= n <= _MAX_SPELLED:
        return set()
    forms = set()
    for conj in ("", "and "):
        thousands, rest = divmod(n, 1000)
        if thousands:
            tail = f" {_under_1000(rest, conj)}" if rest else ""
            if rest and rest < 100 and conj:
                tail = f" and {_under_100(rest)}"
            forms.add(f"{_ONES[thousands]} thousand{tail}")
        else:
            forms.add(_under_1000(n, conj))
    if 1100 <= n <= 2099:
        hi, lo = divmod(n, 100)
        if lo == 0 and hi % 10:  # "eighteen hundred", but 2000 is only "two thousand"
            forms.add(f"{_under_100(hi)} hundred")
        elif hi % 10 or hi >= 20 and lo >= 10:  # "eighteen thirteen", "twenty twenty"; 2005 stays "two thousand five"
            forms.add(f"{_under_100(hi)} {_under_100(lo) if lo >= 10 else 'oh ' + _ONES[lo]}")
    return forms


def answer_variants(gold: str) -> set[str]:
    """Normalised strings any of which, found in the reply, makes `gold` matched (step 3 of the rule)."""
    tokens = normalize_answer(gold).split()
    if not tokens:
        return set()
    options: list[list[str]] = []
    for tok in tokens:
        alts = [tok]
        if tok.isdigit() and len(tok) <= 4 and not (len(tok) > 1 and tok.startswith("0")):
            alts += sorted(spelled_numbers(int(tok)))
        elif tok in _WORD_TO_INT:
            alts.append(str(_WORD_TO_INT[tok]))
        options.append(alts)
    # Answers are short; cap the product so a gold string full of numbers cannot explode.
    return {" ".join(combo) for combo in itertools.islice(itertools.product(*options), 256)}


@dataclass(frozen=True)
class Match:
    """Result of matching a reply against the gold answers.

    Parameters:
        correct: some gold answer occurs in the reply under the rule.
        matched: the gold answer that matched (first in gold order), or None.
    """

    correct: bool
    matched: str | None = None


def match_answers(reply: str, golds: list[str] | tuple[str, ...]) -> Match:
    """Apply the module's rule: is any of `golds` said in `reply`?"""
    plain = f" {normalize_answer(reply)} "
    dehyphen = " " + normalize_answer(_NUMBER_HYPHEN.sub(r"\1 ", reply)) + " "
    for gold in golds:
        exact = normalize_answer(gold)
        if exact and f" {exact} " in plain:
            return Match(True, gold)
        for v in answer_variants(gold):
            if f" {v} " in plain or f" {v} " in dehyphen:
                return Match(True, gold)
    return Match(False, None)
