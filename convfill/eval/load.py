"""Many visitors at once, through the app's own API: `python -m convfill.eval load --sessions 1 2 4 8`.

Each visitor is a `gradio_client.Client` (its own browser session) sending one question per round with
the oracle Reasoner; N visitors send at the same moment. TTFT is the engine's own number, read from the
metrics panel the page shows; "turn" is the client's wall time from submit to the turn's last update.
Without `--url` the app is launched in this process on the offline defaults (public-mode limits off, so
nobody is turned away); with `--url` any running app is measured. A script, not a test: numbers go to
docs/benchmarks.md ("Many visitors at once").
"""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import closing

from ..metrics import percentile

QUESTIONS = (
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice. It was published in 1813."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra. It was chosen in 1908."),
    ("How many moons does Mars have?", "Mars has two moons. They are called Phobos and Deimos."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa. It hangs in the Louvre."),
    ("What is the boiling point of water?", "Water boils at one hundred degrees Celsius at sea level."),
    ("Which planet is the largest?", "Jupiter is the largest planet. It is a gas giant."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin in 1928."),
    ("What is the tallest mountain?", "Mount Everest is the tallest mountain above sea level."),
)
_TTFT = re.compile(r"data-metric='0'>([\d,.]+) ms<")


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(config):
    """The app for `config`, launched on a free loopback port: (demo, url)."""
    from app import build_app  # evaluation drives the app as the assembler builds it

    demo = build_app(config)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    return demo, url


def _temp_db(prefix: str) -> str:
    import os
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix=prefix), "convfill.db")  # never the user's store


def _at_once(n: int, target, *args) -> None:
    """Run `target(i, barrier, *args)` on n threads that start together; wait for all."""
    barrier = threading.Barrier(n, timeout=120)
    threads = [threading.Thread(target=target, args=(i, barrier, *args)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def _one_turn(i: int, barrier: threading.Barrier, url: str, delay_s: float, out: list, stagger_s: float = 0.0,
              clients: list | None = None, round_: int = 0) -> None:
    """Visitor i's turn: a new session asking question i, or (with `clients`) visitor i's own session asking
    its next question (a conversation: the turn has the visitor's previous turn as history)."""
    question, knowledge = QUESTIONS[(i + round_) % len(QUESTIONS)]
    client = clients[i] if clients is not None else _client(url)
    barrier.wait()
    time.sleep(i * stagger_s)  # visitor i sends `i * stagger_s` after the first (0: all at the same moment)
    t0 = time.monotonic()
    try:
        chat, timeline, metrics, _ = client.predict(message=question, reasoner="oracle", knowledge=knowledge,
                                                    reasoner_delay_s=delay_s, oracle_gap_s=0.3,
                                                    turn_timeout_s=600, api_name="/chat")
        m = _TTFT.search(metrics)
        done = 'data-reason="done"' in timeline
        out.append({"ttft_ms": float(m.group(1).replace(",", "")) if m else None, "turn_s": time.monotonic() - t0,
                    "done": done})
    except Exception as e:  # noqa: BLE001 - a refused or failed turn is a result, not a crash
        out.append({"ttft_ms": None, "turn_s": time.monotonic() - t0, "done": False, "error": str(e)[:200]})


def run_load(url: str | None = None, sessions=(1, 2, 4, 8), rounds: int = 3, delay_s: float = 0.5,
             stagger_s: float = 0.0, conversations: bool = False, think_s: float = 0.0) -> dict:
    """TTFT p50/p95 and turn p50 per number of concurrent visitors (sending together, or `stagger_s` apart).
    Each round is N new visitors asking one question each, or with `conversations` the same N visitors
    asking their next question (visitors who take turns, each with a conversation the Talker caches), after
    `think_s` of reading and typing (0: at once)."""
    demo, db = None, None
    if url is None:
        from ..policy import Policy
        from ..ui import AppConfig

        db = _temp_db("convfill-load-")
        demo, url = _launch(AppConfig.from_env(db=db, preload_talker=True, live_judge=False,
                                               policy=Policy(public=False)))
    rows = []
    try:
        for n in sessions:
            results: list[dict] = []
            clients = [_client(url) for _ in range(n)] if conversations else None
            for round_ in range(rounds):
                if round_:
                    time.sleep(think_s)
                _at_once(n, _one_turn, url, delay_s, results, stagger_s, clients, round_ if clients else 0)
            ttfts = [r["ttft_ms"] for r in results if r["ttft_ms"] is not None]
            rows.append({"sessions": n, "turns": len(results), "done": sum(r["done"] for r in results),
                         "ttft_ms": ttfts,  # per turn, round by round (in the order turns ended)
                         "ttft_ms_p50": _r(percentile(ttfts, 50)), "ttft_ms_p95": _r(percentile(ttfts, 95)),
                         "turn_s_p50": _r(percentile([r["turn_s"] for r in results], 50), 2),
                         "errors": sorted({r["error"] for r in results if "error" in r})})
    finally:
        if demo is not None:
            demo.close()
    return {"reasoner": f"oracle, first chunk after {delay_s:g} s", "rounds": rounds, "stagger_s": stagger_s,
            "conversations": conversations, "think_s": think_s, "rows": rows,
            "db": db}  # where the launched app stored every turn (None with --url)


def _r(v, digits: int = 1):
    return None if v is None else round(v, digits)


def render(result: dict) -> str:
    lines = ["| concurrent sessions | turns done | TTFT p50 / p95 | turn p50 |", "|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['sessions']} | {r['done']}/{r['turns']} | {r['ttft_ms_p50']} / {r['ttft_ms_p95']} ms | "
                     f"{r['turn_s_p50']} s |")
    return "\n".join(lines)


def run_label_load(annotators=(1, 8), labels: int = 20, seed_file: str | None = None) -> dict:
    """Label latency through the app's API: N annotators, each in their own session, labeling at once.

    The app is launched here on a fresh database holding `seed_file` (default: data/seed/part_a.jsonl);
    each annotator refreshes their queue, then sends `labels` labels back to back; latency is one call's
    round trip (the label write, the next item, the progress line)."""
    from pathlib import Path

    from ..ui import AppConfig

    seed = Path(seed_file or Path(__file__).resolve().parents[2] / "data" / "seed" / "part_a.jsonl")
    demo, url = _launch(AppConfig(db=_temp_db("convfill-label-load-"), live_judge=False))
    demo.convfill_store.import_convfill(seed)
    rows = []
    try:
        for n in annotators:
            times: list[float] = []
            lock = threading.Lock()

            def annotator(i: int, barrier: threading.Barrier) -> None:
                from gradio_client import Client

                c = Client(url, verbose=False, download_files=False)
                name, filters = f"annotator-{n}-{i}", ("any", 0, 1, "any", "todo_me")
                c.predict(name, *filters, api_name="/on_refresh")
                barrier.wait()
                for _ in range(labels):
                    t0 = time.monotonic()
                    c.predict(name, *filters, "", api_name="/label_neutral")
                    with lock:
                        times.append((time.monotonic() - t0) * 1000)

            _at_once(n, annotator)
            rows.append({"annotators": n, "labels": len(times), "latency_ms_p50": _r(percentile(times, 50)),
                         "latency_ms_p95": _r(percentile(times, 95))})
    finally:
        demo.close()
    return {"labels_per_annotator": labels, "rows": rows}
