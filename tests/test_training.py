"""Training pipeline: data loading and validation, examples in the engine's prompt layout, exact label masks,
`<sil>` as a token or as text, split by conversation, truncation, LR schedule, finetune + resume, and the
GGUF export round trip through both runtimes.

A tiny llama (2 layers, width 64) with the real SmolLM2 tokenizer (from the shipped GGUF) keeps the
training tests fast while exercising the real code paths end to end.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from convfill.errors import ConfigError
from convfill.prompt import SIL, PhraseContext, build_prompt, target_text
from training import data as D
from training.finetune import TrainConfig, get_lr, train

FIXTURE = Path(__file__).parent / "data" / "convfill_tiny.jsonl"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """The real SmolLM2 tokenizer, converted from the shipped GGUF once and saved as a HF tokenizer."""
    from transformers import AutoTokenizer

    from convfill.talkers.llamacpp import default_gguf_path

    p = default_gguf_path()
    d = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tokenizer_dir):
    """A randomly initialised 2-layer llama with SmolLM2's vocabulary, saved like a finetune output."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=2, pad_token_id=2, initializer_range=0.05)
    d = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(cfg).save_pretrained(d)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def tiny_cfg(tiny_dir, out, **kw) -> TrainConfig:
    base = dict(data=(str(FIXTURE),), out_dir=str(out), model=str(tiny_dir), max_len=256, batch_size=4,
                grad_accum=1, lr=3e-3, warmup_steps=2, eval_every=0, progress=False, seed=0, threads=2)
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------------------------
# Data


def test_fixture_loads_and_pairs_thoughts_with_phrases():
    convs = D.load_jsonl(FIXTURE)
    assert len(convs) == 6
    assert all(len(t.thoughts) == len(t.response) for c in convs for t in c.turns)
    assert convs[0].source.endswith("convfill_tiny.jsonl:1")


# Malformed lines: tests/test_conversations.py checks every reader of the format with the same cases.


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(D.DataError, match="not found"):
        D.load_conversations([str(tmp_path / "nope.jsonl")])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(D.DataError, match="no conversations"):
        D.load_jsonl(tmp_path / "empty.jsonl")


def test_hub_source_refuses_offline_and_names_missing_package(monkeypatch):
    with pytest.raises(D.DataError, match="HF_HUB_OFFLINE"):
        D.load_conversations(["hub:zenglhardt/convfill-dataset"])
    try:
        import datasets  # noqa: F401
    except ImportError:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        with pytest.raises(D.DataError, match="pip install datasets"):
            D.load_conversations(["hub:zenglhardt/convfill-dataset"])


def test_labeling_workbench_export_is_accepted_directly(tmp_path):
    """The workbench export is ConvFill JSONL; extra metadata keys (ids, labels) are ignored."""
    rows = [{"id": "c1", "source": "chat", "conversation": [
        {"user": "What is the capital of France?", "turn_id": "t1", "labels": {"phrase_1": "supported"},
         "thoughts": ["<sil>", "Paris is the capital of France."],
         "response": ["Let me think.", "It's Paris."]}]}]
    f = tmp_path / "labels_export.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exs = D.build_examples(D.load_conversations([str(f)]))
    assert [e.phrase for e in exs] == ["Let me think.", "It's Paris."]
    assert exs[1].context.knowledge == "Paris is the capital of France."


def test_examples_are_built_by_the_engine_prompt_byte_exact():
    conv = D.load_jsonl(FIXTURE)[0]
    exs = list(D.conversation_examples(conv))
    assert len(exs) == 5
    ex = exs[4]  # turn 1, phrase 1: previous turn + one earlier phrase + knowledge
    assert ex.prompt == (
        "<|im_start|>user\nWho wrote Pride and Prejudice?<|im_end|>\n"
        "<|im_start|>assistant\nGood question, let me think. That was Jane Austen. It came out in 1813.<|im_end|>\n"
        "<|im_start|>user\nDid she write anything else?<|im_end|>\n"
        "<|im_start|>assistant\nOh, she did.<|im_end|>\n"
        "<|im_start|>knowledge\nJane Austen also wrote Sense and Sensibility and Emma.<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert ex.target == "She also wrote Sense and Sensibility and Emma.<|im_end|>"
    first = exs[0]  # turn 0, phrase 0: <sil>, no history
    assert first.context == PhraseContext("Who wrote Pride and Prejudice?", None, ())
    assert first.prompt == build_prompt(first.context, style="convfill")
    assert first.prompt.endswith("<|im_start|>knowledge\n<sil><|im_end|>\n<|im_start|>assistant\n")
    assert first.target == target_text("Good question, let me think.")


def test_split_is_by_conversation_seeded_and_complete():
    base = D.load_jsonl(FIXTURE)
    convs = [D.Conversation(c.turns, f"c{i}-{j}") for j in range(10) for i, c in enumerate(base)]
    tr, va = D.split_conversations(convs, 0.2, seed=7)
    assert len(va) == 12 and len(tr) == 48
    assert {c.source for c in tr}.isdisjoint({c.source for c in va})
    assert {c.source for c in tr} | {c.source for c in va} == {c.source for c in convs}
    assert D.split_conversations(convs, 0.2, seed=7)[1] == va
    assert D.split_conversations(convs, 0.2, seed=8)[1] != va
    # every example of the validation set comes from a validation conversation, with all its turns
    val_sources = {e.source.rsplit(" turn", 1)[0] for e in D.build_examples(va)}
    assert val_sources == {c.source for c in va}
    assert D.split_conversations(convs[:1], 0.2, 0) == (convs[:1], [])


def test_mid_turn_sil_augmentation_follows_knowledge_and_uses_data_fillers():
    convs = D.load_jsonl(FIXTURE)
    aug = D.augment_mid_turn_sil(convs, rate=1.0, seed=0)
    later, first = D.collect_fillers(convs)
    assert "Still looking it up." in later and "Still checking on that." in later
    turns_with_knowledge = sum(any(not D.is_sil(t) for t in turn.thoughts) for c in convs for turn in c.turns)
    assert len(aug) == turns_with_knowledge
    for ex in aug:
        assert ex.augmented and ex.context.knowledge is None
        assert ex.phrase in later and ex.phrase not in ex.context.earlier
        assert "<|im_start|>knowledge\n<sil><|im_end|>" in ex.prompt
        # the cut follows at least one knowledge phrase of the same turn
        turn = next(t for c in convs for t in c.turns if t.user == ex.context.user
                    and t.response[:len(ex.context.earlier)] == ex.context.earlier)
        assert not D.is_sil(turn.thoughts[len(ex.context.earlier) - 1])
    assert D.augment_mid_turn_sil(convs, rate=0.0, seed=0) == []
    assert len(D.build_examples(convs, 0.5, 1)) > len(D.build_examples(convs))


# ---------------------------------------------------------------------------------------------------------
# Tokenization


def test_label_mask_is_exact_token_by_token(tok):
    ex = list(D.conversation_examples(D.load_jsonl(FIXTURE)[0]))[4]
    t = D.tokenize_example(ex, tok, 1024)
    p_ids = tok.encode(ex.prompt, add_special_tokens=False)
    t_ids = tok.encode(ex.target, add_special_tokens=False)
    assert t.input_ids == p_ids + t_ids
    assert len(t.labels) == len(t.input_ids) and t.n_target == len(t_ids)
    for i, (x, y) in enumerate(zip(t.input_ids, t.labels)):
        assert y == (D.IGNORE if i < len(p_ids) else x), i
    assert t.labels[-1] == tok.convert_tokens_to_ids("<|im_end|>") == 2  # the end marker is learned
    assert tok.decode([y for y in t.labels if y != D.IGNORE]) == ex.target
    assert tok.decode(t.input_ids[:len(p_ids)]) == ex.prompt  # nothing of the prompt is learned


def test_collate_pads_with_ignored_labels_and_loss_counts_target_tokens(tok, tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from training.common import Runtime
    from training.finetune import loss_sum

    exs = D.build_examples(D.load_jsonl(FIXTURE)[:2])
    toks = [D.tokenize_example(e, tok, 1024) for e in exs[:3]]
    b = D.collate(toks, tok.pad_token_id)
    n = max(len(t.input_ids) for t in toks)
    assert b["input_ids"].shape == (3, n)
    for i, t in enumerate(toks):
        assert b["attention_mask"][i].sum() == len(t.input_ids)
        assert (b["labels"][i, len(t.input_ids):] == D.IGNORE).all()
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        s, k = loss_sum(model, b, Runtime("cpu", "float32"))
        assert k == sum(t.n_target for t in toks)
        ref = model(**b).loss  # transformers' own masked mean agrees with ours
    assert math.isclose(float(s) / k, float(ref), rel_tol=1e-4)


def test_truncation_drops_history_first_and_never_the_target(tok):
    ex = list(D.conversation_examples(D.load_jsonl(FIXTURE)[0]))[4]
    full = D.tokenize_example(ex, tok, 1024)
    no_prev = PhraseContext(ex.context.user, ex.context.knowledge, ex.context.earlier)
    bare = PhraseContext(ex.context.user, ex.context.knowledge, ())
    n_no_prev = len(tok.encode(build_prompt(no_prev), add_special_tokens=False)) + full.n_target
    n_bare = len(tok.encode(build_prompt(bare), add_special_tokens=False)) + full.n_target
    assert n_bare < n_no_prev < len(full.input_ids)

    t = D.tokenize_example(ex, tok, n_no_prev)  # fits once the previous turn is gone
    assert t.truncated == 1 and len(t.input_ids) == n_no_prev
    assert tok.decode(t.input_ids) == build_prompt(no_prev) + ex.target
    t = D.tokenize_example(ex, tok, n_no_prev - 1)  # the earlier phrase has to go too
    assert t.truncated == 2 and tok.decode(t.input_ids) == build_prompt(bare) + ex.target
    assert D.tokenize_example(ex, tok, n_bare - 1) is None  # the target is never cut
    toks, stats = D.tokenize_examples([ex], tok, n_bare - 1)
    assert toks == [] and stats.skipped_too_long == 1 and "turn 1 phrase 1" in stats.skipped[0]


def test_sil_special_token_vs_plain_text(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sil_ex = D.build_examples(D.load_jsonl(FIXTURE))[0]
    assert sil_ex.context.knowledge is None
    for mode in D.SIL_MODES:
        tk = AutoTokenizer.from_pretrained(tiny_dir)
        model = AutoModelForCausalLM.from_pretrained(tiny_dir)
        added = D.apply_sil_mode(tk, model, mode)
        ids = D.tokenize_example(sil_ex, tk, 1024).input_ids
        if mode == "special":
            assert added and len(tk) == 49153 and model.get_input_embeddings().weight.shape[0] == 49153
            sil_id = tk.convert_tokens_to_ids(SIL)
            assert sil_id == 49152 and ids.count(sil_id) == 1
            assert tk.encode(SIL, add_special_tokens=False) == [sil_id]
            assert not D.apply_sil_mode(tk, model, "special")  # idempotent
        else:
            assert not added and len(tk) == 49152 and model.get_input_embeddings().weight.shape[0] == 49152
            assert len(tk.encode(SIL, add_special_tokens=False)) > 1
            assert tk.decode(ids).count(SIL) == 1  # still in the prompt, as text
    with pytest.raises(D.DataError, match="unknown <sil> mode"):
        D.apply_sil_mode(tk, model, "nope")
    assert TrainConfig(lora=True).sil_mode() == "plain" and TrainConfig().sil_mode() == "special"
    with pytest.raises(ConfigError, match="--sil-token plain"):
        TrainConfig(lora=True, sil_token="special").sil_mode()


# ---------------------------------------------------------------------------------------------------------
# Schedule and training


def test_lr_warmup_then_cosine_in_optimizer_steps():
    cfg = TrainConfig(lr=1e-3, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [get_lr(s, cfg, 20) for s in range(21)]
    assert lrs[:4] == pytest.approx([1e-3 * k / 5 for k in (1, 2, 3, 4)])  # linear warmup
    assert lrs[4] == pytest.approx(1e-3)  # peak right after warmup
    assert lrs[12] == pytest.approx(1e-4 + 0.5 * 9e-4)  # cosine half-way
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # decays monotonically
    assert lrs[20] == pytest.approx(1e-4) and get_lr(99, cfg, 20) == pytest.approx(1e-4)
    assert get_lr(0, replace(cfg, warmup_steps=0), 20) == pytest.approx(1e-3)


def test_training_runs_schedule_per_optimizer_step_with_accumulation(tiny_dir, tmp_path):
    cfg = tiny_cfg(tiny_dir, tmp_path / "o", max_steps=5, grad_accum=3, batch_size=2, warmup_steps=2)
    res = train(cfg)
    assert [h["step"] for h in res.history] == [1, 2, 3, 4, 5]
    assert [h["lr"] for h in res.history] == pytest.approx([get_lr(s, cfg, 5) for s in range(5)])
    # epochs -> steps counts optimizer steps: examples / (batch * accum)
    n_train = res.data["train"]["examples"]
    res2 = train(replace(cfg, max_steps=0, epochs=1.0, out_dir=str(tmp_path / "o2")))
    assert res2.step == math.ceil(math.ceil(n_train / 2) / 3)


def test_finetune_loss_falls_and_output_loads_in_transformers_talker(tiny_dir, tmp_path, tok):
    import asyncio

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from convfill.talkers.transformers import TransformersTalker
    from training.common import Runtime
    from training.finetune import val_loss

    out = tmp_path / "talker"
    res = train(tiny_cfg(tiny_dir, out, max_steps=20, eval_every=10, val_fraction=0.2, lr=5e-3))
    assert res.data["train_conversations"] == 5 and res.data["val_conversations"] == 1
    assert res.data["sil_mode"] == "special" and res.data["vocab_size"] == 49153
    losses = [h["loss"] for h in res.history]
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5, losses
    assert [e["step"] for e in res.evals] == [0, 10, 20]
    assert res.evals[-1]["val_loss"] < res.evals[0]["val_loss"]
    assert res.best_val_loss == min(e["val_loss"] for e in res.evals)

    # the saved directory is what the transformers runtime loads, with <sil> as a token
    meta = json.loads((out / "convfill_train.json").read_text())
    assert meta["step"] == 20 and meta["style"] == "convfill"
    before = AutoModelForCausalLM.from_pretrained(tiny_dir)
    after = AutoModelForCausalLM.from_pretrained(out)
    assert after.get_input_embeddings().weight.shape[0] == 49153
    train_convs, _ = D.split_conversations(D.load_jsonl(FIXTURE), 0.2, 0)
    out_tok = AutoTokenizer.from_pretrained(out)
    ex_before, _ = D.tokenize_examples(D.build_examples(train_convs), tok, 256)
    ex_after, _ = D.tokenize_examples(D.build_examples(train_convs), out_tok, 256)
    rt, ecfg = Runtime("cpu", "float32"), TrainConfig(batch_size=8)
    assert val_loss(after, ex_after, ecfg, rt, 2) < 0.75 * val_loss(before, ex_before, ecfg, rt, 2)
    talker = TransformersTalker(model=str(out))
    assert talker.tokenizer.encode(SIL, add_special_tokens=False) == [49152]

    async def phrase():
        return "".join([p async for p in talker.stream(PhraseContext("Who wrote Pride and Prejudice?"), 12)])

    assert isinstance(asyncio.run(phrase()), str)


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tiny_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    full = train(tiny_cfg(tiny_dir, tmp_path / "a", max_steps=6, grad_accum=2, batch_size=3))
    part = train(tiny_cfg(tiny_dir, tmp_path / "b", max_steps=3, decay_steps=6, grad_accum=2, batch_size=3))
    ck = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)
    assert ck["step"] == 3 and ck["config"]["max_steps"] == 3 and "optimizer" in ck
    assert "best_val_loss" in ck and ck["optimizer"]["state"]
    res = train(tiny_cfg(tiny_dir, tmp_path / "b", max_steps=6, decay_steps=6, grad_accum=2, batch_size=3,
                         resume=True))
    assert [h["step"] for h in res.history] == [1, 2, 3, 4, 5, 6]
    assert res.history[:3] == part.history
    assert [h["loss"] for h in res.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-4)
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    with pytest.raises(ConfigError, match="batch_size"):
        train(tiny_cfg(tiny_dir, tmp_path / "b", max_steps=8, grad_accum=2, batch_size=4, resume=True))
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(tiny_cfg(tiny_dir, tmp_path / "c", resume=True))


def test_lora_keeps_vocabulary_saves_adapter_and_merged_weights(tiny_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    res = train(tiny_cfg(tiny_dir, out, max_steps=4, lora=True, lora_r=4, lora_alpha=8,
                         lora_targets=("q_proj", "v_proj")))
    assert res.data["sil_mode"] == "plain" and res.data["vocab_size"] == 49152
    assert (out / "adapter" / "adapter_config.json").exists()
    base, merged = load_file(tiny_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(merged) == set(base)  # plain llama weights, no lora_ tensors left
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(".q_proj." in k or ".v_proj." in k for k in changed)


def test_init_adapter_continues_from_a_saved_adapter(tiny_dir, tmp_path):
    """--init-adapter starts from the saved LoRA (its rank wins); lr 0 then leaves it exactly as it was."""
    import torch
    from safetensors.torch import load_file

    first = tmp_path / "first"
    train(tiny_cfg(tiny_dir, first, max_steps=4, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                   lora_targets=("q_proj", "v_proj")))
    again = tmp_path / "again"
    train(tiny_cfg(tiny_dir, again, max_steps=1, lr=0.0, lora=True, lora_r=16, lora_targets=("o_proj",),
                   init_adapter=str(first / "adapter")))
    a, b = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    base = load_file(tiny_dir / "model.safetensors")
    assert any(not torch.equal(a[k], base[k]) for k in a)  # the first run changed the weights ...
    assert all(torch.equal(a[k], b[k]) for k in a)  # ... and the continuation started from them
    cfg = json.loads((again / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="needs --lora"):
        train(tiny_cfg(tiny_dir, tmp_path / "x", init_adapter=str(first / "adapter")))
    with pytest.raises(ConfigError, match="adapter_config.json"):
        train(tiny_cfg(tiny_dir, tmp_path / "y", lora=True, init_adapter=str(tmp_path)))


def test_bad_options_fail_with_clear_errors(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="no training data"):
        train(TrainConfig(out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="too small"):
        train(tiny_cfg(tiny_dir, tmp_path / "x", max_len=16))


def test_cli_runs_without_validation_set_and_reports_errors_in_one_line(tiny_dir, tmp_path, capsys):
    from training.finetune import main

    args = ["--data", str(FIXTURE), "--model", str(tiny_dir), "--out-dir", str(tmp_path / "o"), "--max-steps",
            "2", "--val-fraction", "0", "--eval-every", "1", "--batch-size", "4", "--no-progress"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step"] == 2 and res["best_val_loss"] is None and res["final_loss"] > 0
    meta = json.loads((tmp_path / "o" / "convfill_train.json").read_text())
    assert meta["data"]["val_conversations"] == 0 and meta["evals"] == []
    assert main(["--data", str(tmp_path / "missing.jsonl"), "--out-dir", str(tmp_path / "p")]) == 1
    assert "training data not found" in capsys.readouterr().err


def test_finetune_help_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "training.finetune", "--help"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent).stdout
    flat = " ".join(out.split())
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, flag
        assert " ".join(f.metadata["help"].split())[:30] in flat, f.name


# ---------------------------------------------------------------------------------------------------------
# GGUF export


@pytest.fixture(scope="module")
def trained_tiny(tiny_dir, tmp_path_factory):
    """The tiny model after a short finetune (peaked logits, <sil> as token 49152)."""
    out = tmp_path_factory.mktemp("trained")
    train(tiny_cfg(tiny_dir, out, max_steps=25))
    return out


def test_permute_is_the_inverse_of_transformers_gguf_loader():
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from training.export_gguf import permute

    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    proc = LlamaTensorProcessor(config={"num_attention_heads": 3, "num_key_value_heads": 3})
    back = proc.process(permute(w, 3), "blk.0.attn_q.weight").weights
    assert np.array_equal(back, w) and not np.array_equal(permute(w, 3), w)


def test_export_f16_round_trips_weights_and_greedy_output(trained_tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from training.export_gguf import VERIFY_CONTEXTS, compare, export

    path = export(trained_tiny, tmp_path / "t.f16.gguf", "f16")
    # transformers reads the GGUF back to the same weights (f16 precision): names and permutation are right
    orig = AutoModelForCausalLM.from_pretrained(trained_tiny).state_dict()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name).state_dict()
    assert set(back) == set(orig)
    for k, v in orig.items():
        assert torch.allclose(back[k], v, atol=2e-3, rtol=1e-3), k
    # llama.cpp and transformers agree on tokens (<sil> is one control token in both) and greedy output
    sil_ctx = PhraseContext("Who wrote Pride and Prejudice?", None)
    res = compare(trained_tiny, path, contexts=(sil_ctx, *VERIFY_CONTEXTS[1:]), n_tokens=12)
    for r in res:
        assert r.same_prompt_tokens and r.llamacpp == r.transformers, r
        assert r.logit_max_abs_diff < 0.05, r
    assert res[0].transformers == res[0].llamacpp  # at least one non-empty comparison
    assert any(len(r.transformers) > 2 for r in res)  # real phrases were compared, not just a stop token


def test_export_q8_0_cli_verifies_and_serves_in_llamacpp_talker(trained_tiny, tmp_path):
    import asyncio

    from convfill.talkers.llamacpp import LlamaCppTalker
    from training.export_gguf import main

    out = tmp_path / "t.q8_0.gguf"
    assert main(["--model", str(trained_tiny), "--out", str(out), "--type", "q8_0", "--verify",
                 "--verify-tokens", "8", "--min-agree", "4"]) == 0
    f16 = tmp_path / "t.f16.gguf"
    assert main(["--model", str(trained_tiny), "--out", str(f16), "--type", "f16"]) == 0
    assert out.stat().st_size < 0.7 * f16.stat().st_size
    talker = LlamaCppTalker(model_path=out)
    assert talker.style == "convfill"

    async def phrase():
        return "".join([p async for p in talker.stream(PhraseContext("Hi there!"), 8)])

    assert isinstance(asyncio.run(phrase()), str)


def test_export_rejects_what_it_cannot_convert(tmp_path, tiny_dir):
    from training.export_gguf import export, gguf_name

    assert gguf_name("model.layers.7.mlp.down_proj.weight") == "blk.7.ffn_down.weight"
    with pytest.raises(ConfigError, match="bias"):
        gguf_name("model.layers.0.self_attn.q_proj.bias")
    with pytest.raises(ConfigError, match="config.json"):
        export(tmp_path, tmp_path / "x.gguf")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="llama architecture"):
        export(tmp_path, tmp_path / "x.gguf")


def test_lora_adapter_exports_to_gguf_and_llamacpp_applies_it_on_the_base(tiny_dir, tmp_path):
    """A --lora run -> GGUF adapter; llama.cpp base + adapter == transformers merged weights."""
    from training.export_gguf import compare, export, main

    base = export(tiny_dir, tmp_path / "base.f32.gguf", "f32")
    out = tmp_path / "lora"
    train(tiny_cfg(tiny_dir, out, max_steps=8, lr=1e-2, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0))
    adapter = tmp_path / "adapter.gguf"
    assert main(["--model", str(out), "--out", str(adapter), "--lora", "--base-gguf", str(base), "--verify",
                 "--verify-tokens", "8"]) == 0
    assert adapter.stat().st_size < 0.2 * base.stat().st_size
    ctxs = (PhraseContext("How tall is Mount Everest?", "Mount Everest is 8,849 metres tall."),)
    with_adapter = compare(out, base, contexts=ctxs, lora_path=adapter, n_tokens=8)[0]
    without = compare(out, base, contexts=ctxs, n_tokens=8)[0]
    assert with_adapter.same_prompt_tokens and with_adapter.llamacpp == with_adapter.transformers
    # the adapter is what closes the gap: the base alone is far from the merged weights
    assert with_adapter.logit_max_abs_diff < 0.02 < 0.1 < without.logit_max_abs_diff, (with_adapter, without)
    with pytest.raises(ConfigError, match="--lora"):
        from training.export_gguf import export_lora

        export_lora(tiny_dir, tmp_path / "x.gguf")


def test_verify_tolerance_accepts_only_near_ties():
    from training.export_gguf import Comparison

    same = Comparison(10, True, [5, 6, 2], [5, 6, 2], 3, None, 0.01, "", "")
    tie = Comparison(10, True, [5, 6, 2], [7, 6, 2], 0, 0.09, 1.0, "", "")
    far = Comparison(10, True, [5, 6, 2], [7, 6, 2], 0, 3.0, 1.0, "", "")
    long_prefix = Comparison(10, True, [1] * 8 + [5], [1] * 8 + [6], 8, 4.0, 0.1, "", "")
    bad_prompt = Comparison(10, False, [5], [5], 1, None, 0.0, "", "")
    assert same.ok(8) and not tie.ok(8) and tie.ok(8, tie_tol=1.5)
    assert not far.ok(8, tie_tol=1.5) and long_prefix.ok(8) and not bad_prompt.ok(1, 10.0)
