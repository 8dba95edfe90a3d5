"""The Talker prompt, byte-exact with the released `vysri/*-ConvFill` models, and the one place it is built.

Layout of the prompt for one phrase (ChatML shown; Gemma and Llama-3 only change the header strings):

    [<|im_start|>system\n{system}<|im_end|>\n]                  only for prompted (untrained) Talkers
    [<|im_start|>user\n{previous user}<|im_end|>\n
     <|im_start|>assistant\n{previous reply}<|im_end|>\n]        the one previous turn, when there is one
    <|im_start|>user\n{user}<|im_end|>\n
    [<|im_start|>assistant\n{earlier phrases, space-joined}<|im_end|>\n]   omitted for the first phrase
    <|im_start|>knowledge\n{chunk or <sil>}<|im_end|>\n
    <|im_start|>assistant\n

Training (`training/`) builds its examples with `build_prompt` + `target_text`, so inference and training
cannot drift apart. Text from users and Reasoners goes through `sanitize` first: it can never open or close
a block or smuggle in `<sil>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .untrusted import valid_unicode

SIL = "<sil>"


@dataclass(frozen=True)
class Template:
    """Header strings of one model family.

    Parameters:
        name: family name used in options ("chatml", "gemma", "llama3").
        start: format string for a block header; `{role}` is replaced.
        end: end-of-block marker; generation stops on it.
        extra_stops: other strings that end generation (a runaway next header).
        specials: every control string of the family, removed from untrusted text.
    """

    name: str
    start: str
    end: str
    extra_stops: tuple[str, ...]
    specials: tuple[str, ...]

    def block(self, role: str, content: str) -> str:
        return self.start.format(role=role) + content + self.end + "\n"

    def header(self, role: str) -> str:
        return self.start.format(role=role)

    @property
    def stops(self) -> list[str]:
        return [self.end, *self.extra_stops]


TEMPLATES: dict[str, Template] = {
    "chatml": Template(
        name="chatml",
        start="<|im_start|>{role}\n",
        end="<|im_end|>",
        extra_stops=("<|im_start|>", "<|endoftext|>"),
        specials=("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
    ),
    "gemma": Template(
        name="gemma",
        start="<start_of_turn>{role}\n",
        end="<end_of_turn>",
        extra_stops=("<start_of_turn>", "<eos>"),
        specials=("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>"),
    ),
    "llama3": Template(
        name="llama3",
        start="<|start_header_id|>{role}<|end_header_id|>\n\n",
        end="<|eot_id|>",
        extra_stops=("<|start_header_id|>", "<|end_of_text|>"),
        specials=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>",
                  "<|end_of_text|>"),
    ),
}

# Any `<|...|>` run is a control token in ChatML/Llama families; `<sil>` is ours. Gemma's are listed.
_GENERIC_SPECIAL = re.compile(r"<\|[^<>|\s]{0,40}\|>")
_ALL_LITERALS = tuple(sorted({s for t in TEMPLATES.values() for s in t.specials} | {SIL}, key=len, reverse=True))
_SIL_LIKE = re.compile(r"<\s*/?\s*sil\s*>", re.IGNORECASE)


def sanitize(text: str) -> str:
    """Remove every control string (of any family) and any `<sil>` look-alike from untrusted text.

    Removal repeats until nothing changes, so nested tricks like `<|im_<|im_end|>start|>` cannot
    reassemble a token. Whitespace is normalised; the result may be empty.
    """
    text = valid_unicode(text)  # a lone surrogate (broken UTF-16 from a browser or a JSON escape) cannot be encoded
    prev = None
    while prev != text:
        prev = text
        text = _GENERIC_SPECIAL.sub("", text)
        for s in _ALL_LITERALS:
            text = text.replace(s, "")
        text = _SIL_LIKE.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class PhraseContext:
    """Everything one Talker phrase is generated from.

    Parameters:
        user: the current user turn.
        knowledge: one knowledge chunk, or None for `<sil>`.
        earlier: this turn's earlier phrases, in order.
        prev_user: the previous turn's user text, if any.
        prev_reply: everything the Talker said in the previous turn.
    """

    user: str
    knowledge: str | None = None
    earlier: tuple[str, ...] = ()
    prev_user: str | None = None
    prev_reply: str | None = None


# Instructions for the "prompted" style: a base instruct model that was never trained on ConvFill data does
# not understand a `knowledge` block (measured: SmolLM2-135M-Instruct ignores it and invents facts on <sil>),
# but follows a parenthesised instruction after the user text. Trained Talkers use the "convfill" style.
# Showing it its earlier phrases made it repeat them (measured), so this style leaves them out.
PROMPTED_KNOWLEDGE = "(Answer in one sentence using this fact: {knowledge})"
PROMPTED_SIL = "(Do not answer yet. In one short sentence, say you are checking.)"
PROMPTED_SIL_MORE = "(Do not answer yet. In one short sentence, say you are still checking.)"
STYLES = ("convfill", "prompted")


def build_prompt(ctx: PhraseContext, template: Template | str = "chatml", system: str | None = None,
                 style: str = "convfill") -> str:
    """The prompt text for one phrase, ending with the open assistant header.

    `style="convfill"` is the byte-exact released layout; `style="prompted"` phrases the same inputs as an
    instruction inside the user block, for untrained base models.
    """
    t = TEMPLATES[template] if isinstance(template, str) else template
    if style == "prompted":
        return _build_prompted(ctx, t, system)
    parts = []
    if system:
        parts.append(t.block("system", system))
    if ctx.prev_user:
        parts.append(t.block("user", sanitize(ctx.prev_user)))
        parts.append(t.block("assistant", sanitize(ctx.prev_reply or "")))
    parts.append(t.block("user", sanitize(ctx.user)))
    earlier = " ".join(p for p in (sanitize(x) for x in ctx.earlier) if p)
    if earlier:
        parts.append(t.block("assistant", earlier))
    knowledge = sanitize(ctx.knowledge) if ctx.knowledge is not None else ""
    parts.append(t.block("knowledge", knowledge or SIL))
    parts.append(t.header("assistant"))
    return "".join(parts)


def _build_prompted(ctx: PhraseContext, t: Template, system: str | None) -> str:
    parts = [t.block("system", system)] if system else []
    if ctx.prev_user:
        parts.append(t.block("user", sanitize(ctx.prev_user)))
        parts.append(t.block("assistant", sanitize(ctx.prev_reply or "")))
    knowledge = sanitize(ctx.knowledge) if ctx.knowledge is not None else ""
    if knowledge:
        instr = PROMPTED_KNOWLEDGE.format(knowledge=knowledge)
    else:
        instr = PROMPTED_SIL_MORE if ctx.earlier else PROMPTED_SIL
    parts.append(t.block("user", sanitize(ctx.user) + "\n\n" + instr))
    parts.append(t.header("assistant"))
    return "".join(parts)


def target_text(phrase: str, template: Template | str = "chatml") -> str:
    """The completion a Talker is trained to produce after `build_prompt`: the phrase and the end marker."""
    t = TEMPLATES[template] if isinstance(template, str) else template
    return sanitize(phrase) + t.end


def clean_output(text: str, template: Template | str = "chatml") -> str:
    """Cut generated text at the first stop string and strip it."""
    t = TEMPLATES[template] if isinstance(template, str) else template
    for s in t.stops:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return sanitize(text)
