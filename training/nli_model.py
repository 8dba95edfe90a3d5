"""The NLI cross-encoder as the trainer handles it: the base model to fine-tune, a checkpoint to continue or
calibrate, and validation metrics over encoded pairs (used to choose the best checkpoint).

Judge accuracy on a labelled set (MNLI gold dev, held-out ConvFill pairs, human labels) is measured by
`python -m convfill.eval judge`, through the served judge's code; these metrics only steer training.
"""

from __future__ import annotations

from collections import Counter

from .nli_data import ID2LABEL, LABEL2ID, collate


def load_base_for_training(dropout: float | None = None, init: str | None = None):
    """BertForSequenceClassification from the package weights (or ``init``, a checkpoint to continue)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from convfill.nli.offline import base_model_dir

    base = init or base_model_dir()
    kw = {}
    if dropout is not None:
        kw = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    model = BertForSequenceClassification.from_pretrained(
        str(base), num_labels=3, id2label=ID2LABEL, label2id=LABEL2ID, **kw)
    tok = AutoTokenizer.from_pretrained(str(base))
    return model, tok


def val_metrics(model, encoded, batch_size: int = 64, bf16: bool = False) -> dict:
    """Accuracy, per-label accuracy (recall) and confusion counts over encoded pairs."""
    import torch

    logits, labels = predict_logits(model, encoded, batch_size, bf16)
    r = accuracy_report(logits.argmax(-1).tolist(), labels.tolist(), model.config.id2label)
    loss = torch.nn.functional.cross_entropy(logits, labels).item() if len(encoded) else 0.0
    r["loss"] = round(loss, 4)
    return r


def predict_logits(model, encoded, batch_size: int = 64, bf16: bool = False):
    """(logits, labels) tensors over encoded pairs, in input order; batches run length-sorted."""
    import torch

    model.eval()
    out = torch.zeros(len(encoded), model.config.num_labels)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(order), batch_size):
            b = order[s:s + batch_size]
            x, _ = collate([encoded[i] for i in b])
            out[b] = model(**x).logits.float()
    return out, torch.tensor([e[2] for e in encoded], dtype=torch.long)


def accuracy_report(preds: list[int], gold: list[int], id2label) -> dict:
    """Accuracy, per-label accuracy and predicted counts of class indices (the training log's numbers)."""
    id2label = {int(k): v for k, v in id2label.items()}
    per = {}
    for k, name in id2label.items():
        idx = [i for i, g in enumerate(gold) if g == k]
        per[name] = {"n": len(idx), "accuracy": round(sum(preds[i] == k for i in idx) / max(1, len(idx)), 4)}
    acc = sum(p == g for p, g in zip(preds, gold)) / max(1, len(gold))
    return {"accuracy": round(acc, 4), "n": len(gold), "per_label": per,
            "predicted": {id2label[k]: v for k, v in sorted(Counter(preds).items())}}


def load_checkpoint(checkpoint: str | None):
    """A checkpoint directory (HF format) or, by default, the shipped offline judge."""
    if checkpoint:
        from transformers import AutoTokenizer, BertForSequenceClassification

        m = BertForSequenceClassification.from_pretrained(checkpoint).eval()
        return m, AutoTokenizer.from_pretrained(checkpoint)
    from convfill.nli.offline import build_offline_judge

    return build_offline_judge()
