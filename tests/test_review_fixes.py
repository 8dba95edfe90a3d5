"""Edges found in review: each was a way to lose a pre-emption, leak a turn's badges, sample stale logits
or slip past a public-mode gate."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from convfill.identity import identity_of
from convfill.policy import Limits, Policy, PolicyError
from convfill.prompt import PhraseContext
from convfill.talkers.base import Talker


class SlowTalker(Talker):
    """A real `Talker.stream` (model thread, lock, pre-emption) over a generator that takes time per token."""

    def __init__(self):
        super().__init__("slow")

    def generate(self, prompt, max_tokens, stop):
        for i in range(3):
            if stop.is_set():
                return
            time.sleep(0.05)
            yield f"w{i} "


async def test_a_warm_up_never_slips_in_between_two_queued_phrases():
    t = SlowTalker()
    first, second = t.stream(PhraseContext("a")), t.stream(PhraseContext("b"))
    a = asyncio.ensure_future(anext(first))
    b = asyncio.ensure_future(anext(second))
    await a  # the first phrase holds the model, the second waits
    assert t._wanted.is_set()  # so a warm-up arriving now yields at once
    await b
    [p async for p in first], [p async for p in second]
    assert not t._wanted.is_set() and t._waiting == 0
    third = t.stream(PhraseContext("c"))
    await anext(third)
    await third.aclose()  # closed early: its count is released once, never twice
    await asyncio.sleep(0.2)
    assert t._waiting == 0


@pytest.mark.model
async def test_a_prompt_that_is_a_strict_prefix_of_the_cache_is_not_sampled_from_stale_logits(real_talker):
    short = PhraseContext("Hi")
    cold = "".join(real_talker.generate(real_talker.prompt(short), 12, threading.Event()))
    longer = real_talker.prompt(short) + "Hello there, how are you"
    real_talker.warm_prefix(longer)  # the cache now holds more than the short prompt
    real_talker.warm_prefix(real_talker.prompt(short))
    again = "".join(real_talker.generate(real_talker.prompt(short), 12, threading.Event()))
    assert again == cold


def test_calls_without_a_browser_session_never_share_an_owner():
    a, b = identity_of(None, None), identity_of(type("R", (), {"session_hash": None, "username": None})(), None)
    assert a.owner != b.owner and a.name is None


async def test_prefill_obeys_the_public_limits():
    from convfill.testing import ScriptedTalker
    from convfill.ui.session import DEFAULT_TALKER, ChatSession, ModelPool, TurnSettings

    talker = ScriptedTalker()
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, talker)
    s = ChatSession(pool, policy=Policy(public=True, limits=Limits(max_user_tokens=10)), talkers=(DEFAULT_TALKER,))
    assert await s.prefill("short question", TurnSettings(knowledge="x."))
    assert not await s.prefill("word " * 200, TurnSettings(knowledge="x."))  # a turn would refuse it: no work
    assert [c.user for c in talker.prefilled] == ["short question"]


def test_public_mode_keeps_cloud_reasoners_on_their_default_model():
    from convfill.ui.session import ModelPool, TurnSettings, turn_reasoner

    with pytest.raises(PolicyError, match="Reasoner model"):
        turn_reasoner(TurnSettings(reasoner="anthropic", reasoner_model="claude-opus-4-1"), ModelPool(),
                       Policy(public=True))
