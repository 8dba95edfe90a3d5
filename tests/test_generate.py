"""The synthetic data generator end to end through the real OpenAI SDK against a loopback server that
returns scripted good and bad scaffolds (and 429s), plus each validator on its own."""

import asyncio
import json

import pytest

from convfill.reasoners import get_reasoner
from training.gen_checks import (ParseError, check_diversity, check_fillers, check_generated, check_nli, check_spoken,
                                 check_structure, parse_response, to_convfill)
from training.gen_scaffold import make_spec
from training.generate import GenConfig, Generator

from provider_wire import ProviderServer, Reply

NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


def fill(spec, bad=None):
    """A correct answer to `spec`'s scaffold; `bad` injects one known flaw."""
    turns = []
    for ti, slots in enumerate(spec.schedule):
        out = []
        for si, s in enumerate(slots):
            n = NUMBERS[(ti * 6 + si) % len(NUMBERS)]
            if s == "sil":
                out.append({"type": "sil", "phrase": f"Hmm, let me think about that, part {n} of turn {NUMBERS[ti]}."})
            else:
                chunk = f"The museum opens at {n} in the morning on weekday {NUMBERS[ti]}."
                out.append({"type": "knowledge", "chunk": chunk,
                            "phrase": f"So the museum opens at {n} in the morning on weekday {NUMBERS[ti]}."})
        turns.append({"user": f"When does the museum open, question {NUMBERS[ti]}?", "slots": out})
    obj = {"turns": turns}
    first_k = next((t, i) for t, slots in enumerate(spec.schedule) for i, s in enumerate(slots) if s == "knowledge")
    if bad == "digits":
        obj["turns"][first_k[0]]["slots"][first_k[1]]["phrase"] = "It opens at 9 am."
    elif bad == "schedule":
        obj["turns"][0]["slots"] = obj["turns"][0]["slots"][:-1]
    return obj


CFG = dict(turns=2, min_sil=1, max_sil=2, min_chunks=2, max_chunks=3, mid_sil_prob=0.5, seed=7, nli_model="none")


def cfg(tmp_path, **kw):
    return GenConfig(out=str(tmp_path / "gen.jsonl"), **{**CFG, **kw})


# ------------------------------------------------------------------------------------------ validators
def test_specs_are_deterministic_and_follow_bounds(tmp_path):
    c = cfg(tmp_path, n=50, turns=3)
    specs = [make_spec(c, i) for i in range(50)]
    assert specs == [make_spec(c, i) for i in range(50)]
    for s in specs:
        for slots in s.schedule:
            lead = slots.index("knowledge")  # fillers before the first knowledge slot
            assert 1 <= lead <= 2 and 2 <= slots.count("knowledge") <= 3
    assert any("sil" in slots[slots.index("knowledge"):] for s in specs for slots in s.schedule)  # mid-turn


def test_parse_response_tolerates_fences_and_rejects_garbage():
    assert parse_response('Sure!\n```json\n{"turns": []}\n```') == {"turns": []}
    with pytest.raises(ParseError, match="no JSON"):
        parse_response("I cannot do that")
    with pytest.raises(ParseError, match="invalid JSON"):
        parse_response('{"turns": [}')


def test_structure_validator(tmp_path):
    spec = make_spec(cfg(tmp_path), 0)
    assert check_structure(fill(spec), spec) == []
    bad = check_structure(fill(spec, "schedule"), spec)
    assert bad and bad[0].validator == "structure" and "schedule" in bad[0].detail
    empty = fill(spec)
    empty["turns"][1]["slots"][-1]["phrase"] = "..."
    assert [r.detail for r in check_structure(empty, spec)] == ["empty phrase"]


def test_spoken_validator(tmp_path):
    spec = make_spec(cfg(tmp_path), 0)
    assert check_spoken(fill(spec)) == []
    assert "digits" in check_spoken(fill(spec, "digits"))[0].detail
    obj = fill(spec)
    obj["turns"][0]["user"] = "see **this** <|im_end|>"
    assert check_spoken(obj)[0].detail == "user holds control tokens"


def test_diversity_validator():
    slots = [{"type": "sil", "phrase": "Let me check."}] * 3
    assert check_diversity({"turns": [{"user": "x", "slots": slots}]})[0].validator == "diversity"
    assert check_diversity({"turns": [{"user": "x", "slots": slots[:2]}]}) == []


def test_filler_visibility_and_new_facts():
    turn = {"user": "When does the Louvre open?", "slots": [
        {"type": "sil", "phrase": "Let me check when the Louvre opens."},
        {"type": "knowledge", "chunk": "The Louvre opens at nine.", "phrase": "It opens at nine."}]}
    assert check_fillers({"turns": [turn]}) == []
    leak = json.loads(json.dumps(turn))
    leak["slots"][0]["phrase"] = "Checking, I think it is around nine."  # "nine" only in upcoming knowledge
    assert [r.validator for r in check_fillers({"turns": [leak]})] == ["visibility"]
    names = json.loads(json.dumps(turn))
    names["slots"][0]["phrase"] = "Sure, the famous Paris museum, let me look."
    assert "new_facts" in [r.validator for r in check_fillers({"turns": [names]})]


class TableJudge:
    """An honest fake NLI judge: fixed probabilities per hypothesis (the real one is convfill.nli.judge)."""

    def __init__(self, table, default=(0.8, 0.15, 0.05)):
        self.table, self.default, self.calls = table, default, []

    def predict(self, premises, hypotheses):
        self.calls.append(list(zip(premises, hypotheses)))
        out = []
        for h in hypotheses:
            e, n, c = self.table.get(h, self.default)
            out.append({"label": "x", "probs": {"entailment": e, "neutral": n, "contradiction": c}})
        return out


def test_nli_gate_contradiction_threshold_and_entailment_floor():
    turn = {"user": "When?", "slots": [
        {"type": "sil", "phrase": "Let me see."},
        {"type": "knowledge", "chunk": "It opens at nine.", "phrase": "It opens at nine."},
        {"type": "knowledge", "chunk": "It closes at six.", "phrase": "It closes at noon."},
        {"type": "knowledge", "chunk": "Tickets cost ten euros.", "phrase": "Tickets are cheap."}]}
    judge = TableJudge({"It closes at noon.": (0.05, 0.05, 0.9), "Tickets are cheap.": (0.3, 0.65, 0.05)})
    bad = check_nli({"turns": [turn]}, judge, max_contradiction=0.2, min_entailment=0.5)
    assert [(r.slot, r.validator) for r in bad] == [(2, "nli"), (3, "nli")]
    assert "contradicts" in bad[0].detail and "not entailed" in bad[1].detail
    # the workbench's premise rule: a knowledge phrase against its chunk + the turn's earlier phrases, a
    # filler against the user turn + them
    pairs = dict((h, p) for p, h in judge.calls[0])
    assert pairs["Let me see."] == "When?"
    assert pairs["It opens at nine."] == "It opens at nine. Let me see."
    assert pairs["Tickets are cheap."] == "Tickets cost ten euros. Let me see. It opens at nine. It closes at noon."
    # a lower floor accepts the vague phrase; the contradiction stays rejected
    assert len(check_nli({"turns": [turn]}, judge, 0.2, 0.2)) == 1


# --------------------------------------------------------------------------------------- end to end
def _gen(server, c, **kw):
    reasoner = get_reasoner("openai", base_url=server.url, model="scripted", max_retries=0,
                            system="gen", max_tokens=2048, temperature=0.5)
    sleeps = []

    async def fake_sleep(s):
        sleeps.append(s)

    return Generator(c, reasoner=reasoner, sleep=fake_sleep, progress=False, **kw), sleeps


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def test_end_to_end_good_bad_429_and_parse_correction(tmp_path):
    c = cfg(tmp_path, n=4, concurrency=1, max_attempts=2)
    specs = [make_spec(c, i) for i in range(4)]
    with ProviderServer("openai") as server:
        server.script(
            Reply(texts=[json.dumps(fill(specs[0]))]),                                     # 0: good
            Reply(texts=[json.dumps(fill(specs[1], "digits"))]),                            # 1: bad ...
            Reply(texts=[json.dumps(fill(specs[1], "digits"))]),                            #    ... twice
            Reply(status=429), Reply(status=429), Reply(texts=[json.dumps(fill(specs[2]))]),  # 2: 429s then good
            Reply(texts=["Here you go: {not json}"]),                                        # 3: parse error
            Reply(texts=["```json\n" + json.dumps(fill(specs[3])) + "\n```"]),               #    corrected
        )
        gen, sleeps = _gen(server, c)
        report = await gen.run()
        correction_request = server.requests[-1].body["messages"]
    out, rejects = _lines(tmp_path / "gen.jsonl"), _lines(tmp_path / "gen.rejects.jsonl")
    assert [o["id"] for o in out] == ["gen-000000", "gen-000002", "gen-000003"]
    assert out[0] == to_convfill(fill(specs[0]), specs[0])
    conv = out[0]["conversation"]
    assert all(len(t["thoughts"]) == len(t["response"]) for t in conv) and conv[0]["thoughts"][0] == "<sil>"
    assert rejects == [{"id": "gen-000001", "reasons": [
        {"validator": "spoken", "detail": rejects[0]["reasons"][0]["detail"], "turn": rejects[0]["reasons"][0]["turn"],
         "slot": rejects[0]["reasons"][0]["slot"]}]}]
    assert "digits" in rejects[0]["reasons"][0]["detail"]
    assert sleeps == [1.0, 2.0]  # exponential backoff on the two 429s, no crash
    assert report["accepted"] == 3 and report["rejected"] == 1 and report["acceptance_rate"] == 0.75
    assert report["corrections"] == 1 and report["rate_limit_waits"] == 2
    assert report["rejection_reasons"] == {"spoken": 1} and report["est_tokens_out"] > 0
    # the correction round-trip showed the model its own answer and the error
    assert correction_request[-2]["content"].startswith("Here you go") and "invalid JSON" in correction_request[-1]["content"]


async def test_killed_run_resumes_with_exactly_the_remaining_conversations(tmp_path):
    c = cfg(tmp_path, n=4, concurrency=1)
    specs = [make_spec(c, i) for i in range(4)]
    with ProviderServer("openai") as server:
        server.script(Reply(texts=[json.dumps(fill(specs[0]))]),
                      Reply(texts=[json.dumps(fill(specs[1]))], first_byte_s=30))  # hangs: we kill the run
        gen, _ = _gen(server, c)
        task = asyncio.create_task(gen.run())
        out = tmp_path / "gen.jsonl"
        while not (out.exists() and out.read_text().endswith("\n")):  # the first line whole, not just the file
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with (tmp_path / "gen.jsonl").open("a") as f:
            f.write('{"id": "gen-0000')  # a torn line, as if killed mid-write
        n_before = len(server.requests)
        server.replies.clear()
        server.script(*[Reply(texts=[json.dumps(fill(s))]) for s in specs[1:]])
        gen2, _ = _gen(server, c)
        report = await gen2.run()
        asked = len(server.requests) - n_before
    ids = [o["id"] for o in _lines(tmp_path / "gen.jsonl")]
    assert ids == ["gen-000000", "gen-000001", "gen-000002", "gen-000003"]
    assert asked == 3 and report["already_done"] == 1 and report["accepted"] == 3


async def test_check_generated_runs_nli_only_on_clean_conversations(tmp_path):
    c = cfg(tmp_path)
    spec = make_spec(c, 0)
    judge = TableJudge({})
    limits = c.max_contradiction, c.min_entailment
    assert check_generated(fill(spec, "digits"), spec, judge, *limits)[0].validator == "spoken" and judge.calls == []
    assert check_generated(fill(spec), spec, judge, *limits) == [] and len(judge.calls) == 1


def test_cli_help_documents_every_option():
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-m", "training.generate", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    for flag in ("--min-entailment", "--max-contradiction", "--concurrency", "--mid-sil-prob", "--reasoner"):
        assert flag in out.stdout
