"""Turn a Reasoner's streamed text into knowledge chunks (sentences), as early as it is safe to.

A chunk is released as soon as its sentence end is certain: terminal punctuation (optionally followed by
closing quotes/brackets) and then whitespace, where the period is not part of an abbreviation
("Dr.", "e.g.", "U.S."), an initial ("J. R. R."), a decimal ("3.5") or an ellipsis inside a sentence.
Newlines (list items, paragraphs) also end a chunk. Whatever is left when the stream ends is the last chunk.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing, nullcontext

ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx dept est fig inc ltd co corp jan feb mar
    apr jun jul aug sep sept oct nov dec no vol p pp ca gen gov lt col sgt rev u.s u.k a.m p.m""".split()
)

_END = re.compile(r"""([.!?]+|\u2026)(["'\u201d\u2019)\]]*)(\s+)""")
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_MAX_CHUNK = 400  # characters; a Reasoner that never ends a sentence still yields chunks


class SentenceChunker:
    """Incremental splitter: `feed(text)` returns the chunks completed so far, `flush()` the rest."""

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_cut(self._buf)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            out.extend(self._clean(piece))
        return out

    def flush(self) -> list[str]:
        piece, self._buf = self._buf, ""
        return self._clean(piece)

    @staticmethod
    def _clean(piece: str) -> list[str]:
        piece = _LIST_MARK.sub("", piece.strip())
        piece = re.sub(r"\s+", " ", piece).strip().strip("*#").strip()
        return [piece] if re.search(r"\w", piece) else []

    def _find_cut(self, buf: str) -> int | None:
        nl = buf.find("\n")
        for m in _END.finditer(buf):
            if 0 <= nl < m.start():
                break
            if self._is_boundary(buf, m):
                return m.end()
        if nl >= 0:
            return nl + 1
        if len(buf) > _MAX_CHUNK:
            sp = buf.rfind(" ", 0, _MAX_CHUNK)
            return sp + 1 if sp > 0 else _MAX_CHUNK
        return None

    @staticmethod
    def _is_boundary(buf: str, m: re.Match) -> bool:
        after = buf[m.end():]
        # A lowercase continuation means the mark did not end the sentence ('"Really?" she said').
        if after[:1].islower():
            return False
        if m.group(1) != ".":
            return True
        before = buf[: m.start()]
        word = re.search(r"([\w.]+)$", before)
        w = word.group(1).lower() if word else ""
        if w in ABBREVIATIONS or w.rstrip(".") in ABBREVIATIONS:
            return False
        if re.fullmatch(r"[a-z]", w):  # an initial: "J. Austen"
            return False
        if re.fullmatch(r"(?:[a-z]\.)+[a-z]", w):  # "u.s" in "U.S." already consumed the dots
            return False
        if after == "":
            # Whitespace then end of buffer: the next token may still reveal a lowercase continuation,
            # but waiting would delay every chunk until the next sentence starts. Accept the cut unless
            # the word is a number (a list item "1. " or a decimal cut by the stream).
            return not w.isdigit()
        return True


async def chunk_stream(deltas: AsyncIterator[str]) -> AsyncIterator[str]:
    """Async adapter: text deltas in, knowledge chunks out.

    Closing this iterator closes `deltas` at once (a Reasoner's HTTP stream), not at garbage collection.
    """
    ch = SentenceChunker()
    async with aclosing(deltas) if hasattr(deltas, "aclose") else nullcontext():
        async for d in deltas:
            for c in ch.feed(d):
                yield c
    for c in ch.flush():
        yield c


def knowledge_chunks(text: str) -> list[str]:
    """Split a complete text into chunks (what streaming it would yield)."""
    ch = SentenceChunker()
    return ch.feed(text) + ch.flush()
