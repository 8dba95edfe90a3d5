"""The Chat tab: layout, and handlers that are short adapters over `ChatSession` and the renderers.

One async generator (`run_turn`) runs the engine turn and, with every event, yields the chat messages,
the timeline SVG and the metrics table, so the page updates from one stream (no polling). Stop is a
Gradio `cancels=[turn]` on the streaming event *and* an explicit `engine.cancel()`, so the turn ends at
once even for API clients that never run the browser's cancel logic; a new message while a turn runs
cancels it inside the engine (barge-in). `ConvFillError`s become `gr.Error` with their message.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import gradio as gr

from ..config import EngineConfig
from ..errors import ConvFillError
from ..identity import identity_of
from ..policy import Policy
from ..nli.judge import TurnJudge
from ..turnlog import StoreWriter, TurnLog
from ..untrusted import valid_unicode
from ..events import FirstToken, PhraseDelta
from ..reasoners import REASONERS, reasoner_status
from .session import ChatSession, ModelPool, TurnSettings
from .timeline import render_timeline
from .view import render_metrics
from .voice import build_voice_panel

log = logging.getLogger(__name__)

# Engine settings shown in the tab; labels, help and bounds come from the EngineConfig fields.
ENGINE_CONTROLS = ("silence_s", "max_fillers", "max_phrases", "max_phrase_tokens", "reasoner_timeout_s",
                   "turn_timeout_s", "history_turns")
VOICE_CONTROLS = ("filler_pacing", "filler_lead_s")  # EngineConfig fields shown in the Voice panel
CLOUD_REASONERS = ("openai", "anthropic", "gemini")  # the ones with a Base URL and a key box
STREAM_INTERVAL_S = 0.04  # token-only updates are coalesced to ~25 per second; structural events always go out


@dataclass
class ChatContext:
    """What the Chat tab's handlers share: the process-wide models and store, and the tab's defaults."""

    pool: ModelPool
    store: TurnLog | None
    talker_choices: tuple[str, ...]
    default_reasoner: str = "local"
    default_knowledge: str = ""
    policy: Policy = dataclasses.field(default_factory=Policy)
    writer: StoreWriter | None = None  # the store's one writer thread: writes off the event loop
    judge: TurnJudge | None = None  # judges each stored turn in the background (app.py: `labeling.live`)
    voice: object | None = None  # `convfill.voice.channel.VoiceService`; None: the app offers no voice
    # running turn handlers per session (a barge-in briefly runs two of one session); event loop only
    talking: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def talking_besides(self, session: ChatSession | None) -> int:
        """Sessions with a turn running now, `session` not counted (its new message barges in on its own)."""
        return sum(1 for sid, n in self.talking.items() if n > 0 and sid != id(session))

    def full(self, session: ChatSession | None = None) -> bool:
        cap = self.policy.limits.max_active_turns
        return cap is not None and self.talking_besides(session) >= cap

    def admit(self, session: ChatSession) -> None:
        """Refuse a new turn when `policy.limits.max_active_turns` other sessions are talking."""
        if self.full(session):
            raise gr.Error(f"The server is busy: {self.talking_besides(session)} conversations are talking right "
                           "now. Try again in a few seconds.")

    def new_session(self, owner: str | None = None) -> ChatSession:
        return ChatSession(self.pool, self.store, self.policy, self.talker_choices, self.writer, self.judge, owner,
                           self.voice)


def config_control(name: str, cls: type = EngineConfig, cap: float | None = None) -> gr.Number:
    """A number box for dataclass field `name`: label, help, bounds and default from its metadata, the
    maximum (and default) lowered to `cap` where the server's limits say so."""
    f = cls.__dataclass_fields__[name]
    md = f.metadata
    is_int = isinstance(f.default, int) and not isinstance(f.default, bool)
    hi, value = md.get("hi"), f.default
    if cap is not None:
        hi = cap if hi is None else min(hi, cap)
        value = min(value, cap)
    return gr.Number(value=value, label=name, info=md.get("help"), minimum=md.get("lo"), maximum=hi,
                     precision=0 if is_int else None, step=1 if is_int else 0.05, elem_id=f"cf-{name}")


def reasoner_choices(policy: Policy | None = None) -> list[tuple[str, str]]:
    """(label, name) for every registered Reasoner, labelled with whether it is usable here (in public
    mode without saying which key is set)."""
    policy = policy or Policy()
    out = []
    for name in REASONERS:
        try:
            st = reasoner_status(name)
            label = policy.reasoner_label(name, st["usable"], st["detail"])
        except Exception as e:  # a broken provider module must not take the app down
            label = policy.reasoner_label(name, False, type(e).__name__)
        out.append((label, name))
    return out


def _outputs(session: ChatSession):
    fold = session.last_fold  # the turn view's own fold: a redraw folds nothing again
    return session.messages(), render_timeline(fold, labels=session.labels), render_metrics(fold)


def _settings(kw: dict) -> TurnSettings:
    kw = {k: valid_unicode(v) for k, v in kw.items()}
    engine = {k: kw.pop(k) for k in ENGINE_CONTROLS + VOICE_CONTROLS if k in kw}
    known = {f.name for f in dataclasses.fields(TurnSettings)}
    return TurnSettings(**{k: v for k, v in kw.items() if k in known and v is not None}, engine=engine)


def make_handlers(ctx: ChatContext):
    """The tab's event handlers, closed over the shared context."""

    async def run_turn(message: str, session: ChatSession | None, request: gr.Request = None,
                       profile: gr.OAuthProfile | None = None, **settings) -> AsyncIterator[tuple]:
        """Stream one turn: (chat messages, timeline HTML, metrics HTML, cleared textbox, session state)."""
        who = identity_of(request, profile)
        try:
            ctx.policy.check_may_chat(who.name is not None)
        except ConvFillError as e:
            raise gr.Error(str(e)) from e
        session = session or ctx.new_session(who.owner)
        message = valid_unicode(message or "")  # a lone surrogate would break this client's session for good
        ctx.admit(session)
        ctx.talking[id(session)] += 1
        try:
            await session.prepare(_settings(settings))
            last, fresh_phrase = 0.0, False
            async with aclosing(session.run(message or "")) as events:
                first = True
                async for ev in events:
                    if isinstance(ev, FirstToken):  # its text follows at once in a PhraseDelta
                        fresh_phrase = True
                        continue
                    now = time.monotonic()
                    # Coalesce fast tokens, but never hold back a phrase's first words (that is the
                    # latency the user feels); a skipped token shows with the next event anyway.
                    if isinstance(ev, PhraseDelta) and not fresh_phrase and now - last < STREAM_INTERVAL_S:
                        continue
                    fresh_phrase, last = False, now
                    yield (*_outputs(session), "" if first else gr.skip(), session)
                    first = False
        except ConvFillError as e:
            raise gr.Error(str(e)) from e
        finally:
            ctx.talking[id(session)] -= 1
            if ctx.talking[id(session)] <= 0:
                del ctx.talking[id(session)]
        notice = await session.saved()
        if notice:
            gr.Warning(notice)
        yield (*_outputs(session), gr.skip(), session)
        if not notice and await session.judged():  # the live judge's E/N/C badges, once they are there
            yield (*_outputs(session), gr.skip(), session)

    async def prefill(message: str, session: ChatSession | None, request: gr.Request = None,
                      profile: gr.OAuthProfile | None = None, **settings) -> None:
        """As the user types: pre-compute the next turn's first-phrase prompt (never an error). Gated like a
        turn: who may chat, and never while the server is at its cap of talking turns."""
        who = identity_of(request, profile)
        try:
            ctx.policy.check_may_chat(who.name is not None)
            if ctx.full():
                return
            await (session or ctx.new_session(who.owner)).prefill(valid_unicode(message or ""), _settings(settings))
        except Exception:  # noqa: BLE001 - speculative work: a failure only means a colder first token
            log.debug("prefill failed", exc_info=True)

    async def stop_turn(session: ChatSession | None):
        """Cancel the running turn now; it still ends with TurnEnded and is persisted."""
        if session is not None:
            await session.cancel()
        return render_session(session)

    def render_session(session: ChatSession | None):
        """The session's current chat, timeline and metrics (a full value, not a stream diff)."""
        return _outputs(session) if session is not None else ([], render_timeline([]), render_metrics([]))

    async def new_conversation(session: ChatSession | None):
        if session is not None:
            await session.reset()
        return [], render_timeline([]), render_metrics([]), session

    def reasoner_changed(name: str):
        return gr.update(visible=name == "oracle"), gr.update(visible=name in CLOUD_REASONERS)

    return run_turn, prefill, stop_turn, render_session, new_conversation, reasoner_changed


def build_chat_tab(ctx: ChatContext) -> dict[str, gr.components.Component]:
    """Lay out the Chat tab inside the current Blocks context and wire its events; returns its components."""
    run_turn, prefill, stop_turn, render_session, new_conversation, reasoner_changed = make_handlers(ctx)
    state = gr.State(None)  # a ChatSession per browser session, created on its first turn
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="cf-chatbot", buttons=["copy"],
                                 placeholder="The Talker answers at once; the Reasoner's knowledge arrives "
                                             "in the background (the collapsible ◆ Reasoner messages).")
            with gr.Row():
                msg = gr.Textbox(label="Message", placeholder="Ask something…", scale=5, elem_id="cf-message",
                                 autofocus=True, max_lines=4)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="cf-send")
                stop = gr.Button("Stop", variant="stop", scale=1, elem_id="cf-stop")
            voice = build_voice_panel(ctx)
            timeline = gr.HTML(render_timeline([]), label="Timeline", elem_id="cf-timeline")
            metrics = gr.HTML(render_metrics([]), label="Metrics", elem_id="cf-metrics")
        with gr.Column(scale=2):
            with gr.Group():
                reasoner = gr.Dropdown(reasoner_choices(ctx.policy), value=ctx.default_reasoner, label="Reasoner",
                                       elem_id="cf-reasoner",
                                       info="local/oracle run offline; API Reasoners need a key (env or below)")
                knowledge = gr.Textbox(ctx.default_knowledge, label="Oracle knowledge", lines=3,
                                       elem_id="cf-knowledge", visible=ctx.default_reasoner == "oracle",
                                       info="the oracle streams these sentences as knowledge chunks")
                reasoner_model = gr.Textbox("", label="Reasoner model", placeholder="provider default",
                                            info="API model name, a GGUF path for local, a recording for replay")
                with gr.Group(visible=ctx.default_reasoner in CLOUD_REASONERS) as api_group:
                    base_url = gr.Textbox("", label="Base URL (custom endpoint)", elem_id="cf-base-url",
                                          placeholder="blank: the provider's own; e.g. http://127.0.0.1:8000/v1",
                                          info="gets only the key typed below, never the server's own key"
                                               + ("; only hosts the operator allows" if ctx.policy.public
                                                  else ""))
                    api_key = gr.Textbox("", label="API key (this session only, never stored)", type="password",
                                         elem_id="cf-api-key")
                delay = gr.Slider(0, 10, value=1.5, step=0.1, label="Simulated Reasoner delay (s)",
                                  info="oracle: before its first chunk; local: before streaming starts")
                gap = gr.Slider(0, 5, value=0.4, step=0.1, label="Oracle gap between chunks (s)")
            talker = gr.Dropdown(list(ctx.talker_choices), value=ctx.talker_choices[0], allow_custom_value=True,
                                 label="Talker", elem_id="cf-talker",
                                 info="the shipped GGUF, a .gguf path, or a hub id / local dir (transformers; "
                                      "needs network for hub ids)")
            with gr.Accordion("Engine settings", open=False):
                caps = ctx.policy.limits.engine_caps()
                engine_controls = {name: config_control(name, cap=caps.get(name)) for name in ENGINE_CONTROLS}
            new_conv = gr.Button("New conversation", size="sm")

    reasoner.change(reasoner_changed, reasoner, [knowledge, api_group], queue=False, api_visibility="private")
    settings = {"reasoner": reasoner, "reasoner_model": reasoner_model, "base_url": base_url, "api_key": api_key,
                "knowledge": knowledge, "reasoner_delay_s": delay, "oracle_gap_s": gap, "talker": talker,
                **engine_controls, "voice_token": voice["voice_token"], "filler_pacing": voice["filler_pacing"],
                "filler_lead_s": voice["filler_lead_s"]}
    # Several sessions stream at once (concurrency_limit=None); the shared Talker steps their phrases token
    # by token on its model thread, a cache each (`convfill.talkers.slots`). trigger_mode="multiple": a message sent while a turn runs starts a new turn that
    # cancels the old one in the engine (barge-in) instead of being dropped by the browser.
    turn = gr.on([msg.submit, send.click], run_turn, inputs=[msg, state], inputs_kwargs=settings,
                 outputs=[chatbot, timeline, metrics, msg, state], api_name="chat", concurrency_limit=None,
                 trigger_mode="multiple", show_progress="hidden")
    # Prefill while typing: each keystroke asks; "always_last" keeps one running and only the newest
    # pending, so a fast typist never queues stale prefixes.
    msg.input(prefill, inputs=[msg, state], inputs_kwargs=settings, outputs=None, api_name="prefill",
              concurrency_limit=None, trigger_mode="always_last", show_progress="hidden", queue=False)
    # The stopped generator may still deliver a last diff that the browser, having cancelled the event,
    # applies to an outdated base; one full re-render after Stop makes the page show the final state.
    stop.click(stop_turn, [state], [chatbot, timeline, metrics], cancels=[turn], api_name="stop",
               concurrency_limit=None, show_progress="hidden").then(
        render_session, [state], [chatbot, timeline, metrics], api_visibility="private", concurrency_limit=None,
        show_progress="hidden")
    new_conv.click(new_conversation, [state], [chatbot, timeline, metrics, state], api_name="new_conversation",
                   concurrency_limit=None)
    return {"chatbot": chatbot, "message": msg, "send": send, "stop": stop, "timeline": timeline,
            "metrics": metrics, "reasoner": reasoner, "knowledge": knowledge, "talker": talker, "state": state}
