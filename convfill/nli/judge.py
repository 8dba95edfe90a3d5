"""The NLI judge: which Talker phrases are entailed by what the Talker was given.

Owns three things every caller shares, so the CLI, the store and the tab judge phrases identically:

* `premise_for` - the paper's premise/hypothesis pairing. A knowledge phrase is judged against its
  knowledge chunk followed by the earlier phrases of the turn; a filler (from `<sil>`) has no chunk, so it is
  judged against the user utterance followed by the earlier phrases, and is flagged as a filler.
* `NLIJudge` - any Hugging Face sequence-classification NLI model (hub id or local directory). Label names
  come from the model's `config.id2label`, never from a hard-coded order, because NLI checkpoints disagree
  on it (MNLI heads use 0=entailment or 0=contradiction depending on who trained them).
* `load_judge` - the configured/default model, else the project's offline judge, else `None` with a reason
  the UI can show as is. Offline (`HF_HUB_OFFLINE=1`) a hub id is only looked up in the local cache, so a
  missing model fails in milliseconds instead of waiting on the network.

torch/transformers are imported lazily: the store and the tab import this module for `premise_for`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from convfill.errors import ConvFillError
from convfill.hub import hub_offline
from convfill.nli import LABELS, NLIPair, normalize_label, premise_for  # noqa: F401 - the pair's home, re-exported
from convfill.nli.encode import MAX_LENGTH, encode_pairs

DEFAULT_MODEL = "MoritzLaurer/DeBERTa-v3-base-mnli"  # the judge the ConvFill paper used
MODEL_ENV = "CONVFILL_NLI_MODEL"  # overrides DEFAULT_MODEL for the app and the CLI
DEFAULT_BATCH_SIZE = 16


class TurnJudge(Protocol):
    """What the Chat tab needs from a background judge of stored turns (the workbench's `labeling.live.LiveJudge`):
    the app shell depends on this interface, the assembler (`app.py`) hands in the implementation."""

    def load(self) -> tuple["NLIJudge | None", str]: ...

    def submit(self, turn_id: str) -> None: ...

    def wait(self, turn_id: str, timeout: float) -> bool: ...

    def labels(self, turn_id: str) -> dict[int, str]: ...


class NLIError(ConvFillError):
    """An NLI model could not be loaded or does not look like a 3-way NLI classifier."""


@dataclass(frozen=True)
class Suggestion:
    """A model's verdict on one pair.

    Parameters:
        label: entailment, neutral or contradiction (the arg-max of `probs`).
        probs: probability per label (sums to 1).
        model_id: the hub id or path of the model that produced it.
    """

    label: str
    probs: dict[str, float] = field(default_factory=dict)
    model_id: str = ""


def _offline_requested() -> bool:
    """HF_HUB_OFFLINE set, or the hub unreachable (then we do not wait through the client's retries)."""
    return hub_offline()


class NLIJudge:
    """A sequence-classification NLI model that labels (premise, hypothesis) pairs in batches.

    Args:
        model: hub id or local directory to load, or an already built `PreTrainedModel`.
        tokenizer: the tokenizer when `model` is an object (loaded from `model` otherwise).
        model_id: the name stored with every suggestion (defaults to `model` when it is a string).
        batch_size: pairs per forward pass.
        device: torch device ("cpu" default; the app runs on CPU).
        max_length: tokens per pair (`convfill.nli.encode`: the premise is cut, never the phrase).

    Raises:
        NLIError: the model cannot be loaded, or its `id2label` has no NLI label names.
    """

    def __init__(self, model, tokenizer=None, *, model_id: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu", max_length: int = MAX_LENGTH):
        if isinstance(model, (str, os.PathLike)):
            local = Path(model).expanduser()
            model_id = model_id or (str(local.resolve()) if local.exists() else str(model))
            model, tokenizer = self._load(str(model))
        if tokenizer is None:
            raise NLIError("NLIJudge needs a tokenizer when given a model object")
        self.model_id = model_id or getattr(model.config, "name_or_path", "") or "nli-model"
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        id2label = dict(getattr(model.config, "id2label", {}) or {})
        try:
            self.index_labels = [normalize_label(id2label[i]) for i in range(model.config.num_labels)]
        except (KeyError, ValueError) as e:
            raise NLIError(f"{self.model_id} is not an NLI classifier: config.id2label = {id2label} "
                           "(need entailment/neutral/contradiction names)") from e
        missing = set(LABELS) - set(self.index_labels) - ({"neutral"} if len(self.index_labels) == 2 else set())
        if "entailment" in missing or (len(self.index_labels) == 3 and missing):
            raise NLIError(f"{self.model_id}: config.id2label = {id2label} lacks {sorted(missing)}")

    @staticmethod
    def _load(name: str):
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as e:  # pragma: no cover - transformers is in requirements.txt
            raise NLIError("the NLI judge needs `transformers` (pip install transformers)") from e
        local = Path(name).expanduser()
        offline = _offline_requested()
        if local.exists():
            name, kw = str(local), {"local_files_only": True}
        elif name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
            raise NLIError(f"NLI model directory not found: {name}")
        else:
            kw = {"local_files_only": offline}
        try:
            tok = AutoTokenizer.from_pretrained(name, **kw)
            model = AutoModelForSequenceClassification.from_pretrained(name, **kw)
        except (OSError, ValueError, ImportError) as e:
            where = "not in the local Hugging Face cache and the hub is offline" if offline and not local.exists() \
                else str(e).splitlines()[0][:200]
            raise NLIError(f"cannot load NLI model {name!r}: {where}") from e
        return model, tok

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str], *,
                progress: bool = False) -> list[Suggestion]:
        """Label each (premise, hypothesis) pair.

        Args:
            premises: premises, one per pair.
            hypotheses: hypotheses, same length as `premises`.
            progress: show a tqdm bar on stderr (batch jobs).
        """
        import torch

        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        out: list[Suggestion] = []
        starts = range(0, len(premises), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"NLI {Path(self.model_id).name}", unit="batch")
        for s in starts:
            p, h = list(premises[s:s + self.batch_size]), list(hypotheses[s:s + self.batch_size])
            enc = self.encode(p, h)
            with torch.inference_mode():
                probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().tolist()
            for row in probs:
                d = {lab: 0.0 for lab in LABELS}
                for i, pr in enumerate(row):
                    d[self.index_labels[i]] += float(pr)
                out.append(Suggestion(label=max(d, key=d.get), probs=d, model_id=self.model_id))
        return out

    def encode(self, premises: Sequence[str], hypotheses: Sequence[str]) -> dict:
        """One padded batch of model inputs, by the shared rule (`convfill.nli.encode.encode_pairs`)."""
        enc = self.tokenizer.pad(encode_pairs(self.tokenizer, premises, hypotheses, max_length=self.max_length),
                                 return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def judge(self, pairs: Sequence[NLIPair], *, progress: bool = False) -> list[Suggestion]:
        """`predict` over `premise_for` pairs."""
        return self.predict([p.premise for p in pairs], [p.hypothesis for p in pairs], progress=progress)


def configured_model() -> str:
    """The model the app and CLI try first: `CONVFILL_NLI_MODEL`, else the paper's DeBERTa-v3 MNLI."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def load_offline_judge(**kw) -> NLIJudge:
    """The project's own offline judge (`convfill.nli.offline`), or NLIError when it is not installed."""
    try:
        from .offline import build_offline_judge
    except ImportError as e:
        raise NLIError("no offline judge is installed (convfill.nli.offline is missing)") from e
    try:
        model, tok = build_offline_judge()
    except (FileNotFoundError, ImportError, OSError) as e:
        raise NLIError(f"the offline judge is not available: {e}") from e
    return NLIJudge(model, tok, model_id=model.name_or_path, **kw)


def load_judge(model: str | None = None, *, fallback: bool = True, **kw) -> tuple[NLIJudge | None, str]:
    """Load the configured judge, else the offline one; never raises.

    Args:
        model: hub id or path; None means `configured_model()`.
        fallback: try the offline judge when `model` cannot be loaded.
        **kw: passed to `NLIJudge` (batch_size, device).

    Returns:
        (judge, message): the judge and what was loaded, or (None, why nothing could be loaded) - a plain
        sentence for the UI and the CLI.
    """
    name = model or configured_model()
    try:
        return NLIJudge(name, **kw), f"NLI judge: {name}"
    except Exception as e:  # noqa: BLE001 - a broken checkpoint can raise anything; the UI needs a sentence
        first = str(e) if isinstance(e, NLIError) else f"cannot load NLI model {name!r}: {type(e).__name__}: {e}"
    if not fallback:
        return None, first
    try:
        j = load_offline_judge(**kw)
        return j, f"NLI judge: {j.model_id} (offline fallback; {first})"
    except Exception as e:  # noqa: BLE001
        return None, f"No NLI model could be loaded ({first}; {e}). You can still label every phrase by hand."
