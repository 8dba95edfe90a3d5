"""The latency table: what ConvFill buys over waiting for the Reasoner, across Reasoner latency profiles.

For each profile (a Reasoner and its first-token delay: `oracle:1.0` streams after 1 s, `local:2` is the
local model behind a simulated 2 s network delay) the same questions run twice:

* `convfill` mode gives the Talker's TTFT and the time to the first *knowledge* phrase;
* `reasoner` mode gives the Reasoner-alone first token, i.e. what the user would wait without a Talker.

All three numbers come from `convfill.metrics.turn_metrics` (see `direct.py` for why the Reasoner-alone
run is expressed as events too) and are summarised with `metrics.summarize` (mean ± std, p50, p95).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..clock import Clock
from ..config import EngineConfig
from ..errors import ConfigError
from ..metrics import summarize
from ..reasoners.base import Reasoner
from ..talkers.base import Talker
from .qa import QAItem, arun_qa
from .report import fmt_ms, markdown_table, mean_std, plot_distributions

DEFAULT_PROFILES = ("oracle:0.5", "oracle:1", "oracle:2")

# (row name, mode whose records it reads, TurnMetrics field)
ROWS = (("Talker TTFT (ConvFill)", "convfill", "talker_ttft_ms"),
        ("Reasoner alone, first token", "reasoner", "talker_ttft_ms"),
        ("First knowledge phrase (ConvFill)", "convfill", "first_knowledge_phrase_ms"))


@dataclass(frozen=True)
class Profile:
    """A Reasoner latency profile, written `name:delay_s` (e.g. `oracle:0.5`, `local:0`)."""

    reasoner: str
    delay_s: float

    @classmethod
    def parse(cls, spec: str) -> "Profile":
        name, _, delay = spec.partition(":")
        try:
            d = float(delay) if delay else 0.0
        except ValueError:
            raise ConfigError(f"bad profile {spec!r}: write NAME:SECONDS, e.g. oracle:0.5") from None
        if not name or d < 0:
            raise ConfigError(f"bad profile {spec!r}: write NAME:SECONDS with SECONDS >= 0")
        return cls(name, d)

    @property
    def label(self) -> str:
        return f"{self.reasoner}:{self.delay_s:g}s"


def profile_reasoner(profile: Profile, cache: dict[str, Reasoner], clock: Clock | None = None,
                     gap_s: float = 0.3) -> Reasoner:
    """The Reasoner of a profile. A model-backed Reasoner is loaded once and shared by its profiles."""
    from ..reasoners import get_reasoner

    if profile.reasoner == "oracle":
        return get_reasoner("oracle", first_chunk_s=profile.delay_s, gap_s=gap_s, clock=clock)
    if profile.reasoner not in cache:
        opts = {"clock": clock} if clock is not None else {}
        cache[profile.reasoner] = get_reasoner(profile.reasoner, **opts)
    r = copy.copy(cache[profile.reasoner])  # shares the loaded model; only the delay differs
    if not hasattr(r, "delay_s"):
        if profile.delay_s:
            raise ConfigError(f"Reasoner {profile.reasoner!r} has no simulated delay; use {profile.reasoner}:0")
        return r
    r.delay_s = profile.delay_s
    return r


async def arun_ttft(items: Sequence[QAItem], talker: Talker, profiles: Sequence[Profile],
                    out_dir: str | Path, config: EngineConfig | None = None, clock: Clock | None = None,
                    reasoner_factory: Callable[[Profile], Reasoner] | None = None,
                    progress: bool = True) -> dict:
    """Run every profile in both modes; write `ttft.md`, `ttft.png`, `ttft.json` and per-item JSONL."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Reasoner] = {}
    factory = reasoner_factory or (lambda p: profile_reasoner(p, cache, clock))
    results, series, table = [], {}, []
    for p in profiles:
        reasoner = factory(p)
        runs = {}
        for mode in ("convfill", "reasoner"):
            label = f"ttft_{mode}-{p.reasoner}-{p.delay_s:g}s"
            runs[mode] = await arun_qa(items, mode, talker, reasoner, config, clock, out, label, progress)
        entry = {"profile": p.label, "accuracy": {m: r.summary["accuracy"] for m, r in runs.items()}}
        for name, mode, key in ROWS:
            values = [getattr(rec.metrics, key) for rec in runs[mode].records]
            s = summarize(values)
            entry[key if mode == "convfill" else "reasoner_alone_first_token_ms"] = s
            series[f"{p.label} {name}"] = values
            table.append((p.label, name, s["n"], mean_std(s), fmt_ms(s["p50"]), fmt_ms(s["p95"])))
        results.append(entry)
    md = ["# Time to first token\n",
          "Per profile (Reasoner:first-token delay), the same questions run with ConvFill and with the "
          "Reasoner alone. ms since the turn started; mean ± std over items.\n",
          markdown_table(("profile", "measure", "n", "mean ± std (ms)", "p50 (ms)", "p95 (ms)"), table),
          "\n![TTFT distribution](ttft.png)\n"]
    (out / "ttft.md").write_text("\n".join(md), encoding="utf-8")
    png = plot_distributions(series, out / "ttft.png", "TTFT: Talker vs Reasoner alone vs first knowledge phrase")
    summary = {"n": len(items), "profiles": results, "markdown": str(out / "ttft.md"), "png": str(png)}
    (out / "ttft.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
