"""Text from browsers, Reasoners and annotators, made safe for where it goes next.

Three edges, one function each:

* `valid_unicode`: what a browser sends can hold lone surrogates (broken UTF-16 pasted from elsewhere); they
  crash UTF-8 encoding deep inside the Talker, the store and Gradio's own serializer, so they are replaced
  with U+FFFD where text enters.
* `markdown_literal`: chat messages and labeling tables are rendered as Markdown in every visitor's
  browser; a Markdown image or HTML tag in a message, a knowledge chunk or an annotator name would make
  each of those browsers fetch a URL of the author's choosing (a tracking pixel). Such text is shown as the
  characters it is.
* `csv_cell`: a CSV cell starting with = + - @ (or a tab/CR) is a formula to spreadsheet programs; such cells
  get a leading apostrophe (the usual neutralisation, OWASP "CSV injection").
"""

from __future__ import annotations

import re

# Images and links need brackets, HTML needs angle brackets; escaping only these (and the escape character)
# keeps ordinary text, as API clients receive it, unchanged.
_MD_SPECIAL = re.compile(r"([\\\[\]<>])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def valid_unicode(text: str) -> str:
    """`text` with each lone surrogate replaced by one U+FFFD (a surrogate pair split into two code points
    is joined into its character)."""
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def markdown_literal(text: str) -> str:
    """`text` escaped so Markdown shows it without images, links or HTML tags (other Markdown, such as
    emphasis, still renders)."""
    return _MD_SPECIAL.sub(r"\\\1", valid_unicode(text))


def csv_cell(value):
    """A CSV value that spreadsheet programs will not evaluate as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
