"""`TalkerSpec`: the one place settings become a Talker (as `ReasonerSpec` is for Reasoners).

Three front doors say which Talker to run: the command-line flags (`from_args`), the app's Talker box
(`from_box`) and the evaluation's `compare` configs (`parse`). Each only fills the fields below; what the
fields mean (the runtime's defaults, which options a runtime takes) is decided once, in `build`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from ..errors import ConfigError
from . import registry

# The app's Talker box entries that name no file (the box also takes a GGUF path, a hub id / local
# directory, or `runtime:model`).
DEFAULT_TALKER = "default (seed-trained ConvFill adapter on SmolLM2-135M-Instruct, llama.cpp)"
BASE_TALKER = "bare SmolLM2-135M-Instruct, prompted (no adapter)"
# The llama.cpp runtime's own adapter word for "no adapter" (`llamacpp.resolve_adapter`): BASE_TALKER's.
NO_ADAPTER = "none"
# `parse` keys: which Talker, never its decoding, so every config of a comparison decodes alike.
CONFIG_KEYS = {"talker": "runtime", "model": "model", "lora": "lora", "style": "style"}


@dataclass(frozen=True)
class TalkerSpec:
    """Which Talker to build; hashable, so the app's model pool keys loaded Talkers by it.

    Parameters:
        runtime: registry name (`convfill.talkers.TALKERS`: llamacpp, transformers, remote).
        model: GGUF path (llamacpp), hub id / local dir / GGUF (transformers), server URL (remote);
            None = the shipped SmolLM2-135M-Instruct GGUF.
        lora: llama.cpp adapter: a GGUF path, "seed" (the shipped seed adapter), "none" (the bare model);
            None = the runtime's "auto" (the seed adapter on the shipped base, none on another model).
        style: prompt style, convfill | prompted; None = prompted for the bare shipped base, else convfill.
        temperature: sampling temperature (0 = greedy).
        seed: sampling seed.
        threads: llama.cpp CPU threads; None = its default.
    """

    runtime: str = "llamacpp"
    model: str | None = None
    lora: str | None = None
    style: str | None = None
    temperature: float = 0.0
    seed: int = 0
    threads: int | None = None

    @classmethod
    def from_args(cls, args, **extra) -> TalkerSpec:
        """The shared Talker flags of `convfill.parts.add_model_args` (--talker, --talker-model,
        --talker-lora, --talker-style, --temperature); `extra` sets fields no flag names (seed, threads)."""
        temperature = getattr(args, "temperature", None)
        return cls(runtime=args.talker, model=args.talker_model, lora=args.talker_lora or None,
                   style=args.talker_style,
                   **({"temperature": temperature} if temperature is not None else {}), **extra)

    @classmethod
    def from_box(cls, text: str | None) -> TalkerSpec:
        """The app's Talker box: blank or `DEFAULT_TALKER` -> the shipped GGUF with its seed adapter;
        `BASE_TALKER` -> the shipped GGUF bare; `*.gguf` -> llama.cpp; anything else (hub id, local
        directory) -> transformers; `runtime:model` picks the runtime explicitly."""
        text = (text or "").strip()
        if not text or text == DEFAULT_TALKER:
            return cls()
        if text == BASE_TALKER:
            return cls(lora=NO_ADAPTER)
        head, sep, rest = text.partition(":")
        if sep and head in registry.TALKERS:
            return cls(runtime=head, model=rest.strip() or None)
        return cls(runtime="llamacpp" if text.lower().endswith(".gguf") else "transformers", model=text)

    @classmethod
    def parse(cls, text: str, **defaults) -> TalkerSpec:
        """A config such as `talker=llamacpp,lora=a.gguf,style=convfill` (keys: talker, model, lora, style);
        `defaults` fill the fields the text does not set. ConfigError naming a bad item."""
        values = dict(defaults)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in CONFIG_KEYS:
                raise ConfigError(f"bad Talker config item {part!r}: use {', '.join(k + '=' for k in CONFIG_KEYS)}")
            values[CONFIG_KEYS[key.strip()]] = value.strip() or None
        return cls(**values)

    def resolved(self) -> TalkerSpec:
        """This spec with its model file's real path: every spelling of one file is one model in memory."""
        if self.model and os.path.exists(self.model):
            return replace(self, model=os.path.realpath(self.model))
        return self

    def options(self) -> dict:
        """The runtime's keyword options: adapter and threads are llama.cpp's alone (ConfigError for an
        adapter elsewhere: merge it into the weights for transformers)."""
        from .llamacpp import AUTO_ADAPTER  # on use: importing llamacpp loads the llama.cpp library

        opts = {"style": self.style, "temperature": self.temperature, "seed": self.seed}
        if self.runtime == "llamacpp":
            return {**opts, "lora_path": self.lora or AUTO_ADAPTER, "n_threads": self.threads or None}
        if self.lora:
            raise ConfigError(f"a LoRA adapter ({self.lora}) needs the llamacpp runtime, not {self.runtime!r} "
                              "(merge the adapter for transformers)")
        return opts

    def build(self):
        """The Talker (`convfill.talkers.get_talker`; options left None take the runtime's defaults)."""
        return registry.get_talker(self.runtime, self.model, **self.options())
