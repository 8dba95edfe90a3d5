"""Labeling: the SQLite store shared by both app tabs, the NLI judge, human relabeling and exports.

Modules: `store` (LabelStore: turns, phrases, suggestions, labels), `migrations` (schema), `nli` (judge and
the premise/hypothesis rule), `scoring` (batch scoring), `agreement` (Cohen's kappa), `export` (ConvFill
JSONL / CSV, checked by `convfill.conversations`), `ui` (the Labeling tab), `cli` (`python -m labeling`).
"""
