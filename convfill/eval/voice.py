"""Voice to voice, through the app's own server: `python -m convfill.eval voice`.

Each question is spoken by Piper (before the clock starts), sent over the app's voice socket as a browser
would (`convfill.voice.client`), transcribed by the app, sent as the chat message with the voice token, and
its spoken reply "played" in real time by the client, which reports playback like voice.js. The oracle
Reasoner answers after `--delays` seconds. Per turn it reads what the store recorded (ASR, voiced first
response, dead air) and what the client saw (end of speech -> first audio). The endpointing wait (the
silence the browser's VAD waits for) is a setting, not measured: it is reported beside the measured parts.
A script, not a test: numbers go to docs/benchmarks.md ("Voice").
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from ..metrics import summarize
from .load import QUESTIONS, _launch, _temp_db

ENDPOINT_MS = 600.0  # voice.js's default end-of-speech silence


def questions(n: int, data: str | None = None) -> list[tuple[str, str]]:
    """(question, oracle knowledge) pairs: from a QA file when there is one (NQ-open in ../shared), else the
    load benchmark's built-in questions, repeated."""
    from .qa import DEFAULT_DATA, load_items, oracle_knowledge, sample_items

    path = Path(data) if data else DEFAULT_DATA
    if path.exists():
        items = sample_items(load_items(path), n, 0)
        return [(i.question.rstrip("?") + "?", oracle_knowledge(i)) for i in items]
    return [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]


_CLIENTS: dict = {}


def _chat(url: str, message: str, token: str, knowledge: str, delay: float, pacing: str):
    from gradio_client import Client

    if url not in _CLIENTS:  # one client, as one open page: its set-up is not part of a turn's latency
        _CLIENTS[url] = Client(url, verbose=False, download_files=False)
    return _CLIENTS[url].predict(
        message=message, voice_token=token, reasoner="oracle", knowledge=knowledge, reasoner_delay_s=delay,
        oracle_gap_s=0.3, filler_pacing=pacing, turn_timeout_s=120, api_name="/chat")


async def _one(vc, url: str, pcm: bytes | None, question: str, knowledge: str, delay: float, pacing: str) -> dict:
    """One spoken question on the open voice channel `vc`, its reply heard to the end."""
    from ..voice.client import VoiceTurn

    if pcm is not None:
        turn = await vc.say(pcm, endpoint_ms=ENDPOINT_MS, realtime=True)  # spoken at the pace of speech
        message = turn.transcript or question
    else:  # typed, spoken back: only the reply's audio is measured
        vc.current = turn = VoiceTurn()
        message = question
    t_send = time.perf_counter()
    job = asyncio.create_task(asyncio.to_thread(_chat, url, message, vc.token, knowledge, delay, pacing))
    await vc.heard()
    await job
    return {"transcript": turn.transcript, "turn": turn.turn, "eos_to_first_audio_ms": turn.eos_to_first_audio_ms,
            "eos_to_transcript_ms": turn.eos_to_transcript_ms,
            "send_to_first_audio_ms": round((turn.played[0].start - t_send) * 1000, 1) if turn.played else None}


async def _block(url: str, items: list, delay: float, pacing: str, warm_up=None) -> list[dict]:
    """Questions asked one after another with the mic left on, as on the page: one voice channel for them all
    (so from the second turn on, the transcript is prefilled while the browser sends it back)."""
    from ..voice.client import VoiceClient

    async with VoiceClient(url) as vc:
        if warm_up is not None:  # not counted
            await _one(vc, url, warm_up[1], *warm_up[0], 0.5, pacing)
        return [await _one(vc, url, pcm, q, k, delay, pacing) for (q, k), pcm in items]


def _stored(store, turn_id: str) -> dict:
    row = next(iter(store.db["turns"].rows_where("id = ?", [turn_id])), {})
    vm = next(iter(store.db["events"].rows_where("turn_id = ? and type = 'voice_metrics'", [turn_id])), None)
    vm = json.loads(vm["data"]) if vm else {}
    return {"asr_ms": row.get("asr_ms"), "voiced_first_ms": row.get("voiced_first_ms"),
            "talker_ttft_ms": row.get("talker_ttft_ms"), "dead_air_ms": vm.get("dead_air_ms", []),
            "tts_first_byte_ms": (vm.get("tts_first_byte_ms") or [None])[0], "n_fillers": row.get("n_fillers")}


def run_voice(n: int = 30, delays=(0.5, 1.0, 2.0), pacings=("audio",), speak: bool = True,
              data: str | None = None, out: str | None = None) -> dict:
    """Launch the app on the offline defaults and measure `n` questions per (delay, pacing)."""
    from ..ui import AppConfig
    from ..voice import load_tts
    from ..voice.client import spoken

    tts = load_tts()
    qs = questions(n, data)
    audio = [spoken(tts, q) if speak else None for q, _ in qs]
    demo, url = _launch(AppConfig.from_env(db=_temp_db("convfill-voice-"), preload_talker=True, live_judge=False))
    demo.convfill_voice.load()
    results = []
    try:
        for delay in delays:
            for pacing in pacings:
                said = asyncio.run(_block(url, list(zip(qs, audio)), delay, pacing, warm_up=(qs[0], audio[0])))
                for (q, _), r in zip(qs, said):
                    results.append({"delay_s": delay, "pacing": pacing, "question": q,
                                    **r, **_stored(demo.convfill_store, r["turn"])})
    finally:
        demo.close()
    result = {"n": n, "endpoint_ms": ENDPOINT_MS, "spoken": speak, "results": results, "table": table(results)}
    if out:  # every turn's numbers, for the docs and for a re-analysis
        Path(out).write_text(json.dumps(result, indent=1))
    return result


def table(results: list[dict]) -> list[dict]:
    """p50/p95 per (delay, pacing) of each part of voice to voice, and dead air per turn."""
    out = []
    keys = sorted({(r["delay_s"], r["pacing"]) for r in results})
    for delay, pacing in keys:
        rs = [r for r in results if (r["delay_s"], r["pacing"]) == (delay, pacing)]
        row = {"delay_s": delay, "pacing": pacing, "n": len(rs)}
        for k in ("eos_to_first_audio_ms", "asr_ms", "eos_to_transcript_ms", "talker_ttft_ms", "tts_first_byte_ms",
                  "voiced_first_ms", "send_to_first_audio_ms"):
            s = summarize([r.get(k) for r in rs])
            row[k] = (s["p50"], s["p95"])
        dead = [sum(r["dead_air_ms"]) for r in rs]
        row["dead_air_turns"] = sum(1 for r in rs if r["dead_air_ms"])
        row["dead_air_over_1s"] = sum(1 for r in rs if any(d > 1000 for d in r["dead_air_ms"]))
        row["dead_air_ms_mean"] = round(sum(dead) / len(dead), 1) if dead else None
        row["fillers_mean"] = round(sum(r["n_fillers"] or 0 for r in rs) / len(rs), 2)
        out.append(row)
    return out


def render(result: dict) -> str:
    """The Markdown table for docs/benchmarks.md."""
    def f(pair):
        return "-" if pair[0] is None else f"{pair[0]:.0f} / {pair[1]:.0f}"

    lines = ["| oracle delay | pacing | n | voice-to-voice p50/p95 (excl. endpointing) | ASR | end of speech -> "
             "transcript | Talker TTFT | TTS first byte | transcript -> first audio | turns with dead air "
             "(> 1 s) | dead air mean | fillers |", "|" + "---|" * 12]
    for r in result["table"]:
        lines.append(f"| {r['delay_s']:g} s | {r['pacing']} | {r['n']} | {f(r['eos_to_first_audio_ms'])} | "
                     f"{f(r['asr_ms'])} | {f(r['eos_to_transcript_ms'])} | {f(r['talker_ttft_ms'])} | "
                     f"{f(r['tts_first_byte_ms'])} | {f(r['send_to_first_audio_ms'])} | {r['dead_air_turns']} "
                     f"({r['dead_air_over_1s']}) | {r['dead_air_ms_mean']} ms | {r['fillers_mean']} |")
    lines.append(f"\nEndpointing wait (not included above): {result['endpoint_ms']:.0f} ms of silence.")
    return "\n".join(lines)
