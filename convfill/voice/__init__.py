"""The voice package: speech in (ASR) and out (TTS) around the Talker.

The parts here (`audio`, `asr`, `tts`) are framework-free blocking functions on numpy arrays and PCM bytes:
no event loop, no UI. Callers run them on worker threads. Models load lazily and once per process via
`load_asr` / `load_tts`; the offline defaults (Whisper base, the Piper joe voice) come from PyPI packages,
so nothing is downloaded at run time.
"""

from .asr import ASR, OpenAIASR, Transcript, WhisperASR, get_asr, load_asr
from .tts import TTS, OpenAITTS, PiperTTS, Speech, get_tts, load_tts

__all__ = ["ASR", "TTS", "OpenAIASR", "OpenAITTS", "PiperTTS", "Speech", "Transcript", "WhisperASR", "get_asr",
           "get_tts", "load_asr", "load_tts"]
