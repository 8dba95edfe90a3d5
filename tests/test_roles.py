"""Who may see and label what on a public workbench, through the app's own API.

Identity here comes from Gradio's own login (`launch(auth=...)`, what `gr.Request.username` carries); on a
Space it is the "Sign in with Hugging Face" account, read by the same `convfill.identity.identity_of`."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError
from test_app import launched

from convfill.identity import identity_of
from convfill.policy import Policy
from convfill.testing import ScriptedTalker
from convfill.ui.session import DEFAULT_TALKER, ModelPool
from labeling.roles import Roles

TURN = dict(reasoner="oracle", knowledge="Cats purr. They sleep a lot.", reasoner_delay_s=0.05, oracle_gap_s=0.05,
            turn_timeout_s=60, api_name="/chat")
USERS = [("ada", "pw-ada"), ("zoe", "pw-zoe"), ("eve", "pw-eve")]


@pytest.fixture
def workbench(monkeypatch):
    """A public app with accounts: ada is admin, zoe annotator, eve neither."""
    monkeypatch.setenv("CONVFILL_ADMINS", "ada")
    monkeypatch.setenv("CONVFILL_ANNOTATORS", "zoe")
    with launched(_public(), _pool(), auth=USERS) as demo_url:
        yield demo_url


def _pool(talker=None) -> ModelPool:
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, talker or ScriptedTalker(first_token_s=0.01, per_token_s=0.005))
    return pool


def _public(**policy):
    from convfill.ui import AppConfig

    return AppConfig(policy=Policy(public=True, **policy), live_judge=False)


def _as(url, user):
    from gradio_client import Client

    return Client(url, auth=(user, dict(USERS)[user]), verbose=False, download_files=False)


FILTERS = ("any", 0, 1, "any", "all")  # model label, min score, max score, Reasoner, show: everything


def _queue_card(client, typed_name=""):
    return client.predict(typed_name, *FILTERS, api_name="/on_refresh")[0]


def test_a_visitor_without_a_role_sees_only_their_own_conversations(workbench):
    demo, url = workbench
    eve, zoe = _as(url, "eve"), _as(url, "zoe")
    zoe.predict(message="Zoe private question about cats", **TURN)
    eve.predict(message="Eve asks about dogs", **TURN)
    assert "Zoe private question" not in _queue_card(eve) and "Eve asks" in _queue_card(eve)
    owners = {r[0] for r in demo.convfill_store.db.execute("select json_extract(meta, '$.owner') from conversations")}
    assert owners == {"user:zoe", "user:eve"}
    # an annotator works on everybody's phrases: the oldest first, here Zoe's own, then Eve's after skipping
    assert "Zoe private question" in _queue_card(zoe)
    cards = [zoe.predict("", *FILTERS, api_name="/on_skip")[0] for _ in range(8)]
    assert any("Eve asks" in card for card in cards)


def test_labels_are_written_under_the_account_and_only_by_annotators(workbench):
    demo, url = workbench
    eve, zoe = _as(url, "eve"), _as(url, "zoe")
    eve.predict(message="Eve asks about dogs", **TURN)
    _queue_card(eve)
    status = eve.predict("ada", *FILTERS, "", api_name="/label_neutral")[2]
    assert "Sign in to label" in status  # eve may not label, least of all as ada
    _queue_card(zoe, typed_name="ada")
    status = zoe.predict("ada", *FILTERS, "a note", api_name="/label_neutral")[2]
    assert "labeled **neutral**" in status
    rows = demo.convfill_store.db.execute("select annotator from labels").fetchall()
    assert rows == [("zoe",)]  # the account, whatever name was typed
    assert {r[0] for r in demo.convfill_store.db.execute("select annotator from label_history")} == {"zoe"}


def test_only_admins_export(workbench):
    _, url = workbench
    _as(url, "zoe").predict(message="Zoe private question about cats", **TURN)
    for user in ("eve", "zoe"):
        file, status = _as(url, user).predict(api_name="/export_csv")
        assert "Only this workbench's admins may export" in status and not (file or {}).get("value")
    file, status = _as(url, "ada").predict(api_name="/export_csv")
    assert "Exported" in status and file["value"]["url"].endswith(".csv")


def test_anonymous_visitors_may_chat_but_not_label_or_export(monkeypatch):
    from gradio_client import Client

    with launched(_public(), _pool()) as (demo, url):
        a, b = Client(url, verbose=False, download_files=False), Client(url, verbose=False, download_files=False)
        a.predict(message="Question from A", **TURN)
        assert "Question from A" not in _queue_card(b)  # another anonymous session
        assert "Question from A" in _queue_card(a)
        assert "Sign in to label" in a.predict("zoe", *FILTERS, "", api_name="/label_neutral")[2]
        assert "admins" in a.predict(api_name="/export_csv")[1]


def test_local_use_keeps_every_option():
    roles, nobody = Roles(public=False), identity_of(None, None)
    assert roles.can_label(nobody) and roles.is_admin(nobody) and roles.annotator_name(nobody, " ada ") == "ada"
    public = Roles(public=True, admins=frozenset({"ada"}), annotators=frozenset({"*"}))
    assert not public.can_label(nobody) and public.annotator_name(nobody, "ada") is None
    assert public.can_label(identity_of(type("R", (), {"username": "bob", "session_hash": "s"})(), None))


def test_the_operator_can_keep_chat_to_signed_in_visitors():
    from gradio_client import Client

    pool = _pool()
    with launched(_public(chat="signed-in"), pool) as (demo, url):
        with pytest.raises(AppError, match="Sign in to chat"):
            Client(url, verbose=False).predict(message="hello", **TURN)
        assert demo.convfill_store.db.execute("select count(*) from turns").fetchone()[0] == 0
    with launched(_public(chat="signed-in"), pool, auth=USERS) as (_, url):
        _as(url, "eve").predict(message="hello", **TURN)  # signed in: welcome


def test_one_sessions_events_see_the_latest_state_and_other_sessions_never_wait():
    import threading
    import time

    from labeling.ui import SessionStates

    states = SessionStates()
    req = lambda h: type("R", (), {"session_hash": h})()  # noqa: E731
    stale = {"n": 0}

    def bump(s):
        time.sleep(0.05)
        return ({"n": s["n"] + 1},)

    threads = [threading.Thread(target=states.run, args=(req("a"), stale, 0, bump)) for _ in range(5)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    quick = states.run(req("b"), {"n": 100}, 0, lambda s: ({"n": s["n"] + 1},))  # another annotator
    waited = time.monotonic() - t0
    for t in threads:
        t.join()
    assert quick == ({"n": 101},) and waited < 0.05  # b did not queue behind a's five events
    assert states.run(req("a"), stale, 0, lambda s: (s,)) == ({"n": 5},)  # none of a's updates was lost


def test_prefill_is_gated_like_a_turn():
    from gradio_client import Client

    talker = ScriptedTalker()
    pool = _pool(talker)
    with launched(_public(chat="signed-in"), pool) as (_, url):
        Client(url, verbose=False).predict(message="typed by someone not signed in", api_name="/prefill")
        assert talker.prefilled == []
    with launched(_public(chat="signed-in"), pool, auth=USERS) as (_, url):
        _as(url, "eve").predict(message="typed by eve", api_name="/prefill")
        assert [c.user for c in talker.prefilled] == ["typed by eve"]
