"""The seed-corpus validator's checks: structure, spoken style, `<sil>` rules, fillers, knowledge phrases,
reuse and (optionally) NLI, over one or more JSONL files, with corpus statistics.

`training.validate_corpus` is its command line; `training.corpus_text` holds the word-level rules.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from convfill.nli import premise_for
from convfill.prompt import SIL

from .corpus_text import (FILLER_CONFIRMS, FILLER_NUMBER_ALLOW, FILLER_PREVIEWS, SIL_LIKE, WORD,
                          capitalised_non_initial, coverage, fact_words, has_control_tokens, is_acronym_of,
                          loose_stem, name_key, normalise, number_words, style_problems, corpus_words)

ALLOWED_TOP_KEYS = {"conversation", "domain"}
TURN_KEYS = {"user", "thoughts", "response"}
MAX_FILLER_WORDS = 20
MAX_REUSE = 2
MIN_COVERAGE = 0.34


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
                elif SIL_LIKE.search(th):
                    self._err("sil_form", f"thoughts entry contains a <sil> look-alike; it must be exactly "
                              f"'<sil>': {th!r}", file, line, t, p)
                elif has_control_tokens(th):
                    self._err("control_token", f"control token in knowledge chunk: {th!r}", file, line, t, p)
                for code, msg in style_problems(th):
                    self._warn("chunk_" + code, msg, file, line, t, p)
            # response entry
            if not rs.strip():
                self._err("empty", "empty response phrase", file, line, t, p)
            elif SIL_LIKE.search(rs):
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
                if self.nli is not None:
                    self._check_nli(user, th, rs, responses[:p], file, line, t, p)
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
        vis = {name_key(w) for w in WORD.findall(visible)}
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
        vis_stems = {loose_stem(w) for w in vis}  # "Olympics" in a filler matches "Olympic" in the user turn
        names = [w for w in capitalised_non_initial(rs) if name_key(w) not in vis and loose_stem(w) not in vis_stems]
        if names:
            self._err("filler_name", f"filler names {names}, not in the user turn or earlier text: {rs!r}",
                      file, line, t, p)

    def _check_knowledge(self, chunk: str, rs: str, visible: str, file: str, line: int, t: int, p: int) -> None:
        self._knowledge_words.append(len(rs.split()))
        cov, missing = coverage(chunk, rs)
        if cov < self.min_coverage:
            self._warn("low_coverage", f"phrase covers {cov:.0%} of the chunk's content words (missing "
                       f"{missing}): chunk={chunk!r} phrase={rs!r}", file, line, t, p)
        have = {loose_stem(w) for w in corpus_words(rs)}
        # A name already in the visible context may be referred to by pronoun ("It's in the Louvre").
        seen = {loose_stem(w) for w in corpus_words(visible)}
        key_missing = [w for w in fact_words(chunk) if loose_stem(w) not in have and loose_stem(w) not in seen]
        if key_missing:
            self._warn("dropped_fact", f"chunk's names/numbers {key_missing} not in the phrase: chunk={chunk!r} "
                       f"phrase={rs!r}", file, line, t, p)
        src = {loose_stem(w) for w in corpus_words(chunk + " " + visible)}
        added = [w for w in fact_words(FILLER_NUMBER_ALLOW.sub(" ", rs))
                 if loose_stem(w) not in src and not is_acronym_of(w, chunk)]
        if added:
            self._warn("added_fact", f"phrase has names/numbers {added} not in its chunk or context: "
                       f"chunk={chunk!r} phrase={rs!r}", file, line, t, p)

    def _check_nli(self, user: str, chunk: str, rs: str, earlier: list[str], file: str, line: int, t: int,
                   p: int) -> None:
        """The judge sees the workbench's pair (`convfill.nli.premise_for`: the chunk, then the turn's earlier
        phrases), so a phrase that refers back to an earlier one ("It came out in 1813") is not misjudged."""
        pair = premise_for(rs, user=user, knowledge=chunk, earlier=earlier)
        if self.nli(pair.premise, pair.hypothesis) == "contradiction":
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
