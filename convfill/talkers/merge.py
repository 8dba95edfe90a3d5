"""Fold a llama.cpp LoRA adapter into a GGUF's weights, once, so each decode step does one matmul per weight.

llama.cpp applies an unmerged adapter as two extra small matmuls per adapted weight and token (`W x +
s * B (A x)`). Merging computes `W' = W + s * B A` from the base's own (dequantized) values for every
adapted matrix (s = alpha / rank, the scale llama.cpp uses) and writes every adapted or 4-bit tensor in the
type the fast path runs (Q8_0 or BF16, `convfill.talkers.weights`), so each value is rounded once, as in
the unmerged fast path (`llamacpp.fast_copy`); metadata, tokenizer, float and Q8_0 tensors (the shipped
embeddings) are copied as they are. Both the base GGUF and the adapter are in llama.cpp's layout, so no row
permutation is needed (unlike `transformers.merge_gguf_lora`).
Measured in docs/benchmarks.md ("Merged Talker").

The merged file is made once per type under `$CONVFILL_HOME/models`, named after the adapter, a hash of
its bytes, the base file and the type, so a retrained adapter gets a new file. `LlamaCppTalker(merge=True)`
(the default) uses it; a test checks, for each type, that greedy phrases match the unmerged adapter on the
verify prompts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import paths
from ..errors import TalkerLoadError

MERGED_TYPE = "Q8_0"  # the type when none is asked for


def _adapter_hash(adapter: Path) -> str:
    return hashlib.sha256(adapter.read_bytes()).hexdigest()[:8]


def merged_path(base: Path, adapter: Path, qtype: str = MERGED_TYPE) -> Path:
    """Where the merged copy of `base` + `adapter` in type `qtype` lives (it may not exist yet)."""
    base_id = hashlib.sha256(f"{base.resolve()}:{base.stat().st_size}".encode()).hexdigest()[:8]
    name = f"merged-{adapter.stem}-{_adapter_hash(adapter)}-{base_id}.{qtype.lower()}.gguf"
    return paths.home() / "models" / name


def read_lora(adapter: Path) -> dict:
    """{adapted tensor name: (A, B, scale)} of a GGUF LoRA adapter, in llama.cpp's layout and names."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(adapter))
    alpha_field = reader.fields.get("adapter.lora.alpha")
    if alpha_field is None:
        raise TalkerLoadError(f"{adapter.name} is not a GGUF LoRA adapter (no adapter.lora.alpha)")
    alpha = float(alpha_field.parts[alpha_field.data[0]][0])
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    pairs = {}
    for name, a in tensors.items():
        if name.endswith(".lora_a"):
            b = tensors[name.removesuffix(".lora_a") + ".lora_b"]
            pairs[name.removesuffix(".lora_a")] = (a, b, alpha / a.shape[0])
    return pairs


def merge_lora_gguf(base: Path, adapter: Path, out: Path, qtype: str = MERGED_TYPE) -> Path:
    """Write `out`: `base` with `adapter` folded into its weights, every adapted or 4-bit tensor as `qtype`
    ("Q8_0" or "BF16": gguf's numpy rounding, bit for bit llama.cpp's own); Q8_0 and float ones as they are."""
    import gguf
    import numpy as np

    pairs = read_lora(adapter)
    reader = gguf.GGUFReader(str(base))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in reader.fields.values():
        if field.name in (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE) or \
                field.name.startswith("GGUF."):
            continue  # the writer adds these itself; the file type is said below
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    kind = gguf.GGMLQuantizationType[qtype]
    writer.add_file_type({"Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "BF16": gguf.LlamaFileType.MOSTLY_BF16}[qtype])
    merged = 0
    for t in reader.tensors:
        if t.name in pairs:
            a, b, scale = pairs.pop(t.name)
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            w += scale * (b @ a)
            writer.add_tensor(t.name, gguf.quants.quantize(w, kind), raw_dtype=kind)
            merged += 1
        elif t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            writer.add_tensor(t.name, np.asarray(t.data))
        elif t.tensor_type == gguf.GGMLQuantizationType.Q8_0:  # the shipped embeddings (also the output
            # layer): kept as they are, not rounded again; one output row per token reads them faster too
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
        elif t.tensor_type != kind:
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            writer.add_tensor(t.name, gguf.quants.quantize(w, kind), raw_dtype=kind)
        else:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=kind)
    if pairs or not merged:
        tmp.unlink(missing_ok=True)
        raise TalkerLoadError(f"{adapter.name} adapts tensors {base.name} does not have: "
                              f"{', '.join(sorted(pairs)[:3]) or 'none matched'}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)  # atomic: two processes merging at once both end with a whole file
    return out


def merged_copy(base: Path, adapter: Path, qtype: str = MERGED_TYPE) -> Path:
    """The merged GGUF for `base` + `adapter` in `qtype`, made on first use (a few seconds) and reused after."""
    out = merged_path(base, adapter, qtype)
    if out.exists() and out.stat().st_mtime >= max(base.stat().st_mtime, adapter.stat().st_mtime):
        return out
    return merge_lora_gguf(base, adapter, out, qtype)
