"""Text a visitor controls, at the edges where it used to break or leak: broken Unicode, Markdown that makes
every viewer's browser fetch a URL, and spreadsheet formulas in exports."""

from __future__ import annotations

import csv
import json

import pytest
from test_app import app  # noqa: F401 - a fixture

from convfill.untrusted import csv_cell, markdown_literal, valid_unicode

PIXEL = "![x](http://127.0.0.1:9/pixel.png)"


def test_lone_surrogates_become_one_replacement_character_each():
    assert valid_unicode("a\ud800b\U0001F600c\udfff") == "a\ufffdb\U0001F600c\ufffd"
    assert valid_unicode("x\ud83d\ude00y") == "x\U0001F600y"  # a split pair is the character it encodes
    assert valid_unicode("plain") == "plain"
    valid_unicode("a\ud800").encode("utf-8")  # no UnicodeEncodeError any more


def test_markdown_is_shown_as_the_characters_typed():
    import markdown_it

    for evil in (PIXEL, '<img src="http://127.0.0.1:9/p.png">', "[click](javascript:alert(1))"):
        html = markdown_it.MarkdownIt("commonmark").render(markdown_literal(evil))
        assert "<img" not in html and "<a " not in html, html
    assert markdown_literal("Jane Austen wrote it in 1813.") == "Jane Austen wrote it in 1813."  # as API clients see it


def test_formula_cells_are_neutralised():
    assert csv_cell('=HYPERLINK("http://evil","x")') == '\'=HYPERLINK("http://evil","x")'
    assert [csv_cell(v) for v in ("+1", "-2", "@SUM(A1)", "\tx", "ok", 3, None)] == \
        ["'+1", "'-2", "'@SUM(A1)", "'\tx", "ok", 3, None]


async def test_chat_view_never_renders_images_from_users_or_reasoners():
    from convfill.clock import FakeClock
    from convfill.engine import Engine
    from convfill.testing import ScriptedReasoner, ScriptedTalker, run_turn
    from convfill.ui.view import TurnView

    clock = FakeClock()
    engine = Engine(ScriptedTalker(clock=clock), ScriptedReasoner([f"Look {PIXEL} here."], delays=[0.5], clock=clock),
                    clock=clock)
    view = TurnView(f"hi {PIXEL}", "oracle")
    for ev in await run_turn(engine, f"hi {PIXEL}"):
        view.apply(ev)
    rendered = json.dumps(view.messages())
    assert "![x](" not in rendered and "!\\\\[x\\\\](" in rendered


def test_csv_export_neutralises_an_annotator_formula(tmp_path):
    from labeling.export import export_csv
    from labeling.store import LabelStore

    conv = {"conversation": [{"user": "=cmd|' /C calc'!A0", "thoughts": ["<sil>"], "response": ["Let me see."]}]}
    (tmp_path / "c.jsonl").write_text(json.dumps(conv) + "\n")
    store = LabelStore(tmp_path / "s.db")
    store.import_convfill(tmp_path / "c.jsonl")
    pid = next(iter(store.db["phrases"].rows))["id"]
    store.set_label(pid, "=HYPERLINK(\"http://evil\",\"x\")", "neutral", note="+1 from me")
    export_csv(store, tmp_path / "out.csv")
    (row,) = [r for r in csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")) if r["kind"] == "human"]
    assert row["who"].startswith("'=") and row["note"] == "'+1 from me" and row["user"].startswith("'=")


@pytest.mark.model
def test_broken_unicode_typed_in_the_app_loses_nothing(app):
    from test_app import TURN

    from convfill.eval.hostile import raw_chat

    demo, url = app
    turn = {k: v for k, v in TURN.items() if k != "api_name"}
    chat = raw_chat(url, "s1", message="Who wrote \ud800 Pride and Prejudice?", **turn)
    assert chat is not None and "\ufffd" in str(chat) and chat[-1]["content"]
    chat = raw_chat(url, "s1", message="And when?", **turn)  # the session still works afterwards
    assert len(chat) == 6 and chat[-1]["content"]
    turns = demo.convfill_store.db.execute("select user from turns order by started_at").fetchall()
    assert [t[0] for t in turns] == ["Who wrote \ufffd Pride and Prejudice?", "And when?"]


def test_exports_do_not_pile_up_in_temp_dirs(tmp_path, monkeypatch):
    import os
    import tempfile

    from labeling import ui

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    folder = ui.export_folder()
    old, fresh = folder / "convfill-labels-old.csv", folder / "convfill-labels-new.csv"
    old.write_text("x")
    fresh.write_text("y")
    os.utime(old, (1, 1))
    assert ui.export_folder() == folder and not old.exists() and fresh.exists()
