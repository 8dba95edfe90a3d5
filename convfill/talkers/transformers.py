"""transformers Talker: any causal LM by hub id, local directory or GGUF file (dequantized), on CPU or CUDA.

Used for trained Talkers before they are exported to GGUF, and for hub models such as
`vysri/SmolLM360M-IT-ConvFill` on a networked machine. The KV cache of the longest common token prefix of
consecutive prompts is kept and cropped, so the phrases of one turn only evaluate their new tail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import TalkerLoadError
from .base import Talker


class TransformersTalker(Talker):
    """Talker on transformers.

    Args:
        model: hub id, local dir, or a GGUF file path; None = the shipped GGUF.
        style: "convfill" (default) or "prompted" (default for the shipped base GGUF).
        temperature: 0 = greedy.
        device: "cpu", "cuda" or None (CUDA when available).
    """

    runtime = "transformers"

    def __init__(self, model: str | None = None, *, style: str | None = None, template: str = "chatml",
                 temperature: float = 0.0, top_p: float = 0.9, device: str | None = None,
                 system: str | None = None, seed: int = 0):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # pragma: no cover
            raise TalkerLoadError("The transformers Talker needs torch and transformers installed") from e
        from .llamacpp import default_gguf_path

        if style is None:
            style = "prompted" if model is None else "convfill"
        if model is None:
            model = str(default_gguf_path())
        super().__init__(Path(model).name if Path(model).exists() else model, template, system, style)
        self.torch = torch
        self.temperature, self.top_p = temperature, top_p
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        from ..hub import hub_offline

        kw: dict = {"local_files_only": True} if hub_offline() else {}
        src = model
        if model.endswith(".gguf"):
            kw["gguf_file"] = Path(model).name
            src = str(Path(model).parent)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(src, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw).to(self.device)
        except Exception as e:
            raise TalkerLoadError(f"transformers could not load {model!r}: {e}") from e
        self.model.eval()
        self._stop_ids = {i for i in (self.tokenizer.eos_token_id,) if i is not None}
        for s in self.template.stops:
            ids = self.tokenizer.encode(s, add_special_tokens=False)
            if len(ids) == 1:
                self._stop_ids.add(ids[0])
        self._cache = None
        self._cached_ids: list[int] = []

    def tokenize(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt, add_special_tokens=False)

    def _prefill(self, ids: list[int]):
        """Logits for the last prompt token, reusing the cached prefix."""
        torch = self.torch
        keep = 0
        for a, b in zip(self._cached_ids, ids[:-1]):
            if a != b:
                break
            keep += 1
        if self._cache is not None and keep > 0:
            self._cache.crop(keep)
        else:
            self._cache, keep = None, 0
        new = torch.tensor([ids[keep:]], device=self.device)
        out = self.model(input_ids=new, past_key_values=self._cache, use_cache=True)
        self._cache = out.past_key_values
        self._cached_ids = list(ids)
        return out.logits[0, -1]

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event) -> Iterator[str]:
        torch = self.torch
        ids = self.tokenize(prompt)
        with torch.inference_mode():
            logits = self._prefill(ids)
            out_ids: list[int] = []
            emitted = ""
            for _ in range(max_tokens):
                if stop.is_set():
                    break
                if self.temperature > 0:
                    probs = torch.softmax(logits.float() / self.temperature, -1).cpu()
                    tok = int(torch.multinomial(probs, 1, generator=self.generator))
                else:
                    tok = int(torch.argmax(logits))
                if tok in self._stop_ids:
                    break
                out_ids.append(tok)
                text = self.tokenizer.decode(out_ids, skip_special_tokens=False)
                if "\n" in text.lstrip() or any(s in text for s in self.template.stops):
                    cut = min([j for j in (text.find(s) for s in [*self.template.stops, "\n"]) if j > 0] +
                              [len(text)])
                    if cut > len(emitted):
                        yield text[len(emitted):cut]
                    break
                if not text.endswith("\ufffd") and len(text) > len(emitted):
                    yield text[len(emitted):]
                    emitted = text
                out = self.model(input_ids=torch.tensor([[tok]], device=self.device),
                                 past_key_values=self._cache, use_cache=True)
                self._cache = out.past_key_values
                self._cached_ids.append(tok)
                logits = out.logits[0, -1]
