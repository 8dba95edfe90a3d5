"""The labeling store on a real SQLite file: schema, import, queue, labels with history and undo, threads,
agreement, and the exports (the JSONL parses back as ConvFill conversations and re-imports)."""

import csv
import json
import sqlite3
import threading

import pytest
import sqlite_utils

from convfill.clock import FakeClock
from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.errors import InputError
from convfill.testing import ScriptedReasoner, ScriptedTalker, in_threads, run_turn
from convfill import conversations
from labeling.agreement import cohen_kappa, pairwise
from labeling.cli import main
from labeling.export import export_csv, export_jsonl, human_verdict
from convfill.turnlog.schema import migrate
from convfill.nli.judge import Suggestion
from convfill.turnlog.recorder import TurnRecorder
from labeling.store import LabelStore, StoreError

CONV_A = {"conversation": [
    {"user": "Who wrote Pride and Prejudice?",
     "thoughts": ["<sil>", "Jane Austen wrote Pride and Prejudice.", "It was published in 1813."],
     "response": ["Let me think about that.", "Jane Austen wrote it.", "It came out in 1813."]},
    {"user": "Why is the sky blue?", "thoughts": ["<sil>", "Air scatters blue light more."],
     "response": ["Good question.", "Blue light scatters more in air."]}]}
CONV_B = {"conversation": [{"user": "Capital of France?", "thoughts": ["<sil>", "Paris is the capital."],
                            "response": ["Hmm, let me see.", "It is Paris, of course."]}]}


def _jsonl(path, *convs):
    path.write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "lab.db")
    s.import_convfill(_jsonl(tmp_path / "a.jsonl", CONV_A), reasoner="gpt")
    s.import_convfill(_jsonl(tmp_path / "b.jsonl", CONV_B), reasoner="claude")
    return s


def _ids(store):
    """Phrase ids by text."""
    return {r["text"]: r["id"] for r in store.db["phrases"].rows}


def _suggest(store, text_to_label, model="m1", p=0.8):
    ids = _ids(store)
    rest = (1 - p) / 2
    store.add_suggestions(
        (ids[t], Suggestion(lab, {k: (p if k == lab else rest) for k in ("entailment", "neutral", "contradiction")},
                            model)) for t, lab in text_to_label.items())


# ------------------------------------------------------------------------------------------ schema
def test_migration_adds_label_tables_with_exact_columns(tmp_path):
    db = sqlite_utils.Database(tmp_path / "x.db")
    assert "m002_suggestions_labels" in migrate(db)
    assert db["suggestions"].columns_dict == {"id": int, "phrase_id": int, "model_id": str, "label": str,
                                              "probs": str, "filler": int, "created_at": str}
    assert db["labels"].columns_dict == {"id": int, "phrase_id": int, "annotator": str, "label": str, "note": str,
                                         "created_at": str, "updated_at": str}
    assert db["label_history"].columns_dict == {"id": int, "phrase_id": int, "annotator": str, "action": str,
                                                "old_label": str, "new_label": str, "old_note": str,
                                                "new_note": str, "reverts": int, "at": str}
    uniques = {tuple(i.columns) for i in db["labels"].indexes if i.unique}
    assert ("phrase_id", "annotator") in uniques
    assert ("phrase_id", "model_id") in {tuple(i.columns) for i in db["suggestions"].indexes if i.unique}
    assert migrate(db) == []


def test_unique_label_per_phrase_and_annotator_is_enforced_by_sqlite(store):
    pid = next(iter(_ids(store).values()))
    store.set_label(pid, "ada", "entailment")
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("insert into labels (phrase_id, annotator, label) values (?, 'ada', 'neutral')", [pid])


# ------------------------------------------------------------------------------------------ import
def test_import_builds_turns_chunks_and_phrases(store):
    conv = store.db.execute("select id from conversations where json_extract(meta, '$.file') = 'a.jsonl'").fetchone()[0]
    turns = store.turns(conv)
    assert [t["user"] for t in turns] == ["Who wrote Pride and Prejudice?", "Why is the sky blue?"]
    assert turns[0]["reply"] == "Let me think about that. Jane Austen wrote it. It came out in 1813."
    ph = store.phrases(turns[0]["id"])
    assert [(p["source"], p["chunk_index"]) for p in ph] == [("sil", None), ("chunk", 0), ("chunk", 1)]
    assert [c["text"] for c in store.chunks(turns[0]["id"])] == ["Jane Austen wrote Pride and Prejudice.",
                                                                 "It was published in 1813."]
    assert store.reasoners() == ["claude", "gpt"]
    assert store.db["conversations"].count_where("source = 'import'") == 2


def test_import_same_file_twice_adds_nothing(store, tmp_path):
    r = store.import_convfill(_jsonl(tmp_path / "again.jsonl", CONV_A, CONV_B))
    assert (r.conversations, r.skipped) == (0, 2)
    assert store.db["phrases"].count == 7


def test_import_bad_file_imports_nothing(tmp_path):
    s = LabelStore(tmp_path / "x.db")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CONV_A) + "\nnot json\n")
    with pytest.raises(InputError, match="bad.jsonl:2: not valid JSON"):
        s.import_convfill(bad)
    assert s.db["phrases"].count == 0


def test_nli_pairs_follow_the_paper(store):
    ids = _ids(store)
    pairs = store.nli_pairs([ids["It came out in 1813."], ids["Good question."]])
    k = pairs[ids["It came out in 1813."]]
    assert k.premise == "It was published in 1813. Let me think about that. Jane Austen wrote it."
    assert k.hypothesis == "It came out in 1813." and not k.filler
    f = pairs[ids["Good question."]]
    assert f.premise == "Why is the sky blue?" and f.filler


async def test_chat_turns_recorded_by_the_engine_are_labelable(tmp_path):
    store = LabelStore(tmp_path / "chat.db")
    clock = FakeClock()
    rec = TurnRecorder(store, reasoner={"reasoner": "oracle", "model": None})
    engine = Engine(ScriptedTalker(clock=clock), ScriptedReasoner(["Fact one.", "Fact two."], 0.4, clock=clock),
                    EngineConfig(), clock=clock, observers=[rec])
    await run_turn(engine, "tell me")
    ids = store.queue(model_label="unscored", reasoner="oracle")
    assert ids
    items = [store.item(i) for i in ids]
    chunk_items = [it for it in items if not it["filler"]]
    assert chunk_items and chunk_items[0]["knowledge"] == "Fact one."
    pair = store.nli_pairs([chunk_items[0]["id"]])[chunk_items[0]["id"]]
    assert pair.premise.startswith("Fact one.") and pair.hypothesis == chunk_items[0]["text"]


# ------------------------------------------------------------------------------------------ queue
def test_queue_filters(store):
    ids = _ids(store)
    _suggest(store, {"Jane Austen wrote it.": "neutral", "It came out in 1813.": "neutral",
                     "Good question.": "neutral", "Blue light scatters more in air.": "entailment"}, p=0.6)
    _suggest(store, {"It is Paris, of course.": "neutral"}, p=0.95)
    assert store.queue() == sorted([ids["Jane Austen wrote it."], ids["It came out in 1813."], ids["Good question."],
                                    ids["It is Paris, of course."]])
    assert store.queue(model_label="entailment") == [ids["Blue light scatters more in air."]]
    assert store.queue(model_label="unscored") == sorted([ids["Let me think about that."], ids["Hmm, let me see."]])
    assert len(store.queue(model_label=None)) == 7 and len(store.queue(model_label="any")) == 7
    assert store.queue(min_score=0.9) == [ids["It is Paris, of course."]]
    assert ids["It is Paris, of course."] not in store.queue(max_score=0.7)
    assert store.queue(reasoner="claude") == [ids["It is Paris, of course."]]
    assert store.queue(exclude=[ids["Jane Austen wrote it."]], limit=1) == [ids["It came out in 1813."]]
    store.set_label(ids["Jane Austen wrote it."], "ada", "entailment")
    assert ids["Jane Austen wrote it."] not in store.queue(annotator="ada")
    assert ids["Jane Austen wrote it."] in store.queue(annotator="bob")
    assert ids["Jane Austen wrote it."] not in store.queue()  # nobody's labels yet = no label at all
    assert store.queue(annotated=True, annotator="ada") == [ids["Jane Austen wrote it."]]
    assert store.queue(annotated=True, annotator="bob") == []
    # A newer suggestion from another model is the one the queue uses.
    _suggest(store, {"Jane Austen wrote it.": "entailment"}, model="m2")
    assert ids["Jane Austen wrote it."] not in store.queue(annotated=None)
    assert ids["Jane Austen wrote it."] in store.queue(annotated=None, model_id="m1")


def test_error_phrases_are_not_labelable(tmp_path):
    s = LabelStore(tmp_path / "x.db")
    s.import_convfill(_jsonl(tmp_path / "a.jsonl", CONV_B))
    s.db.execute("update phrases set source = 'error' where phrase_index = 0")
    s.db.conn.commit()
    assert len(s.queue(model_label=None)) == 1 and s.progress().total == 1
    assert len(s.unscored("m")) == 1


# ------------------------------------------------------------------------------------------ labels
def test_changed_label_is_an_update_with_history_and_undo_walks_back(store):
    pid = _ids(store)["Jane Austen wrote it."]
    assert store.set_label(pid, "ada", "neutral")["action"] == "set"
    r = store.set_label(pid, "ada", "entailment", note="paraphrase")
    assert (r["action"], r["previous"]) == ("update", "neutral")
    assert store.set_label(pid, "ada", "entailment", note="paraphrase")["action"] == "unchanged"
    assert [(h["action"], h["old_label"], h["new_label"]) for h in store.label_history(pid)] == [
        ("set", None, "neutral"), ("update", "neutral", "entailment")]
    lab = store.labels(phrase_id=pid)[0]
    assert (lab["label"], lab["note"]) == ("entailment", "paraphrase") and lab["created_at"] <= lab["updated_at"]
    assert store.undo_label(pid, "ada") == {"phrase_id": pid, "label": "neutral"}
    assert store.labels(phrase_id=pid)[0]["label"] == "neutral" and store.labels(phrase_id=pid)[0]["note"] is None
    assert store.undo_label(pid, "ada") == {"phrase_id": pid, "label": None}
    assert store.labels(phrase_id=pid) == []
    assert store.undo_label(pid, "ada") is None
    assert [h["action"] for h in store.label_history(pid)] == ["set", "update", "undo", "undo"]


def test_labels_of_different_annotators_are_separate(store):
    pid = _ids(store)["Good question."]
    store.set_label(pid, "ada", "neutral")
    store.set_label(pid, "bob", "contradiction")
    assert {(x["annotator"], x["label"]) for x in store.labels(phrase_id=pid)} == {("ada", "neutral"),
                                                                                  ("bob", "contradiction")}
    assert store.item(pid, "bob")["mine"] == "contradiction"
    store.undo_label(pid, "bob")
    assert [x["annotator"] for x in store.labels(phrase_id=pid)] == ["ada"]


@pytest.mark.parametrize("args,match", [((None, "ada", "entailment"), "No phrase"),
                                        (("ID", "", "entailment"), "annotator name"),
                                        (("ID", "ada", "maybe"), "not an NLI label"),
                                        (("ID", "x" * 200, "neutral"), "at most")])
def test_bad_labels_are_refused_and_write_nothing(store, args, match):
    pid = next(iter(_ids(store).values()))
    args = tuple(10_000 if a is None else pid if a == "ID" else a for a in args)
    with pytest.raises(StoreError, match=match):
        store.set_label(*args)
    assert store.db["labels"].count == 0 and store.db["label_history"].count == 0


def test_eight_threads_writing_labels_lose_nothing(tmp_path):
    path = tmp_path / "threads.db"
    setup = LabelStore(path)
    setup.import_convfill(_jsonl(tmp_path / "a.jsonl", CONV_A, CONV_B))
    pids = [r["id"] for r in setup.db["phrases"].rows]
    # One store shared by all threads, like the Gradio app. SQLite's busy handler is not a fair queue: on a
    # CPU shared with other jobs one writer can wait past the 10 s default, which is the clear-error path
    # (tested elsewhere), not what this test is about, so the wait is generous here.
    store = LabelStore(path, busy_timeout_ms=120_000)
    labels = ["entailment", "neutral", "contradiction"]
    barrier = threading.Barrier(8)
    rounds = 6

    def worker(w):
        barrier.wait()
        for r in range(rounds):
            for i, pid in enumerate(pids):
                store.set_label(pid, f"annotator{w}", labels[(w + i + r) % 3])  # changes every round
                store.set_label(pid, "shared", labels[(w + r) % 3])  # everybody on the same rows

    assert in_threads(worker, 8) == []
    check = LabelStore(path)
    assert check.db["labels"].count == 8 * len(pids) + len(pids)
    for w in range(8):
        got = {x["phrase_id"]: x["label"] for x in check.labels(annotator=f"annotator{w}")}
        assert got == {pid: labels[(w + i + rounds - 1) % 3] for i, pid in enumerate(pids)}
    # Every write of a per-annotator label was a real change and left exactly one history row.
    assert check.db["label_history"].count_where("annotator != 'shared'") == 8 * len(pids) * rounds
    # The shared rows: the history chain of each phrase is consistent (each old = previous new).
    for pid in pids:
        hist = check.label_history(pid, "shared")
        assert hist[0]["old_label"] is None
        assert all(a["new_label"] == b["old_label"] for a, b in zip(hist, hist[1:]))
        assert hist[-1]["new_label"] == check.labels(phrase_id=pid, annotator="shared")[0]["label"]


def test_progress_counts_mine_and_all(store):
    ids = _ids(store)
    _suggest(store, {"Good question.": "neutral"})
    store.set_label(ids["Good question."], "ada", "neutral")
    store.set_label(ids["Good question."], "bob", "neutral")
    store.set_label(ids["Jane Austen wrote it."], "bob", "entailment")
    p = store.progress("bob")
    assert (p.mine, p.labeled, p.total, p.scored, p.annotators) == (2, 2, 7, 1, 2)
    assert store.progress("ada").mine == 1 and store.progress().mine == 0


# ------------------------------------------------------------------------------------------ agreement
def test_cohen_kappa_known_values():
    a = ["entailment", "entailment", "neutral", "contradiction", "entailment", "neutral"]
    b = ["entailment", "neutral", "neutral", "contradiction", "entailment", "entailment"]
    # p_o = 4/6, p_e = (3*3 + 2*2 + 1*1) / 36 = 14/36 -> kappa = (24 - 14) / (36 - 14) = 10/22
    assert cohen_kappa(a, b) == pytest.approx(10 / 22)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["neutral", "entailment"], ["entailment", "neutral"]) == pytest.approx(-1.0)
    assert cohen_kappa(["neutral"] * 3, ["neutral"] * 3) is None and cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa(["neutral"], [])


def test_pairwise_agreement_on_shared_phrases_only(store):
    ids = list(_ids(store).values())
    for pid, la, lb in zip(ids, ["entailment", "neutral", "neutral", "contradiction"],
                           ["entailment", "neutral", "entailment", "contradiction"]):
        store.set_label(pid, "ada", la)
        store.set_label(pid, "bob", lb)
    store.set_label(ids[5], "ada", "neutral")  # only ada: not shared
    store.set_label(ids[6], "cy", "neutral")  # cy shares nothing with anyone
    pairs = pairwise(store.labels_by_annotator())
    assert [(p.a, p.b, p.n) for p in pairs] == [("ada", "bob", 4)]
    assert pairs[0].agreement == pytest.approx(0.75)
    assert pairs[0].kappa == pytest.approx(cohen_kappa(["entailment", "neutral", "neutral", "contradiction"],
                                                       ["entailment", "neutral", "entailment", "contradiction"]))


# ------------------------------------------------------------------------------------------ export
def test_human_verdict_majority_and_cautious_ties():
    assert human_verdict(["entailment", "entailment", "neutral"]) == "entailment"
    assert human_verdict(["entailment", "neutral"]) == "neutral"
    assert human_verdict(["entailment", "contradiction"]) == "contradiction"
    assert human_verdict([]) is None


def _labeled_store(store):
    _suggest(store, {"Let me think about that.": "neutral",  # filler, model neutral -> kept
                     "Jane Austen wrote it.": "neutral",  # human says entailment -> kept
                     "It came out in 1813.": "entailment",  # human says contradiction -> dropped
                     "Good question.": "contradiction",  # filler, human neutral overrides -> kept
                     "Blue light scatters more in air.": "neutral",  # chunk, model neutral only -> dropped
                     "It is Paris, of course.": "entailment"})  # chunk, model entailment -> kept
    ids = _ids(store)
    store.set_label(ids["Jane Austen wrote it."], "ada", "entailment")
    store.set_label(ids["It came out in 1813."], "ada", "contradiction")
    store.set_label(ids["Good question."], "bob", "neutral")
    # "Hmm, let me see." is not judged by anybody -> dropped


def test_export_jsonl_keeps_acceptable_phrases_and_parses_back(store, tmp_path):
    _labeled_store(store)
    out = tmp_path / "out" / "train.jsonl"
    s = export_jsonl(store, out)
    assert (s.conversations, s.turns, s.phrases, s.dropped) == (2, 3, 4, 3)
    lines = out.read_text(encoding="utf-8").splitlines()
    convs = [conversations.parse_line(line) for line in lines]  # the shared format, strictly
    assert all(set(json.loads(line)) == {"conversation"} for line in lines)
    assert all(set(t) == {"user", "thoughts", "response"} for c in convs for t in c)
    assert convs[0] == [
        {"user": "Who wrote Pride and Prejudice?", "thoughts": ["<sil>", "Jane Austen wrote Pride and Prejudice."],
         "response": ["Let me think about that.", "Jane Austen wrote it."]},
        {"user": "Why is the sky blue?", "thoughts": ["<sil>"], "response": ["Good question."]}]
    assert convs[1] == [{"user": "Capital of France?", "thoughts": ["Paris is the capital."],
                         "response": ["It is Paris, of course."]}]
    # Round trip: the export imports into a fresh store with the same phrases and thoughts.
    fresh = LabelStore(tmp_path / "fresh.db")
    r = fresh.import_convfill(out)
    assert (r.conversations, r.turns, r.phrases) == (2, 3, 4)
    assert sorted(p["text"] for p in fresh.db["phrases"].rows) == sorted(
        ["Let me think about that.", "Jane Austen wrote it.", "Good question.", "It is Paris, of course."])
    export_jsonl(fresh, tmp_path / "empty.jsonl")
    assert (tmp_path / "empty.jsonl").read_text() == ""  # nothing judged in the fresh store -> nothing kept


def test_export_csv_has_every_label_and_model_score(store, tmp_path):
    _labeled_store(store)
    store.set_label(_ids(store)["Jane Austen wrote it."], "bob", "neutral", note="adds nothing")
    out = tmp_path / "all.csv"
    s = export_csv(store, out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert s.rows == len(rows) == 6 + 4 + 1  # 6 model rows, 4 human rows, 1 unjudged phrase
    jane = [r for r in rows if r["phrase"] == "Jane Austen wrote it."]
    assert {(r["kind"], r["who"], r["label"]) for r in jane} == {("model", "m1", "neutral"),
                                                                 ("human", "ada", "entailment"),
                                                                 ("human", "bob", "neutral")}
    model = next(r for r in jane if r["kind"] == "model")
    assert float(model["p_neutral"]) == pytest.approx(0.8) and model["knowledge"].startswith("Jane Austen")
    assert next(r for r in jane if r["who"] == "bob")["note"] == "adds nothing"
    assert {r["verdict"] for r in jane} == {"neutral"}  # 1-1 tie between people -> the cautious label
    assert {r["exported"] for r in jane} == {"0"}
    hmm = [r for r in rows if r["phrase"] == "Hmm, let me see."]
    assert len(hmm) == 1 and hmm[0]["kind"] == "" and hmm[0]["verdict_by"] == "none"


def test_export_cli(store, tmp_path, capsys):
    _labeled_store(store)
    assert main(["export", "--db", str(store.path), "--format", "jsonl", "--out", str(tmp_path / "x.jsonl"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["phrases"] == 4
    assert main(["export", "--db", str(store.path), "--format", "csv", "--out", str(tmp_path / "x.csv")]) == 0
    assert "rows about 7 phrases" in capsys.readouterr().out
    (tmp_path / "adir").mkdir()
    assert main(["export", "--db", str(store.path), "--format", "csv", "--out", str(tmp_path / "adir")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and len(err.splitlines()) == 1
    assert list((tmp_path / "adir").iterdir()) == []  # no half-written temp file left behind


def test_stats_cli(store, capsys):
    ids = list(_ids(store).values())
    for pid in ids[:3]:
        store.set_label(pid, "ada", "neutral")
        store.set_label(pid, "bob", "neutral")
    store.set_label(ids[3], "ada", "entailment")
    store.set_label(ids[3], "bob", "neutral")
    assert main(["stats", "--db", str(store.path), "--annotator", "ada", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mine"] == 4 and out["labeled"] == 4 and out["agreement"][0]["n"] == 4
    assert out["agreement"][0]["agreement"] == pytest.approx(0.75)


def test_export_and_stats_refuse_a_missing_database(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "x.db"
    assert main(["export", "--db", str(missing), "--format", "jsonl", "--out", str(tmp_path / "o.jsonl")]) == 1
    assert "no database at" in capsys.readouterr().err
    assert main(["stats", "--db", str(missing)]) == 1
    assert not missing.exists() and not (tmp_path / "o.jsonl").exists()
