"""Filler naturalness (issue 22): the metric functions on hand-made inputs, and the real Talker's filler
sampling (seeded, steered away from what was just said, knowledge phrases untouched)."""

import threading

import pytest

from convfill.eval.naturalness import (
    SpokenTurn,
    distinct_n2,
    drops_name,
    filler_facts,
    name_runs,
    summarize_naturalness,
)
from convfill.prompt import PhraseContext
from convfill.talkers import fillers
from convfill.talkers.fillers import (
    ECHO,
    FillerSteer,
    VocabIndex,
    filler_template,
    phrase_seed,
    recent_templates,
    template_head,
)


# ------------------------------------------------------------------------------------------- template
@pytest.mark.parametrize("filler, user, want", [
    ("The first paper money, let me check.", "Where was the first paper money made?", "let me check"),
    ("Abe Carver, let me see.", "who plays abe carver on days of our lives", "let me see"),
    ("The United States, let me check.", "which country has the most nobel prizes in the united states",
     "let me check"),
    # the user's words inside the rest become "_": one template whatever is being counted
    ("Star Wars, let me count the seasons.", "how many seasons of star wars are there", "let me count the _"),
    ("UVA versus UVB.", "What's the difference between UVA and UVB?", ECHO),
    ("Hmm, give me a second.", "Who won?", "hmm give me a second"),
    # an echo only counts at the start: a later clause about the topic is kept
    ("Let me check, the first paper money.", "Where was the first paper money made?",
     "let me check the _ _ _"),
    # the previous user turn counts as what the user said (a follow-up echoes the topic)
    ("Her novels, one moment.", "And the others?", "one moment"),
])
def test_filler_template(filler, user, want):
    prev = "Which novels did Jane Austen write?"
    assert filler_template(filler, user, prev) == want


def test_template_head_and_case_punctuation():
    assert filler_template("THE DOME — Let me check!!", "when was the dome built") == "let me check"
    assert template_head("let me check the date") == "let me check"


def test_distinct_2():
    assert distinct_n2(["let me check", "let me check"]) == 0.5          # 2 distinct of 4
    assert distinct_n2(["let me check", "one moment please"]) == 1.0
    assert distinct_n2(["Hmm.", "Okay."]) is None                         # no bigram at all
    # bigrams never span two fillers: "check one" is not a bigram here
    assert distinct_n2(["let me check", "one moment"]) == 1.0


# ------------------------------------------------------------------------------------------- facts
def test_filler_stating_facts():
    user = "Who wrote Pride and Prejudice?"
    chunks = ["Jane Austen wrote Pride and Prejudice.", "It was published in 1813."]
    assert not filler_facts("Pride and Prejudice, let me check.", user, [], None, None, chunks)["hallucinated"]
    new_name = filler_facts("Pride and Prejudice, by Austen I think.", user, [], None, None, chunks)
    assert new_name["hallucinated"] and new_name["new_names"] == ["Austen"]
    number = filler_facts("Pride and Prejudice, from eighteen thirteen.", user, [], None, None, chunks)
    assert number["hallucinated"] and number["new_numbers"] == ["1813"]
    # a name the listener heard in the previous turn is not new
    assert not filler_facts("Another one from Austen, let me check.", "What else did she write?", [],
                            user, "Jane Austen wrote it.", chunks)["hallucinated"]
    # two content words only the unseen knowledge holds: a guessed answer
    guess = filler_facts("That novel was published early, let me check.", "When did it come out?", [],
                         None, None, ["The novel was published early in 1813."])
    assert guess["hallucinated"] and guess["guessed_knowledge"]


def test_knowledge_phrase_dropping_a_name():
    chunk = "Raúl Esparza left Law and Order in 2018."
    assert name_runs(chunk) == [("raúl", "esparza"), ("law",), ("order",)]
    assert drops_name("He left Law and Order in 2018.", [chunk], "Who left Law and Order SVU?") == ["raúl esparza"]
    assert drops_name("Raúl Esparza left the show in 2018.", [chunk], "who left svu") == []   # said
    assert drops_name("He left in 2018.", [chunk], "Did Esparza leave Law and Order?") == []   # user said it
    assert drops_name("The actor left the show in 2018.", [chunk], "who left svu") == []       # no pronoun
    # a sentence-initial function word is not a name; "It" is not a personal pronoun
    assert name_runs("The Beatles formed in Liverpool.") == [("beatles",), ("liverpool",)]
    assert drops_name("It was in 1962.", ["The Beatles signed in 1962."], "When did they sign?") == []


def test_summary_counts_runs_and_top_template():
    def turn(user, filler):
        return SpokenTurn(user, [("sil", filler, None), ("chunk", "It is so.", 0)], ["It is so."])

    same = [turn(f"Tell me about topic{i}?", f"Topic{i}, let me check.") for i in range(3)]
    varied = [turn("Tell me about cats?", "Cats, let me check."), turn("And dogs?", "Dogs, one moment."),
              turn("And birds?", "Hmm, birds.")]
    s = summarize_naturalness([same, varied])
    assert s["top_template"] == "let me check" and s["top_template_share"] == round(4 / 6, 4)
    assert s["template_runs_3"] == 1 and s["max_template_run"] == 3
    assert s["template_repeats_2_share"] == 0.5  # 2 of the 4 turn pairs repeat the previous template
    assert s["filler_states_facts"] == 0.0 and s["knowledge_drops_name"] == 0.0
    # pure restatements are reported apart: not the top template, but counted by the strict variant
    echoes = [turn("What is UVA?", "UVA."), turn("And UVB?", "UVB."), turn("And UVC?", "UVC."),
              turn("Tell me about cats?", "Cats, hmm.")]
    e = summarize_naturalness([echoes])
    assert e["echo_share"] == 0.75 and e["top_template"] == "hmm" and e["top_template_share"] == 0.25
    assert e["top_template_share_strict"] == 0.75 and e["template_runs_3"] == 0 and e["template_runs_3_strict"] == 1


# ------------------------------------------------------------------------------------------- steering
def test_recent_templates_and_steer_ban_the_completion():
    banned = recent_templates("And the second one?", earlier=(), prev_user="Where was paper money first made?",
                              prev_reply="Paper money, let me check. It was made in China.")
    assert ["let", "me", "check"] in banned and ["paper", "money"] not in banned
    vocab = VocabIndex(["Let", " let", " me", " check", " ch", " see", ",", "Hmm", " hmm", "7", " 12"])
    steer = FillerSteer(banned + [["hmm"]], vocab)
    ids = set(steer.banned_ids("The second one, let me"))
    assert {3, 4} <= ids and 5 not in ids          # " check" and " ch" banned, " see" allowed
    assert {9, 10} <= ids                           # digits are always banned in fillers
    assert 3 not in steer.banned_ids("The second one, let")   # nothing to complete yet
    assert 8 in steer.banned_ids("The second one,")           # one-word ending at a clause start
    assert 7 in steer.banned_ids("")                          # ... and at the phrase start
    # digits the listener heard may be echoed ("Season 5" when the user said it); others stay banned
    heard = FillerSteer([], vocab, heard_digits=["5", "2013"])
    assert 9 in heard.banned_ids("Season") and 10 in heard.banned_ids("Season")
    assert 10 not in FillerSteer([], vocab, heard_digits=["2012"]).banned_ids("Season")
    plan = fillers.plan_for(PhraseContext("What happened in season 5?"), "p", fillers.DEFAULT)
    assert plan.heard_digits == ("5",)
    # a capitalised word nobody said is a name the filler would invent: " Nu" only if a heard word starts so
    names = VocabIndex([" Nu", " Nue", " Paris", " The", " I", " nu"])
    steer = FillerSteer([], names, heard_words={"nuestra", "senora"})
    assert set(steer.banned_ids("Mission")) == {2}          # " Paris" banned; " The", " I", lower case kept


def test_phrase_seed_is_a_stable_hash():
    assert phrase_seed("abc", 0) == phrase_seed("abc", 0)
    assert len({phrase_seed("abc", 0), phrase_seed("abd", 0), phrase_seed("abc", 1)}) == 3
    assert 0 <= phrase_seed("x") < 2 ** 31


def test_resolve_and_plans(monkeypatch):
    assert fillers.resolve("auto") is fillers.DEFAULT
    monkeypatch.setenv(fillers.ENV, "off")
    assert fillers.resolve("auto") is None and fillers.resolve("on") is fillers.DEFAULT
    ctx = PhraseContext("Who wrote Hamlet?")
    assert fillers.plan_for(PhraseContext("q", "a chunk"), "p", fillers.DEFAULT) is None  # knowledge: greedy
    assert fillers.plan_for(ctx, "p", None) is None
    assert fillers.plan_for(ctx, "p", fillers.DEFAULT).seed == phrase_seed("p", 0)


# ------------------------------------------------------------------------------------------- real Talker
async def _say(talker, ctx, max_tokens=24):
    return "".join([p async for p in talker.stream(ctx, max_tokens)])


@pytest.mark.model
async def test_real_talker_samples_fillers_reproducibly_and_keeps_knowledge_greedy(real_talker):
    assert real_talker.filler_sampling is fillers.DEFAULT
    knowledge = PhraseContext("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice in 1813.",
                              earlier=("Pride and Prejudice, let me check.",))
    greedy = "".join(real_talker.generate(real_talker.prompt(knowledge), 24, threading.Event()))
    assert await _say(real_talker, knowledge) == greedy          # knowledge phrases: the greedy text

    filler = PhraseContext("When was the Eiffel Tower built?")
    first = await _say(real_talker, filler)
    assert first and await _say(real_talker, filler) == first    # same prompt, same seed: same filler
    saved = real_talker.seed
    try:
        seen = set()
        for seed in range(4):
            real_talker.seed = seed
            seen.add(await _say(real_talker, filler))
        assert len(seen) >= 2                                     # other seeds: other fillers
    finally:
        real_talker.seed = saved
    questions = ["When was the Eiffel Tower built?", "Who painted the Mona Lisa?", "How tall is Mount Everest?",
                 "Where is the Great Barrier Reef?"]
    assert len({await _say(real_talker, PhraseContext(q)) for q in questions}) == len(questions)


@pytest.mark.model
async def test_real_talker_does_not_end_a_filler_like_the_previous_turn(real_talker):
    prev = "Where was the first paper money made?"
    for user in ("And when was it made?", "Who invented it?", "Is it still used?"):
        ctx = PhraseContext(user, prev_user=prev, prev_reply="Paper money, let me check. It was made in China.")
        said = await _say(real_talker, ctx)
        assert said and not filler_template(said, user, prev).endswith("let me check"), said
        assert not any(ch.isdigit() for ch in said)
