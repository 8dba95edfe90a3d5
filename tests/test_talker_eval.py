"""The Talker evaluation: scoring rules on hand-made phrases, the teacher-forced replay end to end with a
scripted Talker, the held-out split, the CLI, and one run of the real shipped GGUF."""

import asyncio
import json

import pytest

from convfill.errors import ConfigError
from convfill.prompt import PhraseContext
from convfill.testing import ScriptedTalker
from training.rules import numbers
from convfill.eval.talker import talker_under_test, main, compare_table, report, run_turns
from convfill.eval.talker_scores import key_facts, score_filler, score_knowledge, heldout_split, turn_slots
from convfill.talkers import TalkerSpec

CORPUS = [
    {"domain": "travel", "conversation": [
        {"user": "When does the Louvre open on Fridays?",
         "thoughts": ["<sil>", "The Louvre opens at nine in the morning and closes at nine forty-five on Fridays."],
         "response": ["Let me check the Friday hours for you.",
                      "On Fridays it opens at nine and stays open until nine forty-five at night."]},
        {"user": "And how much is a ticket?",
         "thoughts": ["<sil>", "<sil>", "A standard ticket to the Louvre costs twenty-two euros."],
         "response": ["Ticket prices, one moment.", "Still pulling that up.", "A standard ticket is twenty-two euros."]},
    ]},
    {"domain": "health", "conversation": [
        {"user": "How much water should I drink a day?",
         "thoughts": ["<sil>", "Many adults need about eight cups of water a day.", "<sil>",
                      "Needs rise with heat and exercise."],
         "response": ["Good question about water.", "Most adults need around eight cups a day.",
                      "Let me add one thing.", "You need more when it is hot or you exercise."]},
    ]},
]


# ------------------------------------------------------------------------------------------- scoring
def test_numbers_are_normalised_across_digits_and_words():
    assert numbers("It opens at 9.") == numbers("It opens at nine.") == {"9"}
    assert numbers("one thousand two hundred, 1,200") == {"1200"}
    assert numbers("in eighteen ninety-six") == numbers("in 1896") == {"1896"}
    assert numbers("one of them came second") == set()  # pronoun "one" and "second" are not facts


def test_knowledge_phrase_keeping_name_and_number_scores_full():
    chunk = "The Louvre opens at nine in the morning."
    f = key_facts(chunk)
    assert f.names == {"louvre"} and f.numbers == {"9"} and "morn" in f.words
    kept = score_knowledge(chunk, "So the Louvre opens at 9 in the morning.")
    assert kept["retention"] == 1.0 and kept["all_names_numbers"] is True
    dropped = score_knowledge(chunk, "It opens early, in the morning.")
    assert dropped["retention"] <= 0.5 and dropped["all_names_numbers"] is False
    assert dropped["missing"]["names"] == ["louvre"] and dropped["missing"]["numbers"] == ["9"]
    assert kept["retention"] > score_knowledge(chunk, "The Louvre opens in the morning.")["retention"] > \
        dropped["retention"]
    assert kept["added_names_numbers"] == []
    padded = score_knowledge(chunk, "The Louvre opens at nine, and the Orsay at ten.", visible="Is it open?")
    assert padded["retention"] < 1.0 and padded["added_names_numbers"] == ["Orsay", "10"]
    assert score_knowledge(chunk, "The Louvre opens at nine, like the Orsay.",
                           visible="Is it like the Orsay?")["added_names_numbers"] == []


def test_filler_naming_something_new_is_hallucination_and_checking_is_not():
    ctx = PhraseContext(user="When does the museum open?", prev_user="Hi", prev_reply="Hello there.")
    upcoming = ["The Louvre opens at nine in the morning."]
    ok = score_filler("Let me check on that.", ctx, upcoming)
    assert ok["hallucinated"] is False
    named = score_filler("The Louvre is lovely this time of year.", ctx, upcoming)
    assert named["hallucinated"] is True and named["new_names"] == ["Louvre"]
    number = score_filler("It usually opens at nine.", ctx, upcoming)
    assert number["hallucinated"] is True and number["new_numbers"] == ["9"]
    guessed = score_filler("I think it opens in the morning.", ctx, upcoming)
    assert guessed["hallucinated"] is False and guessed["leaked_words"] == ["morn"]  # "open" was in the question
    ctx2 = PhraseContext(user="What time can I visit the museum?")
    guessed = score_filler("I think it opens in the morning.", ctx2, upcoming)  # two words of the unseen answer
    assert guessed["hallucinated"] is True and guessed["guessed_knowledge"] is True
    assert guessed["leaked_words"] == ["morn", "open"]
    assert score_filler("I think it opens in the morning.", ctx2, upcoming, leak_min=3)["hallucinated"] is False


def test_filler_may_repeat_what_the_talker_already_knows():
    ctx = PhraseContext(user="Is the Louvre open on Friday?", earlier=("It opens at nine.",))
    s = score_filler("So the Louvre at nine on Friday, let me check the rest.", ctx,
                     ["The Louvre opens at nine on Fridays."])
    assert s == {"hallucinated": False, "new_names": [], "new_numbers": [], "guessed_knowledge": False,
                 "leaked_words": []}


# ------------------------------------------------------------------------------------- teacher forcing
def test_slots_are_teacher_forced_with_gold_earlier_and_previous_turn():
    turns = turn_slots(CORPUS)
    assert [len(t) for t in turns] == [2, 3, 4]
    second = turns[1][2].context
    assert second.earlier == ("Ticket prices, one moment.", "Still pulling that up.")
    assert second.prev_user == "When does the Louvre open on Fridays?"
    assert second.prev_reply == " ".join(CORPUS[0]["conversation"][0]["response"])
    assert second.knowledge.startswith("A standard ticket")
    assert turns[2][0].context.prev_user is None  # a new conversation has no previous turn
    assert turns[2][2].upcoming == ("Needs rise with heat and exercise.",)


def _run(script):
    talker = ScriptedTalker(script=script, first_token_s=0.0, per_token_s=0.0)
    turns = turn_slots(CORPUS)
    return talker, report(asyncio.run(run_turns(talker, turns)))


def test_end_to_end_repeating_knowledge_retains_everything():
    talker, r = _run(lambda ctx: ctx.knowledge or "Let me look into that for you.")
    assert (r["n_turns"], r["n_knowledge"], r["n_fillers"]) == (3, 4, 5)
    assert r["knowledge_retention"] == 1.0 and r["knowledge_all_names_numbers"] == 1.0
    assert r["filler_hallucination"] == 0.0
    assert r["ttft_ms"]["n"] == 9 and r["ttft_ms_p50"] is not None
    # the Talker really saw the teacher-forced contexts, in speaking order
    assert [c.earlier for c in talker.contexts[:2]] == [(), ("Let me check the Friday hours for you.",)]


def test_end_to_end_only_fillers_retains_nothing_and_inventive_fillers_are_caught():
    _, r = _run(lambda ctx: "Hmm, let me check on that.")
    assert r["knowledge_retention"] == 0.0 and r["knowledge_all_names_numbers"] == 0.0
    assert r["filler_hallucination"] == 0.0
    _, r = _run(lambda ctx: ctx.knowledge or "Paris has twelve museums, you know.")
    assert r["knowledge_retention"] == 1.0 and r["filler_hallucination"] == 1.0
    assert r["reference_gold"]["filler_hallucination"] == 0.0  # the gold fillers pass the same rules


# ----------------------------------------------------------------------------------------------- split
def test_split_is_deterministic_by_conversation_and_file_order_independent():
    convs = [{"conversation": [{"user": f"question {i}", "thoughts": ["<sil>"], "response": ["ok"]}]}
             for i in range(40)]
    train, held = heldout_split(convs, 0.1, seed=0)
    assert len(held) == 4 and len(train) == 36 and not any(c in train for c in held)
    assert heldout_split(convs[::-1], 0.1, seed=0)[1] == held[::-1]
    assert heldout_split(convs, 0.1, seed=1)[1] != held
    assert heldout_split(convs[:2], 0.1, seed=0)[1] != []  # at least one held out


def _conv(i):
    return {"conversation": [{"user": f"question {i}", "thoughts": ["<sil>"], "response": [f"ok {i}"]}]}


def test_cli_split_holds_out_the_same_conversations_of_a_file_alone_or_with_others(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(_conv(i)) + "\n" for i in range(10)))
    b.write_text("".join(json.dumps(_conv(i)) + "\n" for i in range(100, 130)) + "\n")
    assert main(["split", "--data", str(b), "--heldout", "0.1", "--seed", "0", "--out-dir", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["heldout"] == 3
    assert main(["split", "--data", str(a), str(b), "--heldout", "0.1", "--seed", "0",
                 "--out-dir", str(tmp_path / "ab")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train"], info["heldout"]) == (36, 4)
    held_b = (tmp_path / "b" / "heldout.jsonl").read_text().splitlines()
    held_ab = (tmp_path / "ab" / "heldout.jsonl").read_text().splitlines()
    train_ab = (tmp_path / "ab" / "train.jsonl").read_text().splitlines()
    assert set(held_b) < set(held_ab) and not set(held_b) & set(train_ab)


def test_cli_gold_run_writes_items(tmp_path, capsys):
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(c) + "\n" for c in CORPUS))
    out = tmp_path / "items.jsonl"
    assert main(["--data", str(a), "--talker", "gold", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["filler_hallucination"] == 0.0 and summary["n_turns"] == 3
    items = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(items) == 9 and {"context", "gold", "generated", "scores", "ttft_ms"} <= set(items[0])
    assert items[1]["context"]["earlier"] == ["Let me check the Friday hours for you."]


def test_rescore_recomputes_scores_of_a_stored_run(tmp_path, capsys):
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(c) + "\n" for c in CORPUS))
    items = tmp_path / "items.jsonl"
    assert main(["--data", str(a), "--talker", "gold", "--out", str(items)]) == 0
    capsys.readouterr()
    rows = [json.loads(x) for x in items.read_text().splitlines()]
    rows[0]["generated"] = "Paris has twelve museums."  # a filler that invents, scored as if generated
    rows[0]["scores"] = {}
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rescore", "--data", str(a), "--items", str(items), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["filler_hallucination"] == 0.2 and summary["knowledge_retention"] == \
        summary["reference_gold"]["knowledge_retention"]
    rows[1]["gold"] = "something else"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rescore", "--data", str(a), "--items", str(items)]) == 1
    assert "does not match the data" in capsys.readouterr().err


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": [{"user": "hi", "thoughts": ["<sil>"], "response": []}]}\n')
    assert main(["--data", str(bad), "--talker", "gold"]) == 1
    assert f"{bad}:1, turn 0: 1 thoughts but 0 responses" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing.jsonl")]) == 1
    assert "not found" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(CORPUS[0]) + "\n")
    assert main(["--data", str(good), "--lora", str(tmp_path / "none.gguf")]) == 1
    assert "LoRA adapter not found" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="bad Talker config"):
        TalkerSpec.parse("temperature=1")
    spec = TalkerSpec.parse("talker=llamacpp,lora=t.gguf,style=convfill", seed=3, threads=1)
    assert (spec.runtime, spec.lora, spec.style, spec.model, spec.seed, spec.threads) == \
        ("llamacpp", "t.gguf", "convfill", None, 3, 1)
    with pytest.raises(ConfigError, match="needs the llamacpp runtime"):
        talker_under_test(TalkerSpec.parse("talker=transformers,lora=" + str(good)), [])


def test_compare_prints_a_table_with_one_column_per_config(tmp_path, capsys):
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(c) + "\n" for c in CORPUS))
    assert main(["compare", "--data", str(a), "--config", "ref=talker=gold", "--config", "again=talker=gold"]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0]
    assert header.startswith("| metric | ref | again |")
    assert "| knowledge retention" in table and "| TTFT p50 (ms)" in table
    assert compare_table({}).startswith("| metric |")


# ------------------------------------------------------------------------------------------ real model
@pytest.mark.model
def test_real_gguf_prompted_base_on_three_turns():
    from convfill.talkers.llamacpp import LlamaCppTalker

    base = LlamaCppTalker(lora_path="none", temperature=0.0)  # the bare shipped base, not the seed adapter
    turns = turn_slots(CORPUS)
    items = asyncio.run(run_turns(base, turns[:3], max_tokens=24))
    r = report(items, base.describe())
    assert (r["n_turns"], r["n_knowledge"] + r["n_fillers"]) == (3, 9)
    assert all(it["generated"] for it in items)  # the base says something for every slot
    assert 0.0 <= r["knowledge_retention"] <= 1.0 and 0.0 <= r["filler_hallucination"] <= 1.0
    assert r["knowledge_retention"] > 0.2  # the prompted base does use the fact it is given
    assert r["ttft_ms"]["n"] == 9 and r["ttft_ms_p50"] > 0
    assert r["talker"]["style"] == "prompted"


def test_loaded_conversations_keep_every_key_so_the_split_does_not_move(tmp_path):
    from convfill.eval.talker_scores import load_eval_conversations
    from convfill.splits import split

    lines = [{"conversation": [{"user": f"q{i}", "thoughts": ["<sil>"], "response": ["Hm."]}], "domain": "d"}
             for i in range(30)]
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    got = load_eval_conversations([f])
    assert got == lines  # whole objects: the held-out split hashes them
    assert split(got, 0) == split(lines, 0)
