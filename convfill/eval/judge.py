"""`python -m convfill.eval judge`: how often an NLI judge gives the right label.

Gold labels come from a JSONL of `{"premise", "hypothesis", "label"}` lines (MNLI gold dev, the held-out
ConvFill pairs of `python -m training.nli_pairs --heldout`) or from the people's labels in a workbench store
(`--labels-db`, each phrase's pair built by the store with `convfill.nli.premise_for`). The judge runs through
`NLIJudge.predict`, the code the app and the workbench serve with (pairs encoded by
`convfill.nli.encode_pairs`), so the number measured is the number served.

    python -m convfill.eval judge --data ../shared/data/nli/dev_mnli_gold.jsonl --model offline --json
    python -m convfill.eval judge --labels-db labels.db --annotator ada
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path

from ..errors import ConfigError, InputError
from ..jsonl import read_jsonl
from ..nli import LABELS, normalize_label
from ..nli.judge import DEFAULT_BATCH_SIZE, NLIJudge, load_judge, load_offline_judge

OFFLINE = "offline"  # --model name of the shipped offline judge


def read_nli_data(path: str | Path, limit: int | None = None) -> list[dict]:
    """Lines {"premise", "hypothesis", "label"}; InputError names the first bad line."""
    rows = []
    for n, d in read_jsonl(path, InputError):
        try:
            rows.append({"premise": str(d["premise"]), "hypothesis": str(d["hypothesis"]),
                         "label": normalize_label(d["label"])})
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{Path(path).name}:{n}: need premise, hypothesis and an NLI label ({e})") from e
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InputError(f"{path} has no examples")
    return rows


def read_human_labels(db: str | Path, annotator: str | None = None, limit: int | None = None) -> list[dict]:
    """The workbench's human labels as rows like `read_nli_data`'s: one per (phrase, annotator)."""
    from labeling.store import LabelStore

    if not Path(db).is_file():
        raise InputError(f"no database at {db}")
    store = LabelStore(db)
    labels = store.labels(annotator=annotator)[:limit]
    pairs = store.nli_pairs([lab["phrase_id"] for lab in labels])
    rows = [{"premise": pairs[lab["phrase_id"]].premise, "hypothesis": pairs[lab["phrase_id"]].hypothesis,
             "label": normalize_label(lab["label"])} for lab in labels if lab["phrase_id"] in pairs]
    if not rows:
        raise InputError(f"{db} has no human labels" + (f" by {annotator}" if annotator else ""))
    return rows


def evaluate_judge(judge, rows: list[dict], progress: bool = False) -> dict:
    """Accuracy overall and per gold label (recall), how often each label was predicted, and the mean
    cross-entropy of the gold label (`loss`, the training log's validation loss)."""
    pred = judge.predict([r["premise"] for r in rows], [r["hypothesis"] for r in rows], progress=progress)
    gold = [r["label"] for r in rows]
    ok = [p.label == g for p, g in zip(pred, gold)]
    n_gold, n_ok, n_pred = Counter(gold), Counter(g for g, k in zip(gold, ok) if k), Counter(p.label for p in pred)
    loss = -sum(math.log(max(p.probs.get(g, 0.0), 1e-12)) for p, g in zip(pred, gold)) / len(gold)
    return {"accuracy": sum(ok) / len(ok), "n": len(ok), "model": judge.model_id, "loss": round(loss, 4),
            "per_label": {lab: {"n": n_gold[lab], "correct": n_ok[lab], "predicted": n_pred[lab],
                                "accuracy": n_ok[lab] / n_gold[lab] if n_gold[lab] else None}
                          for lab in LABELS}}


def named_judge(model: str | None, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[NLIJudge, str]:
    """(judge, what was loaded) for an evaluation: `offline`: the shipped offline judge; a name or directory:
    that model exactly, or ConfigError with its reason (a table must never say one judge made it while another
    did); None: the workbench's choice (the configured model, else the offline judge)."""
    if model == OFFLINE:
        judge = load_offline_judge(batch_size=batch_size)
        return judge, f"NLI judge: {judge.model_id}"
    judge, msg = load_judge(model, fallback=model is None, batch_size=batch_size)
    if judge is None:
        raise ConfigError(f"No NLI judge: {msg}")
    return judge, msg


def cmd_judge(args) -> dict:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = (read_nli_data(args.data, args.limit) if args.data
            else read_human_labels(args.labels_db, args.annotator, args.limit))
    t0 = time.time()
    judge, msg = named_judge(args.model, args.batch_size)  # after the data: a bad file fails in milliseconds
    print(msg, file=sys.stderr)
    load_s = time.time() - t0
    t1, c1 = time.time(), time.process_time()
    res = evaluate_judge(judge, rows, progress=args.progress)  # bar on stderr, JSON on stdout
    dt, cpu = time.time() - t1, time.process_time() - c1
    res |= {"data": str(args.data or args.labels_db), "load_s": round(load_s, 2),
            "ms_per_pair": round(1000 * dt / res["n"], 2),
            # CPU time of all threads: on a machine shared with other jobs, wall time overstates the cost.
            "cpu_ms_per_pair": round(1000 * cpu / res["n"], 2), "batch_size": args.batch_size,
            "threads": args.threads}
    if args.json:
        return res
    lines = [f"{res['model']}: accuracy {res['accuracy']:.4f} on {res['n']} pairs ({res['ms_per_pair']} ms/pair, "
             f"batch {args.batch_size})"]
    for lab, d in res["per_label"].items():
        acc = "-" if d["accuracy"] is None else f"{d['accuracy']:.4f}"
        lines.append(f"  {lab:13s} n={d['n']:6d} accuracy={acc} predicted={d['predicted']}")
    return {**res, "_text": "\n".join(lines)}


def add_parser(sub) -> None:
    j = sub.add_parser("judge", help="accuracy of an NLI judge on labelled pairs (JSONL) or on the workbench's "
                                     "human labels")
    src = j.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="JSONL with premise, hypothesis, label")
    src.add_argument("--labels-db", type=Path, help="workbench store: judge vs the people's labels")
    j.add_argument("--annotator", default=None, help="with --labels-db: only this person's labels")
    j.add_argument("--model", "--checkpoint", dest="model", default=None,
                   help=f"NLI model: hub id or directory (a training checkpoint), used exactly; '{OFFLINE}': the "
                        "shipped offline judge (default: CONVFILL_NLI_MODEL or MoritzLaurer/DeBERTa-v3-base-mnli, "
                        "then the offline judge)")
    j.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="pairs per forward pass")
    j.add_argument("--limit", type=int, default=None, help="first N examples only")
    j.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    j.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    j.add_argument("--json", action="store_true", help="print one JSON object")
    j.set_defaults(func=cmd_judge)

