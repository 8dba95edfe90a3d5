"""Prompt lookup: guess a phrase's next tokens by copying what followed its last words earlier in the prompt.

A Talker's knowledge phrase restates its chunk ("Jane Austen wrote it, in 1813"), so the tokens after the
phrase's last two or three are often the ones that followed them in the chunk. The guesses (a draft) are
checked by the model in one batch with the token just sampled (`LlamaCppTalker`): every guess the sampler
agrees with is a token without a decode step of its own; the first it does not agree with ends the draft. Output does not depend on the guesses, only speed (up to how
llama.cpp rounds a batch against single steps, see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_NGRAM = 3   # the longest run of last tokens looked up
MIN_NGRAM = 2   # one token alone ("the", ",") recurs everywhere: guessing from it was slower (simulated)


def draft(tokens: Sequence[int] | np.ndarray, k: int, max_ngram: int = MAX_NGRAM,
          min_ngram: int = MIN_NGRAM) -> list[int]:
    """Up to `k` tokens that followed the most recent earlier occurrence of the longest suffix of `tokens`
    (from `max_ngram` down to `min_ngram` tokens); [] when none occurs earlier."""
    seq = np.asarray(tokens)
    size = len(seq)
    if k <= 0:
        return []
    for n in range(min(max_ngram, size - 1), min_ngram - 1, -1):
        # starts i < size - n where seq[i:i+n] equals the last n tokens (the suffix itself excluded)
        hits = np.ones(size - n, dtype=bool)
        for j in range(n):
            hits &= seq[j: size - n + j] == seq[size - n + j]
        starts = np.flatnonzero(hits)
        if len(starts):
            at = int(starts[-1]) + n
            return seq[at: at + k].tolist()
    return []
