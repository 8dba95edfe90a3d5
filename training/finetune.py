"""Finetune a Talker on ConvFill conversations, full or LoRA. Reads top to bottom, like nanoGPT's train.py.

    python -m training.finetune --data tests/data/convfill_tiny.jsonl --out-dir out/talker        # CPU
    python -m training.finetune --data train.jsonl --out-dir out/talker --batch-size 32 --grad-accum 1 \
        --model HuggingFaceTB/SmolLM2-360M-Instruct                                              # CUDA, bf16

Flow: conversations -> split by conversation -> phrase examples built by `convfill.prompt` (the engine's own
code) -> tokens with the loss on the target phrase + end marker only -> loop {lr = get_lr(step); accumulate
gradients over `grad_accum` micro-batches; clip; AdamW step; every `eval_every` steps: validation loss +
checkpoint} -> one output directory that `TransformersTalker(model=out_dir)` loads and
`python -m training.export_gguf` turns into a GGUF for llama.cpp.

"step" always means an OPTIMIZER step. The warmup + cosine schedule is a function of it, so gradient
accumulation does not shorten the schedule (advancing a scheduler once per micro-batch, the mistake issue 6
points at, ends warmup and decay `grad_accum` times too early). The loss of one optimizer step is the mean
over all target tokens of its micro-batches, so accumulation gives the same gradient as one big batch.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convfill.errors import ConfigError, ConvFillError

from .common import add_config_arguments, config_from_arguments, pick_runtime, seed_everything, topt


@dataclass
class TrainConfig:
    """Every option of a run; `--help` is generated from these fields. Checkpoints carry a copy."""

    # data
    data: tuple[str, ...] = topt((), "ConvFill JSONL files (our exports and the labeling workbench export "
                                 "are the same format), or hub:zenglhardt/convfill-dataset[:split] on a "
                                 "networked machine with `datasets` installed", metavar="PATH",
                                 required=True)
    out_dir: str = topt("out/talker", "output directory: HF model + tokenizer (loadable by "
                        "TransformersTalker), ckpt.pt, convfill_train.json; LoRA adds adapter/")
    val_fraction: float = topt(0.1, "fraction of CONVERSATIONS held out for validation loss", lo=0, hi=0.9)
    max_len: int = topt(512, "max tokens per example; history is truncated first, the target never", lo=16)
    sil_augment: float = topt(0.0, "probability per training turn of an extra mid-turn <sil> filler example "
                              "(after knowledge phrases; see training.data.augment_mid_turn_sil)", lo=0, hi=1)
    sil_token: str = topt("auto", "<sil> as one added special token (resizes embeddings) or plain text "
                          "(vocabulary untouched, needed for adapters); auto = special for full finetunes, "
                          "plain for LoRA", choices=("auto", "special", "plain"))
    # model
    model: str | None = topt(None, "base model: hub id, local HF dir or .gguf file (dequantized); "
                             "default: the shipped SmolLM2-135M-Instruct GGUF")
    lora: bool = topt(False, "train a LoRA adapter (peft) instead of all weights; the output dir gets the "
                      "merged weights, adapter/ the adapter alone")
    lora_r: int = topt(16, "LoRA rank", lo=1)
    lora_alpha: int = topt(32, "LoRA scaling numerator (scale = alpha / r)", lo=1)
    lora_dropout: float = topt(0.05, "dropout on the LoRA input", lo=0, hi=0.9)
    lora_targets: tuple[str, ...] = topt(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"), "module names LoRA wraps (llama naming)")
    init_adapter: str | None = topt(None, "start the LoRA from this saved adapter dir (a run's adapter/) instead "
                                    "of zero: continue training on new data or a new schedule; its rank, "
                                    "alpha and targets win over the --lora-* options")
    # optimization (all counts are optimizer steps)
    epochs: float = topt(1.0, "passes over the training examples; sets max_steps when that is 0", lo=0)
    max_steps: int = topt(0, "stop after this many optimizer steps (0: from epochs)", lo=0)
    decay_steps: int = topt(0, "length of warmup + cosine schedule (0: max_steps); set it to stop early and "
                            "resume later on the same schedule", lo=0)
    batch_size: int = topt(8, "examples per micro-batch", lo=1)
    grad_accum: int = topt(4, "micro-batches per optimizer step (effective batch = batch_size * this)", lo=1)
    lr: float = topt(5e-5, "peak learning rate (about 2e-4 suits LoRA)", lo=0)
    min_lr_ratio: float = topt(0.1, "cosine floor as a fraction of lr", lo=0, hi=1)
    warmup_steps: int = topt(20, "linear warmup length in optimizer steps (capped at the schedule length)",
                             lo=0)
    weight_decay: float = topt(0.0, "AdamW weight decay (2D weights only)", lo=0)
    beta1: float = topt(0.9, "AdamW beta1", lo=0, hi=1)
    beta2: float = topt(0.95, "AdamW beta2", lo=0, hi=1)
    grad_clip: float = topt(1.0, "clip the gradient norm to this (0: off)", lo=0)
    # eval, checkpoints, logging
    eval_every: int = topt(50, "validation loss + checkpoint every this many optimizer steps (0: only at "
                           "the end)", lo=0)
    log_every: int = topt(10, "print train loss every this many optimizer steps", lo=1)
    resume: bool = topt(False, "continue from out_dir/ckpt.pt (model, optimizer, step, best val loss)")
    progress: bool = topt(True, "show a tqdm progress bar")
    # system
    seed: int = topt(1337, "seed for the split, augmentation, batch order and init")
    device: str = topt("auto", "cpu, cuda, cuda:N or auto (CUDA when available)")
    dtype: str = topt("auto", "compute dtype: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16",
                      choices=("auto", "float32", "bfloat16", "float16"))
    threads: int = topt(0, "torch CPU threads (0: torch default)", lo=0)

    def sil_mode(self) -> str:
        mode = self.sil_token if self.sil_token != "auto" else ("plain" if self.lora else "special")
        if self.lora and mode == "special":
            raise ConfigError("LoRA leaves the vocabulary untouched, so <sil> cannot be a new token: use "
                              "--sil-token plain (or a full finetune)")
        return mode


# Fields that must not change between a run and its resume: they define the data, model and batch order.
RESUME_FIXED = ("data", "val_fraction", "max_len", "sil_augment", "sil_token", "model", "lora", "lora_r",
                "lora_alpha", "lora_targets", "init_adapter", "batch_size", "grad_accum", "seed")


def get_lr(step: int, cfg: TrainConfig, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine to min_lr_ratio * lr."""
    warmup = min(cfg.warmup_steps, total)
    if step < warmup:
        return cfg.lr * (step + 1) / (warmup + 1)
    if step >= total:
        return cfg.lr * cfg.min_lr_ratio
    progress = (step - warmup) / max(1, total - warmup)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.lr * (cfg.min_lr_ratio + coeff * (1 - cfg.min_lr_ratio))


def micro_batches(n: int, batch_size: int, seed: int, start: int = 0):
    """Endless index batches, reshuffled each epoch from (seed, epoch); skips the first `start` batches.

    Deterministic, so a resumed run continues with exactly the batches the interrupted one would have seen.
    """
    i, epoch = 0, 0
    while True:
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for b in range(0, n, batch_size):
            if i >= start:
                yield order[b:b + batch_size]
            i += 1
        epoch += 1


def loss_sum(model, batch, rt):
    """(sum of next-token losses over target positions, number of target tokens).

    Logits are computed only where a target token is predicted (`logits_to_keep` with a boolean mask): the
    prompt is most of every example, and the 49k-wide vocabulary projection dominates a small model's cost.
    """
    import torch
    import torch.nn.functional as F

    from .data import IGNORE

    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE  # position i predicts token i + 1
    keep = torch.cat([keep, torch.zeros_like(keep[:, :1])], dim=1)
    with rt.autocast():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=keep).logits
    logits = logits.reshape(-1, logits.size(-1)).float()  # (n target tokens, vocab), row-major like `keep`
    labels = targets[keep[:, :-1]]
    return F.cross_entropy(logits, labels, reduction="sum"), int(labels.numel())


def val_loss(model, examples, cfg: TrainConfig, rt, pad_id: int) -> float:
    """Mean per-token loss over all `examples` (nan when there are none)."""
    import torch

    from .data import collate

    if not examples:
        return float("nan")
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(examples), cfg.batch_size):
            batch = {k: v.to(rt.device) for k, v in collate(examples[b:b + cfg.batch_size], pad_id).items()}
            s, k = loss_sum(model, batch, rt)
            total, n = total + float(s), n + k
    model.train()
    return total / max(n, 1)


@dataclass
class TrainResult:
    """What a run did; also written to out_dir/convfill_train.json."""

    out_dir: str
    step: int
    max_steps: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)  # {"step", "loss", "lr"} per optimizer step
    evals: list[dict] = field(default_factory=list)  # {"step", "val_loss"}
    data: dict = field(default_factory=dict)
    steps_per_s: float = 0.0  # optimizer steps per wall-clock second, evals excluded
    cpu_s_per_step: float = 0.0  # process CPU seconds (all threads) per optimizer step: load-independent


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one finetune; returns the step history. Raises ConvFillError on bad input."""
    import torch
    from tqdm.auto import tqdm

    from .common import load_model_and_tokenizer
    from .data import (IGNORE, apply_sil_mode, build_examples, collate, load_conversations,
                       split_conversations, tokenize_examples)

    if not cfg.data:
        raise ConfigError("no training data: pass --data FILE.jsonl [...]")
    rt = pick_runtime(cfg.device, cfg.dtype)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    out = Path(cfg.out_dir)
    ckpt_path = out / "ckpt.pt"
    ckpt = None
    if cfg.resume:
        if not ckpt_path.exists():
            raise ConfigError(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        changed = [k for k in RESUME_FIXED if ckpt["config"][k] != _plain(getattr(cfg, k))]
        if changed:
            raise ConfigError(f"--resume: these options differ from the checkpoint: {', '.join(changed)}")
    out.mkdir(parents=True, exist_ok=True)

    # -- data: split by conversation, then phrase examples, then tokens ---------------------------------
    convs = load_conversations(cfg.data)
    train_convs, val_convs = split_conversations(convs, cfg.val_fraction, cfg.seed)
    model, tok = load_model_and_tokenizer(cfg.model)
    sil_mode = cfg.sil_mode()
    apply_sil_mode(tok, model, sil_mode)
    train_set, train_stats = tokenize_examples(build_examples(train_convs, cfg.sil_augment, cfg.seed), tok,
                                               cfg.max_len)
    val_set, val_stats = tokenize_examples(build_examples(val_convs), tok, cfg.max_len)
    if not train_set:
        raise ConfigError("no training examples left after tokenization (is --max-len too small?)")
    data_info = {"conversations": len(convs), "train_conversations": len(train_convs),
                 "val_conversations": len(val_convs), "train": asdict(train_stats), "val": asdict(val_stats),
                 "sil_mode": sil_mode, "vocab_size": len(tok)}
    for name, st in (("train", train_stats), ("val", val_stats)):
        print(f"{name}: {st.examples} examples, {st.target_tokens} target tokens, {st.truncated} truncated, "
              f"{st.skipped_too_long} skipped (too long)", file=sys.stderr)

    # -- model and optimizer -----------------------------------------------------------------------------
    if cfg.lora and cfg.init_adapter:
        from peft import PeftModel

        if not (Path(cfg.init_adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"--init-adapter: no adapter_config.json in {cfg.init_adapter}")
        model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
    elif cfg.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout,
                                                 target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM"))
    elif cfg.init_adapter:
        raise ConfigError("--init-adapter needs --lora")
    model.to(rt.device)
    model.train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  fused=rt.device.startswith("cuda"))
    scaler = torch.amp.GradScaler(enabled=rt.dtype == "float16")

    micro_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    max_steps = cfg.max_steps or max(1, math.ceil(micro_per_epoch * cfg.epochs / cfg.grad_accum))
    total = cfg.decay_steps or max_steps
    step, best_val = 0, float("inf")
    result = TrainResult(str(out), 0, max_steps, best_val, data=data_info)
    if ckpt:
        missing = set(ckpt["model"]) - {n for n, _ in params}
        if missing:
            raise ConfigError(f"--resume: checkpoint tensors not in this model: {sorted(missing)[:5]}")
        model.load_state_dict(ckpt["model"], strict=False)
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, best_val = ckpt["step"], ckpt["best_val_loss"]
        result.history, result.evals = ckpt.get("history", []), ckpt.get("evals", [])
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)

    def checkpoint() -> None:
        state = {n: p.detach().cpu() for n, p in params}
        torch.save({"config": _plain(asdict(cfg)), "step": step, "best_val_loss": best_val, "model": state,
                    "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                    "history": result.history, "evals": result.evals}, ckpt_path.with_suffix(".tmp"))
        ckpt_path.with_suffix(".tmp").replace(ckpt_path)  # never leave a half-written checkpoint

    def run_eval() -> None:
        nonlocal best_val
        val = val_loss(model, val_set, cfg, rt, tok.pad_token_id)
        result.evals.append({"step": step, "val_loss": val})
        if val < best_val:
            best_val = val
        tqdm.write(f"step {step}: val loss {val:.4f}", file=sys.stderr)

    # -- the loop ------------------------------------------------------------------------------------------
    batches = micro_batches(len(train_set), cfg.batch_size, cfg.seed, start=step * cfg.grad_accum)
    bar = tqdm(total=max_steps, initial=step, disable=not cfg.progress, desc="finetune", unit="step")
    first, t0, c0, timed_steps = step, time.perf_counter(), time.process_time(), 0
    while step < max_steps:
        if cfg.eval_every and step % cfg.eval_every == 0 and not (ckpt and step == first):
            t_eval, c_eval = time.perf_counter(), time.process_time()
            if val_set:
                run_eval()
            if step > first:
                checkpoint()
            t0 += time.perf_counter() - t_eval  # steps/s counts training only
            c0 += time.process_time() - c_eval
        lr = get_lr(step, cfg, total)
        for g in optimizer.param_groups:
            g["lr"] = lr
        micro = [collate([train_set[i] for i in next(batches)], tok.pad_token_id) for _ in range(cfg.grad_accum)]
        n_tokens = sum(int((m["labels"][:, 1:] != IGNORE).sum()) for m in micro)  # targets of the step
        step_loss = 0.0
        for m in micro:
            m = {k: v.to(rt.device) for k, v in m.items()}
            s, _ = loss_sum(model, m, rt)
            scaler.scale(s / n_tokens).backward()
            step_loss += float(s.detach()) / n_tokens
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        timed_steps += 1
        result.history.append({"step": step, "loss": step_loss, "lr": lr})
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
        if step % cfg.log_every == 0 or step == max_steps:
            tqdm.write(f"step {step}/{max_steps}: loss {step_loss:.4f} lr {lr:.3e}", file=sys.stderr)
    bar.close()
    result.steps_per_s = timed_steps / max(time.perf_counter() - t0, 1e-9)
    result.cpu_s_per_step = (time.process_time() - c0) / max(timed_steps, 1)
    if val_set and (not result.evals or result.evals[-1]["step"] != step):
        run_eval()
    result.step, result.best_val_loss = step, best_val
    checkpoint()
    save_output(model, tok, out, cfg, result)
    return result


def save_output(model, tok, out: Path, cfg: TrainConfig, result: TrainResult) -> None:
    """HF weights + tokenizer in `out` (LoRA: merged weights there, the adapter alone in out/adapter)."""
    if cfg.lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {"style": "convfill", "template": "chatml", "config": _plain(asdict(cfg)), **asdict(result)}
    if not math.isfinite(meta["best_val_loss"]):
        meta["best_val_loss"] = None  # no validation set: keep the file strict JSON
    (out / "convfill_train.json").write_text(json.dumps(meta, indent=1))


def _plain(v):
    """JSON-friendly copy (tuples -> lists) so configs compare equal after a checkpoint round trip."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__.split("\n\n")[0])
    add_config_arguments(p, TrainConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        res = train(config_from_arguments(TrainConfig, ns))
    except ConvFillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    best = res.best_val_loss if math.isfinite(res.best_val_loss) else None
    print(json.dumps({"out_dir": res.out_dir, "step": res.step, "best_val_loss": best,
                      "final_loss": res.history[-1]["loss"] if res.history else None,
                      "steps_per_s": round(res.steps_per_s, 4), "cpu_s_per_step": round(res.cpu_s_per_step, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
