"""Audio as the voice parts pass it around: float32 mono arrays in [-1, 1] inside, int16 LE PCM at the edges.

ASR models want float32 at 16 kHz, TTS engines produce int16 at their own rate (Piper 22.05 kHz, OpenAI
24 kHz), browsers and files speak WAV. These helpers convert between the three with numpy and the stdlib
`wave` module only, so nothing here pulls in an audio framework.
"""

from __future__ import annotations

import io
import os
import wave
from math import gcd

import numpy as np

_INT16_MAX = 32767.0


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """int16 little-endian PCM bytes -> float32 samples in [-1, 1] (an odd trailing byte is dropped)."""
    usable = len(pcm) - len(pcm) % 2
    return np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float32) / _INT16_MAX


def float_to_pcm16(x: np.ndarray) -> bytes:
    """float samples -> int16 little-endian PCM bytes; values outside [-1, 1] (and NaN) are clipped."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(x, -1.0, 1.0) * _INT16_MAX).astype("<i2").tobytes()


def wav_bytes(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """A complete WAV file (in memory) holding int16 PCM: what an upload or an <audio> element takes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm16)
    return buf.getvalue()


def read_wav(source: str | os.PathLike | bytes) -> tuple[np.ndarray, int]:
    """(float32 mono samples, sample rate) of a PCM WAV file given as a path or as its bytes.

    8-, 16- and 32-bit integer PCM are read; several channels are averaged to mono.
    """
    if not isinstance(source, (bytes, bytearray, memoryview)):
        with open(source, "rb") as f:
            source = f.read()
    with wave.open(io.BytesIO(source), "rb") as w:
        width, channels, sr = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 127.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / _INT16_MAX
    elif width == 4:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483647.0).astype(np.float32)
    else:
        raise ValueError(f"unsupported WAV sample width: {width * 8} bits")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1).astype(np.float32)
    return x, sr


def resampled_length(n: int, sr_from: int, sr_to: int) -> int:
    """How many samples `resample` returns for `n` input samples: ceil(n * sr_to / sr_from)."""
    return -(-n * sr_to // sr_from)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """`x` (float mono) at `sr_to`, `resampled_length(len(x), ...)` samples long.

    Uses scipy's polyphase filter when scipy is installed (it low-passes before downsampling, so Piper's
    22.05 kHz speech reaches Whisper's 16 kHz without aliasing), else linear interpolation.
    """
    x = np.asarray(x, dtype=np.float32)
    if sr_from == sr_to or len(x) == 0:
        return x.copy()
    n_out = resampled_length(len(x), sr_from, sr_to)
    try:
        from scipy.signal import resample_poly
    except ImportError:
        t = np.arange(n_out, dtype=np.float64) * (sr_from / sr_to)
        return np.interp(t, np.arange(len(x)), x).astype(np.float32)
    g = gcd(sr_from, sr_to)
    y = resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)
    return y[:n_out] if len(y) >= n_out else np.pad(y, (0, n_out - len(y)))


def duration_ms(n_samples: int, sample_rate: int) -> float:
    return 1000.0 * n_samples / sample_rate
