"""ConvFill conversations -> labelled NLI pairs for the offline judge (training/nli_pairs.py)."""

import json
import random
from pathlib import Path

from convfill.nli.judge import premise_for
from training import nli_pairs
from training.nli_pairs import build, change_a_number, pairs_of

TINY = Path(__file__).parent / "data" / "convfill_tiny.jsonl"
TURN = {"user": "Who wrote Pride and Prejudice?",
        "thoughts": ["<sil>", "Pride and Prejudice was written by Jane Austen.", "It was published in 1813."],
        "response": ["Good question, let me think.", "That was Jane Austen.", "It came out in 1813."]}


def test_change_a_number_changes_exactly_one_number():
    rng = random.Random(0)
    for text in ("It came out in 1813.", "About twenty minutes, or 8,849 metres.", "Three or four times."):
        changed = change_a_number(text, rng)
        assert changed is not None and changed != text
        assert len(changed.split()) == len(text.split())  # one word swapped, nothing else touched
        assert sum(a != b for a, b in zip(changed.split(), text.split())) == 1
    assert change_a_number("No numbers here at all.", rng) is None
    assert change_a_number("Someone said it.", rng) is None  # "one" inside a word is not a number


def test_pairs_follow_the_workbench_premise_rule_and_label_by_kind():
    pairs = list(pairs_of([TURN], random.Random(0)))
    by_source = {}
    for p in pairs:
        by_source.setdefault(p["source"], []).append(p)
    filler, = by_source["convfill_filler"]
    assert filler["label"] == "neutral"
    assert filler["premise"] == premise_for(TURN["response"][0], user=TURN["user"], knowledge=None).premise
    knowledge = by_source["convfill_knowledge"]
    assert [p["label"] for p in knowledge] == ["entailment", "entailment"]
    # premise = the chunk + the phrases said before it in the turn
    assert knowledge[1]["premise"] == ("It was published in 1813. Good question, let me think. "
                                       "That was Jane Austen.")
    number, = by_source["convfill_number"]  # only the phrase with a number gets a contradiction
    assert number["label"] == "contradiction" and number["premise"] == knowledge[1]["premise"]
    assert "1813" not in number["hypothesis"] and number["hypothesis"].startswith("It came out in ")


def test_train_and_heldout_splits_are_disjoint_and_cover_everything(tmp_path):
    lines = [json.dumps({"conversation": [{**TURN, "user": f"Question number {i}?"}]}) for i in range(20)]
    f = tmp_path / "c.jsonl"
    f.write_text("\n".join(lines) + "\n")
    train, held = build([f]), build([f], heldout=True)
    users = lambda ps: {p["premise"] for p in ps if p["source"] == "convfill_filler"}  # noqa: E731
    assert users(train) and users(held) and not users(train) & users(held)
    assert len(users(train)) + len(users(held)) == 20


def test_cli_writes_jsonl_and_reports_counts(tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    assert nli_pairs.main([str(TINY), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert summary["pairs"] == len(rows) > 0
    assert {r["label"] for r in rows} == {"entailment", "neutral", "contradiction"}
    assert all(set(r) == {"premise", "hypothesis", "label", "source"} for r in rows)
    assert nli_pairs.main([str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
