"""Fillers that do not all sound the same: what a filler's "template" is, and how a Talker steers away from
the templates it just used (issue 22).

A filler is a phrase spoken from the `<sil>` knowledge token (`PhraseContext.knowledge is None`). A greedy
135M Talker falls into one mode for nearly all of them ("<topic>, let me check."). The runtimes therefore
sample fillers (seeded, reproducible) and never knowledge phrases, and forbid the filler to end the same
way as the fillers the listener just heard. This module holds the parts both runtimes and the evaluation
share, stdlib only:

* `filler_template(text, user)`: the filler with its topic echo removed (the definition the evaluation
  reports, `convfill.eval.naturalness`).
* `phrase_seed(prompt, seed)`: the sampling seed of one phrase, a hash of its prompt: the same prompt and
  base seed always give the same filler; different prompts give different ones.
* `recent_templates(ctx)` and `FillerSteer`: which clause endings the filler must not repeat, and the
  per-step check that bans the token that would complete one of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

# Words that carry no topic: articles, prepositions, pronouns, auxiliaries, and the filler vocabulary itself
# ("let me check"), so a clause made of them is never counted as a topic echo.
FUNCTION_WORDS = frozenset(["a", "an", "the", "and", "or", "but", "nor", "so", "to", "of", "in", "on", "at", "for", "with", "from", "by", "about", "as", "into", "onto", "over", "under", "than", "then", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "have", "has", "had", "it", "its", "it's", "this", "that", "these", "those", "there", "here", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "i", "me", "my", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "we", "us", "our", "they", "them", "their", "let", "let's", "me", "just", "one", "moment", "second", "sec", "hold", "on", "hang", "give", "check", "see", "look", "looking", "checking", "think", "okay", "ok", "sure", "right", "well", "yes", "yeah", "hmm", "oh", "ah", "alright", "now", "all", "any", "some", "more", "most", "very", "really", "quite", "can", "could", "would", "should", "will", "i'll", "i'm", "i've"])

_CLAUSE_SPLIT = re.compile(r"[,;:.!?\u2014\u2013]+|\s-\s")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
ECHO = "<echo>"  # the template of a filler that only restates the user's words ("UVA versus UVB.")


def _norm(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def words(text: str) -> list[str]:
    """Lower-cased words of `text`, punctuation stripped (apostrophes inside words kept)."""
    return _WORD.findall(_norm(text))


def clauses(text: str) -> list[list[str]]:
    """`text` split at , ; : . ! ? and dashes, each clause as its words; empty clauses dropped."""
    return [w for w in (words(c) for c in _CLAUSE_SPLIT.split(_norm(text))) if w]


def _stem(w: str) -> str:
    w = w.removesuffix("'s")
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def _content(ws: Iterable[str]) -> list[str]:
    return [w for w in ws if w not in FUNCTION_WORDS]


def is_echo(clause: Sequence[str], heard: set[str]) -> bool:
    """A clause restates the user when it has content words and more than half of them (stemmed) occur in
    what the user said (`heard`: stems of the user's words)."""
    content = _content(clause)
    return bool(content) and sum(_stem(w) in heard for w in content) * 2 > len(content)


def filler_template(text: str, user: str = "", *context: str) -> str:
    """The filler's template: what is left once its topic echo is removed.

    Definition (the evaluation's, documented in docs/benchmarks.md "Fillers"):
      1. lower-case, split into clauses at , ; : . ! ? and dashes, words = runs of letters/digits;
      2. drop the *leading* clauses that are topic echoes (`is_echo`: more than half of the clause's content
         words occur in the user turn or `context`, e.g. the previous user turn);
      3. in what remains, replace every content word the user said by "_" (so "let me count the seasons"
         and "let me count the goals" are one template when the user asked about seasons or goals);
      4. join with single spaces; a filler that is all echo has the template "<echo>".

    "The first paper money, let me check." -> "let me check"; "Star Wars, let me count the seasons."
    (user asked about seasons of Star Wars) -> "let me count the _".
    """
    heard = {_stem(w) for t in (user, *context) for w in words(t)}
    cs = clauses(text)
    i = 0
    while i < len(cs) and is_echo(cs[i], heard):
        i += 1
    rest = [w if (w in FUNCTION_WORDS or _stem(w) not in heard) else "_" for c in cs[i:] for w in c]
    return " ".join(rest) if rest else ECHO


def template_head(template: str, n: int = 3) -> str:
    """The first `n` words of a template: a coarser grouping ("let me check the date" -> "let me check")."""
    return " ".join(template.split()[:n])


def phrase_seed(prompt: str, seed: int = 0) -> int:
    """A 31-bit sampling seed for one phrase: a hash of its prompt and the Talker's base seed."""
    h = hashlib.blake2b(f"{seed}\x00{prompt}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def recent_templates(user: str, earlier: Sequence[str] = (), prev_reply: str | None = None,
                     prev_user: str | None = None) -> list[list[str]]:
    """The clause endings a new filler must not repeat, as word lists: the last clause of each of this
    turn's earlier phrases and of each sentence of the previous reply (the listener just heard them).

    Knowledge phrases are included too (the Talker cannot tell them apart from fillers in `prev_reply`);
    forbidding a filler to end like one of them costs nothing. Pure topic echoes give nothing to avoid.
    """
    sentences = [s for p in earlier for s in _SENTENCE_END.split(p)]
    if prev_reply:
        sentences += _SENTENCE_END.split(prev_reply)
    out: list[list[str]] = []
    for s in sentences:
        cs = clauses(s)
        if not cs:
            continue
        heard = {_stem(w) for t in (user, prev_user or "") for w in words(t)}
        last = cs[-1]
        if len(cs) > 1 or not is_echo(last, heard):
            if last not in out:
                out.append(last)
    return out


class FillerSteer:
    """Per-step ban for one filler: the next token may not complete a recent clause ending.

    Text-level, so it does not depend on how a phrase was tokenized: when the words of the clause being
    generated equal a banned clause minus its last word, every token that would begin that last word
    (" check", " ch", ...) is banned; a one-word clause ("hmm") is banned at the start of any clause. Tokens
    with a digit are banned in fillers (a filler never states a number), except digits the listener already
    heard (`heard_digits`: "Season 5" may be echoed when the user said it).

    Args:
        banned: word lists from `recent_templates`.
        vocab: the vocabulary index (`VocabIndex`).
        heard_digits: the digit runs of what the user and the Talker said before ("5", "1813").
    """

    def __init__(self, banned: Sequence[Sequence[str]], vocab: VocabIndex, heard_digits: Iterable[str] = (),
                 heard_words: Iterable[str] | None = None):
        self.vocab = vocab
        # A capitalised word the listener never heard is a name the filler would be inventing: ban the tokens
        # that start one (" Nu" is allowed when "Nuestra" was heard), except function words ("The", "I").
        # Built before the filler's first token, so in its TTFT: what does not depend on the turn is in
        # `vocab`, made once (this took ~1.2 ms per filler before, measured).
        self.cap_ids = np.zeros(0, dtype=np.intp)
        if heard_words is not None:
            allowed = vocab.function_word_starts | vocab.capitalised_starts(set(heard_words) - FUNCTION_WORDS)
            cap = vocab.capitalised_array
            self.cap_ids = cap[~np.isin(cap, np.fromiter(allowed, dtype=np.intp, count=len(allowed)))]
        heard = [d for d in heard_digits if d]
        self.digit_ids = vocab.digit_array if not heard else np.asarray(
            [i for i in vocab.digit_ids if not any(_digits(vocab.pieces[i]) in d for d in heard)
             or not _digits(vocab.pieces[i])], dtype=np.intp)
        self.by_prefix: dict[tuple[str, ...], set[str]] = {}
        for b in banned:
            if b:
                self.by_prefix.setdefault(tuple(b[:-1]), set()).add(b[-1])
        # Banned at every step: an index array made once (a fresh list of ~10k ids per token cost ~0.9 ms of
        # a 12 ms step, measured).
        self._always = np.concatenate([self.digit_ids, self.cap_ids])

    def banned_ids(self, text: str) -> np.ndarray:
        """Token ids to ban after the generated `text` (always including the digit tokens)."""
        if not self.by_prefix:
            return self._always
        out: list[int] = []
        norm = _norm(text)
        # The clause being generated: the words after the last clause boundary (mid-word: nothing to ban).
        if norm and not (norm[-1].isspace() or norm[-1].isalnum() or _CLAUSE_SPLIT.match(norm[-1])):
            return self._always
        current = tuple(_WORD.findall(_CLAUSE_SPLIT.split(norm)[-1]))
        words_ = self.by_prefix.get(current)
        if words_:
            start = not norm.strip()
            bare = start or norm[-1].isspace()   # the next word's token carries no leading space
            for word in words_:
                out.extend(self.vocab.starting(word, spaced=start or not bare, bare=bare))
        return np.concatenate([self._always, np.asarray(out, dtype=np.intp)]) if out else self._always


class VocabIndex:
    """Token texts of a vocabulary, indexed for `FillerSteer`: which ids start a word with a given prefix.

    Args:
        pieces: the decoded text of every token id (index = id).
    """

    def __init__(self, pieces: Sequence[str]):
        self.pieces = pieces
        self._spaced: dict[str, list[int]] = {}   # " check" -> ids (a word after a space)
        self._bare: dict[str, list[int]] = {}     # "Check" at the very start of the phrase
        self.capitalised: dict[str, list[int]] = {}  # " Nue" -> ids: a capitalised word after a space
        digit_ids = []
        for i, p in enumerate(pieces):
            if len(p) > 1 and p[0] == " " and p[1].isupper() and p[1:].isalpha():
                self.capitalised.setdefault(_norm(p[1:]), []).append(i)
            if any(ch.isdigit() for ch in p):
                digit_ids.append(i)
            low = _norm(p)
            if low.startswith(" ") and low[1:].isalpha():
                self._spaced.setdefault(low[1:], []).append(i)
            elif low.isalpha():
                self._bare.setdefault(low, []).append(i)
        self.digit_ids = tuple(digit_ids)
        self.digit_array = np.asarray(digit_ids, dtype=np.intp)
        self.capitalised_ids = frozenset(i for ids in self.capitalised.values() for i in ids)
        self.capitalised_array = np.asarray(sorted(self.capitalised_ids), dtype=np.intp)
        self.function_word_starts = self.capitalised_starts(FUNCTION_WORDS)

    def capitalised_starts(self, words: Iterable[str]) -> set[int]:
        """Ids of capitalised tokens that begin one of `words` (" Nu" for "nuestra"): names heard, not invented."""
        out: set[int] = set()
        for w in words:
            for k in range(1, len(w) + 1):
                out.update(self.capitalised.get(w[:k], ()))
        return out

    def starting(self, word: str, spaced: bool = True, bare: bool = False) -> list[int]:
        """Ids of tokens whose text is a (non-empty) prefix of `word`, any case: with a leading space
        (" check", " ch": a word after a space) and/or without one ("Check": the first word of a phrase)."""
        out: list[int] = []
        for k in range(1, len(word) + 1):
            p = word[:k]
            if spaced:
                out += self._spaced.get(p, ())
            if bare:
                out += self._bare.get(p, ())
        return out


# ------------------------------------------------------------------------------------------ sampling
ENV = "CONVFILL_FILLER_SAMPLING"  # "off" / "0": greedy fillers, no steering (the behaviour before issue 22)


class FillerSampling:
    """How a runtime decodes fillers; knowledge phrases always stay greedy.

    Args:
        temperature, top_p, min_p, top_k: the sampler (llama.cpp's order: top-k, top-p, min-p, temperature).
        steer: ban the clause endings of the phrases the listener just heard (`FillerSteer`) and digits.
    """

    def __init__(self, temperature: float = 0.8, top_p: float = 0.95, min_p: float = 0.1, top_k: int = 40,
                 steer: bool = True):
        self.temperature, self.top_p, self.min_p, self.top_k, self.steer = temperature, top_p, min_p, top_k, steer

    def describe(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "min_p": self.min_p, "top_k": self.top_k,
                "steer": self.steer}

    def __repr__(self) -> str:
        return f"FillerSampling({', '.join(f'{k}={v}' for k, v in self.describe().items())})"


DEFAULT = FillerSampling()


def resolve(value) -> FillerSampling | None:
    """A runtime's `filler_sampling` option: "auto" (the default) = `DEFAULT` unless the environment
    variable CONVFILL_FILLER_SAMPLING is "off"/"0"/"greedy"; "off"/"greedy"/False = greedy fillers; "on" =
    `DEFAULT`; or a `FillerSampling`."""
    import os

    if isinstance(value, FillerSampling):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        text = os.environ.get(ENV, "on").strip().lower() or "on"
    if text in ("off", "0", "false", "greedy", "none"):
        return None
    if text in ("on", "1", "true", "default"):
        return DEFAULT
    raise ValueError(f"filler_sampling must be auto, on, off or a FillerSampling, got {value!r}")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


_DIGIT_RUN = re.compile(r"\d+")


class FillerPlan:
    """What `generate` needs to decode one filler: its seed, the clause endings it must not repeat, and the
    digit runs the listener heard (the only digits it may say)."""

    def __init__(self, sampling: FillerSampling, seed: int, banned: list[list[str]],
                 heard_digits: Sequence[str] = (), heard_words: Iterable[str] | None = None):
        self.sampling, self.seed, self.banned, self.heard_digits = sampling, seed, banned, tuple(heard_digits)
        self.heard_words = None if heard_words is None else frozenset(heard_words)

    def steer(self, vocab: VocabIndex) -> FillerSteer:
        return FillerSteer(self.banned, vocab, self.heard_digits, self.heard_words)


def plan_for(ctx, prompt: str, sampling: FillerSampling | None, base_seed: int = 0) -> FillerPlan | None:
    """The plan of one phrase: None for knowledge phrases (greedy, untouched) or when sampling is off."""
    if sampling is None or ctx.knowledge is not None:
        return None
    banned = recent_templates(ctx.user, ctx.earlier, ctx.prev_reply, ctx.prev_user) if sampling.steer else []
    heard = " ".join(x for x in (ctx.prev_user, ctx.prev_reply, ctx.user, *ctx.earlier) if x)
    return FillerPlan(sampling, phrase_seed(prompt, base_seed), banned, _DIGIT_RUN.findall(heard),
                      set(re.findall(r"[^\W\d_]+", _norm(heard))))
