"""Live judging: every chat phrase gets its NLI suggestion in the background, as its turn is stored.

Before, chat phrases were judged only when somebody pressed "Score" in the Labeling tab. `LiveJudge` keeps
one worker thread and a bounded queue of turn ids: the recorder hands it each turn once the store has it,
the worker loads the judge once, as it starts (the same one the Labeling tab uses), and writes one
suggestion per phrase. The Chat tab then draws each phrase's E/N/C badge on the timeline. When the queue is
full the oldest waiting turn is left for "Score" to catch up: a flood of turns never grows memory or delays
the chat.
torch runs single-threaded in the app (`convfill.ui._share_cores_with_llamacpp`), so judging here does not
slow the Talker's decoding.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading

from convfill.nli.judge import configured_model, load_judge
from .store import LabelStore

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _loaded(name: str):
    return load_judge(name)


def shared_judge():
    """`load_judge()`, once per process and configured model: every app built in this process (the tests
    build many) shares the judge instead of loading it again (~7 s on a slow 2-core CPU)."""
    return _loaded(configured_model())


class LiveJudge:
    """Args:
        store: where phrases are read and suggestions written.
        judge_loader: `() -> (judge | None, message)`, called once, by the worker as it starts: a first
            turn's badges wait for the judge at most a few seconds (`ChatSession.judged`), less than loading
            one takes on a slow CPU (7.2 s measured).
        max_waiting: turns that may wait for judging; beyond it the oldest is dropped (still unscored).
    """

    def __init__(self, store: LabelStore, judge_loader=shared_judge, max_waiting: int = 64):
        self.store, self.judge_loader = store, judge_loader
        self.max_waiting = max_waiting
        self._waiting: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._judged: collections.OrderedDict[str, None] = collections.OrderedDict()  # recent turns, bounded
        self._judge = None
        self._message: str | None = None
        self._load_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="convfill-live-judge", daemon=True)
        self._thread.start()

    def load(self):
        """(judge or None, message), loaded once and shared with the Labeling tab."""
        with self._load_lock:
            if self._message is None:
                self._judge, self._message = self.judge_loader()
            return self._judge, self._message

    def submit(self, turn_id: str) -> None:
        """Judge the phrases of stored turn `turn_id` soon (never blocks)."""
        with self._cond:
            self._waiting.append(turn_id)
            while len(self._waiting) > self.max_waiting:  # the oldest waits for "Score" instead
                self._done(self._waiting.popleft())
            self._cond.notify_all()

    def wait(self, turn_id: str, timeout: float) -> bool:
        """Block until `turn_id` has been judged (or there is no judge); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: turn_id in self._judged, timeout)

    def labels(self, turn_id: str) -> dict[int, str]:
        """phrase_index -> this judge's label, for the turn's phrases judged so far."""
        judge, _ = self.load()
        if judge is None:
            return {}
        rows = self.store.db.execute(
            "select p.phrase_index, s.label from phrases p join suggestions s on s.phrase_id = p.id "
            "where p.turn_id = ? and s.model_id = ?", [turn_id, judge.model_id]).fetchall()
        return {int(i): label for i, label in rows}

    def _run(self) -> None:
        try:
            self.load()  # before any turn is stored, not when the first one is
        except Exception:  # noqa: BLE001 - a loader that raises: its turns are left for "Score"
            log.exception("loading the live judge failed")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting)
                turn_id = self._waiting.popleft()
            try:
                self._judge_turn(turn_id)
            except Exception:  # noqa: BLE001 - a failed judgement leaves the phrases for "Score"
                log.exception("live judging of turn %s failed", turn_id)
            with self._cond:
                self._done(turn_id)

    def _done(self, turn_id: str) -> None:
        """Under `_cond`: `turn_id` is as judged as it will get (waiters stop waiting)."""
        self._judged[turn_id] = None
        while len(self._judged) > 4 * self.max_waiting:
            self._judged.popitem(last=False)
        self._cond.notify_all()

    def _judge_turn(self, turn_id: str) -> None:
        judge, _ = self.load()
        if judge is None:
            return
        ids = [r[0] for r in self.store.db.execute(
            "select p.id from phrases p where p.turn_id = ? and p.source != 'error' and trim(p.text) != '' "
            "and not exists (select 1 from suggestions s where s.phrase_id = p.id and s.model_id = ?)",
            [turn_id, judge.model_id])]
        if not ids:
            return
        pairs = self.store.nli_pairs(ids)
        suggestions = judge.judge([pairs[i] for i in ids])
        self.store.add_suggestions(zip(ids, suggestions))
