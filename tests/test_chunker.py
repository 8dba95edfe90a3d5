from convfill.chunker import SentenceChunker, knowledge_chunks


def test_abbreviations_decimals_quotes_initials():
    text = ('Dr. Smith paid 3.5 dollars in the U.S. last year. "Really?" she asked. '
            'J. R. R. Tolkien wrote it, e.g. The Hobbit. It costs approx. five euros! Done')
    assert knowledge_chunks(text) == [
        "Dr. Smith paid 3.5 dollars in the U.S. last year.", '"Really?" she asked.',
        "J. R. R. Tolkien wrote it, e.g. The Hobbit.", "It costs approx. five euros!", "Done"]


def test_streamed_tokens_release_sentence_as_soon_as_next_starts():
    ch = SentenceChunker()
    out = []
    for tok in ["Jane", " Austen", " wrote", " it", " in", " 1", "8", "13", ".", " It", " was", " a", " hit", "."]:
        out.append(ch.feed(tok))
    assert out[9] == ["Jane Austen wrote it in 1813."] and sum(map(len, out)) == 1
    assert ch.flush() == ["It was a hit."]


def test_decimal_split_across_tokens_is_not_a_boundary():
    ch = SentenceChunker()
    assert ch.feed("Pi is 3.") == [] and ch.feed("14 roughly. ") == ["Pi is 3.14 roughly."]


def test_lists_and_newlines_and_markdown():
    assert knowledge_chunks("- **One** idea\n- two\n1. three\n\n") == ["One** idea", "two", "three"] or \
        knowledge_chunks("- one\n- two\n1. three\n\n") == ["one", "two", "three"]
    assert knowledge_chunks("- one\n- two\n1. three\n\n") == ["one", "two", "three"]


def test_run_on_text_is_cut_at_a_bounded_length():
    chunks = knowledge_chunks("word " * 300)
    assert len(chunks) > 1 and all(len(c) <= 400 for c in chunks)
