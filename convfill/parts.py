"""Settings -> parts: the Talker, Reasoner and engine flags every command line shares, and what builds a
Talker or Reasoner from them. `python -m convfill`, `python -m convfill.eval` and the labeling CLI add the same
flags from here; the app's controls build through the same `ReasonerSpec` / `TalkerSpec`.
"""

from __future__ import annotations

import argparse

from .config import EngineConfig, add_arguments


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Talker")
    g.add_argument("--talker", default="llamacpp", help="Talker runtime: llamacpp (GGUF) or transformers")
    g.add_argument("--talker-model", default=None,
                   help="GGUF path (llamacpp) or hub id / local dir (transformers); default: the shipped "
                        "SmolLM2-135M-Instruct Q4_1")
    g.add_argument("--talker-lora", default=None,
                   help="GGUF LoRA adapter for the llamacpp Talker: a path; 'seed' = the shipped seed-trained "
                        "ConvFill adapter; 'none' = the bare base model, prompted. Default: the seed adapter "
                        "on the shipped base, none on a --talker-model of your own")
    g.add_argument("--talker-style", choices=["convfill", "prompted"], default=None,
                   help="prompt style (default: prompted for the bare shipped base, i.e. --talker-lora none; "
                        "convfill otherwise)")
    g.add_argument("--temperature", type=float, default=0.0, help="Talker sampling temperature (0 = greedy)")
    g = p.add_argument_group("Reasoner")
    g.add_argument("--reasoner", default="local", help="Reasoner name (see `python -m convfill reasoners`)")
    g.add_argument("--knowledge", default=None, help="knowledge text for the oracle Reasoner")
    g.add_argument("--reasoner-delay", type=float, default=None,
                   help="seconds before the Reasoner's first chunk (oracle: its first-chunk latency; "
                        "local: a simulated network delay)")
    g.add_argument("--reasoner-gap", type=float, default=0.3, help="oracle: seconds between chunks")
    g.add_argument("--model", default=None, help="Reasoner model name (cloud/server Reasoners)")
    g.add_argument("--base-url", default=None,
                   help="a custom endpoint for the Reasoner (an OpenAI-compatible server, a proxy); it never "
                        "receives the provider's environment key, only the one named by --api-key-env")
    g.add_argument("--api-key-env", default=None,
                   help="environment variable holding the key for --base-url; the key itself is never a "
                        "flag, so it stays out of shell history")
    add_arguments(p.add_argument_group("Engine"), EngineConfig)


def talker_from_args(args):
    """The Talker of the Talker flags (`TalkerSpec.from_args`)."""
    from .talkers import TalkerSpec

    return TalkerSpec.from_args(args).build()


def reasoner_spec(args, direct: bool = False):
    """The `ReasonerSpec` of the Reasoner flags (`--knowledge` alone implies the oracle)."""
    from .reasoners import ReasonerSpec

    name = "oracle" if args.knowledge and args.reasoner == "local" else args.reasoner
    return ReasonerSpec(name=name, model=args.model or "", base_url=args.base_url or "",
                        api_key_env=args.api_key_env or "", knowledge=args.knowledge or "",
                        delay_s=args.reasoner_delay, gap_s=args.reasoner_gap, direct=direct)


def reasoner_from_args(args, direct: bool = False):
    """The Reasoner of the Reasoner flags; `direct`: it answers the user itself (the Reasoner-alone baseline)."""
    from .reasoners import build_reasoner as build

    return build(reasoner_spec(args, direct))
