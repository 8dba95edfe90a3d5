"""What a person sees: Debian chromium (via Playwright) drives the real app with the real GGUF Talker.

Selects the oracle Reasoner and types its knowledge in the page, sends a message, waits for the Talker's
words and the timeline SVG, then checks that Stop halts a long turn and that a new message barges in.
Screenshots land in the test's tmp dir. Needs /usr/bin/chromium (`.ci/run` installs it with apt).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from contextlib import closing
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KNOWLEDGE = "Jane Austen wrote Pride and Prejudice. It was first published in 1813."
LONG_KNOWLEDGE = " ".join(f"Fact number {w} is about the history of the English novel." for w in
                          ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))
TALKER_MSG = '#cf-chatbot [data-testid="bot"]:not(:has(.thought-group))'  # the Talker's (non-thought) messages

pytestmark = [pytest.mark.browser, pytest.mark.model]


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url():
    """The app as `app.py` builds it (env config, default Talker preloaded), on a free port."""
    from app import build_app
    from convfill.ui import AppConfig

    demo = build_app(AppConfig.from_env(preload_talker=True))
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    yield demo, url
    demo.close()


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian chromium is missing: apt-get install -y chromium (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1150})
        yield pg
        browser.close()


def _talker_text(page) -> str:
    return page.locator(TALKER_MSG).last.inner_text().strip()


def _send(page, text: str) -> float:
    """Type and send `text`; returns the page-clock time of the click (ms)."""
    page.fill("#cf-message textarea", text)
    t0 = page.evaluate("performance.now()")
    page.click("#cf-send")
    return t0


def _wait_talking(page, t0: float, n_talker_msgs: int) -> float:
    """ms from `t0` until the n-th Talker message shows words (polled every animation frame)."""
    return page.wait_for_function(
        """([sel, n, t0]) => {
             const msgs = document.querySelectorAll(sel);
             if (msgs.length < n) return false;
             const t = msgs[n - 1].innerText.trim();
             return t && t !== "…" ? performance.now() - t0 : false;
           }""", arg=[TALKER_MSG, n_talker_msgs, t0], polling="raf", timeout=60_000).json_value()


def _snapshot(page) -> tuple[str, str]:
    return page.locator("#cf-chatbot").inner_text(), page.locator("#cf-timeline").inner_html()


def _open_with_oracle(page, url: str, knowledge: str) -> None:
    """Open the app and choose the oracle Reasoner with `knowledge`, as a user would."""
    page.goto(url)
    page.wait_for_selector("#cf-send")
    page.locator("#cf-reasoner input").click()
    page.get_by_role("option", name="oracle").click()
    page.fill("#cf-knowledge textarea", knowledge)
    page.get_by_text("Engine settings").click()
    page.fill("#cf-turn_timeout_s input", "600")  # a busy CI CPU must not turn "done" into "timeout"


def test_chat_in_a_real_browser(app_url, page, tmp_path):
    demo, url = app_url
    _open_with_oracle(page, url, KNOWLEDGE)
    # shorter phrases keep the test quick on a busy CPU (an engine setting built from EngineConfig)
    page.fill("#cf-max_phrase_tokens input", "16")

    t0 = _send(page, "Who wrote Pride and Prejudice?")
    first_words_ms = _wait_talking(page, t0, 1)
    page.wait_for_selector('#cf-timeline svg .cf-turn-end[data-reason="done"]', timeout=120_000)
    chat, timeline = _snapshot(page)
    assert "Jane Austen wrote Pride and Prejudice." in chat  # the Reasoner's chunk, in its own message
    said = _talker_text(page)
    assert len(said.split()) >= 6 and "Reasoner knowledge" not in said
    svg = page.locator("#cf-timeline svg.cf-timeline")
    assert svg.locator('[data-lane="reasoner"]').count() == 1 and svg.locator('[data-lane="talker"]').count() == 1
    assert svg.locator(".cf-chunk").count() == 2
    assert svg.locator('.cf-phrase[data-source="sil"]').count() >= 1
    assert svg.locator('.cf-phrase[data-source="chunk"]').count() >= 1 and svg.locator(".cf-link").count() >= 1
    box = svg.bounding_box()
    assert box and box["width"] > 400 and box["height"] > 60  # really drawn, not just in the DOM
    # hover text of a knowledge phrase is the phrase the chat shows
    tip = svg.locator('.cf-phrase[data-source="chunk"] title').first.text_content()
    assert tip.split("\n", 1)[1].strip()[:20] in said
    assert "Talker TTFT" in page.locator("#cf-metrics").inner_text()
    page.screenshot(path=str(tmp_path / "turn_done.png"), full_page=True)

    # Stop on a long turn: updates halt, the turn ends "cancelled" and is stored
    page.fill("#cf-knowledge textarea", LONG_KNOWLEDGE)
    t1 = _send(page, "Tell me about the history of the novel.")
    _wait_talking(page, t1, 2)
    page.wait_for_selector('#cf-timeline svg .cf-phrase[data-source="chunk"]', timeout=60_000)
    t_stop = page.evaluate("performance.now()")
    page.click("#cf-stop")
    page.wait_for_selector('#cf-timeline svg .cf-turn-end[data-reason="cancelled"]', timeout=10_000)
    page.wait_for_function("sel => [...document.querySelectorAll(sel)].pop().innerText.includes('[cancelled]')",
                           arg=TALKER_MSG, polling="raf", timeout=10_000)
    stop_ms = page.evaluate("performance.now()") - t_stop
    before = _snapshot(page)
    time.sleep(1.5)
    page.screenshot(path=str(tmp_path / "stopped.png"), full_page=True)
    assert _snapshot(page) == before, "the page kept changing after Stop"

    # barge-in: a new message while a turn runs cancels it and answers the new one
    t2 = _send(page, "Tell me about the history of the novel again.")
    _wait_talking(page, t2, 3)
    page.fill("#cf-knowledge textarea", KNOWLEDGE)
    t3 = _send(page, "Who wrote Pride and Prejudice?")
    _wait_talking(page, t3, 4)
    page.wait_for_selector('#cf-timeline svg .cf-turn-end[data-reason="done"]', timeout=180_000)
    store = demo.convfill_store
    reasons = [r[0] for r in store.db.execute("select end_reason from turns order by started_at")]
    assert reasons == ["done", "cancelled", "cancelled", "done"]
    page.screenshot(path=str(tmp_path / "barge_in.png"), full_page=True)
    (tmp_path / "timings.json").write_text(json.dumps({"send_to_first_words_ms": first_words_ms,
                                                       "stop_to_cancelled_ms": stop_ms}))
    print(f"\nsend -> first Talker words visible: {first_words_ms:.0f} ms; stop -> cancelled shown: "
          f"{stop_ms:.0f} ms; screenshots in {tmp_path}")


def test_closing_the_tab_mid_turn_stops_and_keeps_the_turn(app_url, page):
    """A closed tab must not leave its turn talking (and a cloud Reasoner billing) in the background:
    the server cancels the turn when the page goes away, and the store keeps it, ended "cancelled"."""
    demo, url = app_url
    _open_with_oracle(page, url, LONG_KNOWLEDGE)
    _wait_talking(page, _send(page, "Tell me about the history of the novel."), 1)
    page.wait_for_selector('#cf-timeline svg .cf-phrase[data-source="chunk"]', timeout=60_000)
    page.close()
    store, deadline, reason = demo.convfill_store, time.monotonic() + 30, None
    while time.monotonic() < deadline:
        row = store.db.execute("select end_reason from turns").fetchone()
        if row and row[0] and row[0] != "incomplete":  # "incomplete": stored while it still runs
            reason = row[0]
            break
        time.sleep(0.2)
    # Ten knowledge chunks take far longer than the few seconds a cancellation needs on any CPU here.
    assert reason == "cancelled", f"turn after the tab closed: {reason!r}"
    phrases = [r[0] for r in store.db.execute("select text from phrases order by phrase_index")]
    assert phrases and phrases[0], "the phrases said before the tab closed were lost"


def _launch(run_history=None):
    from app import build_app
    from convfill.ui import AppConfig

    demo = build_app(AppConfig.from_env(preload_talker=True))
    demo.queue(default_concurrency_limit=None)
    kw = {} if run_history is None else {"run_history": run_history}
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True, **kw)
    return demo, url


def _turn_with_typed_key(page, url: str, server_url: str, key: str) -> dict:
    """A visitor picks the OpenAI Reasoner, types a Base URL and a key, and chats; returns browser storage."""
    page.goto(url)
    page.wait_for_selector("#cf-send")
    page.locator("#cf-reasoner input").click()
    page.get_by_role("option", name="openai").click()
    page.fill("#cf-base-url textarea", server_url)
    page.fill("#cf-api-key input", key)
    page.get_by_text("Engine settings").click()
    page.fill("#cf-max_phrase_tokens input", "12")
    page.fill("#cf-turn_timeout_s input", "600")
    _send(page, "Who wrote Pride and Prejudice?")
    page.wait_for_selector('#cf-timeline svg .cf-turn-end[data-reason="done"]', timeout=120_000)
    time.sleep(0.5)  # let the client finish whatever it writes after the last event
    return page.evaluate("""() => ({
        local: Object.keys(localStorage).map(k => k + "=" + localStorage.getItem(k)).join("\\n"),
        session: Object.keys(sessionStorage).map(k => k + "=" + sessionStorage.getItem(k)).join("\\n"),
        cookies: document.cookie })""")


def test_a_typed_api_key_never_reaches_browser_storage(page):
    """Gradio's run history copies every input into localStorage; the app turns it off. The control run
    with run history on shows the test would catch the key there."""
    from provider_wire import ProviderServer

    key = "sk-typed-in-the-browser-Secret0042"
    with ProviderServer("openai") as srv:
        demo, url = _launch()
        try:
            storage = _turn_with_typed_key(page, url, srv.url, key)
        finally:
            demo.close()
        assert srv.requests and srv.requests[0].headers.get("authorization") == f"Bearer {key}"  # it was used
        assert key not in json.dumps(storage), storage
        stored = demo.convfill_store.path.parent.glob(demo.convfill_store.path.name + "*")
        assert key.encode() not in b"".join(p.read_bytes() for p in stored)

        control, control_url = _launch(run_history=True)
        try:
            page.context.clear_cookies()
            leaked = _turn_with_typed_key(page, control_url, srv.url, key)
        finally:
            control.close()
    assert key in leaked["local"], "control: with Gradio's run history on, the key lands in localStorage"
