"""`python -m convfill.eval browser`: what a browser user waits for.

It launches the app in-process, drives Debian chromium through Playwright, and for each round sends
a question with the oracle Reasoner and records the time from the Send click to the first Talker words
visible on the page (polled every animation frame), next to the engine's own Talker TTFT for the same
turn (from the store). Their difference is what the UI adds (Gradio queue, streaming, rendering).
"""

from __future__ import annotations

import json
import os
import sys

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TALKER_MSG = '#cf-chatbot [data-testid="bot"]:not(:has(.thought-group))'
QUESTIONS = [("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice. It was published in 1813."),
             ("What is the capital of France?", "Paris is the capital of France. It lies on the Seine."),
             ("How far away is the Moon?", "The Moon is about 384,000 kilometres from Earth.")]


def cmd_browser(args) -> dict:
    from playwright.sync_api import sync_playwright

    from ..metrics import summarize
    from ..ui import AppConfig
    from .load import _launch

    demo, url = _launch(AppConfig.from_env(preload_talker=True, default_reasoner="oracle"))
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#cf-send")
            page.get_by_text("Engine settings").click()
            page.fill("#cf-max_phrase_tokens input", str(args.max_phrase_tokens))  # shorter turns, same TTFT
            for i in range(args.rounds):
                question, knowledge = QUESTIONS[i % len(QUESTIONS)]
                page.fill("#cf-knowledge textarea", knowledge)
                page.fill("#cf-message textarea", question)
                t0 = page.evaluate("performance.now()")
                page.click("#cf-send")
                visible = page.wait_for_function(
                    """([sel, n, t0]) => { const m = document.querySelectorAll(sel);
                         if (m.length < n) return false; const t = m[n - 1].innerText.trim();
                         return t && t !== "…" ? performance.now() - t0 : false; }""",
                    arg=[TALKER_MSG, i + 1, t0], polling="raf", timeout=120_000).json_value()
                page.wait_for_selector('#cf-timeline svg .cf-turn-end', timeout=180_000)
                ttft = demo.convfill_store.db.execute(
                    "select talker_ttft_ms from turns order by started_at desc limit 1").fetchone()[0]
                rows.append({"round": i, "send_to_first_words_ms": round(visible, 1), "talker_ttft_ms": ttft,
                             "ui_overhead_ms": round(visible - ttft, 1) if ttft is not None else None})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            browser.close()
    finally:
        demo.close()
    result = {"rounds": rows, "load_avg_1m": os.getloadavg()[0],
              **{k: summarize([r[k] for r in rows]) for k in ("send_to_first_words_ms", "talker_ttft_ms",
                                                               "ui_overhead_ms")}}
    return result if args.json else {**result, "_text": json.dumps(result, indent=2)}


def add_parser(sub) -> None:
    b = sub.add_parser("browser", help="in chromium: Send click -> first Talker words visible, per round")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--max-phrase-tokens", type=int, default=16)
    b.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable (Debian chromium)")
    b.add_argument("--json", action="store_true", help="one-line JSON")
    b.set_defaults(func=cmd_browser)
