"""Per-browser-session chat state over shared loaded models.

Every browser session gets its own `ChatSession` (kept in a `gr.State`): its own `Engine` (so its own
conversation history), its own `TurnRecorder` (its own conversation in the store) and its own turn views.
Loaded models are expensive, so they live once per process in a `ModelPool` and are shared: a Talker
gives each session phrasing at once a cache of its own (`convfill.talkers.slots`), and the local Reasoner is shallow-copied per
session so each copy has its own simulated delay but shares the one llama.cpp model and its lock.

API keys typed in the app travel only in `TurnSettings.api_key` (hidden from `repr`) into the Reasoner
constructor; they are never stored, logged or shown.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import EngineConfig
from ..engine import Engine
from ..errors import ConfigError, ConvFillError, InputError, TalkerLoadError
from ..events import Event, TurnEnded
from ..fold import TurnFold
from ..nli.judge import TurnJudge
from ..policy import Policy
from ..reasoners import REASONERS, Reasoner, ReasonerSpec, build_reasoner
from ..talkers import Talker
from ..talkers.spec import BASE_TALKER as BASE_TALKER, DEFAULT_TALKER, TalkerSpec
from ..turnlog import StoreWriter, TurnLog, TurnRecorder
from .view import TurnView


@dataclass(frozen=True)
class TurnSettings:
    """The Chat tab's controls for one turn (a change applies to the next turn).

    Args:
        reasoner: registry name (`convfill.reasoners.REASONERS`).
        reasoner_model: model name for API Reasoners, or a GGUF path for `local` (blank: its default).
        base_url: OpenAI-compatible server URL (Reasoners that accept `base_url`).
        api_key: optional per-session key; never stored, never in `repr`.
        knowledge: text the oracle Reasoner streams.
        reasoner_delay_s: simulated Reasoner latency (oracle: first chunk; local: delay before streaming;
            cloud Reasoners have real latency and ignore it).
        oracle_gap_s: oracle: seconds between chunks.
        talker: `DEFAULT_TALKER`, a GGUF path, a hub id / local dir, optionally prefixed `runtime:`.
        engine: `EngineConfig` field values.
        voice_token: the browser's voice channel (`convfill.voice.channel`): when set and live, the turn is
            spoken to it and paced by its audio. Secret-like (it names one visitor's socket): not in `repr`.
    """

    reasoner: str = "oracle"
    reasoner_model: str = ""
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    knowledge: str = ""
    reasoner_delay_s: float = 1.5
    oracle_gap_s: float = 0.4
    talker: str = DEFAULT_TALKER
    engine: dict[str, Any] = field(default_factory=dict)
    voice_token: str = field(default="", repr=False)

    def engine_config(self) -> EngineConfig:
        """The `EngineConfig` (ConfigError naming the field when a value is out of bounds)."""
        fields = {f for f in EngineConfig.__dataclass_fields__}
        values = {k: v for k, v in self.engine.items() if k in fields and v is not None}
        for k, v in list(values.items()):
            default = EngineConfig.__dataclass_fields__[k].default
            if isinstance(default, int) and not isinstance(default, bool):
                values[k] = int(v)
            elif isinstance(default, float):
                values[k] = float(v)
        return EngineConfig(**values)

    def reasoner_spec(self) -> ReasonerSpec:
        """The Reasoner these controls describe (each Reasoner reads the fields it declares)."""
        return ReasonerSpec(name=self.reasoner, model=self.reasoner_model, base_url=self.base_url,
                            api_key=self.api_key, knowledge=self.knowledge, delay_s=self.reasoner_delay_s,
                            gap_s=self.oracle_gap_s)


def _pool_key(box: str) -> TalkerSpec:
    """The Talker box text's spec, its file path resolved: every spelling of one file is one model in memory."""
    return TalkerSpec.from_box(box).resolved()


class ModelPool:
    """Models loaded once per process and shared by all sessions (loading is serialised).

    At most `max_talkers` Talkers are kept (least recently used first out); one dropped while a session
    still talks with it lives on in that session until it is done, then its memory is freed. A Talker
    loaded here makes caches for `visitors` sessions phrasing at once in the background (`Talker.reserve`;
    None: as many as the Talker may keep).
    """

    def __init__(self, max_talkers: int | None = 4, visitors: int | None = None) -> None:
        self.max_talkers, self.visitors = max_talkers, visitors
        self._talkers: collections.OrderedDict[TalkerSpec, Talker] = collections.OrderedDict()
        self._loading: dict[TalkerSpec, threading.Lock] = {}
        self._local: dict[str | None, Reasoner] = {}
        self._lock = threading.Lock()

    def add_talker(self, spec: str, talker: Talker) -> None:
        """Register an already loaded Talker under the Talker-box text `spec`."""
        self._talkers[_pool_key(spec)] = talker

    def loaded_talker(self, spec: str) -> Talker | None:
        """The Talker for `spec` if it is loaded already, else None (never loads)."""
        return self._talkers.get(_pool_key(spec))

    def talker(self, spec: str, ready: bool = False) -> Talker:
        """Blocking: the Talker for `spec`, loading it on first use (TalkerLoadError with the reason).

        A load (seconds) holds only that model's own lock: sessions using models already loaded never wait
        for it, and two sessions asking for the same new model load it once. `ready`: also wait for the
        caches it makes for visitors (start-up preloading; a visitor's load does not wait for them).
        """
        key = _pool_key(spec)
        with self._lock:
            if key in self._talkers:
                self._talkers.move_to_end(key)
                return self._talkers[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._talkers:  # loaded by the session we waited for
                    return self._talkers[key]
            talker = self._load(key)
            reserved = talker.reserve(self.visitors)
            if ready and reserved is not None:
                reserved.result()
            with self._lock:
                while self.max_talkers is not None and len(self._talkers) >= self.max_talkers:
                    self._talkers.popitem(last=False)
                self._talkers[key] = talker
                self._loading.pop(key, None)
            return talker

    @staticmethod
    def _load(spec: TalkerSpec) -> Talker:
        try:
            return spec.build()
        except (TalkerLoadError, ConfigError):
            raise
        except Exception as e:  # e.g. an import error deep in a runtime
            raise TalkerLoadError(f"Could not load Talker {spec.model or 'default'!r}: {e}") from e

    def local_reasoner(self, spec: ReasonerSpec) -> Reasoner:
        """Blocking: a per-session copy of the shared local Reasoner for `spec.model`, with its own delay."""
        key = spec.model.strip() or None
        with self._lock:
            if key not in self._local:
                self._local[key] = build_reasoner(ReasonerSpec(name="local", model=key or ""))
            base = self._local[key]
        return base.with_delay(spec.delay_s or 0.0)  # shares the llama.cpp model and its lock


def turn_reasoner(s: TurnSettings, pool: ModelPool, policy: Policy | None = None) -> Reasoner:
    """Blocking: the Reasoner for these settings (ConfigError / MissingKeyError with a clean message).

    `policy` (public mode) vets what a visitor may point the server at: custom Base URLs, model paths.
    """
    policy = policy or Policy()
    if s.reasoner not in REASONERS:
        raise ConfigError(f"Reasoner {s.reasoner!r} is not available in this installation. "
                          f"Available: {', '.join(sorted(REASONERS))}")
    spec = s.reasoner_spec()
    if s.reasoner == "oracle":
        if not s.knowledge.strip():
            raise InputError("The oracle Reasoner streams the knowledge text you give it: fill in "
                             "'Oracle knowledge' first.")
        return build_reasoner(spec)
    if s.reasoner == "local":
        policy.check_model(s.reasoner_model, what="local Reasoner model")
        return pool.local_reasoner(spec)
    policy.check_base_url(s.base_url)
    # In public mode the operator's key pays: only the provider's default model, or the allowed ones.
    policy.check_model(s.reasoner_model, what="Reasoner model")
    return build_reasoner(spec)


def reasoner_label(r: Reasoner) -> str:
    d = r.describe()
    name, model = d.get("reasoner", r.name), d.get("model", "")
    return name if not model or model == name else f"{name} · {model}"


class ChatSession:
    """One browser session's conversation: engine, recorder, and the views of its turns.

    Args:
        pool: shared models.
        store: the turn log turns are written to (None: not persisted).
        policy: what a visitor may ask for (public mode); default: local use, everything allowed.
        talkers: the Talker choices the app offers (public mode loads only these and the allowlist).
    """

    def __init__(self, pool: ModelPool, store: TurnLog | None = None, policy: Policy | None = None,
                 talkers: tuple[str, ...] = (), writer: StoreWriter | None = None, judge: TurnJudge | None = None,
                 owner: str | None = None, voice=None):
        self.pool, self.store, self.writer, self.judge = pool, store, writer, judge
        self.voice_service = voice  # `convfill.voice.channel.VoiceService`, when the app offers voice
        self.voice = None  # the `VoiceChannel` this session's turns are spoken to, if any
        self.owner = owner  # whose conversations these are (the workbench shows visitors only their own)
        self.labels: dict[int, str] = {}  # the last turn's NLI labels by phrase index (live judging)
        self.policy, self.offered_talkers = policy or Policy(), tuple(talkers)
        self.engine: Engine | None = None
        self.visitor = object()  # this session's caches in a shared Talker (the prefill engine's too)
        self.recorder = None
        self.turns: list[TurnView] = []
        self.current: TurnView | None = None
        self.save_error: str | None = None  # why the last turn could not be stored, if it could not
        self.settings: TurnSettings | None = None

    # The engine calls this for every event, synchronously, also while a turn is being cancelled, so a
    # view always receives its TurnEnded even when the UI stopped listening (Stop, closed tab).
    def _observe(self, ev: Event) -> None:
        if self.current is not None:
            self.current.apply(ev)
        if self.voice is not None:
            self.voice.on_event(ev)

    def _record(self, ev: Event) -> None:
        # The engine logs and swallows observer errors (a turn must not die because a disk is full), so
        # keep the reason here for the UI to show: a turn that could not be saved is never silent.
        try:
            self.recorder(ev)
        except Exception as e:
            self.save_error = str(e)
            raise

    async def judged(self, timeout_s: float = 5.0) -> dict[int, str]:
        """After a turn: its phrases' NLI labels from the live judge (waits up to `timeout_s`, off the loop)."""
        if self.judge is None or self.recorder is None or self.recorder.last_turn_id is None:
            return {}
        turn_id = self.recorder.last_turn_id
        await asyncio.to_thread(self.judge.wait, turn_id, timeout_s)
        labels = await asyncio.to_thread(self.judge.labels, turn_id)
        if self.recorder.last_turn_id != turn_id:  # a new turn started meanwhile: these are not its badges
            return {}
        self.labels = labels
        return labels

    async def saved(self, timeout_s: float = 1.0) -> str | None:
        """After a turn: None when it is in the store, else what to tell the user ("not saved: why", or
        that it is waiting for a locked database). Waits up to `timeout_s`, off the event loop."""
        if self.recorder is None:
            return None
        done = await asyncio.to_thread(self.recorder.wait, timeout_s)
        error = self.save_error or self.recorder.error
        if error:
            return f"This turn was not saved: {error}"
        if not done:
            return "The database is busy: this turn will be saved as soon as it is free."
        return None

    async def prepare(self, s: TurnSettings) -> None:
        """Load/build the models for the next turn and point the engine and recorder at them."""
        config = s.engine_config()
        self.policy.limits.check_engine(config)
        if s.reasoner == "oracle":
            self.policy.limits.check_knowledge(s.knowledge)
        self.policy.check_model(s.talker, self.offered_talkers, what="Talker")
        talker = await asyncio.to_thread(self.pool.talker, s.talker)
        reasoner = await asyncio.to_thread(turn_reasoner, s, self.pool, self.policy)
        if self.engine is None:
            observers = [self._observe]
            if self.store is not None:
                self.recorder = TurnRecorder(self.store, source="chat", writer=self.writer, owner=self.owner,
                                             on_stored=self.judge.submit if self.judge is not None else None)
                observers.append(self._record)
            self.engine = Engine(talker, reasoner, config, observers=observers, visitor=self.visitor)
        else:
            await self.engine.cancel()  # a running turn keeps its settings; end it before swapping
            self.engine.talker, self.engine.reasoner, self.engine.config = talker, reasoner, config
        self.settings = s  # the last turn's settings: a voice transcript prefills with them
        self.voice = self._voice_channel(s.voice_token)
        self.engine.playback = self.voice.playback if self.voice is not None else None
        if self.recorder is not None:
            self.recorder.talker, self.recorder.reasoner = talker.describe(), reasoner.describe()
            self.recorder.config = {**asdict(config), "talker_box": s.talker}

    def _voice_channel(self, token: str):
        """The live voice channel `token` names, bound to this session (no other session may speak to it)."""
        if not token or self.voice_service is None:
            return None
        channel = self.voice_service.get(token)
        return channel if channel is not None and channel.live and channel.bind(self) else None

    async def prefill(self, text: str, s: TurnSettings) -> bool:
        """While the user types: pre-compute the first phrase's prompt in the Talker `s` names.

        Only a Talker that is already loaded is used (typing must not load models), and never while this
        session's turn runs. Without a turn yet, the prompt has no previous turn, as the first turn's has not.
        """
        try:
            self.policy.check_model(s.talker, self.offered_talkers, what="Talker")
            talker = self.pool.loaded_talker(s.talker)
            config = s.engine_config()
            self.policy.limits.check_engine(config)
            if talker is not None and self.policy.limits.max_user_tokens is not None:
                self.policy.limits.check_user_tokens(talker.count_tokens(text))  # what a turn would refuse
        except ConvFillError:
            return False
        if talker is None:
            return False
        engine = self.engine if self.engine is not None and self.engine.talker is talker else None
        return await (engine or Engine(talker, None, config, visitor=self.visitor)).prefill(text)

    async def run(self, text: str) -> AsyncIterator[Event]:
        """Run a turn (after `prepare`), yielding each event once the views have applied it.

        Barge-in: a running turn of this session is cancelled first and still ends with TurnEnded.
        """
        if self.engine is None:
            raise ConfigError("ChatSession.prepare() must run before a turn")
        clean = self.engine.check_input(text)  # InputError before anything is cancelled
        if self.policy.limits.max_user_tokens is not None:
            self.policy.limits.check_user_tokens(self.engine.talker.count_tokens(clean))
        await self.engine.cancel()
        self.save_error = None
        self.labels = {}
        self.current = TurnView(text, reasoner_label(self.engine.reasoner) if self.engine.reasoner else "")
        self.turns.append(self.current)
        async for ev in self.engine.turn(text):
            yield ev
            if isinstance(ev, TurnEnded):
                return

    async def cancel(self) -> None:
        """Stop the running turn now (it ends with TurnEnded(reason="cancelled") and is persisted)."""
        if self.engine is not None:
            await self.engine.cancel()

    async def reset(self) -> None:
        """Start a new conversation: no history, a new conversation id in the store."""
        await self.cancel()
        self.turns.clear()
        self.current = None
        if self.engine is not None:
            self.engine.reset()
        if self.recorder is not None:
            self.recorder.new_conversation()

    # ----------------------------------------------------------------------------------------- views
    def messages(self) -> list[dict]:
        return [m for t in self.turns for m in t.messages()]

    @property
    def last_fold(self) -> TurnFold:
        return self.turns[-1].fold if self.turns else TurnFold()

    @property
    def conversation_id(self) -> str | None:
        return self.recorder.conversation_id if self.recorder is not None else None

