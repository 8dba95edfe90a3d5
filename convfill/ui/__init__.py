"""The app shell: `build_studio(AppConfig, store=..., tabs=...)` returns the Blocks with the Chat tab.

It imports only the core library. The whole app (turn log, live judge, the Labeling tab) is assembled one
level up, in `app.build_app`, and handed in. Everything here is importable and testable without starting a
server. Gradio is imported only by the UI packages, so the engine and CLI never need it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..nli.judge import TurnJudge
from ..policy import Policy
from ..turnlog import StoreWriter, TurnLog
from .session import BASE_TALKER, DEFAULT_TALKER, ChatSession, ModelPool, TurnSettings

log = logging.getLogger(__name__)

# Talkers offered in the dropdown besides free text: the offline default (seed-trained adapter), the bare
# base for comparison, and the ConvFill paper's released Talker (a hub id: used on a networked machine, a
# clear load error offline).
HUB_TALKER = "vysri/SmolLM360M-IT-ConvFill"
DEMO_KNOWLEDGE = ("Jane Austen wrote Pride and Prejudice. It was first published in 1813. "
                  "The novel follows Elizabeth Bennet and Mr Darcy.")


@dataclass(frozen=True)
class AppConfig:
    """How the app is set up (the environment fills it in `from_env`).

    Args:
        db: SQLite store path; None = `CONVFILL_DB` / `convfill.paths.db_path()`.
        talkers: Talker dropdown entries (the first is the default); users may also type a path or hub id.
        default_reasoner: the Reasoner selected when a page opens.
        default_knowledge: the oracle's prefilled knowledge text.
        preload_talker: load the default Talker at start-up, so the first turn does not wait for it.
        title: page title.
        policy: what visitors may ask for (`convfill.policy`; public mode on a Space).
        live_judge: judge every stored chat phrase in the background (`app.py` adds `labeling.live`; E/N/C
            badges on the timeline). `CONVFILL_LIVE_JUDGE=0` turns it off.
        voice: offer the mic (`CONVFILL_VOICE=0` hides it); `asr` / `tts`: which speech models
            (`CONVFILL_ASR`, `CONVFILL_TTS`: blank = offline Whisper base and Piper joe; a path, a hub id or
            size when networked, or "openai[:model]" when a key is set).
    """

    db: str | None = None
    talkers: tuple[str, ...] = (DEFAULT_TALKER, BASE_TALKER, HUB_TALKER)
    default_reasoner: str = "local"
    default_knowledge: str = DEMO_KNOWLEDGE
    preload_talker: bool = False
    title: str = "ConvFill Studio"
    policy: Policy = Policy()
    live_judge: bool = True
    voice: bool = True
    asr: str = ""
    tts: str = ""

    @classmethod
    def from_env(cls, **overrides) -> "AppConfig":
        """Read `CONVFILL_DB`, `CONVFILL_REASONER` (default Reasoner) and `CONVFILL_TALKERS`
        (comma-separated extra Talker entries)."""
        talkers = cls.talkers
        extra = [t.strip() for t in os.environ.get("CONVFILL_TALKERS", "").split(",") if t.strip()]
        if extra:
            talkers = (DEFAULT_TALKER, BASE_TALKER, *extra)
        kw = dict(db=os.environ.get("CONVFILL_DB") or None, talkers=talkers,
                  default_reasoner=os.environ.get("CONVFILL_REASONER", cls.default_reasoner),
                  policy=Policy.from_env(),
                  live_judge=_flag("CONVFILL_LIVE_JUDGE"), voice=_flag("CONVFILL_VOICE"),
                  asr=os.environ.get("CONVFILL_ASR", ""), tts=os.environ.get("CONVFILL_TTS", ""))
        kw.update(overrides)
        return cls(**kw)


def _flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


TORCH_THREADS_ENV = "CONVFILL_TORCH_THREADS"


def _share_cores_with_llamacpp() -> None:
    """Run torch work in this process (the NLI judges, the embeddings) on one thread.

    torch and llama.cpp share libgomp here; a multi-threaded torch call on any other thread leaves an OpenMP
    team behind, and from then on libgomp throttles the spinning of llama.cpp's team: the Talker's decode fell
    from 71 to 29 tok/s and its TTFT rose from 60 to 97 ms for the rest of the process after one press of
    "Score". Single-threaded torch creates no team; the offline judge takes 2.5 instead of 1.4 ms per pair.
    `CONVFILL_TORCH_THREADS=N` overrides (docs/benchmarks.md, "torch in the same process").
    """
    import torch

    torch.set_num_threads(int(os.environ.get(TORCH_THREADS_ENV) or 1))


@dataclass(frozen=True)
class ExtraTab:
    """A tab the assembler (`app.py`) adds after Chat: `build(tab)` fills it inside the open `gr.Tab`."""

    label: str
    id: str
    build: Callable[[object], None]


def build_studio(config: AppConfig, *, store: TurnLog, writer: StoreWriter | None = None, judge: TurnJudge | None = None,
                 pool: ModelPool | None = None, tabs: Sequence[ExtraTab] = ()):
    """The Gradio Blocks: header, the Chat tab (recording into `store` through `writer`, judged by `judge`),
    then `tabs`, and the voice route. The parts come from the top (`app.build_app`): this package knows the
    turn log and the judge only by their core interfaces.
    """
    import gradio as gr

    from ..talkers.probe import llamacpp_status
    from .blocks import StudioBlocks
    from .chat import ChatContext, build_chat_tab

    limits = config.policy.limits
    pool = pool or ModelPool(limits.max_models, visitors=limits.max_active_turns)
    runtime = llamacpp_status()
    if runtime.ok:
        _share_cores_with_llamacpp()
    default_reasoner = config.default_reasoner
    if not runtime.ok and default_reasoner == "local":
        default_reasoner = "oracle"  # the local Reasoner runs on llama.cpp too
    if config.preload_talker:
        pool.talker(config.talkers[0], ready=True)
    voice = _voice_service(config)
    ctx = ChatContext(pool=pool, store=store, talker_choices=config.talkers, default_reasoner=default_reasoner,
                      default_knowledge=config.default_knowledge, policy=config.policy, writer=writer,
                      judge=judge, voice=voice)
    # delete_cache: Gradio's copies of served files (exports) older than an hour go, checked every 10 min
    with StudioBlocks(title=config.title, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## {config.title}\nA small local **Talker** speaks at once while a **Reasoner** streams "
                    "knowledge in the background (conversational infill). Fillers come from `<sil>`; "
                    "knowledge phrases are linked to their chunk on the timeline.")
        if not runtime.ok:
            gr.Markdown(f"**Running without llama.cpp.** {runtime.detail}", elem_id="cf-runtime-warning")
        with gr.Tab("Chat", id="chat"):
            build_chat_tab(ctx)
        for extra in tabs:
            with gr.Tab(extra.label, id=extra.id) as tab:
                extra.build(tab)
    if voice is not None:
        from .voice import voice_route

        demo.routes = [voice_route(voice)]
        if config.preload_talker:  # load Whisper and Piper now, off the start-up path
            import threading

            threading.Thread(target=_load_quietly, args=(voice,), daemon=True, name="convfill-voice-load").start()
    demo.convfill_store = store  # for tests and scripts: the store this app writes to
    demo.convfill_voice = voice
    return demo


def _voice_service(config: AppConfig):
    """The voice parts when the app offers voice (their models load on first use), else None."""
    if not config.voice:
        return None
    from ..voice.channel import VoiceService

    return VoiceService(config.asr or None, config.tts or None)


def _load_quietly(voice) -> None:
    try:
        voice.load()
    except Exception:  # noqa: BLE001 - the mic reports it when someone asks for voice
        log.warning("voice models did not load", exc_info=True)


__all__ = ["AppConfig", "ChatSession", "ExtraTab", "ModelPool", "TurnSettings", "build_studio"]
