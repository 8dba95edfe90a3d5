"""Measure the voice parts on this machine: `python -m convfill.eval voice-parts [--talker] [--json]`.

Prints Piper's load time, first-sentence latency and real-time factor (synthesis time / audio time) and
Whisper's load time and transcription time for a ~5 s utterance, each for 1 and 2 threads. `--talker` also
checks whether one transcription or synthesis slows a llama.cpp Talker in the same process afterwards (the
torch/libgomp effect in docs/benchmarks.md): each case runs in a fresh child process, the Talker on its own
model thread and the voice part on another thread, as in the app.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Self

TEXT = "What is the capital of France? Paris has been the capital for centuries. It lies on the Seine."
PHRASE = "Paris has been the capital of France for centuries."
UTTERANCE = ("I would like to know what the capital of France is, and roughly how many people live in that "
             "city today.")


class OtherLoad:
    """The share of this machine's CPU time used by other processes during a `with` block, in percent:
    a shared machine's neighbours make numbers meaningless, so each result carries this figure (Linux)."""

    pct: float | None = None

    @staticmethod
    def _sample() -> tuple[int, int, int]:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        t = os.times()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(cpu), cpu[3] + cpu[4], round((t.user + t.system + t.children_user + t.children_system) * ticks)

    def __enter__(self) -> Self:
        try:
            self._start = self._sample()
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc) -> None:
        if self._start is not None:
            (t0, i0, o0), (t1, i1, o1) = self._start, self._sample()
            self.pct = round(100 * max(0, (t1 - t0) - (i1 - i0) - (o1 - o0)) / max(1, t1 - t0), 1)


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def bench_piper(threads: int, n: int = 5) -> dict:
    from ..voice.tts import PiperTTS

    t0 = time.perf_counter()
    tts = PiperTTS(threads=threads)
    load_ms = 1000 * (time.perf_counter() - t0)
    list(tts.speak("Warm up."))
    firsts, rtfs = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        first, audio_ms = None, 0.0
        for s in tts.speak(TEXT):
            first = first if first is not None else 1000 * (time.perf_counter() - t0)
            audio_ms += s.duration_ms
        firsts.append(first)
        rtfs.append(1000 * (time.perf_counter() - t0) / audio_ms)
    return {"threads": threads, "load_ms": round(load_ms), "first_sentence_ms": round(statistics.median(firsts)),
            "rtf": round(statistics.median(rtfs), 3)}


def utterance_16k():
    """~5 s of Piper speech at 16 kHz, Whisper's input."""
    from ..voice.audio import pcm16_to_float, resample
    from ..voice.tts import PiperTTS

    tts = PiperTTS()
    pcm = b"".join(s.pcm for s in tts.speak(UTTERANCE))
    return resample(pcm16_to_float(pcm), tts.sample_rate, 16000)


def bench_whisper(threads: int, x, n: int = 5) -> dict:
    from ..voice.asr import WhisperASR

    t0 = time.perf_counter()
    asr = WhisperASR(cpu_threads=threads)
    load_ms = 1000 * (time.perf_counter() - t0)
    text = asr.transcribe(x).text  # warm-up
    ms = _median_ms(lambda: asr.transcribe(x), n)
    return {"cpu_threads": threads, "load_ms": round(load_ms), "audio_s": round(len(x) / 16000, 2),
            "transcribe_ms": round(ms), "rtf": round(ms / (1000 * len(x) / 16000), 3), "text": text}


# ------------------------------------------------------------------------------- Talker interference
def _talker_case(case: str) -> dict:
    """In this (fresh) process: Talker phrase time before and after one voice call on another thread."""
    from ..prompt import PhraseContext
    from ..talkers import get_talker

    kind, threads, *wav = case.split(":", 2)
    t = get_talker("llamacpp")
    prompt = t.prompt(PhraseContext(user="Tell me about the history of Rome.",
                                    knowledge="Rome was founded in 753 BC and became the capital of an empire."))

    def phrase_ms() -> float:
        def run():
            t0 = time.perf_counter()
            list(t.generate(prompt, 32, threading.Event()))
            return 1000 * (time.perf_counter() - t0)
        return t._model_thread.submit(run).result()  # where the app runs every Talker call

    load = OtherLoad().__enter__()
    for _ in range(3):
        phrase_ms()
    before = statistics.median(phrase_ms() for _ in range(7))
    if kind == "asr":
        from ..voice.asr import WhisperASR
        from ..voice.audio import read_wav

        x = read_wav(wav[0])[0]  # made by the parent: no Piper (onnxruntime) in this process
        part = WhisperASR(cpu_threads=int(threads))
        call = lambda: part.transcribe(x)
    else:
        from ..voice.tts import PiperTTS

        part = PiperTTS(threads=int(threads))
        call = lambda: list(part.speak(PHRASE))  # the app speaks each Talker phrase as it ends
    worker = threading.Thread(target=call)  # first call: a caller's worker thread that then ends
    worker.start()
    worker.join()
    right_after = phrase_ms()
    time.sleep(1.0)
    after = statistics.median(phrase_ms() for _ in range(7))
    # the app's shape: the voice part on a long-lived thread of its own (it stays alive between calls)
    voice_thread = ThreadPoolExecutor(1, thread_name_prefix="voice")
    solo_ms = voice_thread.submit(_median_ms, call, 3).result()  # the voice part alone, warm
    alive = statistics.median(phrase_ms() for _ in range(7))
    overlap, voice_ms = [], []
    for _ in range(5):  # both at once: the voice part works while the Talker speaks
        job = voice_thread.submit(_median_ms, call, 1)
        overlap.append(phrase_ms())
        voice_ms.append(job.result())
    voice_thread.shutdown()
    t.close()
    load.__exit__()
    return {"case": f"{kind}:{threads}", "phrase_ms_before": round(before, 1), "phrase_ms_right_after": round(right_after, 1),
            "phrase_ms_after_1s": round(after, 1), "phrase_ms_thread_alive": round(alive, 1),
            "phrase_ms_during_voice": round(statistics.median(overlap), 1), "voice_ms_alone": round(solo_ms),
            "voice_ms_during_phrases": round(statistics.median(voice_ms)), "other_cpu_pct": load.pct}


def bench_talker(x, cases=("asr:1", "asr:2", "tts:1", "tts:2")) -> list[dict]:
    from ..voice.audio import float_to_pcm16, wav_bytes

    rows = []
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(wav_bytes(float_to_pcm16(x), 16000))
        f.flush()
        for case in cases:
            arg = f"{case}:{f.name}" if case.startswith("asr") else case
            out = subprocess.run([sys.executable, "-m", "convfill.eval.voice_parts", "--case", arg],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--talker", action="store_true", help="also measure the effect on a llama.cpp Talker")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one child-process case of --talker
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(_talker_case(args.case)))
        return 0
    x = utterance_16k()
    report: dict = {"piper": [], "whisper": []}
    for n in (1, 2):
        with OtherLoad() as load:
            report["piper"].append(bench_piper(n))
        report["piper"][-1]["other_cpu_pct"] = load.pct
        with OtherLoad() as load:
            report["whisper"].append(bench_whisper(n, x))
        report["whisper"][-1]["other_cpu_pct"] = load.pct
    if args.talker:
        report["talker"] = bench_talker(x)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for part, rows in report.items():
            for r in rows:
                print(part, " ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
