"""Markdown tables and PNG plots of evaluation results (matplotlib on the Agg backend: no display needed).

Every table cell is formatted here, so the QA, TTFT and entailment reports look alike and a number in
`docs/benchmarks.md` can be traced to the file that produced it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (cells `None` print as an en dash)."""
    def cell(v: object) -> str:
        return "–" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt_ms(v: float | None) -> str | None:
    return None if v is None else f"{v:,.0f}"


def mean_std(s: Mapping) -> str | None:
    """`mean ± std` of a `metrics.summarize` dict, in ms."""
    if s.get("mean") is None:
        return None
    return f"{s['mean']:,.0f} ± {s['std']:,.0f}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    """Lay out, write as PNG and free the figure (pyplot keeps every open figure alive)."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_distributions(series: Mapping[str, Sequence[float | None]], path: str | Path, title: str,
                       xlabel: str = "ms since the turn started") -> Path:
    """Horizontal box plots (with the points) of latency samples, one row per series."""
    plt = _pyplot()
    names = [k for k, v in series.items() if any(x is not None for x in v)]
    data = [[x for x in series[k] if x is not None] for k in names]
    fig, ax = plt.subplots(figsize=(8, 0.55 * max(3, len(names)) + 1.2))
    if data:
        ax.boxplot(data, vert=False, showfliers=False)
        for i, xs in enumerate(data, 1):
            jitter = [i + ((j * 7919) % 100 - 50) / 400 for j in range(len(xs))]  # deterministic jitter
            ax.scatter(xs, jitter, s=6, alpha=0.45)
        ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def plot_bars(values: Mapping[str, float | None], path: str | Path, title: str, ylabel: str,
              as_percent: bool = True) -> Path:
    """One bar per run (e.g. accuracy by mode), labelled with its value."""
    plt = _pyplot()
    names = list(values)
    ys = [(values[k] or 0.0) * (100 if as_percent else 1) for k in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 4))
    bars = ax.bar(range(len(names)), ys, color="#4c72b0")
    ax.bar_label(bars, labels=[f"{y:.1f}" + ("%" if as_percent else "") for y in ys], fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if as_percent:
        ax.set_ylim(0, 105)
    return _save(plt, fig, path)


def plot_stacked(shares: Mapping[str, Mapping[str, float]], keys: Sequence[str], path: str | Path,
                 title: str, colors: Sequence[str] = ("#55a868", "#8c8c8c", "#c44e52")) -> Path:
    """Stacked 100% bars (e.g. E/N/C per phrase kind)."""
    plt = _pyplot()
    names = list(shares)
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = [0.0] * len(names)
    for key, color in zip(keys, colors):
        ys = [shares[n].get(key, 0.0) for n in names]
        ax.bar(names, ys, bottom=bottom, label=key, color=color)
        bottom = [b + y for b, y in zip(bottom, ys)]
    ax.set_ylabel("% of phrases")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return _save(plt, fig, path)


# ------------------------------------------------------------------------------------------------- QA
QA_HEADERS = ("run", "mode", "Reasoner", "n", "accuracy", "TTFT p50 (ms)", "TTFT p95 (ms)",
              "first knowledge phrase p50 (ms)", "fillers / turn", "wall (s)")


def write_qa_report(out_dir: str | Path) -> dict[str, Path]:
    """Rebuild `qa.md`, `accuracy_by_mode.png` and `qa_ttft.png` from every `qa_*.summary.json` in `out_dir`.

    Runs accumulate: running the three modes into one folder gives one table comparing them.
    """
    out = Path(out_dir)
    summaries = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("qa_*.summary.json"))]
    rows, ttfts, accs = [], {}, {}
    for s in summaries:
        r = s.get("reasoner") or {}
        rows.append((s["label"], s["mode"], r.get("reasoner"), s["n"],
                     None if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}%",
                     fmt_ms(s["ttft_ms_p50"]), fmt_ms(s["ttft_ms_p95"]), fmt_ms(s["first_knowledge_phrase_ms_p50"]),
                     s["fillers_mean"], s["wall_s"]))
        accs[s["label"]] = s["accuracy"]
        items = Path(s.get("items_file", ""))
        if items.is_file():
            ttfts[s["label"]] = [json.loads(line)["metrics"]["talker_ttft_ms"]
                                 for line in items.read_text(encoding="utf-8").splitlines() if line.strip()]
    md = ["# Open-domain QA (NQ-open)\n",
          "Correct = a gold answer occurs in the spoken reply after NQ/SQuAD normalisation "
          "(`convfill/eval/normalize.py`). TTFT = turn start -> first token the user hears.\n",
          markdown_table(QA_HEADERS, rows)]
    nat = {s["label"]: s["naturalness"] for s in summaries if s.get("naturalness")}
    nat_md = []
    if nat:
        from .naturalness import NATURALNESS_ROWS

        nat_md = ["# Naturalness of the Talker (fillers and names)\n",
                  "Definitions: `convfill/eval/naturalness.py` (docs/benchmarks.md, \"Fillers\").\n",
                  markdown_table(("metric", *nat), [(label, *(v.get(key) for v in nat.values()))
                                                    for key, label in NATURALNESS_ROWS])]
        by_pos = {s["label"]: s["accuracy_by_answer_sentence"] for s in summaries
                  if s.get("accuracy_by_answer_sentence")}
        if by_pos:
            nat_md += ["\nAccuracy by the chunk that holds the answer:\n",
                       markdown_table(("run", "answer in sentence 1", "2", "3"),
                                      [(k, *(f"{v[p]['accuracy']:.2f} (n={v[p]['n']})" if p in v else None
                                             for p in ("1", "2", "3"))) for k, v in by_pos.items()])]
    paths = {"markdown": out / "qa.md"}
    if accs:
        paths["accuracy_png"] = plot_bars(accs, out / "accuracy_by_mode.png", "QA accuracy by run", "accuracy (%)")
    if ttfts:
        paths["ttft_png"] = plot_distributions(ttfts, out / "qa_ttft.png", "Time to first spoken token")
        md.append("\n![accuracy](accuracy_by_mode.png)\n\n![TTFT](qa_ttft.png)\n")
    if nat_md:
        paths["naturalness"] = out / "naturalness.md"
        paths["naturalness"].write_text("\n".join(nat_md), encoding="utf-8")
        md.append("\nNaturalness of the fillers: [naturalness.md](naturalness.md)\n")
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    return paths
