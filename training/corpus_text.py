"""The word-level rules of the seed-corpus validator: what counts as spoken style, a number, a name, a fact,
and how well a phrase covers its chunk.

Why its own module: these are heuristics on text alone (no conversation, no file), tuned on the curated seed
corpus; `training.corpus_checks` applies them to conversations.
"""

from __future__ import annotations

import re

from convfill.prompt import sanitize

NUMBER_WORDS = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
    "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million",
    "billion", "trillion", "dozen", "half", "quarter", "percent", "first", "second", "third", "fourth",
    "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "twice", "thrice",
}
# Number-ish expressions a filler may use: they measure waiting or point at the request, not facts.
FILLER_NUMBER_ALLOW = re.compile(
    r"\b(?:one|a|just a|half a) (?:moment|second|sec|minute|mo|tick)\b|\bone more\b|\bat once\b|"
    r"\b(?:this|that|which|each|the right|the best|a good|one|nice|good|fun|great|tricky|hard|easy|big|common|"
    r"classic|popular|interesting|tough|fair|simple) one\b|"
    r"\bfirst things first\b|\bsecond look\b|\bone thing\b|\bone at a time\b|\bsecond guess", re.IGNORECASE)
# A filler cannot know whether the user is right or what the next chunk holds: confirming the user ("yes,
# they do") or previewing ("there's also a trick with salt") invents knowledge. Heuristic -> warnings.
FILLER_CONFIRMS = re.compile(r"^\W*(?:yes|yep|exactly|correct|that's right|that is right|true)\b", re.IGNORECASE)
FILLER_PREVIEWS = re.compile(
    r"(?<!if )(?<!whether )\bthere(?:'s| is| are) (?:also|a trick|one more|another|a neat|a simple|a common)\b",
    re.IGNORECASE)
# Words that are capitalised without being names of anything the filler could invent.
CAPITAL_OK = {"i", "i'm", "i'll", "i've", "i'd", "ok", "okay"}

STOPWORDS = set("""
a an the and or but if then so of to in on at by for with from about as into onto over under than that this
these those it its it's is are was were be been being am do does did doing have has had having i you he she
we they me him her us them my your his our their mine yours what which who whom whose when where why how
not no yes can could would should will shall may might must just also very really quite too there here
some any all each every both either neither more most less least much many such only own same other
another up down out off again further once s t don't doesn't isn't aren't wasn't weren't won't can't
you're you'll you've we're they're that's there's let's let me yeah oh well okay ok sure get got go
going make made like one thing things way lot lots around usually often generally typically
""".split())

_DIGIT = re.compile(r"\d")
_URL = re.compile(r"https?://|www\.|\b[\w-]+\.(?:com|org|net|io|gov|edu|co\.uk)\b", re.IGNORECASE)
_MARKDOWN = re.compile(r"\*\*|__|`|^#{1,6}\s|\[[^\]]*\]\([^)]*\)|^\s*>\s|\|.*\|", re.MULTILINE)
_BULLET = re.compile(r"[•◦▪▸►‣⁃]|^\s*[-*+]\s|^\s*\(?[a-z0-9]\)\s", re.MULTILINE)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200d]")
SIL_LIKE = re.compile(r"<\s*/?\s*sil\s*>", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENT_START = re.compile(r"(?:^|[.!?…:;]\s+|[\"“(]\s*)$")


def normalise(text: str) -> str:
    """Case- and punctuation-insensitive form used for the reuse check."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower().replace("’", "'")).split())


def name_key(w: str) -> str:
    """Lower-case, possessive-free form, so "Ramsay's" in a filler matches "Ramsay" in the user turn."""
    w = w.lower().replace("’", "'")
    return w[:-2] if w.endswith("'s") else w.rstrip("'")


def corpus_words(text: str) -> list[str]:
    return [w.lower().replace("’", "'").strip("'-") for w in WORD.findall(text)]


def has_control_tokens(text: str) -> bool:
    """True when `sanitize` would change the text beyond whitespace, i.e. it carries a control token."""
    return sanitize(text) != " ".join(text.split())


def style_problems(text: str) -> list[tuple[str, str]]:
    """(code, message) for each way `text` is not plain speakable prose."""
    out = []
    if _DIGIT.search(text):
        out.append(("digits", f"digits in spoken text (write numbers in words): {text!r}"))
    if _URL.search(text):
        out.append(("url", f"URL in spoken text: {text!r}"))
    if _MARKDOWN.search(text):
        out.append(("markdown", f"markdown in spoken text: {text!r}"))
    if _BULLET.search(text):
        out.append(("bullet", f"bullet/list marker in spoken text: {text!r}"))
    if _EMOJI.search(text):
        out.append(("emoji", f"emoji in spoken text: {text!r}"))
    if "\n" in text:
        out.append(("newline", "line break in a phrase (phrases are single utterances)"))
    return out


def capitalised_non_initial(text: str) -> list[str]:
    """Capitalised words that do not start a sentence: the crude proper-noun detector."""
    found = []
    for m in WORD.finditer(text):
        w = m.group(0)
        if not w[0].isupper():
            continue
        if _SENT_START.search(text[: m.start()]):
            continue
        if w.lower().replace("’", "'") in CAPITAL_OK:
            continue
        found.append(w)
    return found


def number_words(text: str) -> list[str]:
    return [w for w in corpus_words(text) if w in NUMBER_WORDS or any(w.startswith(n + "-") for n in NUMBER_WORDS)]


# Too often not a number at all ("one option", "a good first step", "check with a doctor first").
AMBIGUOUS_NUMBER_WORDS = {"one", "first", "second"}


def fact_words(text: str) -> list[str]:
    """Lower-cased number words and capitalised non-initial words: what a phrase must not drop or invent."""
    nums = [w for w in number_words(text) if w not in AMBIGUOUS_NUMBER_WORDS]
    return nums + [name_key(x) for x in capitalised_non_initial(text)]


def is_acronym_of(word: str, text: str) -> bool:
    """True when `word` ("us", "cds") abbreviates consecutive words of `text` ("United States", "certificates
    of deposit"); small function words may be skipped."""
    letters = word.lower().rstrip("s") if len(word) > 2 and word.lower().endswith("s") else word.lower()
    if not 2 <= len(letters) <= 5:
        return False
    ws = corpus_words(text)
    for i in range(len(ws)):
        j, k = i, 0
        while j < len(ws) and k < len(letters):
            if ws[j].startswith(letters[k]):
                k += 1
            elif k == 0 or ws[j] not in ("of", "and", "the", "for"):
                break
            j += 1
        if k == len(letters):
            return True
    return False


def loose_stem(w: str) -> str:
    """A 5-letter prefix after a suffix strip: looser than `training.rules.stem` on purpose.

    Why a second stemmer: this one matches facts of curated data across inflections and derivations
    ("Olympics"/"Olympic", "govern"/"government"), where a miss is a false error a person must read; the
    rules in `training.rules` score model output, where a loose match would hide invented words. The
    corpus thresholds (`MIN_COVERAGE`, the fact checks) were tuned with this one.
    """
    w = w.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suf in ("ing", "ed", "es", "s", "ly"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            w = w[: -len(suf)]
            break
    return w[:5]


def coverage_words(text: str) -> list[str]:
    """Words of `text` the coverage check counts (this module's stopwords; see `stem` for why not rules')."""
    return [w for w in corpus_words(text) if w not in STOPWORDS and len(w) > 2]


def coverage(chunk: str, phrase: str) -> tuple[float, list[str]]:
    """Share of the chunk's content words whose stem appears in the phrase, and the missing ones."""
    cw = coverage_words(chunk)
    if not cw:
        return 1.0, []
    have = {loose_stem(w) for w in corpus_words(phrase)}
    missing = [w for w in cw if loose_stem(w) not in have]
    return 1 - len(missing) / len(cw), missing
