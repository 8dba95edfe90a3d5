"""Synthetic ConvFill data with entailment gating: the paper's data pipeline, with its gaps closed.

A Reasoner (any registered one: OpenAI, Anthropic, Gemini, an OpenAI-compatible server, or the offline
`local` model) fills a JSON scaffold for one conversation: per turn a user message and a fixed schedule of
slots, `<sil>` fillers (0-3 at the start, and sometimes mid-turn after knowledge, which the released data
lacks) and 1-5 knowledge chunks, each with the Talker phrase spoken from it.

Every conversation then passes validators, each rejection recorded with its reason:
  structure     JSON shape, non-empty strings, the schedule respected exactly;
  spoken        speech-ready text: no digits, markdown, URLs, emoji or control tokens;
  diversity     no phrase used more than twice in one conversation;
  visibility    a filler may only use what the Talker could know then (user turn, previous turn,
                earlier phrases), never words that only appear in upcoming knowledge;
  new_facts     a filler states no names or numbers absent from what the Talker could know;
  nli           with an NLI judge: chunk -> phrase must not be contradiction (`max_contradiction`) and
                must reach `min_entailment` (the reference code effectively has no floor); a filler
                must not contradict the user turn.

Runs are resumable: each conversation has a deterministic spec from (seed, index), and the output and
rejection files are appended line by line, so a killed run continues with exactly the missing indices.
Rate limits sleep with exponential backoff; a parse error gets one correction round-trip.

    python -m training.generate --reasoner openai --model gpt-4o-mini --domain "customer support" \\
        --topics topics.txt --n 200 --out data/generated/support.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from convfill.errors import ConvFillError, ReasonerError
from convfill.prompt import SIL, sanitize
from convfill.reasoners import Message, ReasonerRequest, get_reasoner

from .rules import STOPWORDS, content_words, leaked_words, new_names, stem

GENERATOR_SYSTEM = (
    "You write training data for a voice assistant made of two models: a small Talker that speaks at once "
    "and a large Reasoner that sends short knowledge sentences. You fill JSON scaffolds exactly: keep every "
    "key and slot, replace each \"...\" with text, output only the JSON object."
)

INSTRUCTIONS = """Fill this scaffold for a realistic spoken conversation.
Domain: {domain}. Topic: {topic}. The user is {persona}.
Rules:
- "user": what the user says (spoken, natural; later turns follow up on earlier ones).
- "sil" slots are fillers the Talker says while waiting: acknowledge or restate the user's request. A filler
  may only use what the Talker knows at that moment: this user turn, the previous turn and the phrases
  already said. Never state facts, names or numbers, never anticipate the upcoming knowledge.
- "knowledge" slots: "chunk" is one short standalone factual sentence the Reasoner sends (correct, one
  idea); "phrase" is the Talker saying exactly that chunk's meaning in natural speech, no new facts.
- Spoken style everywhere: numbers written as words, no digits, no lists, no markdown, no emoji.
- Vary the fillers; never repeat a phrase.
Scaffold:
{scaffold}"""

CORRECTION = ("Your previous answer could not be used: {error}. Reply again with only the corrected JSON "
              "object for the same scaffold.")


# --------------------------------------------------------------------------------------------- config
@dataclass
class GenConfig:
    """Options of one generation run (every field is a CLI flag)."""

    out: str = "data/generated/generated.jsonl"  # accepted conversations (ConvFill JSONL)
    n: int = 10                     # conversations to produce (accepted + finally rejected)
    domain: str = "general assistance"
    topics: str = ""                # file with one topic per line, or a ';'-separated list
    personas: str = ""              # file or ';'-separated list
    turns: int = 4                  # turns per conversation
    min_sil: int = 0                # fillers at the start of a turn: between min_sil and max_sil
    max_sil: int = 3
    min_chunks: int = 1             # knowledge chunks per turn
    max_chunks: int = 5
    mid_sil_prob: float = 0.3       # chance that a turn gets a <sil> after some knowledge
    seed: int = 0
    reasoner: str = "openai"
    model: str = ""
    base_url: str = ""
    max_tokens: int = 2048
    temperature: float = 0.8
    concurrency: int = 4            # conversations generated at once
    max_attempts: int = 3           # generation attempts per conversation before it is rejected for good
    max_rate_retries: int = 6       # 429 retries per request, sleeping 2^k s (capped at 60)
    nli_model: str = ""             # NLI judge (hub id or path); "" = the labeling default; "none" = no gate
    max_contradiction: float = 0.2  # reject a knowledge phrase whose P(contradiction) exceeds this
    min_entailment: float = 0.5     # reject a knowledge phrase whose P(entailment) is below this
    price_in: float = 0.0           # USD per million input tokens (for the cost report)
    price_out: float = 0.0          # USD per million output tokens


HELP = {
    "out": "output ConvFill JSONL; rejections go to OUT.rejects.jsonl; rerunning resumes",
    "n": "number of conversations (indices 0..n-1)", "domain": "domain of the conversations",
    "topics": "topics: a file (one per line) or a ';'-separated list",
    "personas": "user personas: a file (one per line) or a ';'-separated list",
    "turns": "turns per conversation", "min_sil": "fewest <sil> fillers at the start of a turn",
    "max_sil": "most <sil> fillers at the start of a turn (<= 3)", "min_chunks": "fewest knowledge chunks a turn",
    "max_chunks": "most knowledge chunks a turn (<= 5)", "mid_sil_prob": "probability of a mid-turn <sil>",
    "seed": "seed of the per-conversation specs", "reasoner": "Reasoner that writes the data",
    "model": "model name for the Reasoner", "base_url": "OpenAI-compatible server URL",
    "max_tokens": "answer token cap", "temperature": "sampling temperature",
    "concurrency": "conversations in flight", "max_attempts": "attempts per conversation",
    "max_rate_retries": "rate-limit retries per request (exponential backoff)",
    "nli_model": "NLI judge id/path; empty = labeling default; 'none' disables the NLI gate",
    "max_contradiction": "largest allowed P(contradiction) of chunk -> phrase",
    "min_entailment": "smallest allowed P(entailment) of chunk -> phrase",
    "price_in": "USD per 1M input tokens", "price_out": "USD per 1M output tokens",
}


# ---------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class Spec:
    """What conversation `index` must look like: fixed by (seed, index) so resumed runs agree."""

    index: int
    domain: str
    topic: str
    persona: str
    schedule: tuple[tuple[str, ...], ...]  # per turn: "sil" / "knowledge" slots in order

    @property
    def id(self) -> str:
        return f"gen-{self.index:06d}"


def _items(value: str, default: list[str]) -> list[str]:
    if not value:
        return default
    p = Path(value)
    lines = p.read_text().splitlines() if p.is_file() else value.split(";")
    return [x.strip() for x in lines if x.strip()] or default


def make_spec(cfg: GenConfig, index: int) -> Spec:
    rng = random.Random(f"{cfg.seed}:{index}")
    topics = _items(cfg.topics, [cfg.domain])
    personas = _items(cfg.personas, ["a curious adult", "a busy parent", "a student", "a retiree"])
    schedule = []
    for _ in range(cfg.turns):
        slots = ["sil"] * rng.randint(cfg.min_sil, min(3, cfg.max_sil))
        k = rng.randint(cfg.min_chunks, min(5, cfg.max_chunks))
        mid = rng.randint(1, k - 1) if k > 1 and rng.random() < cfg.mid_sil_prob else None
        for j in range(k):
            if j == mid:
                slots.append("sil")
            slots.append("knowledge")
        schedule.append(tuple(slots))
    return Spec(index, cfg.domain, rng.choice(topics), rng.choice(personas), tuple(schedule))


def scaffold(spec: Spec) -> dict:
    turns = []
    for slots in spec.schedule:
        turns.append({"user": "...", "slots": [
            {"type": "sil", "phrase": "..."} if s == "sil" else {"type": "knowledge", "chunk": "...", "phrase": "..."}
            for s in slots]})
    return {"turns": turns}


def build_prompt(spec: Spec) -> str:
    return INSTRUCTIONS.format(domain=spec.domain, topic=spec.topic, persona=spec.persona,
                               scaffold=json.dumps(scaffold(spec), indent=1))


# ---------------------------------------------------------------------------------------- validation
@dataclass(frozen=True)
class Rejection:
    """Why (part of) a conversation was rejected."""

    validator: str
    detail: str
    turn: int | None = None
    slot: int | None = None


class ParseError(ConvFillError):
    pass


def parse_response(text: str) -> dict:
    """The JSON object in a model answer (code fences and chatter around it are tolerated)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ParseError("no JSON object found")
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError as e:
        raise ParseError(f"invalid JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise ParseError("the answer is not a JSON object")
    return obj


def check_structure(obj: dict, spec: Spec) -> list[Rejection]:
    turns = obj.get("turns")
    if not isinstance(turns, list) or len(turns) != len(spec.schedule):
        return [Rejection("structure", f"expected {len(spec.schedule)} turns, got "
                                       f"{len(turns) if isinstance(turns, list) else type(turns).__name__}")]
    out = []
    for ti, (turn, slots) in enumerate(zip(turns, spec.schedule)):
        if not isinstance(turn, dict) or not _text(turn.get("user")):
            out.append(Rejection("structure", "missing user text", ti))
            continue
        got = turn.get("slots")
        if not isinstance(got, list) or [s.get("type") if isinstance(s, dict) else None for s in got] != list(slots):
            out.append(Rejection("structure", f"slots do not follow the schedule {list(slots)}", ti))
            continue
        for si, s in enumerate(got):
            keys = ("phrase",) if s["type"] == "sil" else ("chunk", "phrase")
            for k in keys:
                if not _text(s.get(k)):
                    out.append(Rejection("structure", f"empty {k}", ti, si))
    return out


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() not in ("", "...")


_NOT_SPOKEN = [
    (re.compile(r"\d"), "digits (numbers must be words)"),
    (re.compile(r"[*_#`|]|^\s*[-\u2022]\s", re.M), "markdown or list markup"),
    (re.compile(r"https?://|www\.", re.I), "a URL"),
    (re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]"), "an emoji"),
]


def check_spoken(obj: dict) -> list[Rejection]:
    out = []
    for ti, si, kind, text in _texts(obj):
        if sanitize(text) != re.sub(r"\s+", " ", text).strip():
            out.append(Rejection("spoken", f"{kind} holds control tokens", ti, si))
            continue
        for rx, what in _NOT_SPOKEN:
            if rx.search(text):
                out.append(Rejection("spoken", f"{kind} contains {what}: {text[:60]!r}", ti, si))
                break
    return out


def _texts(obj: dict):
    for ti, turn in enumerate(obj["turns"]):
        yield ti, None, "user", turn["user"]
        for si, s in enumerate(turn["slots"]):
            if s["type"] == "knowledge":
                yield ti, si, "chunk", s["chunk"]
            yield ti, si, "phrase", s["phrase"]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z' ]+", "", text.lower()).strip()


def check_diversity(obj: dict, max_uses: int = 2) -> list[Rejection]:
    counts = Counter(_norm(s["phrase"]) for t in obj["turns"] for s in t["slots"])
    return [Rejection("diversity", f"phrase used {c} times: {p[:60]!r}") for p, c in counts.items() if c > max_uses]


# The word rules live in `training.rules` (shared with the Talker evaluation); aliases keep old imports working.
_STOP, _stem, _content_words = STOPWORDS, stem, content_words


def check_fillers(obj: dict) -> list[Rejection]:
    """Visibility and new-facts rules for `<sil>` phrases."""
    out = []
    prev_text = ""
    for ti, turn in enumerate(obj["turns"]):
        visible = prev_text + " " + turn["user"]
        slots = turn["slots"]
        for si, s in enumerate(slots):
            if s["type"] == "sil":
                upcoming = [x["chunk"] for x in slots[si:] if x["type"] == "knowledge"]
                leaked = leaked_words(s["phrase"], visible, upcoming)
                if leaked:
                    out.append(Rejection("visibility", f"filler uses upcoming knowledge: {sorted(leaked)}", ti, si))
                unseen = new_names(s["phrase"], visible)
                if unseen:
                    out.append(Rejection("new_facts", f"filler names {sorted(unseen)} not in the context",
                                         ti, si))
            visible += " " + s["phrase"]
        prev_text = turn["user"] + " " + " ".join(s["phrase"] for s in slots)
    return out


class Judge(Protocol):
    """Anything with `predict(premises, hypotheses)` returning items with a `probs` dict
    (entailment/neutral/contradiction), e.g. `convfill.nli.judge.NLIJudge`."""

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list: ...


def check_nli(obj: dict, judge: Judge, max_contradiction: float, min_entailment: float) -> list[Rejection]:
    pairs, where = [], []
    for ti, turn in enumerate(obj["turns"]):
        earlier: list[str] = []
        for si, s in enumerate(turn["slots"]):
            if s["type"] == "knowledge":
                pairs.append((s["chunk"], s["phrase"]))
                where.append((ti, si, "knowledge"))
            else:
                pairs.append((" ".join([turn["user"], *earlier]), s["phrase"]))
                where.append((ti, si, "filler"))
            earlier.append(s["phrase"])
    if not pairs:
        return []
    preds = judge.predict([p for p, _ in pairs], [h for _, h in pairs])
    out = []
    for (ti, si, kind), pred in zip(where, preds):
        probs = {k.lower(): float(v) for k, v in _probs(pred).items()}
        c, e = probs.get("contradiction", 0.0), probs.get("entailment", 0.0)
        if c > max_contradiction:
            out.append(Rejection("nli", f"{kind} contradicts its premise (P={c:.2f})", ti, si))
        elif kind == "knowledge" and e < min_entailment:
            out.append(Rejection("nli", f"knowledge phrase not entailed by its chunk (P={e:.2f})", ti, si))
    return out


def _probs(pred: Any) -> dict:
    return pred["probs"] if isinstance(pred, dict) else pred.probs


def validate(obj: dict, spec: Spec, judge: Judge | None, cfg: GenConfig) -> list[Rejection]:
    """All validators in order; later ones only run on a structurally valid conversation."""
    bad = check_structure(obj, spec)
    if bad:
        return bad
    bad = check_spoken(obj) + check_diversity(obj) + check_fillers(obj)
    if not bad and judge is not None:
        bad = check_nli(obj, judge, cfg.max_contradiction, cfg.min_entailment)
    return bad


def to_convfill(obj: dict, spec: Spec) -> dict:
    """The shared ConvFill conversation format (plus `id` and `domain` for provenance)."""
    conv = []
    for turn in obj["turns"]:
        conv.append({"user": turn["user"].strip(),
                     "thoughts": [SIL if s["type"] == "sil" else s["chunk"].strip() for s in turn["slots"]],
                     "response": [s["phrase"].strip() for s in turn["slots"]]})
    return {"id": spec.id, "domain": spec.domain, "conversation": conv}


# ------------------------------------------------------------------------------------------ the run
@dataclass
class Report:
    requested: int = 0
    skipped_done: int = 0
    accepted: int = 0
    rejected: int = 0
    attempts: int = 0
    corrections: int = 0
    rate_limit_waits: int = 0
    reasons: Counter = field(default_factory=Counter)
    chars_in: int = 0
    chars_out: int = 0

    def to_dict(self, cfg: GenConfig) -> dict:
        tok_in, tok_out = self.chars_in / 4, self.chars_out / 4  # ~4 characters per token (estimate)
        done = self.accepted + self.rejected
        return {
            "requested": self.requested, "already_done": self.skipped_done, "accepted": self.accepted,
            "rejected": self.rejected, "acceptance_rate": round(self.accepted / done, 3) if done else None,
            "attempts": self.attempts, "corrections": self.corrections, "rate_limit_waits": self.rate_limit_waits,
            "rejection_reasons": dict(self.reasons), "est_tokens_in": int(tok_in), "est_tokens_out": int(tok_out),
            "est_cost_usd": round((tok_in * cfg.price_in + tok_out * cfg.price_out) / 1e6, 4),
        }


def _done_ids(path: Path) -> set[str]:
    """Ids already written to a JSONL file; a torn last line (killed mid-write) is dropped."""
    ids = set()
    if not path.exists():
        return ids
    good = []
    for line in path.read_text().splitlines():
        try:
            ids.add(json.loads(line)["id"])
            good.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    path.write_text("".join(g + "\n" for g in good))
    return ids


class Generator:
    """Runs a generation job. `sleep` is injectable so tests need not wait out backoffs."""

    def __init__(self, cfg: GenConfig, reasoner=None, judge: Judge | None = None, sleep=asyncio.sleep,
                 progress: bool = True):
        self.cfg = cfg
        self.reasoner = reasoner or self._make_reasoner()
        self.judge = judge
        self.sleep = sleep
        self.progress = progress
        self.out = Path(cfg.out)
        self.rejects = self.out.with_suffix(".rejects.jsonl")
        self.report = Report()
        self._write_lock = asyncio.Lock()

    def _make_reasoner(self):
        opts: dict[str, Any] = {"system": GENERATOR_SYSTEM, "max_tokens": self.cfg.max_tokens,
                                "temperature": self.cfg.temperature}
        if self.cfg.model:
            opts["model"] = self.cfg.model
        if self.cfg.base_url:
            opts["base_url"] = self.cfg.base_url
        return get_reasoner(self.cfg.reasoner, **opts)

    async def _ask(self, prompt: str, history: tuple[Message, ...] = ()) -> str:
        for attempt in range(self.cfg.max_rate_retries + 1):
            try:
                parts = [d async for d in self.reasoner.stream(ReasonerRequest(prompt, history))]
                text = "".join(parts)
                self.report.chars_in += len(prompt) + sum(len(m.content) for m in history)
                self.report.chars_out += len(text)
                return text
            except ReasonerError as e:
                if e.category not in ("rate_limit", "server", "timeout", "network") or \
                        attempt == self.cfg.max_rate_retries:
                    raise
                self.report.rate_limit_waits += 1
                await self.sleep(min(60.0, 2.0 ** attempt))
        raise AssertionError("unreachable")

    async def one(self, spec: Spec) -> tuple[dict | None, list[Rejection]]:
        """Generate and validate one conversation (with retries and one correction per attempt)."""
        prompt = build_prompt(spec)
        last: list[Rejection] = []
        for _ in range(self.cfg.max_attempts):
            self.report.attempts += 1
            try:
                text = await self._ask(prompt)
            except ReasonerError as e:
                return None, [Rejection("reasoner", f"{e.category}: {e}")]
            try:
                obj = parse_response(text)
            except ParseError as e:
                self.report.corrections += 1
                try:
                    text = await self._ask(CORRECTION.format(error=e),
                                           (Message("user", prompt), Message("assistant", text)))
                    obj = parse_response(text)
                except ParseError as e2:
                    last = [Rejection("parse", str(e2))]
                    continue
                except ReasonerError as e2:
                    return None, [Rejection("reasoner", f"{e2.category}: {e2}")]
            last = validate(obj, spec, self.judge, self.cfg)
            if not last:
                return to_convfill(obj, spec), []
        return None, last

    async def _work(self, spec: Spec, bar) -> None:
        conv, why = await self.one(spec)
        async with self._write_lock:
            if conv is not None:
                self._append(self.out, conv)
                self.report.accepted += 1
            else:
                self._append(self.rejects, {"id": spec.id, "reasons": [dataclasses.asdict(r) for r in why]})
                self.report.rejected += 1
                self.report.reasons.update(r.validator for r in why)
            if bar is not None:
                bar.update(1)

    @staticmethod
    def _append(path: Path, obj: dict) -> None:
        with path.open("a") as f:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            f.flush()

    async def run(self) -> dict:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        done = _done_ids(self.out) | _done_ids(self.rejects)
        todo = [make_spec(self.cfg, i) for i in range(self.cfg.n)]
        todo = [s for s in todo if s.id not in done]
        self.report.requested, self.report.skipped_done = self.cfg.n, self.cfg.n - len(todo)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="conversations", file=sys.stderr)
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def guarded(spec):
            async with sem:
                await self._work(spec, bar)

        try:
            async with asyncio.TaskGroup() as tg:
                for s in todo:
                    tg.create_task(guarded(s))
        finally:
            if bar is not None:
                bar.close()
        return self.report.to_dict(self.cfg)


def load_judge_for(cfg: GenConfig):
    """The labeling workbench's judge, or None when disabled or unavailable (said on stderr)."""
    if cfg.nli_model.lower() == "none":
        return None
    try:
        from convfill.nli.judge import load_judge
    except ImportError:
        print("note: no NLI judge available (convfill.nli.judge missing); NLI gate skipped", file=sys.stderr)
        return None
    result = load_judge(cfg.nli_model or None)
    judge = result[0] if isinstance(result, tuple) else result
    if judge is None:
        print(f"note: no NLI judge could be loaded ({result[1] if isinstance(result, tuple) else ''}); "
              "NLI gate skipped", file=sys.stderr)
    return judge


def parse_args(argv: list[str] | None = None) -> GenConfig:
    p = argparse.ArgumentParser(prog="python -m training.generate", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(GenConfig):
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default), default=f.default,
                       help=f"{HELP[f.name]} (default: {f.default!r})")
    cfg = GenConfig(**vars(p.parse_args(argv)))
    if not (0 <= cfg.min_sil <= cfg.max_sil <= 3 and 1 <= cfg.min_chunks <= cfg.max_chunks <= 5):
        p.error("need 0 <= min-sil <= max-sil <= 3 and 1 <= min-chunks <= max-chunks <= 5")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        gen = Generator(cfg, judge=load_judge_for(cfg))
        report = asyncio.run(gen.run())
    except ConvFillError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
