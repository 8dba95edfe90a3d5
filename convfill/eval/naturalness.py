"""Do the Talker's fillers sound like a person, and do its knowledge phrases keep the names? (issue 22)

Computed from what the engine said in multi-turn conversations (`qa --turns-per-conversation K`), next to
retention. Definitions (also in docs/benchmarks.md, "Fillers"):

* **filler**: a phrase spoken from `<sil>` (`source == "sil"`); the **opening filler** of a turn is its
  first phrase when that is a filler (always, with the engine's defaults).
* **template** (`convfill.talkers.fillers.filler_template`): the filler lower-cased, split into clauses at
  , ; : . ! ? and dashes, with the *leading* clauses that echo the user removed (a clause echoes when more
  than half of its content words occur in the user turn or the previous user turn), the user's content words
  in the rest replaced by "_", joined by spaces; all echo = "<echo>". "The first paper money, let me check."
  -> "let me check". **template head**: its first three words.
* **top template share**: turns whose opening filler has the most common template / turns with an opening
  filler (goal <= 0.15). A pure restatement ("<echo>") has no words of its own and is not a template here:
  its wording is the user's topic, different every time; 27% of the seed corpus's human-written opening
  fillers are pure echoes. `echo_share` reports them, and `top_template_share_strict` counts "<echo>" as
  one template too. Also over all fillers, and for the head (echoes excluded likewise).
* **template runs**: in a conversation, three turns in a row whose opening fillers share a template
  (`template_runs_3`: how many such windows; `max_template_run`: the longest run; echoes excluded, and
  `template_runs_3_strict` with them). Goal: none.
* **distinct-2**: distinct word bigrams / all word bigrams (bigrams inside one filler, words as in the
  template rule, echo included). `distinct2_across`: all fillers of the run pooled (across turns and
  conversations); `distinct2_within`: per conversation, its fillers pooled, mean over conversations;
  `distinct2_templates`: the same as `distinct2_across` on the templates (echo removed).
* **filler states facts** (the rule the training data is filtered with, `convfill.eval.talker_scores.score_filler`):
  a filler with a name (capitalised, not sentence-initial) or a number (digits or number words) found in
  none of: this user turn, the previous turn (user and reply), this turn's earlier phrases; or with at
  least 2 content words that only this turn's knowledge chunks hold (a guessed answer). Goal <= 0.01.
* **knowledge phrase drops a name** (`drops_name`): a knowledge phrase with a personal pronoun (he, she,
  him, his, her, hers, they, them, their, theirs) while a name of the turn's chunks so far (a run of
  capitalised words; a sentence-initial function word such as "The" or "He" is not a name) was never heard:
  none of its words (3+ letters) is in the phrase, the user's words, the previous turn or the earlier
  phrases. ("He left Law and Order in 2018." for "Raúl Esparza left Law and Order in 2018.")
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..events import Event, event_from_dict
from ..fold import TurnFold
from ..talkers.fillers import (
    ECHO,
    FUNCTION_WORDS,
    filler_template,
    template_head,
    words,
)
from .talker_scores import score_filler

PRONOUNS = frozenset(["he", "she", "him", "his", "her", "hers", "they", "them", "their", "theirs"])
_CAP_TOKEN = re.compile(r"[^\W\d_][\w'\u2019.-]*|[.!?]+|\S")


@dataclass
class SpokenTurn:
    """What one turn sounded like.

    Parameters:
        user: the user's message.
        phrases: (source, text, chunk_index) in speaking order; source "sil" = filler, "chunk" = knowledge.
        chunks: the knowledge chunks that arrived, in order.
    """

    user: str
    phrases: list[tuple[str, str, int | None]] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)

    @property
    def reply(self) -> str:
        return " ".join(t for _, t, _ in self.phrases if t)

    @property
    def fillers(self) -> list[str]:
        return [t for s, t, _ in self.phrases if s == "sil" and t]

    @property
    def opening_filler(self) -> str | None:
        if self.phrases and self.phrases[0][0] == "sil" and self.phrases[0][1]:
            return self.phrases[0][1]
        return None


def turn_from_events(events: Iterable[Event], user: str | None = None) -> SpokenTurn:
    """A `SpokenTurn` from one turn's engine events (cancelled phrases count with what was said)."""
    fold = TurnFold.of(events)
    turn = SpokenTurn(user if user is not None else fold.user)
    turn.chunks = [c.text for _, c in sorted(fold.chunks.items())]
    turn.phrases = [(p.source, p.text.strip(), p.chunk_index) for p in fold.ended_phrases()
                    if p.source in ("sil", "chunk")]
    return turn


# ------------------------------------------------------------------------------------------- metrics
def bigrams(text: str) -> list[tuple[str, str]]:
    ws = words(text)
    return list(zip(ws, ws[1:]))


def distinct_n2(texts: Iterable[str]) -> float | None:
    """Distinct word bigrams / all word bigrams over `texts` (bigrams never cross two texts)."""
    grams = [g for t in texts for g in bigrams(t)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def name_runs(text: str) -> list[tuple[str, ...]]:
    """Runs of capitalised words in `text` (lower-cased word tuples); a sentence-initial function word
    ("The", "He", "In") is dropped from the start of its run."""
    runs: list[list[str]] = []
    run: list[str] = []
    sentence_start = True
    for tok in _CAP_TOKEN.findall(text):
        if tok[0] in ".!?":
            if run:
                runs.append(run)
            run, sentence_start = [], True
            continue
        word = tok.strip(".'\u2019-")
        if word and word[0].isupper():
            if not (sentence_start and not run and word.lower() in FUNCTION_WORDS):
                run.append(word.lower())
        else:
            if run:
                runs.append(run)
            run = []
        sentence_start = False
    if run:
        runs.append(run)
    return [tuple(r) for r in runs]


def _word_set(text: str) -> set[str]:
    return {w.strip(".'\u2019-").lower() for w in _CAP_TOKEN.findall(text)}


def drops_name(phrase: str, chunks: Sequence[str], heard: str) -> list[str]:
    """The names of `chunks` a knowledge `phrase` replaces by a pronoun without the listener ever having
    heard them (empty: no drop). See the module docstring for the rule."""
    said = _word_set(phrase)
    if not (said & PRONOUNS):
        return []
    known = said | _word_set(heard)
    out = []
    for chunk in chunks:
        for run in name_runs(chunk):
            if not any(w in known for w in run if len(w) >= 3) and any(len(w) >= 3 for w in run):
                name = " ".join(run)
                if name not in out:
                    out.append(name)
    return out


def filler_facts(filler: str, user: str, earlier: Sequence[str], prev_user: str | None, prev_reply: str | None,
                 chunks: Sequence[str]) -> dict:
    """`talker_scores.score_filler` on an engine filler (the turn's chunks are the unseen knowledge)."""
    from ..prompt import PhraseContext

    ctx = PhraseContext(user, None, tuple(earlier), prev_user, prev_reply)
    return score_filler(filler, ctx, list(chunks))


def conversation_rows(conversation: Sequence[SpokenTurn], conversation_index: int = 0) -> list[dict]:
    """One row per phrase of a conversation with its naturalness judgements."""
    rows = []
    prev_user = prev_reply = None
    for ti, turn in enumerate(conversation):
        earlier: list[str] = []
        for pi, (source, text, chunk_index) in enumerate(turn.phrases):
            row = {"conversation": conversation_index, "turn": ti, "phrase": pi, "source": source, "text": text}
            if source == "sil":
                row["template"] = filler_template(text, turn.user, prev_user or "")
                row["opening"] = pi == 0
                facts = filler_facts(text, turn.user, earlier, prev_user, prev_reply, turn.chunks)
                row["states_facts"] = facts["hallucinated"]
                row["facts"] = {k: facts[k] for k in ("new_names", "new_numbers", "leaked_words")}
            elif source == "chunk":
                upto = turn.chunks[: (chunk_index or 0) + 1] if turn.chunks else []
                heard = " ".join(x for x in (prev_user, prev_reply, turn.user, *earlier) if x)
                row["dropped_names"] = drops_name(text, upto, heard)
            rows.append(row)
            earlier.append(text)
        prev_user, prev_reply = turn.user, turn.reply
    return rows


def _share(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def summarize_naturalness(conversations: Sequence[Sequence[SpokenTurn]], top: int = 5) -> dict:
    """The naturalness numbers of a run (see the module docstring), plus examples to read."""
    rows = [r for ci, c in enumerate(conversations) for r in conversation_rows(c, ci)]
    fill = [r for r in rows if r["source"] == "sil"]
    opening = [r for r in fill if r["opening"]]
    know = [r for r in rows if r["source"] == "chunk"]
    tmpl_strict = Counter(r["template"] for r in opening)
    tmpl = Counter(r["template"] for r in opening if r["template"] != ECHO)
    heads = Counter(template_head(r["template"]) for r in opening if r["template"] != ECHO)
    tmpl_all = Counter(r["template"] for r in fill if r["template"] != ECHO)
    # runs of the same opening template over consecutive turns of one conversation
    def runs(strict: bool) -> tuple[int, int, int]:
        runs_3 = max_run = repeats_2 = 0
        for ci, conv in enumerate(conversations):
            by_turn = {r["turn"]: r["template"] for r in opening if r["conversation"] == ci
                       and (strict or r["template"] != ECHO)}
            seq = [by_turn.get(t) for t in range(len(conv))]
            run = 0
            for i, t in enumerate(seq):
                run = run + 1 if t is not None and i > 0 and seq[i - 1] == t else (1 if t is not None else 0)
                max_run = max(max_run, run)
                runs_3 += run >= 3
                repeats_2 += run >= 2
        return runs_3, max_run, repeats_2

    runs_3, max_run, repeats_2 = runs(False)
    runs_3_strict, max_run_strict, _ = runs(True)
    pairs = sum(max(0, len(c) - 1) for c in conversations)
    within = [d for d in (distinct_n2(r["text"] for r in fill if r["conversation"] == ci)
                          for ci in range(len(conversations))) if d is not None]
    facts = [r for r in fill if r["states_facts"]]
    dropped = [r for r in know if r["dropped_names"]]
    top_t, top_n = tmpl.most_common(1)[0] if tmpl else (None, 0)
    top_h, top_hn = heads.most_common(1)[0] if heads else (None, 0)
    return {
        "n_conversations": len(conversations),
        "n_turns": sum(len(c) for c in conversations),
        "n_fillers": len(fill),
        "n_opening_fillers": len(opening),
        "n_knowledge_phrases": len(know),
        "top_template": top_t,
        "top_template_share": _share(top_n, len(opening)),
        "top_template_share_all_fillers": _share(tmpl_all.most_common(1)[0][1], len(fill)) if tmpl_all else None,
        "echo_share": _share(tmpl_strict.get(ECHO, 0), len(opening)),
        "top_template_share_strict": _share(tmpl_strict.most_common(1)[0][1], len(opening)) if opening else None,
        "top_template_head": top_h,
        "top_template_head_share": _share(top_hn, len(opening)),
        "n_templates": len(tmpl),
        "templates_top": [[t, n] for t, n in tmpl_strict.most_common(top)],
        "template_repeats_2_share": _share(repeats_2, pairs),
        "template_runs_3": runs_3,
        "max_template_run": max_run,
        "template_runs_3_strict": runs_3_strict,
        "max_template_run_strict": max_run_strict,
        "distinct2_across": distinct_n2(r["text"] for r in fill),
        "distinct2_within": round(sum(within) / len(within), 4) if within else None,
        "distinct2_templates": distinct_n2(r["template"] for r in fill if r["template"] != "<echo>"),
        "filler_states_facts": _share(len(facts), len(fill)),
        "filler_facts_examples": [r["text"] for r in facts[:top]],
        "knowledge_drops_name": _share(len(dropped), len(know)),
        "knowledge_drops_name_examples": [[r["text"], r["dropped_names"]] for r in dropped[:top]],
    }


NATURALNESS_ROWS = [
    ("top_template_share", "most common opening-filler template, share of turns ↓ (goal <= 0.15)"),
    ("top_template", "  that template"),
    ("echo_share", "pure restatements (\"<echo>\", not a template), share of turns"),
    ("top_template_share_strict", "most common template counting \"<echo>\" as one, share of turns ↓"),
    ("top_template_head_share", "most common template head (3 words), share of turns ↓"),
    ("top_template_share_all_fillers", "most common template, share of all fillers ↓"),
    ("template_repeats_2_share", "same template as the previous turn, share of turn pairs ↓"),
    ("template_runs_3", "same template 3 turns in a row (windows) ↓ (goal 0)"),
    ("template_runs_3_strict", "  the same, \"<echo>\" counted as a template ↓"),
    ("distinct2_within", "distinct-2 of fillers within a conversation ↑"),
    ("distinct2_across", "distinct-2 of all fillers (across turns) ↑"),
    ("distinct2_templates", "distinct-2 of all templates (echo removed) ↑"),
    ("filler_states_facts", "fillers stating facts ↓ (goal <= 0.01)"),
    ("knowledge_drops_name", "knowledge phrases dropping a name for a pronoun ↓"),
]


def conversations_from_records(path) -> list[list[SpokenTurn]]:
    """The conversations of a `qa` per-item JSONL (`qa_<label>.jsonl`), to score a run again."""
    import json
    from pathlib import Path

    convs: dict[int, list[SpokenTurn]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        turn = turn_from_events([event_from_dict(e) for e in r["events"]], user=r["question"])  # the one fold
        convs.setdefault(r.get("conversation", len(convs)), []).append(turn)
    return [convs[k] for k in sorted(convs)]
