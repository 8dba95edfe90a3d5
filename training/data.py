"""ConvFill training data: load conversations, split them, and turn them into tokenized phrase examples.

Owns the path from ConvFill JSONL (the released dataset, the labeling workbench export, our own corpora) to
`(input_ids, labels)` pairs. The prompt of every example is built by `convfill.prompt.build_prompt` and its
target by `convfill.prompt.target_text`, the same functions the engine calls at inference, so training and
serving cannot drift apart.

Format (one JSON object per line):
    {"conversation": [{"user": str, "thoughts": [str, ...], "response": [str, ...]}, ...]}
`thoughts[i]` is a knowledge chunk or the literal "<sil>"; `response[i]` is the phrase said from it.

Decisions and why:
- The split is by conversation, never by turn: turns of one conversation share a topic and phrases, so a
  turn-level split would leak validation text into training.
- Prompt and target are tokenized separately and concatenated. At inference the prompt is tokenized alone
  and the model continues it token by token, so this is exactly the sequence it will see; joint tokenization
  could merge a token across the boundary that inference never produces.
- Truncation removes history, never the target: first the previous turn, then the oldest earlier phrases of
  this turn. An example whose current user text + knowledge + target still do not fit is skipped (counted).
- The released data has `<sil>` only at the start of a turn, but the engine also says fillers mid-turn (the
  Reasoner pauses after some knowledge). `sil_augment` adds such examples; see `augment_mid_turn_sil`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convfill.errors import ConvFillError
from convfill.conversations import is_sil, validate
from convfill.jsonl import read_jsonl
from convfill.prompt import SIL, PhraseContext, build_prompt, sanitize, target_text

HUB_DATASET = "zenglhardt/convfill-dataset"
HUB_PREFIX = "hub:"


class DataError(ConvFillError):
    """Training data is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Turn:
    """One user turn and the Talker's phrases, each paired with the thought it was said from."""

    user: str
    thoughts: tuple[str, ...]
    response: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    """A conversation and where it came from (`file:line`, used in error messages and split reports)."""

    turns: tuple[Turn, ...]
    source: str = ""


# ---------------------------------------------------------------------------------------------------------
# Loading and validation


def parse_conversation(obj: object, where: str) -> Conversation:
    """Validate one decoded JSON line (`convfill.conversations.validate`); DataError naming `where` and the turn."""
    turns = validate(obj, where, DataError)
    return Conversation(tuple(Turn(t["user"], tuple(t["thoughts"]), tuple(t["response"])) for t in turns), where)


def load_jsonl(path: str | Path) -> list[Conversation]:
    """Every conversation of one ConvFill JSONL file (blank lines are allowed)."""
    convs = [parse_conversation(obj, f"{path}:{n}")
             for n, obj in read_jsonl(path, DataError, f"training data not found: {path}")]
    if not convs:
        raise DataError(f"{path}: no conversations in the file")
    return convs


def load_hub(repo_id: str = HUB_DATASET, split: str = "train") -> list[Conversation]:
    """The released dataset from the Hugging Face Hub. Needs `datasets` and a network; never a default."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DataError(f"cannot load {repo_id} from the Hub: HF_HUB_OFFLINE is set. Download it on a "
                        "networked machine or pass local JSONL files")
    try:
        import datasets
    except ImportError:
        raise DataError(f"loading {repo_id} from the Hub needs the package 'datasets': pip install datasets "
                        "(or pass local JSONL files)") from None
    try:
        rows = datasets.load_dataset(repo_id, split=split)
    except Exception as e:
        raise DataError(f"could not load {repo_id} ({split}) from the Hub: {e}") from e
    return [parse_conversation(row, f"{repo_id}[{split}]#{i}") for i, row in enumerate(rows)]


def load_conversations(sources: Iterable[str]) -> list[Conversation]:
    """Load and concatenate sources: JSONL paths, or `hub:<repo id>[:split]` (explicit opt-in, online)."""
    convs: list[Conversation] = []
    for src in sources:
        if src.startswith(HUB_PREFIX):
            repo, _, split = src[len(HUB_PREFIX):].partition(":")
            convs.extend(load_hub(repo or HUB_DATASET, split or "train"))
        else:
            convs.extend(load_jsonl(src))
    if not convs:
        raise DataError("no training data given")
    return convs


def split_conversations(convs: Sequence[Conversation], val_fraction: float, seed: int
                        ) -> tuple[list[Conversation], list[Conversation]]:
    """Seeded shuffle, then the first `val_fraction` of conversations (at least one if any) is validation.

    With a single conversation everything is training data (there is nothing to hold out).
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    n_val = round(len(convs) * val_fraction)
    if val_fraction > 0 and len(convs) > 1:
        n_val = min(max(n_val, 1), len(convs) - 1)
    return [convs[i] for i in order[n_val:]], [convs[i] for i in order[:n_val]]


# ---------------------------------------------------------------------------------------------------------
# Phrase examples


@dataclass(frozen=True)
class PhraseExample:
    """One phrase to learn: the context the engine would build, and the phrase it should say.

    Parameters:
        context: what `build_prompt` renders (user, knowledge or None, earlier phrases, previous turn).
        phrase: the target phrase (without end marker).
        source: `file:line turn t phrase p` for error messages and debugging.
        augmented: True for synthetic mid-turn `<sil>` examples.
    """

    context: PhraseContext
    phrase: str
    source: str = ""
    augmented: bool = False

    @property
    def prompt(self) -> str:
        return build_prompt(self.context, "chatml", style="convfill")

    @property
    def target(self) -> str:
        return target_text(self.phrase)


def conversation_examples(conv: Conversation) -> Iterator[PhraseExample]:
    """One example per phrase, with the same context the engine builds at that point of the turn.

    The previous turn is the previous user text and the previous reply = all its phrases joined by spaces
    (what `Engine.history` keeps); earlier phrases are this turn's phrases so far. Phrases that are empty
    after `sanitize` are skipped (nothing to learn).
    """
    prev_user = prev_reply = None
    for ti, turn in enumerate(conv.turns):
        for pi, (thought, phrase) in enumerate(zip(turn.thoughts, turn.response)):
            if not sanitize(phrase):
                continue
            ctx = PhraseContext(user=turn.user, knowledge=None if is_sil(thought) else thought,
                                earlier=turn.response[:pi], prev_user=prev_user, prev_reply=prev_reply)
            yield PhraseExample(ctx, phrase, f"{conv.source} turn {ti} phrase {pi}")
        prev_user, prev_reply = turn.user, " ".join(turn.response)


def collect_fillers(convs: Iterable[Conversation]) -> tuple[list[str], list[str]]:
    """Filler phrases of the data: (said after an earlier filler, said first). Mid-turn prefers the former."""
    later, first = [], []
    for conv in convs:
        for turn in conv.turns:
            for pi, (thought, phrase) in enumerate(zip(turn.thoughts, turn.response)):
                if is_sil(thought) and sanitize(phrase):
                    (later if pi > 0 else first).append(phrase)
    return later, first


def augment_mid_turn_sil(convs: Sequence[Conversation], rate: float, seed: int) -> list[PhraseExample]:
    """Synthetic examples of a `<sil>` filler said AFTER some knowledge phrases of the turn.

    Why: in the released data `<sil>` only prefixes a turn, but the engine injects a filler whenever the
    Reasoner is silent for d seconds, also mid-answer. Without such examples a trained Talker sees
    `<sil>` + earlier knowledge phrases only at inference and tends to repeat or invent facts.

    How: for each turn with at least one knowledge phrase, with probability `rate`, pick a cut point k after
    a knowledge phrase; the example's earlier phrases are the turn's first k phrases, its knowledge is
    `<sil>`, and its target is a filler taken from the data. Fillers that followed another filler ("still
    checking") are preferred over turn-opening ones; a filler already said earlier in the turn is not
    reused. The original examples are kept unchanged; this only adds examples (training split only).
    """
    if rate <= 0:
        return []
    later, first = collect_fillers(convs)
    pool = later or first
    if not pool:
        return []
    rng = random.Random(seed)
    out = []
    for conv in convs:
        prev_user = prev_reply = None
        for ti, turn in enumerate(conv.turns):
            cuts = [i + 1 for i, th in enumerate(turn.thoughts) if not is_sil(th)]
            if cuts and rng.random() < rate:
                k = rng.choice(cuts)
                earlier = turn.response[:k]
                choices = [f for f in pool if f not in earlier] or pool
                ctx = PhraseContext(user=turn.user, knowledge=None, earlier=earlier,
                                    prev_user=prev_user, prev_reply=prev_reply)
                out.append(PhraseExample(ctx, rng.choice(choices), f"{conv.source} turn {ti} sil@{k}",
                                         augmented=True))
            prev_user, prev_reply = turn.user, " ".join(turn.response)
    return out


def build_examples(convs: Sequence[Conversation], sil_augment: float = 0.0, seed: int = 0
                   ) -> list[PhraseExample]:
    """All phrase examples of `convs`, plus mid-turn `<sil>` augmentation when `sil_augment` > 0."""
    examples = [ex for conv in convs for ex in conversation_examples(conv)]
    return examples + augment_mid_turn_sil(convs, sil_augment, seed)


# ---------------------------------------------------------------------------------------------------------
# Tokenization


IGNORE = -100  # label value that torch's cross-entropy skips: prompt and padding positions


@dataclass
class Tokenized:
    """Token ids of one example; `labels` is IGNORE on the prompt, the target ids on the target."""

    input_ids: list[int]
    labels: list[int]
    n_target: int
    truncated: int = 0  # history pieces dropped to fit max_len


@dataclass
class TokenizeStats:
    """What tokenization did to a set of examples (reported by the finetune script)."""

    examples: int = 0
    truncated: int = 0
    skipped_too_long: int = 0
    target_tokens: int = 0
    skipped: list[str] = field(default_factory=list)


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def _shorter_contexts(ctx: PhraseContext) -> Iterator[PhraseContext]:
    """The context with ever less history: previous turn dropped, then oldest earlier phrases one by one."""
    if ctx.prev_user is not None or ctx.prev_reply is not None:
        ctx = PhraseContext(ctx.user, ctx.knowledge, ctx.earlier)
        yield ctx
    earlier = ctx.earlier
    while earlier:
        earlier = earlier[1:]
        yield PhraseContext(ctx.user, ctx.knowledge, earlier)


def tokenize_example(ex: PhraseExample, tokenizer, max_len: int) -> Tokenized | None:
    """Prompt and target ids (tokenized separately, see module doc), history truncated to fit `max_len`.

    Returns None when even the prompt without history plus the whole target exceed `max_len`.
    """
    target = _encode(tokenizer, ex.target)
    prompt = _encode(tokenizer, ex.prompt)
    dropped = 0
    if len(prompt) + len(target) > max_len:
        for ctx in _shorter_contexts(ex.context):
            dropped += 1
            prompt = _encode(tokenizer, build_prompt(ctx, "chatml", style="convfill"))
            if len(prompt) + len(target) <= max_len:
                break
        else:
            return None
    return Tokenized(prompt + target, [IGNORE] * len(prompt) + target, len(target), dropped)


def tokenize_examples(examples: Sequence[PhraseExample], tokenizer, max_len: int
                      ) -> tuple[list[Tokenized], TokenizeStats]:
    """Tokenize all examples; too-long ones are skipped and counted (their source is kept for the log)."""
    out, stats = [], TokenizeStats()
    for ex in examples:
        tok = tokenize_example(ex, tokenizer, max_len)
        if tok is None:
            stats.skipped_too_long += 1
            stats.skipped.append(ex.source)
            continue
        out.append(tok)
        stats.examples += 1
        stats.truncated += tok.truncated > 0
        stats.target_tokens += tok.n_target
    return out, stats


def collate(batch: Sequence[Tokenized], pad_id: int):
    """Right-padded tensors `input_ids`, `attention_mask`, `labels` (IGNORE on padding)."""
    import torch

    n = max(len(t.input_ids) for t in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, t in enumerate(batch):
        k = len(t.input_ids)
        ids[i, :k] = torch.tensor(t.input_ids)
        labels[i, :k] = torch.tensor(t.labels)
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------------------------------------------------
# <sil> as a token


SIL_MODES = ("special", "plain")


def apply_sil_mode(tokenizer, model, mode: str) -> bool:
    """Make `<sil>` one added special token (resizing the embeddings) or leave it as plain text.

    "special": `<sil>` becomes a single token, so the model sees silence as one unambiguous symbol; the
    vocabulary grows by one, so the result needs its own tokenizer/GGUF (not a LoRA on the shipped base).
    "plain": the tokenizer and embeddings are untouched and `<sil>` is the text `<sil>` (3 tokens in
    SmolLM2); required for an adapter that must load on an unchanged base model.
    Returns True when tokens were added. A tokenizer that already knows `<sil>` is left as it is.
    """
    if mode not in SIL_MODES:
        raise DataError(f"unknown <sil> mode {mode!r}; use one of {', '.join(SIL_MODES)}")
    if mode == "plain" or SIL in tokenizer.get_vocab():
        return False
    tokenizer.add_special_tokens({"additional_special_tokens": [SIL]})
    model.resize_token_embeddings(len(tokenizer))
    return True
