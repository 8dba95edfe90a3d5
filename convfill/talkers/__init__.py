"""Talkers: the runtimes, their registry (`registry.py`: name -> class, imported lazily) and `TalkerSpec`.

`get_talker("llamacpp", ...)` falls back to the transformers runtime on the same weights (the GGUF
dequantized, the LoRA adapter folded in) when llama.cpp cannot run on this machine (`probe`); the
Talker's `describe()["fallback"]` then says why, for the UI and `--json` output. `TalkerSpec` (spec.py) is
the one place settings (CLI flags, the app's Talker box, evaluation configs) become a `get_talker` call.
"""

from __future__ import annotations

from .base import Talker
from .probe import RuntimeUnavailable
from .registry import TALKERS, get_talker
from .spec import TalkerSpec

__all__ = ["TALKERS", "RuntimeUnavailable", "Talker", "TalkerSpec", "get_talker"]
