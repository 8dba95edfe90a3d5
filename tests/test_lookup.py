"""Prompt lookup drafts (`convfill.talkers.lookup`): what the Talker guesses before checking it."""

from convfill.talkers.lookup import draft


def test_the_tokens_after_the_latest_earlier_occurrence_of_the_last_words_are_guessed():
    #          0  1  2  3  4  5  6  7  8  9
    tokens = [5, 1, 2, 9, 9, 1, 2, 7, 8, 1, 2]
    assert draft(tokens, 3) == [7, 8, 1]  # "1 2" last occurred at 5-6 (not 1-2): what followed it there
    assert draft(tokens, 1) == [7]
    assert draft(tokens, 0) == []


def test_the_longest_suffix_wins_and_a_lone_token_is_not_enough():
    tokens = [3, 1, 2, 4, 0, 2, 6, 0, 1, 2]
    assert draft(tokens, 2) == [4, 0]       # "1 2" (two tokens) beats the later "2" alone (followed by 6)
    assert draft([4, 2, 6, 0, 2], 2) == []  # only "2" recurs: no guess from one token
    assert draft([4, 2, 6, 0, 2], 2, min_ngram=1) == [6, 0]
    assert draft([7, 8, 9, 1, 7, 8, 9], 5) == [1, 7, 8, 9]  # three tokens matched; the guess stops at the end


def test_nothing_to_copy_gives_no_guess():
    assert draft([], 3) == [] and draft([1], 3) == [] and draft([1, 2, 3, 4], 3) == []
    assert draft([1, 1, 1], 2) == [1]  # "1 1" at 0-1 is followed by the last token itself


def test_the_draft_setting_is_read_from_the_environment_and_capped(monkeypatch):
    from convfill.talkers.llamacpp import DEFAULT_DRAFT, DRAFT_ENV, MAX_DRAFT, default_draft

    for value, expected in (("0", 0), ("5", 5), ("100000", MAX_DRAFT), ("lots", DEFAULT_DRAFT), ("-2", DEFAULT_DRAFT)):
        monkeypatch.setenv(DRAFT_ENV, value)
        assert default_draft() == expected, value
    monkeypatch.delenv(DRAFT_ENV)
    assert default_draft() == DEFAULT_DRAFT == 3
