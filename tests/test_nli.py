"""The NLI judge with a real (tiny, random-weight) Hugging Face classifier built offline in the test, and the
`score` (`python -m labeling`) and `judge` (`python -m convfill.eval`) command lines end to end on a real
SQLite file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_nli import build_tiny_nli

from convfill.eval.cli import main as eval_main
from labeling.cli import main
from convfill.nli.judge import LABELS, NLIError, NLIJudge, load_judge, normalize_label, premise_for
from labeling.store import LabelStore

REPO = Path(__file__).resolve().parents[1]

CONV = [
    {"conversation": [
        {"user": "Who wrote Pride and Prejudice?",
         "thoughts": ["<sil>", "Jane Austen wrote Pride and Prejudice.", "It was published in 1813."],
         "response": ["Let me think about that.", "Jane Austen wrote it.", "It came out in 1813."]},
        {"user": "Why is the sky blue?", "thoughts": ["<sil>", "Light scatters."],
         "response": ["Good question.", "Because light scatters."]}]},
    {"conversation": [{"user": "Hi", "thoughts": ["<sil>"], "response": ["Hello there!"]}]},
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """Index order contradiction/neutral/entailment (not MNLI's usual), biased towards ENTAILMENT."""
    return build_tiny_nli(tmp_path_factory.mktemp("nli") / "tiny",
                          id2label={0: "contradiction", 1: "Neutral", 2: "ENTAILMENT"}, bias_to="entailment")


@pytest.fixture(scope="module")
def tiny_neutral_dir(tmp_path_factory):
    """Default MNLI-style order, biased towards NEUTRAL."""
    return build_tiny_nli(tmp_path_factory.mktemp("nli") / "tinyn", bias_to="neutral")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_premise_for_knowledge_phrase_and_filler():
    p = premise_for("It came out in 1813.", user="Who wrote it?", knowledge="It was published in 1813.",
                    earlier=["Let me think.", "Jane Austen wrote it."])
    assert p.premise == "It was published in 1813. Let me think. Jane Austen wrote it."
    assert p.hypothesis == "It came out in 1813." and p.filler is False
    f = premise_for("Good question.", user="Why is the sky blue?", knowledge=None, earlier=["Hmm."])
    assert f.premise == "Why is the sky blue? Hmm." and f.filler is True
    assert premise_for("x", user="u", knowledge="<sil>").filler is True


@pytest.mark.parametrize("raw,want", [("ENTAILMENT", "entailment"), ("Neutral", "neutral"),
                                      ("contradiction", "contradiction"), ("entails", "entailment"),
                                      ("not_entailment", "neutral")])
def test_normalize_label(raw, want):
    assert normalize_label(raw) == want


def test_normalize_label_rejects_unknown():
    with pytest.raises(ValueError, match="LABEL_0"):
        normalize_label("LABEL_0")


def test_judge_reads_labels_from_config_not_index_order(tiny_dir, tiny_neutral_dir):
    pre, hyp = ["Jane Austen wrote the book.", "The sky is blue."], ["Jane Austen wrote it.", "Light scatters."]
    ent = NLIJudge(str(tiny_dir)).predict(pre, hyp)
    neu = NLIJudge(str(tiny_neutral_dir)).predict(pre, hyp)
    # Both heads put their bias on the label *named* entailment / neutral, at different indices.
    assert [s.label for s in ent] == ["entailment", "entailment"]
    assert [s.label for s in neu] == ["neutral", "neutral"]
    for s in ent + neu:
        assert set(s.probs) == set(LABELS) and sum(s.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert s.label == max(s.probs, key=s.probs.get)
    assert ent[0].model_id == str(tiny_dir.resolve())


def test_batches_give_the_same_answers(tiny_dir):
    pre = [f"the sky is blue {i}" for i in range(7)]
    hyp = ["light scatters because"] * 7
    a = NLIJudge(str(tiny_dir), batch_size=2).predict(pre, hyp, progress=True)
    b = NLIJudge(str(tiny_dir), batch_size=16).predict(pre, hyp)
    assert len(a) == 7
    for x, y in zip(a, b):
        assert x.probs == pytest.approx(y.probs, abs=1e-4)


def test_model_without_nli_label_names_is_refused(tmp_path):
    d = build_tiny_nli(tmp_path / "bad", id2label={0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(NLIError, match="not an NLI classifier"):
        NLIJudge(str(d))


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(NLIError, match="not found"):
        NLIJudge(str(tmp_path / "nope" / "model"))


def test_load_judge_offline_without_model_says_why(monkeypatch):
    judge, msg = load_judge("some-org/not-in-cache-nli", fallback=False)
    assert judge is None and "hub is offline" in msg and "not-in-cache-nli" in msg
    judge, msg = load_judge("some-org/not-in-cache-nli")
    if judge is None:  # no offline judge in this checkout
        assert "No NLI model could be loaded" in msg and "label every phrase by hand" in msg
    else:  # the project's offline judge took over, and says so
        from convfill.nli.offline import judge_id

        assert judge.model_id == judge_id() and "offline fallback" in msg and judge_id() in msg


def test_load_judge_uses_the_configured_model(monkeypatch, tiny_dir):
    monkeypatch.setenv("CONVFILL_NLI_MODEL", str(tiny_dir))
    judge, msg = load_judge()
    assert judge is not None and judge.model_id == str(tiny_dir.resolve()) and str(tiny_dir) in msg


def test_score_cli_imports_and_scores_end_to_end(tmp_path, tiny_neutral_dir, capsys):
    db, data = tmp_path / "s.db", _write_jsonl(tmp_path / "conv.jsonl", CONV)
    assert main(["score", "--db", str(db), "--input", str(data), "--model", str(tiny_neutral_dir),
                 "--batch-size", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["imported"] == {"conversations": 2, "turns": 3, "phrases": 6, "skipped_duplicates": 0}
    assert out["scored"] == {"entailment": 0, "neutral": 6, "contradiction": 0}
    store = LabelStore(db)
    rows = list(store.db["suggestions"].rows)
    assert len(rows) == 6 and {r["model_id"] for r in rows} == {str(tiny_neutral_dir.resolve())}
    assert all(json.loads(r["probs"])["neutral"] > 0.9 for r in rows)
    assert sorted(r["filler"] for r in rows) == [0, 0, 0, 1, 1, 1]
    # Importing the same file again adds nothing and there is nothing left to score.
    assert main(["score", "--db", str(db), "--input", str(data), "--model", str(tiny_neutral_dir), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["imported"]["skipped_duplicates"] == 2 and sum(again["scored"].values()) == 0
    assert store.db["phrases"].count == 6


def test_score_cli_as_a_module_process(tmp_path, tiny_dir):
    db, data = tmp_path / "s.db", _write_jsonl(tmp_path / "conv.jsonl", CONV[1:])
    env_cmd = [sys.executable, "-m", "labeling", "score", "--db", str(db), "--input", str(data),
               "--model", str(tiny_dir), "--json"]
    r = subprocess.run(env_cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["scored"]["entailment"] == 1


def test_score_cli_errors_are_one_line_and_change_nothing(tmp_path, capsys):
    db, data = tmp_path / "s.db", _write_jsonl(tmp_path / "conv.jsonl", CONV)
    assert main(["score", "--db", str(db), "--input", str(data), "--model", str(tmp_path / "no" / "model")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "not found" in err and len(err.splitlines()) == 1
    assert not db.exists() or LabelStore(db).db["phrases"].count == 0
    assert main(["score", "--db", str(db), "--input", str(tmp_path / "missing.jsonl")]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CONV[0]) + "\n" + '{"conversation": [{"user": "x", "thoughts": ["a"], '
                   '"response": []}]}\n')
    assert main(["score", "--db", str(db), "--input", str(bad), "--import-only"]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "1 thoughts but 0 responses" in err
    assert LabelStore(db).db["phrases"].count == 0  # the good first line was not imported either


def test_judge_eval_cli(tmp_path, tiny_dir, capsys):
    rows = [{"premise": "the sky is blue", "hypothesis": "light scatters", "label": lab}
            for lab in ["entailment"] * 6 + ["neutral"] * 3 + ["contradiction"]]
    data = _write_jsonl(tmp_path / "nli.jsonl", rows)
    assert eval_main(["judge", "--data", str(data), "--model", str(tiny_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 10 and res["accuracy"] == pytest.approx(0.6)
    assert res["per_label"]["entailment"] == {"n": 6, "correct": 6, "predicted": 10, "accuracy": 1.0}
    assert res["per_label"]["neutral"]["accuracy"] == 0.0 and res["per_label"]["contradiction"]["n"] == 1
    assert res["loss"] > 0 and res["ms_per_pair"] > 0 and res["data"] == str(data)
    assert eval_main(["judge", "--data", str(data), "--checkpoint", str(tiny_dir), "--limit", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4
    assert eval_main(["judge", "--data", str(data), "--model", str(tiny_dir), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "accuracy 0.6000 on 10 pairs" in text and "entailment    n=     6 accuracy=1.0000 predicted=10" in text


def test_judge_eval_against_the_peoples_labels(tmp_path, tiny_dir, capsys):
    """`--labels-db`: the judge against the workbench's human labels, pairs built by the store's premise rule."""
    db, data = tmp_path / "s.db", _write_jsonl(tmp_path / "conv.jsonl", CONV)
    assert main(["score", "--db", str(db), "--input", str(data), "--import-only"]) == 0
    store = LabelStore(db)
    ids = [r["id"] for r in store.phrase_rows()]
    for pid, lab in zip(ids, ["entailment", "neutral", "entailment", "contradiction"]):
        store.set_label(pid, "ada", lab)
    store.set_label(ids[0], "bob", "neutral")
    capsys.readouterr()
    assert eval_main(["judge", "--labels-db", str(db), "--model", str(tiny_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)  # the tiny judge says entailment to everything
    assert res["n"] == 5 and res["per_label"]["entailment"] == {"n": 2, "correct": 2, "predicted": 5, "accuracy": 1.0}
    assert eval_main(["judge", "--labels-db", str(db), "--annotator", "ada", "--model", str(tiny_dir),
                      "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4
    assert eval_main(["judge", "--labels-db", str(db), "--annotator", "cy", "--model", str(tiny_dir)]) == 1
    assert "no human labels by cy" in capsys.readouterr().err


def test_judge_eval_bad_data_is_one_line(tmp_path, capsys):
    data = tmp_path / "nli.jsonl"
    data.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment"}\n{"premise": "a", "label": 2}\n')
    assert eval_main(["judge", "--data", str(data), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: nli.jsonl:2") and len(err.splitlines()) == 1


def test_load_judge_never_raises_on_a_broken_checkpoint(tmp_path):
    d = build_tiny_nli(tmp_path / "broken")
    (d / "model.safetensors").write_bytes(b"not a safetensors file")
    judge, msg = load_judge(str(d), fallback=False)
    assert judge is None and "broken" in msg


def test_unreachable_hub_counts_as_offline(monkeypatch):
    """An offline machine without HF_HUB_OFFLINE must not wait through the hub client's retries."""
    from convfill import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub._reachable("hub.invalid", timeout=0.5) is False  # a real DNS failure, not a stub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_offline() is True


def test_one_home_for_the_nli_pair():
    """Labels, their spelling and the premise rule are defined once (convfill.nli) for every judge path."""
    import convfill.eval.entail as entail
    import convfill.nli as core
    import convfill.nli.judge as workbench
    import training.nli_data as trainer

    assert workbench.normalize_label is entail.normalize_label is core.normalize_label
    assert workbench.premise_for is core.premise_for and workbench.LABELS is entail.LABELS is trainer.LABELS
    assert [core.normalize_label(x) for x in ("E", "n", "C", "entails", "Not-Entailment")] == [
        "entailment", "neutral", "contradiction", "entailment", "neutral"]
