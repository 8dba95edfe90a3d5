"""The live timeline of one turn as an SVG string: knowledge chunks and Talker phrases on one ms axis.

`render_timeline(events)` is a pure function of the events seen so far, so the chat handler can redraw it
with every streamed update (no polling) and tests can check it without a browser. Two lanes share the
axis: the Reasoner lane marks when each knowledge chunk arrived; the Talker lane draws each phrase from
its start to its end with a tick at its first token. A voiced turn adds a third lane, "Heard": each
sentence as it played in the browser, in its phrase's colour, with a red cut mark where barge-in stopped it. A dashed line in the chunk's colour links every
knowledge phrase to the chunk it came from ("from #0"); fillers are grey and labelled `<sil>`. Hovering any
mark shows its text (SVG `<title>`). Classes and `data-*` attributes name every mark for browser tests.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

from ..events import Event
from ..fold import TurnFold

# Geometry of the drawing (viewBox units; the SVG scales to the panel width).
WIDTH, HEIGHT = 900, 170
LEFT, RIGHT = 78, 16            # room for the lane names / for the last tick label
REASONER_Y, TALKER_Y, HEARD_Y = 48, 112, 166  # lane centre lines (Heard: voiced turns only)
HEARD_EXTRA = 54                # extra height when the Heard lane is drawn
BAR_H = 20                      # phrase bar height
PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
SIL_COLOUR, ERROR_COLOUR = "#9ca3af", "#dc2626"


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def chunk_colour(i: int) -> str:
    """The colour of knowledge chunk `i` (its phrase and link use it too)."""
    return PALETTE[i % len(PALETTE)]


def _nice_step(span_ms: float) -> float:
    """A round tick step giving about 5-10 ticks over `span_ms`."""
    raw = span_ms / 8
    mag = 10 ** math.floor(math.log10(max(raw, 1e-9)))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _end_mark(cls: str, attrs: str, title: str, xv: float, y1: float, y2: float, stroke: str, extra: str = "") -> str:
    """A vertical line where something ended (the Reasoner, the turn), with its hover text."""
    return (f'<g class="{cls}"{attrs}><title>{_esc(title)}</title><line x1="{xv}" y1="{y1}" x2="{xv}" y2="{y2}" '
            f'{stroke}/>{extra}</g>')


BADGES = {"entailment": ("E", "#059669"), "neutral": ("N", "#6b7280"), "contradiction": ("C", "#dc2626")}


def render_timeline(events: Iterable[Event] | TurnFold, now_ms: float | None = None,
                    labels: dict[int, str] | None = None) -> str:
    """SVG (inside a `<div>`) of one turn's events so far.

    Args:
        events: the turn's events in emission order (PhraseDelta events fill running phrases' hover text), or
            their `TurnFold` (the live view passes its own).
        now_ms: where running phrases end; default the latest event time.
        labels: phrase index -> the NLI judge's label, drawn as an E/N/C badge over the phrase.

    Returns:
        An HTML string; an empty turn gives the two empty lanes.
    """
    f = TurnFold.of(events)
    chunks, errors, heard, reasoner_end, turn_end, last = f.chunks, f.errors, f.heard, f.reasoner_end, f.end, f.last_ms
    phrases = {i: p for i, p in f.phrases.items() if p.started_ms is not None}  # a bar needs its start
    height = HEIGHT + (HEARD_EXTRA if heard else 0)
    now = max(now_ms if now_ms is not None else last, last)
    span = max(1000.0, now * 1.05)
    step = _nice_step(span)
    span = math.ceil(span / step) * step
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return round(LEFT + plot_w * min(max(t, 0.0), span) / span, 1)

    out: list[str] = [
        f'<svg class="cf-timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" aria-label="turn timeline" data-now-ms="{now:.0f}" '
        f'style="font-family: sans-serif; font-size: 11px; max-width: {WIDTH * 1.4:.0f}px">',
    ]
    # Axis and ticks.
    axis_y = height - 22
    out.append(f'<line x1="{LEFT}" y1="{axis_y}" x2="{WIDTH - RIGHT}" y2="{axis_y}" stroke="#6b7280"/>')
    t = 0.0
    while t <= span + 1e-6:
        xt = x(t)
        label = f"{t / 1000:g} s" if step >= 1000 else f"{t:.0f}"
        out.append(f'<line x1="{xt}" y1="{axis_y}" x2="{xt}" y2="{axis_y + 4}" stroke="#6b7280"/>'
                   f'<line x1="{xt}" y1="20" x2="{xt}" y2="{axis_y}" stroke="#e5e7eb" stroke-width="0.5"/>'
                   f'<text x="{xt}" y="{axis_y + 15}" text-anchor="middle" fill="#6b7280">{label}</text>')
        t += step
    out.append(f'<text x="{WIDTH - RIGHT}" y="12" text-anchor="end" fill="#6b7280">ms since the message '
               f'(hover a mark for its text)</text>')

    # Lanes.
    lanes = [("Reasoner", REASONER_Y, "reasoner"), ("Talker", TALKER_Y, "talker")]
    for name, y, lane in lanes + ([("Heard", HEARD_Y, "heard")] if heard else []):
        out.append(f'<g class="cf-lane" data-lane="{lane}"><text x="8" y="{y + 4}" font-weight="bold" '
                   f'fill="#374151">{name}</text><line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" '
                   f'stroke="#d1d5db" stroke-dasharray="2 3"/></g>')

    # Links first, so marks are drawn over them.
    for p in phrases.values():
        if p.source == "chunk" and p.chunk_index in chunks:
            c = chunks[p.chunk_index]
            out.append(f'<line class="cf-link" data-phrase="{p.index}" data-chunk="{p.chunk_index}" '
                       f'x1="{x(c.t_ms)}" y1="{REASONER_Y + 7}" x2="{x(p.started_ms)}" y2="{TALKER_Y - BAR_H / 2}" '
                       f'stroke="{chunk_colour(p.chunk_index)}" stroke-width="1.5" stroke-dasharray="4 2"/>')

    # Reasoner lane: one diamond per chunk, labels staggered so close chunks stay readable.
    for i, c in sorted(chunks.items()):
        xc, col = x(c.t_ms), chunk_colour(i)
        ly = REASONER_Y - 12 - (i % 2) * 11
        out.append(f'<g class="cf-chunk" data-chunk="{i}" data-t-ms="{c.t_ms:.0f}">'
                   f'<title>knowledge #{i} at {_ms(c.t_ms)}: {_esc(c.text)}</title>'
                   f'<path d="M{xc} {REASONER_Y - 7} L{xc + 7} {REASONER_Y} L{xc} {REASONER_Y + 7} '
                   f'L{xc - 7} {REASONER_Y} Z" fill="{col}"/>'
                   f'<text x="{xc}" y="{ly}" text-anchor="middle" fill="{col}" font-weight="bold">#{i}</text></g>')
    for e in errors:
        xe = x(e.t_ms)
        y = REASONER_Y if e.where == "reasoner" else TALKER_Y
        out.append(f'<g class="cf-error" data-where="{_esc(e.where)}"><title>{_esc(e.where)} error '
                   f'({_esc(e.category)}) at {_ms(e.t_ms)}: {_esc(e.message)}</title>'
                   f'<path d="M{xe - 6} {y - 6} L{xe + 6} {y + 6} M{xe - 6} {y + 6} L{xe + 6} {y - 6}" '
                   f'stroke="{ERROR_COLOUR}" stroke-width="3"/></g>')
    if reasoner_end is not None:
        out.append(_end_mark("cf-reasoner-end", "", f"Reasoner {reasoner_end.status} at {_ms(reasoner_end.t_ms)} "
                             f"({reasoner_end.n_chunks} chunks)", x(reasoner_end.t_ms), REASONER_Y - 9,
                             REASONER_Y + 9, 'stroke="#374151" stroke-width="2"'))

    # Talker lane: a bar per phrase (start -> end, or -> now while it runs), a tick at its first token.
    for p in sorted(phrases.values(), key=lambda p: p.index):
        end = p.ended_ms if p.ended_ms is not None else now
        x0, x1 = x(p.started_ms), x(end)
        col = (SIL_COLOUR if p.source == "sil" else ERROR_COLOUR if p.source == "error"
               else chunk_colour(p.chunk_index or 0))
        origin = "<sil>" if p.source == "sil" else "error" if p.source == "error" else f"from #{p.chunk_index}"
        state = "running" if p.ended_ms is None else "cancelled" if p.cancelled else "done"
        dash = ' stroke="#111827" stroke-dasharray="3 2"' if p.cancelled else ""
        tip = (f"phrase {p.index} ({origin}, {state}): start {_ms(p.started_ms)}, first token {_ms(p.first_token_ms)}, "
               f"end {_ms(p.ended_ms)}\n{p.text}")
        out.append(f'<g class="cf-phrase" data-phrase="{p.index}" data-source="{p.source}" '
                   f'data-chunk="{"" if p.chunk_index is None else p.chunk_index}" data-state="{state}">'
                   f'<title>{_esc(tip)}</title>'
                   f'<rect x="{x0}" y="{TALKER_Y - BAR_H / 2}" width="{max(x1 - x0, 2):.1f}" height="{BAR_H}" '
                   f'rx="3" fill="{col}" fill-opacity="{0.45 if state == "running" else 0.8}"{dash}/>')
        if p.first_token_ms is not None:
            xf = x(p.first_token_ms)
            out.append(f'<line x1="{xf}" y1="{TALKER_Y - BAR_H / 2 - 3}" x2="{xf}" y2="{TALKER_Y + BAR_H / 2 + 3}" '
                       f'stroke="#111827" stroke-width="1.5"/>')
        out.append(f'<text x="{x0 + 2}" y="{TALKER_Y + BAR_H / 2 + 12 + (p.index % 2) * 10}" '
                   f'fill="{col}">{_esc(origin)}</text>')
        label = (labels or {}).get(p.index)
        if label in BADGES:
            letter, colour = BADGES[label]
            out.append(f'<text class="cf-badge" data-label="{label}" x="{x0 + 2}" y="{TALKER_Y - BAR_H / 2 - 4}" '
                       f'fill="{colour}" font-weight="bold"><title>NLI judge: {label}</title>{letter}</text>')
        out.append("</g>")

    # Heard lane: what the listener actually heard, sentence by sentence.
    colour = {p.index: (SIL_COLOUR if p.source == "sil" else ERROR_COLOUR if p.source == "error"
                        else chunk_colour(p.chunk_index or 0)) for p in phrases.values()}
    for h in heard:
        x0, x1 = x(h.start_ms), x(h.end_ms)
        tip = (f"heard phrase {h.phrase_index}, sentence {h.seq}: {_ms(h.start_ms)} - {_ms(h.end_ms)}"
               f"{' (cut by barge-in)' if h.cut else ''}\n{h.text}")
        out.append(f'<g class="cf-heard" data-phrase="{h.phrase_index}" data-seq="{h.seq}" '
                   f'data-cut="{str(h.cut).lower()}"><title>{_esc(tip)}</title>'
                   f'<rect x="{x0}" y="{HEARD_Y - BAR_H / 2 + 3}" width="{max(x1 - x0, 2):.1f}" '
                   f'height="{BAR_H - 6}" rx="2" fill="{colour.get(h.phrase_index, SIL_COLOUR)}" fill-opacity="0.6"/>')
        if h.cut:
            out.append(f'<path class="cf-cut" d="M{x1} {HEARD_Y - BAR_H / 2} L{x1} {HEARD_Y + BAR_H / 2}" '
                       f'stroke="{ERROR_COLOUR}" stroke-width="3"/>')
        out.append("</g>")

    if turn_end is not None:
        xe = x(turn_end.t_ms)
        out.append(_end_mark("cf-turn-end", f' data-reason="{_esc(turn_end.reason)}"',
                             f"turn {turn_end.reason} at {_ms(turn_end.t_ms)}", xe, 22, axis_y,
                             'stroke="#111827" stroke-dasharray="5 3"',
                             f'<text x="{xe - 3}" y="30" text-anchor="end" fill="#111827">{_esc(turn_end.reason)}</text>'))
    out.append("</svg>")
    return '<div class="cf-timeline-wrap">' + "".join(out) + "</div>"
