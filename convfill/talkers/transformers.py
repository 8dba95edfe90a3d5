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
from . import fillers
from .base import Talker

# GGUF LoRA tensor name (per layer) -> the transformers llama module it adapts.
_GGUF_MODULES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def unpermute(w, n_head: int):
    """llama.cpp -> HF row order of a q or k projection (what transformers' GGUF loader does to the base
    weights; inverse of `training.export_gguf.permute`)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def merge_gguf_lora(model, adapter_path: str | Path, scale: float = 1.0) -> int:
    """Fold a llama.cpp GGUF LoRA adapter into a transformers llama model's weights, in place:
    W += scale * alpha / r * B @ A, with B's rows of q and k put back into HF order. Returns how many
    weight matrices changed. This is how the fallback runtime gets the same Talker as llama.cpp."""
    import torch

    from .merge import read_lora

    cfg = model.config
    heads = {"attn_q": cfg.num_attention_heads, "attn_k": getattr(cfg, "num_key_value_heads", None)
             or cfg.num_attention_heads}
    layers = model.model.layers
    merged = 0
    for name, (a, b, lora_scale) in read_lora(Path(adapter_path)).items():
        _, layer, kind = name.removesuffix(".weight").split(".")
        if kind in heads:
            b = unpermute(b, heads[kind])
        module = layers[int(layer)].get_submodule(_GGUF_MODULES[kind])
        delta = torch.from_numpy(b @ a) * (scale * lora_scale)
        with torch.no_grad():
            module.weight += delta.to(module.weight.dtype)
        merged += 1
    return merged


class TransformersTalker(Talker):
    """Talker on transformers.

    Args:
        model: hub id, local dir, or a GGUF file path; None = the shipped GGUF.
        style: "convfill" (default, and with an adapter) or "prompted" (default for the bare shipped base).
        lora_path: a llama.cpp GGUF LoRA adapter folded into the weights at load (`merge_gguf_lora`), so
            this runtime serves the same Talker as `LlamaCppTalker(lora_path=...)`.
        fallback: why this runtime stands in for llama.cpp (shown in the UI and `describe()`), if it does.
        temperature: 0 = greedy.
        filler_sampling: how fillers are decoded, as in `LlamaCppTalker` ("auto", "off" or a
            `fillers.FillerSampling`): seeded sampling steered away from the phrases just heard; knowledge
            phrases stay greedy. The same settings as llama.cpp, but not the same random draws.
        device: "cpu", "cuda" or None (CUDA when available).
    """

    runtime = "transformers"

    def __init__(self, model: str | None = None, *, style: str | None = None, template: str = "chatml",
                 temperature: float = 0.0, top_p: float = 0.9, device: str | None = None,
                 system: str | None = None, seed: int = 0, lora_path: str | Path | None = None,
                 fallback: str | None = None, filler_sampling="auto"):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # pragma: no cover
            raise TalkerLoadError("The transformers Talker needs torch and transformers installed") from e
        from .llamacpp import default_gguf_path

        if style is None:
            style = "prompted" if model is None and lora_path is None else "convfill"
        if model is None:
            model = str(default_gguf_path())
        name = Path(model).name if Path(model).exists() else model
        if lora_path is not None:
            if not Path(lora_path).exists():
                raise TalkerLoadError(f"LoRA adapter not found: {lora_path}")
            name += f"+{Path(lora_path).name}"
        super().__init__(name, template, system, style)
        self.fallback = fallback
        self.torch = torch
        self.temperature, self.top_p = temperature, top_p
        self.seed = seed
        self.filler_sampling = fillers.resolve(filler_sampling)
        self._vocab: fillers.VocabIndex | None = None
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
        if lora_path is not None:
            merge_gguf_lora(self.model, lora_path)
        self.model.eval()
        self._stop_ids = {i for i in (self.tokenizer.eos_token_id,) if i is not None}
        for s in self.template.stops:
            ids = self.tokenizer.encode(s, add_special_tokens=False)
            if len(ids) == 1:
                self._stop_ids.add(ids[0])
        self._cache = None
        self._cached_ids: list[int] = []
        if self.filler_sampling is not None:
            self._vocab_index()  # once at load, not inside the first filler's time to first token

    def describe(self) -> dict:
        d = super().describe()
        return {**d, "fallback": self.fallback} if self.fallback else d

    def tokenize(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt, add_special_tokens=False)

    def phrase_options(self, ctx, prompt: str) -> dict:
        if self.temperature > 0:
            return {}
        plan = fillers.plan_for(ctx, prompt, self.filler_sampling, self.seed)
        return {"filler": plan} if plan else {}

    def _vocab_index(self) -> fillers.VocabIndex:
        if self._vocab is None:
            self._vocab = fillers.VocabIndex([self.tokenizer.decode([i]) for i in range(len(self.tokenizer))])
        return self._vocab

    def _sample_filler(self, logits, plan: fillers.FillerPlan, said: str, generator) -> int:
        """One token of a filler: bans (steering, digits), then top-k, top-p, min-p, temperature."""
        torch = self.torch
        fs = plan.sampling
        logits = logits.float().clone()
        if fs.steer:
            banned = plan.steer(self._vocab_index()).banned_ids(said)
            banned = banned[banned < logits.shape[-1]]
            if len(banned):
                logits[torch.from_numpy(banned)] = -float("inf")
        if fs.temperature <= 0:
            return int(torch.argmax(logits))
        vals, ids = torch.topk(logits, min(fs.top_k or logits.shape[-1], logits.shape[-1]))
        probs = torch.softmax(vals, -1)
        keep = torch.cumsum(probs, -1) - probs < fs.top_p  # the smallest set reaching top_p
        keep &= probs >= fs.min_p * probs[0]
        keep[0] = True
        vals, ids = vals[keep], ids[keep]
        probs = torch.softmax(vals / fs.temperature, -1).cpu()
        return int(ids[int(torch.multinomial(probs, 1, generator=generator))])

    def _prefill(self, ids: list[int]):
        """Logits for the last prompt token, reusing the cached prefix."""
        torch = self.torch
        keep = 0
        for a, b in zip(self._cached_ids, ids[:-1]):
            if a != b:
                break
            keep += 1
        if self._cache is not None and keep > 0:
            drop = self._cache.get_seq_length() - keep
            if drop > 0:  # transformers 5: crop(-n) removes the last n positions (a positive n is refused)
                self._cache.crop(-drop)
        else:
            self._cache, keep = None, 0
        new = torch.tensor([ids[keep:]], device=self.device)
        out = self.model(input_ids=new, past_key_values=self._cache, use_cache=True)
        self._cache = out.past_key_values
        self._cached_ids = list(ids)
        return out.logits[0, -1]

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event,
                 filler: fillers.FillerPlan | None = None) -> Iterator[str]:
        torch = self.torch
        ids = self.tokenize(prompt)
        filler_gen = torch.Generator(device="cpu").manual_seed(filler.seed) if filler is not None else None
        with torch.inference_mode():
            logits = self._prefill(ids)
            out_ids: list[int] = []
            emitted = ""
            for _ in range(max_tokens):
                if stop.is_set():
                    break
                if filler is not None:
                    tok = self._sample_filler(logits, filler, self.tokenizer.decode(out_ids), filler_gen)
                elif self.temperature > 0:
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
