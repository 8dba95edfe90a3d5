"""The entailment table (the paper's Table 3): how often a Talker phrase is entailed by what it was given.

Each phrase of a turn becomes one NLI pair, as the paper and the labeling workbench define it:

* knowledge phrase (source "chunk"): premise = its knowledge chunk + the turn's earlier phrases;
* filler (source "sil"): premise = the user utterance + the turn's earlier phrases;
* hypothesis = the phrase. Fixed error phrases (source "error") are not model output and are skipped.

A judge is any callable `judge(premises, hypotheses) -> labels` with labels entailment / neutral /
contradiction (case and common abbreviations are accepted). `entail_judge` gives the labeling package's
(`convfill.nli.judge`): a named model exactly, or the configured one with the offline judge as fallback, so the
table and the workbench label with the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, ConvFillError
from ..events import Event, event_from_dict
from ..fold import TurnFold
from ..nli import LABELS, normalize_label
from .judge import named_judge
from .report import markdown_table, plot_stacked

KINDS = ("knowledge", "filler")
Judge = Callable[[list[str], list[str]], list[str]]


@dataclass(frozen=True)
class PhrasePair:
    """One judged phrase.

    Parameters:
        kind: "knowledge" or "filler".
        premise: what the phrase may rely on.
        hypothesis: the phrase.
        turn: index of the turn in the input.
        phrase_index: the phrase's index in its turn.
    """

    kind: str
    premise: str
    hypothesis: str
    turn: int = 0
    phrase_index: int = 0


def phrase_pairs(events: Sequence[Event], turn: int = 0) -> list[PhrasePair]:
    """NLI pairs for every spoken phrase of one turn's events (see the module docstring); the premise rule
    is `convfill.nli.premise_for`, applied by the one fold of a turn (`TurnFold.nli_pairs`)."""
    return [PhrasePair("filler" if nli.filler else "knowledge", nli.premise, nli.hypothesis, turn, p.index)
            for p, nli in TurnFold.of(events).nli_pairs()]


def entail_table(pairs: Sequence[PhrasePair], labels: Sequence[str]) -> dict[str, dict]:
    """{"knowledge"|"filler"|"all": {"n", "entailment", "neutral", "contradiction"}} with percentages."""
    if len(pairs) != len(labels):
        raise ConvFillError(f"the judge returned {len(labels)} labels for {len(pairs)} pairs")
    norm = [normalize_label(x) for x in labels]
    table = {}
    for kind in (*KINDS, "all"):
        got = [lab for p, lab in zip(pairs, norm) if kind == "all" or p.kind == kind]
        row: dict = {"n": len(got)}
        for lab in LABELS:
            row[lab] = round(100.0 * got.count(lab) / len(got), 2) if got else None
        table[kind] = row
    return table


def _as_judge(obj) -> Judge:
    """A judge callable from a plain callable or an object with `predict(premises, hypotheses)`.

    Verdicts may be label strings or objects with a `.label` (e.g. the labeling package's `Suggestion`).
    """
    fn = getattr(obj, "predict", None)
    fn = fn if callable(fn) else obj if callable(obj) else None
    if fn is None:
        raise ConvFillError(f"{type(obj).__name__} is not an NLI judge (need predict(premises, hypotheses))")

    def judge(premises: list[str], hypotheses: list[str]) -> list[str]:
        return [normalize_label(getattr(v, "label", v)) for v in fn(premises, hypotheses)]

    return judge


def entail_judge(model: str | None = None) -> tuple[Judge, str]:
    """(judge, the id of the model it runs) from `convfill.nli.judge`.

    Loaded by `judge.named_judge`: a named `model` exactly or ConfigError; without one the configured judge,
    falling back to the shipped offline judge, as in the labeling workbench.
    """
    obj, _ = named_judge(model)
    return _as_judge(obj), obj.model_id


def load_turns(paths: Iterable[str | Path]) -> list[list[Event]]:
    """Turns (event lists) from per-item QA JSONL files written by `qa`."""
    turns = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"records file not found: {path}")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                turns.append([event_from_dict(d) for d in json.loads(line)["events"]])
    return turns


def run_entail(turns: Sequence[Sequence[Event]], judge: Judge, out_dir: str | Path | None = None,
               title: str = "Entailment of Talker phrases", judge_name: str | None = None) -> dict:
    """Judge every phrase of `turns`; with `out_dir`, write `entail.md`, `entail.png`, `entail_pairs.jsonl`."""
    pairs = [p for i, events in enumerate(turns) for p in phrase_pairs(events, i)]
    if not pairs:
        raise ConvFillError("no phrases to judge (the turns said nothing)")
    labels = list(judge([p.premise for p in pairs], [p.hypothesis for p in pairs]))
    table = entail_table(pairs, labels)
    summary = {"n_turns": len(turns), "n_phrases": len(pairs), "table": table, "judge_model": judge_name}
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "entail_pairs.jsonl").open("w", encoding="utf-8") as f:
            for p, lab in zip(pairs, labels):
                f.write(json.dumps({**asdict(p), "label": normalize_label(lab)}, ensure_ascii=False) + "\n")
        rows = [(kind, r["n"], *(None if r[lab] is None else f"{r[lab]:.1f}" for lab in LABELS))
                for kind, r in table.items()]
        md = [f"# {title}\n",
              "Premise = knowledge chunk (fillers: the user utterance) + earlier phrases of the turn; "
              "hypothesis = the phrase. Percent of phrases per NLI label"
              + (f"; judge: `{judge_name}`" if judge_name else "") + ".\n",
              markdown_table(("phrases", "n", "E %", "N %", "C %"), rows), "\n![E/N/C](entail.png)\n"]
        (out / "entail.md").write_text("\n".join(md), encoding="utf-8")
        shares = {k: {lab: v or 0.0 for lab, v in table[k].items() if lab in LABELS}
                  for k in table if table[k]["n"]}
        plot_stacked(shares, LABELS, out / "entail.png", title)
        summary |= {"markdown": str(out / "entail.md"), "png": str(out / "entail.png")}
    return summary
