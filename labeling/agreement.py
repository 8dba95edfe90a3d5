"""Inter-annotator agreement (Cohen's kappa) on the phrases two people both labeled.

Kappa corrects raw agreement for the agreement expected by chance from each person's label frequencies,
so two annotators who both say "entailment" 90% of the time do not look reliable just for that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two equally long label sequences.

    Returns None when it is undefined: no items, or both people used one and the same label for
    everything (chance agreement is 1, so agreement beyond chance cannot be measured).
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels vs {len(b)} labels")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if p_e == 1.0:
        return None
    return (p_o - p_e) / (1 - p_e)


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two annotators.

    Parameters:
        a, b: the annotators (a < b).
        n: phrases both labeled.
        agreement: share of those with the same label.
        kappa: Cohen's kappa, None when undefined.
    """

    a: str
    b: str
    n: int
    agreement: float
    kappa: float | None


def pairwise(labels: Mapping[str, Mapping[int, str]], min_shared: int = 1) -> list[PairAgreement]:
    """Kappa for every annotator pair with at least `min_shared` phrases in common.

    Args:
        labels: {annotator: {phrase_id: label}} (`LabelStore.labels_by_annotator()`).
        min_shared: skip pairs with fewer shared phrases.
    """
    out = []
    for x, y in combinations(sorted(labels), 2):
        shared = sorted(set(labels[x]) & set(labels[y]))
        if len(shared) < max(1, min_shared):
            continue
        la, lb = [labels[x][i] for i in shared], [labels[y][i] for i in shared]
        out.append(PairAgreement(x, y, len(shared), sum(p == q for p, q in zip(la, lb)) / len(shared),
                                 cohen_kappa(la, lb)))
    return out
