"""How an NLI pair becomes token ids: one function for serving (`NLIJudge.predict`), training
(`training.train_nli`) and evaluation (`convfill.eval judge`), so a judge is measured and trained on exactly
the inputs it sees in the app.

The rule: `[CLS] premise [SEP] hypothesis [SEP]` (whatever special tokens the tokenizer adds), at most
`MAX_LENGTH` tokens, and only the premise is cut, from its end.

* Only the premise: the hypothesis is the phrase being judged; cutting it would judge another phrase.
* From its end: a premise is the knowledge chunk (or, for a filler, the user utterance) followed by the
  earlier phrases of the turn (`convfill.nli.premise_for`); the end holds the last of those phrases, the
  context the judge can best spare; the head holds what the phrase must follow from.
* 512 tokens: the position limit of the judges we use (all-MiniLM-L6-v2, DeBERTa-v3), so nothing that fits
  the model is cut. Training uses the same cap: with dynamic padding a higher cap costs only for the pairs
  longer than the lower one (161 of the 75,391 training pairs exceed 128 tokens; measured in
  docs/benchmarks.md, "Offline NLI judge").
* A hypothesis that leaves no room for any premise token (hundreds of tokens; no Talker phrase is that
  long) is cut together with its premise (`longest_first`) instead of failing the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_LENGTH = 512


def encode_pairs(tokenizer, premises: Sequence[str], hypotheses: Sequence[str], *,
                 max_length: int = MAX_LENGTH) -> dict[str, list[list[int]]]:
    """Token ids of each (premise, hypothesis) pair by the module's rule, unpadded, in input order.

    Args:
        tokenizer: a Hugging Face tokenizer of the judge.
        premises: premises, one per pair.
        hypotheses: hypotheses, same length as `premises`.
        max_length: tokens per pair, capped by the tokenizer's `model_max_length`.

    Returns:
        {"input_ids", "token_type_ids" (when the tokenizer makes them), "attention_mask"}: one list per
        pair; `tokenizer.pad(result, return_tensors="pt")` makes a batch of it.
    """
    if len(premises) != len(hypotheses):
        raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
    premises, hypotheses = [str(p) for p in premises], [str(h) for h in hypotheses]
    if not premises:
        return {"input_ids": [], "attention_mask": []}
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    room = limit - tokenizer.num_special_tokens_to_add(pair=True)
    hyp_len = [len(ids) for ids in tokenizer(hypotheses, add_special_tokens=False)["input_ids"]]
    groups = {"only_first": [i for i, n in enumerate(hyp_len) if n < room],
              "longest_first": [i for i, n in enumerate(hyp_len) if n >= room]}
    out: dict[str, list] = {}
    for truncation, idx in groups.items():
        if not idx:
            continue
        enc = tokenizer([premises[i] for i in idx], [hypotheses[i] for i in idx], truncation=truncation,
                        max_length=limit)
        for key, rows in enc.items():
            column = out.setdefault(key, [None] * len(premises))
            for i, row in zip(idx, rows):
                column[i] = row
    return out
