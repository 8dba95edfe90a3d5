"""What every training script shares: device and dtype choice, seeding, model loading, dataclass -> argparse.

One place so the finetune script, the NLI trainer and benchmarks pick devices and load the shipped GGUF
the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convfill.config import check_bounds
from convfill.errors import ConfigError


def topt(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None,
         hi: float | None = None, metavar: str | None = None, required: bool = False):
    """A config field with its --help text, optional choices and bounds (checked by `check_bounds`).

    `required` only makes the CLI flag mandatory; the dataclass keeps `default` for programmatic use.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "lo": lo, "hi": hi,
                                            "metavar": metavar, "required": required})


def _base_type(annotation) -> tuple[type, bool]:
    """(element type, is_list) of an annotation like `int`, `str | None`, `tuple[str, ...]`."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"tuple": tuple, "list": list})  # from __future__ annotations
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin in (tuple, list):
        return typing.get_args(annotation)[0], True
    return annotation, False


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--flag` per dataclass field; help says the default. Bools get `--x/--no-x`."""
    for f in dataclasses.fields(cls):
        typ, many = _base_type(f.type)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        shown = " ".join(map(str, default)) if many else default
        suffix = " (required)" if f.metadata.get("required") else \
            "" if default is None else f" (default: {shown})"
        kw: dict = {"dest": f.name, "default": default, "help": f.metadata.get("help", "") + suffix,
                    "required": bool(f.metadata.get("required"))}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = typ
            if many:
                kw["nargs"] = "+"
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
            if f.metadata.get("metavar"):
                kw["metavar"] = f.metadata["metavar"]
        parser.add_argument(flag, **kw)


def config_from_arguments(cls: type, ns: argparse.Namespace):
    """Build the dataclass from parsed arguments (lists become tuples), validating bounds."""
    vals = {}
    for f in dataclasses.fields(cls):
        v = getattr(ns, f.name)
        vals[f.name] = tuple(v) if isinstance(v, list) else v
    cfg = cls(**vals)
    check_bounds(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Device, dtype, seed


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors live. `autocast_dtype` is None when computing in fp32."""

    device: str
    dtype: str  # "float32" | "bfloat16" | "float16": the compute dtype (weights stay fp32)

    @property
    def autocast_dtype(self):
        import torch

        return None if self.dtype == "float32" else getattr(torch, self.dtype)

    def autocast(self):
        """Mixed-precision context; a no-op in fp32. On CPU, bf16 pays off only where the CPU has native bf16
        (avx512_bf16/AMX): SmolLM2 LoRA steps took 20 s vs 29 s in fp32 on the dev box, see docs/benchmarks.md."""
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast_dtype)


def pick_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """CUDA when available, else CPU; bf16 on CUDA GPUs that support it, fp32 on CPU.

    Weights and the optimizer stay fp32 (master weights); bf16 is used through autocast, the nanoGPT
    recipe, so no loss scaling is needed. fp16 gets a GradScaler in the training loop.
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but torch sees no CUDA GPU")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    if dtype == "float16" and not device.startswith("cuda"):
        raise ConfigError("float16 training needs a CUDA GPU; use float32 on CPU")
    return Runtime(device, dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, torch (CPU and CUDA) so a run and its resumed twin see the same numbers."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# ---------------------------------------------------------------------------------------------------------
# Models


def resolve_model(model: str | None) -> tuple[str, dict]:
    """(`from_pretrained` source, extra kwargs) for a hub id, local dir or GGUF file; None = shipped GGUF."""
    from convfill.talkers.llamacpp import default_gguf_path

    if model is None:
        model = str(default_gguf_path())
    if model.endswith(".gguf"):
        p = Path(model)
        if not p.exists():
            raise ConfigError(f"GGUF file not found: {model}")
        return str(p.parent), {"gguf_file": p.name}
    return model, {}


def load_model_and_tokenizer(model: str | None):
    """fp32 causal LM + tokenizer from a hub id, local dir or GGUF (dequantized); clear error on failure."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, kw = resolve_model(model)
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
        lm = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw)
    except Exception as e:
        hint = " (offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ConfigError(f"could not load model {model or src!r}{hint}: {e}") from e
    if getattr(lm, "hf_quantizer", None) is not None:
        lm = _dequantized_copy(lm)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return lm, tok


def _dequantized_copy(lm):
    """Drop the "quantized" mark of a GGUF-loaded model so it can be trained and saved.

    transformers marks a model loaded with `gguf_file=` as quantized and refuses `save_pretrained` on it,
    although its weights were already dequantized to fp32 on load; nothing else depends on the mark.
    """
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    return lm
