"""What the Chat tab shows for a turn, folded from its events: chat messages and the metrics table.

Pure functions of events (no Gradio import), so they are unit-tested directly. The Talker's words and the
Reasoner's knowledge are separate messages: the Reasoner's is a collapsible Gradio "thought" message
(`metadata.title`), the Talker's is a plain assistant message that grows token by token.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..events import Event, TurnStarted
from ..fold import TurnFold
from ..metrics import turn_metrics
from ..untrusted import markdown_literal

REASONER_TITLE = "◆ Reasoner knowledge"  # ◆ as on the timeline (DejaVu has it; emoji fonts may be missing)
TALKER_WAITING = "…"


@dataclass
class TurnView:
    """The chat messages of one turn, updated event by event.

    Args:
        user: the message as typed (shown even before the engine sanitised it).
        reasoner_label: e.g. "oracle" or "openai gpt-4o-mini", shown in the Reasoner message title.
    """

    user: str
    reasoner_label: str = ""
    events: list[Event] = field(default_factory=list)
    fold: TurnFold = field(default_factory=TurnFold)

    def apply(self, ev: Event) -> None:
        self.events.append(ev)
        self.fold.apply(ev)
        if isinstance(ev, TurnStarted):
            self.user = ev.user or self.user

    @property
    def reasoner_status(self) -> str | None:
        """None while the Reasoner streams, else how it ended (a turn that ended first cancelled it)."""
        f = self.fold
        if f.reasoner_end is not None:
            return f.reasoner_end.status
        if f.end is not None:
            return "cancelled" if f.end.reason != "done" else "done"
        return None

    @property
    def end_reason(self) -> str | None:
        return self.fold.end.reason if self.fold.end else None

    @property
    def talker_text(self) -> str:
        return " ".join(p.text.strip() for p in self.fold.ordered() if p.text.strip())

    def messages(self) -> list[dict]:
        """Gradio messages: the user's, the Reasoner's (collapsible), the Talker's."""
        # Everything but our own markup is shown literally: a Markdown image in a message or a chunk would
        # make every viewer's browser fetch its URL.
        chunks = [c for _, c in sorted(self.fold.chunks.items())]
        lines = [f"**#{i}** · {c.t_ms:.0f} ms · {markdown_literal(c.text)}" for i, c in enumerate(chunks)]
        lines += [markdown_literal(f"⚠ {e.where} error ({e.category}): {e.message}") for e in self.fold.errors]
        if not lines:
            lines = ["_waiting for knowledge…_" if self.reasoner_status is None else "_no knowledge arrived_"]
        meta: dict = {"title": f"{REASONER_TITLE} · {self.reasoner_label}" if self.reasoner_label
                      else REASONER_TITLE}
        if self.reasoner_status is None:
            meta["status"] = "pending"  # spinner while the Reasoner streams
        else:
            meta["log"] = f"{len(chunks)} chunk(s), {self.reasoner_status}"
        talker = markdown_literal(self.talker_text) if self.talker_text else TALKER_WAITING
        if self.end_reason and self.end_reason != "done":
            talker += f" _[{self.end_reason}]_"
        return [
            {"role": "user", "content": markdown_literal(self.user)},
            {"role": "assistant", "content": "\n\n".join(lines), "metadata": meta},
            {"role": "assistant", "content": talker},
        ]


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f} ms"


def render_metrics(events: list[Event] | TurnFold) -> str:
    """A small HTML table of `convfill.metrics.turn_metrics` for the turn so far (its events or their fold)."""
    fold = TurnFold.of(events)
    if fold.start is None and not fold.phrases:
        return '<div class="cf-metrics"><em>Metrics appear with the first turn.</em></div>'
    m = turn_metrics(fold)
    rows = [("Talker TTFT", _fmt(m.talker_ttft_ms)),
            ("Reasoner first chunk", _fmt(m.reasoner_first_chunk_ms)),
            ("First knowledge phrase", _fmt(m.first_knowledge_phrase_ms)),
            ("Chunk → phrase lag (mean)", _fmt(m.chunk_to_phrase_lag_ms)),
            ("Fillers / knowledge phrases / chunks", f"{m.n_fillers} / {m.n_knowledge_phrases} / {m.n_chunks}"),
            ("Total", _fmt(m.total_ms) if m.total_ms is not None else "running…"),
            *([("Voice to voice (end of speech → first audio)", _fmt(m.voice_to_voice_ms)),
               ("Speech recognition", _fmt(m.asr_ms)),
               ("Voiced first response (transcript → first audio)", _fmt(m.voiced_first_ms)),
               ("Dead air (silences > 300 ms)", _fmt(m.dead_air_ms))] if m.voiced_first_ms is not None
              or m.asr_ms is not None else []),
            ("End", m.end_reason or "running…")]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:right' data-metric='{i}'>"
                   f"{html.escape(v)}</td></tr>" for i, (k, v) in enumerate(rows))
    return f'<table class="cf-metrics">{body}</table>'
