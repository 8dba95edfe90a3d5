"""The Talker's one model thread takes waiting work by priority: a turn's first phrase (or a phrase from a
waiting knowledge chunk) before other sessions' later fillers, and warm-ups/prefills after every phrase.
Runs the real `Talker.stream` / `prefill` path with a runtime whose `generate` blocks like a model does."""

from __future__ import annotations

import asyncio
import threading
import time

from convfill.aio import FIRST, KNOWLEDGE, LATER, SPECULATIVE, ModelThread
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

    def warm_prefix(self, prefix):
        self.ran.append("prefill")


async def _say(talker, ctx):
    return "".join([p async for p in talker.stream(ctx, 8)])


async def test_first_words_go_before_later_fillers_and_prefills_wait_for_both():
    talker = BlockingTalker()
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
    pool = ModelThread("test-model")
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
