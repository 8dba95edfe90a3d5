"""The voice WebSocket's wire format: one place for what the browser and the server say to each other.

The socket is `/convfill/voice?token=T` on the app's own server. `T` comes from the Chat tab's
`voice_start` server function (a Gradio call, so who may chat is checked there), is unguessable, and opens
one socket once. Text frames are JSON objects with a `type`; binary frames are audio.

Browser -> server
  binary            int16 little-endian mono PCM at 16 kHz: the microphone, only while an utterance is open
  speech_start      {"barge_in": bool}: the user started speaking (VAD or push-to-talk). With barge_in the
                    browser has already stopped playback and sent `cut`/`stopped` for what was playing.
  speech_pause      {}: the user went quiet (VAD, ~200 ms of silence): the server transcribes what it has
                    while the browser waits out the endpointing silence, so the transcript is ready at once
  speech_resume     {}: speech again before the endpoint: that early transcript is void
  speech_end        {"endpoint_ms": n}: the user finished (n = the silence VAD waited for; 0 for push-to-talk)
  speech_abort      {}: drop the open utterance (too short, or the mic was switched off)
  started           {"turn", "phrase", "seq", "start_in_ms"}: a sentence is scheduled to play in n ms
  cut               {"turn", "phrase", "seq", "played_ms"}: playback of that sentence stopped after n ms
  stopped           {"turn"}: playback of this turn stopped (nothing was mid-sentence)
  first_audio       {"turn", "eos_to_first_audio_ms"}: the browser's own voice-to-voice measurement

Server -> browser
  ready             {"in_rate": 16000, "out_rate": r, "max_utterance_s": s}
  transcript        {"text", "asr_ms", "audio_s"} (text "" and a "reason" when nothing was understood);
                    the browser sends it as the chat message, so a voiced turn runs the text chat's path
  turn              {"turn"}: a voiced turn starts: drop audio of any other turn
  audio (binary)    4-byte little-endian header length n, n bytes of JSON header
                    {"turn", "phrase", "seq", "text", "rate", "samples"}, then int16 LE mono PCM
  cancel            {"turn"}: stop this turn's audio now (Stop, or a typed message); answer with cut/stopped
  end               {"turn", "reason"}: the turn is over (its audio was heard, or it was cancelled)
  error             {"message"}
"""

from __future__ import annotations

import json
import struct

IN_RATE = 16_000
PATH = "/convfill/voice"
MAX_HEADER = 4096
CLIENT_TYPES = ("speech_start", "speech_pause", "speech_resume", "speech_end", "speech_abort", "started", "cut",
                "stopped", "first_audio")


def pack_audio(header: dict, pcm: bytes) -> bytes:
    """A binary audio frame: header length, JSON header, PCM."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + pcm


def unpack_audio(frame: bytes) -> tuple[dict, bytes]:
    """Inverse of `pack_audio` (ValueError on a malformed frame)."""
    if len(frame) < 4:
        raise ValueError("audio frame too short")
    (n,) = struct.unpack("<I", frame[:4])
    if n > MAX_HEADER or 4 + n > len(frame):
        raise ValueError("audio frame header length is invalid")
    return json.loads(frame[4:4 + n]), frame[4 + n:]


def parse_client_message(text: str, max_chars: int = 2000) -> dict:
    """A browser message as a dict with a known `type` (ValueError otherwise): sizes and types are checked
    here because the browser is not trusted."""
    if len(text) > max_chars:
        raise ValueError("message too long")
    msg = json.loads(text)
    if not isinstance(msg, dict) or msg.get("type") not in CLIENT_TYPES:
        raise ValueError("unknown message")
    for key in ("phrase", "seq"):
        if key in msg and not (isinstance(msg[key], int) and 0 <= msg[key] < 10_000):
            raise ValueError(f"bad {key}")
    for key in ("start_in_ms", "played_ms", "endpoint_ms", "eos_to_first_audio_ms"):
        if key in msg and not (isinstance(msg[key], (int, float)) and 0 <= msg[key] < 600_000):
            raise ValueError(f"bad {key}")
    if "turn" in msg and not (isinstance(msg["turn"], str) and len(msg["turn"]) <= 64):
        raise ValueError("bad turn")
    return msg
