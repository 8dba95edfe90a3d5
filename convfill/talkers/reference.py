"""The reference implementation's per-phrase procedure, for `python -m convfill bench --mode reference`.

The ConvFill authors' demo generates each phrase with transformers `generate` in bf16, greedy, streaming
through `TextIteratorStreamer` from a worker thread, and feeds the whole prompt again for every phrase (no
cache kept between phrases). Reproduced here on the same weights as our Talker (the shipped GGUF
dequantized, the adapter folded in, `transformers.TransformersTalker`), so the speed ratio is measured in one
run on whatever machine runs it. Only for measurement: the engine never uses it.
"""

from __future__ import annotations

import time

from ..prompt import PhraseContext


class ReferenceLoop:
    """Greedy bf16 `generate` + `TextIteratorStreamer`, whole prompt every phrase.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer.
        template, style: the prompt family and style (as the Talker it is compared with).
    """

    def __init__(self, model, tokenizer, talker):
        import torch

        self.torch = torch
        self.model = model.to(torch.bfloat16).eval()
        self.tokenizer = tokenizer
        self.talker = talker  # for its prompt (template, style, system) only

    @classmethod
    def same_weights_as(cls, talker) -> "ReferenceLoop":
        """The reference loop on the weights `talker` runs (a llama.cpp or transformers Talker)."""
        from .llamacpp import SEED_ADAPTER, default_gguf_path
        from .transformers import TransformersTalker

        if getattr(talker, "runtime", "") == "transformers":
            tf = talker
        else:
            adapter = SEED_ADAPTER if "+" in talker.name else None
            tf = TransformersTalker(str(default_gguf_path()), lora_path=adapter, style=talker.style)
        return cls(tf.model, tf.tokenizer, talker)

    def measure(self, utterance: str, max_tokens: int) -> tuple[float, int, float]:
        """(ms to the first streamed text, text pieces, seconds from then to the end) for one first phrase."""
        from transformers import TextIteratorStreamer

        prompt = self.talker.prompt(PhraseContext(utterance))
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        t0 = time.perf_counter()
        # generate() runs on our Talker's model thread, as its own worker thread would: OpenMP (torch's and
        # llama.cpp's share libgomp here) keeps a thread team per calling thread, and a second team makes
        # libgomp throttle its spinning for both (measured: our decode fell from 72 to 29 tok/s).
        worker = self.talker._model_thread.submit(self._generate, inputs, streamer, max_tokens)
        first, n = None, 0
        for text in streamer:
            if not text:
                continue
            if first is None:
                first = time.perf_counter()
            n += 1
            if "\n" in text:  # a phrase is one line, as in our Talker
                break
        worker.result()
        end = time.perf_counter()
        first = first or end
        return (first - t0) * 1000.0, n, end - first

    def _generate(self, inputs, streamer, max_tokens: int) -> None:
        with self.torch.inference_mode():
            self.model.generate(**inputs, streamer=streamer, max_new_tokens=max_tokens, do_sample=False,
                                pad_token_id=self.tokenizer.eos_token_id)

    def describe(self) -> str:
        return "transformers bf16 generate + TextIteratorStreamer, greedy, whole prompt every phrase"
