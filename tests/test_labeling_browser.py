"""The Labeling tab in a real browser (Debian chromium via Playwright): keyboard labeling lands in SQLite,
undo works, the annotator name survives a reload, exports download, and the tab works without an NLI model."""

import json
import socket
import time
from pathlib import Path

import pytest
from test_labeling import CONV_A
from tiny_nli import build_tiny_nli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium: apt-get install chromium")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(store, **tab_kw):
    import gradio as gr

    from labeling.ui import build_labeling_tab

    with gr.Blocks(title="test") as demo:
        with gr.Tab("Chat"):
            gr.Markdown("chat lives here")
        with gr.Tab("Labeling"):
            build_labeling_tab(store, **tab_kw)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open_tab(page, url):
    page.goto(url)
    page.get_by_role("tab", name="Labeling").click()
    _wait_text(page, "#lab-progress", "All", timeout=60_000)
    _wait_text(page, "#lab-judge-status", "Checking", timeout=120_000, absent=True)


def _wait_text(page, selector, text, timeout=30_000, absent=False):
    """Wait until the element exists and its text contains (or, with absent, no longer contains) `text`."""
    page.wait_for_function(
        "([sel, text, absent]) => { const el = document.querySelector(sel);"
        " return !!el && el.innerText.includes(text) !== absent; }", arg=[selector, text, absent], timeout=timeout)


def _set_name(page, name):
    box = page.locator("#lab-annotator textarea, #lab-annotator input").first
    box.fill(name)
    box.press("Enter")
    _wait_text(page, "#lab-progress", f"You ({name})", timeout=30_000)
    page.locator("#lab-card").click()  # focus leaves the text box: keys now label


def _wait_labels(store, annotator, n, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = store.labels(annotator=annotator)
        if len(got) == n:
            return got
        time.sleep(0.1)
    return store.labels(annotator=annotator)


def test_keyboard_labeling_lands_in_the_database(tmp_path, browser, monkeypatch):
    from labeling.store import LabelStore

    model = build_tiny_nli(tmp_path / "tiny", bias_to="neutral")
    monkeypatch.setenv("CONVFILL_NLI_MODEL", str(model))  # what the tab's default loader reads
    store = LabelStore(tmp_path / "lab.db")
    (tmp_path / "c.jsonl").write_text(json.dumps(CONV_A) + "\n")
    store.import_convfill(tmp_path / "c.jsonl")
    first_two = store.queue(model_label=None, limit=2)
    store.set_label(first_two[0], "bob", "entailment")  # a second annotator, for the agreement panel
    store.set_label(first_two[1], "bob", "contradiction")
    demo, url = _launch(store)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 1300})
        _open_tab(page, url)
        assert str(model.resolve()) in page.inner_text("#lab-judge-status")
        page.locator("#lab-score").click()  # the tab runs the judge over the unscored phrases
        _wait_text(page, "#lab-judge-status", "Scored 5 phrases", timeout=60_000)
        assert store.db["suggestions"].count == 5
        queue = store.queue(annotator="ada")  # what the model called neutral (all 5 with this biased head)
        assert len(queue) == 5
        _wait_text(page, "#lab-progress", "3 in this queue")  # no name yet: phrases nobody labeled
        _set_name(page, "ada")
        _wait_text(page, "#lab-progress", "5 in this queue")  # ada's queue: bob's labels do not count
        first_text = store.item(queue[0])["text"]
        assert first_text in page.inner_text("#lab-card")
        # Three keys in quick succession: the page queues them while the server answers.
        for key in ["1", "3", "Enter"]:
            page.keyboard.press(key)
        got = _wait_labels(store, "ada", 3)
        assert {g["phrase_id"]: g["label"] for g in got} == {
            queue[0]: "entailment", queue[1]: "contradiction", queue[2]: "neutral"}  # Enter = the suggestion
        _wait_text(page, "#lab-progress", "(ada): 3 labeled", timeout=30_000)
        assert store.item(queue[3])["text"] in page.inner_text("#lab-card")
        page.screenshot(path=str(tmp_path / "labeling.png"), full_page=True)

        page.keyboard.press("u")  # undo the last label: phrase 3 is shown again, unlabeled
        _wait_text(page, "#lab-status", "Undid", timeout=30_000)
        assert {g["phrase_id"] for g in _wait_labels(store, "ada", 2)} == {queue[0], queue[1]}
        assert store.item(queue[2])["text"] in page.inner_text("#lab-card")
        assert [h["action"] for h in store.label_history(queue[2], "ada")] == ["set", "undo"]

        page.keyboard.press("s")  # skip: the next phrase comes, nothing is written
        _wait_text(page, "#lab-status", "Skipped", timeout=30_000)
        assert store.item(queue[3])["text"] in page.inner_text("#lab-card")
        assert len(store.labels(annotator="ada")) == 2

        # Typing in a text box never labels.
        page.locator("#lab-note textarea, #lab-note input").first.type("123")
        time.sleep(1.0)
        assert len(store.labels(annotator="ada")) == 2

        page.locator("#lab-export-jsonl").click()
        _wait_text(page, "#lab-download", ".jsonl")

        page.reload()  # the annotator name is remembered by the browser
        page.get_by_role("tab", name="Labeling").click()
        _wait_text(page, "#lab-progress", "You (ada): 2", timeout=60_000)
        box = page.locator("#lab-annotator textarea, #lab-annotator input").first
        assert box.input_value() == "ada"
        # ada and bob agree on both shared phrases: kappa 1.
        _wait_text(page, "#lab-agreement", "ada / bob")
        agreement = page.inner_text("#lab-agreement")
        assert "100%" in agreement and "1.000" in agreement
        page.screenshot(path=str(tmp_path / "labeling-after-reload.png"), full_page=True)
    finally:
        demo.close()
    assert (tmp_path / "labeling.png").stat().st_size > 10_000


def test_tab_without_nli_model_says_so_and_still_labels(tmp_path, browser):
    from convfill.nli.judge import load_judge
    from labeling.store import LabelStore

    store = LabelStore(tmp_path / "lab.db")
    (tmp_path / "c.jsonl").write_text(json.dumps(CONV_A) + "\n")
    store.import_convfill(tmp_path / "c.jsonl")
    demo, url = _launch(store, judge_loader=lambda: load_judge("some-org/not-in-cache-nli", fallback=False))
    try:
        page = browser.new_page()
        _open_tab(page, url)
        assert "No NLI model is available" in page.inner_text("#lab-judge-status")
        assert "5 in this queue" in page.inner_text("#lab-progress")  # unscored phrases are all shown
        page.locator("#lab-score").click()
        _wait_text(page, "#lab-judge-status", "hub is offline", timeout=30_000)
        _set_name(page, "bob")
        page.keyboard.press("Enter")  # no suggestion: nothing is written, the page says why
        _wait_text(page, "#lab-status", "No model suggestion", timeout=30_000)
        page.keyboard.press("2")
        got = _wait_labels(store, "bob", 1)
        assert [(g["phrase_id"], g["label"]) for g in got] == [(store.queue(model_label=None, annotated=None)[0],
                                                               "neutral")]
        assert store.db["suggestions"].count == 0
    finally:
        demo.close()


def test_opening_the_tab_shows_chat_turns_stored_since_the_page_loaded(browser, tmp_path):
    """In the real app: a chat turn while the page is open, then a click on the Labeling tab: its counts and
    queue include the new phrases without a reload (they used to read 0/0 until the page was reloaded)."""
    from convfill.testing import ScriptedTalker
    from app import build_app
    from convfill.ui import AppConfig
    from convfill.ui.session import DEFAULT_TALKER, ModelPool
    from gradio_client import Client

    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, ScriptedTalker(first_token_s=0.01, per_token_s=0.005))
    demo = build_app(AppConfig(db=str(tmp_path / "app.db"), live_judge=False), pool=pool)
    demo.queue(default_concurrency_limit=None)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        page = browser.new_page()
        _open_tab(page, f"http://127.0.0.1:{port}/")
        _wait_text(page, "#lab-progress", "/0 phrases")  # nothing stored yet
        page.get_by_role("tab", name="Chat").click()
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            message="Tell me about cats", reasoner="oracle", knowledge="Cats purr.", reasoner_delay_s=0.05,
            turn_timeout_s=60, api_name="/chat")
        n = demo.convfill_store.db.execute("select count(*) from phrases").fetchone()[0]
        assert n >= 2
        page.get_by_role("tab", name="Labeling").click()
        _wait_text(page, "#lab-progress", f"/{n} phrases")
        assert "Tell me about cats" in page.locator("#lab-card").inner_text()
    finally:
        demo.close()
