"""Export a trained Talker (HF directory from `training.finetune`) to GGUF so llama.cpp can serve it.

    python -m training.export_gguf --model out/talker --out out/talker.gguf --type q8_0 --verify

Why our own converter: llama.cpp's `convert_hf_to_gguf.py` is not part of any installed package, while the
`gguf` package (its writer library) is. SmolLM2 and the other Talkers we train are the llama architecture,
whose conversion is a name mapping plus one weight permutation:

- Tensor names: `model.embed_tokens` -> `token_embd`, `model.layers.N.self_attn.{q,k,v,o}_proj` ->
  `blk.N.attn_{q,k,v,output}`, `mlp.{gate,up,down}_proj` -> `blk.N.ffn_{gate,up,down}`, `input_layernorm` ->
  `blk.N.attn_norm`, `post_attention_layernorm` -> `blk.N.ffn_norm`, `model.norm` -> `output_norm`,
  `lm_head` -> `output` (absent when the embeddings are tied, as in SmolLM2).
- q and k are permuted: HF applies rotary embeddings to the two HALVES of each head (`rotate_half`),
  llama.cpp's llama graph to interleaved PAIRS. llama.cpp's converter reorders the rows of each head from
  [first half; second half] to interleaved pairs (`permute`), and transformers' GGUF loader undoes it
  (`LlamaTensorProcessor._reverse_permute_weights`: reshape(n_head, dim, 2, ...).swapaxes(2, 1)); `permute`
  below is its exact inverse (reshape(n_head, 2, dim, ...).swapaxes(1, 2)), checked by a round-trip test.
- Tokenizer: copied field by field from a base GGUF of the same vocabulary (default: the shipped
  SmolLM2 GGUF), after checking that the HF tokenizer's tokens are the same; tokens added in training
  (`<sil>` as a special token) are appended as control tokens.

`--lora` instead writes a GGUF LoRA adapter from a LoRA run's `adapter/` (a few MB): llama.cpp applies it on
top of the unchanged base GGUF (`LlamaCppTalker(lora_path=...)`), e.g. the shipped Q4_1 SmolLM2 the run
started from. Same name mapping; for q and k only `lora_B` (the output rows) is permuted, since
`permute(B @ A) == permute(B) @ A`. Such runs keep `<sil>` as plain text, so the vocabulary matches the base.

`--verify` loads the export with `LlamaCppTalker` and the directory with `TransformersTalker` and compares
greedy tokens (no repeat penalty) and last-position logits on a few ConvFill prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convfill.errors import ConfigError, ConvFillError
from convfill.prompt import PhraseContext

TYPES = ("f16", "q8_0", "f32")

# HF llama parameter suffix -> GGUF name (per layer unless it starts with "!")
_LAYER_MAP = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_GLOBAL_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    """GGUF tensor name for an HF llama parameter; ConfigError for anything the llama graph lacks."""
    if hf_name in _GLOBAL_MAP:
        return _GLOBAL_MAP[hf_name]
    parts = hf_name.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_MAP:
        return f"blk.{int(parts[2])}.{_LAYER_MAP[parts[3]]}"
    raise ConfigError(f"tensor {hf_name!r} has no place in the llama GGUF layout (biases and other "
                      "architectures are not supported by this exporter)")


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF -> llama.cpp row order of a q or k projection (inverse of transformers' reverse permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_hf_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """fp32 numpy arrays of every tensor in the directory's safetensors file(s) (sharded or not)."""
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"no *.safetensors weights in {model_dir} (is it a training.finetune output?)")
    out = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            out[k] = v.float().numpy()
    return out


@dataclass
class HParams:
    """The llama hyperparameters GGUF needs, read from config.json."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    tied: bool

    @classmethod
    def from_config(cls, cfg: dict) -> HParams:
        if cfg.get("model_type") != "llama":
            raise ConfigError(f"only the llama architecture can be exported, not {cfg.get('model_type')!r}")
        rope = cfg.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default" or cfg.get("rope_scaling"):
            raise ConfigError("rope scaling is not supported by this exporter")
        n_head = cfg["num_attention_heads"]
        return cls(n_layer=cfg["num_hidden_layers"], n_embd=cfg["hidden_size"], n_ff=cfg["intermediate_size"],
                   n_head=n_head, n_head_kv=cfg.get("num_key_value_heads") or n_head,
                   head_dim=cfg.get("head_dim") or cfg["hidden_size"] // n_head,
                   n_ctx=cfg.get("max_position_embeddings", 2048),
                   rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                   rms_eps=float(cfg.get("rms_norm_eps", 1e-5)), vocab_size=cfg["vocab_size"],
                   tied=bool(cfg.get("tie_word_embeddings", False)))


def _tokenizer_fields(base_gguf: Path, hf_tokens: list[str], vocab_size: int):
    """(key, value, type, subtype) tokenizer entries from the base GGUF, extended to the trained vocab."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    fields = {k: f for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    if "tokenizer.ggml.tokens" not in fields:
        raise ConfigError(f"{base_gguf} has no tokenizer to copy")
    base_tokens = list(fields["tokenizer.ggml.tokens"].contents())
    n = len(base_tokens)
    if hf_tokens[:n] != base_tokens:
        bad = next(i for i, (a, b) in enumerate(zip(hf_tokens, base_tokens)) if a != b) \
            if len(hf_tokens) >= n else len(hf_tokens)
        raise ConfigError(f"the model's tokenizer differs from {base_gguf.name} (first difference at token "
                          f"{bad}); pass --tokenizer-gguf with a GGUF of the base model it was trained from")
    if vocab_size < len(hf_tokens):
        raise ConfigError(f"config vocab_size {vocab_size} < tokenizer size {len(hf_tokens)}")
    T = gguf.TokenType
    tokens = hf_tokens + [f"[PAD{i}]" for i in range(len(hf_tokens), vocab_size)]
    types = list(fields["tokenizer.ggml.token_type"].contents())
    types += [int(T.CONTROL)] * (len(hf_tokens) - n) + [int(T.UNUSED)] * (vocab_size - len(hf_tokens))
    out = []
    for key, f in fields.items():
        value = {"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types}.get(key, f.contents())
        if key == "tokenizer.ggml.scores":
            value = list(value) + [0.0] * (vocab_size - n)
        out.append((key, value, f.types[0], f.types[1] if len(f.types) > 1 else None))
    return out


def export(model_dir: str | Path, out: str | Path, qtype: str = "f16",
           tokenizer_gguf: str | Path | None = None) -> Path:
    """Write `out` (GGUF, llama architecture) from an HF llama directory; returns the path."""
    import gguf
    from transformers import AutoTokenizer

    from convfill.talkers.llamacpp import default_gguf_path

    if qtype not in TYPES:
        raise ConfigError(f"unknown --type {qtype!r}; use one of {', '.join(TYPES)}")
    model_dir, out = Path(model_dir), Path(out)
    cfg_path = model_dir / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"{model_dir} has no config.json (is it a training.finetune output?)")
    hp = HParams.from_config(json.loads(cfg_path.read_text()))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    hf_tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    tok_fields = _tokenizer_fields(Path(tokenizer_gguf) if tokenizer_gguf else default_gguf_path(), hf_tokens,
                                   hp.vocab_size)
    weights = read_hf_weights(model_dir)
    if hp.tied:
        weights.pop("lm_head.weight", None)

    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "f32": gguf.LlamaFileType.ALL_F32}[qtype]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(model_dir.name)
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(hp.n_layer)
    w.add_context_length(hp.n_ctx)
    w.add_embedding_length(hp.n_embd)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_vocab_size(hp.vocab_size)
    w.add_rope_dimension_count(hp.head_dim)
    if hp.head_dim != hp.n_embd // hp.n_head:
        w.add_key_length(hp.head_dim)
        w.add_value_length(hp.head_dim)
    for key, value, vtype, sub in tok_fields:
        w.add_key_value(key, value, vtype, sub_type=sub)

    for name, arr in weights.items():
        gname = gguf_name(name)
        if gname.endswith("attn_q.weight"):
            arr = permute(arr, hp.n_head)
        elif gname.endswith("attn_k.weight"):
            arr = permute(arr, hp.n_head_kv)
        if arr.ndim == 1 or qtype == "f32":
            w.add_tensor(gname, arr.astype(np.float32))
        elif qtype == "q8_0" and arr.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
            w.add_tensor(gname, gguf.quantize(arr.astype(np.float32), gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:  # f16, or a row length Q8_0 blocks (32 values) cannot tile
            w.add_tensor(gname, arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)  # a reader never sees a half-written GGUF
    return out


def export_lora(model_dir: str | Path, out: str | Path, qtype: str = "f32") -> Path:
    """Write a GGUF LoRA adapter (llama.cpp format) from `model_dir/adapter` of a `--lora` finetune."""
    import gguf
    from safetensors.torch import load_file

    if qtype not in ("f32", "f16"):
        raise ConfigError("a LoRA adapter is written as f32 or f16 (its tensors are small)")
    model_dir, out = Path(model_dir), Path(out)
    adir = model_dir / "adapter"
    if not (adir / "adapter_config.json").exists():
        raise ConfigError(f"{adir} has no adapter_config.json (was the run trained with --lora?)")
    acfg = json.loads((adir / "adapter_config.json").read_text())
    if acfg.get("use_rslora") or acfg.get("use_dora"):
        raise ConfigError("rsLoRA/DoRA adapters have no llama.cpp equivalent; train a plain LoRA")
    if acfg.get("modules_to_save"):
        raise ConfigError("the adapter also trains whole modules (modules_to_save); export the full model")
    hp = HParams.from_config(json.loads((model_dir / "config.json").read_text()))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, t in load_file(str(adir / "adapter_model.safetensors")).items():
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight -> model.layers.0.self_attn.q_proj.weight
        hf_name, _, ab = name.removeprefix("base_model.model.").rpartition(".lora_")
        if ab not in ("A.weight", "B.weight"):
            raise ConfigError(f"unexpected adapter tensor {name!r}")
        pairs.setdefault(gguf_name(hf_name + ".weight"), {})[ab[0]] = t.float().numpy()
    dtype = np.float16 if qtype == "f16" else np.float32
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(acfg["lora_alpha"]))  # llama.cpp scales by alpha / r
    for gname, ab in pairs.items():
        b = ab["B"]
        if gname.endswith("attn_q.weight"):
            b = permute(b, hp.n_head)
        elif gname.endswith("attn_k.weight"):
            b = permute(b, hp.n_head_kv)
        w.add_tensor(gname + ".lora_a", ab["A"].astype(dtype))
        w.add_tensor(gname + ".lora_b", b.astype(dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Verification: the two runtimes must agree


VERIFY_CONTEXTS = (
    PhraseContext("Who wrote Pride and Prejudice?", None),
    PhraseContext("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by Jane Austen.",
                  earlier=("Good question, let me think.",)),
    PhraseContext("And in Fahrenheit?", "That is 212 degrees Fahrenheit.",
                  prev_user="What is the boiling point of water?",
                  prev_reply="Let me see. At sea level, water boils at 100 degrees Celsius."),
    PhraseContext("How tall is Mount Everest?", None, earlier=("Hmm, let me check that.",)),
)


@dataclass
class Comparison:
    """Greedy tokens of both runtimes for one prompt (each ends with its stop token, if it stopped)."""

    prompt_tokens: int
    same_prompt_tokens: bool
    transformers: list[int]
    llamacpp: list[int]
    agree: int  # leading tokens that are equal
    tie_gap: float | None  # at the first difference: how much transformers prefers its token over llama.cpp's
    logit_max_abs_diff: float  # last prompt position
    text_transformers: str
    text_llamacpp: str

    def ok(self, min_agree: int, tie_tol: float = 0.0) -> bool:
        """Same tokens; or `min_agree` leading tokens agree; or they part at a near-tie (gap <= tie_tol).

        Quantized weights (q8_0) move logits by ~1 (measured, 135M), enough to flip a near-tie; the
        transformers model rating llama.cpp's choice within `tie_tol` logits of its own is no conversion bug.
        """
        if not self.same_prompt_tokens:
            return False
        return (self.transformers == self.llamacpp or self.agree >= min_agree
                or (self.tie_gap is not None and self.tie_gap <= tie_tol))


def _greedy_hf(talker, ids: list[int], n: int):
    """(tokens incl. the stop token, logits at the prompt's last position, logits row of every step)."""
    import torch

    model = talker.model
    rows, toks = [], []
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids], device=talker.device), use_cache=True)
        for _ in range(n):
            rows.append(out.logits[0, -1].float().cpu().numpy())
            t = int(rows[-1].argmax())
            toks.append(t)
            if t in talker._stop_ids:
                break
            out = model(input_ids=torch.tensor([[t]], device=talker.device), past_key_values=out.past_key_values,
                        use_cache=True)
    return toks, rows[0], rows


def _greedy_llama(talker, ids: list[int], n: int):
    """(tokens incl. the stop token, logits at the prompt's last position); no repeat penalty."""
    import llama_cpp

    llm = talker.llm
    llm.reset()
    llm.eval(ids)
    # `llm.scores` stays zero unless the model was loaded with logits_all; read the last row from the context.
    last = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),)).copy()
    toks = []
    for t in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        toks.append(int(t))
        if t in talker._stop_ids or len(toks) >= n:
            break
    return toks, last


def compare(model_dir: str | Path, gguf_path: str | Path, contexts=VERIFY_CONTEXTS, n_tokens: int = 16,
            style: str = "convfill", lora_path: str | Path | None = None) -> list[Comparison]:
    """Greedy tokens and last-prompt-position logits of TransformersTalker vs LlamaCppTalker per context.

    With `lora_path`, `gguf_path` is the base model and llama.cpp applies the adapter on top of it.
    """
    from convfill.talkers.llamacpp import LlamaCppTalker
    from convfill.talkers.transformers import TransformersTalker

    hf = TransformersTalker(model=str(model_dir), style=style, device="cpu")
    ll = LlamaCppTalker(model_path=gguf_path, style=style, fast=False, n_ctx=1024, lora_path=lora_path)
    res = []
    for ctx in contexts:
        prompt = hf.prompt(ctx)
        ids_hf, ids_ll = hf.tokenize(prompt), ll.tokenize(prompt)
        a, la, rows = _greedy_hf(hf, ids_hf, n_tokens)
        b, lb = _greedy_llama(ll, ids_hf, n_tokens)
        agree = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        gap = float(rows[agree][a[agree]] - rows[agree][b[agree]]) if agree < min(len(a), len(b)) else None
        res.append(Comparison(len(ids_hf), ids_hf == ids_ll, a, b, agree, gap, float(np.abs(la - lb).max()),
                              hf.tokenizer.decode(a), ll.llm.detokenize(b, special=True).decode("utf-8", "replace")))
    ll.close()
    return res


def _run_base_gguf(model_dir: Path) -> str:
    """The GGUF a finetune started from (its recorded --model), or the shipped default."""
    from convfill.talkers.llamacpp import default_gguf_path

    meta = model_dir / "convfill_train.json"
    model = json.loads(meta.read_text())["config"].get("model") if meta.exists() else None
    if model and not str(model).endswith(".gguf"):
        raise ConfigError(f"the run started from {model!r}, not a GGUF: pass --base-gguf (export the base "
                          "with this tool first)")
    return str(model or default_gguf_path())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export_gguf", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="HF llama directory (a training.finetune output)")
    p.add_argument("--out", required=True, help="GGUF file to write")
    p.add_argument("--type", default=None, choices=TYPES,
                   help="weight type of 2D tensors (default: f16; f32 for --lora)")
    p.add_argument("--lora", action="store_true",
                   help="write a GGUF LoRA adapter from DIR/adapter (a --lora run) instead of the full model")
    p.add_argument("--base-gguf", default=None,
                   help="--lora --verify: the base GGUF the adapter applies to (default: the run's --model "
                        "when it was a .gguf, else the shipped SmolLM2 GGUF)")
    p.add_argument("--tokenizer-gguf", default=None,
                   help="GGUF whose tokenizer the model shares (default: the shipped SmolLM2 GGUF)")
    p.add_argument("--verify", action="store_true",
                   help="compare greedy output of llama.cpp (export) and transformers (directory)")
    p.add_argument("--verify-tokens", type=int, default=16, help="greedy tokens compared per prompt")
    p.add_argument("--min-agree", type=int, default=8,
                   help="--verify passes when this many leading tokens agree (or both outputs are equal)")
    p.add_argument("--tie-tol", type=float, default=None,
                   help="...or when they part where transformers rates llama.cpp's token within this many "
                        "logits of its own (a near-tie; default 0 for f16/f32, 1.5 for q8_0)")
    p.add_argument("--style", default="convfill", choices=("convfill", "prompted"),
                   help="prompt style used by --verify (default: convfill, as a trained Talker)")
    args = p.parse_args(argv)
    try:
        qtype = args.type or ("f32" if args.lora else "f16")
        if args.lora:
            path = export_lora(args.model, args.out, qtype)
            base = args.base_gguf or _run_base_gguf(Path(args.model))
        else:
            path, base = export(args.model, args.out, qtype, args.tokenizer_gguf), None
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {qtype})", file=sys.stderr)
        if args.verify:
            res = compare(args.model, base or path, n_tokens=args.verify_tokens, style=args.style,
                          lora_path=path if args.lora else None)
            for r in res:
                print(json.dumps(asdict(r)))
            need = min(args.min_agree, args.verify_tokens)
            tol = args.tie_tol if args.tie_tol is not None else (1.5 if qtype == "q8_0" else 0.0)
            n_ok = sum(r.ok(need, tol) for r in res)
            print(f"verify: {'OK' if n_ok == len(res) else 'MISMATCH'} ({n_ok}/{len(res)} prompts agree)",
                  file=sys.stderr)
            return 0 if n_ok == len(res) else 2
    except ConvFillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
