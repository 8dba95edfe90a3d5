"""`python -m training.train_nli calibrate`: per-class logit offsets fit on the run's validation pairs and
folded into the classifier bias, so the artifact and its loader stay unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from convfill.errors import InputError

from .nli_data import encode, train_val_pairs
from .nli_model import load_checkpoint, predict_logits


def fit_logit_offsets(logits, labels, grid: float = 1.0, step: float = 0.05) -> tuple[list[float], float]:
    """Per-class offsets added to the logits (class 0 fixed at 0) that maximise accuracy on (logits, labels).

    Why: a judge trained on a mix unlike the target genre predicts some classes too rarely (MNLI-style
    contradictions here); shifting its decision thresholds on held-out data fixes that at no runtime cost,
    because the offsets fold into the classifier's bias. Exhaustive grid over [-grid, grid]; among equally
    good offsets the smallest change wins. Returns (offsets, accuracy with them).
    """
    import itertools

    import torch

    logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(labels)
    k = logits.shape[1]
    n = int(round(grid / step))
    values = sorted((i * step for i in range(-n, n + 1)), key=abs)
    best, best_acc = [0.0] * k, -1.0
    for combo in itertools.product(values, repeat=k - 1):
        off = torch.tensor([0.0, *combo])
        acc = (logits + off).argmax(-1).eq(labels).float().mean().item()
        if acc > best_acc + 1e-9 or (abs(acc - best_acc) <= 1e-9 and sum(map(abs, combo)) < sum(map(abs, best))):
            best, best_acc = [0.0, *combo], acc
    return [round(x, 4) for x in best], best_acc


def calibrate(args) -> dict:
    """Fit logit offsets on the run's validation pairs and save the checkpoint with them in the head's bias."""
    import shutil

    import torch

    torch.set_num_threads(args.threads)
    ckpt = Path(args.checkpoint)
    if not args.train and not args.val:
        # The run's own validation set: re-derive it from the options logged at its start.
        log = ckpt.parent / "train_log.jsonl"
        if not log.is_file():
            raise InputError(f"no --train/--val given and no {log} to take them from")
        events = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        start = next(e for e in events if e.get("event") == "start")["args"]
        for k in ("train", "val", "val_size", "val_seed", "val_source", "limit"):
            setattr(args, k, start.get(k, getattr(args, k, None)))
    _, val_pairs = train_val_pairs(args)
    model, tok = load_checkpoint(str(ckpt))
    logits, labels = predict_logits(model, encode(tok, val_pairs, args.max_len))
    before = logits.argmax(-1).eq(labels).float().mean().item()
    offsets, after = fit_logit_offsets(logits, labels, args.grid, args.step)
    with torch.no_grad():
        model.classifier.bias += torch.tensor(offsets)
    out = Path(args.out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if (ckpt / "training_summary.json").is_file():
        shutil.copy(ckpt / "training_summary.json", out / "training_summary.json")
    r = {"checkpoint": str(ckpt), "out": str(out), "n_val": len(val_pairs),
         "offsets": dict(zip((model.config.id2label[i] for i in range(len(offsets))), offsets)),
         "val_accuracy_before": round(before, 4), "val_accuracy_after": round(after, 4)}
    (out / "calibration.json").write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r))
    return r
