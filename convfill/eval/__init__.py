"""Evaluation harness: the paper's three tables, one command each (`python -m convfill.eval qa|ttft|entail`).

* `qa.py`      - open-domain QA (NQ-open) through the real engine in convfill / reasoner / talker mode;
* `ttft.py`    - Talker TTFT vs Reasoner-alone first token vs first knowledge phrase, per latency profile;
* `entail.py`  - E/N/C shares of Talker phrases under an NLI judge, knowledge phrases vs fillers;
* `normalize.py` - the answer-matching rule; `direct.py` - a Reasoner-alone turn as events;
* `report.py`  - markdown tables and PNG plots; `cli.py` - the command line.

Latencies are always `convfill.metrics.turn_metrics` + `summarize`: no formula lives here.
"""

from .normalize import match_answers, normalize_answer
from .qa import MODES, QAItem, arun_qa, load_items, sample_items

__all__ = ["MODES", "QAItem", "arun_qa", "load_items", "match_answers", "normalize_answer", "sample_items"]
