"""The Labeling tab: one phrase at a time, keyboard first, every label straight into the shared store.

`build_labeling_tab(store)` is called inside a `gr.Blocks` (app.py wraps it in `gr.Tab("Labeling")`).
Handlers are thin adapters over `LabelStore`, `convfill.nli.judge`, `labeling.agreement` and `labeling.export`;
all state that matters lives in SQLite, the per-browser session state only remembers what this person
skipped and what they may undo.

Keys (when focus is not in a text box): 1/2/3 = entailment/neutral/contradiction and advance, Enter =
accept the model's suggestion, S = skip, U = undo the last label. The keys click the visible buttons, and
presses that arrive while the server is still answering are queued in the browser and replayed in order
(Gradio drops a click on a button whose previous event is still running).
"""

from __future__ import annotations

import collections
import os
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from convfill.nli import LABELS
from convfill.nli.judge import load_judge
from convfill.untrusted import markdown_literal

from .agreement import pairwise
from .card import CSS, GUIDELINES, KEY_JS, render_card
from .export import export_csv, export_jsonl
from .roles import Roles, identity_of
from .store import LabelStore, StoreError

SHOW = [("not labeled by me", "todo_me"), ("not labeled by anyone", "todo_all"), ("labeled by me", "done_me"),
        ("labeled by anyone", "done_all"), ("all phrases", "all")]
MODEL_LABELS = [("model said neutral", "neutral"), ("model said entailment", "entailment"),
                ("model said contradiction", "contradiction"), ("not scored yet", "unscored"), ("any", "any")]
ANY = "any"
SEEN_MAX = 20_000  # skipped/labeled ids a session excludes from its queue (SQLite caps bound parameters)


def _filters(model_label, min_score, max_score, reasoner, show, annotator) -> dict:
    who = (annotator or "").strip() or None
    annotated, by = {"todo_me": (False, who), "todo_all": (False, None), "done_me": (True, who),
                     "done_all": (True, None), "all": (None, None)}.get(show, (False, who))
    return {"model_label": None if model_label == ANY else model_label, "min_score": float(min_score or 0),
            "max_score": float(1 if max_score is None else max_score),
            "reasoner": None if reasoner in (None, "", ANY) else reasoner, "annotated": annotated,
            "annotator": by}


class SessionStates:
    """Each browser session's labeling state, kept server-side, with one lock per session.

    Gradio hands a handler the state as it was when the event was queued; two events of one session in
    flight could then both start from the same copy and one's changes be lost. Here a handler always starts
    from the latest state of its session, one at a time per session. The least recently active sessions are
    forgotten beyond `max_sessions` (their next event starts from what the browser sends).
    """

    def __init__(self, max_sessions: int = 2000):
        self.max_sessions = max_sessions
        self._states: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def run(self, request, given: dict, st_index: int, fn):
        key = getattr(request, "session_hash", None)
        if key is None:  # called without a browser session: the state as given
            return fn(given)
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:
            with self._guard:
                st = self._states.get(key, given)
            out = fn(st)
            with self._guard:
                self._states[key] = out[st_index]
                self._states.move_to_end(key)
                while len(self._states) > self.max_sessions:
                    old, _ = self._states.popitem(last=False)
                    self._locks.pop(old, None)
            return out


EXPORT_KEEP_S = 600  # an export file lives this long: Gradio copies it into its own cache when it is sent


def export_folder(now: float | None = None) -> Path:
    """The one folder exports are written to (Gradio serves files from the temp dir); files older than
    `EXPORT_KEEP_S` are deleted on each export, so exports no longer pile up in fresh temp dirs."""
    folder = Path(tempfile.gettempdir()) / "convfill-exports"
    folder.mkdir(exist_ok=True)
    now = time.time() if now is None else now
    for f in folder.glob("convfill-labels-*"):
        try:
            if now - f.stat().st_mtime > EXPORT_KEEP_S:
                f.unlink()
        except OSError:  # another export removed it first
            pass
    return folder


def build_labeling_tab(store: LabelStore, judge_loader=load_judge, tab=None, roles: Roles | None = None) -> dict:
    """Build the tab's components and events inside the current `gr.Blocks`.

    Args:
        store: the shared store (the chat tab writes turns into the same one).
        judge_loader: `() -> (judge | None, message)`; called once, on first use, then cached.
        tab: the `gr.Tab` this is built in: opening it refreshes the counts and the queue (chat turns
            stored since the page loaded show up).
        roles: who may see, label, score and export (`labeling.roles`); default: local use, everyone.

    Returns:
        The main components by name (for app.py and tests).
    """
    judge_cache: dict = {}
    judge_lock = threading.Lock()
    roles = roles or Roles()

    def visitor(typed, request, profile):
        """(annotator name, owner filter, identity): in public mode the account, and only the visitor's own
        conversations unless they have a role."""
        who = identity_of(request, profile)
        return roles.annotator_name(who, typed), None if roles.sees_all(who) else who.owner, who

    def get_judge():
        # Loading DeBERTa takes seconds; one load per process, shared by every browser session.
        with judge_lock:
            if "judge" not in judge_cache:
                judge_cache["judge"], judge_cache["message"] = judge_loader()
            return judge_cache["judge"], judge_cache["message"]

    gr.HTML(f"<style>{CSS}</style>", padding=False)
    # A fixed key and secret (the name is not sensitive) so the stored name survives server restarts; a
    # random per-process secret would make yesterday's value unreadable.
    saved_name = gr.BrowserState("", storage_key="convfill-labeling-annotator", secret="convfill-labeling")
    session = gr.State({"current": None, "seen": [], "undo": [], "nonce": 0})
    with gr.Row():
        annotator = gr.Textbox(label="Your name (annotator)", placeholder="e.g. ada", max_lines=1, scale=1,
                               elem_id="lab-annotator")
        progress = gr.Markdown("", elem_id="lab-progress")
    judge_status = gr.Markdown("Checking which NLI model can be loaded…", elem_id="lab-judge-status")
    with gr.Accordion("Filters", open=False):
        with gr.Row():
            model_label = gr.Dropdown(MODEL_LABELS, value="neutral", label="Model label", elem_id="lab-f-label")
            show = gr.Dropdown(SHOW, value="todo_me", label="Show", elem_id="lab-f-show")
            reasoner = gr.Dropdown([ANY], value=ANY, label="Reasoner", allow_custom_value=True,
                                   elem_id="lab-f-reasoner")
        with gr.Row():
            min_score = gr.Slider(0, 1, value=0, step=0.05, label="Min score (model's probability of its label)")
            max_score = gr.Slider(0, 1, value=1, step=0.05, label="Max score")
            refresh = gr.Button("Apply filters / refresh", elem_id="lab-refresh")
    gr.HTML("<small>Keys: <b>1</b> entailment · <b>2</b> neutral · <b>3</b> contradiction · <b>Enter</b> accept "
            "suggestion · <b>S</b> skip · <b>U</b> undo</small>", js_on_load=KEY_JS, elem_id="lab-keys")
    card = gr.HTML(render_card(None, 0, "Loading…"), elem_id="lab-card", js_on_load=None)
    with gr.Row():
        b_ent = gr.Button("1 · Entailment", elem_id="lab-btn-entailment", variant="primary", min_width=90)
        b_neu = gr.Button("2 · Neutral", elem_id="lab-btn-neutral", min_width=90)
        b_con = gr.Button("3 · Contradiction", elem_id="lab-btn-contradiction", variant="stop", min_width=90)
        b_acc = gr.Button("Enter · Accept", elem_id="lab-btn-accept", min_width=90)
        b_skip = gr.Button("S · Skip", elem_id="lab-btn-skip", min_width=90)
        b_undo = gr.Button("U · Undo", elem_id="lab-btn-undo", min_width=90)
    note = gr.Textbox(label="Note (optional, saved with your next label)", max_lines=2, elem_id="lab-note")
    status = gr.Markdown("", elem_id="lab-status")
    with gr.Accordion("Guidelines", open=False):
        gr.Markdown(GUIDELINES)
    with gr.Accordion("Agreement between annotators", open=True):
        agreement = gr.Markdown("", elem_id="lab-agreement")
    with gr.Row():
        score_btn = gr.Button("Score unscored phrases", elem_id="lab-score")
        exp_jsonl = gr.Button("Export JSONL (training)", elem_id="lab-export-jsonl")
        exp_csv = gr.Button("Export CSV (all labels)", elem_id="lab-export-csv")
    download = gr.File(label="Download export", interactive=False, visible=False, elem_id="lab-download")

    filter_inputs = [model_label, min_score, max_score, reasoner, show]

    # ----------------------------------------------------------------------------------- helpers
    def progress_md(name: str | None, flt: dict, st: dict, recount: bool = False) -> str:
        # Counting the whole queue and all phrases scans every phrase (about 1 s at the dataset's 290k), so
        # those counts are taken on load / refresh / filter change and kept in the session; a key press only
        # runs the indexed label counts and adjusts the queue count by what this person did.
        if recount or "left" not in st:
            p = store.progress(name)
            st.update(total=p.total, scored=p.scored, left=store.queue_count(**flt, exclude=st["seen"]))
        mine, labeled, people = store.label_counts(name)
        who = f"**You ({markdown_literal(name)})**: {mine} labeled · " if name else "**Type your name to label.** · "
        left = max(0, st["left"])
        return (f"{who}**All**: {labeled}/{st['total']} phrases labeled by {people} "
                f"{'person' if people == 1 else 'people'} · {st['scored']} scored by a model · "
                f"**{left}** in this queue")

    def agreement_md() -> str:
        pairs = pairwise(store.labels_by_annotator())
        if not pairs:
            return "Agreement (Cohen's kappa) appears once two people have labeled the same phrases."
        rows = ["| annotators | shared phrases | agreement | Cohen's kappa |", "|---|---|---|---|"]
        for a in pairs:
            k = "undefined (one label only)" if a.kappa is None else f"{a.kappa:.3f}"
            rows.append(f"| {markdown_literal(a.a)} / {markdown_literal(a.b)} | {a.n} | {a.agreement:.0%} | {k} |")
        return "\n".join(rows)

    def advance(st: dict, name: str | None, flt: dict, message: str = ""):
        ids = store.queue(**flt, exclude=st["seen"], limit=1)
        st = {**st, "current": ids[0] if ids else None, "nonce": st["nonce"] + 1}
        item = store.item(ids[0], name) if ids else None
        return st, render_card(item, st["nonce"], message)

    def outputs(st, name, flt, msg, card_html, clear_note=False, recount=False):
        st = dict(st)
        prog = progress_md(name, flt, st, recount)
        return (st, card_html, prog, msg, agreement_md() if recount else gr.skip(),
                "" if clear_note else gr.skip())

    main_out = [session, card, progress, status, agreement, note]

    # ----------------------------------------------------------------------------------- handlers
    def _on_load(saved, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        name, owner, _ = visitor(saved, request, profile)
        name = name or ""
        has_scores = store.progress().scored > 0
        label = "neutral" if has_scores else ANY
        flt = {**_filters(label, 0, 1, ANY, "todo_me", name), "owner": owner}
        st, html_ = advance(st, name or None, flt)
        return (gr.update(value=label), gr.update(choices=[ANY] + store.reasoners(), value=ANY),
                *outputs(st, name or None, flt, "", html_, recount=True))

    def on_restore(saved, current):
        # The browser's stored name arrives when the BrowserState mounts, which for a tab that is not shown
        # first is after the page's load event: fill the box then, but never overwrite what was typed.
        return current if (current or "").strip() else (saved or "")

    def on_judge_status():
        judge, msg = get_judge()
        return msg if judge is not None else f"**No NLI model is available.** {msg}"

    def _on_refresh(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        name, owner, _ = visitor(name, request, profile)
        flt = {**_filters(ml, lo, hi, rs, sh, name), "owner": owner}
        st, html_ = advance(st, name, flt)
        return outputs(st, name, flt, "", html_, recount=True)

    def _on_name(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return ((name or "").strip(), *_on_refresh(name, ml, lo, hi, rs, sh, st, request, profile))

    def do_label(label, name, ml, lo, hi, rs, sh, note_text, st, request=None, profile=None):
        name, owner, who = visitor(name, request, profile)
        name = name or ""
        flt = {**_filters(ml, lo, hi, rs, sh, name), "owner": owner}
        if not roles.can_label(who):
            st = {**st, "nonce": st["nonce"] + 1}
            item = store.item(st["current"]) if st.get("current") is not None else None
            return outputs(st, None, flt, "**Sign in to label**: on this public workbench labels are written under "
                           "your account, and only annotators may write them.", render_card(item, st["nonce"]))
        pid = st.get("current")
        if pid is None:
            st, html_ = advance(st, name or None, flt)
            return outputs(st, name or None, flt, "Nothing to label here: change the filters.", html_)
        if label == "accept":
            s = store.suggestion(pid)
            if s is None:
                st = {**st, "nonce": st["nonce"] + 1}
                item = store.item(pid, name or None)
                return outputs(st, name or None, flt, "No model suggestion for this phrase: press 1, 2 or 3.",
                               render_card(item, st["nonce"]))
            label = s["label"]
        try:
            r = store.set_label(pid, name, label, note_text)
        except StoreError as e:
            st = {**st, "nonce": st["nonce"] + 1}
            return outputs(st, name or None, flt, f"**Not saved:** {markdown_literal(str(e))}", render_card(store.item(pid), st["nonce"]))
        verb = {"set": "labeled", "update": f"changed from {r['previous']} to", "unchanged": "kept as"}[r["action"]]
        st = {**st, "seen": (st["seen"] + [pid])[-SEEN_MAX:], "undo": (st["undo"] + [pid])[-200:],
              "left": st.get("left", 1) - 1}
        st, html_ = advance(st, name, flt)
        return outputs(st, name, flt, f"Phrase #{pid} {verb} **{r['label']}**.", html_, clear_note=True)

    def _on_skip(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        name, owner, _ = visitor(name, request, profile)
        flt = {**_filters(ml, lo, hi, rs, sh, name), "owner": owner}
        pid = st.get("current")
        if pid is not None:
            st = {**st, "seen": (st["seen"] + [pid])[-SEEN_MAX:], "left": st.get("left", 1) - 1}
        st, html_ = advance(st, name, flt)
        return outputs(st, name, flt, f"Skipped phrase #{pid}." if pid is not None else "", html_)

    def _on_undo(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        name, owner, _ = visitor(name, request, profile)
        name = name or ""
        flt = {**_filters(ml, lo, hi, rs, sh, name), "owner": owner}
        if not st["undo"]:
            st = {**st, "nonce": st["nonce"] + 1}
            item = store.item(st["current"], name or None) if st.get("current") is not None else None
            return outputs(st, name or None, flt, "Nothing to undo in this session.", render_card(item, st["nonce"]))
        pid = st["undo"][-1]
        try:
            r = store.undo_label(pid, name)
        except StoreError as e:
            st = {**st, "nonce": st["nonce"] + 1}
            return outputs(st, name or None, flt, f"**Not undone:** {markdown_literal(str(e))}", render_card(store.item(pid), st["nonce"]))
        st = {**st, "undo": st["undo"][:-1], "seen": [x for x in st["seen"] if x != pid], "current": pid,
              "nonce": st["nonce"] + 1, "left": st.get("left", 0) + 1}
        back = "removed" if r is None or r["label"] is None else f"back to **{r['label']}**"
        return outputs(st, name, flt, f"Undid your label on phrase #{pid} ({back}).",
                       render_card(store.item(pid, name), st["nonce"]))

    def on_score(request: gr.Request = None, profile: gr.OAuthProfile | None = None, progress_bar=gr.Progress()):
        from .scoring import score_unscored

        if not roles.can_label(identity_of(request, profile)):
            return gr.skip(), "Only annotators and admins may score phrases on this public workbench."
        judge, msg = get_judge()
        if judge is None:
            return f"**No NLI model is available.** {msg}", "Nothing was scored."
        progress_bar(0, desc=f"Scoring with {judge.model_id}")
        t0 = time.monotonic()
        counts = score_unscored(store, judge)
        done = sum(counts.values())
        summary = ", ".join(f"{k} {counts.get(k, 0)}" for k in LABELS)
        return (f"{msg}. Scored {done} phrases in {time.monotonic() - t0:.1f} s ({summary}).",
                f"Scored {done} phrases.")

    def on_export(fmt, request=None, profile=None):
        if not roles.is_admin(identity_of(request, profile)):
            return gr.update(visible=False), "Only this workbench's admins may export (exports hold every conversation)."
        folder = export_folder()
        out = folder / f"convfill-labels-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(4).hex()}.{fmt}"
        s = (export_jsonl if fmt == "jsonl" else export_csv)(store, out)
        msg = (f"Exported {s.conversations} conversations / {s.phrases} acceptable phrases "
               f"({s.dropped} dropped)." if fmt == "jsonl" else f"Exported {s.rows} rows about {s.phrases} phrases.")
        return gr.update(value=str(out), visible=True), msg

    # Race: the handlers read and write one browser session's labeling state. `sessions` keeps that state
    # server-side and runs one session's handlers one at a time, each on the latest state, so a refresh can
    # never hand back a stale copy over a label saved in between; other annotators never wait (they used to
    # share one server-wide queue lane). "multiple" lets quick key presses queue instead of being dropped.
    sessions = SessionStates()

    def on_load(saved, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return sessions.run(request, st, 2, lambda s: _on_load(saved, s, request, profile))

    def on_refresh(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return sessions.run(request, st, 0, lambda s: _on_refresh(name, ml, lo, hi, rs, sh, s, request, profile))

    def on_name(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return sessions.run(request, st, 1, lambda s: _on_name(name, ml, lo, hi, rs, sh, s, request, profile))

    def on_skip(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return sessions.run(request, st, 0, lambda s: _on_skip(name, ml, lo, hi, rs, sh, s, request, profile))

    def on_undo(name, ml, lo, hi, rs, sh, st, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return sessions.run(request, st, 0, lambda s: _on_undo(name, ml, lo, hi, rs, sh, s, request, profile))

    serial = {"trigger_mode": "multiple"}
    root = gr.context.Context.root_block
    ev_load = root.load(on_load, [saved_name, session], [model_label, reasoner, *main_out], **serial)
    ev_load.then(on_judge_status, None, judge_status)
    common = [annotator, *filter_inputs, session]
    saved_name.change(on_restore, [saved_name, annotator], annotator, **serial)
    refresh.click(on_refresh, common, main_out, **serial)
    if tab is not None:
        tab.select(on_refresh, common, main_out, **serial)
    for f in (model_label, show, reasoner):
        f.input(on_refresh, common, main_out, **serial)
    for f in (min_score, max_score):
        f.release(on_refresh, common, main_out, **serial)
    annotator.change(on_name, common, [saved_name, *main_out], **{**serial, "trigger_mode": "always_last"})
    def label_handler(lab):
        def handler(name, ml, lo, hi, rs, sh, note_text, st, request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None):
            return sessions.run(request, st, 0,
                                lambda s: do_label(lab, name, ml, lo, hi, rs, sh, note_text, s, request, profile))
        return handler

    for btn, lab in ((b_ent, "entailment"), (b_neu, "neutral"), (b_con, "contradiction"), (b_acc, "accept")):
        btn.click(label_handler(lab), [annotator, *filter_inputs, note, session], main_out, api_name=f"label_{lab}",
                  **serial)
    b_skip.click(on_skip, common, main_out, **serial)
    b_undo.click(on_undo, common, main_out, **serial)
    score_btn.click(on_score, None, [judge_status, status],
                    concurrency_id="labeling-score").then(on_refresh, common, main_out, **serial)
    def export_handler(fmt):
        def handler(request: gr.Request = None, profile: gr.OAuthProfile | None = None):
            return on_export(fmt, request, profile)
        return handler

    exp_jsonl.click(export_handler("jsonl"), None, [download, status], api_name="export_jsonl")
    exp_csv.click(export_handler("csv"), None, [download, status], api_name="export_csv")
    return {"annotator": annotator, "card": card, "progress": progress, "status": status,
            "judge_status": judge_status, "agreement": agreement, "download": download}
