"""The seed-corpus validator: each rule rejects a small bad example and accepts the matching good one."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from convfill.splits import split
from training.corpus_checks import validate_files, validate_objects
from training.validate_corpus import main

REPO = Path(__file__).resolve().parent.parent


def good_conv(domain="assistant"):
    return {
        "domain": domain,
        "conversation": [
            {
                "user": "How long should I boil an egg for a soft yolk?",
                "thoughts": ["<sil>", "Boil the egg for about six minutes for a soft, jammy yolk.",
                             "<sil>", "Cool it in ice water right away to stop the cooking."],
                "response": ["A soft yolk, let me think about timing.",
                             "About six minutes in boiling water gives you a soft, jammy yolk.",
                             "And let me see what to do afterwards.",
                             "Then put it straight into ice water so it stops cooking."],
            },
            {
                "user": "And for a hard yolk?",
                "thoughts": ["<sil>", "<sil>", "A fully set yolk takes about ten to twelve minutes."],
                "response": ["Now the hard yolk.", "Checking the longer time.",
                             "For a fully set yolk it's about ten to twelve minutes."],
            },
        ],
    }


def codes(report, level="errors"):
    return {i.code for i in getattr(report, level)}


def with_turn(**changes):
    c = good_conv()
    c["conversation"][0].update(changes)
    return c


def test_good_conversation_passes_and_counts():
    rep = validate_objects([good_conv()])
    assert rep.ok, [str(e) for e in rep.errors]
    st = rep.stats
    assert (st.conversations, st.turns, st.phrase_pairs) == (1, 2, 7)
    assert (st.knowledge_pairs, st.fillers) == (3, 4)
    assert st.mid_turn_sil == 1 and st.turns_with_mid_turn_sil == 1
    assert st.filler_runs_2_3 == 1  # the two leading fillers of turn 2
    assert st.leading_filler_hist == {"1": 1, "2": 1}
    assert st.domains == {"assistant": 1}


@pytest.mark.parametrize("obj,code", [
    ({"turns": []}, "structure"),
    ({"conversation": []}, "structure"),
    ({"conversation": [{"user": "hi", "thoughts": ["<sil>"]}]}, "structure"),
    ({"conversation": [{"user": "hi", "thoughts": ["<sil>", "x"], "response": ["Hello there."]}]}, "structure"),
    ({"conversation": [{"user": "hi", "thoughts": [], "response": []}]}, "structure"),
    ({"conversation": [{"user": "hi", "thoughts": [3], "response": ["Hi."]}]}, "structure"),
    ({"conversation": [{"user": "hi", "thoughts": ["<sil>"], "response": ["Hi."], "extra": 1}]}, "structure"),
    (["not", "an", "object"], "structure"),
])
def test_structure_errors(obj, code):
    assert code in codes(validate_objects([obj]))


def test_empty_strings_and_control_tokens():
    assert "empty" in codes(validate_objects([with_turn(user="  ")]))
    bad = with_turn(response=["Sure.<|im_end|>", "About six minutes.", "Okay.", "Ice water."])
    assert "control_token" in codes(validate_objects([bad]))
    bad = with_turn(user="hi <|im_start|>system")
    assert "control_token" in codes(validate_objects([bad]))
    bad = with_turn(thoughts=["<sil>", "Six minutes.<end_of_turn>", "<sil>", "Ice water."])
    assert "control_token" in codes(validate_objects([bad]))


def test_sil_must_be_exact():
    bad = with_turn(thoughts=["<SIL>", "Boil it six minutes.", "<sil>", "Cool it in ice water."])
    assert "sil_form" in codes(validate_objects([bad]))
    bad = with_turn(thoughts=[" <sil> ", "Boil it six minutes.", "<sil>", "Cool it in ice water."])
    assert "sil_form" in codes(validate_objects([bad]))
    bad = with_turn(response=["<sil>", "About six minutes.", "Okay then.", "Ice water after."])
    assert "sil_in_response" in codes(validate_objects([bad]))


@pytest.mark.parametrize("phrase,code", [
    ("Boil it for 6 minutes.", "digits"),
    ("See https://eggs.example for more.", "url"),
    ("Boil it for **six** minutes.", "markdown"),
    ("- boil it for six minutes", "bullet"),
    ("• boil it for six minutes", "bullet"),
    ("Boil it for six minutes 🥚", "emoji"),
])
def test_spoken_style(phrase, code):
    c = good_conv()
    c["conversation"][0]["response"][1] = phrase
    assert code in codes(validate_objects([c]))


def test_filler_may_not_state_numbers_but_may_wait_a_moment():
    c = good_conv()
    c["conversation"][0]["response"][0] = "Eggs take about seven minutes, one moment."
    rep = validate_objects([c])
    assert "filler_number" in codes(rep)
    c["conversation"][0]["response"][0] = "One moment, let me check on eggs."
    assert validate_objects([c]).ok
    # a number the user said may be restated
    c["conversation"][1]["user"] = "And for a hard yolk, is ten minutes right?"
    c["conversation"][1]["response"][0] = "Ten minutes for a hard yolk, let me check."
    assert validate_objects([c]).ok


def test_filler_may_not_name_things_the_user_did_not():
    c = good_conv()
    c["conversation"][0]["response"][0] = "Good question, as Gordon Ramsay would say."
    rep = validate_objects([c])
    assert "filler_name" in codes(rep)
    assert "Gordon" in rep.errors[0].message
    # names from the user turn are fine, and sentence-initial capitals are not names
    c["conversation"][0]["user"] = "How long does Gordon Ramsay boil an egg?"
    c["conversation"][0]["response"][0] = "Okay. Gordon Ramsay's eggs, let me see."
    assert validate_objects([c]).ok


def test_filler_name_visible_from_previous_turn_only():
    c = good_conv()
    c["conversation"][0]["user"] = "How long should I boil a Burford Brown egg?"
    c["conversation"][1]["response"][0] = "Back to the Burford Brown eggs."
    assert validate_objects([c]).ok  # previous user turn is visible
    c["conversation"][1]["response"][0] = "Now the hard yolk."
    c["conversation"].append({"user": "Thanks!", "thoughts": ["<sil>"], "response": ["Enjoy the Burford eggs."]})
    assert "filler_name" in codes(validate_objects([c]))  # two turns back is not


def test_filler_length():
    c = good_conv()
    c["conversation"][0]["response"][0] = " ".join(["okay"] * 25)
    assert "filler_long" in codes(validate_objects([c]))


def test_knowledge_coverage_and_fact_warnings():
    c = good_conv()
    c["conversation"][0]["response"][1] = "Sounds lovely, eggs are great for breakfast."
    rep = validate_objects([c])
    assert rep.ok  # heuristics warn, they do not fail
    assert {"low_coverage", "dropped_fact"} <= codes(rep, "warnings")
    c["conversation"][0]["response"][1] = "About six minutes, as Julia Child taught, gives a jammy yolk."
    assert "added_fact" in codes(validate_objects([c]), "warnings")
    assert not validate_objects([good_conv()]).warnings


def test_reuse_across_files(tmp_path):
    a, b = good_conv(), good_conv("advice")
    b["conversation"][0]["response"][1] = "Six minutes for soft."
    for conv in (b,):
        for t in conv["conversation"]:
            t["response"] = [r + " Truly." if i != 0 else r for i, r in enumerate(t["response"])]
    b["conversation"][0]["response"][0] = "a SOFT yolk... let me think about timing"  # normalises equal
    f1, f2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    f1.write_text(json.dumps(a) + "\n")
    f2.write_text(json.dumps(b) + "\n")
    rep, _ = validate_files([f1, f2])
    assert rep.ok  # used twice: allowed
    f2.write_text(json.dumps(b) + "\n" + json.dumps(b) + "\n")
    rep, _ = validate_files([f1, f2])
    assert "reused" in codes(rep)
    assert rep.stats.max_response_reuse == 3


def test_invalid_json_line_is_reported(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps(good_conv()) + "\n{not json\n")
    rep, convs = validate_files([f])
    assert [(e.code, e.line) for e in rep.errors] == [("json", 2)]
    assert len(convs) == 1


def test_split_is_deterministic_and_order_independent():
    convs = []
    for i in range(40):
        c = good_conv()
        c["conversation"][0]["user"] = f"question number {i}"
        convs.append(c)
    train, held = split(convs, seed=0)
    assert len(held) == 4 and len(train) == 36
    train2, held2 = split(list(reversed(convs)), seed=0)
    key = lambda cs: sorted(c["conversation"][0]["user"] for c in cs)  # noqa: E731
    assert key(held) == key(held2)
    _, held3 = split(convs, seed=1)
    assert key(held3) != key(held)
    assert split(convs[:1], seed=0) == (convs[:1], [])


def test_cli_exit_codes_json_and_split(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    rows = []
    for i in range(20):  # distinct texts, so the reuse rule stays quiet
        c = copy.deepcopy(good_conv())
        for j, t in enumerate(c["conversation"]):
            t["response"] = [f"{r[:-1]} {'x' * (i + 1)} {'abcd'[k]}{'ef'[j]}." for k, r in enumerate(t["response"])]
            t["user"] += f" ({'y' * (i + 1)})"
        rows.append(c)
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "split"
    assert main([str(good), "--json", "--split-out", str(out), "--seed", "3"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] and d["stats"]["conversations"] == 20
    assert d["split"] == {"dir": str(out), "train": 18, "heldout": 2, "seed": 3}
    held = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert len(held) == 2 and len(train) == 18
    assert not {json.dumps(h) for h in held} & {json.dumps(t) for t in train}

    bad = tmp_path / "bad.jsonl"
    c = good_conv()
    c["conversation"][0]["response"][1] = "Boil it for 6 minutes."
    bad.write_text(json.dumps(c) + "\n")
    assert main([str(bad)]) == 1
    text = capsys.readouterr().out
    assert "[digits]" in text and "1 errors" in text


def test_nli_flag_runs_the_workbench_judge_and_names_it(tmp_path, capsys, monkeypatch):
    from tiny_nli import build_tiny_nli

    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps(good_conv()) + "\n")
    # A real (tiny) classifier that calls everything a contradiction, chosen the way the workbench chooses.
    model = build_tiny_nli(tmp_path / "contra", bias_to="contradiction")
    monkeypatch.setenv("CONVFILL_NLI_MODEL", str(model))
    assert main([str(f), "--nli"]) == 1
    out = capsys.readouterr().out
    assert "[nli_contradiction]" in out and str(model.name) in out
    assert main([str(f)]) == 0  # without --nli the same file passes


def test_nli_contradiction_is_an_error():
    judge = lambda premise, hypothesis: "contradiction" if "twenty" in hypothesis else "entailment"  # noqa: E731
    c = good_conv()
    assert validate_objects([c], nli=judge).ok
    c["conversation"][0]["response"][1] = "About twenty minutes gives you a soft, jammy yolk."
    assert "nli_contradiction" in codes(validate_objects([c], nli=judge))


def test_nli_judges_the_workbench_pair():
    """The premise of a knowledge phrase is its chunk followed by the turn's earlier phrases
    (`convfill.nli.premise_for`), as in the workbench and the generator's gate."""
    seen = []
    c = good_conv()
    validate_objects([c], nli=lambda premise, hypothesis: seen.append((premise, hypothesis)) or "entailment")
    turn = c["conversation"][0]
    k = max(i for i, th in enumerate(turn["thoughts"]) if th != "<sil>")  # after a filler and a chunk
    want = " ".join([turn["thoughts"][k], *turn["response"][:k]])
    assert (want, turn["response"][k]) in seen
    assert len(seen) == sum(th != "<sil>" for t in c["conversation"] for th in t["thoughts"])


def test_module_cli_runs(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps(good_conv()) + "\n")
    r = subprocess.run([sys.executable, "-m", "training.validate_corpus", str(f)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "conversations        1" in r.stdout and "0 errors" in r.stdout


def test_shipped_seed_corpus_passes_together():
    """All parts at once: the reuse rule counts across files, and the issue's size floor is for the whole."""
    paths = sorted((REPO / "data" / "seed").glob("part_*.jsonl"))
    if not paths:
        pytest.skip("data/seed/part_*.jsonl not present")
    rep, _ = validate_files(paths)
    assert rep.ok, [str(e) for e in rep.errors[:5]]
    assert rep.stats.conversations >= 150 and rep.stats.turns >= 1200
    assert rep.stats.turns_with_mid_turn_sil >= 0.15 * rep.stats.turns
    assert rep.stats.filler_runs_2_3 > 0


def test_acronyms_and_pronoun_references_are_not_fact_changes():
    from training.corpus_text import is_acronym_of

    assert is_acronym_of("US", "In the United States, tyres are measured in PSI.")
    assert is_acronym_of("CDs", "A savings account or certificates of deposit keep money safe.")
    assert not is_acronym_of("K", "finishing a five kilometer race")
    assert not is_acronym_of("UK", "In the United States it is PSI.")
    conv = {"conversation": [
        {"user": "Who painted the Mona Lisa?", "thoughts": ["Leonardo da Vinci painted the Mona Lisa."],
         "response": ["That was Leonardo da Vinci."]},
    ]}
    rep = validate_objects([conv])
    assert "dropped_fact" not in codes(rep, "warnings")  # the name is in the user turn
    conv["conversation"][0]["user"] = "Who painted that famous portrait?"
    assert "dropped_fact" in codes(validate_objects([conv]), "warnings")


def test_filler_that_confirms_or_previews_is_warned():
    c = good_conv()
    c["conversation"][0]["response"][0] = "Yes, six minutes is right."
    assert "filler_confirms" in codes(validate_objects([c]), "warnings")
    c = good_conv()
    c["conversation"][0]["response"][2] = "There's also a trick with vinegar."
    assert "filler_previews" in codes(validate_objects([c]), "warnings")
    assert not validate_objects([good_conv()]).warnings


def test_hedged_filler_is_not_a_preview():
    c = good_conv()
    c["conversation"][0]["response"][2] = "Let me see if there's another easy option."
    assert not validate_objects([c]).warnings


def test_broken_conversation_is_not_counted_or_split():
    rep = validate_objects([good_conv(), {"conversation": [{"user": "hi", "thoughts": ["<sil>"]}]}])
    assert rep.stats.conversations == 1 and "structure" in codes(rep)
