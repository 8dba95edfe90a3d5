"""What the generator asks a Reasoner for: one JSON scaffold per conversation, fixed by (seed, index).

Why its own module: the request (instructions, persona, slot schedule) is one concept, and a resumed run must
rebuild exactly the spec of every missing index; `training.gen_checks` then checks answers against it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .generate import GenConfig

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
    """The spec of conversation `index`: topic, persona and slot schedule drawn from a (seed, index) RNG."""
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


def scaffold_prompt(spec: Spec) -> str:
    """The request for one conversation: the instructions with `spec`'s scaffold to fill (not a Talker prompt,
    which is `convfill.prompt.build_prompt`)."""
    return INSTRUCTIONS.format(domain=spec.domain, topic=spec.topic, persona=spec.persona,
                               scaffold=json.dumps(scaffold(spec), indent=1))
