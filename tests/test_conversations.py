"""The ConvFill JSONL format has one checker; every tool that reads the format rejects the same lines alike."""

import json

import pytest

from convfill import conversations
from convfill.errors import InputError
from labeling.store import LabelStore
from training import data as D
from convfill.eval import talker_scores as talker_eval

GOOD = json.dumps({"conversation": [{"user": "a", "thoughts": ["<sil>", "Paris."], "response": ["Hm.", "Paris."]}]})

BAD = [
    ('{"conversation": [{"user": "hi", "thoughts": ["<sil>"], "response": []}]}', "1 thoughts but 0 responses"),
    ('{"conversation": [{"user": "hi", "thoughts": ["<sil>"]}]}', "turn 0: missing response"),
    ('{"conversation": []}', "has no turns"),
    ('{"turns": []}', 'expected an object with a "conversation" list'),
    ('[1, 2]', 'expected an object with a "conversation" list'),
    ('{"conversation": [{"user": "  ", "thoughts": [], "response": []}]}', '"user" must be a non-empty string'),
    ('{"conversation": [{"user": "hi", "thoughts": [1], "response": ["a"]}]}', "must be strings"),
    ('{"conversation": [{"user": "hi", "thoughts": "x", "response": ["a"]}]}', "must be lists"),
    ('{"conversation": [{"user": "hi", "thoughts": [], "response": []}, "oops"]}', "turn 1: expected an object"),
    ('{"conversation": [ nope', "not valid JSON"),
]


def _readers(tmp_path):
    """Each reader of the format, as (name, call, the error class its CLI reports)."""
    return [
        ("labeling import", lambda f: LabelStore(tmp_path / "s.db").import_convfill(f), InputError),
        ("training data", D.load_jsonl, D.DataError),
        ("talker eval", lambda f: talker_eval.load_eval_conversations([f]), talker_eval.EvalDataError),
    ]


@pytest.mark.parametrize("line, needle", BAD)
def test_every_reader_rejects_a_bad_line_naming_file_line_and_problem(tmp_path, line, needle):
    f = tmp_path / "bad.jsonl"
    f.write_text(GOOD + "\n\n" + line + "\n")
    messages = set()
    for name, read, error in _readers(tmp_path):
        with pytest.raises(error) as e:
            read(f)
        assert "bad.jsonl:3" in str(e.value) and needle in str(e.value), name
        messages.add(str(e.value))
    assert len(messages) == 1  # one checker: the same words from every tool


def test_good_file_reads_the_same_everywhere(tmp_path):
    f = tmp_path / "good.jsonl"
    f.write_text(GOOD + "\n" + GOOD.replace('"a"', '"b"') + "\n")
    assert [n for n, _ in conversations.read(f)] == [1, 2]
    assert [c.turns[0].user for c in D.load_jsonl(f)] == ["a", "b"]
    assert [c["conversation"][0]["user"] for c in talker_eval.load_eval_conversations([f])] == ["a", "b"]
    r = LabelStore(tmp_path / "s.db").import_convfill(f)
    assert (r.conversations, r.turns, r.phrases) == (2, 2, 4)


def test_parse_line_uses_the_callers_error_class():
    with pytest.raises(D.DataError, match="here: not valid JSON"):
        conversations.parse_line("{", "here", D.DataError)
    assert conversations.parse_line(GOOD)[0]["thoughts"] == ["<sil>", "Paris."]


@pytest.mark.parametrize("thought, sil", [("<sil>", True), (" <sil>\n", True), ("", True),
                                          ("<sil> Paris.", False), ("Paris.", False)])
def test_is_sil(thought, sil):
    assert conversations.is_sil(thought) is sil
