"""Store speed at dataset scale: `python -m convfill.eval store-bench --phrases 290000 --json`.

The released ConvFill dataset has 290,571 phrases; the tab runs a queue query, a progress count and an
item read after every key press, so those must stay interactive at that size. This script builds a
synthetic store of the requested size in a temporary directory (random model suggestions), then times
import, scoring writes, the per-keypress queries, a label write and both exports. It is a script, not a
test: numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from labeling.export import export_csv, export_jsonl
from labeling.store import LabelStore

from ..nli.judge import LABELS, Suggestion


def _ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def build_synthetic(folder: Path, phrases: int, seed: int = 0) -> tuple[LabelStore, dict]:
    """A store in `folder` with about `phrases` imported phrases, all scored by a random "bench-model"."""
    rng = random.Random(seed)
    per_turn, turns_per_conv = 5, 4
    n_conv = max(1, phrases // (per_turn * turns_per_conv))
    src = folder / "synthetic.jsonl"
    with src.open("w") as f:
        for c in range(n_conv):
            conv = []
            for t in range(turns_per_conv):
                thoughts = ["<sil>"] + [f"Fact {c}-{t}-{i} about the topic." for i in range(per_turn - 1)]
                conv.append({"user": f"Question {c}-{t}?", "thoughts": thoughts,
                             "response": [f"Phrase {c}-{t}-{i}, said briefly." for i in range(per_turn)]})
            f.write(json.dumps({"conversation": conv}) + "\n")
    store = LabelStore(folder / "bench.db")
    out: dict = {"conversations": n_conv}
    t0 = time.perf_counter()
    out["phrases"] = store.import_convfill(src).phrases
    out["import_s"] = round(time.perf_counter() - t0, 2)
    ids = store.unscored("bench-model")
    t0 = time.perf_counter()
    for s in range(0, len(ids), 256):  # the batch size `score_unscored` commits with
        sugg = []
        for pid in ids[s:s + 256]:
            p = [rng.random() for _ in LABELS]
            probs = {k: v / sum(p) for k, v in zip(LABELS, p)}
            sugg.append((pid, Suggestion(max(probs, key=probs.get), probs, "bench-model")))
        store.add_suggestions(sugg)
    out["suggestions_write_s"] = round(time.perf_counter() - t0, 2)
    return store, out


def time_ops(store: LabelStore, exports: bool = True) -> dict:
    """Median times of what one key press in the tab runs, a label write, and the exports."""
    out: dict = {}
    ids = store.unscored("nobody")
    seen = ids[:200]
    out["queue_next_ms"] = _ms(lambda: store.queue(annotator="ada", exclude=seen, limit=1))
    out["queue_next_selective_ms"] = _ms(lambda: store.queue(annotator="ada", min_score=0.9, limit=1))
    out["queue_count_ms"] = _ms(lambda: store.queue_count(annotator="ada"), 3)
    out["progress_ms"] = _ms(lambda: store.progress("ada"))
    out["label_counts_ms"] = _ms(lambda: store.label_counts("ada"))
    out["item_ms"] = _ms(lambda: store.item(ids[len(ids) // 2], "ada"))
    pids = iter(ids[1000:])
    out["set_label_ms"] = _ms(lambda: store.set_label(next(pids), "ada", "entailment"), 20)
    if exports:
        folder = store.path.parent
        t0 = time.perf_counter()
        export_jsonl(store, folder / "out.jsonl")
        out["export_jsonl_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        export_csv(store, folder / "out.csv")
        out["export_csv_s"] = round(time.perf_counter() - t0, 2)
    return out


def run_label_bench(phrases: int = 50_000, seed: int = 0) -> dict:
    """Build a synthetic store with about `phrases` phrases and time the labeling operations."""
    with tempfile.TemporaryDirectory() as d:
        store, out = build_synthetic(Path(d), phrases, seed)
        return {**out, **time_ops(store)}


def add_parser(sub) -> None:
    b = sub.add_parser("store-bench", help="time the label store's operations on a synthetic store of dataset size")
    b.add_argument("--phrases", type=int, default=50_000, help="about how many phrases to synthesise")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_store_bench)


def cmd_store_bench(args) -> dict:
    res = run_label_bench(args.phrases)
    return res if args.json else {**res, "_text": "\n".join(f"{k}: {v}" for k, v in res.items())}
