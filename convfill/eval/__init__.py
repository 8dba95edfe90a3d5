"""Evaluation harness: the paper's three tables, one command each (`python -m convfill.eval qa|ttft|entail`),
and every other measurement of the project under the same CLI (`python -m convfill.eval --help`).

* `qa.py`      - open-domain QA (NQ-open) through the real engine in convfill / reasoner / talker mode;
* `ttft.py`    - Talker TTFT vs Reasoner-alone first token vs first knowledge phrase, per latency profile;
* `entail.py`  - E/N/C shares of Talker phrases under an NLI judge, knowledge phrases vs fillers;
* `talker.py`  - Talker quality on held-out ConvFill turns, teacher-forced (`talker_scores.py`: its slots,
  split and word-rule scores);
* `bench.py`   - Talker TTFT and decode speed on realistic first phrases (also `python -m convfill bench`);
* `normalize.py` - the answer-matching rule; `direct.py` - a Reasoner-alone turn as events;
* `report.py`  - markdown tables and PNG plots; `cli.py` - the command line.

Latencies are always `convfill.metrics.turn_metrics` + `summarize`: no formula lives here.
"""

import importlib

# Re-exports, loaded on first use: `python -m convfill bench` imports `convfill.eval.bench` to build its
# parser, and must not pay for the engine (numpy, voice) on every start.
_EXPORTS = {"MODES": "qa", "QAItem": "qa", "arun_qa": "qa", "load_items": "qa", "sample_items": "qa",
            "match_answers": "normalize", "normalize_answer": "normalize"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
