"""The evaluation harness on the tiny in-repo NQ sample: scripted parts on a fake clock (exact, instant),
a real tiny BERT NLI judge (random weights), and the real GGUF Talker end to end through the CLI."""

import json
from pathlib import Path

import pytest

from convfill.clock import FakeClock
from convfill.config import EngineConfig
from convfill.errors import ConfigError, ConvFillError, ReasonerError
from convfill.events import ChunkArrived, ErrorEvent, TurnEnded
from convfill.eval import cli
from convfill.eval.direct import reasoner_turn
from convfill.eval.entail import (LABELS, _as_judge, entail_judge, entail_table, normalize_label, phrase_pairs,
                                  run_entail)
from convfill.eval.normalize import answer_variants, match_answers, normalize_answer, spelled_numbers
from convfill.eval.qa import arun_qa, load_items, oracle_knowledge, sample_items
from convfill.eval.report import write_qa_report
from convfill.eval.ttft import Profile, arun_ttft
from convfill.metrics import turn_metrics
from convfill.reasoners.oracle import OracleReasoner
from convfill.testing import FILLERS, ScriptedReasoner, ScriptedTalker, of_type

TINY = Path(__file__).parent / "data" / "nq_tiny.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ normalisation
def test_normalize_answer_is_the_squad_rule():
    assert normalize_answer("  The U.S. Army,  an  Apple!  ") == "us army apple"
    assert normalize_answer("Theater of the Absurd") == "theater of absurd"  # 'the' only as a word
    assert normalize_answer("1,813") == "1813"


def test_match_is_on_word_boundaries_and_any_gold_counts():
    assert match_answers("I think it was Simon Callow, yes.", ["Simon Callow"]).correct
    assert not match_answers("Someone said so.", ["one"]).correct
    m = match_answers("The Houston Astros won it.", ["Houston Astros", "the Houston Astros"])
    assert m.correct and m.matched == "Houston Astros"
    assert not match_answers("It was 1996.", ["1995", "September 1995"]).correct


def test_number_words_match_digits_both_ways():
    assert {"eighteen thirteen", "one thousand eight hundred thirteen",
            "one thousand eight hundred and thirteen"} <= spelled_numbers(1813)
    assert "two thousand" in spelled_numbers(2000) and "twenty hundred" not in spelled_numbers(2000)
    assert "nineteen oh five" in spelled_numbers(1905)
    assert match_answers("It opened in nineteen ninety-five.", ["1995"]).correct
    assert match_answers("There will be 8 episodes.", ["eight"]).correct
    assert match_answers("Kentucky last won in twenty twelve.", ["2012"]).correct
    assert not match_answers("Kentucky last won in twenty eleven.", ["2012"]).correct
    assert "one season" in answer_variants("1 season")


# ------------------------------------------------------------------------------------------ data
def test_load_and_sample_items(tmp_path):
    items = load_items(TINY)
    assert len(items) == 8 and items[0].answers == ("Simon Callow",) and items[0].line == 1
    a, b = sample_items(items, 5, seed=3), sample_items(items, 5, seed=3)
    assert a == b and len(set(a)) == 5
    assert sample_items(items, 5, seed=4) != a
    assert len(sample_items(items, 100)) == 8
    assert oracle_knowledge(items[5]) == "The answer is Woodward, Oklahoma."
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": ["a"]}\n{"question": "no answers"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2"):
        load_items(bad)
    with pytest.raises(ConfigError, match="--data"):
        load_items(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------- QA, scripted parts
def scripted(clock, script=None):
    kw = {"script": script} if script else {}
    return ScriptedTalker(clock=clock, first_token_s=0.05, per_token_s=0.02, **kw)


async def test_qa_convfill_oracle_talker_that_repeats_knowledge_scores_one(tmp_path):
    clock = FakeClock()
    items = load_items(TINY)
    run = await arun_qa(items, "convfill", scripted(clock), OracleReasoner(first_chunk_s=0.5, clock=clock),
                        clock=clock, out_dir=tmp_path, progress=False)
    s = run.summary
    assert s["label"] == "convfill-oracle-0.5s"
    assert s["n"] == 8 and s["accuracy"] == 1.0
    assert s["ttft_ms_p50"] == s["ttft_ms_p95"] == 50.0  # the scripted Talker's first-token delay
    assert s["reasoner_first_chunk_ms_p50"] == 500.0
    assert s["end_reasons"] == {"done": 8}
    lines = [json.loads(x) for x in (tmp_path / "qa_convfill-oracle-0.5s.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    first = lines[0]
    assert first["correct"] and "The answer is" in first["reply"] and first["gold"]
    assert first["events"][-1]["type"] == "turn_ended"
    assert not any(e["type"] == "phrase_delta" for e in first["events"])
    assert first["metrics"]["n_knowledge_phrases"] == 1


async def test_qa_convfill_talker_that_ignores_knowledge_scores_zero(tmp_path):
    clock = FakeClock()
    deaf = lambda ctx: FILLERS[len(ctx.earlier) % len(FILLERS)]  # never says the knowledge
    run = await arun_qa(load_items(TINY), "convfill", scripted(clock, deaf),
                        OracleReasoner(first_chunk_s=0.5, clock=clock), clock=clock, progress=False)
    assert run.summary["accuracy"] == 0.0 and run.summary["correct"] == 0
    assert all(r.metrics.n_knowledge_phrases == 1 for r in run.records)  # it was given the answer


async def test_qa_talker_mode_has_no_reasoner_and_only_fillers():
    clock = FakeClock()
    cfg = EngineConfig(max_fillers=2)
    run = await arun_qa(load_items(TINY)[:3], "talker", scripted(clock), OracleReasoner(clock=clock), cfg,
                        clock=clock, progress=False)
    assert run.summary["label"] == "talker" and run.summary["reasoner"] is None
    assert run.summary["accuracy"] == 0.0 and run.summary["fillers_mean"] == 2
    assert all(not of_type(r.events, ChunkArrived) for r in run.records)


async def test_qa_reasoner_mode_ttft_is_the_oracle_first_chunk_delay():
    clock = FakeClock()
    run = await arun_qa(load_items(TINY)[:4], "reasoner", None, OracleReasoner(first_chunk_s=1.5, clock=clock),
                        clock=clock, progress=False)
    s = run.summary
    assert s["label"] == "reasoner-oracle-1.5s" and s["talker"] is None
    assert s["accuracy"] == 1.0 and s["ttft_ms_p50"] == 1500.0 and s["first_knowledge_phrase_ms_p50"] == 1500.0
    assert run.records[0].reply == oracle_knowledge(load_items(TINY)[0])


async def test_reasoner_turn_records_a_failing_reasoner_as_an_error_turn():
    clock = FakeClock()
    dead = ScriptedReasoner(["Half an answer."], 0.2, error=ReasonerError("rate limited", "rate_limit"), clock=clock)
    events = await reasoner_turn(dead, "who?", clock)
    assert isinstance(events[-1], TurnEnded) and events[-1].reason == "error"
    assert of_type(events, ErrorEvent)[0].category == "rate_limit"
    assert events[-1].reply == "Half an answer."
    m = turn_metrics(events)
    assert m.talker_ttft_ms == 200.0 and m.reasoner_first_chunk_ms == 200.0 and m.chunk_to_phrase_lag_ms is None


async def test_modes_check_their_parts():
    with pytest.raises(ConfigError, match="needs a Reasoner"):
        await arun_qa(load_items(TINY)[:1], "convfill", scripted(FakeClock()), None, progress=False)
    with pytest.raises(ConfigError, match="Unknown mode"):
        await arun_qa(load_items(TINY)[:1], "both", scripted(FakeClock()), None, progress=False)


async def test_qa_report_accumulates_runs_into_one_table_and_plots(tmp_path):
    clock = FakeClock()
    items = load_items(TINY)[:4]
    await arun_qa(items, "convfill", scripted(clock), OracleReasoner(first_chunk_s=0.5, clock=clock),
                  clock=clock, out_dir=tmp_path, progress=False)
    await arun_qa(items, "talker", scripted(clock), None, clock=clock, out_dir=tmp_path, progress=False)
    paths = write_qa_report(tmp_path)
    md = paths["markdown"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 2
    assert any(r.startswith("| convfill-oracle-0.5s | convfill | oracle | 4 | 100.0% | 50 |") for r in rows)
    assert any(r.startswith("| talker | talker | – | 4 | 0.0% |") for r in rows)
    for key in ("accuracy_png", "ttft_png"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC


# ------------------------------------------------------------------------------------------- TTFT
async def test_ttft_table_per_profile(tmp_path):
    clock = FakeClock()
    talker = scripted(clock)
    profiles = [Profile.parse("oracle:0.5"), Profile.parse("oracle:2")]
    factory = lambda p: OracleReasoner(first_chunk_s=p.delay_s, clock=clock)
    s = await arun_ttft(load_items(TINY)[:5], talker, profiles, tmp_path, clock=clock, reasoner_factory=factory,
                        progress=False)
    by = {p["profile"]: p for p in s["profiles"]}
    assert list(by) == ["oracle:0.5s", "oracle:2s"]
    assert by["oracle:2s"]["reasoner_alone_first_token_ms"]["p50"] == 2000.0
    assert by["oracle:0.5s"]["reasoner_alone_first_token_ms"]["mean"] == 500.0
    for p in by.values():
        assert p["talker_ttft_ms"]["p95"] == 50.0 and p["talker_ttft_ms"]["n"] == 5
        assert p["first_knowledge_phrase_ms"]["p50"] > p["reasoner_alone_first_token_ms"]["p50"]
    md = (tmp_path / "ttft.md").read_text()
    assert "| oracle:2s | Reasoner alone, first token | 5 | 2,000 ± 0 | 2,000 | 2,000 |" in md
    assert (tmp_path / "ttft.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "qa_ttft_reasoner-oracle-2s.jsonl").exists()
    with pytest.raises(ConfigError, match="NAME:SECONDS"):
        Profile.parse("oracle:soon")


# ----------------------------------------------------------------------------------- entailment
@pytest.fixture(scope="module")
def tiny_nli_dir(tmp_path_factory):
    """A real BERT sequence classifier (random weights) + a real WordPiece tokenizer, on disk; its labels
    are in an order of their own, so the table must map them through `id2label`."""
    from tiny_nli import build_tiny_nli

    return build_tiny_nli(tmp_path_factory.mktemp("nli") / "tiny",
                          id2label={0: "CONTRADICTION", 1: "ENTAILMENT", 2: "NEUTRAL"})


def _tiny_judge(path):
    from convfill.nli.judge import NLIJudge

    return _as_judge(NLIJudge(str(path), batch_size=4))


async def test_phrase_pairs_follow_the_paper_premises():
    clock = FakeClock()
    run = await arun_qa(load_items(TINY)[:1], "convfill", scripted(clock),
                        OracleReasoner(first_chunk_s=0.5, clock=clock), clock=clock, progress=False)
    pairs = phrase_pairs(run.records[0].events)
    assert [p.kind for p in pairs] == ["filler", "knowledge"]
    filler, knowledge = pairs
    assert filler.premise == "who played gareth in four weddings and a funeral"
    assert filler.hypothesis == FILLERS[0]
    assert knowledge.premise == f"The answer is Simon Callow. {FILLERS[0]}"
    assert knowledge.hypothesis == "So, The answer is Simon Callow."


async def test_entail_table_with_a_real_tiny_bert_judge(tmp_path, tiny_nli_dir):
    clock = FakeClock()
    run = await arun_qa(load_items(TINY), "convfill", scripted(clock), OracleReasoner(first_chunk_s=0.5, clock=clock),
                        clock=clock, out_dir=tmp_path, progress=False)
    judge = _tiny_judge(tiny_nli_dir)
    s = run_entail([r.events for r in run.records], judge, tmp_path)
    t = s["table"]
    assert set(t) == {"knowledge", "filler", "all"}
    assert t["knowledge"]["n"] == 8 and t["filler"]["n"] == 8 and t["all"]["n"] == 16
    for row in t.values():
        assert sum(row[lab] for lab in LABELS) == pytest.approx(100.0, abs=0.05)
    pairs = [json.loads(x) for x in (tmp_path / "entail_pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 16 and {p["label"] for p in pairs} <= set(LABELS)
    md = (tmp_path / "entail.md").read_text()
    assert "| phrases | n | E % | N % | C % |" in md and "| knowledge | 8 |" in md
    assert (tmp_path / "entail.png").read_bytes()[:8] == PNG_MAGIC
    # the same judge also comes back from the per-item JSONL the qa run wrote
    from convfill.eval.entail import load_turns
    again = run_entail(load_turns([tmp_path / "qa_convfill-oracle-0.5s.jsonl"]), judge)
    assert again["table"] == t


def test_entail_table_counts_and_labels():
    from convfill.eval.entail import PhrasePair

    pairs = [PhrasePair("knowledge", "p", "h")] * 3 + [PhrasePair("filler", "p", "h")]
    t = entail_table(pairs, ["E", "entailment", "CONTRADICTION", "neutral"])
    assert t["knowledge"] == {"n": 3, "entailment": 66.67, "neutral": 0.0, "contradiction": 33.33}
    assert t["filler"]["neutral"] == 100.0
    assert normalize_label("Entails") == "entailment"
    with pytest.raises(ValueError):
        normalize_label("maybe")
    with pytest.raises(ConvFillError, match="3 labels for 4"):
        entail_table(pairs, ["E"] * 3)


def test_a_named_judge_that_cannot_load_is_an_error_not_a_silent_fallback(tmp_path):
    # The workbench falls back to the offline judge; a table that names its judge must not.
    with pytest.raises(ConfigError, match="No NLI judge.*nope"):
        entail_judge(str(tmp_path / "nope"))


# -------------------------------------------------------------------------------------------- CLI
def test_cli_missing_data_is_one_clear_line(tmp_path, capsys):
    rc = cli.main(["qa", "--data", str(tmp_path / "nope.jsonl"), "--n", "2", "--json"])
    err = capsys.readouterr().err
    assert rc == 1 and "QA data not found" in err and "--data" in err


def test_cli_entail_from_records_with_a_local_judge_model(tmp_path, capsys, tiny_nli_dir):
    import asyncio

    clock = FakeClock()
    asyncio.run(arun_qa(load_items(TINY)[:3], "convfill", scripted(clock),
                        OracleReasoner(first_chunk_s=0.5, clock=clock), clock=clock, out_dir=tmp_path,
                        progress=False))
    rc = cli.main(["entail", "--records", str(tmp_path / "qa_convfill-oracle-0.5s.jsonl"), "--judge-model",
                   str(tiny_nli_dir), "--out", str(tmp_path / "e"), "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["n_phrases"] == 6 and out["table"]["all"]["n"] == 6
    # the table says which judge made it: the named one, not a fallback
    assert out["judge_model"] == str(Path(tiny_nli_dir).resolve())
    assert f"judge: `{out['judge_model']}`" in (tmp_path / "e" / "entail.md").read_text()


@pytest.mark.model
def test_cli_qa_real_gguf_talker_with_oracle_end_to_end(tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc = cli.main(["qa", "--data", str(TINY), "--n", "3", "--seed", "1", "--out", str(out_dir), "--json",
                   "--no-progress", "--reasoner-delay", "0.2", "--max-fillers", "1", "--max-phrase-tokens", "24"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n"] == 3 and 0.0 <= s["accuracy"] <= 1.0 and s["talker"]["runtime"] == "llamacpp"
    assert s["ttft_ms_p50"] > 0 and s["ttft_ms_p95"] >= s["ttft_ms_p50"]
    records = [json.loads(x) for x in Path(s["items_file"]).read_text().splitlines()]
    assert len(records) == 3
    for r in records:
        assert r["events"][-1]["type"] == "turn_ended" and r["events"][-1]["reason"] == "done"
        assert r["metrics"]["n_knowledge_phrases"] >= 1 and r["reply"]
        assert r["correct"] == match_answers(r["reply"], r["gold"]).correct
    md = (out_dir / "qa.md").read_text()
    assert "| convfill-oracle-0.2s | convfill | oracle | 3 |" in md


def test_judge_objects_with_predict_and_label_verdicts_are_accepted(tiny_nli_dir):
    from dataclasses import dataclass

    @dataclass
    class Verdict:  # the shape of convfill.nli.judge's Suggestion
        label: str

    inner = _tiny_judge(tiny_nli_dir)

    class ObjectJudge:
        def predict(self, premises, hypotheses):
            return [Verdict(x.upper()) for x in inner(premises, hypotheses)]

    premises, hyps = ["the answer is simon callow"] * 2, ["simon callow", "let me check"]
    assert _as_judge(ObjectJudge())(premises, hyps) == inner(premises, hyps)
    with pytest.raises(ConvFillError, match="not an NLI judge"):
        _as_judge(42)
