"""The Talker's one model thread takes waiting work by priority: a turn's first phrase (or a phrase from a
waiting knowledge chunk) before other sessions' later fillers, and warm-ups/prefills after every phrase.
Runs the real `Talker.stream` / `prefill` path with a runtime whose `generate` blocks like a model does."""

from __future__ import annotations

import asyncio
import threading
import time

from convfill.aio import FIRST, KNOWLEDGE, LATER, SPECULATIVE, STREAMING, ModelThread
from convfill.prompt import PhraseContext
from convfill.talkers.base import Talker


class BlockingTalker(Talker):
    """Each phrase holds the model thread for `hold_s` and records the order phrases ran in."""

    runtime = "blocking"

    def __init__(self, hold_s: float = 0.15):
        super().__init__("blocking")
        self.hold_s, self.ran, self.gate = hold_s, [], threading.Event()

    def generate(self, prompt, max_tokens, stop):
        who = prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        self.ran.append(who)
        if who == "busy":
            self.gate.wait(5)  # holds the model until every other request is queued
        time.sleep(self.hold_s)
        yield who

    def warm_prefix(self, prefix, visitor=None):
        self.ran.append("prefill")


async def _say(talker, ctx):
    return "".join([p async for p in talker.stream(ctx, 8)])


async def test_first_words_go_before_later_fillers_and_prefills_wait_for_both():
    talker = BlockingTalker()
    talker._model_thread._work_queue.age_s = 60  # the order by rank alone (ageing: its own test below)
    busy = asyncio.create_task(_say(talker, PhraseContext("busy")))
    while talker.ran != ["busy"]:
        await asyncio.sleep(0.005)
    # Queued while "busy" holds the model, in this order of arrival:
    tasks = [asyncio.create_task(talker.prefill(PhraseContext("typing"))),
             asyncio.create_task(_say(talker, PhraseContext("later A", earlier=("Hm.",)))),
             asyncio.create_task(_say(talker, PhraseContext("first B"))),
             asyncio.create_task(_say(talker, PhraseContext("later C", earlier=("Hm.",)))),
             asyncio.create_task(_say(talker, PhraseContext("chunk D", knowledge="A fact.", earlier=("Hm.",)))),
             asyncio.create_task(_say(talker, PhraseContext("first E")))]
    await asyncio.sleep(0.1)  # all six are waiting on the model thread
    talker.gate.set()
    await asyncio.gather(busy, *tasks)
    assert talker.ran == ["busy", "first B", "first E", "chunk D", "later A", "later C", "prefill"]


def test_the_pool_orders_by_priority_then_arrival_and_stops_cleanly():
    pool = ModelThread("test-model", age_s=60)
    order, gate = [], threading.Event()
    pool.submit(gate.wait, 5)
    futures = [pool.submit_at(p, order.append, name) for p, name in
               [(SPECULATIVE, "s1"), (LATER, "l1"), (KNOWLEDGE, "k1"), (FIRST, "f1"), (LATER, "l2"), (FIRST, "f2")]]
    futures.append(pool.at(SPECULATIVE).submit(order.append, "s2"))
    futures.append(pool.submit(order.append, "default"))  # no priority: LATER
    gate.set()
    for f in futures:
        f.result(5)
    assert order == ["f1", "f2", "k1", "l1", "l2", "default", "s1", "s2"]
    pool.shutdown(wait=True)  # the stop marker goes after queued work: nothing hangs
    assert not any(t.is_alive() for t in pool._threads)


def test_under_steady_streaming_waiting_prefills_and_fillers_still_run_once_they_are_old():
    pool = ModelThread("test-model", age_s=0.05)
    order, stop = [], threading.Event()

    def token(i):  # a phrase that keeps streaming: each token queues the next at STREAMING, as phrases do
        order.append(i)
        time.sleep(0.005)
        if not stop.is_set():
            pool.submit_at(STREAMING, token, i + 1)

    pool.submit_at(STREAMING, token, 0)
    prefill = pool.submit_at(SPECULATIVE, order.append, "prefill")
    later = pool.submit_at(LATER, order.append, "later filler")  # another visitor's filler, after the prefill
    first = pool.submit_at(FIRST, order.append, "first")  # first words still go ahead of it
    try:
        prefill.result(2)  # without ageing it would wait for the stream to end (never)
        later.result(2)
        first.result(2)
    finally:
        stop.set()
        pool.shutdown(wait=True)
    at = order.index("prefill")
    assert order.index("first") < at < order.index("later filler")  # the longest waiting first
    assert 3 <= at < 40, order[:50]  # streamed a while (~0.05 s of tokens), then its turn came


class SteppingTalker(Talker):
    """`slots` independent caches; each phrase is `n` tokens of `hold_s`; `ran` records (who, token) in order
    and `slots_used` which cache each phrase got."""

    runtime = "stepping"

    def __init__(self, slots: int, n: int = 4, hold_s: float = 0.01):
        super().__init__("stepping")
        self._slots.limit = slots
        self.n, self.hold_s, self.ran, self.slots_used, self.gate = n, hold_s, [], {}, threading.Event()

    def generate_in(self, slot, prompt, max_tokens, stop, options=None):
        who = prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        self.slots_used[who] = slot
        for i in range(self.n):
            if who == "busy" and i == 1:
                self.gate.wait(5)  # holds the model until every other request is queued
            time.sleep(self.hold_s)
            self.ran.append((who, i))
            yield f"{who}{i} "


async def test_with_separate_caches_a_newcomers_first_words_go_between_two_tokens_of_a_phrase():
    talker = SteppingTalker(slots=4)
    talker._model_thread._work_queue.age_s = 60  # the order by rank alone
    busy = asyncio.create_task(_say(talker, PhraseContext("busy")))
    while talker.ran != [("busy", 0)]:
        await asyncio.sleep(0.005)
    tasks = [asyncio.create_task(_say(talker, PhraseContext("later A", earlier=("Hm.",)))),
             asyncio.create_task(_say(talker, PhraseContext("first B")))]
    await asyncio.sleep(0.1)
    talker.gate.set()
    said = await asyncio.gather(busy, *tasks)
    assert said == ["busy0 busy1 busy2 busy3 ", "later A0 later A1 later A2 later A3 ", "first B0 first B1 first B2 first B3 "]
    order = talker.ran
    # B's first token comes right after the busy phrase's second, long before that phrase ends ...
    assert order[:3] == [("busy", 0), ("busy", 1), ("first B", 0)]
    # ... then the two speaking phrases take turns; the later filler starts only when nothing else speaks.
    assert order[3:9] == [("busy", 2), ("first B", 1), ("busy", 3), ("first B", 2), ("first B", 3), ("later A", 0)]
    assert len(set(talker.slots_used.values())) == 2  # B got its own cache; A took a free one again


async def test_when_every_cache_holds_a_phrase_newcomers_wait_in_their_place_in_line():
    talker = SteppingTalker(slots=2, n=3)
    first = [asyncio.create_task(_say(talker, PhraseContext(f"v{i}"))) for i in range(2)]
    while len(talker.ran) < 2:
        await asyncio.sleep(0.002)
    waiting = [asyncio.create_task(_say(talker, PhraseContext("later C", earlier=("Hm.",)))),
               asyncio.create_task(_say(talker, PhraseContext("first D"))),
               asyncio.create_task(_say(talker, PhraseContext("first E")))]
    await asyncio.gather(*first, *waiting)
    starts = [who for who, i in talker.ran if i == 0]
    assert starts == ["v0", "v1", "first D", "first E", "later C"]  # each free cache to the next in line
    assert talker._slots.busy() == 0 and talker._slots.size == 2  # never more caches than the limit


async def test_a_cancelled_phrase_gives_its_cache_back_within_one_token():
    talker = SteppingTalker(slots=1, n=200, hold_s=0.005)
    agen = talker.stream(PhraseContext("long"), 500)
    await anext(agen)
    await agen.aclose()
    assert await asyncio.to_thread(talker._slots.wait_idle, 1.0)
    assert len(talker.ran) < 10
    assert (await _say(talker, PhraseContext("next"))).startswith("next0")  # the model is free again


async def test_a_runtime_that_fails_before_its_first_token_frees_its_cache():
    talker = SteppingTalker(slots=1)
    calls = []

    def broken(slot, prompt, max_tokens, stop, options=None):
        calls.append(slot)
        if len(calls) == 1:
            raise RuntimeError("runtime down")
        return SteppingTalker.generate_in(talker, slot, prompt, max_tokens, stop, options)

    talker.generate_in = broken
    try:
        await _say(talker, PhraseContext("x"))
    except RuntimeError as e:
        assert "runtime down" in str(e)
    else:
        raise AssertionError("the failure was not reported")
    assert talker._slots.busy() == 0
    assert await _say(talker, PhraseContext("y")) == "y0 y1 y2 y3 "  # the one cache is usable again
