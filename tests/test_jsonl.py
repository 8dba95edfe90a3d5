"""The shared JSONL reader: line numbers, blank lines, and one clear error per kind of bad file."""

import pytest

from convfill.errors import ConfigError, InputError
from convfill.jsonl import read_jsonl


def test_yields_objects_with_their_line_numbers_and_skips_blank_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"a": 1}\n\n   \n[2, 3]\n"x"\n', encoding="utf-8")
    assert list(read_jsonl(f)) == [(1, {"a": 1}), (4, [2, 3]), (5, "x")]


def test_bad_json_names_file_and_line_in_the_callers_error_class(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not valid JSON"):
        list(read_jsonl(f, ConfigError))


def test_missing_file_and_non_utf8_text(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_jsonl(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="^QA data not found$"):
        list(read_jsonl(tmp_path / "nope.jsonl", ConfigError, "QA data not found"))
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin1.jsonl: not UTF-8"):
        list(read_jsonl(f))
