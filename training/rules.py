"""Word-level rules shared by the data validator (`training.generate`) and the Talker evaluation
(`convfill.eval.talker_scores`): what counts as a content word, a name, a number, and when a filler says more than
the Talker could know.

One module so that "a filler that invents facts" means the same thing when we reject training data and when
we score a trained Talker: a Talker is judged by exactly the rule its data was filtered with.
"""

from __future__ import annotations

import re

STOPWORDS = set("""a an the and or but if then so to of in on at for with from by about as is are was were be been
being it its this that these those i you he she we they me him her us them my your our their what which who
whom whose when where why how can could would should will shall may might must do does did done have has had
not no yes just let me check one moment give second sure okay ok right well there here all any some more
most very really quite that's it's i'm you're let's i'll i've don't can't let's look looking see into still
think good great question thanks thank please get got going go now bit""".split())

# Capitalised words that are not names even when they do not start a sentence.
NOT_NAMES = {"I"}

_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
# Also not names: the first word of a quoted sentence ("Don't forget...") and contractions (Don't, Can't).
_NAME_QUOTED = re.compile(r"(?<![.!?]\s)(?<![.!?]\s[\"\u201c'])(?<!^)(?<!^[\"\u201c'])(?<![\"\u201c])"
                          r"\b[A-Z][a-z]+\b(?!'t\b|\u2019t\b)")


def stem(w: str) -> str:
    """A crude suffix strip so "opens"/"open" and "booked"/"booking" count as the same word."""
    w = w.removesuffix("'s")
    for suf in ("ing", "ed", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def content_words(text: str) -> set[str]:
    """Stems of the words longer than three letters that are not stopwords."""
    return {stem(w) for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 3 and w not in STOPWORDS}


def names(text: str, quotes: bool = False) -> set[str]:
    """Capitalised words that do not start the text or a sentence: a crude proper-noun detector.

    `quotes=True` also skips the first word of a quotation and contractions ("Don't"): free model output
    quotes itself, curated training data hardly does (the generator keeps the original rule).
    """
    return {w for w in (_NAME_QUOTED if quotes else _NAME).findall(text) if w not in NOT_NAMES}


def new_names(phrase: str, visible: str, quotes: bool = False) -> set[str]:
    """Names in `phrase` that appear nowhere (case-insensitively) in `visible`."""
    return {w for w in names(phrase, quotes) if w.lower() not in visible.lower()}


def leaked_words(phrase: str, visible: str, upcoming: list[str]) -> set[str]:
    """Content words of `phrase` that only the `upcoming` knowledge chunks contain, not `visible`."""
    later = set().union(*[content_words(c) for c in upcoming]) if upcoming else set()
    return (content_words(phrase) & later) - content_words(visible)


# ------------------------------------------------------------------------------------------------ numbers
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "twentieth": 20,
             "thirtieth": 30, "hundredth": 100}
_NUM_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES) | {"dozen", "half"}
_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?|[A-Za-z]+(?:-[A-Za-z]+)*|[,;:.!?]")


def _flush(run: list[str]) -> str | None:
    """The value of a run of cardinal number words: "two hundred and five" -> "205"; runs of several
    two-digit groups without a scale word are read the way years and codes are spoken:
    "eighteen ninety-six" -> "1896", "twenty twenty-one" -> "2021"."""
    words = [w for w in run if w != "and"]
    if not words:
        return None
    if words == ["half"]:
        return "0.5"
    if not any(w in _SCALES or w in ("dozen", "half") for w in words):
        groups: list[int] = []
        for i, w in enumerate(words):
            if w in _UNITS and 0 < _UNITS[w] < 10 and i > 0 and words[i - 1] in _TENS:
                groups[-1] += _UNITS[w]
            else:
                groups.append(_UNITS.get(w, _TENS.get(w, 0)))
        if len(groups) == 1:
            return str(groups[0])
        return str(groups[0]) + "".join(f"{g:02d}" for g in groups[1:])
    total, current = 0, 0
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "dozen":
            current = (current or 1) * 12
        elif w == "half":
            continue
        elif w == "hundred":
            current = (current or 1) * 100
        else:  # thousand, million, ...
            total += (current or 1) * _SCALES[w]
            current = 0
    return str(total + current)


def numbers(text: str) -> set[str]:
    """Normalised numbers in `text`: digits and number words map to the same string ("9" == "nine",
    "1,200" == "twelve hundred" == "one thousand two hundred"); ordinals keep a "th" mark ("3rd" ==
    "third" -> "3th") so "third" and "three" stay different facts. "second" (also a unit of time) and
    "one" (also a pronoun) are deliberately not numbers on their own."""
    out: set[str] = set()
    run: list[str] = []

    def flush() -> None:
        v = _flush(run)
        if v and run != ["one"]:
            out.add(v)
        run.clear()

    # Hyphenated words count part by part: "twenty-five" is a run, "half-pound" holds "half".
    for tok in (p for t in _TOKEN.findall(text) for p in (t.split("-") if t[0].isalpha() else [t]) if p):
        low = tok.lower()
        if tok[0].isdigit():
            flush()
            m = re.fullmatch(r"([\d,]*\d(?:\.\d+)?)(st|nd|rd|th)?", tok.rstrip(","))
            value = (m.group(1) if m else tok).replace(",", "")
            out.add(value + "th" if m and m.group(2) else value)
            continue
        if low in _NUM_WORDS or (low == "and" and run and run[-1] in _SCALES):
            run.append(low)
            continue
        flush()
        if low in _ORDINALS and low != "second":
            out.add(f"{_ORDINALS[low]}th")
    flush()
    return out
