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
  nli           with an NLI judge, premises by `convfill.nli.premise_for` (a knowledge phrase: its chunk
                + the turn's earlier phrases; a filler: the user turn + them): a knowledge phrase must
                not be contradiction (`max_contradiction`) and must reach `min_entailment` (the
                reference code effectively has no floor); a filler must not contradict its premise.

Runs are resumable: each conversation has a deterministic spec from (seed, index), and the output and
rejection files are appended line by line, so a killed run continues with exactly the missing indices.
Rate limits sleep with exponential backoff; a parse error gets one correction round-trip.
The request lives in `training.gen_scaffold`, the checks in `training.gen_checks`; this module runs the job.

    python -m training.generate --reasoner openai --model gpt-4o-mini --domain "customer support" \\
        --topics topics.txt --n 200 --out data/generated/support.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convfill.errors import ConvFillError, ReasonerError
from convfill.reasoners import Message, ReasonerRequest, get_reasoner

from .gen_checks import Judge, ParseError, Rejection, check_generated, parse_response, to_convfill
from .gen_scaffold import CORRECTION, GENERATOR_SYSTEM, Spec, make_spec, scaffold_prompt


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
    "max_contradiction": "largest allowed P(contradiction) of premise -> phrase",
    "min_entailment": "smallest allowed P(entailment) of premise -> knowledge phrase",
    "price_in": "USD per 1M input tokens", "price_out": "USD per 1M output tokens",
}


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
        prompt = scaffold_prompt(spec)
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
            last = check_generated(obj, spec, self.judge, self.cfg.max_contradiction, self.cfg.min_entailment)
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
