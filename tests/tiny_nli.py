"""A tiny random-weight NLI classifier built offline for tests (BertConfig + a vocab written here).

`bias_to` pushes the classifier's bias towards one label *name*, so a test can check that the judge maps
outputs through `config.id2label` (whatever the index order) instead of a hard-coded order.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("the a an is was it of to and in on who what why when where wrote book jane austen pride prejudice "
         "published sky blue light scatters because let me think about that good question hello there hi yes "
         "no paris capital france 1813 water boils at 100 degrees one two three sure so well").split()


def build_tiny_nli(path: Path, id2label: dict[int, str] | None = None, bias_to: str | None = None,
                   seed: int = 0) -> Path:
    """Save a 1-layer BERT sequence classifier + fast tokenizer to `path`; returns `path`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    id2label = id2label or {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=256, num_labels=len(id2label),
                     id2label=id2label, label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    if bias_to is not None:
        idx = next(i for i, name in id2label.items() if name.lower() == bias_to.lower())
        with torch.no_grad():
            model.classifier.weight.mul_(0.01)
            model.classifier.bias.zero_()
            model.classifier.bias[idx] = 6.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
