"""Batch scoring: run an NLI judge over the phrases a model has not judged yet and store its suggestions.

Shared by `python -m labeling score` and the tab's "Score unscored phrases" button. Suggestions are
committed every `commit_every` phrases, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

from collections import Counter

from convfill.nli.judge import NLIJudge
from .store import LabelStore


def score_unscored(store: LabelStore, judge: NLIJudge, *, progress: bool = False, commit_every: int = 256,
                   limit: int | None = None) -> Counter:
    """Judge every phrase `judge.model_id` has not scored; returns a Counter of the labels it gave."""
    ids = store.unscored(judge.model_id)
    if limit is not None:
        ids = ids[:limit]
    counts: Counter = Counter()
    bar = None
    if progress and ids:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc=f"scoring with {judge.model_id}", unit="phrase")
    for s in range(0, len(ids), commit_every):
        part = ids[s:s + commit_every]
        pairs = store.nli_pairs(part)
        order = [pid for pid in part if pid in pairs]
        sugg = judge.judge([pairs[pid] for pid in order])
        store.add_suggestions(zip(order, sugg))
        counts.update(x.label for x in sugg)
        if bar:
            bar.update(len(part))
    if bar:
        bar.close()
    return counts
