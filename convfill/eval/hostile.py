"""Replay what a hostile visitor tried against a public app and say, per case, what happened:
`python -m convfill.eval hostile [--url URL]`.

Only the app's own HTTP API is used (`gradio_client`, and raw JSON where a browser sends what Python's
client refuses to), exactly as an anonymous visitor could. Without `--url` the app is launched here in
public mode on a fresh database with the default Talker. Verdicts:

* held: refused with a clear message, or handled, and nothing lost;
* degraded: it works, slower or with a notice, nothing lost;
* exposed: the visitor got what they should not;
* lost: something a user said or did is gone.

A script, not a test: its table goes into docs/benchmarks.md ("Public deployment").
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass

from .load import _launch, _temp_db

TURN = dict(reasoner="oracle", knowledge="Jane Austen wrote Pride and Prejudice.", reasoner_delay_s=0.3,
            oracle_gap_s=0.2, max_phrase_tokens=16, turn_timeout_s=60, api_name="/chat")


@dataclass(frozen=True)
class Case:
    name: str
    verdict: str
    detail: str


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def _error(fn) -> str | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the app's refusal is the result
        return str(e).strip()[:160]
    return None


def raw_chat(url: str, session: str | None = None, **fields) -> list | None:
    """One /chat call sent as a browser sends it, raw JSON with ASCII escapes: that is how a lone surrogate
    arrives (Python's httpx, under gradio_client, refuses to encode one). `fields` override `TURN` and the
    endpoint's defaults; returns the final chat messages, or None when the call did not complete."""
    params = _client(url).view_api(return_format="dict", print_info=False)["named_endpoints"]["/chat"]["parameters"]
    fields = {**TURN, **fields}
    data = [fields.get(p["parameter_name"], p.get("parameter_default")) for p in params]
    body = json.dumps({"data": data, **({"session_hash": session} if session else {})}).encode()
    req = urllib.request.Request(f"{url.rstrip('/')}/gradio_api/call/chat", body, {"Content-Type": "application/json"})
    event = json.load(urllib.request.urlopen(req, timeout=60))["event_id"]
    lines = urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/call/chat/{event}",
                                   timeout=300).read().decode().splitlines()
    if "event: complete" not in lines:
        return None
    return json.loads(lines[lines.index("event: complete") + 1].removeprefix("data: "))[0]


def run_cases(url: str, db: str | None) -> list[Case]:
    c = _client(url)
    out: list[Case] = []

    def add(name, verdict, detail):
        out.append(Case(name, verdict, detail))

    # A first visitor's conversation, which nobody else should be able to read.
    c.predict(message="My private question about my health", **TURN)

    err = _error(lambda: c.predict(message="x " * 2000, **TURN))
    add("4,000-character message", "held" if err and "tokens" in err else "exposed", err or "accepted")
    err = _error(lambda: c.predict(message="hi", **{**TURN, "knowledge": "Fact. " * 17000}))
    add("100 KB oracle knowledge", "held" if err else "exposed", err or "accepted")
    err = _error(lambda: c.predict(message="hi", **{**TURN, "turn_timeout_s": 3600}))
    add("turn of 3,600 s", "held" if err else "exposed", err or "accepted")
    err = _error(lambda: c.predict(message="hi", max_phrases=200, **TURN))
    add("200 phrases per turn", "held" if err else "exposed", err or "accepted")
    for path in ("/etc/passwd", "./../../etc/hostname.gguf"):
        err = _error(lambda: c.predict(message="hi", **{**TURN, "talker": path}))
        add(f"model path {path}", "held" if err and "only loads" in err else "exposed", err or "accepted")
    err = _error(lambda: c.predict(message="hi", **{**TURN, "reasoner": "openai",
                                                    "base_url": "http://127.0.0.1:22/v1"}))
    add("Base URL to an internal port", "held" if err and "disabled" in err else "exposed", err or "accepted")
    chat = c.predict(message="look ![x](http://127.0.0.1:9/pixel.png) <img src=x>", **TURN)[0]
    shown = " ".join(part.get("text", "") for m in chat for part in m["content"] if isinstance(part, dict))
    raw = "![x](" in shown or re.search(r"(?<!\\)<img", shown)
    add("Markdown image / HTML in a message", "exposed" if raw else "held",
        "rendered as an image / tag" if raw else "shown as the characters typed (escaped Markdown)")
    chat = raw_chat(url, message="broken \ud800 unicode")
    add("lone surrogate in a message", "held" if chat is not None else "lost",
        "replaced by U+FFFD, the turn completed" if chat is not None else "the call did not complete")
    other = _client(url)  # another anonymous visitor
    try:
        file, said = other.predict(api_name="/export_csv")
        file = file.get("value", file) if isinstance(file, dict) else file
        link = file.get("url") if isinstance(file, dict) else None
        text = urllib.request.urlopen(link, timeout=30).read().decode() if link else ""
        leaked = "My private question" in text
        add("anonymous export of every conversation", "exposed" if leaked else "held",
            "another visitor's CSV holds the first visitor's conversation" if leaked else f"refused: {said}")
        card = other.predict("", "any", 0, 1, "any", "all", api_name="/on_refresh")[0]
        add("reading another visitor's conversation in the Labeling queue",
            "exposed" if "My private question" in card else "held",
            "shown" if "My private question" in card else "a visitor's queue holds only their own conversations")
    except Exception as e:  # noqa: BLE001
        add("anonymous export of every conversation", "held", str(e)[:160])
    status = None
    try:
        other.predict("zoe", "any", 0, 1, "any", "all", api_name="/on_refresh")  # this session's queue
        status = other.predict("zoe", "any", 0, 1, "any", "all", "", api_name="/label_neutral")[2]
    except Exception as e:  # noqa: BLE001
        status = f"refused: {e}"[:160]
    add("labeling as someone else ('zoe')", "exposed" if status and "labeled" in status else "held",
        "any typed name is accepted" if status and "labeled" in status else str(status).replace("**", ""))
    if db is not None:
        add(*_locked_db_case(url, db))
    add(*_busy_case(url))
    return out


def _locked_db_case(url: str, db: str) -> tuple[str, str, str]:
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("begin exclusive")
    t0 = time.monotonic()
    try:
        _client(url).predict(message="Is anyone there?", **TURN)
        took = time.monotonic() - t0
    finally:
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t0)))
        other.execute("rollback")
        other.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("select count(*) from turns where user = 'Is anyone there?' and end_reason = 'done'"
                            ).fetchone()[0]:
                return ("database write-locked for 5 s", "held", f"turn streamed in {took:.1f} s, stored after")
        time.sleep(0.2)
    return ("database write-locked for 5 s", "lost", "the turn never reached the store")


def _busy_case(url: str) -> tuple[str, str, str]:
    results: list[str | None] = []
    slow = {**TURN, "reasoner_delay_s": 5, "turn_timeout_s": 60}

    def visitor(i):
        results.append(_error(lambda: _client(url).predict(message=f"visitor {i}", **slow)))

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in results if r and "busy" in r]
    return ("6 visitors at once (cap 4)", "degraded" if busy else "held",
            f"{len(busy)} told the server is busy, {sum(r is None for r in results)} answered")


def run_hostile(url: str | None = None) -> list[dict]:
    demo, db = None, None
    if url is None:
        from ..policy import PUBLIC_LIMITS, Policy
        from ..ui import AppConfig

        db = _temp_db("convfill-hostile-")
        demo, url = _launch(AppConfig.from_env(db=db, preload_talker=True, live_judge=False,
                                               policy=Policy(public=True, limits=PUBLIC_LIMITS)))
    try:
        return [asdict(case) for case in run_cases(url, db)]
    finally:
        if demo is not None:
            demo.close()


def render(rows: list[dict]) -> str:
    lines = ["| case | verdict | what happened |", "|---|---|---|"]
    lines += [f"| {r['name']} | {r['verdict']} | {r['detail'].replace('|', '/')} |" for r in rows]
    return "\n".join(lines)
