"""Validator for ConvFill seed corpora (JSONL, one `{"conversation": [...]}` per line).

It owns the written rules of the seed corpus (issue 9) so that a human-written corpus and the trained
Talker cannot quietly drift into the known flaws of the released data:

* structure: `{"conversation": [{"user", "thoughts", "response"}]}` (optional `"domain"`), equal-length
  thoughts/response, non-empty strings, no control tokens (detected with `convfill.prompt.sanitize`, the
  same function the prompt builder uses, so "clean" means "survives the prompt unchanged");
* spoken style: a Talker phrase is spoken aloud, so no digits, markdown, bullets, URLs or emojis;
* `<sil>` rules: a thoughts entry is either a knowledge chunk or exactly `"<sil>"`;
* fillers (the phrase for a `<sil>`) must not invent facts: no numbers, no proper nouns the Talker could
  not have seen (its visible context is the user turn, its earlier phrases, and the previous turn), short;
* knowledge phrases should carry their chunk: a crude content-word coverage check, and names/numbers in
  the phrase that are in neither the chunk nor the visible context (new facts) -> warnings;
* diversity: no phrase (case/punctuation-normalised) used more than twice across all input files;
* optional NLI (`--nli`): a knowledge phrase must not be judged a contradiction of its premise (the
  workbench's `convfill.nli.premise_for`: the chunk followed by the turn's earlier phrases).

Errors make the CLI exit 1; warnings are heuristics a human should look at. It also reports corpus
statistics and can write a deterministic 10% held-out split by conversation (`--split-out DIR`).

The checks live in `training.corpus_checks` (word rules in `training.corpus_text`); this module is the CLI.

CLI: `python -m training.validate_corpus FILE... [--json] [--split-out DIR] [--seed N] [--nli]`
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from convfill.splits import HELDOUT_FRAC, write_split

from .corpus_checks import MIN_COVERAGE, Stats, validate_files


def load_nli() -> tuple[Callable[[str, str], str] | None, str]:
    """The labeling workbench's NLI judge as `fn(premise, hypothesis) -> label`, or (None, why not).

    Same choice as the workbench: `CONVFILL_NLI_MODEL` or the paper's DeBERTa-v3 MNLI, else the shipped
    offline judge. The message names the model that judges.
    """
    from convfill.nli.judge import load_judge

    judge, message = load_judge()
    if judge is None:
        return None, f"NLI check skipped: {message}"
    return (lambda premise, hypothesis: judge.predict([premise], [hypothesis])[0].label), message


# ------------------------------------------------------------------------------------------------- CLI


def format_stats(st: Stats) -> str:
    t = max(st.turns, 1)
    lines = [
        f"conversations        {st.conversations}",
        f"turns                {st.turns}",
        f"phrase pairs         {st.phrase_pairs} (knowledge {st.knowledge_pairs}, fillers {st.fillers})",
        f"leading fillers      {st.leading_fillers}; per-turn histogram {st.leading_filler_hist}",
        f"mid-turn <sil>       {st.mid_turn_sil} in {st.turns_with_mid_turn_sil} turns "
        f"({st.turns_with_mid_turn_sil / t:.1%} of turns)",
        f"filler runs of 2-3   {st.filler_runs_2_3} (in {st.turns_with_filler_run_2_3} turns); longer runs "
        f"{st.filler_runs_over_3}",
        f"turns w/o knowledge  {st.turns_without_knowledge}",
        f"mean words           filler {st.mean_filler_words}, knowledge phrase {st.mean_knowledge_phrase_words}",
        f"distinct responses   {st.distinct_responses}; max reuse {st.max_response_reuse}",
    ]
    if st.domains:
        lines.append("domains              " + ", ".join(f"{k} {v}" for k, v in st.domains.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.validate_corpus",
                                 description="Check a ConvFill JSONL corpus against the seed-corpus rules.")
    ap.add_argument("files", nargs="+", help="JSONL files, validated together (reuse is counted across all)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--split-out", metavar="DIR", help="write train.jsonl / heldout.jsonl (by conversation)")
    ap.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    ap.add_argument("--heldout-frac", type=float, default=HELDOUT_FRAC, help="held-out share (default 0.1)")
    ap.add_argument("--min-coverage", type=float, default=MIN_COVERAGE,
                    help="warn when a phrase covers less of its chunk's content words (default 0.34)")
    ap.add_argument("--nli", action="store_true", help="also check chunk->phrase with the NLI judge")
    ap.add_argument("--max-warnings", type=int, default=50, help="warnings to print in text mode (default 50)")
    ns = ap.parse_args(argv)
    if not 0 <= ns.heldout_frac < 1:
        ap.error("--heldout-frac must be in [0, 1)")

    nli, notes = None, []
    if ns.nli:
        nli, msg = load_nli()
        notes.append(msg)
        if nli is None:
            print(msg, file=sys.stderr)
    rep, convs = validate_files(ns.files, min_coverage=ns.min_coverage, nli=nli)
    rep.notes.extend(notes)
    split_info = None
    if ns.split_out:
        if rep.ok:
            n_train, n_held = write_split([c.data for c in convs], ns.split_out, ns.seed, ns.heldout_frac)
            split_info = {"dir": ns.split_out, "train": n_train, "heldout": n_held, "seed": ns.seed}
        else:
            rep.notes.append("split not written: fix the errors first")
    if ns.json:
        d = rep.to_dict()
        d["split"] = split_info
        print(json.dumps(d, indent=2, ensure_ascii=False))
    else:
        for i in rep.errors:
            print(i)
        for i in rep.warnings[: ns.max_warnings]:
            print(i)
        if len(rep.warnings) > ns.max_warnings:
            print(f"... {len(rep.warnings) - ns.max_warnings} more warnings (use --json for all)")
        print(format_stats(rep.stats))
        for n in rep.notes:
            print(n)
        if split_info:
            print(f"split: {split_info['train']} train / {split_info['heldout']} held-out conversations "
                  f"-> {split_info['dir']} (seed {split_info['seed']})")
        print(f"{len(rep.errors)} errors, {len(rep.warnings)} warnings")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
