"""Validator for ConvFill seed corpora (JSONL, one `{"conversation": [...]}` per line).

It owns the written rules of the seed corpus (issue 9) so that a human-written corpus and the trained
Talker cannot quietly drift into the known flaws of the released data:

* structure: `{"conversation": [{"user", "thoughts", "response"}]}` (optional `"domain"`), equal-length
  thoughts/response, non-empty strings, no control tokens (detected with `convfill.prompt.sanitize`, the
  same function the prompt builder uses, so "clean" means "survives the prompt unchanged");
* spoken style: a Talker phrase is spoken aloud, so no digits, markdown, bullets, URLs or emojis;
* `<sil>` rules: a thoughts entry is either a knowledge chunk or exactly `"<sil>"`;
* fillers (the phrase for a `<sil>`) must not invent facts: no numbers, no proper nouns the Talker could
  not have seen (its visible context is the user turn, its earlier phrases, and the previous turn), short;
* knowledge phrases should carry their chunk: a crude content-word coverage check, and names/numbers in
  the phrase that are in neither the chunk nor the visible context (new facts) -> warnings;
* diversity: no phrase (case/punctuation-normalised) used more than twice across all input files;
* optional NLI (`--nli`): chunk -> phrase must not be judged a contradiction.

Errors make the CLI exit 1; warnings are heuristics a human should look at. It also reports corpus
statistics and can write a deterministic 10% held-out split by conversation (`--split-out DIR`).

CLI: `python -m training.validate_corpus FILE... [--json] [--split-out DIR] [--seed N] [--nli]`
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from convfill.prompt import SIL, sanitize
from convfill.splits import HELDOUT_FRAC, write_split

ALLOWED_TOP_KEYS = {"conversation", "domain"}
TURN_KEYS = {"user", "thoughts", "response"}
MAX_FILLER_WORDS = 20
MAX_REUSE = 2
MIN_COVERAGE = 0.34

NUMBER_WORDS = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
    "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million",
    "billion", "trillion", "dozen", "half", "quarter", "percent", "first", "second", "third", "fourth",
    "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "twice", "thrice",
}
# Number-ish expressions a filler may use: they measure waiting or point at the request, not facts.
FILLER_NUMBER_ALLOW = re.compile(
    r"\b(?:one|a|just a|half a) (?:moment|second|sec|minute|mo|tick)\b|\bone more\b|\bat once\b|"
    r"\b(?:this|that|which|each|the right|the best|a good|one|nice|good|fun|great|tricky|hard|easy|big|common|"
    r"classic|popular|interesting|tough|fair|simple) one\b|"
    r"\bfirst things first\b|\bsecond look\b|\bone thing\b|\bone at a time\b|\bsecond guess", re.IGNORECASE)
# A filler cannot know whether the user is right or what the next chunk holds: confirming the user ("yes,
# they do") or previewing ("there's also a trick with salt") invents knowledge. Heuristic -> warnings.
FILLER_CONFIRMS = re.compile(r"^\W*(?:yes|yep|exactly|correct|that's right|that is right|true)\b", re.IGNORECASE)
FILLER_PREVIEWS = re.compile(
    r"(?<!if )(?<!whether )\bthere(?:'s| is| are) (?:also|a trick|one more|another|a neat|a simple|a common)\b",
    re.IGNORECASE)
# Words that are capitalised without being names of anything the filler could invent.
CAPITAL_OK = {"i", "i'm", "i'll", "i've", "i'd", "ok", "okay"}

STOPWORDS = set("""
a an the and or but if then so of to in on at by for with from about as into onto over under than that this
these those it its it's is are was were be been being am do does did doing have has had having i you he she
we they me him her us them my your his our their mine yours what which who whom whose when where why how
not no yes can could would should will shall may might must just also very really quite too there here
some any all each every both either neither more most less least much many such only own same other
another up down out off again further once s t don't doesn't isn't aren't wasn't weren't won't can't
you're you'll you've we're they're that's there's let's let me yeah oh well okay ok sure get got go
going make made like one thing things way lot lots around usually often generally typically
""".split())

_DIGIT = re.compile(r"\d")
_URL = re.compile(r"https?://|www\.|\b[\w-]+\.(?:com|org|net|io|gov|edu|co\.uk)\b", re.IGNORECASE)
_MARKDOWN = re.compile(r"\*\*|__|`|^#{1,6}\s|\[[^\]]*\]\([^)]*\)|^\s*>\s|\|.*\|", re.MULTILINE)
_BULLET = re.compile(r"[•◦▪▸►‣⁃]|^\s*[-*+]\s|^\s*\(?[a-z0-9]\)\s", re.MULTILINE)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200d]")
_SIL_LIKE = re.compile(r"<\s*/?\s*sil\s*>", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENT_START = re.compile(r"(?:^|[.!?…:;]\s+|[\"“(]\s*)$")


@dataclass
class Issue:
    """One finding. `turn` and `phrase` are 0-based; `line` is the 1-based JSONL line."""

    level: str  # "error" | "warning"
    code: str
    message: str
    file: str
    line: int
    turn: int | None = None
    phrase: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.turn is not None:
            where += f" turn {self.turn}"
        if self.phrase is not None:
            where += f" phrase {self.phrase}"
        return f"{self.level.upper():7s} {where} [{self.code}] {self.message}"


@dataclass
class Stats:
    """Corpus-level counts; `mid_turn_sil` counts `<sil>` entries that follow a knowledge chunk."""

    conversations: int = 0
    turns: int = 0
    phrase_pairs: int = 0
    knowledge_pairs: int = 0
    fillers: int = 0
    leading_fillers: int = 0
    mid_turn_sil: int = 0
    turns_with_mid_turn_sil: int = 0
    filler_runs_2_3: int = 0
    filler_runs_over_3: int = 0
    turns_with_filler_run_2_3: int = 0
    turns_without_knowledge: int = 0
    leading_filler_hist: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)
    mean_filler_words: float = 0.0
    mean_knowledge_phrase_words: float = 0.0
    distinct_responses: int = 0
    max_response_reuse: int = 0


@dataclass
class Report:
    errors: list[Issue]
    warnings: list[Issue]
    stats: Stats
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": [asdict(i) for i in self.errors],
                "warnings": [asdict(i) for i in self.warnings], "stats": asdict(self.stats), "notes": self.notes}


@dataclass
class Conversation:
    """One parsed line; `data` is the raw object (kept for the split writer)."""

    file: str
    line: int
    data: dict[str, Any]


# ----------------------------------------------------------------------------------------------------- text


def normalise(text: str) -> str:
    """Case- and punctuation-insensitive form used for the reuse check."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower().replace("’", "'")).split())


def name_key(w: str) -> str:
    """Lower-case, possessive-free form, so "Ramsay's" in a filler matches "Ramsay" in the user turn."""
    w = w.lower().replace("’", "'")
    return w[:-2] if w.endswith("'s") else w.rstrip("'")


def words(text: str) -> list[str]:
    return [w.lower().replace("’", "'").strip("'-") for w in _WORD.findall(text)]


def has_control_tokens(text: str) -> bool:
    """True when `sanitize` would change the text beyond whitespace, i.e. it carries a control token."""
    return sanitize(text) != " ".join(text.split())


def style_problems(text: str) -> list[tuple[str, str]]:
    """(code, message) for each way `text` is not plain speakable prose."""
    out = []
    if _DIGIT.search(text):
        out.append(("digits", f"digits in spoken text (write numbers in words): {text!r}"))
    if _URL.search(text):
        out.append(("url", f"URL in spoken text: {text!r}"))
    if _MARKDOWN.search(text):
        out.append(("markdown", f"markdown in spoken text: {text!r}"))
    if _BULLET.search(text):
        out.append(("bullet", f"bullet/list marker in spoken text: {text!r}"))
    if _EMOJI.search(text):
        out.append(("emoji", f"emoji in spoken text: {text!r}"))
    if "\n" in text:
        out.append(("newline", "line break in a phrase (phrases are single utterances)"))
    return out


def capitalised_non_initial(text: str) -> list[str]:
    """Capitalised words that do not start a sentence: the crude proper-noun detector."""
    found = []
    for m in _WORD.finditer(text):
        w = m.group(0)
        if not w[0].isupper():
            continue
        if _SENT_START.search(text[: m.start()]):
            continue
        if w.lower().replace("’", "'") in CAPITAL_OK:
            continue
        found.append(w)
    return found


def number_words(text: str) -> list[str]:
    return [w for w in words(text) if w in NUMBER_WORDS or any(w.startswith(n + "-") for n in NUMBER_WORDS)]


# Too often not a number at all ("one option", "a good first step", "check with a doctor first").
AMBIGUOUS_NUMBER_WORDS = {"one", "first", "second"}


def fact_words(text: str) -> list[str]:
    """Lower-cased number words and capitalised non-initial words: what a phrase must not drop or invent."""
    nums = [w for w in number_words(text) if w not in AMBIGUOUS_NUMBER_WORDS]
    return nums + [name_key(x) for x in capitalised_non_initial(text)]


def is_acronym_of(word: str, text: str) -> bool:
    """True when `word` ("us", "cds") abbreviates consecutive words of `text` ("United States", "certificates
    of deposit"); small function words may be skipped."""
    letters = word.lower().rstrip("s") if len(word) > 2 and word.lower().endswith("s") else word.lower()
    if not 2 <= len(letters) <= 5:
        return False
    ws = words(text)
    for i in range(len(ws)):
        j, k = i, 0
        while j < len(ws) and k < len(letters):
            if ws[j].startswith(letters[k]):
                k += 1
            elif k == 0 or ws[j] not in ("of", "and", "the", "for"):
                break
            j += 1
        if k == len(letters):
            return True
    return False


def stem(w: str) -> str:
    """A 5-letter prefix after a suffix strip: looser than `training.rules.stem` on purpose.

    Why a second stemmer: this one matches facts of curated data across inflections and derivations
    ("Olympics"/"Olympic", "govern"/"government"), where a miss is a false error a person must read; the
    rules in `training.rules` score model output, where a loose match would hide invented words. The
    corpus thresholds (`MIN_COVERAGE`, the fact checks) were tuned with this one.
    """
    w = w.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suf in ("ing", "ed", "es", "s", "ly"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            w = w[: -len(suf)]
            break
    return w[:5]


def content_words(text: str) -> list[str]:
    """Words of `text` the coverage check counts (this module's stopwords; see `stem` for why not rules')."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 2]


def coverage(chunk: str, phrase: str) -> tuple[float, list[str]]:
    """Share of the chunk's content words whose stem appears in the phrase, and the missing ones."""
    cw = content_words(chunk)
    if not cw:
        return 1.0, []
    have = {stem(w) for w in words(phrase)}
    missing = [w for w in cw if stem(w) not in have]
    return 1 - len(missing) / len(cw), missing


# --------------------------------------------------------------------------------------------- validation


class Validator:
    """Collects issues and statistics over one or more files; `report()` finishes the corpus-level checks."""

    def __init__(self, min_coverage: float = MIN_COVERAGE, max_reuse: int = MAX_REUSE,
                 max_filler_words: int = MAX_FILLER_WORDS, nli: Callable[[str, str], str] | None = None):
        self.min_coverage = min_coverage
        self.max_reuse = max_reuse
        self.max_filler_words = max_filler_words
        self.nli = nli
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.notes: list[str] = []
        self.stats = Stats()
        self.conversations: list[Conversation] = []
        self._responses: dict[str, list[tuple[str, int, int, int]]] = {}
        self._filler_words: list[int] = []
        self._knowledge_words: list[int] = []
        self._lead_hist: Counter[int] = Counter()
        self._domains: Counter[str] = Counter()

    # --- issue helpers
    def _err(self, code, msg, file, line, turn=None, phrase=None):
        self.errors.append(Issue("error", code, msg, file, line, turn, phrase))

    def _warn(self, code, msg, file, line, turn=None, phrase=None):
        self.warnings.append(Issue("warning", code, msg, file, line, turn, phrase))

    # --- input
    def add_file(self, path: str | Path) -> None:
        path = Path(path)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self._err("unreadable", f"cannot read file: {e}", name, 0)
            return
        for i, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                self._err("json", f"invalid JSON: {e}", name, i)
                continue
            self.add_object(obj, name, i)

    def add_object(self, obj: Any, file: str = "<input>", line: int = 1) -> None:
        """Validate one conversation object (one JSONL line)."""
        if not isinstance(obj, dict):
            self._err("structure", "line is not a JSON object", file, line)
            return
        extra = set(obj) - ALLOWED_TOP_KEYS
        if extra:
            self._warn("extra_key", f"unknown conversation keys {sorted(extra)}", file, line)
        conv = obj.get("conversation")
        if not isinstance(conv, list) or not conv:
            self._err("structure", "'conversation' must be a non-empty list", file, line)
            return
        if "domain" in obj and (not isinstance(obj["domain"], str) or not obj["domain"].strip()):
            self._err("structure", "'domain' must be a non-empty string", file, line)
        n_structure = sum(e.code == "structure" for e in self.errors)
        prev_user: str | None = None
        prev_reply: str | None = None
        for t, turn in enumerate(conv):
            ok = self._check_turn_structure(turn, file, line, t)
            if ok:
                self._check_turn(turn, file, line, t, prev_user, prev_reply)
                prev_user, prev_reply = turn["user"], " ".join(turn["response"])
            else:
                prev_user = prev_reply = None
        # Conversations with broken structure are not counted and never reach the split.
        if sum(e.code == "structure" for e in self.errors) == n_structure:
            self.conversations.append(Conversation(file, line, obj))
            self.stats.conversations += 1
            if isinstance(obj.get("domain"), str):
                self._domains[obj["domain"]] += 1

    def _check_turn_structure(self, turn: Any, file: str, line: int, t: int) -> bool:
        if not isinstance(turn, dict):
            self._err("structure", "turn is not an object", file, line, t)
            return False
        keys = set(turn)
        if keys != TURN_KEYS:
            missing, extra = TURN_KEYS - keys, keys - TURN_KEYS
            self._err("structure", f"turn keys must be {sorted(TURN_KEYS)} (missing {sorted(missing)}, "
                      f"extra {sorted(extra)})", file, line, t)
            return False
        if not isinstance(turn["user"], str):
            self._err("structure", "'user' must be a string", file, line, t)
            return False
        th, rs = turn["thoughts"], turn["response"]
        if not isinstance(th, list) or not isinstance(rs, list):
            self._err("structure", "'thoughts' and 'response' must be lists", file, line, t)
            return False
        if len(th) != len(rs):
            self._err("structure", f"len(thoughts)={len(th)} != len(response)={len(rs)}", file, line, t)
            return False
        if not th:
            self._err("structure", "turn has no phrases", file, line, t)
            return False
        bad = [i for i, x in enumerate(th + rs) if not isinstance(x, str)]
        if bad:
            self._err("structure", "thoughts/response entries must be strings", file, line, t)
            return False
        return True

    def _check_turn(self, turn: dict, file: str, line: int, t: int, prev_user: str | None,
                    prev_reply: str | None) -> None:
        user, thoughts, responses = turn["user"], turn["thoughts"], turn["response"]
        st = self.stats
        st.turns += 1
        if not user.strip():
            self._err("empty", "empty user text", file, line, t)
        elif has_control_tokens(user):
            self._err("control_token", f"control token in user text: {user!r}", file, line, t)
        for code, msg in style_problems(user):
            if code in ("digits", "emoji", "markdown", "bullet", "url"):
                self._warn("user_" + code, msg, file, line, t)
        seen_knowledge = False
        run = 0
        runs: list[int] = []
        leading = 0
        n_knowledge = 0
        mid_here = 0
        for p, (th, rs) in enumerate(zip(thoughts, responses)):
            st.phrase_pairs += 1
            is_sil = th == SIL
            # thoughts entry
            if not is_sil:
                if not th.strip():
                    self._err("empty", "empty knowledge chunk (use exactly '<sil>' for silence)", file, line, t, p)
                elif _SIL_LIKE.search(th):
                    self._err("sil_form", f"thoughts entry contains a <sil> look-alike; it must be exactly "
                              f"'<sil>': {th!r}", file, line, t, p)
                elif has_control_tokens(th):
                    self._err("control_token", f"control token in knowledge chunk: {th!r}", file, line, t, p)
                for code, msg in style_problems(th):
                    self._warn("chunk_" + code, msg, file, line, t, p)
            # response entry
            if not rs.strip():
                self._err("empty", "empty response phrase", file, line, t, p)
            elif _SIL_LIKE.search(rs):
                self._err("sil_in_response", f"<sil> in a response phrase: {rs!r}", file, line, t, p)
            elif has_control_tokens(rs):
                self._err("control_token", f"control token in response phrase: {rs!r}", file, line, t, p)
            for code, msg in style_problems(rs):
                self._err(code, msg, file, line, t, p)
            self._responses.setdefault(normalise(rs), []).append((file, line, t, p))
            visible = " ".join(x for x in (user, prev_user or "", prev_reply or "", *responses[:p]))
            if is_sil:
                st.fillers += 1
                run += 1
                if seen_knowledge:
                    mid_here += 1
                else:
                    leading += 1
                self._check_filler(rs, visible, file, line, t, p)
            else:
                if run:
                    runs.append(run)
                run = 0
                seen_knowledge = True
                n_knowledge += 1
                st.knowledge_pairs += 1
                self._check_knowledge(th, rs, visible, file, line, t, p)
        if run:
            runs.append(run)
        st.leading_fillers += leading
        st.mid_turn_sil += mid_here
        st.turns_with_mid_turn_sil += bool(mid_here)
        st.filler_runs_2_3 += sum(1 for r in runs if 2 <= r <= 3)
        st.turns_with_filler_run_2_3 += any(2 <= r <= 3 for r in runs)
        over = [r for r in runs if r > 3]
        st.filler_runs_over_3 += len(over)
        if over:
            self._warn("long_filler_run", f"run of {max(over)} fillers (the released data uses at most three)",
                       file, line, t)
        if n_knowledge == 0:
            st.turns_without_knowledge += 1
            self._warn("no_knowledge", "turn has only fillers, no knowledge chunk", file, line, t)
        self._lead_hist[leading] += 1

    def _check_filler(self, rs: str, visible: str, file: str, line: int, t: int, p: int) -> None:
        n = len(rs.split())
        self._filler_words.append(n)
        if n > self.max_filler_words:
            self._err("filler_long", f"filler has {n} words (> {self.max_filler_words}): {rs!r}", file, line, t, p)
        vis = {name_key(w) for w in _WORD.findall(visible)}
        # A number the user said may be restated ("an interview on Thursday at ten"); any other is invented.
        nums = [w for w in number_words(FILLER_NUMBER_ALLOW.sub(" ", rs)) if name_key(w) not in vis]
        if nums:
            self._err("filler_number", f"filler states a number {nums} not in the user turn or earlier text "
                      f"(fillers must not invent facts): {rs!r}", file, line, t, p)
        if FILLER_CONFIRMS.search(rs):
            self._warn("filler_confirms", f"filler confirms something it cannot know: {rs!r}", file, line, t, p)
        if FILLER_PREVIEWS.search(rs):
            self._warn("filler_previews", f"filler promises content before any chunk has it: {rs!r}",
                       file, line, t, p)
        vis_stems = {stem(w) for w in vis}  # "Olympics" in a filler matches "Olympic" in the user turn
        names = [w for w in capitalised_non_initial(rs) if name_key(w) not in vis and stem(w) not in vis_stems]
        if names:
            self._err("filler_name", f"filler names {names}, not in the user turn or earlier text: {rs!r}",
                      file, line, t, p)

    def _check_knowledge(self, chunk: str, rs: str, visible: str, file: str, line: int, t: int, p: int) -> None:
        self._knowledge_words.append(len(rs.split()))
        cov, missing = coverage(chunk, rs)
        if cov < self.min_coverage:
            self._warn("low_coverage", f"phrase covers {cov:.0%} of the chunk's content words (missing "
                       f"{missing}): chunk={chunk!r} phrase={rs!r}", file, line, t, p)
        have = {stem(w) for w in words(rs)}
        # A name already in the visible context may be referred to by pronoun ("It's in the Louvre").
        seen = {stem(w) for w in words(visible)}
        key_missing = [w for w in fact_words(chunk) if stem(w) not in have and stem(w) not in seen]
        if key_missing:
            self._warn("dropped_fact", f"chunk's names/numbers {key_missing} not in the phrase: chunk={chunk!r} "
                       f"phrase={rs!r}", file, line, t, p)
        src = {stem(w) for w in words(chunk + " " + visible)}
        added = [w for w in fact_words(FILLER_NUMBER_ALLOW.sub(" ", rs))
                 if stem(w) not in src and not is_acronym_of(w, chunk)]
        if added:
            self._warn("added_fact", f"phrase has names/numbers {added} not in its chunk or context: "
                       f"chunk={chunk!r} phrase={rs!r}", file, line, t, p)
        if self.nli is not None:
            label = self.nli(chunk, rs)
            if label == "contradiction":
                self._err("nli_contradiction", f"NLI judges the phrase a contradiction of its chunk: "
                          f"chunk={chunk!r} phrase={rs!r}", file, line, t, p)

    # --- corpus level
    def report(self) -> Report:
        st = self.stats
        for key, where in self._responses.items():
            if len(where) > self.max_reuse:
                f, ln, t, p = where[-1]
                locs = ", ".join(f"{Path(a).name}:{b} t{c}" for a, b, c, _ in where[:6])
                self._err("reused", f"phrase used {len(where)} times (max {self.max_reuse}): {key!r} at {locs}",
                          f, ln, t, p)
        st.distinct_responses = len(self._responses)
        st.max_response_reuse = max((len(v) for v in self._responses.values()), default=0)
        st.leading_filler_hist = {str(k): v for k, v in sorted(self._lead_hist.items())}
        st.domains = dict(sorted(self._domains.items()))
        st.mean_filler_words = _mean(self._filler_words)
        st.mean_knowledge_phrase_words = _mean(self._knowledge_words)
        return Report(self.errors, self.warnings, st, self.notes)


def _mean(xs: list[int]) -> float:
    return round(sum(xs) / len(xs), 2) if xs else 0.0


def validate_files(paths: Iterable[str | Path], **kw) -> tuple[Report, list[Conversation]]:
    """Validate files together (the reuse check spans all of them)."""
    v = Validator(**kw)
    for p in paths:
        v.add_file(p)
    return v.report(), v.conversations


def validate_objects(objs: Iterable[Any], **kw) -> Report:
    """Validate in-memory conversation objects (used by tests and other tools)."""
    v = Validator(**kw)
    for i, o in enumerate(objs, start=1):
        v.add_object(o, "<memory>", i)
    return v.report()


# ------------------------------------------------------------------------------------------------- NLI


def load_nli() -> tuple[Callable[[str, str], str] | None, str]:
    """The labeling workbench's NLI judge as `fn(premise, hypothesis) -> label`, or (None, why not).

    Same choice as the workbench: `CONVFILL_NLI_MODEL` or the paper's DeBERTa-v3 MNLI, else the shipped
    offline judge. The message names the model that judges.
    """
    from convfill.nli.judge import load_judge

    judge, message = load_judge()
    if judge is None:
        return None, f"NLI check skipped: {message}"
    return (lambda premise, hypothesis: judge.predict([premise], [hypothesis])[0].label), message


# ------------------------------------------------------------------------------------------------- CLI


def format_stats(st: Stats) -> str:
    t = max(st.turns, 1)
    lines = [
        f"conversations        {st.conversations}",
        f"turns                {st.turns}",
        f"phrase pairs         {st.phrase_pairs} (knowledge {st.knowledge_pairs}, fillers {st.fillers})",
        f"leading fillers      {st.leading_fillers}; per-turn histogram {st.leading_filler_hist}",
        f"mid-turn <sil>       {st.mid_turn_sil} in {st.turns_with_mid_turn_sil} turns "
        f"({st.turns_with_mid_turn_sil / t:.1%} of turns)",
        f"filler runs of 2-3   {st.filler_runs_2_3} (in {st.turns_with_filler_run_2_3} turns); longer runs "
        f"{st.filler_runs_over_3}",
        f"turns w/o knowledge  {st.turns_without_knowledge}",
        f"mean words           filler {st.mean_filler_words}, knowledge phrase {st.mean_knowledge_phrase_words}",
        f"distinct responses   {st.distinct_responses}; max reuse {st.max_response_reuse}",
    ]
    if st.domains:
        lines.append("domains              " + ", ".join(f"{k} {v}" for k, v in st.domains.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.validate_corpus",
                                 description="Check a ConvFill JSONL corpus against the seed-corpus rules.")
    ap.add_argument("files", nargs="+", help="JSONL files, validated together (reuse is counted across all)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--split-out", metavar="DIR", help="write train.jsonl / heldout.jsonl (by conversation)")
    ap.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    ap.add_argument("--heldout-frac", type=float, default=HELDOUT_FRAC, help="held-out share (default 0.1)")
    ap.add_argument("--min-coverage", type=float, default=MIN_COVERAGE,
                    help="warn when a phrase covers less of its chunk's content words (default 0.34)")
    ap.add_argument("--nli", action="store_true", help="also check chunk->phrase with the NLI judge")
    ap.add_argument("--max-warnings", type=int, default=50, help="warnings to print in text mode (default 50)")
    ns = ap.parse_args(argv)
    if not 0 <= ns.heldout_frac < 1:
        ap.error("--heldout-frac must be in [0, 1)")

    nli, notes = None, []
    if ns.nli:
        nli, msg = load_nli()
        notes.append(msg)
        if nli is None:
            print(msg, file=sys.stderr)
    rep, convs = validate_files(ns.files, min_coverage=ns.min_coverage, nli=nli)
    rep.notes.extend(notes)
    split_info = None
    if ns.split_out:
        if rep.ok:
            n_train, n_held = write_split([c.data for c in convs], ns.split_out, ns.seed, ns.heldout_frac)
            split_info = {"dir": ns.split_out, "train": n_train, "heldout": n_held, "seed": ns.seed}
        else:
            rep.notes.append("split not written: fix the errors first")
    if ns.json:
        d = rep.to_dict()
        d["split"] = split_info
        print(json.dumps(d, indent=2, ensure_ascii=False))
    else:
        for i in rep.errors:
            print(i)
        for i in rep.warnings[: ns.max_warnings]:
            print(i)
        if len(rep.warnings) > ns.max_warnings:
            print(f"... {len(rep.warnings) - ns.max_warnings} more warnings (use --json for all)")
        print(format_stats(rep.stats))
        for n in rep.notes:
            print(n)
        if split_info:
            print(f"split: {split_info['train']} train / {split_info['heldout']} held-out conversations "
                  f"-> {split_info['dir']} (seed {split_info['seed']})")
        print(f"{len(rep.errors)} errors, {len(rep.warnings)} warnings")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
